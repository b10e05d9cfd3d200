"""Training flow: load -> validate -> build features -> train -> evaluate -> log and register.

Heavy libraries (MLflow, xgboost, matplotlib) are imported inside the tasks that use them, so a
flow-run process reaches Running, and `prefect deploy` reads this module, without waiting for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from platform_names import CHALLENGER
from prefect import flow, get_run_logger

from flows.logic.params import checked_params, platform_model
from flows.logic.results import TrainResult
from flows.pipelines import FLOW_TIMEOUT_S
from flows.pipelines.promote import promote as promote_flow
from flows.settings import Settings
from flows.steps.ingest import load, month_or_path
from flows.steps.reporting import publish_report
from flows.steps.tracking import failed_if_raises, open_run
from flows.steps.training import (
    chosen_params,
    fit,
    is_recorded,
    log_run,
    register,
    score,
)

if TYPE_CHECKING:
    from flows.model import TripDurationRegressor


def promote_on_stack(model_name: str, val_month: str | None, val_location: str) -> None:
    """Run the promote deployment (the stack's own queue) on the same validation month, and
    wait for its decision; a failed promotion fails this run too."""
    from platform_names import PROMOTE_DEPLOYMENT

    from flows.errors import NotPromotable
    from flows.resources.deployments import start_runs, wait_until_final

    where = {"val_month": val_month} if val_month else {"val_path": val_location}
    (started,) = start_runs(PROMOTE_DEPLOYMENT, [{"model_name": model_name, **where}])
    get_run_logger().info("promotion handed to the stack: flow run %s", started.id)
    ended: list[Any] = []
    if wait_until_final([started.id], FLOW_TIMEOUT_S["promote"], ended.append, poll_s=3):
        raise NotPromotable(f"the stack's promotion (flow run {started.id}) did not end in time")
    state = ended[0].state
    if not state.is_completed():
        raise NotPromotable(
            f"the stack's promotion (flow run {started.id}) {state.name}: {state.message}"
        )


@flow(name="train", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["train"])
def train(
    color: str = "green",
    train_month: str | None = None,
    val_month: str | None = None,
    train_path: str | None = None,
    val_path: str | None = None,
    model_name: str | None = None,
    params: dict[str, Any] | None = None,
    promote: bool = False,
) -> TrainResult:
    """Train on one month, validate on another, log to MLflow and register a challenger.

    Give months (looked up in the data bucket, downloaded there from TLC when missing) or explicit
    paths/URIs (local path, s3://, http(s)://). With ``promote``, the promotion flow then compares
    the new challenger with the champion on the same validation data.
    """
    settings = Settings.from_env()
    params = checked_params(params)  # before anything is fetched
    name = platform_model(model_name, settings.model_name)
    train_location = month_or_path(color, train_month, train_path, "train")
    val_location = month_or_path(color, val_month, val_path, "val")
    # Bad data stops the flow here, before any MLflow run exists.
    train_data, val_data = load(train_location), load(val_location)
    run_id = open_run(settings.experiment_name)
    with failed_if_raises(run_id):
        # cast: the model's sklearn base class is untyped, so mypy cannot tell it from a coroutine.
        model = cast("TripDurationRegressor", fit(train_data.trips, params or {}))
        predicted, metrics = score(model, val_data.trips)
        logged = log_run(
            run_id, model, train_data, val_data, predicted, metrics, chosen_params(params)
        )
    version = register(logged, metrics["rmse"], name)
    print(f"run {logged.run_id}: rmse {metrics['rmse']:.3f}, {name} v{version} ({CHALLENGER})")
    decision = None
    if promote and is_recorded(name, version):
        decision = promote_flow(model_name=name, val_path=val_location)
    elif promote:
        # A worker on another host may not move champion: the stack's promotion decides.
        promote_on_stack(name, val_month, val_location)
    result = TrainResult(
        run_id=logged.run_id,
        experiment_id=logged.experiment_id,
        rmse=metrics["rmse"],
        mae=metrics["mae"],
        r2=metrics["r2"],
        model_name=name,
        version=version,
        model_uri=f"models:/{name}/{version}",
        run_url=logged.run_url,
        promotion=decision,
    )
    from flows.logic.reports import training_report

    markdown = training_report(result, train_data, val_data)
    publish_report("train-report", markdown, f"{name} v{version}: rmse {result.rmse:.3f}")
    return result
