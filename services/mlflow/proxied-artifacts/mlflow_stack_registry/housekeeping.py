"""Housekeeping of the tracking server's own data: what `mlflow gc` does, and what it leaves.

Runs inside the tracking server (the only process holding its database and the artifact bucket's
key), asked by the platform's `housekeeping` flow through mlflow_stack_registry. For runs deleted
longer ago than the retention it deletes their artifacts and rows like `mlflow gc`, and also what
gc leaves behind: an MLflow 3 run's logged models (``<experiment>/models/<model id>/``) are not
the run's artifacts, so gc keeps their rows and objects forever (mlflow/mlflow#17240, #14654).
A run or logged model that backs a registered model version is never deleted: the version (and
any alias on it, and its monitoring reference sample, an artifact of the run) would break.
Afterwards the bucket is checked for objects of runs and models that no longer exist.

A backup (infra/backup/archive.py) holds the same PostgreSQL advisory lock while it copies, so a
sweep never deletes what a backup in progress has dumped but not yet copied.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import sqlalchemy as sa
from platform_names import MAINTENANCE_LOCK

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
DELETE_BATCH = 1000


class MaintenanceBusy(Exception):
    """A backup (or another sweep) holds the maintenance lock."""


@dataclass
class Sweep:
    """What one sweep deleted, kept and left for the next call."""

    deleted_runs: list[str] = field(default_factory=list)
    deleted_models: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)
    objects: int = 0
    bytes: int = 0
    remaining: int = 0

    def as_json(self) -> dict[str, Any]:
        """The answer's body."""
        return {
            "deleted_runs": self.deleted_runs,
            "deleted_logged_models": self.deleted_models,
            "kept": self.kept,
            "deleted_objects": self.objects,
            "deleted_bytes": self.bytes,
            "remaining": self.remaining,
        }


def bucket_and_prefix(destination: str) -> tuple[str, str]:
    """The bucket and key prefix of ``s3://bucket/prefix`` ('' when at the bucket's root)."""
    parsed = urlparse(destination)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"artifacts destination {destination!r} is not s3://bucket[/prefix]")
    prefix = parsed.path.strip("/")
    return parsed.netloc, f"{prefix}/" if prefix else ""


