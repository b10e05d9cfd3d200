"""Pictures of a trained model that people would rather look at than numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display in workers; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from xgboost import XGBModel  # noqa: E402

DURATION_BINS = [0, 5, 10, 15, 20, 30, 45, 60]


def feature_importance(model: XGBModel) -> Figure:
    """Total gain of each feature."""
    gains = pd.Series(model.get_booster().get_score(importance_type="total_gain")).sort_values()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.barh(gains.index, gains.values / gains.sum(), color="#3b6ea8")
    ax.set_xlabel("share of total gain")
    ax.set_title("Feature importance")
    fig.tight_layout()
    return fig


def predicted_vs_actual(predicted: np.ndarray, actual: pd.Series) -> Figure:
    """Density of predicted against actual duration, with the ideal diagonal."""
    fig, ax = plt.subplots(figsize=(5, 5))
    hexes = ax.hexbin(actual, predicted, gridsize=60, bins="log", cmap="viridis", mincnt=1)
    ax.plot([0, 60], [0, 60], color="#d62728", linewidth=1)
    ax.set(
        xlabel="actual minutes",
        ylabel="predicted minutes",
        xlim=(0, 60),
        ylim=(0, 60),
        title="Predicted vs actual (validation)",
    )
    fig.colorbar(hexes, ax=ax, label="trips (log)")
    fig.tight_layout()
    return fig


def residuals_by_duration(predicted: np.ndarray, actual: pd.Series) -> Figure:
    """Spread of the error for short, medium and long trips."""
    bins = pd.cut(actual, DURATION_BINS)
    residual = pd.Series(predicted - actual.to_numpy(), index=actual.index)
    groups = [residual[bins == b].to_numpy() for b in bins.cat.categories]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.boxplot(groups, showfliers=False)
    ax.set_xticks(range(1, len(groups) + 1), [str(b) for b in bins.cat.categories])
    ax.axhline(0, color="#888", linewidth=1)
    ax.set(
        xlabel="actual duration (minutes)",
        ylabel="predicted - actual",
        title="Residuals by trip duration (validation)",
    )
    fig.tight_layout()
    return fig


def close(figure: Figure) -> None:
    """Release a figure that pyplot still tracks."""
    plt.close(figure)
