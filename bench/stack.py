"""The compose stack as a team uses it: `make down && make up`, `make train`, a burst of runs.

    uv run python -m bench.stack updown [--runs 3]
    uv run python -m bench.stack train  [--runs 5]
    uv run python -m bench.stack burst  [--runs 16]

Against the running compose stack of ENV_FILE (.env), images as `make up` built them (set
PYTHON_IMAGE etc. as for `make up`). Each prints its table and the ratio against a baseline
measured in the same run:

- updown: wall of `make down`, then of `make up` to every service healthy (after a warm-up
  pair); the baseline is the goal of 25 s for both.
- train: `make train TRAIN_MONTH=2021-01 VAL_MONTH=2021-02` wall, and its parts as Prefect
  records them (created -> Running, the flow run, its promotion subflow); the baseline is the
  same flow with promotion run directly in the worker container (`python -m flows.cli
  train-here --promote`: no deployment, no pick-up, no log streaming).
- burst: ``--runs`` `train` runs (promotion off, so they do not race for the aliases) created at
  once on the pool, with our worker (its `--limit` and OpenMP threads, the pool's limit)
  against a worker started with Prefect's defaults (no limit, pool limit removed, same polling
  interval), and against the same runs one after another.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from platform_names import TRAIN_DEPLOYMENT

from infra.make_env import read_env
from tests.paths import REPO_ROOT, TLC_DATA

TRAIN_MONTH, VAL_MONTH = "2021-01", "2021-02"
TRAIN_PARAMETERS = {"color": "green", "train_month": TRAIN_MONTH, "val_month": VAL_MONTH}
UNLIMITED_WORKER = "bench-unlimited-worker"


def env_file() -> str:
    """The stack's settings file."""
    return os.environ.get("ENV_FILE", ".env")


