"""The Prefect gateway's cost: API latency and a flow run's wall time, through it and direct.

    uv run python -m bench.gateway [--requests 300] [--runs 5]

One Prefect server (PostgreSQL, with an internal auth string), one MLflow server with basic auth
(the accounts), and the gateway (`python -m services.gateway`, as compose runs it) in front:

- baseline: Prefect directly, with its internal auth string (what the stack's own containers do);
- ours: through the gateway, signed in as a teammate's MLflow account (password cache warm, as
  after a client's first call).

API: `--requests` sequential calls of each kind on one keep-alive session (as Prefect's client
holds one): `POST /api/flow_runs/filter` (limit 10) and `GET /api/deployments/{id}`.
Flow run: `--runs` runs of tests/security/gateway_flow (two tasks, a subflow, logs, two
artifacts), each started and then picked up by a process worker with a 1 s poll: directly, both
with the internal string; through the gateway, started by the teammate and run by a worker
account's worker (a worker account starts deployments only from its own runs); wall time from
the start to Completed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests import servers
from tests.paths import REPO_ROOT
from tests.security.conftest import run_init_script

POOL = "bench-pool"


def percentile(samples: list[float], share: float) -> float:
    """The ``share`` quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def api_latency(base: str, auth: tuple[str, str], deployment: str, count: int) -> dict:
    """p50/p95 in ms of each kind of call."""
    session = requests.Session()
    session.auth = auth
    results = {}
    calls = {
        "POST /flow_runs/filter": lambda: session.post(
            f"{base}/flow_runs/filter", json={"limit": 10}, timeout=30
        ),
        "GET /deployments/{id}": lambda: session.get(
            f"{base}/deployments/{deployment}", timeout=30
        ),
    }
    for label, call in calls.items():
        call().raise_for_status()  # warm: connection, password cache
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            call().raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
        results[label] = (statistics.median(samples), percentile(samples, 0.95))
    return results


def create_deployment(api: str, auth_string: str) -> str:
    """A work pool and a deployment of the gateway check flow; its id."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    async def create() -> str:
        async with get_client() as client:
            template = ProcessWorker.get_default_base_job_template()
            await client.create_work_pool(
                WorkPoolCreate(name=POOL, type="process", base_job_template=template)
            )
            flow_id = await client.create_flow_from_name("gateway-check")
            return str(
                await client.create_deployment(
                    flow_id=flow_id,
                    name="bench",
                    work_pool_name=POOL,
                    work_queue_name="default",
                    path=str(REPO_ROOT / "tests/security/gateway_flow"),
                    entrypoint="check.py:gateway_check",
                )
            )

    with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth_string}):
        return asyncio.run(create())


def flow_runs(
    api: str, worker_auth: str, starter_auth: str, deployment: str, runs: int, home: Path, name: str
) -> list[float]:
    """Seconds from start to Completed of ``runs`` runs, one after the other, each started as
    ``starter_auth`` and run by a worker signed in as ``worker_auth`` (a worker account may not
    start a deployment's run from outside its own flow runs)."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_API_AUTH_STRING": worker_auth,
        "PREFECT_HOME": str(home),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL]
    home.mkdir(parents=True, exist_ok=True)
    command += ["--type", "process", "--work-queue", "default", "--name", name]
    worker = servers.start_logged(
        [*command, "--no-create-pool-if-not-found"], env, home / "worker.log"
    )
    seconds = []
    try:
        with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: starter_auth}):
            for _ in range(runs):
                started = time.perf_counter()
                ended = run_deployment(deployment, timeout=300, poll_interval=0.5)
                assert ended.state is not None and ended.state.is_completed(), ended.state
                seconds.append(time.perf_counter() - started)
    finally:
        servers.stop_process(worker)
    return seconds


def main() -> int:
    """Start the servers, measure both variants, print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    postgres = servers.start_postgres()
    s3 = servers.start_s3(workdir)
    internal = "internal:" + secrets.token_urlsafe(16)
    started = []
    try:
        accounts = servers.start_accounts(
            postgres, s3, workdir, "prefect-worker", "taxi-trip-duration"
        ).tracking
        started.append(accounts)
        prefect_db = f"postgresql+asyncpg://{postgres.create_database('prefect', 'p' * 16)}"
        os.environ["PREFECT_SERVER_API_AUTH_STRING"] = internal
        prefect = servers.start_prefect(prefect_db, workdir)
        started.append(prefect)
        database = run_init_script(postgres)
        gateway_url, gateway = servers.start_gateway(
            prefect.api_url, internal, accounts.url, database, workdir, work_pool=POOL
        )
        teammate = accounts.create_account("bench-teammate")
        worker = accounts.create_account("bench-worker")
        requests.put(
            f"{gateway_url}/gateway/workers/{worker[0]}",
            json={"work_queues": ["default"]},
            auth=accounts.admin,
            timeout=30,
        ).raise_for_status()
        deployment = create_deployment(prefect.api_url, internal)
        user, password = internal.split(":", 1)
        direct_api = api_latency(prefect.api_url, (user, password), deployment, args.requests)
        gateway_api = api_latency(f"{gateway_url}/api", teammate, deployment, args.requests)
        direct = (prefect.api_url, internal, internal)
        direct_runs = flow_runs(*direct, deployment, args.runs, workdir / "d", "bench-direct")
        gateway_runs = flow_runs(
            f"{gateway_url}/api",
            ":".join(worker),
            ":".join(teammate),
            deployment,
            args.runs,
            workdir / "g",
            worker[0],
        )
        servers.stop_process(gateway)
    finally:
        for server in reversed(started):
            server.stop()
        s3.stop()
        postgres.stop()

    print(f"\n{'what ran':72} {'p50':>9} {'p95':>9}")
    for label in direct_api:
        (d50, d95), (g50, g95) = direct_api[label], gateway_api[label]
        print(f"{'baseline: Prefect directly, ' + label:72} {d50:7.1f}ms {d95:7.1f}ms")
        print(f"{'ours: through the gateway (teammate), ' + label:72} {g50:7.1f}ms {g95:7.1f}ms")
        print(f"{'  ratio ours / baseline':72} {g50 / d50:8.2f}x {g95 / d95:8.2f}x")
    d, g = statistics.median(direct_runs), statistics.median(gateway_runs)
    print(f"{'baseline: flow run, worker on Prefect directly':72} {d:8.2f}s")
    print(f"{'ours: flow run started by a teammate, worker account, via the gateway':72} {g:8.2f}s")
    print(f"{'  ratio ours / baseline':72} {g / d:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
