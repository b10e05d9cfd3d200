"""The platform's command line: what `make train`, `make upload-data` and friends run.

    python -m flows.cli upload PATH...                     store TLC files in the data store
    python -m flows.cli train --train-month M --val-month M  run the `train` deployment, follow it
    python -m flows.cli train-here --train PATH --val PATH   train in this process (development)
    python -m flows.cli score --month M                    run the `score` deployment, follow it
    python -m flows.cli backfill --from M --to M           score months side by side, one run each
    python -m flows.cli monitor --month M                  run the `monitor` deployment, follow it
    python -m flows.cli tune --train-month M --val-month M  run the `tune` deployment, follow it

Commands that start deployments print the flow run's logs as they come, then a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.errors import InvalidParameters, TripDataError
from flows.lazy import import_in_background
from flows.settings import Settings
from flows.tlc import COLORS

if TYPE_CHECKING:
    from uuid import UUID

    from mlflow.entities import Run
    from prefect.client.schemas.objects import FlowRun, Log

DEFAULT_TIMEOUT_S = 1800
# Prefect starts a temporary server when no PREFECT_API_URL is set. Its first start on a new
# PREFECT_HOME (new SQLite database, all migrations) took more than Prefect's default 20 s on a
# loaded 2-core machine, and its telemetry service, writing at the same moment, made the
# migrations fail with "database is locked".
EPHEMERAL_STARTUP_TIMEOUT_S = 180


def upload(paths: list[str]) -> int:
    """Put local TLC files into the data store; stop at the first bad one."""
    from flows.data import upload_month_file
    from flows.store import data_store

    store = data_store(Settings.from_env())
    if store is None:
        print("neither DATA_BUCKET nor DATA_DIR is set: nowhere to store files", file=sys.stderr)
        return 2
    for path in paths:
        try:
            print(f"{path} -> {upload_month_file(store, Path(path))}")
        except TripDataError as error:
            print(f"not uploaded: {error}", file=sys.stderr)
            return 1
    return 0


def follow(deployment: str, parameters: dict[str, Any], timeout_s: int) -> FlowRun:
    """Start a deployment's flow run and print its logs as they come; return the ended run."""
    from prefect.deployments import run_deployment

    # Called outside an event loop, run_deployment runs synchronously and returns the flow run.
    flow_run: FlowRun = run_deployment(deployment, parameters=parameters, timeout=0)  # type: ignore[assignment]
    print(f"flow run {flow_run.name} ({flow_run.id}) of {deployment}", flush=True)
    ended = asyncio.run(stream_until_final(flow_run.id, timeout_s))
    print(f"flow run {ended.name} ({ended.id}): {state_name(ended)}", flush=True)
    return ended


def routine(log: Log) -> bool:
    """A task's "Finished in state Completed()" line: one per task, nothing to read in it."""
    return log.task_run_id is not None and log.message.startswith("Finished in state Completed")


def state_event(event: str) -> str | None:
    """The state a flow-run event announces ("prefect.flow-run.Running" -> "Running")."""
    prefix, _, state = event.rpartition(".")
    return state if prefix == "prefect.flow-run" and state[:1].isupper() else None


def state_name(flow_run: FlowRun) -> str:
    """The flow run's state, by name."""
    return str(flow_run.state.name) if flow_run.state else "unknown"


async def stream_until_final(flow_run_id: UUID, timeout_s: float) -> FlowRun:
    """Print the flow run's log lines and state changes as they come, until it ends."""
    import anyio
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import Log
    from prefect.events.subscribers import FlowRunSubscriber

    with anyio.move_on_after(timeout_s):
        # After the terminal event, wait 1 s (Prefect's default: 3) for the last log lines.
        async with FlowRunSubscriber(flow_run_id=flow_run_id, straggler_timeout=1) as subscriber:
            async for item in subscriber:
                if isinstance(item, Log):
                    if not routine(item):
                        print(f"{item.timestamp:%H:%M:%S} | {item.message}", flush=True)
                elif (state := state_event(item.event)) is not None:
                    print(f"{item.occurred:%H:%M:%S} | flow run {state}", flush=True)
    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)


