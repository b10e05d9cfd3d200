"""A corpus of broken trip files, each with the words its error message must contain."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.paths import TLC_DATA

GOOD = TLC_DATA / "green_tripdata_2021-01.parquet"


def write_corpus(directory: Path) -> dict[str, str]:
    """Write the broken files into ``directory``; return {file name: expected problem}."""
    sample = pd.read_parquet(GOOD).head(2000)
    pickup, dropoff = sample["lpep_pickup_datetime"], sample["lpep_dropoff_datetime"]
    frames = {
        "missing_column.parquet": (
            sample.drop(columns=["trip_distance"]),
            "missing required columns",
        ),
        "renamed_column.parquet": (
            sample.rename(columns={"PULocationID": "pickup_zone"}),
            "missing required columns",
        ),
        "text_timestamps.parquet": (
            sample.assign(lpep_pickup_datetime=pickup.astype(str)),
            "expected a timestamp",
        ),
        "zero_rows.parquet": (sample.head(0), "has no rows"),
        "no_trip_kept.parquet": (
            sample.assign(lpep_dropoff_datetime=pickup + (dropoff - pickup) * 0),
            "lasts 1-60 minutes",
        ),
        "null_locations.parquet": (
            sample.assign(
                DOLocationID=sample["DOLocationID"].astype("Float64").mask(sample.index < 10)
            ),
            "have no DOLocationID",
        ),
    }
    expected = {}
    for name, (frame, problem) in frames.items():
        frame.to_parquet(directory / name)
        expected[name] = problem
    (directory / "not_parquet.parquet").write_text("VendorID,lpep_pickup_datetime\n1,2021-01-01\n")
    expected["not_parquet.parquet"] = "not a readable parquet file"
    (directory / "truncated.parquet").write_bytes(GOOD.read_bytes()[:300_000])
    expected["truncated.parquet"] = "not a readable parquet file"
    (directory / "empty.parquet").write_bytes(b"")
    expected["empty.parquet"] = "empty (0 bytes)"
    return expected


def slower_traffic(directory: Path, slowdown: float = 1.6) -> Path:
    """A month that truly drifts, for the monitoring tests: the real February 2021 green trips as
    if traffic had slowed every trip by ``slowdown`` (each dropoff moved so the trip lasts 60%
    longer). Zones, distances and pickup times are unchanged, so the inputs do not drift; the
    durations, and the model's error, do. Named as TLC names March 2021: it stands for the month
    after a traffic change."""
    trips = pd.read_parquet(TLC_DATA / "green_tripdata_2021-02.parquet")
    duration = trips["lpep_dropoff_datetime"] - trips["lpep_pickup_datetime"]
    trips["lpep_dropoff_datetime"] = trips["lpep_pickup_datetime"] + duration * slowdown
    path = directory / "green_tripdata_2021-03.parquet"
    trips.to_parquet(path, index=False)
    return path
