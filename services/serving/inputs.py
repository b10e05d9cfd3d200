"""What the model server accepts before MLflow's scoring app sees a request: a bounded body, a
bounded number of rows, and records that keep the trip rules training keeps (zones 1-265, a
distance that is finite and not negative, a pickup time: flows.logic.trip_rules). Each refusal
is one short line naming the column and the value; none quotes the body back."""

from __future__ import annotations

import json
from typing import Any

from flows.logic.trip_rules import first_refusal


class Refused(Exception):
    """A request the server answers with ``status`` and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


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
    """Refuse the first value the trip rules (flows.logic.trip_rules, which training applies
    too) reject, naming its row, column and value."""
    refusal = first_refusal(records)
    if refusal:
        raise Refused(400, refusal)
