"""Tasks of one tuning trial: its split, fit and score, its MLflow run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from platform_names import PARENT_RUN_TAG, TRIAL_TAG
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.steps.retry import IO_RETRIES

if TYPE_CHECKING:
    import pandas as pd


# The latest share of the training month's pickups each trial is scored on.
TUNING_HOLDOUT_SHARE = 0.2


def tuning_split(trips: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training month split by pickup time: trials fit on the earlier part, are scored on
    the latest ``TUNING_HOLDOUT_SHARE`` (never on the validation month)."""
    from flows.model import time_ordered_split

    earlier, latest = time_ordered_split(trips, TUNING_HOLDOUT_SHARE)
    return trips.loc[earlier], trips.loc[latest]


@task(cache_policy=NO_CACHE)
def fit_and_score(trips: pd.DataFrame, params: dict[str, Any]) -> tuple[float, int]:
    """Fit on the earlier pickups, score on the latest: (holdout rmse, trees used)."""
    from flows.model import evaluate, train_model, trees_used

    fit_trips, holdout = tuning_split(trips)
    model = train_model(fit_trips, params)
    return evaluate(model.predict(holdout), holdout["duration"])["rmse"], trees_used(model)


@task(**IO_RETRIES)
def record_trial(run_id: str, parent_run_id: str, number: int, params: dict[str, Any],
                 rmse: float, trees: int) -> None:  # fmt: skip
    """The trial's MLflow run: a child of the tuning run, with its parameters and rmse."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_tag(run_id, PARENT_RUN_TAG, parent_run_id)
    client.set_tag(run_id, TRIAL_TAG, str(number))
    for key, value in params.items():
        client.log_param(run_id, key, value)
    client.log_metric(run_id, "holdout_rmse", rmse)
    client.log_metric(run_id, "trees_used", trees)
    client.set_terminated(run_id, "FINISHED")
