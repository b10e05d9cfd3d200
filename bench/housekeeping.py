"""Housekeeping: what 100 training runs leave in MLflow's database and bucket once some are
deleted, after upstream `mlflow gc` (the baseline) and after the platform's housekeeping flow,
and what a year at 50 runs a day would take with and without it.

    uv run python -m bench.housekeeping [--runs 100] [--deleted 60] [--runs-per-day 50]

No Docker: a throwaway PostgreSQL (the machine's binaries), moto's S3 server, the stack's
tracking server as compose runs it (stack-registry app, accounts, the database-size function
postgres-init installs) and a Prefect server. Each "training run" is the train flow's own
logging (flows/pipelines/train.py open_run + log_run: params, inputs, metrics, the two plots, the
reference sample, the model with its code) of one booster fitted once on green 2021-01 and
validated on 2021-02: the fit itself is skipped, so what is measured is what a run stores.

Two experiments get `--runs` runs each, and `--deleted` of each are deleted; then
- baseline: `mlflow gc --older-than 0s` (MLflow 3.17's, as its docs say to run it with a proxy:
  the backend store URI and MLFLOW_TRACKING_URI) on the first experiment's deleted runs;
- ours: the `housekeeping` flow with HOUSEKEEPING_RETENTION_DAYS=0 on the second's.
For each: the experiment's objects and bytes left in the bucket, and its rows left in MLflow's
tables. Database sizes are PostgreSQL's (pg_database_size), which reuses deleted rows' space
rather than returning it. The yearly projection multiplies the bytes one run stores (measured
here) by runs a year: every run kept (without), or the kept ones plus each deleted run for the
retention (with, 30 days by default).
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests import servers
from tests.paths import REPO_ROOT, TLC_DATA

STACK_ACCOUNT, PLATFORM_MODEL = "prefect-worker", "taxi-trip-duration"


def start(workdir: Path) -> dict[str, Any]:
    """PostgreSQL, S3, the stack-registry tracking server and Prefect; what the bench needs."""

    postgres = servers.start_postgres()
    s3 = servers.start_s3(workdir)
    both = servers.start_accounts(postgres, s3, workdir, STACK_ACCOUNT, PLATFORM_MODEL)
    tracking, stack = both.tracking, both.stack
    bucket = tracking.bucket
    database = tracking.backend.rsplit("/", 1)[1]
    subprocess.run(
        [str(postgres.bindir / "psql"), "-h", "127.0.0.1", "-p", str(postgres.port),
         "-U", "postgres", "-d", database, "--no-psqlrc", "-v", "ON_ERROR_STOP=1",
         "-v", f"reader={database}", "-f", str(REPO_ROOT / "infra/postgres/database-sizes.sql")],
        env={**os.environ, "PGPASSWORD": postgres.password}, check=True, capture_output=True,
    )  # fmt: skip
    prefect_db = postgres.create_database("prefect_bench", secrets.token_urlsafe(16))
    prefect = servers.start_prefect(f"postgresql+asyncpg://{prefect_db}", workdir)
    return {
        "postgres": postgres,
        "s3": s3,
        "tracking": tracking,
        "accounts": both,
        "stack": stack,
        "prefect": prefect,
        "bucket": bucket,
        "database": database,
    }


def sign_in(servers_: dict[str, Any], account: tuple[str, str]) -> None:
    """This process's MLflow client on the tracking server as ``account``."""
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = servers_["tracking"].url
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = account
    mlflow.set_tracking_uri(servers_["tracking"].url)


def fitted() -> tuple[Any, Any, Any, Any, dict[str, float], dict[str, Any]]:
    """One model fitted as the train flow fits it, its data and validation figures."""
    from flows.steps.ingest import load
    from flows.steps.training import chosen_params, fit, score
    from tests.integration.params import QUICK

    train = load.fn(str(TLC_DATA / "green_tripdata_2021-01.parquet"))
    val = load.fn(str(TLC_DATA / "green_tripdata_2021-02.parquet"))
    model = fit.fn(train.trips, QUICK)
    predicted, metrics = score.fn(model, val.trips)
    return model, train, val, predicted, metrics, chosen_params(QUICK)


