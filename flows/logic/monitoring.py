"""Watching the champion: a scored month against the model's reference, and when to act.

The reference is a sample of the model's own training month with its predictions, logged with the
training run (``reference/reference.parquet``), so monitoring never re-reads old months. A month's
figures come from Evidently (data drift of the inputs and of the predictions, and the regression
report a person reads) and from our own rmse and mae, computed as training computes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flows.features import pickup_column, pickup_hour

REFERENCE_ARTIFACT = "reference/reference.parquet"
REFERENCE_ROWS = 20_000
# The columns monitored for drift: the model's inputs (pickup time as its hour) and its output.
DRIFT_COLUMNS = ["PULocationID", "DOLocationID", "trip_distance", "pickup_hour", "prediction"]
CATEGORICAL = ["PULocationID", "DOLocationID"]
RMSE_INCREASE, DRIFT_SHARE = "rmse_increase", "drift_share"


@dataclass(frozen=True)
class Thresholds:
    """When a month counts as a breach (MONITOR_* settings)."""

    max_rmse_increase: float  # relative to the model's own validation rmse
    max_drift_share: float  # share of DRIFT_COLUMNS that drifted


@dataclass(frozen=True)
class Figures:
    """One month's numbers for one model version."""

    rows: int
    rmse: float
    mae: float
    reference_rmse: float
    drift_share: float
    drifted_columns: tuple[str, ...]

    @property
    def rmse_increase(self) -> float:
        """rmse change against the validation rmse, relative (0.10 = 10% worse)."""
        return self.rmse / self.reference_rmse - 1


@dataclass(frozen=True)
class Breach:
    """A threshold a month crossed, in words a person reads in a notification."""

    metric: str
    value: float
    threshold: float
    description: str


@dataclass(frozen=True)
class Decision:
    """What a month's figures call for."""

    breaches: tuple[Breach, ...] = field(default_factory=tuple)

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    def reason(self, month: str, model: str) -> str:
        """One sentence: which metric, which month, by how much."""
        if not self.breaches:
            return f"{model} on {month}: within thresholds"
        return f"{model} on {month}: " + "; ".join(b.description for b in self.breaches)


def decide(figures: Figures, thresholds: Thresholds) -> Decision:
    """The breaches of a month (none: keep the champion as it is)."""
    breaches = []
    if figures.rmse_increase > thresholds.max_rmse_increase:
        breaches.append(
            Breach(
                RMSE_INCREASE,
                figures.rmse_increase,
                thresholds.max_rmse_increase,
                f"rmse {figures.rmse:.3f} is {figures.rmse_increase:+.1%} against its "
                f"validation rmse {figures.reference_rmse:.3f} "
                f"(threshold +{thresholds.max_rmse_increase:.0%})",
            )
        )
    if figures.drift_share > thresholds.max_drift_share:
        breaches.append(
            Breach(
                DRIFT_SHARE,
                figures.drift_share,
                thresholds.max_drift_share,
                f"{figures.drift_share:.0%} of the monitored columns drifted "
                f"({', '.join(figures.drifted_columns)}; "
                f"threshold {thresholds.max_drift_share:.0%})",
            )
        )
    return Decision(tuple(breaches))


def monitored_frame(inputs: pd.DataFrame, actual: pd.Series, predicted: Any) -> pd.DataFrame:
    """The columns monitoring compares, from raw inputs, actual and predicted minutes."""
    times = pd.to_datetime(inputs[pickup_column(inputs)])
    return pd.DataFrame(
        {
            "PULocationID": inputs["PULocationID"].astype("int64").to_numpy(),
            "DOLocationID": inputs["DOLocationID"].astype("int64").to_numpy(),
            "trip_distance": inputs["trip_distance"].astype("float64").to_numpy(),
            "pickup_hour": pickup_hour(times).to_numpy(),
            "actual": np.asarray(actual, dtype="float64"),
            "prediction": np.asarray(predicted, dtype="float64"),
        }
    )


def from_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    """The monitored columns of a stored predictions object (flows/logic/predictions.py)."""
    inputs = frame.drop(columns=["actual_duration", "predicted_duration"])
    return monitored_frame(inputs, frame["actual_duration"], frame["predicted_duration"])


def from_served(frame: pd.DataFrame) -> pd.DataFrame:
    """The monitored columns of answered records (services/serving/traffic.py): no actual
    durations yet (they come with TLC's month), so only drift is judged."""
    inputs = frame[["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]]
    actual = pd.Series(np.nan, index=frame.index)
    return monitored_frame(inputs, actual, frame["predicted_duration"])


def drifted(metric: dict[str, Any]) -> bool:
    """Whether one of Evidently's ValueDrift results says the column drifted (distances drift at
    or above the threshold; p-values below it)."""
    config = metric["config"]
    if "p_value" in str(config.get("method", "")):
        return bool(metric["value"] < config["threshold"])
    return bool(metric["value"] >= config["threshold"])


def drift_of(report: dict[str, Any]) -> tuple[float, tuple[str, ...]]:
    """Drift share and drifted columns from an Evidently snapshot's ``dict()``."""
    share = 0.0
    columns = []
    for metric in report["metrics"]:
        kind = metric["config"].get("type", "")
        if kind.endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif kind.endswith("ValueDrift") and drifted(metric):
            columns.append(str(metric["config"]["column"]))
    return share, tuple(columns)


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[dict[str, Any], str]:
    """Data drift (inputs and predictions) and regression quality; (results, HTML page)."""
    # Evidently's telemetry (its collector and UI only) stays off in every process of ours.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from evidently import DataDefinition, Dataset, Regression, Report
    from evidently.presets import DataDriftPreset, RegressionPreset

    definition = DataDefinition(
        numerical_columns=["trip_distance", "pickup_hour", "actual", "prediction"],
        categorical_columns=CATEGORICAL,
        regression=[Regression(target="actual", prediction="prediction")],
    )
    report = Report([DataDriftPreset(columns=DRIFT_COLUMNS), RegressionPreset()])
    if current["actual"].isna().all():  # served traffic: drift only, nothing to regress on
        definition = DataDefinition(
            numerical_columns=["trip_distance", "pickup_hour", "prediction"],
            categorical_columns=CATEGORICAL,
        )
        report = Report([DataDriftPreset(columns=DRIFT_COLUMNS)])
        current, reference = current.drop(columns="actual"), reference.drop(columns="actual")
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    return snapshot.dict(), snapshot.get_html_str(as_iframe=False)