def make(*args: str) -> str:
    """Run a make target against the compose stack; its output (fails loudly)."""
    result = subprocess.run(
        ["make", *args, f"ENV_FILE={env_file()}", "STACK=compose"],
        cwd=REPO_ROOT, text=True, capture_output=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"make {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def compose(*args: str) -> str:
    """Run docker compose against the stack; its output."""
    command = ["docker", "compose", "--env-file", env_file(), *args]
    return subprocess.run(command, cwd=REPO_ROOT, text=True, capture_output=True, check=True).stdout


def timed(function: Any, *args: Any) -> float:
    """Seconds ``function(*args)`` took."""
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def use_prefect_of_stack() -> None:
    """Point this process's Prefect client at the stack's API."""
    settings = read_env(REPO_ROOT / env_file())
    os.environ["PREFECT_API_URL"] = f"http://localhost:{settings.get('PREFECT_PORT', '4200')}/api"
    os.environ["PREFECT_API_AUTH_STRING"] = settings["PREFECT_API_AUTH_STRING"]


def prepare() -> None:
    """Deployments and the two months in the data bucket (both idempotent)."""
    make("deploy")
    files = [str(TLC_DATA / f"green_tripdata_{m}.parquet") for m in (TRAIN_MONTH, VAL_MONTH)]
    make("upload-data", f"FILES={' '.join(files)}")


def champion_version(settings: dict[str, str]) -> str:
    """The champion's version, training one first when there is none."""
    from mlflow import MlflowClient

    from flows.resources.registry import version_by_alias

    client = MlflowClient(f"http://localhost:{settings.get('MLFLOW_PORT', '5000')}")
    name = settings.get("MODEL_NAME") or "taxi-trip-duration"
    version = version_by_alias(client, name, "champion")
    if version is None:
        prepare()
        make("train", f"TRAIN_MONTH={TRAIN_MONTH}", f"VAL_MONTH={VAL_MONTH}")
        version = version_by_alias(client, name, "champion")
    assert version is not None
    return str(version.version)


def median_row(label: str, samples: list[float]) -> str:
    """A markdown row: label, p50, min, max, all samples."""
    listed = ", ".join(f"{s:.1f}" for s in samples)
    return (
        f"| {label} | {statistics.median(samples):.1f} | {min(samples):.1f} | "
        f"{max(samples):.1f} | {listed} |"
    )


def updown(runs: int) -> None:
    """`make down` and `make up` walls, after one warm-up pair."""
    make("down")
    make("up")
    downs, ups = [], []
    for _ in range(runs):
        downs.append(timed(make, "down"))
        ups.append(timed(make, "up"))
        print(f"down {downs[-1]:.1f} s, up {ups[-1]:.1f} s", flush=True)
    totals = [d + u for d, u in zip(downs, ups, strict=True)]
    print(f"\n`make down && make up` to all healthy, {runs} times (s)")
    print("| step | p50 | min | max | samples |\n| --- | ---: | ---: | ---: | --- |")
    for label, samples in (("make down", downs), ("make up", ups), ("both", totals)):
        print(median_row(label, samples))
    print(f"both p50 / goal (25 s): {statistics.median(totals) / 25:.3f}")


@dataclass(frozen=True)
class TrainParts:
    """Where one `make train` spent its time (s)."""

    wall: float
    pickup: float
    flow: float
    promotion: float


def flow_run_id(output: str) -> UUID:
    """The flow run `make train` started, from its first line."""
    found = re.search(
        rf"flow run \S+ \(([0-9a-f-]{{36}})\) of {re.escape(TRAIN_DEPLOYMENT)}", output
    )
    if not found:
        raise RuntimeError(f"no flow run id in the output of make train:\n{output}")
    return UUID(found.group(1))


def seconds(start: datetime | None, end: datetime | None) -> float:
    """``end - start`` in seconds (nan when either is unknown)."""
    return (end - start).total_seconds() if start and end else float("nan")


def parts_of(run_id: UUID, wall: float) -> TrainParts:
    """Pick-up, flow and promotion times of a `train` flow run, as Prefect recorded them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])
            )
        )
        flow_names = {c.flow_id: client.read_flow(c.flow_id).name for c in children}
    promotion = next((c for c in children if flow_names[c.flow_id] == "promote"), None)
    return TrainParts(
        wall=wall,
        pickup=seconds(run.created, run.start_time),
        flow=seconds(run.start_time, run.end_time),
        promotion=seconds(promotion.start_time, promotion.end_time) if promotion else float("nan"),
    )


def make_train() -> tuple[float, str]:
    """One `make train` (wall, output)."""
    started = time.perf_counter()
    output = make("train", f"TRAIN_MONTH={TRAIN_MONTH}", f"VAL_MONTH={VAL_MONTH}")
    return time.perf_counter() - started, output


def train_here() -> float:
    """The same training and promotion run directly in the worker container (wall, s)."""
    command = [
        "exec", "-T", "worker", "python", "-m", "flows.cli", "train-here",
        "--train-month", TRAIN_MONTH, "--val-month", VAL_MONTH, "--promote",
    ]  # fmt: skip
    return timed(compose, *command)


def train(runs: int) -> None:
    """`make train` p50 and parts against training in the worker container."""
    prepare()
    use_prefect_of_stack()
    make_train()  # warm-up: caches, first connections
    measured = []
    for _ in range(runs):
        wall, output = make_train()
        measured.append(parts_of(flow_run_id(output), wall))
        print(f"make train {wall:.1f} s: {measured[-1]}", flush=True)
    direct = [train_here() for _ in range(runs)]
    print(f"\n{runs} warm runs of make train TRAIN_MONTH={TRAIN_MONTH} VAL_MONTH={VAL_MONTH} (s)")
    print("| what | p50 | min | max | samples |\n| --- | ---: | ---: | ---: | --- |")
    print(median_row("make train, command -> printed result", [m.wall for m in measured]))
    print(median_row("  created -> Running (pick-up)", [m.pickup for m in measured]))
    print(median_row("  the flow run", [m.flow for m in measured]))
    print(median_row("  of which the promotion subflow", [m.promotion for m in measured]))
    print(median_row("baseline: train-here --promote in the worker", direct))
    wall50 = statistics.median(m.wall for m in measured)
    print(f"make train p50 / baseline p50: {wall50 / statistics.median(direct):.3f}")
    print(f"make train p50 / goal (15 s): {wall50 / 15:.3f}")


@dataclass(frozen=True)
class Burst:
    """How a burst of runs went."""

    wall: float
    most_running: int
    peak_memory_mb: float
    states: dict[str, int]


def container_memory_mb(name: str) -> float:
    """A container's memory use now (MB, cgroup's count)."""
    result = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", name],
        text=True, capture_output=True,
    )  # fmt: skip
    used = result.stdout.split("/")[0].strip()
    number = float(re.sub(r"[^0-9.]", "", used) or 0)
    return number * {"G": 1024, "M": 1, "k": 1 / 1024}.get(used.rstrip("iB")[-1:], 1 / 2**20)


def burst(runs: int, container: str) -> Burst:
    """Create ``runs`` train runs at once; wait for all; wall, concurrency and memory seen."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    parameters = {**TRAIN_PARAMETERS, "promote": False}
    started = time.perf_counter()
    ids = [
        run_deployment(TRAIN_DEPLOYMENT, parameters=parameters, timeout=0).id for _ in range(runs)
    ]
    most_running, peak_memory = 0, 0.0
    memory_samples: list[float] = []
    stop = threading.Event()

    def sample_memory() -> None:
        while not stop.is_set():
            memory_samples.append(container_memory_mb(container))

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    try:
        with get_client(sync_client=True) as client:
            while True:
                states = [client.read_flow_run(i).state for i in ids]
                names = [s.name if s else "unknown" for s in states]
                most_running = max(most_running, names.count("Running"))
                if all(s and s.is_final() for s in states):
                    break
                time.sleep(0.5)
    finally:
        stop.set()
        sampler.join()
    peak_memory = max(memory_samples, default=0.0)
    wall = time.perf_counter() - started
    return Burst(wall, most_running, peak_memory, {n: names.count(n) for n in set(names)})


