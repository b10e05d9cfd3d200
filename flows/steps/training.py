"""Tasks of the training flow: fit, score, log the run, the model and its plots, register."""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.steps.retry import IO_RETRIES
from flows.steps.tracking import dataset_reference, run_url

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from flows.logic.trips import TripData
    from flows.model import TripDurationRegressor


# The `flows` package: what a version logs of it is the model (flows/model.py) and its features.
SERVING_PACKAGES = ("mlflow", "xgboost", "pandas", "numpy", "scikit-learn", "pyarrow")


@dataclass(frozen=True)
class LoggedRun:
    """Where a training run's model was logged."""

    run_id: str
    experiment_id: str
    model_uri: str
    run_url: str


@task(cache_policy=NO_CACHE)
def fit(trips: pd.DataFrame, params: dict[str, Any]) -> TripDurationRegressor:
    """Train the model on the training month."""
    from flows.model import train_model, trees_used

    started = time.perf_counter()
    model = train_model(trips, params)
    get_run_logger().info(
        "trained %d trees in %.1fs", trees_used(model), time.perf_counter() - started
    )
    return model


@task(cache_policy=NO_CACHE)
def score(model: TripDurationRegressor, trips: pd.DataFrame) -> tuple[np.ndarray, dict[str, float]]:
    """Predictions and metrics on the validation month, from the raw records."""
    from flows.model import evaluate

    predicted = model.predict(trips)
    return predicted, evaluate(predicted, trips["duration"])


def serving_requirements() -> list[str]:
    """Pinned packages a loaded model needs. Listing them skips MLflow's inference, which loads
    the model in a subprocess and costs more than training it (~7 s of a ~10 s run)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in SERVING_PACKAGES]


def log_plots(model: TripDurationRegressor, predicted: np.ndarray, actual: pd.Series) -> None:
    """The three pictures of a trained model, as PNG artifacts of the active run."""
    import mlflow

    from flows.logic import plots

    for figure, name in (
        (plots.feature_importance(model), "feature_importance.png"),
        (plots.predicted_vs_actual(predicted, actual), "predicted_vs_actual.png"),
        (plots.residuals_by_duration(predicted, actual), "residuals_by_duration.png"),
    ):
        mlflow.log_figure(figure, f"plots/{name}")
        plots.close(figure)  # workers run many flows: pyplot would keep every figure alive


def log_reference(model: TripDurationRegressor, train: TripData) -> None:
    """A sample of the training month with the model's predictions: what monitoring compares
    each scored month with, without reading the old month again."""
    import mlflow

    from flows.features import model_input_columns
    from flows.logic.monitoring import REFERENCE_ARTIFACT, REFERENCE_ROWS, monitored_frame

    sample = train.trips.sample(n=min(REFERENCE_ROWS, train.rows_kept), random_state=0)
    raw = train.as_raw().loc[sample.index]
    reference = monitored_frame(
        raw[model_input_columns(raw)], sample["duration"], model.predict(sample)
    )
    folder, name = REFERENCE_ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as staging:
        path = Path(staging) / name
        reference.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), folder)


def log_model(model: TripDurationRegressor, val: TripData) -> str:
    """Log the model with a signature and an input example of raw records; return its URI."""
    import mlflow
    from mlflow.models import infer_signature

    from flows.features import model_input_columns

    raw_records = val.as_raw()
    raw_example = raw_records[model_input_columns(raw_records)].head(5)
    with warnings.catch_warnings():
        # MLflow hints that integer columns cannot hold missing values. Intended here: a trip
        # without a zone is invalid, and schema enforcement should reject it.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(raw_example, model.predict(raw_example))
    with tempfile.TemporaryDirectory() as staging:
        model_code = model_package(Path(staging))
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            input_example=raw_example,
            signature=signature,
            code_paths=[str(model_code)],
            model_format="ubj",
            pip_requirements=serving_requirements(),
        )
    return str(info.model_uri)


def model_package(staging: Path) -> Path:
    """A copy of the `flows` package holding only the modules the model needs to load: logged
    with it, so any MLflow client or server loads it without this repository, and every loader
    predicts with the code the version was trained with."""
    from flows.logic.provenance import MODEL_MODULES
    from flows.resources.registry import FLOWS_DIR

    package = staging / FLOWS_DIR.name
    package.mkdir()
    for module in MODEL_MODULES:
        shutil.copy2(FLOWS_DIR / module, package / module)
    return package


@task(**IO_RETRIES)
def log_run(
    run_id: str,
    model: TripDurationRegressor,
    train: TripData,
    val: TripData,
    predicted: np.ndarray,
    metrics: dict[str, float],
    params: dict[str, Any],
) -> LoggedRun:
    """Log params, data, metrics, pictures and the model to the run; FINISHED when all is in.

    Safe to retry after an outage: a retry resumes the same run and rewrites the same params,
    metrics and artifact paths, so no second, half-logged run is left behind.
    """
    import mlflow

    from flows.model import trees_used

    with mlflow.start_run(run_id=run_id) as run:
        mlflow.log_params(
            {
                **params,
                "trees_used": trees_used(model),
                "train_uri": train.source,
                "val_uri": val.source,
            }
        )
        for data, context in ((train, "training"), (val, "validation")):
            mlflow.log_input(dataset_reference(data), context=context)
            mlflow.log_metrics(
                {f"{context}_rows_read": data.rows_read, f"{context}_rows_kept": data.rows_kept}
            )
        mlflow.log_metrics(metrics)
        log_plots(model, predicted, val.trips["duration"])
        log_reference(model, train)
        model_uri = log_model(model, val)
    return LoggedRun(run.info.run_id, run.info.experiment_id, model_uri, run_url(run))


@task(**IO_RETRIES)
def register(logged: LoggedRun, rmse: float, model_name: str) -> str:
    """Register the logged model as the new challenger; return its version."""
    from mlflow import MlflowClient

    from flows.resources.registry import challenger_from_run

    return challenger_from_run(MlflowClient(), model_name, logged.run_id, logged.model_uri, rmse)


@task(**IO_RETRIES)
def is_recorded(model_name: str, version: str) -> bool:
    """True when the stack recorded the version (this is one of its workers)."""
    from mlflow import MlflowClient
    from platform_names import RECORD_TAG

    return RECORD_TAG in MlflowClient().get_model_version(model_name, version).tags


def chosen_params(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The xgboost parameters a run uses, as logged (early stopping is logged as trees_used)."""
    from flows.model import DEFAULT_PARAMS

    defaults = {k: v for k, v in DEFAULT_PARAMS.items() if k != "early_stopping_rounds"}
    return {**defaults, **(overrides or {})}
