"""More workers on the pool (`make up WORKERS=3`): all online, and a burst spreads over them."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.e2e.compose import start_deployment, wait_until_final

pytestmark = pytest.mark.e2e

BURST = 6


def docker_logs(container: str) -> str:
    """A container's log, both streams."""
    result = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    return result.stdout + result.stderr


def submitted_by(log: str, flow_run_id: str) -> bool:
    """Whether a worker's log shows it submitted the flow run (not just tried and lost the race)."""
    # Every worker that sees a Scheduled run logs "submitting"; the losers then log "Aborted".
    tried = f"submitting flow run '{flow_run_id}'" in log
    return tried and f"Aborted submission of flow run '{flow_run_id}'" not in log


def online_workers(pool: str) -> set[str]:
    """Names of the pool's workers that Prefect sees ONLINE."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(pool)
    return {w.name for w in workers if str(w.status).upper().endswith("ONLINE")}


def test_three_replicas_are_online_and_a_burst_spreads_over_them(stack, prefect, trained):
    pool = stack.env()["WORK_POOL"]
    before = online_workers(pool)
    stack.make("up", "WORKERS=3")
    try:
        replicas = stack.compose("ps", "--format", "{{.Name}}", "worker").stdout.split()
        assert len(replicas) == 3, replicas
        deadline = time.monotonic() + 120
        while len(online := online_workers(pool) - before) < 3:
            assert time.monotonic() < deadline, f"only {online} came online"
            time.sleep(2)
        logs = stack.compose("logs", "--no-color", "worker").stdout
        assert "3 worker(s) on this machine" in logs  # each takes its share of the cores

        ids = [start_deployment("platform-check/platform-check") for _ in range(BURST)]
        states = [wait_until_final(flow_run_id, timeout_s=600) for flow_run_id in ids]
        assert [s.name for s in states] == ["Completed"] * BURST
        # Each replica's log names the flow runs it submitted.
        logs_of = {replica: docker_logs(replica) for replica in replicas}
        ran_on = {r: sum(submitted_by(log, str(i)) for i in ids) for r, log in logs_of.items()}
        print(f"\n{BURST} runs on 3 workers: {ran_on}")
        assert sum(ran_on.values()) == BURST
        assert sum(1 for count in ran_on.values() if count) >= 2
    finally:
        stack.make("up")  # back to one worker, as the other tests expect
