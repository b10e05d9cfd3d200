"""A version's inputs in its own signature's types: casts where every value fits, one line where
not (the file, the column, both types), and never a retry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.types import ColSpec, DataType, Schema

from flows.errors import PERMANENT_ERRORS, NothingPublished, SchemaMismatch
from flows.logic.signature import conform

SOURCE = "s3://data/tlc/green/green_tripdata_2021-02.parquet"
READER = "version 5 of taxi-trip-duration"
# What versions logged before canonical types got when a 2023-02 month validated them.
LEGACY = Schema(
    [
        ColSpec(DataType.datetime, "lpep_pickup_datetime"),
        ColSpec(DataType.integer, "PULocationID"),
        ColSpec(DataType.integer, "DOLocationID"),
        ColSpec(DataType.double, "trip_distance"),
    ]
)


def records(**columns: object) -> pd.DataFrame:
    """Three canonical records (int64 zones, float64 distance, microsecond times), overridable."""
    frame = pd.DataFrame(
        {
            "lpep_pickup_datetime": pd.to_datetime(["2021-02-01 00:34:03"] * 3).astype(
                "datetime64[us]"
            ),
            "PULocationID": np.array([130, 7, 265], dtype="int64"),
            "DOLocationID": np.array([205, 1, 74], dtype="int64"),
            "trip_distance": [3.66, 0.5, 12.0],
            "extra": ["kept out", "of the", "model's input"],
        }
    )
    return frame.assign(**columns)


def refusal(frame: pd.DataFrame, schema: Schema = LEGACY) -> str:
    with pytest.raises(SchemaMismatch) as caught:
        conform(frame, schema, SOURCE, READER)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{SOURCE}: ")
    return message


def test_int64_zones_are_handed_to_an_int32_signature_when_they_fit():
    conformed = conform(records(), LEGACY, SOURCE, READER)
    assert list(conformed.columns) == LEGACY.input_names()  # only what the version reads
    assert conformed["PULocationID"].dtype == "int32" == conformed["DOLocationID"].dtype
    np.testing.assert_array_equal(conformed["PULocationID"], [130, 7, 265])
    assert conformed["trip_distance"].dtype == "float64"
    assert conformed["lpep_pickup_datetime"].dtype.kind == "M"  # MLflow takes any precision


def test_a_value_that_does_not_fit_is_named_with_the_column_and_both_types():
    message = refusal(records(PULocationID=np.array([1, 2**40, 3], dtype="int64")))
    assert "column PULocationID is int64" in message
    assert f"{READER} reads integer (int32)" in message
    assert "1 of 3 values do not fit, e.g. 1099511627776" in message


def test_fractions_missing_values_and_text_are_refused_not_rounded():
    long_zones = Schema([ColSpec(DataType.long, "PULocationID")])
    assert "e.g. 2.5" in refusal(records(PULocationID=[1.0, 2.5, 3.0]), long_zones)
    assert "missing or infinite" in refusal(records(PULocationID=[1.0, np.nan, 3.0]), long_zones)
    message = refusal(records(trip_distance=["3.66", "0.5", "12"]))
    assert "column trip_distance is object" in message and "double (float64)" in message
    assert "pickup" in refusal(records(lpep_pickup_datetime=["2021-02-01"] * 3))


def test_a_missing_column_is_named():
    assert "has no column DOLocationID, which version 5" in refusal(
        records().drop(columns=["DOLocationID"])
    )


def test_canonical_inputs_pass_a_canonical_signature_unchanged():
    canonical = Schema(
        [ColSpec(DataType.long, "PULocationID"), ColSpec(DataType.double, "trip_distance")]
    )
    frame = records()
    conformed = conform(frame, canonical, SOURCE, READER)
    pd.testing.assert_frame_equal(conformed, frame[["PULocationID", "trip_distance"]])


def test_schema_mismatches_and_an_unpublished_month_are_never_retried():
    assert issubclass(SchemaMismatch, PERMANENT_ERRORS)
    assert issubclass(NothingPublished, PERMANENT_ERRORS)
