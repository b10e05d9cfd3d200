"""The reports a person reads in Prefect (markdown artifacts), one per flow, from its result."""

from __future__ import annotations

from typing import TYPE_CHECKING

from platform_names import CHALLENGER

from flows.logic.gate import CHAMPION_REFUSED, LATENCY, RMSE, SIZE
from flows.logic.monitoring import DRIFT_SHARE, RMSE_INCREASE

if TYPE_CHECKING:
    from flows.logic.monitoring import Thresholds
    from flows.logic.results import MonitorResult, PromotionResult, ScoreResult, TrainResult
    from flows.logic.trips import TripData


def training_report(result: TrainResult, train: TripData, val: TripData) -> str:
    """The Prefect report of a training run."""
    return "\n".join(
        [
            f"# Trained `{result.model_name}` version {result.version} ({CHALLENGER})",
            "",
            "| metric | validation |",
            "| --- | ---: |",
            f"| rmse (min) | {result.rmse:.3f} |",
            f"| mae (min) | {result.mae:.3f} |",
            f"| r2 | {result.r2:.3f} |",
            "",
            "| data | uri | rows read | rows kept |",
            "| --- | --- | ---: | ---: |",
            f"| train | `{train.source}` | {train.rows_read} | {train.rows_kept} |",
            f"| validation | `{val.source}` | {val.rows_read} | {val.rows_kept} |",
            "",
            f"MLflow run: [{result.run_id}]({result.run_url})",
        ]
    )


def promotion_report(result: PromotionResult) -> str:
    """The Prefect report of a promotion decision: each check, both versions, the budget."""
    verdict = "promoted to champion" if result.promoted else "not promoted"
    budgets = result.budgets or {}
    rows = [
        (RMSE, "rmse (min)", f"{budgets.get('min_rmse_improvement', 0):.1%} below champion"),
        (LATENCY, "p95 latency, one record (ms)", f"<= {budgets.get('max_p95_latency_ms', 0):g}"),
        (SIZE, "model size (MB)", f"<= {budgets.get('max_model_size_mb', 0):g}"),
    ]

    def fmt(numbers: dict[str, float] | None, metric: str) -> str:
        return "-" if not numbers or metric not in numbers else f"{numbers[metric]:.4f}"

    lines = [
        f"# `{result.model_name}`: challenger v{result.challenger_version} {verdict}",
        "",
        f"Reason: {result.reason}. {'Both scored' if result.champion else 'Scored'} on "
        f"`{result.val_uri}`.",
        "",
        f"| check | challenger v{result.challenger_version} | "
        f"champion v{result.champion_version or '-'} | budget | passed |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for metric, label, budget in rows:
        passed = "no" if metric in result.failed else "yes"
        if metric == RMSE and CHAMPION_REFUSED in result.failed:
            budget, passed = "the champion is refused: not compared", "no"
        elif metric == RMSE and result.champion is None:
            budget, passed = "no champion to beat", "yes"
        lines.append(
            f"| {label} | {fmt(result.challenger, metric)} | {fmt(result.champion, metric)} | "
            f"{budget} | {passed} |"
        )
    return "\n".join(lines)


def scoring_report(result: ScoreResult) -> str:
    """The Prefect report of a scoring run."""

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    return "\n".join(
        [
            f"# Scored `{result.source}` with `{result.model_name}` v{result.version} "
            f"(@{result.alias})",
            "",
            "| rows | rmse (min) | mae (min) |",
            "| ---: | ---: | ---: |",
            f"| {result.rows} | {fmt(result.rmse)} | {fmt(result.mae)} |",
            "",
            f"Predictions: `{result.output_uri}`",
        ]
    )


def monitoring_report(result: MonitorResult, thresholds: Thresholds) -> str:
    """The Prefect report: metric, reference, this month, threshold, breached?"""
    watched = result.months_watched
    reach = (
        f"{len(watched)} month(s) of figures for v{result.version}: {watched[0]} to {watched[-1]}"
        if watched
        else "the first month of figures for this version"
    )
    rmse_breached = RMSE_INCREASE in result.breached_metrics
    drift_breached = DRIFT_SHARE in result.breached_metrics
    lines = [
        f"# `{result.model_name}` v{result.version} on {result.month}: "
        + ("breach" if result.breached else "within thresholds")
        + (", retraining asked for" if result.retrain_requested else ""),
        "",
        f"{result.reason}. One month is not a trend: {reach}.",
        "",
        "| metric | reference | this month | threshold | breached? |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| rmse (min) | {result.reference_rmse:.3f} | {result.rmse:.3f} | "
        f"+{thresholds.max_rmse_increase:.0%} | {'yes' if rmse_breached else 'no'} |",
        f"| mae (min) | - | {result.mae:.3f} | - | - |",
        f"| drift share | 0 | {result.drift_share:.2f} | {thresholds.max_drift_share:.2f} | "
        f"{'yes' if drift_breached else 'no'} |",
        "",
        f"Drifted columns: {', '.join(result.drifted_columns) or 'none'}. "
        f"Evidently's full report: `report.html` of MLflow run {result.run_id}.",
    ]
    return "\n".join(lines)
