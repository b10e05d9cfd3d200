"""The model server against `mlflow models serve` of the same version, and with its traffic log
on and off, in the same run.

    uv run python -m bench.serving [--requests 300] [--clients 8] [--seconds 15]

Against the running compose stack of ENV_FILE (.env), with a champion (`make train` first; the
bench trains one if there is none). Two servers answer for the same version:

- ours: the `serving` service (follows @champion, checks MLflow accounts, adds the version
  header), called with the admin's credentials;
- baseline: `mlflow models serve -m models:/<model>/<version> --env-manager local` with MLflow's
  other defaults (one uvicorn worker), in a container of the same image and environment as the
  `serving` service (`docker compose run serving ...`), published on 127.0.0.1.

- ours, no traffic log: the same `serving` service's command and settings with
  SERVING_TRAFFIC_LOG=false (`docker compose run -e ... serving`), published on 127.0.0.1: what
  logging every answered record (services/serving/traffic.py) costs a request.

`--env-manager local` because the default (a virtualenv built at start) needs pyenv and a network;
the scoring code that runs is the same. Each server gets ``--requests`` one-record calls one after
another (latency p50/p95), then ``--clients`` threads calling for ``--seconds`` (throughput, p95).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass

import numpy as np
import requests

from bench.stack import champion_version, compose
from infra.make_env import read_env
from infra.waiting import answers
from tests.paths import REPO_ROOT
from tests.servers import free_port

BASELINE = "bench-mlflow-models-serve"
UNLOGGED = "bench-serving-no-traffic-log"
ONE_TRIP = {
    "dataframe_records": [
        {
            "lpep_pickup_datetime": "2021-02-01 08:00:00",
            "PULocationID": 74,
            "DOLocationID": 75,
            "trip_distance": 1.2,
        }
    ]
}


@dataclass(frozen=True)
class Measured:
    """One server's numbers."""

    p50_ms: float
    p95_ms: float
    loaded_per_s: float
    loaded_p95_ms: float
    errors: int


def call(url: str, auth: tuple[str, str], session: requests.Session) -> tuple[float, bool]:
    """One prediction: (milliseconds, ok)."""
    started = time.perf_counter()
    answer = session.post(f"{url}/invocations", json=ONE_TRIP, auth=auth, timeout=30)
    return (time.perf_counter() - started) * 1000, answer.status_code == 200


def measure(url: str, auth: tuple[str, str], count: int, clients: int, seconds: float) -> Measured:
    """Sequential latency, then throughput under ``clients`` concurrent callers."""
    with requests.Session() as session:
        for _ in range(20):  # warm-up: connections, first predictions
            call(url, auth, session)
        sequential = [call(url, auth, session) for _ in range(count)]
    loaded: list[tuple[float, bool]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                result = call(url, auth, session)
                with lock:
                    loaded.append(result)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies = [ms for ms, _ in sequential]
    return Measured(
        p50_ms=statistics.median(latencies),
        p95_ms=float(np.percentile(latencies, 95)),
        loaded_per_s=len(loaded) / elapsed,
        loaded_p95_ms=float(np.percentile([ms for ms, _ in loaded], 95)),
        errors=sum(not ok for _, ok in sequential + loaded),
    )


def start_baseline(model: str, version: str, port: int) -> None:
    """`mlflow models serve` of the version, in a container like the serving service's."""
    compose(
        "run", "-d", "--no-deps", "--name", BASELINE, "-p", f"127.0.0.1:{port}:8080",
        "serving", "mlflow", "models", "serve", "-m", f"models:/{model}/{version}",
        "--env-manager", "local", "--host", "0.0.0.0", "--port", "8080",
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not answers(f"http://127.0.0.1:{port}/ping"):
        if time.monotonic() > deadline:
            raise TimeoutError("mlflow models serve did not answer /ping in 180 s")
        time.sleep(1)


def start_unlogged(port: int) -> None:
    """The `serving` service as compose runs it, its traffic log off."""
    compose(
        "run", "-d", "--no-deps", "--name", UNLOGGED, "-p", f"127.0.0.1:{port}:8080",
        "-e", "SERVING_TRAFFIC_LOG=false", "serving",
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not answers(f"http://127.0.0.1:{port}/ping"):
        if time.monotonic() > deadline:
            raise TimeoutError("the serving service without a traffic log did not answer in 180 s")
        time.sleep(1)


def main() -> int:
    """Measure the three servers; print the table and the ratios."""
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    settings = read_env(REPO_ROOT / os.environ.get("ENV_FILE", ".env"))
    auth = (settings["MLFLOW_ADMIN_USERNAME"], settings["MLFLOW_ADMIN_PASSWORD"])
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = auth
    model = settings.get("MODEL_NAME") or "taxi-trip-duration"
    version = champion_version(settings)
    ours_url = f"http://localhost:{settings.get('SERVING_PORT', '9696')}"
    port, unlogged_port = free_port(), free_port()
    start_baseline(model, version, port)
    start_unlogged(unlogged_port)
    try:
        baseline = measure(
            f"http://127.0.0.1:{port}", auth, args.requests, args.clients, args.seconds
        )
        ours = measure(ours_url, auth, args.requests, args.clients, args.seconds)
        unlogged = measure(
            f"http://127.0.0.1:{unlogged_port}", auth, args.requests, args.clients, args.seconds
        )
    finally:
        subprocess.run(["docker", "rm", "-f", BASELINE, UNLOGGED], capture_output=True)
    print(
        f"\n{model} v{version}, one record per call: {args.requests} calls one after another, "
        f"then {args.clients} clients for {args.seconds:g} s"
    )
    loaded = f"{args.clients} clients"
    print(f"| server | p50 (ms) | p95 (ms) | {loaded}: calls/s | {loaded}: p95 (ms) | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    servers = (
        ("baseline: mlflow models serve", baseline),
        ("ours: serving (traffic log on)", ours),
        ("ours: serving, SERVING_TRAFFIC_LOG=false", unlogged),
    )
    for label, m in servers:
        print(
            f"| {label} | {m.p50_ms:.1f} | {m.p95_ms:.1f} | {m.loaded_per_s:.1f} | "
            f"{m.loaded_p95_ms:.1f} | {m.errors} |"
        )
    print(f"p50 ours / baseline: {ours.p50_ms / baseline.p50_ms:.3f}")
    print(f"p95 ours / baseline: {ours.p95_ms / baseline.p95_ms:.3f}")
    print(f"throughput ours / baseline: {ours.loaded_per_s / baseline.loaded_per_s:.3f}")
    print(f"p50 traffic log on / off: {ours.p50_ms / unlogged.p50_ms:.3f}")
    print(f"p95 traffic log on / off: {ours.p95_ms / unlogged.p95_ms:.3f}")
    print(f"throughput traffic log on / off: {ours.loaded_per_s / unlogged.loaded_per_s:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
