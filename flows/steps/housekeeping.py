"""Tasks of the housekeeping flow: sizes, MLflow's deleted runs and leftovers, old predictions
and served records, Prefect's flow-run backlog."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from platform_names import HOUSEKEEPING_API_PATH
from prefect import get_run_logger, task

from flows.logic.retention import (
    expired_predictions,
    flatten_sizes,
    human_bytes,
    sizes_table,
    total_bytes,
)
from flows.steps.retry import IO_RETRIES

SWEEP_BATCH = 100


def tracking_call(method: str, action: str, body: dict[str, Any] | None = None) -> Any:
    """One housekeeping call to the tracking server, as this worker's MLflow account."""
    import mlflow
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request_safe

    response = http_request_safe(  # type: ignore[no-untyped-call]
        get_default_host_creds(mlflow.get_tracking_uri()),  # type: ignore[no-untyped-call]
        f"{HOUSEKEEPING_API_PATH}/{action}",
        method,
        json=body,
        timeout=600,
    )
    return response.json()


@task(**IO_RETRIES)
def measure_sizes() -> dict[str, int]:
    """Bytes of each database and bucket of the stack, by name."""
    from flows.resources.store import BucketStore, data_store
    from flows.settings import Settings

    report = tracking_call("GET", "sizes")
    sizes = flatten_sizes(report)
    for name, value in report.get("counts", {}).items():
        get_run_logger().info("MLflow %s: %d", name.replace("_", " "), value)
    store = data_store(Settings.from_env())
    if isinstance(store, BucketStore):
        sizes[f"bucket {store.bucket}"] = total_bytes(store.listing(""))
    return sizes


@task(**IO_RETRIES)
def sweep_mlflow_runs(retention_days: float, dry_run: bool) -> dict[str, Any]:
    """Delete MLflow runs deleted more than ``retention_days`` ago, a batch per call, until none
    is left; what was deleted and kept."""
    logger = get_run_logger()
    deleted: list[str] = []
    models: list[str] = []
    kept: dict[str, str] = {}
    objects = size = 0
    body = {"older_than_days": retention_days, "max_runs": SWEEP_BATCH, "dry_run": dry_run}
    while True:
        answer = tracking_call("POST", "runs", body)
        deleted += answer["deleted_runs"]
        models += answer["deleted_logged_models"]
        kept.update(answer["kept"])
        objects += answer["deleted_objects"]
        size += answer["deleted_bytes"]
        logger.info(
            "MLflow runs: %d deleted so far (%s), %d left",
            len(deleted),
            human_bytes(size),
            answer["remaining"],
        )
        if dry_run or not answer["remaining"]:
            break
    for run_id, reason in sorted(kept.items()):
        logger.info("kept deleted run %s: it %s", run_id, reason)
    return {
        "runs": deleted,
        "logged_models": models,
        "kept": kept,
        "objects": objects,
        "bytes": size,
    }


@task(**IO_RETRIES)
def sweep_mlflow_leftovers(retention_days: float, dry_run: bool) -> dict[str, Any]:
    """Objects in the artifact bucket of runs and logged models that no longer exist."""
    answer: dict[str, Any] = tracking_call(
        "POST", "leftovers", {"older_than_days": retention_days, "dry_run": dry_run}
    )
    if answer["orphans"]:
        get_run_logger().warning(
            "artifact bucket: %d objects (%s) of %d runs/models that no longer exist: %s",
            answer["deleted_objects"],
            human_bytes(answer["deleted_bytes"]),
            len(answer["orphans"]),
            ", ".join(answer["orphans"][:10]),
        )
    return answer


