"""Monitoring flow: a scored month against the model's reference; a breach asks for a retraining.

`monitor` runs after each scoring of a month (and by hand: `make monitor MONTH=...`). It logs an
MLflow run per month and version (metrics with the month as step, Evidently's HTML report, drift
share and drifted columns) and a Prefect report, and on a breach emits the event
``taxi.monitoring.breach``: the `retrain` deployment's trigger (prefect.yaml) starts `retrain`, and
the notification automation tells the webhook why. A month and version ask for it once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.batch import (
    predict,
    read_predictions,
    resolve_alias,
    version_by_number,
    write_predictions,
)
from flows.errors import InvalidParameters, MissingModel
from flows.months import load, locate_month
from flows.registry import CHAMPION
from flows.retry import IO_RETRIES
from flows.settings import Settings
from flows.tracking import failed_if_raises, open_run

if TYPE_CHECKING:
    import pandas as pd

    from flows.monitoring import Decision, Figures
    from flows.predictions import ScoredBy

MONITORING_EXPERIMENT_SUFFIX = "-monitoring"
BREACH_EVENT = "taxi.monitoring.breach"
# Tags on the watched version: a breach reported for a month, and the retraining it started.
BREACH_TAG, RETRAINED_TAG = "monitoring.breach.", "monitoring.retrained."


@dataclass(frozen=True)
class MonitorResult:
    """A month's figures for one version, and what they called for."""

    model_name: str
    version: str
    month: str
    source: str
    rows: int
    rmse: float
    mae: float
    reference_rmse: float
    rmse_increase: float
    drift_share: float
    drifted_columns: list[str]
    breached: bool
    breached_metrics: list[str]  # the thresholds crossed (flows/monitoring.py's metric names)
    reason: str
    months_watched: list[str]
    retrain_requested: bool
    run_id: str


def monitoring_experiment(settings: Settings) -> str:
    """The MLflow experiment of monitoring runs, beside the training experiment."""
    return settings.experiment_name + MONITORING_EXPERIMENT_SUFFIX


@task(**IO_RETRIES)
def has_reference(scored_by: ScoredBy) -> bool:
    """Whether the version's training run logged a monitoring reference (versions trained before
    monitoring existed did not)."""
    from mlflow import MlflowClient

    from flows.monitoring import REFERENCE_ARTIFACT

    folder = REFERENCE_ARTIFACT.rsplit("/", 1)[0]
    listed = {a.path for a in MlflowClient().list_artifacts(scored_by.run_id, folder)}
    return REFERENCE_ARTIFACT in listed


@task(**IO_RETRIES)
def read_reference(scored_by: ScoredBy) -> tuple[pd.DataFrame, float]:
    """The version's reference sample and its validation rmse, from its training run."""
    import tempfile

    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from flows.monitoring import REFERENCE_ARTIFACT

    if not has_reference.fn(scored_by):
        raise MissingModel(
            f"version {scored_by.version} of {scored_by.model_name} has no {REFERENCE_ARTIFACT} "
            "(trained before monitoring existed): train a new version to monitor it"
        )
    with tempfile.TemporaryDirectory() as target:
        path = mlflow.artifacts.download_artifacts(
            run_id=scored_by.run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=target
        )
        reference = pd.read_parquet(path)
    rmse = MlflowClient().get_run(scored_by.run_id).data.metrics["rmse"]
    return reference, float(rmse)


