"""Training in this process, against any tracking server: the development path (no worker)."""

from __future__ import annotations

import argparse
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

# Prefect starts a temporary server when no PREFECT_API_URL is set. Its first start on a new
# PREFECT_HOME (new SQLite database, all migrations) took more than Prefect's default 20 s on a
# loaded 2-core machine, and its telemetry service, writing at the same moment, made the
# migrations fail with "database is locked".
EPHEMERAL_STARTUP_TIMEOUT_S = 180


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


def allow_named_files(*paths: str | None) -> None:
    """Let this process's flows read the local files named on its own command line: flows read
    explicit paths only from the data store (flows/logic/locations.py), which on a worker guards
    what a request may make it read; here the caller is the one reading."""
    folders = [str(Path(p).resolve().parent) for p in paths if p and "://" not in p]
    if folders:
        os.environ["LOCAL_DATA_DIRS"] = os.pathsep.join(
            [*filter(None, [os.environ.get("LOCAL_DATA_DIRS")]), *folders]
        )


def train_here(args: argparse.Namespace) -> int:
    """Train in this process against MLFLOW_TRACKING_URI; print run id, rmse and version."""
    from flows.pipelines.train import train

    allow_named_files(args.train, args.val)
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
    line = f"run_id={result.run_id} rmse={result.rmse:.4f} version={result.version}"
    if args.promote:
        line += f" champion={str(result.champion).lower()}"
    print(line)
    return 0