def key_prefix(artifact_uri: str, bucket: str, root: str) -> str | None:
    """The object-key prefix of an artifact location in the artifact bucket, or None when it
    lives elsewhere (then nothing of it is ours to delete)."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "mlflow-artifacts":
        path = parsed.path.strip("/")
        return f"{root}{path}/" if path else None
    if parsed.scheme == "s3" and parsed.netloc == bucket:
        path = parsed.path.strip("/")
        return f"{path}/" if path.startswith(root.rstrip("/")) and path else None
    return None


def owner_of(key: str, root: str) -> tuple[str, str, str] | None:
    """('run', id, prefix) or ('model', id, prefix) for keys laid out as MLflow lays out a run's
    artifacts (``<experiment>/<run id>/...``) or a logged model's
    (``<experiment>/models/<model id>/...``); None for any other key."""
    parts = key.removeprefix(root).split("/")
    if len(parts) >= 4 and parts[1] == "models" and MODEL_ID.match(parts[2]):
        return "model", parts[2], f"{root}{'/'.join(parts[:3])}/"
    if len(parts) >= 3 and RUN_ID.match(parts[1]):
        return "run", parts[1], f"{root}{'/'.join(parts[:2])}/"
    return None


class Housekeeper:
    """Deletes what the retention no longer keeps, for one tracking store and artifact bucket."""

    def __init__(self, backend_uri: str, destination: str) -> None:
        self.engine = sa.create_engine(backend_uri, pool_pre_ping=True, pool_size=1)
        self.bucket, self.root = bucket_and_prefix(destination)

    def s3(self) -> Any:
        """A client for the artifact bucket, with the server's own key."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None,
            config=Config(
                signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}
            ),
        )

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the maintenance lock for the block; MaintenanceBusy when a backup holds it."""
        with self.engine.connect() as connection:
            taken = connection.execute(
                sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": MAINTENANCE_LOCK}
            ).scalar()
            if not taken:
                raise MaintenanceBusy("a backup or another housekeeping holds the lock")
            try:
                yield
            finally:
                connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MAINTENANCE_LOCK}
                )
                connection.commit()

    def delete_prefix(self, prefix: str, dry_run: bool) -> tuple[int, int]:
        """Delete every object under ``prefix``; (objects, bytes) deleted (or that would be)."""
        client, count, size = self.s3(), 0, 0
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            objects = page.get("Contents", [])
            count += len(objects)
            size += sum(int(item["Size"]) for item in objects)
            for start in range(0, len(objects), DELETE_BATCH):
                batch = [{"Key": item["Key"]} for item in objects[start : start + DELETE_BATCH]]
                if batch and not dry_run:
                    client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
        return count, size

    def protected(self) -> dict[str, str]:
        """Run and logged-model ids that back a registered model version, and which version."""
        from mlflow.server.handlers import _get_model_registry_store

        registry, kept, token = _get_model_registry_store(), {}, None
        while True:
            page = registry.search_model_versions(max_results=1000, page_token=token)
            for version in page:
                why = f"backs version {version.version} of {version.name}"
                for owner in (version.run_id, getattr(version, "model_id", None)):
                    if owner:
                        kept.setdefault(owner, why)
            token = page.token
            if not token:
                return kept

    def sweep_runs(self, older_than: timedelta, max_runs: int, dry_run: bool) -> Sweep:
        """Delete up to ``max_runs`` runs deleted longer than ``older_than`` ago, with their
        artifacts and logged models, unless a model version needs them."""
        from mlflow.server.handlers import _get_tracking_store
        from mlflow.store.tracking.dbmodels.models import SqlLoggedModel

        store, sweep = _get_tracking_store(), Sweep()
        kept = self.protected()
        due = store._get_deleted_runs(older_than=int(older_than.total_seconds() * 1000))
        candidates = []
        for run_id in sorted(due):
            if run_id in kept:
                sweep.kept[run_id] = kept[run_id]
            else:
                candidates.append(run_id)
        sweep.remaining = max(len(candidates) - max_runs, 0)
        for run_id in candidates[:max_runs]:
            run = store.get_run(run_id)
            with store.ManagedSessionMaker() as session:
                models = [
                    (row.model_id, row.artifact_location)
                    for row in session.query(SqlLoggedModel).filter(
                        SqlLoggedModel.source_run_id == run_id
                    )
                ]
            if any(model_id in kept for model_id, _ in models):
                sweep.kept[run_id] = next(kept[m] for m, _ in models if m in kept)
                continue
            locations = [run.info.artifact_uri, *(location for _, location in models)]
            for location in locations:
                prefix = key_prefix(location, self.bucket, self.root)
                if prefix is not None:
                    count, size = self.delete_prefix(prefix, dry_run)
                    sweep.objects, sweep.bytes = sweep.objects + count, sweep.bytes + size
            if not dry_run:
                for model_id, _ in models:
                    store._hard_delete_logged_model(model_id)
                store._hard_delete_run(run_id)
            sweep.deleted_models += [model_id for model_id, _ in models]
            sweep.deleted_runs.append(run_id)
        self.sweep_deleted_models(store, kept, older_than, sweep, dry_run)
        return sweep

    def sweep_deleted_models(
        self, store: Any, kept: dict[str, str], older_than: timedelta, sweep: Sweep, dry_run: bool
    ) -> None:
        """Logged models deleted on their own (not with a run) longer ago than ``older_than``."""
        due = store._get_deleted_logged_models(older_than=int(older_than.total_seconds() * 1000))
        for model_id in due:
            if model_id in kept or model_id in sweep.deleted_models:
                continue
            model = store.get_logged_model(model_id, allow_deleted=True)
            prefix = key_prefix(model.artifact_location, self.bucket, self.root)
            if prefix is not None:
                count, size = self.delete_prefix(prefix, dry_run)
                sweep.objects, sweep.bytes = sweep.objects + count, sweep.bytes + size
            if not dry_run:
                store._hard_delete_logged_model(model_id)
            sweep.deleted_models.append(model_id)

    def sweep_leftovers(self, older_than: timedelta, dry_run: bool) -> dict[str, Any]:
        """Objects of runs and logged models that no longer exist (left by an older `mlflow
        gc`, or a deletion that stopped halfway), untouched for ``older_than``: deleted."""
        from mlflow.store.tracking.dbmodels.models import SqlLoggedModel, SqlRun

        owners: dict[tuple[str, str, str], datetime] = {}
        for page in (
            self.s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=self.root)
        ):
            for item in page.get("Contents", []):
                owner = owner_of(item["Key"], self.root)
                if owner is not None:
                    changed = item["LastModified"]
                    owners[owner] = max(owners.get(owner, changed), changed)
        with self.engine.connect() as connection:
            runs = set(connection.execute(sa.select(SqlRun.run_uuid)).scalars())
            models = set(connection.execute(sa.select(SqlLoggedModel.model_id)).scalars())
        cutoff = datetime.now(UTC) - older_than
        orphans = [
            (kind, owner_id, prefix)
            for (kind, owner_id, prefix), newest in sorted(owners.items())
            if owner_id not in (runs if kind == "run" else models) and newest < cutoff
        ]
        count = size = 0
        for _, _, prefix in orphans:
            found, found_bytes = self.delete_prefix(prefix, dry_run)
            count, size = count + found, size + found_bytes
        return {
            "orphans": [f"{kind} {owner_id}" for kind, owner_id, _ in orphans],
            "deleted_objects": count,
            "deleted_bytes": size,
        }

    def sizes(self) -> dict[str, Any]:
        """Sizes of the stack's databases (platform_admin.database_sizes(), from postgres-init,
        else only this one), of the artifact bucket, and how many runs and logged models exist.
        PostgreSQL reuses the space of deleted rows rather than returning it, so database sizes
        stop growing after housekeeping rather than shrink."""
        from mlflow.store.tracking.dbmodels.models import SqlLoggedModel, SqlRun

        with self.engine.connect() as connection:
            counts = {
                "runs": connection.execute(sa.select(sa.func.count()).select_from(SqlRun)).scalar(),
                "deleted_runs": connection.execute(
                    sa.select(sa.func.count())
                    .select_from(SqlRun)
                    .where(SqlRun.lifecycle_stage == "deleted")
                ).scalar(),
                "logged_models": connection.execute(
                    sa.select(sa.func.count()).select_from(SqlLoggedModel)
                ).scalar(),
            }
            try:
                query = sa.text("SELECT * FROM platform_admin.database_sizes()")
                rows = connection.execute(query)
                databases = {str(name): int(size) for name, size in rows}
            except sa.exc.DBAPIError:
                connection.rollback()
                row = connection.execute(
                    sa.text("SELECT current_database(), pg_database_size(current_database())")
                ).one()
                databases = {str(row[0]): int(row[1])}
        count = size = 0
        for page in (
            self.s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=self.root)
        ):
            objects = page.get("Contents", [])
            count += len(objects)
            size += sum(int(item["Size"]) for item in objects)
        return {
            "databases": databases,
            "buckets": {self.bucket: {"objects": count, "bytes": size}},
            "counts": {name: int(value or 0) for name, value in counts.items()},
        }
