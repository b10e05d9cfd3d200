"""The trip-duration model: xgboost on zone categories, distance and time of week."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from flows.features import FEATURE_COLUMNS, build_features, normalize_columns

# Chosen on green 2021-01 -> 2021-02 (bench/compare_course.py): shallow hist trees with native
# categorical splits beat the course's depth-30 trees on one-hot zone pairs, at a fraction of the
# cost. Early stopping watches a time-ordered slice of the *training* month, never validation.
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 600,
    "learning_rate": 0.1,
    "max_depth": 8,
    "min_child_weight": 5,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "max_cat_to_onehot": 1,
    "max_bin": 128,
    "early_stopping_rounds": 30,
    "objective": "reg:squarederror",
    "tree_method": "hist",
    "random_state": 42,
}


# The latest share of the training month's pickups that early stopping watches.
EARLY_STOPPING_SHARE = 0.1


class TripDurationRegressor(xgb.XGBRegressor):
    """An XGBRegressor that also accepts raw trip records and builds its features itself.

    MLflow's xgboost flavor saves this class's name and restores it on load, so both
    ``mlflow.xgboost.load_model`` and ``mlflow.pyfunc.load_model`` predict from raw records.
    """

    def predict(self, X: Any, *args: Any, **kwargs: Any) -> np.ndarray:  # noqa: N803 (sklearn)
        """Predict minutes from feature frames or raw trip records (green or yellow)."""
        if isinstance(X, pd.DataFrame) and list(X.columns) != FEATURE_COLUMNS:
            X = build_features(normalize_columns(X))
        return np.asarray(super().predict(X, *args, **kwargs))


def time_ordered_split(trips: pd.DataFrame, later_share: float) -> tuple[pd.Index, pd.Index]:
    """Index of the earlier trips and of the latest ``later_share`` of them, by pickup time."""
    order = trips["pickup_datetime"].sort_values(kind="stable").index
    cut = int(len(order) * (1 - later_share))
    return order[:cut], order[cut:]


def train_model(
    trips: pd.DataFrame, params: dict[str, Any] | None = None, n_jobs: int | None = None
) -> TripDurationRegressor:
    """Fit on validated training trips (with a ``duration`` column)."""
    fit_index, stop_index = time_ordered_split(trips, EARLY_STOPPING_SHARE)
    features = build_features(trips)
    target = trips["duration"]
    model = TripDurationRegressor(
        enable_categorical=True, n_jobs=n_jobs, **{**DEFAULT_PARAMS, **(params or {})}
    )
    model.fit(
        features.loc[fit_index],
        target.loc[fit_index],
        eval_set=[(features.loc[stop_index], target.loc[stop_index])],
        verbose=False,
    )
    return model


def trees_used(model: xgb.XGBRegressor) -> int:
    """Trees the model predicts with: up to the best iteration under early stopping, else all."""
    try:
        return model.best_iteration + 1
    except AttributeError:  # trained without early stopping (early_stopping_rounds=None)
        return model.get_booster().num_boosted_rounds()


def evaluate(predicted: np.ndarray, actual: pd.Series) -> dict[str, float]:
    """Validation metrics in minutes: rmse (the one we compare), mae and r2."""
    return {
        "rmse": float(root_mean_squared_error(actual, predicted)),
        "mae": float(mean_absolute_error(actual, predicted)),
        "r2": float(r2_score(actual, predicted)),
    }
