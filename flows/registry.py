"""The model registry: versions, the challenger/champion aliases, and the promotion rule.

The seed's stages map onto aliases: Staging = ``challenger``, Production = ``champion``; a demoted
champion keeps its version and is tagged ``stage=archived``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

CHAMPION, CHALLENGER = "champion", "challenger"


class NotPromotable(RuntimeError):
    """The challenger may not be promoted (failed run, missing metrics, ...)."""


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or None when the alias (or the model) does not exist."""
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
        model_uri, name, tags={"stage": "staging", "val_rmse": f"{rmse:.4f}"}
    )
    if not client.get_registered_model(name).description:
        client.update_registered_model(
            name, description="NYC taxi trip duration in minutes, from raw TLC trip records."
        )
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return version


@dataclass(frozen=True)
class Decision:
    """The outcome of comparing a challenger with the champion on the same data."""

    promote: bool
    reason: str


def decide(challenger_rmse: float | None, champion_rmse: float | None) -> Decision:
    """Promote when there is no champion, or the challenger's RMSE is lower on the same data."""
    if challenger_rmse is None or not math.isfinite(challenger_rmse):
        return Decision(False, "the challenger has no valid rmse")
    if champion_rmse is None:
        return Decision(True, "there is no champion yet")
    if challenger_rmse < champion_rmse:
        return Decision(True, f"rmse {challenger_rmse:.4f} < champion's {champion_rmse:.4f}")
    return Decision(False, f"rmse {challenger_rmse:.4f} >= champion's {champion_rmse:.4f}")


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
    client.set_model_version_tag(name, challenger.version, "stage", "production")
    if champion is not None:
        client.set_model_version_tag(name, champion.version, "stage", "archived")
        client.set_model_version_tag(name, champion.version, "archived_by", str(challenger.version))
    client.update_model_version(
        name, challenger.version, description=f"Champion since promotion: {reason}."
    )
