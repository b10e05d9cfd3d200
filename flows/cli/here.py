"""Training in this process, against any tracking server: the development path (no worker)."""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager, nullcontext
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


def train_here(args: argparse.Namespace) -> int:
    """Train in this process against MLFLOW_TRACKING_URI; print run id, rmse and version."""
    from flows.pipelines.train import train

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