def aliased_versions(model_names: set[str]) -> dict[str, set[str]]:
    """The versions of each model that hold an alias now."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, aliased = MlflowClient(), {}
    for name in model_names:
        try:
            aliases = client.get_registered_model(name).aliases
        except MlflowException:  # the model was deleted: none of its versions hold an alias
            aliases = {}
        aliased[name] = {str(version) for version in aliases.values()}
    return aliased


@task(**IO_RETRIES)
def prune_predictions(retention_days: float, dry_run: bool) -> dict[str, Any]:
    """Delete predictions older than ``retention_days`` by versions that hold no alias."""
    from platform_names import PREDICTIONS_PREFIX

    from flows.logic.retention import predicted_by
    from flows.resources.store import BucketStore, FolderStore, data_store
    from flows.settings import Settings

    store = data_store(Settings.from_env())
    if not isinstance(store, BucketStore | FolderStore):
        return {"objects": 0, "bytes": 0, "skipped": "no data bucket or folder of the stack's"}
    objects = list(store.listing(f"{PREDICTIONS_PREFIX}/"))
    models = {owner[0] for item in objects if (owner := predicted_by(item.key))}
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    expired = expired_predictions(objects, aliased_versions(models), cutoff)
    for item in expired:
        get_run_logger().info("predictions %s (%s)", item.key, human_bytes(item.size))
        if not dry_run:
            store.delete(item.key)
    return {"objects": len(expired), "bytes": total_bytes(expired)}


@task(**IO_RETRIES)
def prune_served(retention_days: float, dry_run: bool) -> dict[str, Any]:
    """Delete what the model server answered longer than ``retention_days`` ago (served/)."""
    from platform_names import SERVED_PREFIX

    from flows.logic.retention import expired_served
    from flows.resources.store import BucketStore, FolderStore, data_store
    from flows.settings import Settings

    store = data_store(Settings.from_env())
    if not isinstance(store, BucketStore | FolderStore):
        return {"objects": 0, "bytes": 0}
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    expired = expired_served(store.listing(f"{SERVED_PREFIX}/"), cutoff)
    if not dry_run:
        for item in expired:
            store.delete(item.key)
    return {"objects": len(expired), "bytes": total_bytes(expired)}


@task(**IO_RETRIES)
def flow_run_backlog(retention_days: int) -> int:
    """Flow runs that ended longer ago than Prefect's vacuum keeps them (it runs hourly)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterEndTime

    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    with get_client(sync_client=True) as client:
        return client.count_flow_runs(
            flow_run_filter=FlowRunFilter(end_time=FlowRunFilterEndTime(before_=cutoff))
        )


def housekeeping_report(
    before: dict[str, int], after: dict[str, int], found: dict[str, Any], dry_run: bool
) -> str:
    """What housekeeping deleted and the sizes before and after, as Markdown."""
    runs, leftovers, predictions = found["runs"], found["leftovers"], found["predictions"]
    verb = "would delete" if dry_run else "deleted"
    lines = [
        f"# Housekeeping{' (dry run)' if dry_run else ''}",
        "",
        f"- MLflow: {verb} {len(runs['runs'])} deleted runs and {len(runs['logged_models'])} "
        f"logged models ({runs['objects']} objects, {human_bytes(runs['bytes'])}); kept "
        f"{len(runs['kept'])} deleted runs that back registered versions",
        f"- Artifact bucket: {verb} {leftovers['deleted_objects']} objects "
        f"({human_bytes(leftovers['deleted_bytes'])}) of {len(leftovers['orphans'])} runs or "
        "models that no longer exist",
        f"- Predictions of versions without an alias: {verb} {predictions['objects']} files "
        f"({human_bytes(predictions['bytes'])})",
        f"- What the model server answered, past its retention: {verb} "
        f"{found['served']['objects']} files ({human_bytes(found['served']['bytes'])})",
        f"- Prefect: {found['backlog']} flow runs older than the retention, left for Prefect's "
        "vacuum (hourly)",
        "",
        sizes_table(before, after),
        "",
        "PostgreSQL reuses the space of deleted rows instead of returning it: a database stops "
        "growing rather than shrinks.",
    ]
    return "\n".join(lines)
