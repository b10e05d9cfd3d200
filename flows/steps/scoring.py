"""Tasks of batch scoring that scoring and monitoring share: which version, its predictions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from platform_names import (
    ALIAS_TAG,
    MODEL_NAME_TAG,
    MODEL_RUN_ID_TAG,
    MODEL_VERSION_TAG,
    MONTH_TAG,
    OUTPUT_URI_TAG,
)
from prefect import task

from flows.errors import InvalidParameters, MissingModel, UntrustedVersion
from flows.settings import Settings
from flows.steps.retry import IO_RETRIES

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.pyfunc import PyFuncModel

    from flows.logic.predictions import ScoredBy
    from flows.logic.trips import TripData


@task(**IO_RETRIES)
def resolve_alias(model_name: str, alias: str) -> ScoredBy:
    """The version behind ``alias`` now; the whole run uses it even if the alias moves."""
    from mlflow import MlflowClient

    from flows.logic.predictions import ScoredBy
    from flows.resources.registry import version_by_alias

    version = version_by_alias(MlflowClient(), model_name, alias)
    if version is None:
        raise MissingModel(
            f"model {model_name!r} has no {alias!r} version to score with "
            f"(train and promote one first: make train)"
        )
    return ScoredBy(model_name, str(version.version), str(version.run_id or ""))


@task(**IO_RETRIES)
def load_trusted(scored_by: ScoredBy) -> PyFuncModel | UntrustedVersion:
    """The version loaded once its files are the ones the stack recorded; a version the stack
    refuses is returned as its refusal, not raised, so the flow ends with one line saying why
    (and what to do), not a traceback."""
    from flows.resources.registry import load_version

    try:
        model, _ = load_version(scored_by.model_name, scored_by.version)
    except UntrustedVersion as refused:
        return refused
    return model


def refusal_line(refused: UntrustedVersion, alias: str | None, what: str) -> str:
    """One line for a version the stack refuses: what did not happen, why, and what to do."""
    named = f"{refused.model_name} v{refused.version}" + (f" (@{alias})" if alias else "")
    return (
        f"{named} is refused, so {what}: {refused.problem}. Put a version the stack recorded back "
        f"(make rollback, or make rollback VERSION=n; make history lists the champions), or "
        f"ask an admin"
    )


@task
def predict(scored_by: ScoredBy, model: PyFuncModel, data: TripData) -> pd.DataFrame:
    """Every kept trip predicted from its raw records by the loaded version."""
    from flows.logic.predictions import prediction_frame
    from flows.logic.signature import predict_raw
    from flows.logic.trips import ROW_COLUMN

    raw = data.as_raw()
    reader = f"version {scored_by.version} of {scored_by.model_name}"
    inputs, predicted = predict_raw(model, raw, data.source, reader)
    return prediction_frame(
        data.source, inputs, raw[ROW_COLUMN], predicted, raw.get("duration"), scored_by
    )


@task(**IO_RETRIES)
def write_predictions(frame: pd.DataFrame, source: str, scored_by: ScoredBy) -> str:
    """Store the predictions in the data store (replacing this month and version's); the URI."""
    from flows.logic.predictions import prediction_key, to_parquet_bytes
    from flows.resources.store import data_store

    store = data_store(Settings.from_env())
    if store is None:
        raise InvalidParameters("neither DATA_BUCKET nor DATA_DIR is set: nowhere to write")
    key = prediction_key(source, scored_by)
    store.put_bytes(to_parquet_bytes(frame), key)
    return store.uri(key)


@task(**IO_RETRIES)
def version_by_number(model_name: str, version: str) -> ScoredBy:
    """A version named by its number."""
    from mlflow import MlflowClient

    from flows.logic.predictions import ScoredBy

    found = MlflowClient().get_model_version(model_name, version)
    return ScoredBy(model_name, str(found.version), str(found.run_id or ""))


@task(**IO_RETRIES)
def read_predictions(source: str, scored_by: ScoredBy) -> pd.DataFrame | None:
    """The stored predictions of ``source`` by this version, or None when it has not scored it."""
    import io

    import pandas as pd

    from flows.logic.predictions import prediction_key
    from flows.resources.store import data_store

    store = data_store(Settings.from_env())
    key = prediction_key(source, scored_by)
    if store is None or not store.exists(key):
        return None
    return pd.read_parquet(io.BytesIO(store.read_bytes(key)))


@task(**IO_RETRIES)
def has_reference(scored_by: ScoredBy) -> bool:
    """Whether the version's training run logged a monitoring reference (versions trained before
    monitoring existed did not)."""
    from mlflow import MlflowClient

    from flows.logic.monitoring import REFERENCE_ARTIFACT

    folder = REFERENCE_ARTIFACT.rsplit("/", 1)[0]
    listed = {a.path for a in MlflowClient().list_artifacts(scored_by.run_id, folder)}
    return REFERENCE_ARTIFACT in listed


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

    from flows.logic.predictions import month_of
    from flows.steps.tracking import dataset_reference

    month = month_of(data.source)
    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags(
            {
                MODEL_NAME_TAG: scored_by.model_name,
                MODEL_VERSION_TAG: scored_by.version,
                MODEL_RUN_ID_TAG: scored_by.run_id,
                ALIAS_TAG: alias,
                OUTPUT_URI_TAG: output_uri,
                # The month of a TLC file (platform-metrics reads it); none for other files.
                **({MONTH_TAG: month[1]} if month else {}),
            }
        )
        mlflow.log_params({"input_uri": data.source, "output_uri": output_uri})
        mlflow.log_input(dataset_reference(data), context="scoring")
        mlflow.log_metrics({"rows": data.rows_kept, "rows_read": data.rows_read, **metrics})
