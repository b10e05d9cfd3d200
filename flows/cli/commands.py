"""The verbs of the command line: each starts a deployment (or works here) and reports.

The grammar is in grammar.py (`python -m flows.cli --help`).
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platform_names import (
    HOUSEKEEPING_DEPLOYMENT,
    MONITOR_DEPLOYMENT,
    SCORE_DEPLOYMENT,
    TRAIN_DEPLOYMENT,
    TUNE_DEPLOYMENT,
)

from flows.cli.follow import run_and_report, state_name
from flows.cli.grammar import parser
from flows.cli.here import train_here
from flows.cli.lazy import import_in_background
from flows.cli.summaries import (
    monitoring_summary,
    scoring_summary,
    training_summary,
    tuning_summary,
)
from flows.errors import InvalidParameters, TripDataError
from flows.settings import Settings

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun


def upload(paths: list[str]) -> int:
    """Put local TLC files into the data store; stop at the first bad one."""
    from flows.resources.store import data_store
    from flows.resources.tlc_files import upload_month_file

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


def run_training(color: str, train_month: str, val_month: str, timeout_s: int) -> int:
    """Run the `train` deployment with promotion on the worker, follow it, report the result."""
    parameters = {"color": color, "train_month": train_month, "val_month": val_month}
    return run_and_report(
        TRAIN_DEPLOYMENT, {**parameters, "promote": True}, training_summary, timeout_s
    )


def score_parameters(color: str, month: str, alias: str, monitor: bool = True) -> dict[str, Any]:
    """The `score` deployment's parameters for one month."""
    return {"color": color, "month": month, "alias": alias, "monitor": monitor}


def run_scoring(color: str, month: str, alias: str, timeout_s: int) -> int:
    """Run the `score` deployment for one month, follow it, print where the predictions went."""

    def summary(flow_run_id: str) -> list[str]:
        return [f"{key + ':':<11} {value}" for key, value in scoring_summary(flow_run_id).items()]

    parameters = score_parameters(color, month, alias)
    return run_and_report(SCORE_DEPLOYMENT, parameters, summary, timeout_s)


def backfill_months(first: str | None, last: str | None, months: list[str] | None) -> list[str]:
    """The months a backfill scores: an explicit list, or every month from first to last."""
    from flows.logic.months import checked_month, months_between

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

    from flows.resources.deployments import start_runs, wait_until_final

    import_in_background("mlflow")
    started = time.monotonic()
    flow_runs = start_runs(
        SCORE_DEPLOYMENT, (score_parameters(color, month, alias, monitor) for month in months)
    )
    month_of = {flow_run.id: month for flow_run, month in zip(flow_runs, months, strict=True)}
    for flow_run in flow_runs:
        print(f"{month_of[flow_run.id]}: flow run {flow_run.name} ({flow_run.id})", flush=True)
    failed = 0

    def report(ended: FlowRun) -> None:
        nonlocal failed
        month = month_of[ended.id]
        if ended.state is not None and ended.state.is_completed():
            summary = scoring_summary(str(ended.id))
            print(
                f"{month}: Completed  {summary['model']}  rows {summary['rows']}  "
                f"rmse {summary['rmse']}  -> {summary['output']}",
                flush=True,
            )
        else:
            failed += 1
            message = ended.state.message if ended.state else ""
            print(f"{month}: {state_name(ended)}  {message}", flush=True)

    pending = wait_until_final(month_of, timeout_s, on_final=report)
    for flow_run in pending:
        print(f"{month_of[flow_run.id]}: not finished after {timeout_s} s", flush=True)
    elapsed = time.monotonic() - started
    print(f"{len(months)} months in {elapsed:.1f} s, {failed + len(pending)} not completed")
    return 1 if failed or pending else 0


def run_monitoring(
    color: str, month: str, version: str | None, timeout_s: int, served: bool = False
) -> int:
    """Run the `monitor` deployment for one month (or what the model server answered in it),
    follow it, print the figures and decision."""
    parameters: dict[str, Any] = {"color": color, "month": month, "served": served}
    if version:
        parameters["version"] = version
    return run_and_report(MONITOR_DEPLOYMENT, parameters, monitoring_summary, timeout_s)


def run_tuning(color: str, train_month: str, val_month: str, trials: int, timeout_s: int) -> int:
    """Run the `tune` deployment (trials as flow runs on the pool), follow it, report."""
    parameters: dict[str, Any] = {
        "color": color,
        "train_month": train_month,
        "val_month": val_month,
        "trials": trials,
    }
    return run_and_report(TUNE_DEPLOYMENT, parameters, tuning_summary, timeout_s)


def run_housekeeping(retention_days: float | None, dry_run: bool, timeout_s: int) -> int:
    """Run the `housekeeping` deployment now and follow it (its report is in its log).

    Another retention is the run's environment (a job variable, which the gateway lets only
    admins set), not a parameter: a teammate may run housekeeping, not shorten the retention."""
    if retention_days is not None and retention_days < 0:
        raise InvalidParameters(f"--retention-days must be 0 or more, not {retention_days}")
    variables = (
        {"env": {"HOUSEKEEPING_RETENTION_DAYS": str(retention_days)}}
        if retention_days is not None
        else None
    )
    return run_and_report(
        HOUSEKEEPING_DEPLOYMENT,
        {"dry_run": dry_run},
        lambda flow_run_id: [f"report: the artifact 'housekeeping' of flow run {flow_run_id}"],
        timeout_s,
        variables,
    )


def print_history(alias: str | None, limit: int) -> int:
    """Print the model's alias moves, newest first."""
    from flows.resources.registry import alias_moves

    name = Settings.from_env().model_name
    moves = alias_moves(name, alias, limit)
    print(f"{name}: {len(moves)} alias moves on record, newest first")
    for move in moves:
        change = f"{move['from_version'] or '-'} -> {move['to_version'] or '(removed)'}"
        when, who = move["at"][:19], move["actor"]
        print(f"{when}  {move['alias']:<11} {change:<12} {who:<16} {move['reason']}")
    return 0


def rollback(version: str | None, reason: str) -> int:
    """Put the champion back; 1 when there is nothing to put back."""
    from mlflow import MlflowClient

    from flows.errors import MissingModel
    from flows.resources.registry import roll_back

    name = Settings.from_env().model_name
    who = os.environ.get("STARTED_BY") or getpass.getuser()
    try:
        old, new = roll_back(
            MlflowClient(), name, version, f"by {who}" + (f": {reason}" if reason else "")
        )
    except MissingModel as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{name}: champion is version {new} again (was {old}); the model server follows it")
    return 0


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
        "monitor": lambda: run_monitoring(
            args.color, args.month, args.version, args.timeout, args.served
        ),
        "history": lambda: print_history(args.alias, args.limit),
        "housekeeping": lambda: run_housekeeping(args.retention_days, args.dry_run, args.timeout),
        "rollback": lambda: rollback(args.version, args.reason),
        "tune": lambda: run_tuning(
            args.color, args.train_month, args.val_month, args.trials, args.timeout
        ),
    }
    try:
        return commands[args.command]()
    except InvalidParameters as error:
        print(error, file=sys.stderr)
        return 2
