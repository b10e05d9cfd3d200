"""Tasks of the monitoring flow: the version's reference, the month's figures, the monitoring
run, the breach event."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from platform_names import (
    BREACH_EVENT,
    BREACH_TAG_PREFIX,
    BREACHED_TAG,
    COLOR_LABEL,
    DRIFTED_COLUMNS_TAG,
    MODEL_LABEL,
    MODEL_NAME_TAG,
    MODEL_RESOURCE_PREFIX,
    MODEL_VERSION_TAG,
    MONTH_LABEL,
    MONTH_TAG,
    REASON_TAG,
    SERVED_PREFIX,
    SOURCE_LABEL,
    SOURCE_TAG,
    VERSION_LABEL,
)
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.errors import InvalidParameters, MissingModel
from flows.logic.results import MonitorResult
from flows.settings import Settings
from flows.steps.retry import IO_RETRIES
from flows.steps.scoring import (
    has_reference,
)

if TYPE_CHECKING:
    import pandas as pd

    from flows.logic.monitoring import Decision, Figures
    from flows.logic.predictions import ScoredBy


@task(**IO_RETRIES)
def read_reference(scored_by: ScoredBy) -> tuple[pd.DataFrame, float]:
    """The version's reference sample and its validation rmse, from its training run."""
    import tempfile

    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from flows.logic.monitoring import REFERENCE_ARTIFACT

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
    from flows.logic.monitoring import evidently_report

    return evidently_report(reference, current)


def figures_of(current: pd.DataFrame, reference_rmse: float, report: dict[str, Any]) -> Figures:
    """The month's numbers: our rmse and mae (as training computes them), Evidently's drift;
    served traffic has no actual durations, so its rmse and mae are NaN (never a breach)."""
    from flows.logic.monitoring import Figures, drift_of
    from flows.model import evaluate

    if current["actual"].isna().all():
        scores = {"rmse": float("nan"), "mae": float("nan")}
    else:
        scores = evaluate(current["prediction"].to_numpy(), current["actual"])
    share, columns = drift_of(report)
    return Figures(len(current), scores["rmse"], scores["mae"], reference_rmse, share, columns)


@task(**IO_RETRIES)
def log_monitoring(
    run_id: str,
    scored_by: ScoredBy,
    month: str,
    figures: Figures,
    decision: Decision,
    html: str,
    source: str = "batch",
) -> None:
    """The monitoring run: figures as metrics at the month's step, the report, the decision."""
    import mlflow

    from flows.logic.months import month_index

    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags(
            {
                MODEL_NAME_TAG: scored_by.model_name,
                MODEL_VERSION_TAG: scored_by.version,
                MONTH_TAG: month,
                SOURCE_TAG: source,
                DRIFTED_COLUMNS_TAG: ",".join(figures.drifted_columns),
                BREACHED_TAG: str(decision.breached).lower(),
                REASON_TAG: decision.reason(month, f"{scored_by.model_name} v{scored_by.version}"),
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
        mlflow.log_metrics(metrics, step=month_index(month))
        mlflow.log_text(html, "report.html")


@task(**IO_RETRIES)
def read_served(month: str, scored_by: ScoredBy) -> pd.DataFrame:
    """What the model server answered with this version in ``month`` (served/), as one frame."""
    import io

    import pandas as pd

    from flows.resources.store import BucketStore, FolderStore, data_store

    store = data_store(Settings.from_env())
    if not isinstance(store, BucketStore | FolderStore):
        raise InvalidParameters("served traffic is monitored on the stack (its data bucket)")
    year, number = month.split("-")
    prefix = (
        f"{SERVED_PREFIX}/year={year}/month={number}/{scored_by.model_name}-v{scored_by.version}-"
    )
    frames = [pd.read_parquet(io.BytesIO(store.read_bytes(o.key))) for o in store.listing(prefix)]
    if not frames:
        raise InvalidParameters(
            f"{store.uri(prefix)}*: the model server answered nothing with version "
            f"{scored_by.version} in {month} (or not yet written: SERVING_TRAFFIC_FLUSH_SECONDS)"
        )
    return pd.concat(frames, ignore_index=True)


@task(**IO_RETRIES)
def months_watched(experiment: str, scored_by: ScoredBy) -> list[str]:
    """The months this version has been monitored on so far, oldest first."""
    import mlflow

    from flows.resources.registry import quoted

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = mlflow.search_runs(
        [found.experiment_id],
        filter_string=(
            f"tags.{MODEL_NAME_TAG} = {quoted(scored_by.model_name)} and "
            f"tags.{MODEL_VERSION_TAG} = {quoted(scored_by.version)} and "
            "attributes.status = 'FINISHED'"
        ),
        output_format="list",
    )
    return sorted({run.data.tags[MONTH_TAG] for run in runs})


@task(**IO_RETRIES)
def request_retrain(
    scored_by: ScoredBy, color: str, month: str, decision: Decision, source: str = "batch"
) -> bool:
    """Emit the breach event, once per month, version and source; True when emitted now. A
    breach of served traffic notifies only: the `retrain` trigger waits for the month's data
    (it matches ``source`` batch)."""
    from mlflow import MlflowClient
    from prefect.events import emit_event

    client = MlflowClient()
    tag = BREACH_TAG_PREFIX + (month if source == "batch" else f"{source}-{month}")
    version = client.get_model_version(scored_by.model_name, scored_by.version)
    reason = decision.reason(month, f"{scored_by.model_name} v{scored_by.version}")
    if tag in version.tags:
        get_run_logger().info("breach on %s already reported for v%s", month, scored_by.version)
        return False
    client.set_model_version_tag(scored_by.model_name, scored_by.version, tag, reason)
    emit_event(
        event=BREACH_EVENT,
        resource={
            "prefect.resource.id": f"{MODEL_RESOURCE_PREFIX}{scored_by.model_name}."
            f"{scored_by.version}",
            "prefect.resource.name": scored_by.model_name,
            MODEL_LABEL: scored_by.model_name,
            VERSION_LABEL: scored_by.version,
            MONTH_LABEL: month,
            COLOR_LABEL: color,
            SOURCE_LABEL: source,
        },
        payload={"reason": reason, "breaches": [asdict(b) for b in decision.breaches]},
    )
    return True


def month_label(month: str | None, source: str) -> str:
    """The month a source stands for (monitoring runs are per month)."""
    from flows.logic.predictions import month_of

    if month:
        return month
    found = month_of(source)
    if found is None:
        raise InvalidParameters(
            f"{source}: monitoring needs a month; give month, or a file with a TLC name "
            "(green_tripdata_YYYY-MM.parquet)"
        )
    return found[1]


def monitor_result(
    scored_by: ScoredBy,
    month: str,
    source: str,
    figures: Figures,
    decision: Decision,
    watched: list[str],
    retrain_requested: bool,
    run_id: str,
) -> MonitorResult:
    """The monitoring flow's result: the month's figures and what they called for."""
    return MonitorResult(
        model_name=scored_by.model_name,
        version=scored_by.version,
        month=month,
        source=source,
        rows=figures.rows,
        rmse=figures.rmse,
        mae=figures.mae,
        reference_rmse=figures.reference_rmse,
        rmse_increase=figures.rmse_increase,
        drift_share=figures.drift_share,
        drifted_columns=list(figures.drifted_columns),
        breached=decision.breached,
        breached_metrics=[breach.metric for breach in decision.breaches],
        reason=decision.reason(month, f"{scored_by.model_name} v{scored_by.version}"),
        months_watched=watched,
        retrain_requested=retrain_requested,
        run_id=run_id,
    )
