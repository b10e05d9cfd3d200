"""Batch scoring flow: one month's trips predicted by the version behind an alias (`champion`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

from prefect import flow, get_run_logger, task

from flows.batch import predict, resolve_alias, write_predictions
from flows.errors import InvalidParameters
from flows.months import load, locate_month
from flows.registry import CHAMPION
from flows.retry import IO_RETRIES
from flows.settings import Settings
from flows.tracking import failed_if_raises, open_run

if TYPE_CHECKING:
    import pandas as pd

    from flows.data import TripData
    from flows.predictions import ScoredBy

SCORING_EXPERIMENT_SUFFIX = "-scoring"


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring run wrote, with which version, and how well it did."""

    model_name: str
    alias: str
    version: str
    source: str
    output_uri: str
    rows: int
    rmse: float | None
    mae: float | None
    run_id: str


def scoring_experiment(settings: Settings) -> str:
    """The MLflow experiment of scoring runs, beside the training experiment."""
    return settings.experiment_name + SCORING_EXPERIMENT_SUFFIX


def error_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """rmse and mae where the file has actual durations (none otherwise)."""
    from flows.model import evaluate

    known = frame.dropna(subset=["actual_duration"])
    if known.empty:
        return {}
    scores = evaluate(known["predicted_duration"].to_numpy(), known["actual_duration"])
    return {"rmse": scores["rmse"], "mae": scores["mae"]}


@task(**IO_RETRIES)
def log_scoring(
    run_id: str,
    alias: str,
    scored_by: ScoredBy,
    data: TripData,
    output_uri: str,
    metrics: dict[str, float],
) -> None:
    """The scoring run: input, output, version used and the metrics; FINISHED at the end."""
    import mlflow

    from flows.tracking import dataset_reference

    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags(
            {
                "model_name": scored_by.model_name,
                "model_version": scored_by.version,
                "model_run_id": scored_by.run_id,
                "alias": alias,
                "output_uri": output_uri,
            }
        )
        mlflow.log_params({"input_uri": data.source, "output_uri": output_uri})
        mlflow.log_input(dataset_reference(data), context="scoring")
        mlflow.log_metrics({"rows": data.rows_kept, "rows_read": data.rows_read, **metrics})


def report_markdown(result: ScoreResult) -> str:
    """The Prefect report of a scoring run."""

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    return "\n".join(
        [
            f"# Scored `{result.source}` with `{result.model_name}` v{result.version} "
            f"(@{result.alias})",
            "",
            "| rows | rmse (min) | mae (min) |",
            "| ---: | ---: | ---: |",
            f"| {result.rows} | {fmt(result.rmse)} | {fmt(result.mae)} |",
            "",
            f"Predictions: `{result.output_uri}`",
        ]
    )


@flow(name="score", log_prints=True)
def score(
    color: str = "green",
    month: str | None = None,
    path: str | None = None,
    alias: str = CHAMPION,
    model_name: str | None = None,
    monitor: bool = True,
    retrain_on_breach: bool = True,
) -> dict[str, Any]:
    """Predict one month (or file) with the version behind ``alias``; store and log the result;
    then, with ``monitor``, compare the month with the version's reference (flows/monitor.py),
    which asks for a retraining on a breach unless ``retrain_on_breach`` is off."""
    from prefect.artifacts import create_markdown_artifact

    settings = Settings.from_env()
    if not (month or path):
        raise InvalidParameters("give either month (YYYY-MM) or path")
    name = model_name or settings.model_name
    scored_by = resolve_alias(name, alias)
    location = path or locate_month(color, str(month))
    data = load(location)
    run_id = open_run(scoring_experiment(settings), f"score {location.rsplit('/', 1)[-1]}")
    with failed_if_raises(run_id):
        # cast: Prefect's task typing cannot tell a sync task's result from a coroutine.
        frame = cast("pd.DataFrame", predict(scored_by, data))
        output_uri = write_predictions(frame, data.source, scored_by)
        metrics = error_metrics(frame)
        log_scoring(run_id, alias, scored_by, data, output_uri, metrics)
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
    )
    create_markdown_artifact(
        report_markdown(result), key="score-report", description=f"{name} v{scored_by.version}"
    )
    get_run_logger().info("%d predictions by v%s -> %s", len(frame), scored_by.version, output_uri)
    outcome = asdict(result)
    if monitor:
        from flows.monitor import has_reference
        from flows.monitor import monitor as monitor_flow

        if not has_reference(scored_by):
            # The scoring stands; a version trained before monitoring existed has nothing to be
            # compared with (the next version will).
            get_run_logger().warning(
                "not monitored: v%s has no monitoring reference (trained before monitoring)",
                scored_by.version,
            )
            outcome["monitoring"] = {"skipped": "no reference"}
            return outcome
        watched = monitor_flow(
            color=color,
            path=data.source,
            month=month,
            model_name=name,
            version=scored_by.version,
            retrain_on_breach=retrain_on_breach,
        )
        outcome["monitoring"] = {k: watched[k] for k in ("breached", "reason", "run_id")}
    return outcome
