"""The real TLC copies pass validation with the counts their README documents."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.data import load_trips
from flows.features import FEATURE_COLUMNS, build_features
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
