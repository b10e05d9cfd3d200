"""One trial of a tuning search: its parameters fitted on the training month's earlier pickups
and scored on the latest ones (never on the validation month that promotion uses), as a flow run
of its own on whichever worker has a free slot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow

from flows.logic.params import checked_params
from flows.pipelines import FLOW_TIMEOUT_S
from flows.settings import Settings
from flows.steps.ingest import load
from flows.steps.tracking import failed_if_raises, open_run
from flows.steps.trials import (
    fit_and_score,
    record_trial,
)

if TYPE_CHECKING:
    pass


@flow(name="tune-trial", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["tune-trial"])
def tune_trial(
    train_location: str, params: dict[str, Any], parent_run_id: str, number: int
) -> float:
    """One trial: fit with ``params`` on the training month's earlier pickups; its rmse."""
    settings = Settings.from_env()
    params = checked_params(params)  # before anything is fetched
    data = load(train_location)
    run_id = open_run(settings.experiment_name, f"trial {number}")
    with failed_if_raises(run_id):
        rmse, trees = fit_and_score(data.trips, params)
        record_trial(run_id, parent_run_id, number, params, rmse, trees)
    print(f"trial {number}: holdout rmse {rmse:.4f} ({trees} trees)")
    return rmse
