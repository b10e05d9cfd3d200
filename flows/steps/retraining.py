"""Tasks of the retrain flow: what a breach already retrained, and marking it."""

from __future__ import annotations

from platform_names import RETRAINED_TAG_PREFIX
from prefect import task

from flows.steps.retry import IO_RETRIES


@task(**IO_RETRIES)
def retrained_as(model_name: str, version: str, month: str) -> str | None:
    """The version a retraining for ``month`` already made from ``version``, if any."""
    from mlflow import MlflowClient

    tags = MlflowClient().get_model_version(model_name, version).tags
    return tags.get(RETRAINED_TAG_PREFIX + month)


@task(**IO_RETRIES)
def mark_retrained(model_name: str, version: str, month: str, new_version: str) -> None:
    """Tag the breached version with the version its retraining for ``month`` made."""
    from mlflow import MlflowClient

    MlflowClient().set_model_version_tag(
        model_name, version, RETRAINED_TAG_PREFIX + month, new_version
    )