@task(cache_policy=NO_CACHE)
def compare(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[dict[str, Any], str]:
    """Evidently's drift and regression report of the month against the reference."""
    from flows.monitoring import evidently_report

    return evidently_report(reference, current)


def figures_of(current: pd.DataFrame, reference_rmse: float, report: dict[str, Any]) -> Figures:
    """The month's numbers: our rmse and mae (as training computes them), Evidently's drift."""
    from flows.model import evaluate
    from flows.monitoring import Figures, drift_of

    scores = evaluate(current["prediction"].to_numpy(), current["actual"])
    share, columns = drift_of(report)
    return Figures(len(current), scores["rmse"], scores["mae"], reference_rmse, share, columns)


@task(**IO_RETRIES)
def log_monitoring(
    run_id: str, scored_by: ScoredBy, month: str, figures: Figures, decision: Decision, html: str
) -> None:
    """The monitoring run: figures as metrics at the month's step, the report, the decision."""
    import mlflow

    from flows.monitoring import month_step

    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags(
            {
                "model_name": scored_by.model_name,
                "model_version": scored_by.version,
                "month": month,
                "drifted_columns": ",".join(figures.drifted_columns),
                "breached": str(decision.breached).lower(),
                "reason": decision.reason(month, f"{scored_by.model_name} v{scored_by.version}"),
            }
        )
        metrics = {
            "rmse": figures.rmse,
            "mae": figures.mae,
            "rmse_increase": figures.rmse_increase,
            "drift_share": figures.drift_share,
            "drifted_columns": float(len(figures.drifted_columns)),
            "rows": float(figures.rows),
        }
        mlflow.log_metrics(metrics, step=month_step(month))
        mlflow.log_text(html, "report.html")


@task(**IO_RETRIES)
def months_watched(experiment: str, scored_by: ScoredBy) -> list[str]:
    """The months this version has been monitored on so far, oldest first."""
    import mlflow

    from flows.registry import quoted

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = mlflow.search_runs(
        [found.experiment_id],
        filter_string=(
            f"tags.model_name = {quoted(scored_by.model_name)} and "
            f"tags.model_version = {quoted(scored_by.version)} and "
            "attributes.status = 'FINISHED'"
        ),
        output_format="list",
    )
    return sorted({run.data.tags["month"] for run in runs})


@task(**IO_RETRIES)
def request_retrain(scored_by: ScoredBy, color: str, month: str, decision: Decision) -> bool:
    """Emit the breach event, once per month and version; True when emitted now."""
    from mlflow import MlflowClient
    from prefect.events import emit_event

    client = MlflowClient()
    tag = BREACH_TAG + month
    version = client.get_model_version(scored_by.model_name, scored_by.version)
    reason = decision.reason(month, f"{scored_by.model_name} v{scored_by.version}")
    if tag in version.tags:
        get_run_logger().info("breach on %s already reported for v%s", month, scored_by.version)
        return False
    client.set_model_version_tag(scored_by.model_name, scored_by.version, tag, reason)
    emit_event(
        event=BREACH_EVENT,
        resource={
            "prefect.resource.id": f"taxi.model.{scored_by.model_name}.{scored_by.version}",
            "prefect.resource.name": scored_by.model_name,
            "taxi.model": scored_by.model_name,
            "taxi.version": scored_by.version,
            "taxi.month": month,
            "taxi.color": color,
        },
        payload={"reason": reason, "breaches": [asdict(b) for b in decision.breaches]},
    )
    return True


def report_markdown(result: MonitorResult, settings: Settings) -> str:
    """The Prefect report: metric, reference, this month, threshold, breached?"""
    watched = result.months_watched
    reach = (
        f"{len(watched)} month(s) of figures for v{result.version}: {watched[0]} to {watched[-1]}"
        if watched
        else "the first month of figures for this version"
    )
    from flows.monitoring import DRIFT_SHARE, RMSE_INCREASE

    rmse_breached = RMSE_INCREASE in result.breached_metrics
    drift_breached = DRIFT_SHARE in result.breached_metrics
    lines = [
        f"# `{result.model_name}` v{result.version} on {result.month}: "
        + ("breach" if result.breached else "within thresholds")
        + (", retraining asked for" if result.retrain_requested else ""),
        "",
        f"{result.reason}. One month is not a trend: {reach}.",
        "",
        "| metric | reference | this month | threshold | breached? |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| rmse (min) | {result.reference_rmse:.3f} | {result.rmse:.3f} | "
        f"+{settings.monitor_max_rmse_increase:.0%} | {'yes' if rmse_breached else 'no'} |",
        f"| mae (min) | - | {result.mae:.3f} | - | - |",
        f"| drift share | 0 | {result.drift_share:.2f} | {settings.monitor_max_drift_share:.2f} | "
        f"{'yes' if drift_breached else 'no'} |",
        "",
        f"Drifted columns: {', '.join(result.drifted_columns) or 'none'}. "
        f"Evidently's full report: `report.html` of MLflow run {result.run_id}.",
    ]
    return "\n".join(lines)


def month_label(month: str | None, source: str) -> str:
    """The month a source stands for (monitoring runs are per month)."""
    from flows.predictions import month_of

    if month:
        return month
    found = month_of(source)
    if found is None:
        raise InvalidParameters(
            f"{source}: monitoring needs a month; give month, or a file with a TLC name "
            "(green_tripdata_YYYY-MM.parquet)"
        )
    return found[1]


@flow(name="monitor", log_prints=True)
def monitor(
    color: str = "green",
    month: str | None = None,
    path: str | None = None,
    model_name: str | None = None,
    version: str | None = None,
    retrain_on_breach: bool = True,
) -> dict[str, Any]:
    """Compare a month's predictions by ``version`` (default: the champion) with its reference;
    log the figures; on a breach, ask for a retraining."""
    from prefect.artifacts import create_markdown_artifact

    from flows.monitoring import decide, from_predictions

    settings = Settings.from_env()
    if not (month or path):
        raise InvalidParameters("give either month (YYYY-MM) or path")
    name = model_name or settings.model_name
    scored_by = version_by_number(name, version) if version else resolve_alias(name, CHAMPION)
    location = path or locate_month(color, str(month))
    label = month_label(month, location)
    # First what cannot be retried away: a version without a reference is refused at once.
    reference, reference_rmse = read_reference(scored_by)
    frame = read_predictions(location, scored_by)
    if frame is None:  # not scored yet by this version: score it now, as `score` would
        data = load(location)
        frame = cast("pd.DataFrame", predict(scored_by, data))
        write_predictions(frame, data.source, scored_by)
    current = from_predictions(frame)
    report, html = compare(reference, current)
    figures = figures_of(current, reference_rmse, report)
    decision = decide(figures, settings.monitor_thresholds())
    experiment = monitoring_experiment(settings)
    run_id = open_run(experiment, f"monitor {label} v{scored_by.version}")
    with failed_if_raises(run_id):
        log_monitoring(run_id, scored_by, label, figures, decision, html)
    requested = False
    if decision.breached and retrain_on_breach:
        requested = request_retrain(scored_by, color, label, decision)
    result = MonitorResult(
        model_name=name,
        version=scored_by.version,
        month=label,
        source=location,
        rows=figures.rows,
        rmse=figures.rmse,
        mae=figures.mae,
        reference_rmse=figures.reference_rmse,
        rmse_increase=figures.rmse_increase,
        drift_share=figures.drift_share,
        drifted_columns=list(figures.drifted_columns),
        breached=decision.breached,
        breached_metrics=[breach.metric for breach in decision.breaches],
        reason=decision.reason(label, f"{name} v{scored_by.version}"),
        months_watched=months_watched(experiment, scored_by),
        retrain_requested=requested,
        run_id=run_id,
    )
    create_markdown_artifact(
        report_markdown(result, settings), key="monitoring-report", description=result.reason
    )
    print(result.reason)
    return asdict(result)


@flow(name="retrain", log_prints=True)
def retrain(
    color: str,
    month: str,
    model_name: str | None = None,
    version: str | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """Train on the month before the breached one, validate on it, and promote (the champion is
    judged on the new data too); started by a breach event, once per month and version."""
    from mlflow import MlflowClient

    from flows.tlc import months_before
    from flows.train import train

    name = model_name or Settings.from_env().model_name
    client = MlflowClient()
    if version:
        done = client.get_model_version(name, version).tags.get(RETRAINED_TAG + month)
        if done:
            print(f"v{version} was already retrained for {month} (as v{done}): nothing to do")
            return {"skipped": True, "version": done}
    print(f"retraining: {reason or f'asked for {month}'}")
    result = train(
        color=color,
        train_month=months_before(month, 2)[1],
        val_month=month,
        model_name=name,
        promote=True,
    )
    if version:
        client.set_model_version_tag(name, version, RETRAINED_TAG + month, str(result["version"]))
    return result
