"""The model registry: loading a version, queries, registering a challenger, crowning a champion.

The names it writes (aliases, tags) live in flows/names.py.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from flows.names import (
    ARCHIVED,
    ARCHIVED_BY_TAG,
    CHALLENGER,
    CHAMPION,
    FLOW_RUN_TAG,
    PRODUCTION,
    STAGE_TAG,
    STAGING,
    VAL_RMSE_TAG,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel

MODEL_DESCRIPTION = "NYC taxi trip duration in minutes, from raw TLC trip records."


def load_version(model_name: str, version: str) -> tuple[PyFuncModel, float]:
    """A registered version loaded from a fresh download, and its files' size in MB (10^6 bytes)."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="version-") as target:
        local = mlflow.artifacts.download_artifacts(
            f"models:/{model_name}/{version}", dst_path=target
        )
        model = mlflow.pyfunc.load_model(local)
        size_mb = sum(f.stat().st_size for f in Path(local).rglob("*") if f.is_file()) / 1e6
    return model, size_mb


def quoted(value: str) -> str:
    """``value`` as a string literal of MLflow's search syntax, which has no escapes."""
    for quote in ("'", '"'):
        if quote not in value:
            return f"{quote}{value}{quote}"
    raise ValueError(f"cannot search for a value with both kinds of quotes: {value!r}")


def versions_of_run(client: MlflowClient, name: str, run_id: str) -> list[ModelVersion]:
    """The versions of model ``name`` registered from the run ``run_id``."""
    return list(
        client.search_model_versions(f"name = {quoted(name)} and run_id = {quoted(run_id)}")
    )


def all_versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of model ``name``."""
    return list(client.search_model_versions(f"name = {quoted(name)}"))


def runs_of_flow_run(
    client: MlflowClient, flow_run_id: str, status: str | None = None
) -> list[Run]:
    """MLflow runs (in any experiment) tagged with a Prefect flow run, newest first."""
    query = f"tags.`{FLOW_RUN_TAG}` = {quoted(flow_run_id)}"
    if status:
        query += f" and attributes.status = {quoted(status)}"
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, query, order_by=["attributes.start_time DESC"]))


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def register_challenger(
    client: MlflowClient, name: str, model_uri: str, rmse: float
) -> ModelVersion:
    """Register ``model_uri`` as a new version of ``name`` and point ``challenger`` at it."""
    import mlflow

    version = mlflow.register_model(
        model_uri, name, tags={STAGE_TAG: STAGING, VAL_RMSE_TAG: f"{rmse:.4f}"}
    )
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=MODEL_DESCRIPTION)
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return version


def challenger_from_run(
    client: MlflowClient, name: str, run_id: str, model_uri: str, rmse: float
) -> str:
    """The version registered from ``run_id`` as challenger; idempotent under retries (a version
    already made from this run is reused, not duplicated)."""
    existing = versions_of_run(client, name, run_id)
    if existing:
        client.set_registered_model_alias(name, CHALLENGER, existing[0].version)
        return str(existing[0].version)
    return str(register_challenger(client, name, model_uri, rmse).version)


def crown(
    client: MlflowClient,
    name: str,
    challenger: ModelVersion,
    champion: ModelVersion | None,
    reason: str,
) -> None:
    """Move ``champion`` to the challenger; the old champion is tagged archived."""
    client.set_registered_model_alias(name, CHAMPION, challenger.version)
    client.delete_registered_model_alias(name, CHALLENGER)
    client.set_model_version_tag(name, challenger.version, STAGE_TAG, PRODUCTION)
    if champion is not None:
        client.set_model_version_tag(name, champion.version, STAGE_TAG, ARCHIVED)
        client.set_model_version_tag(
            name, champion.version, ARCHIVED_BY_TAG, str(challenger.version)
        )
    client.update_model_version(
        name, challenger.version, description=f"Champion since promotion: {reason}."
    )
