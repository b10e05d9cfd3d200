"""Monitoring's decisions on their own: thresholds, Evidently's drift results, the event's name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows.logic.monitoring import (
    DRIFT_SHARE,
    RMSE_INCREASE,
    Figures,
    Thresholds,
    decide,
    drift_of,
    from_predictions,
)
from flows.logic.months import month_index
from tests.paths import REPO_ROOT

THRESHOLDS = Thresholds(max_rmse_increase=0.10, max_drift_share=0.5)


def figures(rmse: float = 5.2, share: float = 0.2, drifted: tuple[str, ...] = ()) -> Figures:
    return Figures(
        rows=1000,
        rmse=rmse,
        mae=4.0,
        reference_rmse=5.0,
        drift_share=share,
        drifted_columns=drifted,
    )


def test_a_month_within_both_thresholds_is_no_breach():
    decision = decide(figures(rmse=5.45, share=0.4), THRESHOLDS)  # +9%, 40%
    assert not decision.breached
    assert decision.reason("2021-02", "v3") == "v3 on 2021-02: within thresholds"


def test_rmse_worse_by_more_than_the_threshold_is_a_breach_saying_by_how_much():
    decision = decide(figures(rmse=6.0), THRESHOLDS)  # +20%
    assert [b.metric for b in decision.breaches] == [RMSE_INCREASE]
    reason = decision.reason("2021-03", "taxi v3")
    assert reason.startswith("taxi v3 on 2021-03: rmse 6.000 is +20.0% against its validation")
    assert "(threshold +10%)" in reason


def test_drift_above_the_share_is_a_breach_naming_the_columns():
    decision = decide(figures(share=0.6, drifted=("PULocationID", "prediction")), THRESHOLDS)
    assert [b.metric for b in decision.breaches] == [DRIFT_SHARE]
    assert "60% of the monitored columns drifted (PULocationID, prediction" in decision.reason(
        "2023-03", "v1"
    )


def test_both_breaches_are_reported_together():
    decision = decide(figures(rmse=7.0, share=1.0, drifted=("a",)), THRESHOLDS)
    assert {b.metric for b in decision.breaches} == {RMSE_INCREASE, DRIFT_SHARE}


def evidently_metric(kind: str, value, **config) -> dict:
    return {"config": {"type": f"evidently:metric_v2:{kind}", **config}, "value": value}


def test_drift_is_read_from_evidentlys_results_for_distances_and_p_values():
    report = {
        "metrics": [
            evidently_metric("DriftedColumnsCount", {"count": 2.0, "share": 0.4}),
            evidently_metric(
                "ValueDrift",
                0.34,
                column="PULocationID",
                method="Jensen-Shannon distance",
                threshold=0.1,
            ),  # fmt: skip
            evidently_metric(
                "ValueDrift",
                0.02,
                column="trip_distance",
                method="Wasserstein distance (normed)",
                threshold=0.1,
            ),  # fmt: skip
            evidently_metric(
                "ValueDrift", 0.001, column="pickup_hour", method="K-S p_value", threshold=0.05
            ),  # fmt: skip
            evidently_metric(
                "ValueDrift", 0.30, column="prediction", method="K-S p_value", threshold=0.05
            ),  # fmt: skip
            evidently_metric("RMSE", 5.4),
        ]
    }
    assert drift_of(report) == (0.4, ("PULocationID", "pickup_hour"))


def test_months_become_ordered_steps():
    assert month_index("2021-12") + 1 == month_index("2022-01")


def test_stored_predictions_become_the_monitored_columns():
    stored = pd.DataFrame(
        {
            "ride_id": ["f:0"],
            "lpep_pickup_datetime": pd.to_datetime(["2021-02-01 08:30:00"]),
            "PULocationID": [74],
            "DOLocationID": [75],
            "trip_distance": [1.2],
            "actual_duration": [9.0],
            "predicted_duration": [8.0],
            "model_name": ["m"],
            "model_version": ["1"],
            "model_run_id": ["r"],
        }
    )
    frame = from_predictions(stored)
    assert frame.iloc[0].to_dict() == pytest.approx(
        {
            "PULocationID": 74,
            "DOLocationID": 75,
            "trip_distance": 1.2,
            "pickup_hour": 8.5,
            "actual": 9.0,
            "prediction": 8.0,
        }  # fmt: skip
    )


def test_the_breach_event_is_the_one_the_trigger_and_the_notification_expect():
    from platform_names import BREACH_EVENT

    from infra.prefect.automations import BREACH_EVENT as NOTIFIED

    deployments = yaml.safe_load(Path(REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    (retrain,) = [d for d in deployments if d["name"] == "retrain"]
    assert retrain["triggers"][0]["expect"] == [BREACH_EVENT] == [NOTIFIED]
    assert set(retrain["triggers"][0]["parameters"]) == {
        "color", "month", "model_name", "version", "reason"
    }  # fmt: skip
