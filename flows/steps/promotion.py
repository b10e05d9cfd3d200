"""Tasks of the promotion flow: the aliased versions, measuring both, recording the decision."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from platform_names import CHALLENGER, CHAMPION, PROMOTION_FILE, PROMOTION_TAG
from prefect import task

from flows.errors import NotPromotable, UntrustedVersion
from flows.logic.results import PromotionResult
from flows.resources.registry import load_version
from flows.steps.retry import IO_RETRIES

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

    from flows.logic.gate import Budgets, Measurement, Verdict
    from flows.logic.trips import TripData


@task(**IO_RETRIES)
def aliased_versions(model_name: str) -> tuple[ModelVersion | None, ModelVersion | None]:
    """The versions behind `challenger` and `champion`."""
    from mlflow import MlflowClient

    from flows.resources.registry import version_by_alias

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


# Single-record predictions timed per version (~2 ms each): a p95 in a quarter of a second.
LATENCY_SAMPLES, LATENCY_WARMUP = 100, 10


# Latency is timed by one thread at a time, so two versions measured side by side do not slow
# each other's numbers (loading and scoring still overlap).
_timing = threading.Lock()


def p95_latency_ms(model: Any, records: pd.DataFrame) -> float:
    """p95 of one-record `predict` calls (the serving path: schema check, features, booster)."""
    import numpy as np

    rows = [records.iloc[[i]] for i in range(min(len(records), LATENCY_SAMPLES))]
    with _timing:
        for row in rows[:LATENCY_WARMUP]:
            model.predict(row)
        timings = []
        for row in rows:
            started = time.perf_counter()
            model.predict(row)
            timings.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(timings, 95))


@task(**IO_RETRIES)
def measure(model_name: str, version: ModelVersion, val: TripData) -> Measurement:
    """Download the registered version, score it on the raw validation records, time one-record
    predictions and weigh its files."""
    from flows.logic.gate import Measurement
    from flows.logic.signature import conform, predict_raw
    from flows.model import evaluate

    model, size_mb = load_version(model_name, version.version)
    reader = f"version {version.version} of {model_name}"
    inputs, predicted = predict_raw(model, val.as_raw(), val.source, reader)
    rmse = evaluate(predicted, val.trips["duration"])["rmse"]
    sample = inputs.sample(n=min(len(inputs), LATENCY_SAMPLES), random_state=0)
    # Timed on records in the version's own types, as the model server hands them over.
    metadata: Any = model.metadata  # MLflow's model metadata carries no types
    records = conform(sample, metadata.get_input_schema(), val.source, reader)
    return Measurement(rmse, p95_latency_ms(model, records), size_mb)


@task(**IO_RETRIES)
def measure_champion(
    model_name: str, version: ModelVersion, val: TripData
) -> Measurement | UntrustedVersion:
    """The champion measured as the challenger is; a champion the stack refuses comes back as
    its refusal (not raised), and the promotion decides without it."""
    try:
        return measure.fn(model_name, version, val)
    except UntrustedVersion as refused:
        return refused


def kept_as_challenger(
    name: str,
    challenger: ModelVersion,
    refused: UntrustedVersion,
    val_location: str,
    measured: Measurement,
    budgets: Budgets,
) -> PromotionResult:
    """The decision when the champion cannot be loaded: nothing moves, and one line says why and
    what to do (a refused champion must not stop the team's training)."""
    from flows.logic.gate import CHAMPION_REFUSED
    from flows.steps.scoring import refusal_line

    what = f"v{challenger.version} was not compared with it and stays {CHALLENGER}"
    return PromotionResult(
        model_name=name,
        promoted=False,
        reason=refusal_line(refused, CHAMPION, what),
        challenger_version=str(challenger.version),
        champion_version=refused.version,
        challenger_rmse=measured.rmse,
        champion_rmse=None,
        val_uri=val_location,
        challenger=measured.metrics(),
        champion=None,
        budgets=asdict(budgets),
        failed=(CHAMPION_REFUSED,),
    )


def promotion_numbers(result: PromotionResult) -> dict[str, str]:
    """Every number of a decision, flat (what the version's PROMOTION_FILE holds)."""
    numbers = {
        "decision": "promoted" if result.promoted else "rejected",
        "reason": result.reason,
        "val_uri": result.val_uri or "",
        "compared_with": result.champion_version or "",
        "failed": ",".join(result.failed),
    }
    for side, measured in (("challenger", result.challenger), ("champion", result.champion)):
        for metric, value in (measured or {}).items():
            numbers[f"{side}_{metric}"] = f"{value:.4f}"
    for budget, value in (result.budgets or {}).items():
        numbers[f"budget_{budget}"] = f"{value:g}"
    return numbers


@task(**IO_RETRIES)
def record(
    result: PromotionResult, challenger: ModelVersion, champion: ModelVersion | None
) -> None:
    """Apply the decision in the registry: one line on the challenger version (PROMOTION_TAG),
    its every number in the version's training run (PROMOTION_FILE)."""
    from mlflow import MlflowClient

    from flows.resources.registry import crown

    client = MlflowClient()
    numbers = promotion_numbers(result)
    if challenger.run_id:
        path = PROMOTION_FILE.format(version=challenger.version)
        client.log_dict(challenger.run_id, numbers, path)
    summary = f"{numbers['decision']}: {result.reason}"
    client.set_model_version_tag(result.model_name, challenger.version, PROMOTION_TAG, summary)
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


def decision(
    model_name: str,
    verdict: Verdict,
    budgets: Budgets,
    val_location: str,
    compared: dict[str, Run],
    challenger: Measurement,
    champion: Measurement | None,
) -> PromotionResult:
    """The promotion's result: the verdict, both versions' numbers (``compared``: challenger,
    then champion, by version) and the budgets they were held to."""
    versions = list(compared)
    return PromotionResult(
        model_name=model_name,
        promoted=verdict.promote,
        reason=verdict.reason + trained_on_note(val_location, compared),
        challenger_version=versions[0],
        champion_version=versions[1] if len(versions) > 1 else None,
        challenger_rmse=challenger.rmse,
        champion_rmse=champion.rmse if champion else None,
        val_uri=val_location,
        challenger=challenger.metrics(),
        champion=champion.metrics() if champion else None,
        budgets=asdict(budgets),
        failed=verdict.failed,
    )
