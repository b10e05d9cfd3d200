"""Scheduled flow: score the newest published month with the champion, judge what the model
server answered last month, then train on the newest months and promote if the new model is
better."""

from __future__ import annotations

from datetime import UTC, datetime

from platform_names import CHAMPION
from prefect import flow, get_run_logger, task

from flows.errors import NothingPublished
from flows.logic.months import bucket_key, months_before, official_url
from flows.logic.results import TrainResult
from flows.pipelines import FLOW_TIMEOUT_S
from flows.pipelines.score import score
from flows.pipelines.train import train
from flows.settings import Settings
from flows.steps.retry import IO_RETRIES

# TLC publishes a month about two months after it ends; look back far enough for late releases.
LOOKBACK_MONTHS = 8


@task(**IO_RETRIES)
def newest_available_month(color: str, today: str) -> str:
    """The newest month before ``today`` (YYYY-MM) that is in the data store or published."""
    from flows.resources.store import data_store
    from flows.resources.tlc_files import is_published

    settings = Settings.from_env()
    store = data_store(settings)
    for month in months_before(today, LOOKBACK_MONTHS + 1)[1:]:
        if store and store.exists(bucket_key(color, month)):
            return month
        if is_published(official_url(settings.tlc_base_url, color, month)):
            return month
    raise NothingPublished(
        f"no {color} month published in the {LOOKBACK_MONTHS} months before {today}"
    )


@task(**IO_RETRIES)
def has_champion(model_name: str) -> bool:
    """Whether the model has a champion to score with."""
    from mlflow import MlflowClient

    from flows.resources.registry import version_by_alias

    return version_by_alias(MlflowClient(), model_name, CHAMPION) is not None


@task(**IO_RETRIES)
def served_by_champion(model_name: str, month: str) -> bool:
    """Whether the model server answered with the champion in ``month`` (served/ has it)."""
    from mlflow import MlflowClient
    from platform_names import SERVED_PREFIX

    from flows.resources.registry import version_by_alias
    from flows.resources.store import BucketStore, FolderStore, data_store

    champion = version_by_alias(MlflowClient(), model_name, CHAMPION)
    store = data_store(Settings.from_env())
    if champion is None or not isinstance(store, BucketStore | FolderStore):
        return False
    year, number = month.split("-")
    prefix = f"{SERVED_PREFIX}/year={year}/month={number}/{model_name}-v{champion.version}-"
    return next(iter(store.listing(prefix)), None) is not None


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
