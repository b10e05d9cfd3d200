"""Starting deployments' flow runs and waiting for them: what tuning and backfills share."""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from platform_names import STARTED_BY_TAG_PREFIX

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.schemas.objects import FlowRun


def starter_tags() -> list[str]:
    """``started-by:<who>`` for a new run: inside a flow run, whoever started that one; else
    STARTED_BY or this process's user. (Through the Prefect gateway, a person's runs carry the
    account they signed in with, whatever they send.)"""
    from prefect.runtime import flow_run

    inherited = [t for t in flow_run.tags or [] if str(t).startswith(STARTED_BY_TAG_PREFIX)]
    if inherited:
        return inherited[-1:]
    return [f"{STARTED_BY_TAG_PREFIX}{os.environ.get('STARTED_BY') or getpass.getuser()}"]


def start_runs(deployment: str, parameter_sets: Iterable[dict[str, Any]]) -> list[FlowRun]:
    """One flow run of ``deployment`` per parameter set, all queued at once (the pool runs them
    side by side, up to its limits)."""
    from prefect.deployments import run_deployment

    # Called outside an event loop with timeout=0, run_deployment returns the new flow run.
    return [
        run_deployment(deployment, parameters=parameters, timeout=0, tags=starter_tags())  # type: ignore[misc]
        for parameters in parameter_sets
    ]


def wait_until_final(
    flow_run_ids: Iterable[UUID],
    timeout_s: float,
    on_final: Callable[[FlowRun], None] = lambda ended: None,
    poll_s: float = 1.0,
) -> list[FlowRun]:
    """Poll the flow runs until each has ended or ``timeout_s`` has passed, calling ``on_final``
    for each as it ends; the runs not ended by then."""
    from prefect.client.orchestration import get_client

    pending = list(flow_run_ids)
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(flow_run_id) for flow_run_id in pending]
            for ended in (r for r in runs if r.state is not None and r.state.is_final()):
                on_final(ended)
            waiting = [r for r in runs if not (r.state is not None and r.state.is_final())]
            pending = [r.id for r in waiting]
            if not pending or time.monotonic() > deadline:
                return waiting
            time.sleep(poll_s)
