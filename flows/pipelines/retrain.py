"""Retraining flow: started by a monitoring breach, trains on the month before the breached one
and validates on it, then the usual promotion gate (the champion is judged on the new data too)."""

from __future__ import annotations

from prefect import flow

from flows.logic.months import months_before
from flows.logic.params import platform_model
from flows.logic.results import RetrainResult
from flows.pipelines import FLOW_TIMEOUT_S
from flows.pipelines.train import train
from flows.settings import Settings
from flows.steps.retraining import (
    mark_retrained,
    retrained_as,
)


@flow(name="retrain", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["retrain"])
def retrain(
    color: str,
    month: str,
    model_name: str | None = None,
    version: str | None = None,
    reason: str = "",
) -> RetrainResult:
    """Train on the month before ``month``, validate on ``month`` and promote; once per breached
    month and ``version``."""
    name = platform_model(model_name, Settings.from_env().model_name)
    done = retrained_as(name, version, month) if version else None
    if done:
        print(f"v{version} was already retrained for {month} (as v{done}): nothing to do")
        return RetrainResult(month=month, training=None, already_retrained_as=done)
    print(f"retraining: {reason or f'asked for {month}'}")
    trained = train(
        color=color,
        train_month=months_before(month, 2)[1],
        val_month=month,
        model_name=name,
        promote=True,
    )
    if version:
        mark_retrained(name, version, month, trained.version)
    return RetrainResult(month=month, training=trained)
