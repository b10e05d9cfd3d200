"""The real TLC copies pass validation with the counts their README documents."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.features import FEATURE_COLUMNS, build_features, model_input_columns
from flows.logic.trips import CANONICAL_DTYPES
from flows.resources.tlc_files import load_trips
from tests.paths import TLC_DATA

# rows, and rows with a 1-60 minute duration (shared/data/nyc-tlc/README.md)
EXPECTED = {
    "2021-01": (76_518, 73_908),
    "2021-02": (64_572, 61_921),
    "2023-01": (68_211, 65_946),
    "2023-02": (64_809, 62_574),
    "2023-03": (72_044, 69_392),
}


@pytest.mark.parametrize("month", sorted(EXPECTED))
def test_real_month_validates(month):
    data = load_trips(str(TLC_DATA / f"green_tripdata_{month}.parquet"))
    assert (data.rows_read, data.rows_kept) == EXPECTED[month]
    assert data.trips["duration"].between(1, 60).all()


def test_months_with_different_physical_types_give_identical_feature_types():
    """2021 files store zones as int64, 2023-02+ as int32: the features must not care."""
    old = build_features(load_trips(str(TLC_DATA / "green_tripdata_2021-01.parquet")).trips)
    new = build_features(load_trips(str(TLC_DATA / "green_tripdata_2023-03.parquet")).trips)
    assert list(old.columns) == FEATURE_COLUMNS
    pd.testing.assert_series_equal(old.dtypes, new.dtypes)


@pytest.mark.parametrize("month", sorted(EXPECTED))
def test_every_month_reads_in_the_canonical_types_whatever_its_file_stores(month):
    """2021-01..2023-01 store zones as int64, 2023-02 and 2023-03 as int32 (pyarrow's schema)."""
    path = TLC_DATA / f"green_tripdata_{month}.parquet"
    stored = pq.read_schema(path).field("PULocationID").type
    assert str(stored) == ("int32" if month >= "2023-02" else "int64")
    trips = load_trips(str(path)).trips
    assert {name: str(trips[name].dtype) for name in CANONICAL_DTYPES} == CANONICAL_DTYPES


def test_a_signature_inferred_from_any_month_is_the_same():
    """What a version logs as its signature does not depend on the month that validated it."""
    from mlflow.models import infer_signature

    def signature_of(month: str) -> str:
        raw = load_trips(str(TLC_DATA / f"green_tripdata_{month}.parquet")).as_raw().head(5)
        return str(infer_signature(raw[model_input_columns(raw)]).inputs)

    signatures = {month: signature_of(month) for month in EXPECTED}
    assert len(set(signatures.values())) == 1, signatures
    assert "PULocationID': long" in signatures["2023-02"]
