"""What the model server accepts before MLflow's scoring app sees a request: a bounded body, a
bounded number of rows, and records that training would accept (zones 1-265, a distance that is
finite and not negative, a pickup time). Each refusal is one short line naming the column and the
value; none quotes the body back."""

from __future__ import annotations

import json
import math
from typing import Any

from flows.features import LOCATION_IDS

ZONE_COLUMNS = ("PULocationID", "DOLocationID")
LOWEST_ZONE, HIGHEST_ZONE = int(LOCATION_IDS[0]), int(LOCATION_IDS[-1])


class Refused(Exception):
    """A request the server answers with ``status`` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def shown(value: Any) -> str:
    """A value as a refusal quotes it: short, whatever was sent."""
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def records_of(body: bytes, max_rows: int) -> list[dict[str, Any]]:
    """The records of a `dataframe_split` or `dataframe_records` body, at most ``max_rows``."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise Refused(
            400, "the body must be a JSON object with dataframe_split or dataframe_records"
        )
    if "dataframe_records" in payload:
        rows = payload["dataframe_records"]
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise Refused(400, "dataframe_records must be a list of objects")
        check_rows(len(rows), max_rows)
        return rows
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        columns = split.get("columns") if isinstance(split, dict) else None
        data = split.get("data") if isinstance(split, dict) else None
        if not isinstance(columns, list) or not isinstance(data, list):
            raise Refused(400, "dataframe_split must have columns and data lists")
        check_rows(len(data), max_rows)
        if not all(isinstance(row, list) and len(row) == len(columns) for row in data):
            raise Refused(400, f"every row of dataframe_split must have {len(columns)} values")
        return [dict(zip(columns, row, strict=True)) for row in data]
    raise Refused(400, "send dataframe_split or dataframe_records (MLflow's scoring protocol)")


def check_rows(count: int, max_rows: int) -> None:
    """At least one row, at most ``max_rows``."""
    if count == 0:
        raise Refused(400, "no rows to predict")
    if count > max_rows:
        raise Refused(400, f"{count} rows: at most {max_rows} per request (SERVING_MAX_ROWS)")


def validate(records: list[dict[str, Any]]) -> None:
    """Refuse the first value training would reject, naming its row, column and value."""
    import pandas as pd

    for index, record in enumerate(records):
        pickup = next((c for c in record if str(c).endswith("pickup_datetime")), None)
        if pickup is None:
            raise Refused(400, f"row {index}: no pickup time (e.g. lpep_pickup_datetime)")
        for column in (*ZONE_COLUMNS, "trip_distance"):
            if column not in record:
                raise Refused(400, f"row {index}: no {column}")
        for column in ZONE_COLUMNS:
            value = record[column]
            whole = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and value.is_integer()
            )
            if not whole or not LOWEST_ZONE <= value <= HIGHEST_ZONE:
                raise Refused(
                    400,
                    f"row {index}: {column} {shown(value)} is not a TLC zone "
                    f"({LOWEST_ZONE}-{HIGHEST_ZONE})",
                )
        distance = record["trip_distance"]
        number = isinstance(distance, int | float) and not isinstance(distance, bool)
        if not number or not math.isfinite(distance) or distance < 0:
            raise Refused(
                400, f"row {index}: trip_distance {shown(distance)} is not a distance (miles >= 0)"
            )
        try:
            pd.Timestamp(record[pickup])
        except (ValueError, TypeError):
            raise Refused(
                400, f"row {index}: {pickup} {shown(record[pickup])} is not a time"
            ) from None
        if pd.isna(pd.Timestamp(record[pickup])):
            raise Refused(400, f"row {index}: {pickup} is empty")
