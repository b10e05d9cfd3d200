"""The model registry: loading a version, queries, registering a challenger, crowning a champion.

The names it writes (aliases, tags) live in platform_names.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platform_names import (
    ADOPTION_REFUSED_TAG,
    ALIAS_HISTORY_PATH,
    ARCHIVED,
    ARCHIVED_BY_TAG,
    CHALLENGER,
    CHAMPION,
    FLOW_RUN_TAG,
    PRODUCTION,
    PROMOTION_FILE,
    PROMOTION_TAG,
    PROMOTION_TAG_PREFIX,
    RECORD_TAG,
    STAGE_TAG,
    STAGING,
    VAL_RMSE_TAG,
)

from flows.errors import UntrustedVersion

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel

MODEL_DESCRIPTION = "NYC taxi trip duration in minutes, from raw TLC trip records."


class NotTheStack(UntrustedVersion):
    """A version without a record, loaded where its record cannot be written (not the stack)."""


# The `flows` package this process runs: its model modules are what the stack approves.
FLOWS_DIR = Path(__file__).resolve().parents[1]
# One version's modules replace this process's for the length of one load (see load_pinned).
_LOADING = threading.Lock()


def load_version(model_name: str, version: str, approve: bool = True) -> tuple[PyFuncModel, float]:
    """A registered version loaded from a fresh download, once its files are the ones the stack
    recorded, and its files' size in MB (10^6 bytes).

    With ``approve``, a version without a record is recorded first when the stack may vouch for
    it (flows/logic/provenance.py: the platform's loader and code); else UntrustedVersion.
    """
    import mlflow
    from mlflow import MlflowClient

    from flows.logic.provenance import verified_files

    client = MlflowClient()
    found = client.get_model_version(model_name, version)
    record_tag = found.tags.get(RECORD_TAG)
    with tempfile.TemporaryDirectory(prefix="version-") as target:
        local = Path(
            mlflow.artifacts.download_artifacts(f"models:/{model_name}/{version}", dst_path=target)
        )
        if not record_tag and approve:
            record_tag = approve_downloaded(client, found, local, "loading")
        verified_files(model_name, str(version), local, record_tag)
        model = load_pinned(local)
        size_mb = sum(f.stat().st_size for f in local.rglob("*") if f.is_file()) / 1e6
    return model, size_mb


def platform_code() -> dict[str, str]:
    """The sha256 of this process's model modules, as a version's code/ holds them."""
    import hashlib

    from flows.logic.provenance import MODEL_MODULES

    return {
        f"{FLOWS_DIR.name}/{module}": hashlib.sha256((FLOWS_DIR / module).read_bytes()).hexdigest()
        for module in MODEL_MODULES
    }


def origin_problems(client: MlflowClient, found: ModelVersion) -> list[str]:
    """Why a version did not come from the platform's training experiment (none when it did)."""
    from flows.settings import Settings

    experiment = client.get_experiment_by_name(Settings.from_env().experiment_name)
    if experiment is None:
        return ["the training experiment does not exist"]
    if found.model_id:
        logged_in = client.get_logged_model(found.model_id).experiment_id
    elif found.run_id:
        logged_in = client.get_run(found.run_id).info.experiment_id
    else:
        return ["it names no run or logged model it came from"]
    if str(logged_in) != str(experiment.experiment_id):
        return [f"it was logged in experiment {logged_in}, not the training experiment"]
    return []


def approve_downloaded(client: MlflowClient, found: ModelVersion, local: Path, by: str) -> str:
    """Record a downloaded version the stack vouches for; the record's tag value."""
    from mlflow.exceptions import MlflowException

    from flows.logic.provenance import approvable

    model_name, version = found.name, str(found.version)
    tag = approvable(
        model_name, version, local, platform_code(), by, origin_problems(client, found)
    ).to_tag()
    try:
        client.set_model_version_tag(model_name, version, RECORD_TAG, tag)
    except MlflowException as error:
        if error.error_code == "PERMISSION_DENIED":
            raise NotTheStack(
                model_name,
                version,
                "it has no record yet, and only the stack's own workers record versions "
                "(promotion runs on the stack: the promote deployment, in-stack queue)",
            ) from error
        raise
    return tag


def record_version(client: MlflowClient, model_name: str, version: str) -> bool:
    """Record a version this process just registered; False when this account may not (a
    worker on another host: the stack records it when it first loads it)."""
    import mlflow

    found = client.get_model_version(model_name, version)
    try:
        with tempfile.TemporaryDirectory(prefix="version-") as target:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    f"models:/{model_name}/{version}", dst_path=target
                )
            )
            approve_downloaded(client, found, local, "training")
    except NotTheStack:
        return False
    return True


