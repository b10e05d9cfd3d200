"""Trip records to model features: one definition shared by training and the served model."""

from __future__ import annotations

import pandas as pd

# TLC taxi zones are numbered 1..265 (264/265 are "unknown"/"outside NYC"). Fixed categories keep
# the encoding identical between training and serving without storing any fitted state.
LOCATION_IDS = list(range(1, 266))
MIN_DURATION_MIN, MAX_DURATION_MIN = 1.0, 60.0

# Green files say lpep_*, yellow files tpep_*; everything downstream uses the plain names.
PICKUP, DROPOFF = "pickup_datetime", "dropoff_datetime"
TIMESTAMP_PREFIXES = ("lpep_", "tpep_")
RAW_FEATURE_COLUMNS = ["PULocationID", "DOLocationID", "trip_distance"]
FEATURE_COLUMNS = ["PULocationID", "DOLocationID", "trip_distance", "pickup_hour", "pickup_weekday"]


def normalize_columns(trips: pd.DataFrame) -> pd.DataFrame:
    """Rename lpep_/tpep_ timestamp columns to ``pickup_datetime``/``dropoff_datetime``."""
    renames = {
        f"{prefix}{name}": name for prefix in TIMESTAMP_PREFIXES for name in (PICKUP, DROPOFF)
    }
    return trips.rename(columns={k: v for k, v in renames.items() if k in trips.columns})


def add_duration(trips: pd.DataFrame) -> pd.DataFrame:
    """Add the target: trip duration in minutes."""
    minutes = (trips[DROPOFF] - trips[PICKUP]).dt.total_seconds() / 60
    return trips.assign(duration=minutes)


def filter_duration(trips: pd.DataFrame) -> pd.DataFrame:
    """Keep trips of 1 to 60 minutes, as the course does (the rest are mostly recording errors)."""
    keep = trips["duration"].between(MIN_DURATION_MIN, MAX_DURATION_MIN)
    return trips.loc[keep].reset_index(drop=True)


def pickup_hour(pickup: pd.Series) -> pd.Series:
    """The time of day of a pickup in hours (08:30 -> 8.5)."""
    return (pickup.dt.hour + pickup.dt.minute / 60).astype("float64")


def build_features(trips: pd.DataFrame) -> pd.DataFrame:
    """Model inputs from (normalized) trip records: zones as categories, distance, time of week."""
    pickup = trips[PICKUP]
    return pd.DataFrame(
        {
            "PULocationID": pd.Categorical(trips["PULocationID"], categories=LOCATION_IDS),
            "DOLocationID": pd.Categorical(trips["DOLocationID"], categories=LOCATION_IDS),
            "trip_distance": trips["trip_distance"].astype("float64"),
            "pickup_hour": pickup_hour(pickup),
            "pickup_weekday": pickup.dt.dayofweek.astype("int64"),
        },
        index=trips.index,
    )


def pickup_column(trips: pd.DataFrame) -> str:
    """The raw pickup-time column of a green (``lpep_``) or yellow (``tpep_``) record."""
    return next(str(c) for c in trips.columns if str(c).endswith(PICKUP))


def model_input_columns(trips: pd.DataFrame) -> list[str]:
    """The raw columns a served model needs from a record of this colour, in file order."""
    return [pickup_column(trips), *RAW_FEATURE_COLUMNS]
