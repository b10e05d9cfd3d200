"""Which trip files a flow may read: only from the data store, never any path or URL it is given.

Flows run on the stack's worker, which holds the S3 key and sits inside the stack's network: a
`train_path` of `/app/.env`, `s3://mlflow-artifacts/...` or `http://mlflow:5000/...` would read
what its caller may not. So an explicit location must be in the data bucket, under the data
proxy's or TLC's URL, or under a local folder the stack names as data (DATA_DIR, LOCAL_DATA_DIRS).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from flows.errors import InvalidParameters


def has_dot_segments(path: str) -> bool:
    """True when a path (or its %-decoded form) climbs with `..` or names `.`."""
    # Split by hand: PurePosixPath drops `.` segments before they can be seen.
    return any(part in ("..", ".") for part in unquote(path).split("/"))


def under_url(location: str, base: str) -> bool:
    """True when the http(s) ``location`` is ``base`` or below it, with nothing smuggled in."""
    found, root = urlparse(location), urlparse(base.rstrip("/"))
    return (
        found.scheme == root.scheme
        and found.netloc == root.netloc
        and "@" not in found.netloc
        and not found.query
        and not found.fragment
        and not has_dot_segments(found.path)
        and found.path.startswith(root.path + "/")
    )


def allowed_location(
    location: str,
    parameter: str,
    data_bucket: str | None,
    urls: list[str],
    folders: list[str],
) -> str:
    """``location`` when a flow may read it; else InvalidParameters naming ``parameter``."""
    parsed = urlparse(location)
    where = []
    if parsed.scheme == "s3":
        if data_bucket and parsed.netloc == data_bucket and not has_dot_segments(parsed.path):
            return location
    elif parsed.scheme in ("http", "https"):
        if any(under_url(location, url) for url in urls if url):
            return location
    elif parsed.scheme in ("", "file"):
        # A path that climbs (`..`) is refused as written, not resolved: where it lands depends
        # on the folders around it, and a decision must not.
        given = unquote(parsed.path) if parsed.scheme == "file" else location
        path = Path(given).resolve()
        inside = any(path.is_relative_to(Path(folder).resolve()) for folder in folders if folder)
        if inside and not has_dot_segments(given):
            return location
    if data_bucket:
        where.append(f"s3://{data_bucket}/...")
    where += [f"{url.rstrip('/')}/..." for url in urls if url]
    where += [f"{folder}/..." for folder in folders if folder]
    raise InvalidParameters(
        f"{parameter} {location!r} is outside the data store: give a month, or a file under "
        + (", ".join(where) or "the data store (none is configured)")
    )


def local_data_dirs(value: str | None) -> list[str]:
    """The folders of LOCAL_DATA_DIRS (os.pathsep-separated)."""
    return [part for part in (value or "").split(os.pathsep) if part.strip()]