def adopt_versions(client: MlflowClient, model_name: str) -> list[tuple[str, str]]:
    """Adopt the versions of ``model_name`` trained before the stack kept records (an upgrade
    from such a release): record those it may vouch for (flows/logic/provenance.py
    `adoptable`); every version without a record is looked at, each once. Returns (version,
    outcome) for each: "adopted" or why it stays refused. A version holding an alias is
    re-pointed at itself with the reason, so the alias history names what was adopted."""
    import mlflow

    from flows.logic.provenance import ADOPTED, adoptable, released_code

    outcomes = []
    for found in all_versions(client, model_name):
        if RECORD_TAG in found.tags or ADOPTION_REFUSED_TAG in found.tags:
            continue
        version = str(found.version)
        with tempfile.TemporaryDirectory(prefix="version-") as target:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    f"models:/{model_name}/{version}", dst_path=target
                )
            )
            try:
                record = adoptable(
                    model_name, version, local, released_code(), origin_problems(client, found)
                )
            except UntrustedVersion as refused:
                # Looked at once: an admin who decides otherwise deletes this tag.
                client.set_model_version_tag(
                    model_name, version, ADOPTION_REFUSED_TAG, refused.problem[:5000]
                )
                outcomes.append((version, f"not adopted: {refused.problem}"))
                continue
        client.set_model_version_tag(model_name, version, RECORD_TAG, record.to_tag())
        for alias in found.aliases:
            move_alias(client, model_name, alias, version, f"{ADOPTED} (version {version})")
        outcomes.append((version, "adopted"))
    return outcomes


def load_pinned(local: Path) -> PyFuncModel:
    """Load a downloaded version with its own code/, not this process's `flows` modules.

    The platform's processes import `flows.model` themselves, and Python reuses an imported
    module whatever `sys.path` says: without this, an edit of the feature code would change how
    every registered version predicts here, and differently from a notebook. The version's
    modules are imported fresh under their own names for the load (the model object keeps them),
    then this process's come back.
    """
    import mlflow

    import flows
    from flows.logic.provenance import CODE_DIR, MODEL_MODULES

    names = [
        f"flows.{module.removesuffix('.py')}" for module in MODEL_MODULES if module != "__init__.py"
    ]
    code_package = str(local / CODE_DIR / FLOWS_DIR.name)
    path_before = list(sys.path)
    with _LOADING:
        saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
        flows.__path__.insert(0, code_package)
        try:
            model: PyFuncModel = mlflow.pyfunc.load_model(str(local))
            return model
        finally:
            flows.__path__.remove(code_package)
            for name in names:
                sys.modules.pop(name, None)
            sys.modules.update(saved)
            # Importing a submodule also sets it as an attribute of the package: put ours back.
            for name, module in saved.items():
                setattr(flows, name.rpartition(".")[2], module)
            sys.path[:] = path_before  # MLflow prepends the version's code/ on every load


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
    record_version(client, name, str(version.version))
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=MODEL_DESCRIPTION)
    move_alias(client, name, CHALLENGER, str(version.version), f"registered (val rmse {rmse:.4f})")
    return version


def challenger_from_run(
    client: MlflowClient, name: str, run_id: str, model_uri: str, rmse: float
) -> str:
    """The version registered from ``run_id`` as challenger; idempotent under retries (a version
    already made from this run is reused, not duplicated)."""
    existing = versions_of_run(client, name, run_id)
    if existing:
        move_alias(client, name, CHALLENGER, str(existing[0].version), "registered (retried)")
        return str(existing[0].version)
    return str(register_challenger(client, name, model_uri, rmse).version)