def finished_run(flow_run_id: str) -> Run:
    """The FINISHED MLflow run a flow run made (flows tag their runs with the flow-run id; a
    retried flow run may also have a FAILED run from its crashed attempt)."""
    from mlflow import MlflowClient

    from flows.registry import runs_of_flow_run

    runs = runs_of_flow_run(MlflowClient(), flow_run_id, status="FINISHED")
    if not runs:
        raise LookupError(f"no FINISHED MLflow run is tagged with flow run {flow_run_id}")
    return runs[0]


def run_and_report(
    deployment: str,
    parameters: dict[str, Any],
    summary: Callable[[str], list[str]],
    timeout_s: int,
) -> int:
    """Run a deployment on the worker, print its log lines as they come, then ``summary`` of
    the ended flow run (read from MLflow); the exit code."""
    import_in_background("mlflow")  # the summary needs it; the flow run takes longer than that
    ended = follow(deployment, parameters, timeout_s)
    if not (ended.state and ended.state.is_completed()):
        print(ended.state.message if ended.state else "", file=sys.stderr)
        return 1
    try:
        print("\n".join(summary(str(ended.id))))
    except LookupError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def version_lines(run: Run) -> list[str]:
    """The registered version a training run made, and whether (and why) it is champion."""
    from mlflow import MlflowClient

    from flows.registry import CHAMPION, PROMOTION_TAG_PREFIX, versions_of_run

    client = MlflowClient()
    name = Settings.from_env().model_name
    version = client.get_model_version(
        name, versions_of_run(client, name, run.info.run_id)[0].version
    )
    reason = version.tags.get(PROMOTION_TAG_PREFIX + "reason", "not decided")
    return [
        f"model:      {name} version {version.version}",
        f"champion:   {'yes' if CHAMPION in version.aliases else 'no'} ({reason})",
    ]


def training_summary(flow_run_id: str) -> list[str]:
    """The lines `make train` ends with: MLflow run, rmse, version, champion or not."""
    from flows.tracking import run_url

    run = finished_run(flow_run_id)
    return [
        f"MLflow run: {run_url(run)}",
        f"rmse:       {run.data.metrics['rmse']:.4f}",
        *version_lines(run),
    ]


def run_training(color: str, train_month: str, val_month: str, timeout_s: int) -> int:
    """Run the `train` deployment with promotion on the worker, follow it, report the result."""
    parameters = {"color": color, "train_month": train_month, "val_month": val_month}
    return run_and_report(
        "train/train", {**parameters, "promote": True}, training_summary, timeout_s
    )


def scoring_summary(flow_run_id: str) -> dict[str, str]:
    """What a finished `score` flow run wrote and how well, from its MLflow scoring run."""
    run = finished_run(flow_run_id)
    tags, metrics = run.data.tags, run.data.metrics
    return {
        "output": tags["output_uri"],
        "model": f"{tags['model_name']} version {tags['model_version']} (@{tags['alias']})",
        "rows": f"{metrics['rows']:.0f}",
        "rmse": f"{metrics['rmse']:.4f}" if "rmse" in metrics else "-",
        "mae": f"{metrics['mae']:.4f}" if "mae" in metrics else "-",
    }


def score_parameters(color: str, month: str, alias: str, monitor: bool = True) -> dict[str, Any]:
    """The `score` deployment's parameters for one month."""
    return {"color": color, "month": month, "alias": alias, "monitor": monitor}


def run_scoring(color: str, month: str, alias: str, timeout_s: int) -> int:
    """Run the `score` deployment for one month, follow it, print where the predictions went."""

    def summary(flow_run_id: str) -> list[str]:
        return [f"{key + ':':<11} {value}" for key, value in scoring_summary(flow_run_id).items()]

    return run_and_report("score/score", score_parameters(color, month, alias), summary, timeout_s)


def backfill_months(first: str | None, last: str | None, months: list[str] | None) -> list[str]:
    """The months a backfill scores: an explicit list, or every month from first to last."""
    from flows.tlc import checked_month, months_between

    if months:
        return [checked_month(month) for month in months]
    if not (first and last):
        raise InvalidParameters("give --from and --to, or --months")
    return months_between(first, last)


