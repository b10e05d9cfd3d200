"""Training flow: load -> validate -> build features -> train -> evaluate -> log and register."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.models import infer_signature
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import plots
from flows.data import TripData, ensure_month_stored, load_trips, official_url
from flows.features import model_input_columns
from flows.model import (
    DEFAULT_PARAMS,
    TripDurationRegressor,
    evaluate,
    train_model,
    trees_used,
)
from flows.registry import register_challenger
from flows.retry import IO_RETRIES
from flows.settings import Settings, s3_client
from flows.store import data_store

FLOWS_DIR = Path(__file__).resolve().parent
SERVING_PACKAGES = ("mlflow", "xgboost", "pandas", "numpy", "scikit-learn", "pyarrow")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: str
    experiment_id: str
    rmse: float
    mae: float
    r2: float
    model_name: str
    version: str
    model_uri: str
    run_url: str


@task(**IO_RETRIES)
def locate_month(color: str, month: str) -> str:
    """The month's location: in the data store, fetched from TLC into it the first time."""
    settings = Settings.from_env()
    store = data_store(settings)
    if store is None:
        return official_url(settings.tlc_base_url, color, month)
    return ensure_month_stored(store, settings.tlc_base_url, color, month, get_run_logger())


@task(**IO_RETRIES)
def load(location: str) -> TripData:
    """Read and validate one file; a TripDataError (bad data) is not retried."""
    settings = Settings.from_env()
    needs_s3 = location.startswith("s3://")
    data = load_trips(location, s3_client(settings.s3_endpoint_url) if needs_s3 else None)
    get_run_logger().info(
        "%s: %d rows read, %d kept (1-60 min)", location, data.rows_read, data.rows_kept
    )
    return data


@task(cache_policy=NO_CACHE)
def fit(trips: pd.DataFrame, params: dict[str, Any]) -> TripDurationRegressor:
    """Train the model on the training month."""
    started = time.perf_counter()
    model = train_model(trips, params)
    get_run_logger().info(
        "trained %d trees in %.1fs", trees_used(model), time.perf_counter() - started
    )
    return model


@task(cache_policy=NO_CACHE)
def score(model: TripDurationRegressor, trips: pd.DataFrame) -> tuple[Any, dict[str, float]]:
    """Predictions and metrics on the validation month, from the raw records."""
    predicted = model.predict(trips)
    return predicted, evaluate(predicted, trips["duration"])


def prefect_tags() -> dict[str, str]:
    """Tags that link an MLflow run back to the Prefect flow run that made it."""
    from prefect.runtime import deployment, flow_run

    tags = {
        "prefect.flow_run_id": str(flow_run.id or ""),
        "prefect.flow_run_name": str(flow_run.name or ""),
    }
    if deployment.id:
        tags["prefect.deployment"] = str(deployment.name)
        tags["prefect.deployment_id"] = str(deployment.id)
    return {k: v for k, v in tags.items() if v}


def dataset_reference(data: TripData) -> MetaDataset:
    """The file a run used, named by URI and content hash (cheap, unlike a profiled frame)."""
    with warnings.catch_warnings():
        # A local path matches several of MLflow's source types; the choice does not matter here.
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(data.source)
    return MetaDataset(
        source=source, name=Path(urlparse(data.source).path).name, digest=data.digest[:16]
    )


def serving_requirements() -> list[str]:
    """Pinned packages a loaded model needs. Listing them skips MLflow's inference, which loads
    the model in a subprocess and costs more than training it (~7 s of a ~10 s run)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in SERVING_PACKAGES]


def run_url(run: mlflow.entities.Run) -> str:
    """The run's page in the MLflow UI (MLFLOW_UI_URL when the tracking URI is internal)."""
    base = (Settings.from_env().mlflow_ui_url or mlflow.get_tracking_uri()).rstrip("/")
    return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"


@task(**IO_RETRIES)
def open_run(experiment_name: str) -> str:
    """Create this training's MLflow run (RUNNING until it is logged); return its id.

    Opened before fitting, so a worker that dies mid-training leaves a RUNNING run tagged with its
    flow run, which the reaper flow marks FAILED once Prefect knows the flow run crashed.
    """
    experiment = mlflow.set_experiment(experiment_name)
    return MlflowClient().create_run(experiment.experiment_id, tags=prefect_tags()).info.run_id