def move_alias(
    client: MlflowClient, name: str, alias: str, version: str | None, reason: str
) -> None:
    """Point ``alias`` at ``version`` (None: remove it), with the reason the tracking server
    records in its alias history (mlflow_stack_registry; MLflow's client cannot send one)."""
    from urllib.parse import quote

    import mlflow
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request_safe

    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):  # a local store keeps no history
        if version is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, version)
        return
    body = {"name": name, "alias": alias}
    http_request_safe(  # type: ignore[no-untyped-call]
        get_default_host_creds(uri),  # type: ignore[no-untyped-call]
        "/api/2.0/mlflow/registered-models/alias",
        "POST" if version is not None else "DELETE",
        json={**body, "version": str(version)} if version is not None else body,
        extra_headers={"X-Platform-Reason": quote(reason, safe=" :,./()@=<>-_'")},
    )


def crown(
    client: MlflowClient,
    name: str,
    challenger: ModelVersion,
    champion: ModelVersion | None,
    reason: str,
) -> None:
    """Move ``champion`` to the challenger; the old champion is tagged archived."""
    move_alias(client, name, CHAMPION, str(challenger.version), f"promotion: {reason}")
    move_alias(client, name, CHALLENGER, None, f"promoted to {CHAMPION}")
    client.set_model_version_tag(name, challenger.version, STAGE_TAG, PRODUCTION)
    if champion is not None:
        client.set_model_version_tag(name, champion.version, STAGE_TAG, ARCHIVED)
        client.set_model_version_tag(
            name, champion.version, ARCHIVED_BY_TAG, str(challenger.version)
        )
    client.update_model_version(
        name, challenger.version, description=f"Champion since promotion: {reason}."
    )


def promotion_record(version: ModelVersion) -> dict[str, str]:
    """Every number of the promotion's decision on ``version`` (decision, reason, compared_with,
    failed, both sides' metrics, budgets): its training run's PROMOTION_FILE, or the
    ``promotion.*`` tags of a version decided before that file existed; {} when undecided."""
    import mlflow

    tags = version.tags or {}
    older = {
        key.removeprefix(PROMOTION_TAG_PREFIX): value
        for key, value in tags.items()
        if key.startswith(PROMOTION_TAG_PREFIX)
    }
    if older or PROMOTION_TAG not in tags or not version.run_id:
        return older
    path = PROMOTION_FILE.format(version=version.version)
    numbers: dict[str, str] = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/{path}")
    return numbers


def alias_moves(name: str, alias: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest moves of the model's aliases, newest first, as the tracking server recorded
    them (mlflow_stack_registry.history)."""
    import mlflow
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request_safe

    params: dict[str, Any] = {"name": name, "limit": limit, **({"alias": alias} if alias else {})}
    answer = http_request_safe(  # type: ignore[no-untyped-call]
        get_default_host_creds(mlflow.get_tracking_uri()),  # type: ignore[no-untyped-call]
        ALIAS_HISTORY_PATH,
        "GET",
        params=params,
    )
    moves: list[dict[str, Any]] = answer.json()["moves"]
    return moves


def rollback_target(client: MlflowClient, name: str, version: str | None) -> tuple[str, str]:
    """(current champion, the version to put back): ``version``, else the champion before
    the current one; MissingModel when there is none, or when the stack has no record of it."""
    from flows.errors import MissingModel

    current = version_by_alias(client, name, CHAMPION)
    if current is None:
        raise MissingModel(f"model {name!r} has no {CHAMPION} to roll back")
    if version is None:
        moves = alias_moves(name, CHAMPION, 1000)
        earlier = [
            m for m in moves if m["to_version"] == str(current.version) and m["from_version"]
        ]
        if not earlier:
            raise MissingModel(
                f"no champion before version {current.version} is on record: give VERSION=n"
            )
        version = str(earlier[0]["from_version"])
    target = client.get_model_version(name, version)
    if RECORD_TAG not in target.tags:
        raise MissingModel(
            f"version {version} has no record of the stack: the model server would refuse it"
        )
    return str(current.version), str(target.version)


def roll_back(client: MlflowClient, name: str, version: str | None, reason: str) -> tuple[str, str]:
    """Put the champion back to ``version`` (default: the one before), recording why; the
    (old, new) champion versions."""
    old, new = rollback_target(client, name, version)
    move_alias(client, name, CHAMPION, new, f"rollback from version {old}: {reason}")
    client.set_model_version_tag(name, new, STAGE_TAG, PRODUCTION)
    client.set_model_version_tag(name, old, STAGE_TAG, ARCHIVED)
    return old, new
