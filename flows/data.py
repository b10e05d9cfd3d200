"""TLC trip-record files: reading one from anywhere, validating it, storing a month once."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import requests

from flows.errors import TripDataError
from flows.features import (
    DROPOFF,
    LOCATION_IDS,
    MAX_DURATION_MIN,
    MIN_DURATION_MIN,
    PICKUP,
    add_duration,
    filter_duration,
    normalize_columns,
)
from flows.s3 import MISSING_BUCKET, error_code, is_missing
from flows.tlc import FILE_NAME, bucket_key, file_name, official_url

if TYPE_CHECKING:
    from flows.store import DataStore, ProxyStore

DOWNLOAD_CHUNK = 1 << 20
# A trip's row in its file, kept through filtering: TLC records carry no id of their own.
ROW_COLUMN = "row_in_file"
# The types every validated month has, and so every model's signature (inferred from them): TLC
# stores zones as int64 up to 2023-01 and as int32 from 2023-02 on, and a signature inferred from
# one of those would refuse the other. Timestamps keep the microseconds TLC's files store.
CANONICAL_DTYPES = {
    "PULocationID": "int64",
    "DOLocationID": "int64",
    "trip_distance": "float64",
    PICKUP: "datetime64[us]",
    DROPOFF: "datetime64[us]",
}
# A flow's logger (Prefect's run logger is an adapter) or a plain one.
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass(frozen=True)
class TripData:
    """Validated trips of one file, with the numbers worth logging about it."""

    source: str
    trips: pd.DataFrame
    rows_read: int
    timestamp_prefix: str = "lpep_"
    digest: str = ""  # sha256 of the file's bytes: which copy of a month a model saw

    @property
    def rows_kept(self) -> int:
        return len(self.trips)

    def as_raw(self) -> pd.DataFrame:
        """The kept trips under the file's own column names (what a served model receives)."""
        prefix = self.timestamp_prefix
        return self.trips.rename(columns={PICKUP: prefix + PICKUP, DROPOFF: prefix + DROPOFF})


def read_bytes(location: str, s3: Any = None, proxy: ProxyStore | None = None) -> bytes:
    """The bytes of a local path, an ``s3://bucket/key`` object or an http(s) URL (one of the
    data proxy's with its credentials)."""
    parsed = urlparse(location)
    try:
        if proxy is not None and (key := proxy.key_of(location)) is not None:
            return proxy.read_bytes(key)
        if parsed.scheme == "s3":
            return read_object(s3, location)
        if parsed.scheme in ("http", "https"):
            response = requests.get(location, timeout=60)
            response.raise_for_status()
            return response.content
        return Path(location).read_bytes()
    except FileNotFoundError as error:
        raise TripDataError(location, "file not found") from error
    except IsADirectoryError as error:
        raise TripDataError(location, "is a directory, not a parquet file") from error


def read_object(s3: Any, location: str) -> bytes:
    """The bytes of an ``s3://bucket/key`` object; a missing object or bucket is bad input."""
    from botocore.exceptions import ClientError

    parsed = urlparse(location)
    try:
        response = s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))
        body: bytes = response["Body"].read()
    except ClientError as error:
        if is_missing(error):
            missing = "bucket" if error_code(error) in MISSING_BUCKET else "file"
            raise TripDataError(location, f"{missing} not found") from error
        raise
    return body


def read_parquet(location: str, data: bytes) -> pd.DataFrame:
    """Parse parquet bytes, turning any parse failure into a TripDataError naming ``location``."""
    if len(data) == 0:
        raise TripDataError(location, "file is empty (0 bytes)")
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as error:
        raise TripDataError(location, f"not a readable parquet file ({error})") from error
    return table.to_pandas()


def validate_trips(raw: pd.DataFrame, source: str) -> TripData:
    """Check columns, types and values; return the trips with a 1-60 min duration."""
    trips = normalize_columns(raw)
    prefix = next((c[: -len(PICKUP)] for c in raw.columns if str(c).endswith(PICKUP)), "lpep_")
    required = [PICKUP, DROPOFF, "PULocationID", "DOLocationID", "trip_distance"]
    missing = [name for name in required if name not in trips.columns]
    if missing:
        shown = ", ".join(map(str, raw.columns[:25]))
        raise TripDataError(
            source,
            f"missing required columns {missing} (expected lpep_/tpep_ pickup and dropoff "
            f"timestamps, PULocationID, DOLocationID, trip_distance; found: {shown})",
        )
    for name in (PICKUP, DROPOFF):
        if not pd.api.types.is_datetime64_any_dtype(trips[name]):
            raise TripDataError(
                source, f"column {name} has type {trips[name].dtype}, expected a timestamp"
            )
    for name in ("PULocationID", "DOLocationID", "trip_distance"):
        if not pd.api.types.is_numeric_dtype(trips[name]) or pd.api.types.is_bool_dtype(
            trips[name]
        ):
            raise TripDataError(
                source, f"column {name} has type {trips[name].dtype}, expected a number"
            )
    if trips.empty:
        raise TripDataError(source, "has no rows")
    for name in ("PULocationID", "DOLocationID"):
        nulls = int(trips[name].isna().sum())
        if nulls:
            raise TripDataError(source, f"{nulls} of {len(trips)} rows have no {name}")
        outside = int((~trips[name].isin(LOCATION_IDS)).sum())
        if outside:
            raise TripDataError(
                source,
                f"{outside} of {len(trips)} rows have a {name} outside the TLC zones "
                f"{LOCATION_IDS[0]}-{LOCATION_IDS[-1]}",
            )
    trips = with_canonical_types(trips)
    trips[ROW_COLUMN] = range(len(trips))
    kept = filter_duration(add_duration(trips))
    kept = kept.loc[kept["trip_distance"].notna()].reset_index(drop=True)
    if kept.empty:
        raise TripDataError(
            source,
            f"none of its {len(trips)} trips lasts {MIN_DURATION_MIN:g}-"
            f"{MAX_DURATION_MIN:g} minutes (with a trip_distance)",
        )
    return TripData(source=source, trips=kept, rows_read=len(trips), timestamp_prefix=prefix)


def with_canonical_types(trips: pd.DataFrame) -> pd.DataFrame:
    """The checked columns in one set of types, whatever the file stores (zones and distance must
    already be numbers, zones without nulls and within 1-265)."""
    times = (PICKUP, DROPOFF)
    converted = {n: trips[n].astype(t) for n, t in CANONICAL_DTYPES.items() if n not in times}
    for name in times:
        column = trips[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):  # TLC's times are New York wall times
            column = column.dt.tz_localize(None)
        converted[name] = column.astype(CANONICAL_DTYPES[name])
    return trips.assign(**converted)


def load_trips(location: str, s3: Any = None, proxy: ProxyStore | None = None) -> TripData:
    """Read and validate one trip-record file from wherever it lives."""
    data = read_bytes(location, s3, proxy)
    checked = validate_trips(read_parquet(location, data), location)
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
    from flows.store import ReadOnlyStore

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