def end_run_failed(run_id: str) -> None:
    """Best effort: mark the run FAILED (the reaper does it later if MLflow is unreachable now)."""
    try:
        MlflowClient().set_terminated(run_id, status="FAILED")
    except Exception as error:  # noqa: BLE001 (the flow's own error matters more)
        get_run_logger().warning("could not mark MLflow run %s FAILED: %s", run_id, error)


@task(**IO_RETRIES)
def log_run(
    run_id: str,
    model: TripDurationRegressor,
    train: TripData,
    val: TripData,
    predicted,
    metrics: dict[str, float],
    params: dict[str, Any],
) -> dict:
    """Log params, data, metrics, pictures and the model to the run; FINISHED when all is in.

    Safe to retry after an outage: a retry resumes the same run and rewrites the same params,
    metrics and artifact paths, so no second, half-logged run is left behind.
    """
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
        actual = val.trips["duration"]
        for figure, name in (
            (plots.feature_importance(model), "feature_importance.png"),
            (plots.predicted_vs_actual(predicted, actual), "predicted_vs_actual.png"),
            (plots.residuals_by_duration(predicted, actual), "residuals_by_duration.png"),
        ):
            mlflow.log_figure(figure, f"plots/{name}")
            plots.close(figure)  # workers run many flows: pyplot would keep every figure alive
        raw_records = val.as_raw()
        raw_example = raw_records[model_input_columns(raw_records)].head(5)
        with warnings.catch_warnings():
            # MLflow hints that integer columns cannot hold missing values. Intended here: a trip
            # without a zone is invalid, and schema enforcement should reject it.
            warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
            signature = infer_signature(raw_example, model.predict(raw_example))
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            input_example=raw_example,
            signature=signature,
            code_paths=[str(FLOWS_DIR)],
            model_format="ubj",
            pip_requirements=serving_requirements(),
        )
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "model_uri": info.model_uri,
        "run_url": run_url(run),
    }


@task(**IO_RETRIES)
def register(logged: dict, rmse: float, model_name: str) -> str:
    """Register the logged model as the new challenger; return its version."""
    client = MlflowClient()
    # Idempotent under retries: a version already made from this run is reused, not duplicated.
    existing = client.search_model_versions(f"name='{model_name}' and run_id='{logged['run_id']}'")
    if existing:
        version = existing[0]
        client.set_registered_model_alias(model_name, "challenger", version.version)
        return str(version.version)
    return str(register_challenger(client, model_name, logged["model_uri"], rmse).version)


def report_markdown(result: TrainResult, train: TripData, val: TripData) -> str:
    """The Prefect report of a training run."""
    return "\n".join(
        [
            f"# Trained `{result.model_name}` version {result.version} (challenger)",
            "",
            "| metric | validation |",
            "| --- | ---: |",
            f"| rmse (min) | {result.rmse:.3f} |",
            f"| mae (min) | {result.mae:.3f} |",
            f"| r2 | {result.r2:.3f} |",
            "",
            "| data | uri | rows read | rows kept |",
            "| --- | --- | ---: | ---: |",
            f"| train | `{train.source}` | {train.rows_read} | {train.rows_kept} |",
            f"| validation | `{val.source}` | {val.rows_read} | {val.rows_kept} |",
            "",
            f"MLflow run: [{result.run_id}]({result.run_url})",
        ]
    )


