"""Scheduled flow: score the newest published month with the champion, judge what the model
server answered last month, then train on the newest months and promote if the new model is
better."""

from __future__ import annotations

from datetime import UTC, datetime

from platform_names import CHAMPION
from prefect import flow, get_run_logger

from flows.logic.months import months_before
from flows.logic.results import TrainResult
from flows.pipelines import FLOW_TIMEOUT_S
from flows.pipelines.score import score
from flows.pipelines.train import train
from flows.settings import Settings
from flows.steps.monthly import (
    has_champion,
    newest_available_month,
    served_by_champion,
)


def judge_served_traffic(model_name: str, month: str) -> None:
    """Monitor what the model server answered with the champion in ``month``, if anything (a
    failure there is logged: it does not stop the month's training)."""
    from flows.pipelines.monitor import monitor

    logger = get_run_logger()
    if not served_by_champion(model_name, month):
        logger.info("the model server answered nothing with the %s in %s", CHAMPION, month)
        return
    state = monitor(month=month, served=True, retrain_on_breach=False, return_state=True)
    if not state.is_completed():
        logger.warning("monitoring the traffic served in %s failed: %s", month, state.message)


@flow(name="monthly", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["monthly"])
def monthly(color: str = "green", today: str | None = None) -> TrainResult:
    """Score the newest available month with the champion, then validate on it, train on the
    one before it, and promote."""
    current = today or datetime.now(UTC).strftime("%Y-%m")
    val_month = newest_available_month(color, current)
    train_month = months_before(val_month, 2)[1]
    logger = get_run_logger()
    # The champion meets the new month before any model has been trained or chosen on it.
    model_name = Settings.from_env().model_name
    if has_champion(model_name):
        # Monitored, but no retraining on a breach: this run trains on the month right after.
        # A champion the stack refuses fails its scoring, not the training after it.
        scored = score(
            color=color, month=val_month, alias=CHAMPION, retrain_on_breach=False,
            return_state=True,
        )  # fmt: skip
        if scored.is_failed():
            logger.warning("%s not scored: %s", val_month, scored.message)
        judge_served_traffic(model_name, months_before(current, 2)[1])  # last calendar month
    else:
        logger.info("no %s yet: nothing to score %s with", CHAMPION, val_month)
    logger.info("training on %s %s, validating on %s", color, train_month, val_month)
    return train(color=color, train_month=train_month, val_month=val_month, promote=True)
