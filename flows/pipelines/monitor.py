"""Monitoring flow: a scored month against the model's reference; a breach asks for a retraining.

`monitor` runs after each scoring of a month (and by hand: `make monitor MONTH=...`). It logs an
MLflow run per month and version (metrics with the month as step, Evidently's HTML report, drift
share and drifted columns) and a Prefect report, and on a breach emits the breach event
(platform_names): the `retrain` deployment's trigger (prefect.yaml) starts `retrain`, and the
notification automation tells the webhook why. A month and version ask for it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from platform_names import (
    CHAMPION,
    SERVED_PREFIX,
)
from prefect import State, flow, get_run_logger
from prefect.states import Failed

from flows.errors import InvalidParameters, UntrustedVersion
from flows.logic.params import platform_model
from flows.logic.results import MonitorResult
from flows.pipelines import FLOW_TIMEOUT_S
from flows.settings import Settings
from flows.steps.ingest import data_path, load, locate_month
from flows.steps.monitoring import (
    compare,
    figures_of,
    log_monitoring,
    monitor_result,
    month_label,
    months_watched,
    read_reference,
    read_served,
    request_retrain,
)
from flows.steps.reporting import publish_report
from flows.steps.scoring import (
    load_trusted,
    predict,
    read_predictions,
    refusal_line,
    resolve_alias,
    version_by_number,
    write_predictions,
)
from flows.steps.tracking import failed_if_raises, open_run

if TYPE_CHECKING:
    import pandas as pd

    from flows.logic.predictions import ScoredBy


@dataclass(frozen=True)
class Watch:
    """What one monitoring run watches: its month, the run's label, where the records are, and
    their source (``batch``: a scored month; ``served``: what the model server answered)."""

    month: str
    label: str
    location: str
    source: str


def checked_request(month: str | None, path: str | None, served: bool) -> tuple[str | None, ...]:
    """The month and path a run was given, refused before anything is read when they cannot
    name a month of the source."""
    from flows.logic.months import checked_month

    if served:
        if not month:
            raise InvalidParameters("monitoring served traffic needs month (YYYY-MM)")
        return checked_month(month), None
    if not (month or path):
        raise InvalidParameters("give either month (YYYY-MM) or path")
    return month, data_path(path, "path") if path else None


def what_to_watch(color: str, month: str | None, path: str | None, served: bool) -> Watch:
    """The month's records: the served ones under served/, or a scored month's file."""
    if served:
        assert month is not None
        location = f"{SERVED_PREFIX}/year={month[:4]}/month={month[5:]}/"
        return Watch(month, f"served {month}", location, "served")
    location = path or locate_month(color, str(month))
    label = month_label(month, location)
    return Watch(label, label, location, "batch")


def records_watched(watch: Watch, scored_by: ScoredBy, alias: str | None) -> pd.DataFrame | State:
    """The monitored frame of the month: the served records, or the month's predictions by
    the version (scored now, as `score` would, when it has not scored the month yet); a Failed
    state when the version is refused."""
    from flows.logic.monitoring import from_predictions, from_served

    if watch.source == "served":
        return from_served(read_served(watch.month, scored_by))
    frame = read_predictions(watch.location, scored_by)
    if frame is None:
        model = load_trusted(scored_by)
        if isinstance(model, UntrustedVersion):
            line = refusal_line(model, alias, "nothing was monitored")
            get_run_logger().error(line)
            return Failed(message=line)
        data = load(watch.location)
        frame = cast("pd.DataFrame", predict(scored_by, model, data))
        write_predictions(frame, data.source, scored_by)
    return from_predictions(frame)


@flow(name="monitor", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["monitor"])
def monitor(
    color: str = "green",
    month: str | None = None,
    path: str | None = None,
    model_name: str | None = None,
    version: str | None = None,
    retrain_on_breach: bool = True,
    served: bool = False,
) -> MonitorResult | State:
    """Compare a month's predictions by ``version`` (default: the champion) with its reference;
    log the figures; on a breach, ask for a retraining. With ``served``, the month is what the
    model server answered (drift only: actual durations come later, with TLC's month)."""
    from flows.logic.monitoring import decide
    from flows.logic.reports import monitoring_report

    settings = Settings.from_env()
    month, path = checked_request(month, path, served)  # refused before anything is read
    name = platform_model(model_name, settings.model_name)
    scored_by = version_by_number(name, version) if version else resolve_alias(name, CHAMPION)
    watch = what_to_watch(color, month, path, served)
    # First what cannot be retried away: a version without a reference is refused at once.
    reference, reference_rmse = read_reference(scored_by)
    current = records_watched(watch, scored_by, None if version else CHAMPION)
    if isinstance(current, State):
        return current
    report, html = compare(reference, current)
    figures = figures_of(current, reference_rmse, report)
    decision = decide(figures, settings.monitor_thresholds())
    experiment = settings.monitoring_experiment_name
    run_id = open_run(experiment, f"monitor {watch.label} v{scored_by.version}")
    with failed_if_raises(run_id):
        log_monitoring(run_id, scored_by, watch.month, figures, decision, html, watch.source)
    requested = False
    if decision.breached and retrain_on_breach:
        requested = request_retrain(scored_by, color, watch.month, decision, watch.source)
    watched = months_watched(experiment, scored_by)
    result = monitor_result(
        scored_by, watch.label, watch.location, figures, decision, watched, requested, run_id
    )
    markdown = monitoring_report(result, settings.monitor_thresholds())
    publish_report("monitoring-report", markdown, result.reason)
    print(result.reason)
    return result
