"""The make verbs' view of a flow run (flows/cli/follow.py) on a real Prefect server and worker:
every log line of the run printed, once, in order, however late it reaches the server."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests import servers
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.integration

LINES = 300


@pytest.fixture(scope="module")
def last_words_deployment(prefect_server, workdir) -> Iterator[str]:
    """A deployment of tests/integration/follow_flow on a pool of its own, and a process worker
    serving it (the worker reports each run's process exit, which following waits for)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    pool = f"follow-{uuid.uuid4().hex[:6]}"

    async def create() -> str:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            flow_id = await client.create_flow_from_name("last-words")
            deployment_id = await client.create_deployment(
                flow_id=flow_id,
                name="last-words",
                work_pool_name=pool,
                path=str(REPO_ROOT / "tests/integration/follow_flow"),
                entrypoint="last_words.py:last_words",
            )
            return str(deployment_id)

    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        deployment_id = asyncio.run(create())
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server.api_url,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_HOME": str(workdir / f"prefect-home-{pool}"),
    }
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool]
    worker = servers.start_logged([*command, "--type", "process"], env, workdir / f"{pool}.log")
    yield deployment_id
    servers.stop_process(worker)


def test_every_line_of_a_run_is_printed_once_and_in_order_even_its_last(
    prefect_api, last_words_deployment, capsys
):
    from flows.cli.follow import follow

    ended = follow(last_words_deployment, {"lines": LINES}, timeout_s=180)
    assert ended.state is not None and ended.state.is_completed()
    printed = re.findall(r"last words (\d{4})", capsys.readouterr().out)
    assert printed == [f"{number:04d}" for number in range(LINES)]
