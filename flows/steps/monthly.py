"""Tasks of the monthly flow: the newest month TLC has, whether a champion exists and served."""

from __future__ import annotations

from platform_names import CHAMPION
from prefect import task

from flows.errors import NothingPublished
from flows.logic.months import bucket_key, months_before, official_url
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
