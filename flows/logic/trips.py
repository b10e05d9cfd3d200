"""Trip records of one file: validation, the canonical types, what a model saw of them."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows.errors import TripDataError
from flows.features import (
    DROPOFF,
    MAX_DURATION_MIN,
    MIN_DURATION_MIN,
    PICKUP,
    add_duration,
    filter_duration,
    normalize_columns,
)
from flows.logic.trip_rules import DROPPED_WHEN_BROKEN, TripRecord, broken_rows, rule_of

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


@dataclass(frozen=True)
class FileLimits:
    """What one trip file may hold (TRIP_FILE_MAX_ROWS, TRIP_FILE_MAX_BYTES)."""

    max_rows: int = 10_000_000
    max_bytes: int = 2_000_000_000


# TLC's months fit these many times over (TRIP_FILE_MAX_ROWS, TRIP_FILE_MAX_BYTES).
DEFAULT_LIMITS = FileLimits()


def check_size(location: str, file: pq.ParquetFile, limits: FileLimits) -> None:
    """Refuse a file whose metadata says it decodes to more rows or bytes than ``limits``."""
    metadata = file.metadata
    decoded = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if metadata.num_rows > limits.max_rows:
        raise TripDataError(
            location,
            f"{metadata.num_rows} rows, more than TRIP_FILE_MAX_ROWS ({limits.max_rows}): "
            "not a TLC month",
        )
    if decoded > limits.max_bytes:
        raise TripDataError(
            location,
            f"decodes to {decoded} bytes, more than TRIP_FILE_MAX_BYTES ({limits.max_bytes})",
        )


def read_parquet(location: str, data: bytes, limits: FileLimits = DEFAULT_LIMITS) -> pd.DataFrame:
    """Parse parquet bytes (within ``limits``, checked from the metadata first), turning any
    parse failure into a TripDataError naming ``location``."""
    if len(data) == 0:
        raise TripDataError(location, "file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise TripDataError(location, f"{len(data)} bytes, more than TRIP_FILE_MAX_BYTES")
    try:
        file = pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as error:
        raise TripDataError(location, f"not a readable parquet file ({error})") from error
    check_size(location, file, limits)
    try:
        table = file.read()
    except (pa.ArrowException, OSError, ValueError) as error:
        raise TripDataError(location, f"not a readable parquet file ({error})") from error
    return table.to_pandas()


def validate_trips(raw: pd.DataFrame, source: str) -> TripData:
    """Check columns, types and values; return the trips with a 1-60 min duration."""
    trips = normalize_columns(raw)
    # The file's own prefix (lpep_ green, tpep_ yellow), to hand served models their names.
    prefix = next(
        (c.removesuffix(PICKUP) for c in map(str, raw.columns) if c.endswith(PICKUP)), "lpep_"
    )
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
    for name, rule in TripRecord.model_fields.items():
        if name in DROPPED_WHEN_BROKEN:
            continue
        nulls = int(trips[name].isna().sum())
        if nulls:
            raise TripDataError(source, f"{nulls} of {len(trips)} rows have no {name}")
        broken = int(broken_rows(trips[name], rule).sum())
        if broken:
            raise TripDataError(
                source,
                f"{broken} of {len(trips)} rows have a {name} that is not {rule.description}",
            )
    trips = with_canonical_types(trips)
    trips[ROW_COLUMN] = range(len(trips))
    kept = filter_duration(add_duration(without_broken_rows(trips)))
    if kept.empty:
        raise TripDataError(
            source,
            f"none of its {len(trips)} trips lasts {MIN_DURATION_MIN:g}-"
            f"{MAX_DURATION_MIN:g} minutes (with a pickup time and a distance >= 0)",
        )
    return TripData(source=source, trips=kept, rows_read=len(trips), timestamp_prefix=prefix)


def without_broken_rows(trips: pd.DataFrame) -> pd.DataFrame:
    """The trips whose distance and pickup time keep the trip rules (the rest are recording
    errors, dropped as the trips outside 1-60 minutes are)."""
    broken = pd.Series(False, index=trips.index)
    for name in DROPPED_WHEN_BROKEN:
        broken |= broken_rows(trips[name], rule_of(name))
    return trips.loc[~broken].reset_index(drop=True)


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
