"""Batch predictions as the platform stores them: where a month's go, and what a row holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from platform_names import PREDICTIONS_PREFIX

from flows.logic.months import FILE_NAME

PREFIX = PREDICTIONS_PREFIX


@dataclass(frozen=True)
class ScoredBy:
    """The registered version that made the predictions."""

    model_name: str
    version: str
    run_id: str


def month_of(source: str) -> tuple[str, str] | None:
    """(colour, YYYY-MM) of a TLC file name at the end of ``source``, else None."""
    found = FILE_NAME.match(PurePosixPath(urlparse(source).path).name)
    return (found["color"], found["month"]) if found else None


def prediction_key(source: str, scored_by: ScoredBy) -> str:
    """The object key of one file's predictions by one version, Hive-partitioned by month.

    ``predictions/color=green/year=2021/month=03/taxi-trip-duration-v4.parquet``: one object per
    month and version, so scoring again with the same version replaces it, and another version's
    predictions stand beside it. Files without a TLC name go under ``predictions/files/<stem>/``.
    """
    model_file = f"{scored_by.model_name}-v{scored_by.version}.parquet"
    month = month_of(source)
    if month is None:
        stem = PurePosixPath(urlparse(source).path).stem or "input"
        return f"{PREFIX}/files/{stem}/{model_file}"
    color, year_month = month
    year, number = year_month.split("-")
    return f"{PREFIX}/color={color}/year={year}/month={number}/{model_file}"


def ride_ids(source: str, rows: pd.Series) -> pd.Series:
    """Stable ride ids: the file's stem and the trip's row in it (``green_tripdata_2021-03:17``)."""
    stem = PurePosixPath(urlparse(source).path).stem
    return stem + ":" + rows.astype("int64").astype(str)


def prediction_frame(
    source: str,
    inputs: pd.DataFrame,
    rows: pd.Series,
    predicted: np.ndarray,
    actual: pd.Series | None,
    scored_by: ScoredBy,
) -> pd.DataFrame:
    """One row per trip: id, the raw inputs, actual and predicted minutes, and the model."""
    frame = pd.DataFrame({"ride_id": ride_ids(source, rows).to_numpy()})
    for column in inputs.columns:
        frame[column] = inputs[column].to_numpy()
    frame["actual_duration"] = actual.to_numpy() if actual is not None else np.nan
    frame["predicted_duration"] = np.asarray(predicted, dtype="float64")
    frame["model_name"] = scored_by.model_name
    frame["model_version"] = scored_by.version
    frame["model_run_id"] = scored_by.run_id
    return frame


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as one Parquet file."""
    return bytes(frame.to_parquet(index=False))
