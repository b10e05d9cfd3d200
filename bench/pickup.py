"""Pick-up: from a flow run's creation to Running, with our worker settings vs Prefect's defaults.

    uv run python -m bench.pickup [--runs 10] [--flow platform-check|noop]

One Prefect server (a throwaway PostgreSQL of the machine's binaries), then, one after the other,
a process worker started two ways on the same pool:

- baseline: `prefect worker start --pool P --type process` with Prefect's defaults (it asks for
  new runs every 10 s);
- ours: `python -m infra.prefect.worker`, as compose and `make local` start it (every 1 s, a
  concurrency limit, one OpenMP thread per run's share of the cores).

Each worker gets `--runs` flow runs of the same deployment, one at a time, started at random
moments; pick-up is the Running state's time minus the run's creation time, as Prefect records
them. `--flow noop` times a flow that imports nothing but Prefect; `platform-check` (the default)
one of the platform's own flow modules, with the flows' lazy imports.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from infra.waiting import worker_online
from tests import servers
from tests.paths import REPO_ROOT

POOL = "bench-pickup"


ENTRYPOINTS = {
    "platform-check": "flows/pipelines/platform_check.py:platform_check",
    "noop": "bench/noop_flow.py:noop",
}


def deploy(entrypoint: str) -> str:
    """Register the deployment on the pool from this checkout; return its name."""
    from prefect.flows import Flow

    loaded = Flow.from_source(source=str(REPO_ROOT), entrypoint=entrypoint)
    loaded.deploy(
        name="pickup", work_pool_name=POOL, build=False, push=False, print_next_steps=False
    )
    return f"{loaded.name}/pickup"


def start_worker(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A worker process in its own session (so it and its flow runs stop together)."""
    return servers.start_logged(command, env, log)


def wait_online(api_url: str, timeout_s: float = 120) -> None:
    """Block until a worker of the pool has sent a heartbeat."""
    deadline = time.monotonic() + timeout_s
    while not worker_online(api_url, POOL):
        if time.monotonic() > deadline:
            raise TimeoutError("no worker came online")
        time.sleep(0.5)


def pickups(deployment: str, runs: int) -> list[float]:
    """Seconds from creation to Running of ``runs`` flow runs, one at a time."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    samples = []
    for _ in range(runs):
        time.sleep(random.uniform(0, 2))  # no phase-locking with the worker's polling
        flow_run = run_deployment(deployment, timeout=600)
        with get_client(sync_client=True) as client:
            states = client.read_flow_run_states(flow_run.id)
        running = next(s.timestamp for s in states if s.name == "Running")
        samples.append((running - flow_run.created).total_seconds())
        assert flow_run.state and flow_run.state.is_completed(), flow_run.state
    return samples


def percentile(samples: list[float], share: float) -> float:
    """The ``share`` percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    """Measure both workers on the same server and deployment; print the table and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--flow", choices=sorted(ENTRYPOINTS), default="platform-check")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pickup-"))
    postgres = servers.start_postgres()
    prefect = servers.start_prefect(
        f"postgresql+asyncpg://{postgres.create_database('pickup', 'pickup-pw')}", work
    )
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect.api_url,
        "PREFECT_HOME": str(work / "home"),
        "WORK_POOL": POOL,
        "DATA_DIR": str(work / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "APP_DIR": str(REPO_ROOT),
    }
    workers = {
        "baseline: prefect worker start (Prefect's defaults)": [
            str(Path(sys.executable).parent / "prefect"), "worker", "start",
            "--pool", POOL, "--type", "process",
        ],
        "ours: python -m infra.prefect.worker": [sys.executable, "-m", "infra.prefect.worker"],
    }  # fmt: skip
    rows = []
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        subprocess.run(
            [sys.executable, "-m", "prefect", "work-pool", "create", POOL, "--type", "process"],
            env=env, cwd=REPO_ROOT, check=True, capture_output=True,
        )  # fmt: skip
        with temporary_settings({PREFECT_API_URL: prefect.api_url}):
            deployment = deploy(ENTRYPOINTS[args.flow])
            for label, command in workers.items():
                process = start_worker(command, env, work / f"worker-{len(rows)}.log")
                try:
                    wait_online(prefect.api_url)
                    samples = pickups(deployment, args.runs)
                finally:
                    servers.stop_process(process)
                    time.sleep(2)  # the next worker must not meet this one's heartbeat
                rows.append((label, percentile(samples, 0.5), percentile(samples, 0.9)))
                print(f"{label}: {', '.join(f'{x:.1f}' for x in samples)}", flush=True)
    finally:
        prefect.stop()
        postgres.stop()
    print(f"\n{args.runs} runs of `{args.flow}` each, one at a time: creation -> Running (s)")
    print("| worker | p50 | p90 |")
    print("| --- | ---: | ---: |")
    for label, p50, p90 in rows:
        print(f"| {label} | {p50:.1f} | {p90:.1f} |")
    (_, base50, base90), (_, our50, our90) = rows
    print(f"p50 ours / baseline: {our50 / base50:.3f}   p90 ours / baseline: {our90 / base90:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