def run_backfill(
    color: str, months: list[str], alias: str, timeout_s: int, monitor: bool = False
) -> int:
    """Score each month as its own flow run, all queued at once (the pool runs them side by
    side, up to its limits); one line per month as each ends."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    import_in_background("mlflow")
    started = time.monotonic()
    pending = {}
    for month in months:
        flow_run: FlowRun = run_deployment(  # type: ignore[assignment]
            "score/score", parameters=score_parameters(color, month, alias, monitor), timeout=0
        )
        pending[flow_run.id] = month
        print(f"{month}: flow run {flow_run.name} ({flow_run.id})", flush=True)
    failed = 0
    with get_client(sync_client=True) as client:
        while pending and time.monotonic() - started < timeout_s:
            for flow_run_id, month in list(pending.items()):
                ended = client.read_flow_run(flow_run_id)
                if not (ended.state and ended.state.is_final()):
                    continue
                del pending[flow_run_id]
                if ended.state.is_completed():
                    summary = scoring_summary(str(flow_run_id))
                    print(
                        f"{month}: Completed  {summary['model']}  rows {summary['rows']}  "
                        f"rmse {summary['rmse']}  -> {summary['output']}",
                        flush=True,
                    )
                else:
                    failed += 1
                    print(f"{month}: {state_name(ended)}  {ended.state.message}", flush=True)
            time.sleep(1)
    for month in pending.values():
        print(f"{month}: not finished after {timeout_s} s", flush=True)
    elapsed = time.monotonic() - started
    print(f"{len(months)} months in {elapsed:.1f} s, {failed + len(pending)} not completed")
    return 1 if failed or pending else 0


def monitoring_summary(flow_run_id: str) -> list[str]:
    """The figures and the decision of a finished `monitor` flow run, from its MLflow run."""
    run = finished_run(flow_run_id)
    tags, metrics = run.data.tags, run.data.metrics
    return [
        f"model:       {tags['model_name']} version {tags['model_version']}, {tags['month']}",
        f"rmse:        {metrics['rmse']:.4f} ({metrics['rmse_increase']:+.1%} against validation)",
        f"mae:         {metrics['mae']:.4f}",
        f"drift share: {metrics['drift_share']:.2f} ({tags.get('drifted_columns') or 'none'})",
        f"decision:    {'breach' if tags['breached'] == 'true' else 'ok'}: {tags['reason']}",
    ]


def run_monitoring(color: str, month: str, version: str | None, timeout_s: int) -> int:
    """Run the `monitor` deployment for one month, follow it, print the figures and decision."""
    parameters: dict[str, Any] = {"color": color, "month": month}
    if version:
        parameters["version"] = version
    return run_and_report("monitor/monitor", parameters, monitoring_summary, timeout_s)


def tuning_summary(flow_run_id: str) -> list[str]:
    """The lines `make tune` ends with: the search, the best trial, the version it trained."""
    from mlflow import MlflowClient

    from flows.tracking import run_url

    parent = finished_run(flow_run_id)
    trained = MlflowClient().search_runs(
        [parent.info.experiment_id], f"tags.`tuning.run_id` = '{parent.info.run_id}'"
    )
    if not trained:
        raise LookupError(f"no training run follows the tuning run {parent.info.run_id}")
    params = parent.data.params
    best = {k.removeprefix("best_"): v for k, v in params.items() if k.startswith("best_")}
    return [
        f"tuning run: {run_url(parent)}",
        f"trials:     {params.get('trials')}, best holdout rmse "
        f"{parent.data.metrics['best_holdout_rmse']:.4f}",
        f"best:       {', '.join(f'{k}={v}' for k, v in sorted(best.items()))}",
        f"rmse:       {trained[0].data.metrics['rmse']:.4f} (validation month)",
        *version_lines(trained[0]),
    ]


def run_tuning(color: str, train_month: str, val_month: str, trials: int, timeout_s: int) -> int:
    """Run the `tune` deployment (trials as flow runs on the pool), follow it, report."""
    parameters = {"color": color, "train_month": train_month, "val_month": val_month}
    return run_and_report("tune/tune", {**parameters, "trials": trials}, tuning_summary, timeout_s)


def ephemeral_server_settings() -> AbstractContextManager[Any]:
    """Settings for Prefect's temporary server (none when a real server is configured)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    if PREFECT_API_URL.value():
        return nullcontext()
    timeout = max(
        EPHEMERAL_STARTUP_TIMEOUT_S, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    )
    return temporary_settings(
        {
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: timeout,
            PREFECT_SERVER_ANALYTICS_ENABLED: False,
        }
    )