@flow(name="train", log_prints=True)
def train(
    color: str = "green",
    train_month: str | None = None,
    val_month: str | None = None,
    train_path: str | None = None,
    val_path: str | None = None,
    model_name: str | None = None,
    params: dict[str, Any] | None = None,
    promote: bool = False,
) -> dict:
    """Train on one month, validate on another, log to MLflow and register a challenger.

    Give months (looked up in the data bucket, downloaded there from TLC when missing) or explicit
    paths/URIs (local path, s3://, http(s)://). With ``promote``, the promotion flow then compares
    the new challenger with the champion on the same validation data.
    """
    settings = Settings.from_env()
    train_location = train_path or locate_month(color, _required(train_month, "train_month"))
    val_location = val_path or locate_month(color, _required(val_month, "val_month"))
    # Bad data stops the flow here, before any MLflow run exists.
    train_data, val_data = load(train_location), load(val_location)
    chosen = {
        **{k: v for k, v in DEFAULT_PARAMS.items() if k != "early_stopping_rounds"},
        **(params or {}),
    }
    run_id = open_run(settings.experiment_name)
    try:
        model = fit(train_data.trips, params or {})
        predicted, metrics = score(model, val_data.trips)
        logged = log_run(run_id, model, train_data, val_data, predicted, metrics, chosen)
    except BaseException:
        end_run_failed(run_id)
        raise
    name = model_name or settings.model_name
    version = register(logged, metrics["rmse"], name)
    result = TrainResult(
        run_id=logged["run_id"],
        experiment_id=logged["experiment_id"],
        rmse=metrics["rmse"],
        mae=metrics["mae"],
        r2=metrics["r2"],
        model_name=name,
        version=version,
        model_uri=f"models:/{name}/{version}",
        run_url=logged["run_url"],
    )
    create_markdown_artifact(
        report_markdown(result, train_data, val_data),
        key="train-report",
        description=f"{name} v{version}: rmse {result.rmse:.3f}",
    )
    print(f"run {result.run_id}: rmse {result.rmse:.3f}, {name} version {version} (challenger)")
    outcome = asdict(result)
    if promote:
        from flows.promote import promote as promote_flow

        decision = promote_flow(model_name=name, val_path=val_location)
        outcome["champion"] = decision["promoted"]
        outcome["promotion_reason"] = decision["reason"]
    return outcome


def _required(value: str | None, name: str) -> str:
    """``value``, or a clear error when neither it nor a path was given."""
    if not value:
        raise ValueError(f"give either {name} (YYYY-MM) or an explicit path")
    return value


# Prefect starts a temporary server when no PREFECT_API_URL is set. Its first start on a new
# PREFECT_HOME (new SQLite database, all migrations) took more than Prefect's default 20 s on a
# loaded 2-core machine; and its telemetry service, writing at the same moment, made the
# migrations fail with "database is locked".
EPHEMERAL_STARTUP_TIMEOUT_S = 180


def ephemeral_server_settings():
    """Settings for Prefect's temporary server (none when a real server is configured)."""
    from contextlib import nullcontext

    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    if PREFECT_API_URL.value():
        return nullcontext()
    return temporary_settings(
        {
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: max(
                EPHEMERAL_STARTUP_TIMEOUT_S,
                PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(),
            ),
            PREFECT_SERVER_ANALYTICS_ENABLED: False,
        }
    )


def main(argv: list[str] | None = None) -> int:
    """Train without a deployment: `python -m flows.train --train PATH --val PATH`."""
    parser = argparse.ArgumentParser(description=train.__doc__)
    parser.add_argument("--train", help="training file: local path, s3:// or http(s):// URL")
    parser.add_argument("--val", help="validation file: local path, s3:// or http(s):// URL")
    parser.add_argument("--color", default="green", choices=["green", "yellow"])
    parser.add_argument("--train-month", help="YYYY-MM, instead of --train")
    parser.add_argument("--val-month", help="YYYY-MM, instead of --val")
    parser.add_argument("--model-name", help="registered model name (default: MODEL_NAME)")
    parser.add_argument("--promote", action="store_true", help="then run the promotion flow")
    args = parser.parse_args(argv)
    with ephemeral_server_settings():
        result = train(
            color=args.color,
            train_month=args.train_month,
            val_month=args.val_month,
            train_path=args.train,
            val_path=args.val,
            model_name=args.model_name,
            promote=args.promote,
        )
    line = f"run_id={result['run_id']} rmse={result['rmse']:.4f} version={result['version']}"
    if args.promote:
        line += f" champion={str(result['champion']).lower()}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
