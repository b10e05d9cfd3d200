"""MLflow with basic auth: request latency and 8-client logging throughput, cache off vs on.

    uv run python -m bench.mlflow_auth [--seconds 30] [--clients 8] [--requests 200]

Two runs of the same server, one after the other, on the same PostgreSQL (a throwaway cluster of
the machine's binaries) and S3 (moto's server), both with basic auth and `--workers 2`:

- baseline: MLflow's defaults for the auth app (`auth_cache_ttl_seconds = 0`: every request
  checks the password with PBKDF2);
- ours: the stack's settings (services/mlflow/start-server.sh and .env.example): the password
  cache on (MLFLOW_AUTH_CACHE_TTL_SECONDS=30) and the database pool of 4 + 4.

Latency: `--requests` sequential `experiments/search` calls as the admin, each on a new
connection. Throughput: `--clients` threads, each looping {create run, log 10 metrics, log one
100 KB artifact, end run} for `--seconds`, as one user each.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tests import servers

ADMIN = "admin"
ADMIN_PASSWORD = secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Variant:
    """A server configuration under test."""

    label: str
    cache_ttl_s: int
    pool: dict[str, str]


VARIANTS = [
    Variant("baseline: MLflow's defaults (cache off)", 0, {}),
    Variant(
        "ours: cache 30 s, pool 4 + 4",
        30,
        {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "4", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "4"},
    ),
]


def auth_ini(path: Path, database_uri: str, ttl_s: int) -> Path:
    """The basic-auth app's config, as services/mlflow/start-server.sh writes it."""
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {ttl_s}\n"
    )
    return path


def start_server(variant: Variant, postgres: servers.Postgres, s3: servers.S3Server, work: Path):
    """`mlflow server --app-name basic-auth --workers 2` on fresh databases; (url, process)."""
    suffix = secrets.token_hex(3)
    tracking = postgres.create_database(f"bench_{suffix}", "pw-" + suffix)
    users = postgres.create_database(f"bench_auth_{suffix}", "pw-" + suffix)
    bucket = f"bench-{suffix}"
    s3.client().create_bucket(Bucket=bucket)
    env = {
        **os.environ,
        **s3.env(),
        **variant.pool,
        "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://{tracking}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(16),
        "MLFLOW_AUTH_CONFIG_PATH": str(
            auth_ini(
                work / f"auth-{suffix}.ini", f"postgresql+psycopg2://{users}", variant.cache_ttl_s
            )
        ),
    }
    args = ["server", "--app-name", "basic-auth", "--workers", "2", "--serve-artifacts",
            f"--artifacts-destination=s3://{bucket}"]  # fmt: skip
    return servers.serve_on_free_port(
        "mlflow", args, env, work / f"mlflow-{suffix}.log", "/health", 180
    )


def latency_ms(url: str, count: int) -> list[float]:
    """Milliseconds of ``count`` authenticated search requests, each on a new connection."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = requests.get(
            f"{url}/api/2.0/mlflow/experiments/search?max_results=1",
            auth=(ADMIN, ADMIN_PASSWORD),
            timeout=30,
        )
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return samples


def logging_throughput(url: str, clients: int, seconds: float) -> tuple[int, int]:
    """Runs completed and errors of ``clients`` threads logging for ``seconds``."""
    from mlflow import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = (
        ADMIN,
        ADMIN_PASSWORD,
    )
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment(f"bench-{secrets.token_hex(3)}")
    payload = Path(tempfile.mkdtemp()) / "artifact.bin"
    payload.write_bytes(os.urandom(100 * 1024))
    deadline = time.monotonic() + seconds
    done, errors, lock = [0], [0], threading.Lock()

    def work() -> None:
        own = MlflowClient(tracking_uri=url)
        while time.monotonic() < deadline:
            try:
                run = own.create_run(experiment)
                for step in range(10):
                    own.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
                own.log_artifact(run.info.run_id, str(payload))
                own.set_terminated(run.info.run_id)
                with lock:
                    done[0] += 1
            except Exception:  # noqa: BLE001 (counted, not raised: the bench reports errors)
                with lock:
                    errors[0] += 1

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0], errors[0]


def main() -> int:
    """Measure both variants and print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    postgres = servers.start_postgres()
    work = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    s3 = servers.start_s3(work)
    rows = []
    try:
        for variant in VARIANTS:
            url, process = start_server(variant, postgres, s3, work)
            try:
                latency_ms(url, 5)  # first requests create the admin's session state
                samples = sorted(latency_ms(url, args.requests))
                runs, errors = logging_throughput(url, args.clients, args.seconds)
            finally:
                servers.stop_process(process)
            p50 = statistics.median(samples)
            p95 = samples[int(0.95 * (len(samples) - 1))]
            rows.append((variant.label, p50, p95, runs / args.seconds, errors))
            print(f"{variant.label}: done", flush=True)
    finally:
        s3.stop()
        postgres.stop()
    print(
        f"\n{args.requests} sequential requests; {args.clients} clients logging for "
        f"{args.seconds:.0f} s (create run, 10 metrics, 100 KB artifact, end run)"
    )
    print("| server | request p50 (ms) | p95 (ms) | runs/s | errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, p50, p95, rate, errors in rows:
        print(f"| {label} | {p50:.1f} | {p95:.1f} | {rate:.2f} | {errors} |")
    (_, base_p50, _, base_rate, _), (_, our_p50, _, our_rate, _) = rows
    print(f"request p50 ours / baseline: {our_p50 / base_p50:.3f}")
    print(f"runs/s ours / baseline:      {our_rate / max(base_rate, 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