def train_here(args: argparse.Namespace) -> int:
    """Train in this process against MLFLOW_TRACKING_URI; print run id, rmse and version."""
    from flows.train import train

    with ephemeral_server_settings():
        result = train(
            color=args.color,
            train_month=args.train_month,
            val_month=args.val_month,
            train_path=args.train,
            val_path=args.val,
            model_name=args.model_name,
            promote=args.promote,
        )
    line = f"run_id={result['run_id']} rmse={result['rmse']:.4f} version={result['version']}"
    if args.promote:
        line += f" champion={str(result['champion']).lower()}"
    print(line)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line's grammar."""
    top = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True)

    up = commands.add_parser("upload", help="store local TLC parquet files in the data store")
    up.add_argument("paths", nargs="+")

    tr = commands.add_parser("train", help="run the train deployment (with promotion), follow it")
    tr.add_argument("--color", default="green", choices=COLORS)
    tr.add_argument("--train-month", required=True)
    tr.add_argument("--val-month", required=True)
    tr.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds to wait")

    here = commands.add_parser("train-here", help="train in this process (no deployment)")
    here.add_argument("--train", help="training file: local path, s3:// or http(s):// URL")
    here.add_argument("--val", help="validation file: local path, s3:// or http(s):// URL")
    here.add_argument("--color", default="green", choices=COLORS)
    here.add_argument("--train-month", help="YYYY-MM, instead of --train")
    here.add_argument("--val-month", help="YYYY-MM, instead of --val")
    here.add_argument("--model-name", help="registered model name (default: MODEL_NAME)")
    here.add_argument("--promote", action="store_true", help="then run the promotion flow")

    sc = commands.add_parser("score", help="run the score deployment for a month, follow it")
    sc.add_argument("--color", default="green", choices=COLORS)
    sc.add_argument("--month", required=True)
    sc.add_argument("--alias", default="champion", help="the model version to use, by alias")
    sc.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds to wait")

    bf = commands.add_parser("backfill", help="score a range of months, one flow run each")
    bf.add_argument("--color", default="green", choices=COLORS)
    bf.add_argument("--from", dest="first", help="first month, YYYY-MM")
    bf.add_argument("--to", dest="last", help="last month, YYYY-MM")
    bf.add_argument("--months", nargs="+", help="these months instead of --from/--to")
    bf.add_argument("--alias", default="champion", help="the model version to use, by alias")
    bf.add_argument("--monitor", action="store_true", help="monitor each month too (may retrain)")
    bf.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds to wait")

    tu = commands.add_parser("tune", help="run the tune deployment (Optuna), follow it")
    tu.add_argument("--color", default="green", choices=COLORS)
    tu.add_argument("--train-month", required=True)
    tu.add_argument("--val-month", required=True)
    tu.add_argument("--trials", type=int, default=20)
    tu.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S * 2, help="seconds to wait")

    mo = commands.add_parser("monitor", help="run the monitor deployment for a month, follow it")
    mo.add_argument("--color", default="green", choices=COLORS)
    mo.add_argument("--month", required=True)
    mo.add_argument("--version", help="the model version to watch (default: the champion)")
    mo.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds to wait")
    return top


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command; its exit code."""
    args = parser().parse_args(argv)
    commands: dict[str, Callable[[], int]] = {
        "upload": lambda: upload(args.paths),
        "train": lambda: run_training(args.color, args.train_month, args.val_month, args.timeout),
        "train-here": lambda: train_here(args),
        "score": lambda: run_scoring(args.color, args.month, args.alias, args.timeout),
        "backfill": lambda: run_backfill(
            args.color,
            backfill_months(args.first, args.last, args.months),
            args.alias,
            args.timeout,
            args.monitor,
        ),
        "monitor": lambda: run_monitoring(args.color, args.month, args.version, args.timeout),
        "tune": lambda: run_tuning(
            args.color, args.train_month, args.val_month, args.trials, args.timeout
        ),
    }
    try:
        return commands[args.command]()
    except InvalidParameters as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
