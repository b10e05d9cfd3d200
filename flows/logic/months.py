"""Where TLC publishes a month and where the platform keeps it: names, keys, URLs, month sums."""

from __future__ import annotations

import re

from flows.errors import InvalidParameters

COLORS = ("green", "yellow")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
FILE_NAME = re.compile(r"^(?P<color>green|yellow)_tripdata_(?P<month>\d{4}-\d{2})\.parquet$")


def checked_month(month: str) -> str:
    """``month`` itself when it looks like YYYY-MM; a clear error otherwise."""
    if not MONTH.match(month):
        raise InvalidParameters(f"month must look like YYYY-MM, not {month!r}")
    return month


def file_name(color: str, month: str) -> str:
    """TLC's file name for one colour and month, e.g. ``green_tripdata_2021-01.parquet``."""
    if color not in COLORS:
        raise InvalidParameters(f"taxi colour must be one of {COLORS}, not {color!r}")
    return f"{color}_tripdata_{checked_month(month)}.parquet"


def official_url(base_url: str, color: str, month: str) -> str:
    """The published file's address."""
    return f"{base_url}/{file_name(color, month)}"


def bucket_key(color: str, month: str) -> str:
    """Where a month is kept in the data bucket (``make upload-data`` uses the same keys)."""
    return f"tlc/{color}/{file_name(color, month)}"


def month_index(month: str) -> int:
    """Months since year 0 (``2021-01`` -> 24252): month arithmetic, and MLflow's step for a
    month, so charts put months in order."""
    year, number = map(int, month.split("-"))
    return year * 12 + number - 1


def months_before(month: str, count: int) -> list[str]:
    """``count`` months ending with ``month`` itself, newest first (``YYYY-MM``)."""
    index = month_index(month)
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index, index - count, -1)]


def months_between(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last`` included, oldest first (``YYYY-MM``)."""
    if checked_month(last) < checked_month(first):
        raise InvalidParameters(f"{last} is before {first}")
    return months_before(last, month_index(last) - month_index(first) + 1)[::-1]
