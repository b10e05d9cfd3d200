"""Batch scoring flow: one month's trips predicted by the version behind an alias (`champion`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from platform_names import (
    CHAMPION,
)
from prefect import State, flow, get_run_logger
from prefect.states import Failed

from flows.errors import InvalidParameters, UntrustedVersion
from flows.logic.params import platform_model
from flows.logic.results import MonitorResult, ScoreResult
from flows.pipelines import FLOW_TIMEOUT_S
from flows.settings import Settings
from flows.steps.ingest import data_path, load, locate_month
from flows.steps.reporting import publish_report
from flows.steps.scoring import (
    error_metrics,
    has_reference,
    load_trusted,
    log_scoring,
    predict,
    refusal_line,
    resolve_alias,
    write_predictions,
)
from flows.steps.tracking import failed_if_raises, open_run

if TYPE_CHECKING:
    import pandas as pd

    from flows.logic.predictions import ScoredBy


def monitor_scored(
    color: str, month: str | None, source: str, scored_by: ScoredBy, retrain_on_breach: bool
) -> tuple[MonitorResult | None, str | None]:
    """The month just scored against the version's reference (the `monitor` subflow), or why
    it cannot be: a version trained before monitoring existed has no reference."""
    from flows.pipelines.monitor import monitor as monitor_flow

    if not has_reference(scored_by):
        # The scoring stands; the next version will have something to be compared with.
        get_run_logger().warning(
            "not monitored: v%s has no monitoring reference (trained before monitoring)",
            scored_by.version,
        )
        return None, "no reference"
    watched = monitor_flow(
        color=color,
        path=source,
        month=month,
        model_name=scored_by.model_name,
        version=scored_by.version,
        retrain_on_breach=retrain_on_breach,
    )
    # The month was just scored by this version: monitoring reads those predictions and never
    # meets the refusal that would make it return a state.
    assert isinstance(watched, MonitorResult), watched
    return watched, None


@flow(name="score", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["score"])
def score(
    color: str = "green",
    month: str | None = None,
    path: str | None = None,
    alias: str = CHAMPION,
    model_name: str | None = None,
    monitor: bool = True,
    retrain_on_breach: bool = True,
) -> ScoreResult | State:
    """Predict one month (or file) with the version behind ``alias``; store and log the result;
    then, with ``monitor``, compare the month with the version's reference (pipelines/monitor.py),
    which asks for a retraining on a breach unless ``retrain_on_breach`` is off. A version the
    stack refuses ends the run Failed with one line saying why and what to do."""
    from flows.logic.reports import scoring_report

    settings = Settings.from_env()
    if not (month or path):
        raise InvalidParameters("give either month (YYYY-MM) or path")
    checked_path = data_path(path, "path") if path else None  # refused before anything is read
    name = platform_model(model_name, settings.model_name)
    scored_by = resolve_alias(name, alias)
    model = load_trusted(scored_by)
    if isinstance(model, UntrustedVersion):
        line = refusal_line(model, alias, "nothing was scored")
        get_run_logger().error(line)
        return Failed(message=line)
    location = checked_path or locate_month(color, str(month))
    data = load(location)
    run_id = open_run(settings.scoring_experiment_name, f"score {location.rsplit('/', 1)[-1]}")
    with failed_if_raises(run_id):
        # cast: Prefect's task typing cannot tell a sync task's result from a coroutine.
        frame = cast("pd.DataFrame", predict(scored_by, model, data))
        output_uri = write_predictions(frame, data.source, scored_by)
        metrics = error_metrics(frame)
        log_scoring(run_id, alias, scored_by, data, output_uri, metrics)
    get_run_logger().info("%d predictions by v%s -> %s", len(frame), scored_by.version, output_uri)
    watched, not_monitored = None, None
    if monitor:
        watched, not_monitored = monitor_scored(
            color, month, data.source, scored_by, retrain_on_breach
        )
    result = ScoreResult(
        model_name=name,
        alias=alias,
        version=scored_by.version,
        source=data.source,
        output_uri=output_uri,
        rows=len(frame),
        rmse=metrics.get("rmse"),
        mae=metrics.get("mae"),
        run_id=run_id,
        monitoring=watched,
        not_monitored=not_monitored,
    )
    markdown = scoring_report(result)
    publish_report("score-report", markdown, f"{name} v{scored_by.version}")
    return result