def log_runs(experiment: str, count: int, trained: tuple[Any, ...]) -> list[str]:
    """``count`` runs logged by the train flow's own steps; their ids."""
    from flows.steps.tracking import open_run
    from flows.steps.training import log_run

    model, train, val, predicted, metrics, params = trained
    ids = []
    for number in range(count):
        run_id = open_run.fn(experiment)
        log_run.fn(run_id, model, train, val, predicted, metrics, params)
        ids.append(run_id)
        if (number + 1) % 10 == 0:
            print(f"  {experiment}: {number + 1}/{count} runs logged", flush=True)
    return ids


def log_and_delete(runs: int, deleted_runs: int) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Two experiments (baseline, ours) of ``runs`` runs each, the first ``deleted_runs`` of
    each deleted; their ids and the deleted runs' ids. A flow, so the train flow's tasks log."""
    from mlflow import MlflowClient
    from prefect import flow

    @flow(name="bench-housekeeping-runs")
    def logged() -> tuple[dict[str, str], dict[str, list[str]]]:
        client, trained = MlflowClient(), fitted()
        experiments, deleted = {}, {}
        for label in ("baseline", "ours"):
            name = f"bench-{label}-{secrets.token_hex(3)}"
            experiments[label] = client.create_experiment(name)
            deleted[label] = log_runs(name, runs, trained)[:deleted_runs]
            for run_id in deleted[label]:
                client.delete_run(run_id)
        return experiments, deleted

    return logged()


def footprint(servers_: dict[str, Any], experiment_id: str) -> dict[str, int]:
    """One experiment's objects and bytes in the bucket, and its runs and logged models rows."""
    import psycopg2

    client = servers_["s3"].client()
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=servers_["bucket"], Prefix=f"{experiment_id}/"
    )
    items = [item for page in pages for item in page.get("Contents", [])]
    tracking = servers_["tracking"]
    with psycopg2.connect(f"postgresql://{tracking.backend}") as db, db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE experiment_id = %s", (experiment_id,))
        runs = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM logged_models WHERE experiment_id = %s", (experiment_id,)
        )
        models = cursor.fetchone()[0]
    return {
        "objects": len(items),
        "bytes": sum(int(item["Size"]) for item in items),
        "runs": runs,
        "logged_models": models,
    }


def database_bytes(servers_: dict[str, Any]) -> int:
    """The tracking database's size (PostgreSQL's pg_database_size)."""
    import psycopg2

    tracking = servers_["tracking"]
    with psycopg2.connect(f"postgresql://{tracking.backend}") as db, db.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return int(cursor.fetchone()[0])


def upstream_gc(servers_: dict[str, Any], admin: tuple[str, str], run_ids: list[str]) -> float:
    """`mlflow gc --older-than 0s --run-ids ...` as MLflow documents it behind a proxy (the
    baseline experiment's deleted runs only); its seconds."""
    tracking = servers_["tracking"]
    env = {
        **os.environ,
        **servers_["s3"].env(),
        "MLFLOW_TRACKING_URI": tracking.url,
        "MLFLOW_TRACKING_USERNAME": admin[0],
        "MLFLOW_TRACKING_PASSWORD": admin[1],
    }
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mlflow", "gc", "--older-than", "0s",
         "--backend-store-uri", f"postgresql+psycopg2://{tracking.backend}",
         "--run-ids", ",".join(run_ids)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


def our_housekeeping(servers_: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """The platform's `housekeeping` flow, retention 0, as the stack's worker; seconds, result."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipelines.housekeeping import housekeeping

    os.environ["HOUSEKEEPING_RETENTION_DAYS"] = "0"
    started = time.perf_counter()
    with temporary_settings({PREFECT_API_URL: servers_["prefect"].api_url}):
        result = housekeeping()
    return time.perf_counter() - started, result


def mb(size: float) -> str:
    """Megabytes, for the table."""
    return f"{size / 1e6:8.2f} MB"


def main() -> int:
    """Run the bench and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="runs per experiment")
    parser.add_argument("--deleted", type=int, default=60, help="of which deleted")
    parser.add_argument("--runs-per-day", type=float, default=50)
    parser.add_argument("--retention-days", type=float, default=30)
    args = parser.parse_args()
    if not 0 < args.deleted <= args.runs:
        parser.error("--deleted must be from 1 to --runs")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    with tempfile.TemporaryDirectory(prefix="bench-housekeeping-") as tmp:
        found = start(Path(tmp))
        try:
            return measure(found, args)
        finally:
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)  # before its server stops
            for name in ("accounts", "prefect", "s3", "postgres"):
                found[name].stop()


