"""The command line's grammar: what `python -m flows.cli` takes."""

from __future__ import annotations

import argparse

from platform_names import CHAMPION

from flows.logic.months import COLORS

DEFAULT_TIMEOUT_S = 1800
USAGE = """The platform's command line: what `make train`, `make upload-data` and friends run.

    python -m flows.cli upload PATH...                     store TLC files in the data store
    python -m flows.cli train --train-month M --val-month M  run the `train` deployment, follow it
    python -m flows.cli train-here --train PATH --val PATH   train in this process (development)
    python -m flows.cli score --month M                    run the `score` deployment, follow it
    python -m flows.cli backfill --from M --to M           score months side by side, one run each
    python -m flows.cli monitor --month M                  run the `monitor` deployment, follow it
    python -m flows.cli tune --train-month M --val-month M  run the `tune` deployment, follow it
    python -m flows.cli history [--alias champion]         every move of the model's aliases
    python -m flows.cli housekeeping [--dry-run]           run the `housekeeping` deployment
    python -m flows.cli rollback [--version N]             put the previous champion back

Commands that start deployments print the flow run's logs as they come, then a summary.
"""


def parser() -> argparse.ArgumentParser:
    """The command line's grammar: what `python -m flows.cli` takes."""
    top = argparse.ArgumentParser(
        description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter
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
    sc.add_argument("--alias", default=CHAMPION, help="the model version to use, by alias")
    sc.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds to wait")

    hi = commands.add_parser("history", help="every recorded move of the model's aliases")
    hi.add_argument("--alias", help="only this alias's moves (default: all)")
    hi.add_argument("--limit", type=int, default=50)

    rb = commands.add_parser("rollback", help="put the champion back (default: the previous)")
    rb.add_argument("--version", help="the version to make champion (default: the one before)")
    rb.add_argument("--reason", default="", help="why, for the history")

    bf = commands.add_parser("backfill", help="score a range of months, one flow run each")
    bf.add_argument("--color", default="green", choices=COLORS)
    bf.add_argument("--from", dest="first", help="first month, YYYY-MM")
    bf.add_argument("--to", dest="last", help="last month, YYYY-MM")
    bf.add_argument("--months", nargs="+", help="these months instead of --from/--to")
    bf.add_argument("--alias", default=CHAMPION, help="the model version to use, by alias")
    bf.add_argument("--monitor", action="store_true", help="monitor each month too (may retrain)")
    bf.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds to wait")

    tu = commands.add_parser("tune", help="run the tune deployment (Optuna), follow it")
    tu.add_argument("--color", default="green", choices=COLORS)
    tu.add_argument("--train-month", required=True)
    tu.add_argument("--val-month", required=True)
    tu.add_argument("--trials", type=int, default=20)
    tu.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S * 2, help="seconds to wait")

    hk = commands.add_parser("housekeeping", help="run the housekeeping deployment, follow it")
    hk.add_argument("--retention-days", type=float, help="default: HOUSEKEEPING_RETENTION_DAYS")
    hk.add_argument("--dry-run", action="store_true", help="report what it would delete, only")
    hk.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds to wait")

    mo = commands.add_parser("monitor", help="run the monitor deployment for a month, follow it")
    mo.add_argument("--color", default="green", choices=COLORS)
    mo.add_argument("--month", required=True)
    mo.add_argument("--version", help="the model version to watch (default: the champion)")
    mo.add_argument(
        "--served", action="store_true", help="what the model server answered that month"
    )
    mo.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds to wait")
    return top
