"""Promotion flow: score challenger and champion on the same month, move `champion` if better."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task

from flows.errors import NotPromotable
from flows.months import load, month_or_path
from flows.registry import CHALLENGER, CHAMPION, PROMOTION_TAG_PREFIX, decide
from flows.retry import IO_RETRIES
from flows.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from flows.data import TripData


@dataclass(frozen=True)
class PromotionResult:
    """What the promotion flow decided, and on which numbers."""

    model_name: str
    promoted: bool
    reason: str
    challenger_version: str | None
    champion_version: str | None
    challenger_rmse: float | None
    champion_rmse: float | None
    val_uri: str | None


@task(**IO_RETRIES)
def aliased_versions(model_name: str) -> tuple[ModelVersion | None, ModelVersion | None]:
    """The versions behind `challenger` and `champion`."""
    from mlflow import MlflowClient

    from flows.registry import version_by_alias

    client = MlflowClient()
    return (
        version_by_alias(client, model_name, CHALLENGER),
        version_by_alias(client, model_name, CHAMPION),
    )


@task(**IO_RETRIES)
def check_promotable(version: ModelVersion) -> Run:
    """Refuse a version whose training run did not finish or logged no rmse; return that run."""
    from mlflow import MlflowClient

    if not version.run_id:
        raise NotPromotable(f"version {version.version} has no training run")
    run = MlflowClient().get_run(version.run_id)
    if run.info.status != "FINISHED":
        raise NotPromotable(
            f"version {version.version}: its run {run.info.run_id} is "
            f"{run.info.status}, not FINISHED"
        )
    if "rmse" not in run.data.metrics:
        raise NotPromotable(f"version {version.version}: its run {run.info.run_id} logged no rmse")
    return run


@task(**IO_RETRIES)
def training_run(version: ModelVersion) -> Run:
    """The MLflow run that trained ``version``."""
    from mlflow import MlflowClient

    if not version.run_id:
        raise NotPromotable(f"version {version.version} has no training run")
    return MlflowClient().get_run(version.run_id)


@task(**IO_RETRIES)
def rmse_on(model_name: str, version: ModelVersion, val: TripData) -> float:
    """Load the registered version as pyfunc and score it on the raw validation records."""
    import mlflow

    from flows.model import evaluate

    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}")
    inputs = model.metadata.get_input_schema().input_names()
    return evaluate(model.predict(val.as_raw()[inputs]), val.trips["duration"])["rmse"]


@task(**IO_RETRIES)
def record(
    result: PromotionResult, challenger: ModelVersion, champion: ModelVersion | None
) -> None:
    """Apply the decision in the registry and leave its reasons on the challenger version."""
    from mlflow import MlflowClient

    from flows.registry import crown

    client = MlflowClient()
    tags = {
        "decision": "promoted" if result.promoted else "rejected",
        "reason": result.reason,
        "val_uri": result.val_uri or "",
        "challenger_rmse": f"{result.challenger_rmse:.4f}",
        "champion_rmse": "" if result.champion_rmse is None else f"{result.champion_rmse:.4f}",
        "compared_with": str(champion.version) if champion else "",
    }
    for key, value in tags.items():
        client.set_model_version_tag(
            result.model_name, challenger.version, PROMOTION_TAG_PREFIX + key, value
        )
    if result.promoted:
        crown(client, result.model_name, challenger, champion, result.reason)
    else:
        client.update_model_version(
            result.model_name, challenger.version, description=f"Not promoted: {result.reason}."
        )


def trained_on_note(val_location: str, runs: dict[str, Run]) -> str:
    """A warning when a compared version (version -> its training run) was trained on the
    validation data (an unfair test)."""
    seen = [v for v, run in runs.items() if run.data.params.get("train_uri") == val_location]
    return f" (warning: v{', v'.join(seen)} trained on this data)" if seen else ""


def report_markdown(result: PromotionResult) -> str:
    """The Prefect report of a promotion decision."""

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    verdict = "promoted to champion" if result.promoted else "not promoted"
    return "\n".join(
        [
            f"# `{result.model_name}`: challenger v{result.challenger_version} {verdict}",
            "",
            f"Reason: {result.reason}. Both scored on `{result.val_uri}`.",
            "",
            "| alias | version | rmse (min) |",
            "| --- | --- | ---: |",
            f"| {CHALLENGER} | {result.challenger_version} | {fmt(result.challenger_rmse)} |",
            f"| {CHAMPION} | {result.champion_version or '-'} | {fmt(result.champion_rmse)} |",
        ]
    )


@flow(name="promote", log_prints=True)
def promote(
    model_name: str | None = None,
    color: str = "green",
    val_month: str | None = None,
    val_path: str | None = None,
) -> dict[str, Any]:
    """Compare `challenger` with `champion` on one validation month; promote only if better."""
    from prefect.artifacts import create_markdown_artifact

    name = model_name or Settings.from_env().model_name
    challenger, champion = aliased_versions(name)
    if challenger is None:
        get_run_logger().info("%s has no %s: nothing to decide", name, CHALLENGER)
        champion_version = str(champion.version) if champion else None
        nothing = PromotionResult(
            name, False, f"no {CHALLENGER}", None, champion_version, None, None, None
        )
        return asdict(nothing)
    challenger_run = check_promotable(challenger)
    if val_month or val_path:
        val_location = month_or_path(color, val_month, val_path, "val")
    else:
        # Default: the month the challenger was validated on, so the comparison is like for like.
        val_location = challenger_run.data.params["val_uri"]
    val = load(val_location)
    # Both models load (download, unpack) and score side by side: half the wait of one by one.
    challenger_scored = rmse_on.submit(name, challenger, val)
    champion_scored = rmse_on.submit(name, champion, val) if champion else None
    challenger_rmse = challenger_scored.result()
    champion_rmse = champion_scored.result() if champion_scored else None
    decision = decide(challenger_rmse, champion_rmse)
    compared = {str(challenger.version): challenger_run}
    if champion:
        compared[str(champion.version)] = training_run(champion)
    reason = decision.reason + trained_on_note(val_location, compared)
    result = PromotionResult(
        name,
        decision.promote,
        reason,
        str(challenger.version),
        str(champion.version) if champion else None,
        challenger_rmse,
        champion_rmse,
        val_location,
    )
    record(result, challenger, champion)
    create_markdown_artifact(
        report_markdown(result), key="promotion-report", description=f"{name}: {decision.reason}"
    )
    print(
        f"{name} v{challenger.version}: {'promoted' if decision.promote else 'kept out'} "
        f"({decision.reason})"
    )
    return asdict(result)