def measure(found: dict[str, Any], args: argparse.Namespace) -> int:
    """Log, delete, clean up both ways, print."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.logic.retention import Growth, yearly_projection

    sign_in(found, found["stack"])
    os.environ.update({k: v for k, v in found["s3"].env().items() if k != "MLFLOW_S3_ENDPOINT_URL"})
    empty_db = database_bytes(found)
    started = time.perf_counter()
    with temporary_settings({PREFECT_API_URL: found["prefect"].api_url}):
        experiments, deleted = log_and_delete(args.runs, args.deleted)
    logging_s = time.perf_counter() - started
    logged = {label: footprint(found, eid) for label, eid in experiments.items()}
    full_db = database_bytes(found)

    sign_in(found, found["tracking"].admin)
    gc_s = upstream_gc(found, found["tracking"].admin, deleted["baseline"])
    sign_in(found, found["stack"])
    ours_s, result = our_housekeeping(found)
    after = {label: footprint(found, eid) for label, eid in experiments.items()}
    cleaned_db = database_bytes(found)

    runs_logged = 2 * args.runs
    per_run = Growth(
        database_bytes_per_run=(full_db - empty_db) / runs_logged,
        bucket_bytes_per_run=logged["ours"]["bytes"] / args.runs,
    )
    print(f"\n{runs_logged} runs logged by the train flow's own steps in {logging_s:.0f} s; "
          f"{args.deleted} of each experiment's {args.runs} deleted")  # fmt: skip
    print(f"one run stores: {mb(per_run.bucket_bytes_per_run)} in the bucket "
          f"({logged['ours']['objects'] / args.runs:.0f} objects), "
          f"{mb(per_run.database_bytes_per_run)} of database")  # fmt: skip
    print(f"\n{'':34}{'objects':>9}{'bucket':>12}{'runs':>6}{'models':>8}{'seconds':>9}")
    for label, seconds in (("baseline", gc_s), ("ours", ours_s)):
        name = "upstream mlflow gc" if label == "baseline" else "platform housekeeping flow"
        for stage, figures in (("before", logged[label]), ("after", after[label])):
            shown = f"{seconds:9.1f}" if stage == "after" else ""
            print(f"{name + ', ' + stage:34}{figures['objects']:9d} {mb(figures['bytes'])}"
                  f"{figures['runs']:6d}{figures['logged_models']:8d}{shown}")  # fmt: skip
    left = {
        label: after[label]["bytes"] - (args.runs - args.deleted) * per_run.bucket_bytes_per_run
        for label in after
    }
    print(f"\nbucket bytes of deleted runs left behind: upstream gc {mb(left['baseline'])}, "
          f"ours {mb(left['ours'])}")  # fmt: skip
    freed = {label: logged[label]["bytes"] - after[label]["bytes"] for label in after}
    if freed["baseline"] > 0:
        print(f"bytes freed, ours / upstream gc: {freed['ours'] / freed['baseline']:.2f}x")
    print(f"tracking database: {mb(empty_db)} empty, {mb(full_db)} with the runs, "
          f"{mb(cleaned_db)} after both (PostgreSQL reuses the space, keeps the file)")  # fmt: skip
    share = args.deleted / args.runs
    year = yearly_projection(per_run, args.runs_per_day, share, args.retention_days)
    print(f"\na year at {args.runs_per_day:g} runs a day, {share:.0%} of them deleted:")
    print(f"  without housekeeping: {year['without'] / 1e9:8.1f} GB")
    print(f"  with housekeeping ({args.retention_days:g}-day retention): "
          f"{year['with'] / 1e9:8.1f} GB ({year['with'] / year['without']:.2f}x)")  # fmt: skip
    del result  # the flow printed its report above
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
