"""Where batch predictions go and what a row holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows.errors import InvalidParameters
from flows.logic.months import months_between
from flows.logic.predictions import ScoredBy, month_of, prediction_frame, prediction_key, ride_ids

V4 = ScoredBy("taxi-trip-duration", "4", "abc123")


def test_a_month_is_partitioned_by_colour_year_and_month_one_object_per_version():
    source = "s3://taxi-data/tlc/green/green_tripdata_2021-03.parquet"
    key = prediction_key(source, V4)
    assert key == "predictions/color=green/year=2021/month=03/taxi-trip-duration-v4.parquet"
    assert prediction_key(source, V4) == key  # scoring again replaces, never adds
    assert prediction_key(source, ScoredBy("taxi-trip-duration", "5", "x")) != key


def test_months_are_read_from_tlc_names_in_paths_and_urls():
    assert month_of("/data/yellow_tripdata_2023-12.parquet") == ("yellow", "2023-12")
    assert month_of("https://example.org/trip-data/green_tripdata_2021-01.parquet") == (
        "green",
        "2021-01",
    )
    assert month_of("/tmp/my-trips.parquet") is None


def test_files_without_a_tlc_name_go_under_their_stem():
    key = prediction_key("/tmp/my-trips.parquet", V4)
    assert key == "predictions/files/my-trips/taxi-trip-duration-v4.parquet"


def test_ride_ids_are_the_file_and_row_so_they_survive_filtering():
    ids = ride_ids("s3://b/tlc/green/green_tripdata_2021-03.parquet", pd.Series([0, 17]))
    assert ids.tolist() == ["green_tripdata_2021-03:0", "green_tripdata_2021-03:17"]


def test_a_prediction_row_holds_inputs_actual_prediction_and_model():
    inputs = pd.DataFrame({"PULocationID": [7, 8], "trip_distance": [1.5, 2.0]})
    frame = prediction_frame(
        "/d/green_tripdata_2021-03.parquet",
        inputs,
        pd.Series([3, 9]),
        np.array([10.0, 12.5]),
        pd.Series([11.0, 12.0]),
        V4,
    )
    assert frame.columns.tolist() == [
        "ride_id",
        "PULocationID",
        "trip_distance",
        "actual_duration",
        "predicted_duration",
        "model_name",
        "model_version",
        "model_run_id",
    ]
    assert frame["ride_id"].tolist() == ["green_tripdata_2021-03:3", "green_tripdata_2021-03:9"]
    assert frame["model_version"].unique().tolist() == ["4"]


def test_months_between_counts_both_ends_across_a_year():
    assert months_between("2021-11", "2022-02") == ["2021-11", "2021-12", "2022-01", "2022-02"]
    assert months_between("2021-03", "2021-03") == ["2021-03"]
    with pytest.raises(InvalidParameters, match="before"):
        months_between("2021-05", "2021-01")
    with pytest.raises(InvalidParameters, match="YYYY-MM"):
        months_between("2021-5", "2021-06")
