"""What the gateway asks Prefect before it decides: flow runs, task runs, artifacts and deployments,
read with the internal auth string, never taken from the request being decided on.

Each answer is kept a short while: the fields decisions read (a flow run's queue, pool, deployment
and parent; a task run's or an artifact's flow run; a deployment's name and queue) do not change
once set, except a deployment's queue, which an admin may move (kept 10 s).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx

KEEP_S = 60.0
DEPLOYMENT_KEEP_S = 10.0
ENTRIES = 20_000


@dataclass(frozen=True)
class FlowRun:
    """A flow run as decisions read it."""

    id: str
    work_pool_name: str | None
    work_queue_name: str | None
    deployment_id: str | None
    parent_task_run_id: str | None


@dataclass(frozen=True)
class Deployment:
    """A deployment as decisions read it: its full name (flow/deployment) and where it runs."""

    id: str
    name: str
    work_pool_name: str | None
    work_queue_name: str | None


class PrefectState:
    """Look-ups against Prefect's server, cached."""

    def __init__(self, upstream: httpx.AsyncClient, authorization: str) -> None:
        self.upstream, self.authorization = upstream, authorization
        self.cache: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    async def get(self, path: str, keep_s: float = KEEP_S) -> Any:
        """The JSON of GET /api``path``, or None when Prefect has no such object."""
        cached = self.cache.get(path)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        answer = await self.upstream.get(
            f"/api{path}", headers={"authorization": self.authorization}
        )
        if answer.status_code == 404:
            found = None
        else:
            answer.raise_for_status()
            found = answer.json()
        self.cache[path] = (time.monotonic() + keep_s, found)
        self.cache.move_to_end(path)
        while len(self.cache) > ENTRIES:
            self.cache.popitem(last=False)
        return found

    def forget(self, path: str) -> None:
        """Drop one cached answer (an object this gateway just saw created)."""
        self.cache.pop(path, None)

    async def flow_run(self, flow_run_id: UUID | str) -> FlowRun | None:
        """A flow run's queue, pool, deployment and parent task run."""
        found = await self.get(f"/flow_runs/{flow_run_id}")
        if found is None:
            return None
        return FlowRun(
            id=str(found["id"]),
            work_pool_name=found.get("work_pool_name"),
            work_queue_name=found.get("work_queue_name"),
            deployment_id=optional_str(found.get("deployment_id")),
            parent_task_run_id=optional_str(found.get("parent_task_run_id")),
        )

    async def flow_run_state_type(self, flow_run_id: UUID | str) -> str | None:
        """A flow run's state type now (read afresh: it changes)."""
        answer = await self.upstream.get(
            f"/api/flow_runs/{flow_run_id}", headers={"authorization": self.authorization}
        )
        if answer.status_code != 200:
            return None
        state_type = answer.json().get("state_type")
        return str(state_type) if state_type else None

    async def flow_run_of_task_run(self, task_run_id: UUID | str) -> str | None:
        """The flow run a task run belongs to (None: no such task run, or none)."""
        found = await self.get(f"/task_runs/{task_run_id}")
        return optional_str(found.get("flow_run_id")) if found else None

    async def task_run_exists(self, task_run_id: UUID | str) -> bool:
        """Whether Prefect has the task run."""
        return await self.get(f"/task_runs/{task_run_id}") is not None

    async def flow_run_of_artifact(self, artifact_id: UUID | str) -> str | None:
        """The flow run an artifact belongs to."""
        found = await self.get(f"/artifacts/{artifact_id}")
        return optional_str(found.get("flow_run_id")) if found else None

    async def deployment(self, deployment_id: UUID | str) -> Deployment | None:
        """A deployment's full name and where its runs go."""
        found = await self.get(f"/deployments/{deployment_id}", DEPLOYMENT_KEEP_S)
        if found is None:
            return None
        flow = await self.get(f"/flows/{found['flow_id']}")
        flow_name = flow["name"] if flow else "?"
        return Deployment(
            id=str(found["id"]),
            name=f"{flow_name}/{found['name']}",
            work_pool_name=found.get("work_pool_name"),
            work_queue_name=found.get("work_queue_name"),
        )


def optional_str(value: Any) -> str | None:
    """``value`` as a string, None kept."""
    return None if value is None else str(value)
