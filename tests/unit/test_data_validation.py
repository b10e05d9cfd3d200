"""Broken trip files stop with an error naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flows.errors import TripDataError
from flows.logic.months import bucket_key, file_name, months_before
from flows.resources.tlc_files import load_trips, upload_month_file
from tests.paths import TLC_DATA

GOOD = TLC_DATA / "green_tripdata_2021-01.parquet"


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    """A slice of a real month to break in different ways."""
    return pd.read_parquet(GOOD).head(2000)


def write(frame: pd.DataFrame, path: Path) -> str:
    frame.to_parquet(path)
    return str(path)


def expect_error(location: str, *fragments: str) -> None:
    with pytest.raises(TripDataError) as caught:
        load_trips(location)
    message = str(caught.value)
    assert message.startswith(location)
    for fragment in fragments:
        assert fragment in message, message


def test_not_parquet(tmp_path):
    path = tmp_path / "notes.parquet"
    path.write_text("VendorID,lpep_pickup_datetime\n1,2021-01-01\n")
    expect_error(str(path), "not a readable parquet file")


def test_truncated(tmp_path):
    path = tmp_path / "cut.parquet"
    path.write_bytes(GOOD.read_bytes()[:300_000])
    expect_error(str(path), "not a readable parquet file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")
    expect_error(str(path), "empty (0 bytes)")


def test_missing_file(tmp_path):
    expect_error(str(tmp_path / "nope.parquet"), "file not found")


def test_missing_column(sample, tmp_path):
    expect_error(
        write(sample.drop(columns=["trip_distance"]), tmp_path / "m.parquet"),
        "missing required columns",
        "trip_distance",
    )


def test_renamed_column(sample, tmp_path):
    renamed = sample.rename(columns={"PULocationID": "pickup_zone"})
    expect_error(write(renamed, tmp_path / "r.parquet"), "missing required columns", "PULocationID")


def test_timestamp_stored_as_text(sample, tmp_path):
    broken = sample.assign(lpep_pickup_datetime=sample["lpep_pickup_datetime"].astype(str))
    expect_error(write(broken, tmp_path / "t.parquet"), "pickup_datetime", "expected a timestamp")


def test_zone_stored_as_text(sample, tmp_path):
    broken = sample.assign(DOLocationID=sample["DOLocationID"].astype(str))
    expect_error(write(broken, tmp_path / "z.parquet"), "DOLocationID", "expected a number")


def test_zero_rows(sample, tmp_path):
    expect_error(write(sample.head(0), tmp_path / "zero.parquet"), "has no rows")


def test_every_trip_filtered_out(sample, tmp_path):
    instant = sample.assign(lpep_dropoff_datetime=sample["lpep_pickup_datetime"])
    expect_error(write(instant, tmp_path / "instant.parquet"), "none of its 2000 trips", "1-60")


def test_null_locations(sample, tmp_path):
    broken = sample.assign(PULocationID=sample["PULocationID"].astype("float64"))
    broken.loc[broken.index[:7], "PULocationID"] = None
    expect_error(write(broken, tmp_path / "null.parquet"), "7 of 2000 rows have no PULocationID")


def test_zone_outside_tlc_range(sample, tmp_path):
    broken = sample.copy()
    broken.loc[broken.index[:3], "DOLocationID"] = 999
    expect_error(
        write(broken, tmp_path / "zone.parquet"), "3 of 2000 rows", "DOLocationID", "1-265"
    )


def test_yellow_column_names_are_accepted(sample, tmp_path):
    yellow = sample.rename(
        columns={
            "lpep_pickup_datetime": "tpep_pickup_datetime",
            "lpep_dropoff_datetime": "tpep_dropoff_datetime",
        }
    )
    data = load_trips(write(yellow, tmp_path / "yellow.parquet"))
    green = load_trips(write(sample, tmp_path / "green.parquet"))
    assert data.rows_kept == green.rows_kept > 1800


def test_upload_refuses_names_the_flows_cannot_find(tmp_path):
    path = tmp_path / "january.parquet"
    path.write_bytes(GOOD.read_bytes())
    with pytest.raises(TripDataError, match="january.parquet: name must be"):
        upload_month_file(store=None, path=path)


def test_month_naming():
    assert file_name("green", "2021-01") == "green_tripdata_2021-01.parquet"
    assert bucket_key("yellow", "2023-03") == "tlc/yellow/yellow_tripdata_2023-03.parquet"
    assert months_before("2021-02", 3) == ["2021-02", "2021-01", "2020-12"]
    with pytest.raises(ValueError, match="YYYY-MM"):
        file_name("green", "2021-13")
    with pytest.raises(ValueError, match="colour"):
        file_name("purple", "2021-01")


def test_every_real_month_fits_the_default_file_limits():
    import pyarrow.parquet as pq

    from flows.logic.trips import DEFAULT_LIMITS, check_size

    for path in TLC_DATA.glob("*_tripdata_*.parquet"):
        check_size(str(path), pq.ParquetFile(path), DEFAULT_LIMITS)


def test_a_parquet_bomb_is_refused_from_its_metadata_before_decoding(tmp_path):
    """A few kB of repeated values that would decode to 12 million rows (far more than a TLC
    month) are refused on the row count the footer states."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    bomb = tmp_path / "green_tripdata_2021-01.parquet"
    pq.write_table(pa.table({"PULocationID": np.zeros(12_000_000, dtype="int64")}), bomb)
    assert bomb.stat().st_size < 200_000
    expect_error(str(bomb), "12000000 rows, more than TRIP_FILE_MAX_ROWS (10000000)")


def test_the_decoded_size_limit_is_checked_too(tmp_path):
    from flows.logic.trips import FileLimits

    with pytest.raises(
        TripDataError, match="decodes to [0-9]+ bytes, more than TRIP_FILE_MAX_BYTES"
    ):
        load_trips(
            str(TLC_DATA / "green_tripdata_2021-01.parquet"),
            limits=FileLimits(max_bytes=10**6 * 3 // 2),
        )
