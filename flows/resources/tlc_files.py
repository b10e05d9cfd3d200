"""TLC trip-record files where they live: a path, the data store, S3, TLC's site; read once,
validated, stored once."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import requests

from flows.errors import TripDataError
from flows.logic.months import FILE_NAME, bucket_key, file_name, official_url
from flows.logic.trips import DEFAULT_LIMITS, FileLimits, TripData, read_parquet, validate_trips
from flows.resources.s3 import MISSING_BUCKET, error_code, is_missing

if TYPE_CHECKING:
    from flows.resources.store import DataStore, ProxyStore

DOWNLOAD_CHUNK = 1 << 20
# A flow's logger (Prefect's run logger is an adapter) or a plain one.
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


def read_bytes(
    location: str, s3: Any = None, proxy: ProxyStore | None = None, max_bytes: int | None = None
) -> bytes:
    """The bytes of a local path, an ``s3://bucket/key`` object or an http(s) URL (one of the
    data proxy's with its credentials); more than ``max_bytes`` is refused before it is read."""
    parsed = urlparse(location)
    try:
        if proxy is not None and (key := proxy.key_of(location)) is not None:
            return proxy.read_bytes(key)
        if parsed.scheme == "s3":
            return read_object(s3, location, max_bytes)
        if parsed.scheme in ("http", "https"):
            return read_url(location, max_bytes)
        if max_bytes is not None and Path(location).stat().st_size > max_bytes:
            raise too_large(location, max_bytes)
        return Path(location).read_bytes()
    except FileNotFoundError as error:
        raise TripDataError(location, "file not found") from error
    except IsADirectoryError as error:
        raise TripDataError(location, "is a directory, not a parquet file") from error


def too_large(location: str, max_bytes: int) -> TripDataError:
    """The refusal of a file larger than any trip file may be."""
    return TripDataError(location, f"larger than TRIP_FILE_MAX_BYTES ({max_bytes} bytes)")


def read_url(url: str, max_bytes: int | None) -> bytes:
    """The body of an http(s) URL, streamed and cut off (refused) past ``max_bytes``."""
    with requests.get(url, stream=True, timeout=60) as response:
        response.raise_for_status()
        body = bytearray()
        for chunk in response.iter_content(DOWNLOAD_CHUNK):
            body += chunk
            if max_bytes is not None and len(body) > max_bytes:
                raise too_large(url, max_bytes)
    return bytes(body)


def read_object(s3: Any, location: str, max_bytes: int | None = None) -> bytes:
    """The bytes of an ``s3://bucket/key`` object; a missing object or bucket is bad input."""
    from botocore.exceptions import ClientError

    parsed = urlparse(location)
    try:
        response = s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
        if max_bytes is not None and int(response.get("ContentLength") or 0) > max_bytes:
            response["Body"].close()
            raise too_large(location, max_bytes)
        body: bytes = response["Body"].read()
    except ClientError as error:
        if is_missing(error):
            missing = "bucket" if error_code(error) in MISSING_BUCKET else "file"
            raise TripDataError(location, f"{missing} not found") from error
        raise
    return body


def load_trips(
    location: str,
    s3: Any = None,
    proxy: ProxyStore | None = None,
    limits: FileLimits = DEFAULT_LIMITS,
) -> TripData:
    """Read and validate one trip-record file from wherever it lives, within ``limits``."""
    data = read_bytes(location, s3, proxy, limits.max_bytes)
    checked = validate_trips(read_parquet(location, data, limits), location)
    return dataclasses.replace(checked, digest=hashlib.sha256(data).hexdigest())


def download(url: str, target: Path, logger: Logger) -> int:
    """Stream ``url`` to ``target``, logging progress every 10 %; return the byte count."""
    with requests.get(url, stream=True, timeout=60) as response:
        if response.status_code == 404 or response.status_code == 403:
            # TLC's CDN answers 403 for files it has not published (yet).
            raise TripDataError(url, f"not published (HTTP {response.status_code})")
        response.raise_for_status()
        total = int(response.headers.get("Content-Length") or 0)
        done, next_report = 0, 10
        with target.open("wb") as out:
            for chunk in response.iter_content(DOWNLOAD_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if total and done * 100 >= next_report * total:
                    logger.info("downloading %s: %d%% of %.1f MB", url, next_report, total / 1e6)
                    next_report += 10
        if total and done != total:
            raise TripDataError(url, f"download ended after {done} of {total} bytes")
        return done


def ensure_month_stored(
    store: DataStore, base_url: str, color: str, month: str, logger: Logger
) -> str:
    """The month's location in the data store, downloading it there the first time (or TLC's
    own URL when this account may only read the store)."""
    from flows.resources.store import ReadOnlyStore

    key = bucket_key(color, month)
    if store.exists(key):
        logger.info("%s is in the data store", store.uri(key))
        return store.uri(key)
    url = official_url(base_url, color, month)
    logger.info("%s is missing: downloading %s", store.uri(key), url)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / file_name(color, month)
        size = download(url, local, logger)
        # Check before storing, so the store never caches a broken month.
        validate_trips(read_parquet(url, local.read_bytes()), url)
        try:
            location = store.put_file(local, key)
        except ReadOnlyStore as refused:
            # A worker on another host reads the store but never writes it; the stack's own
            # workers (or `make upload-data`) store the month. Same bytes, read from TLC.
            logger.warning("%s; reading %s directly", refused, url)
            return url
    logger.info("stored %s (%.1f MB)", location, size / 1e6)
    return location


def is_published(url: str) -> bool:
    """True when the TLC CDN serves ``url`` (a HEAD request; 403/404 mean not published)."""
    response = requests.head(url, timeout=30, allow_redirects=True)
    if response.status_code in (403, 404):
        return False
    response.raise_for_status()
    return True


def upload_month_file(store: DataStore, path: Path) -> str:
    """Validate a local TLC file and store it under the key the flows look for; return where."""
    match = FILE_NAME.match(path.name)
    if not match:
        raise TripDataError(
            str(path),
            "name must be {green|yellow}_tripdata_YYYY-MM.parquet, as "
            "TLC publishes it, so the flows can find it by month",
        )
    load_trips(str(path))
    return store.put_file(path, bucket_key(match["color"], match["month"]))
