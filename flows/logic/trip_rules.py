"""The trip rules, written once: what a trip record must be for a model to learn from it
(training, scoring and monitoring read whole files) or to predict it (the model server reads JSON
records). `TripRecord` states them; the model server validates records with it, and training
applies the very same field constraints to whole columns (`broken_rows`), so a rule added here
reaches both or fails loudly in training (`UnknownRule`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import annotated_types
import numpy as np
import pandas as pd
from pydantic import (
    AliasChoices,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo

from flows.features import LOCATION_IDS, PICKUP, TIMESTAMP_PREFIXES

FIRST_ZONE, LAST_ZONE = int(LOCATION_IDS[0]), int(LOCATION_IDS[-1])
# The pickup column under each colour's name: lpep_ (green), tpep_ (yellow).
PICKUP_NAMES = tuple(prefix + PICKUP for prefix in TIMESTAMP_PREFIXES)


def json_number(value: Any) -> Any:
    """Only a number is a number: JSON text ("74") and booleans are refused, not converted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    return value


def json_time(value: Any) -> Any:
    """A time is written as text (ISO 8601); a bare number is not read as seconds since 1970."""
    if not isinstance(value, str | datetime | pd.Timestamp):
        raise ValueError("not a time")
    return value


class TripRecord(BaseModel):
    """One trip as a model reads it. A record breaking a rule is refused by the model server;
    in a file, a zone outside the TLC's refuses the file (it is not what it claims) and a
    distance or pickup time breaking its rule drops the row (a recording error, like the
    trips outside 1-60 minutes)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    pickup_datetime: Annotated[datetime, BeforeValidator(json_time)] = Field(
        validation_alias=AliasChoices(*PICKUP_NAMES), description="a time"
    )
    PULocationID: Annotated[int, BeforeValidator(json_number)] = Field(
        ge=FIRST_ZONE, le=LAST_ZONE, description=f"a TLC zone ({FIRST_ZONE}-{LAST_ZONE})"
    )
    DOLocationID: Annotated[int, BeforeValidator(json_number)] = Field(
        ge=FIRST_ZONE, le=LAST_ZONE, description=f"a TLC zone ({FIRST_ZONE}-{LAST_ZONE})"
    )
    trip_distance: Annotated[float, BeforeValidator(json_number), AllowInfNan(False)] = Field(
        ge=0, description="a distance (miles >= 0)"
    )


# A row of a file breaking one of these rules is dropped; breaking any other refuses the file.
DROPPED_WHEN_BROKEN = frozenset({"trip_distance", "pickup_datetime"})
RECORDS = TypeAdapter(list[TripRecord])


class UnknownRule(Exception):
    """A constraint in `TripRecord` that `broken_rows` cannot apply to a column."""


def broken_rows(column: pd.Series, rule: FieldInfo) -> pd.Series:
    """True where a typed column's value breaks ``rule`` (a `TripRecord` field): missing, outside
    its bounds, not whole for an integer field, not finite where infinity is not allowed."""
    broken = column.isna()
    if rule.annotation is datetime:
        return broken
    values = column.astype("float64")
    if rule.annotation is int:
        broken |= values.mod(1).fillna(0) != 0
    for constraint in rule.metadata:
        if isinstance(constraint, annotated_types.Ge):
            broken |= ~(values >= constraint.ge)
        elif isinstance(constraint, annotated_types.Le):
            broken |= ~(values <= constraint.le)
        elif isinstance(constraint, AllowInfNan):
            if not constraint.allow_inf_nan:
                broken |= ~np.isfinite(values)
        elif not isinstance(constraint, BeforeValidator):
            raise UnknownRule(f"training cannot apply {constraint!r} of {rule.description}")
    return broken


def rule_of(column: str) -> FieldInfo:
    """The rule of a column under its plain name (``pickup_datetime`` for lpep_/tpep_)."""
    return TripRecord.model_fields[column]


def first_refusal(records: list[dict[str, Any]]) -> str | None:
    """The first rule ``records`` break, as one line naming its row, column and value (never
    more than 40 characters of it), or None when every record is a trip."""
    try:
        RECORDS.validate_python(records)
    except ValidationError as error:
        return describe(error.errors(include_url=False)[0])
    return None


def describe(problem: Any) -> str:
    """One line for one of pydantic's errors on a list of records."""
    where = problem["loc"]
    row = where[0]
    if len(where) < 2:
        return f"row {row}: not a record (an object of columns)"
    column = str(where[1])
    if problem["type"] == "missing":
        if column in PICKUP_NAMES:
            return f"row {row}: no pickup time ({' or '.join(PICKUP_NAMES)})"
        return f"row {row}: no {column}"
    name = "pickup_datetime" if column in PICKUP_NAMES else column
    return f"row {row}: {column} {shown(problem['input'])} is not {rule_of(name).description}"


def shown(value: Any) -> str:
    """A value as a refusal quotes it: short, whatever was sent."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
