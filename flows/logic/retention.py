"""What housekeeping may delete, and how big the platform's data is: pure functions."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from platform_names import PREDICTIONS_PREFIX, SERVED_PREFIX

# flows/logic/predictions.py prediction_key: ``<model>-v<version>.parquet``.
PREDICTION_FILE = re.compile(r"^(?P<model>.+)-v(?P<version>[0-9]+)\.parquet$")


@dataclass(frozen=True)
class StoredObject:
    """One object of a store: its key, size in bytes and when it was last written."""

    key: str
    size: int
    modified: datetime


def predicted_by(key: str) -> tuple[str, str] | None:
    """(model, version) whose predictions the object at ``key`` holds, else None."""
    if not key.startswith(f"{PREDICTIONS_PREFIX}/"):
        return None
    found = PREDICTION_FILE.match(PurePosixPath(key).name)
    return (found["model"], found["version"]) if found else None


def expired_predictions(
    objects: Iterable[StoredObject], aliased: Mapping[str, set[str]], cutoff: datetime
) -> list[StoredObject]:
    """Predictions written before ``cutoff`` by versions that hold no alias now: a version with
    an alias (champion, challenger, a rollback target someone named) keeps all of its months."""
    expired = []
    for item in objects:
        owner = predicted_by(item.key)
        if owner is None or item.modified >= cutoff:
            continue
        model, version = owner
        if version not in aliased.get(model, set()):
            expired.append(item)
    return expired


def expired_served(objects: Iterable[StoredObject], cutoff: datetime) -> list[StoredObject]:
    """The model server's answered records (served/) written before ``cutoff``."""
    return [o for o in objects if o.key.startswith(f"{SERVED_PREFIX}/") and o.modified < cutoff]


def total_bytes(objects: Iterable[StoredObject]) -> int:
    """The objects' summed size."""
    return sum(item.size for item in objects)


def human_bytes(size: float) -> str:
    """A size for people: 1.5 MB, 320 kB, 12 B (powers of 1000, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def flatten_sizes(report: Mapping[str, object]) -> dict[str, int]:
    """``{"database mlflow": bytes, "bucket data": bytes}`` from a sizes report."""
    flat: dict[str, int] = {}
    databases = report.get("databases", {})
    buckets = report.get("buckets", {})
    if isinstance(databases, Mapping):
        flat.update({f"database {name}": int(size) for name, size in databases.items()})
    if isinstance(buckets, Mapping):
        for name, figures in buckets.items():
            if isinstance(figures, Mapping):
                flat[f"bucket {name}"] = int(figures.get("bytes", 0))
    return flat


def sizes_table(before: Mapping[str, int], after: Mapping[str, int]) -> str:
    """A Markdown table of each database's and bucket's size before and after."""
    lines = ["| | before | after | change |", "|---|---:|---:|---:|"]
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, 0), after.get(name, 0)
        change = human_bytes(new - old)
        lines.append(f"| {name} | {human_bytes(old)} | {human_bytes(new)} | {change} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Growth:
    """What the platform's stores gain per training run, measured."""

    database_bytes_per_run: float
    bucket_bytes_per_run: float


def yearly_projection(
    growth: Growth, runs_per_day: float, deleted_share: float, retention_days: float
) -> dict[str, float]:
    """Bytes after a year of ``runs_per_day`` runs, of which ``deleted_share`` get deleted:
    without housekeeping every run stays; with it, a deleted run stays ``retention_days``."""
    per_run = growth.database_bytes_per_run + growth.bucket_bytes_per_run
    runs = runs_per_day * 365
    kept = runs * (1 - deleted_share) + runs_per_day * min(retention_days, 365) * deleted_share
    return {"without": runs * per_run, "with": kept * per_run}
