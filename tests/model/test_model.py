"""Behaviour of the trained model on real months."""

from __future__ import annotations

import numpy as np
import pytest

from flows.model import evaluate, train_model, trees_used
from flows.resources.tlc_files import load_trips
from tests.paths import TLC_DATA


@pytest.fixture(scope="module")
def months():
    train = load_trips(str(TLC_DATA / "green_tripdata_2021-01.parquet"))
    val = load_trips(str(TLC_DATA / "green_tripdata_2021-02.parquet"))
    return train, val


@pytest.fixture(scope="module")
def model(months):
    return train_model(months[0].trips, n_jobs=2)


def test_beats_the_mean_duration_baseline_by_a_wide_margin(model, months):
    train, val = months
    baseline = evaluate(
        np.full(len(val.trips), train.trips["duration"].mean()), val.trips["duration"]
    )
    ours = evaluate(model.predict(val.trips), val.trips["duration"])
    assert ours["rmse"] < 0.6 * baseline["rmse"]
    assert ours["r2"] > 0.6


def test_column_order_does_not_change_predictions(model, months):
    raw = months[1].trips.head(500)
    shuffled = raw[list(reversed(raw.columns))]
    np.testing.assert_array_equal(model.predict(raw), model.predict(shuffled))


def test_yellow_and_green_names_predict_the_same(model, months):
    raw = months[1].trips.head(200)[
        ["pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]
    ]
    green = raw.rename(columns={"pickup_datetime": "lpep_pickup_datetime"})
    yellow = raw.rename(columns={"pickup_datetime": "tpep_pickup_datetime"})
    np.testing.assert_array_equal(model.predict(green), model.predict(yellow))


def test_longer_trips_are_predicted_to_take_longer(model, months):
    trip = months[1].trips.head(1)
    far = trip.assign(trip_distance=trip["trip_distance"] + 10)
    assert model.predict(far)[0] > model.predict(trip)[0]


def test_trees_used_with_and_without_early_stopping(model, months):
    assert 0 < trees_used(model) <= 600  # stopped early, on the training month's latest slice
    plain = train_model(
        months[0].trips.head(5000), {"n_estimators": 7, "early_stopping_rounds": None}, n_jobs=2
    )
    assert trees_used(plain) == 7
