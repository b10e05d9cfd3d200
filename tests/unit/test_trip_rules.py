"""The trip rules are written once (flows.logic.trip_rules): the model server refuses exactly
the records whose values training drops or refuses, on generated records and on the five real
months, and a rule training could not apply fails loudly."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

import annotated_types
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from flows.errors import TripDataError
from flows.logic.trip_rules import (
    TripRecord,
    UnknownRule,
    broken_rows,
    first_refusal,
)
from flows.logic.trips import validate_trips
from services.serving.inputs import Refused, validate
from tests.paths import TLC_DATA

REAL_MONTHS = ("2021-01", "2021-02", "2023-01", "2023-02", "2023-03")
GOOD = {
    "lpep_pickup_datetime": "2023-02-01 08:00:00",
    "PULocationID": 74,
    "DOLocationID": 75,
    "trip_distance": 1.2,
}

numbers = st.one_of(
    st.integers(min_value=-3, max_value=300),
    st.floats(min_value=-3, max_value=300),  # fractions around the zones' bounds
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 0.0, 1, 1.0, 74.5, 264.0, 265, 265.5, 266, -0.0, -1e-300]),
)
times = st.one_of(st.none(), st.datetimes(min_value=datetime(2000, 1, 1)))


def kept_by_training(values: dict[str, Any]) -> bool:
    """Whether training keeps a row of these values (typed as a parquet file types them)."""
    for name, rule in TripRecord.model_fields.items():
        if name == "pickup_datetime":
            column = pd.Series([values[name]], dtype="datetime64[us]")
        else:
            column = pd.Series([values[name]], dtype="float64")
        if broken_rows(column, rule).any():
            return False
    return True


def as_record(values: dict[str, Any]) -> dict[str, Any]:
    """The values as a client sends them: the pickup time as ISO text, numbers as numbers."""
    pickup = values["pickup_datetime"]
    return {
        "lpep_pickup_datetime": pickup.isoformat(sep=" ") if pickup is not None else None,
        **{name: value for name, value in values.items() if name != "pickup_datetime"},
    }


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "pickup_datetime": times,
            "PULocationID": numbers,
            "DOLocationID": numbers,
            "trip_distance": numbers,
        }
    )
)
def test_the_model_server_refuses_exactly_what_training_does_not_keep(values):
    served = first_refusal([as_record(values)]) is None
    assert served == kept_by_training(values), (values, first_refusal([as_record(values)]))


@pytest.mark.parametrize("month", REAL_MONTHS)
def test_every_trip_training_keeps_of_a_real_month_is_served(month):
    source = str(TLC_DATA / f"green_tripdata_{month}.parquet")
    kept = validate_trips(pd.read_parquet(source), source).as_raw()
    columns = ["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]
    records = kept[columns].astype({"lpep_pickup_datetime": str}).to_dict("records")
    assert first_refusal(records) is None


def test_a_file_with_broken_distances_loses_those_rows_and_the_server_refuses_them():
    source = str(TLC_DATA / "green_tripdata_2023-02.parquet")
    raw = pd.read_parquet(source).head(1000)
    raw.loc[raw.index[:5], "trip_distance"] = [-1.0, math.inf, math.nan, -0.5, -math.inf]
    kept = validate_trips(raw, source)
    clean = validate_trips(raw.iloc[5:].reset_index(drop=True), source)
    assert kept.rows_kept == clean.rows_kept  # the five rows dropped, nothing else
    assert "trip_distance -1.0 is not a distance" in first_refusal(
        [{**GOOD, "trip_distance": -1.0}]
    )


def test_a_zone_outside_the_tlcs_refuses_the_file_with_the_rules_words():
    source = str(TLC_DATA / "green_tripdata_2023-03.parquet")
    raw = pd.read_parquet(source).head(500)
    raw.loc[raw.index[:2], "PULocationID"] = 266
    with pytest.raises(TripDataError, match="2 of 500 rows have a PULocationID that is not a TLC"):
        validate_trips(raw, source)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"PULocationID": 999}, "row 0: PULocationID 999 is not a TLC zone (1-265)"),
        ({"DOLocationID": "75"}, "row 0: DOLocationID '75' is not a TLC zone (1-265)"),
        ({"DOLocationID": True}, "row 0: DOLocationID true is not a TLC zone (1-265)"),
        ({"PULocationID": 74.5}, "row 0: PULocationID 74.5 is not a TLC zone (1-265)"),
        ({"trip_distance": -5}, "row 0: trip_distance -5 is not a distance (miles >= 0)"),
        ({"trip_distance": None}, "row 0: trip_distance null is not a distance (miles >= 0)"),
        ({"lpep_pickup_datetime": 1675238400}, "row 0: lpep_pickup_datetime 1675238400 is not"),
        ({"lpep_pickup_datetime": "x" * 100}, "row 0: lpep_pickup_datetime 'xxxxxxxxx"),
    ],
)
def test_the_model_server_refuses_a_broken_value_in_one_short_line(change, message):
    with pytest.raises(Refused) as refused:
        validate([GOOD, {**GOOD, **change}][1:])
    assert refused.value.status == 400
    assert refused.value.message.startswith(message), refused.value.message
    assert len(refused.value.message) < 120


def test_a_missing_column_is_named():
    without_pickup = {k: v for k, v in GOOD.items() if k != "lpep_pickup_datetime"}
    assert first_refusal([GOOD, without_pickup]) == (
        "row 1: no pickup time (lpep_pickup_datetime or tpep_pickup_datetime)"
    )
    assert first_refusal([{k: v for k, v in GOOD.items() if k != "trip_distance"}]) == (
        "row 0: no trip_distance"
    )
    yellow = {"tpep_pickup_datetime": "2023-02-01T08:00:00", **without_pickup}
    assert first_refusal([yellow]) is None


def test_a_rule_training_cannot_apply_fails_loudly():
    class WithAnotherRule(TripRecord):
        trip_distance: Annotated[float, annotated_types.MultipleOf(0.1)] = Field(
            description="a distance in tenths"
        )

    with pytest.raises(UnknownRule, match="MultipleOf"):
        broken_rows(pd.Series([0.3]), WithAnotherRule.model_fields["trip_distance"])