def one_after_another(runs: int) -> float:
    """The same runs, each started when the one before ended (wall, s)."""
    from prefect.deployments import run_deployment

    parameters = {**TRAIN_PARAMETERS, "promote": False}
    started = time.perf_counter()
    for _ in range(runs):
        ended = run_deployment(TRAIN_DEPLOYMENT, parameters=parameters, timeout=1800)
        assert ended.state and ended.state.is_completed(), ended.state  # type: ignore[union-attr]
    return time.perf_counter() - started


def pool_name() -> str:
    """The pool the stack's worker serves."""
    from flows.settings import Settings

    return read_env(REPO_ROOT / env_file()).get("WORK_POOL") or Settings.from_mapping({}).work_pool


def worker_container() -> str:
    """The compose worker's container name."""
    return compose("ps", "--format", "{{.Name}}", "worker").split()[0]


@contextmanager
def unlimited_worker() -> Iterator[str]:
    """Swap the stack's worker for one with Prefect's defaults (no limits); restore it after."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    pool = pool_name()
    compose("stop", "worker")
    with get_client(sync_client=True) as client:
        client.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=None))
    compose(
        "run", "-d", "--no-deps", "--name", UNLIMITED_WORKER,
        "-e", "PREFECT_WORKER_QUERY_SECONDS=1",
        "worker", "prefect", "worker", "start", "--pool", pool, "--type", "process",
    )  # fmt: skip
    try:
        time.sleep(5)  # the new worker's first poll
        yield UNLIMITED_WORKER
    finally:
        subprocess.run(["docker", "rm", "-f", UNLIMITED_WORKER], capture_output=True)
        compose("run", "--rm", "--no-deps", "prefect-automations")  # the pool's limit again
        compose("up", "--detach", "--wait", "worker")


def bursts(runs: int) -> None:
    """A burst with our limits, with none, and the same runs one after another."""
    prepare()
    use_prefect_of_stack()
    one_after_another(1)  # warm-up
    sequential = one_after_another(runs)
    print(f"one after another: {sequential:.1f} s", flush=True)
    ours = burst(runs, worker_container())
    print(f"ours: {ours}", flush=True)
    with unlimited_worker() as name:
        unlimited = burst(runs, name)
    print(f"no limit: {unlimited}", flush=True)
    print(f"\n{runs} `train` runs ({TRAIN_MONTH} -> {VAL_MONTH}, promotion off) on one worker")
    print("| how | wall (s) | most Running at once | worker memory peak (MB) | states |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| one after another (our worker) | {sequential:.1f} | 1 | - | all Completed |")
    for label, result in (("burst, our limits", ours), ("burst, no limit", unlimited)):
        print(
            f"| {label} | {result.wall:.1f} | {result.most_running} | "
            f"{result.peak_memory_mb:.0f} | {result.states} |"
        )
    print(f"burst ours / one after another: {ours.wall / sequential:.3f}")
    print(f"burst ours / burst no limit: {ours.wall / unlimited.wall:.3f}")


def main() -> int:
    """Run one of the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["updown", "train", "burst"])
    parser.add_argument("--runs", type=int, help="default: updown 3, train 5, burst 16")
    args = parser.parse_args()
    runs = args.runs or {"updown": 3, "train": 5, "burst": 16}[args.what]
    {"updown": updown, "train": train, "burst": bursts}[args.what](runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
