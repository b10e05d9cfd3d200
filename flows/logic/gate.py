"""The promotion gate: a challenger must be better by a margin, and fast and small enough to serve.

Each check is one of MLflow's model-validation thresholds (``MetricThreshold``), judged by
``mlflow.validate_evaluation_results``; the gate runs them one by one so that a refusal names every
check that failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.models import MetricThreshold

RMSE, LATENCY, SIZE = "rmse", "p95_latency_ms", "model_size_mb"
# Not a budget: the champion could not be loaded (the stack refuses it), so nothing was compared.
CHAMPION_REFUSED = "champion_refused"


@dataclass(frozen=True)
class Measurement:
    """A version's numbers on the validation month: error, speed of one prediction, size."""

    rmse: float
    p95_latency_ms: float
    model_size_mb: float

    def metrics(self) -> dict[str, float]:
        """As MLflow evaluation metrics."""
        return {RMSE: self.rmse, LATENCY: self.p95_latency_ms, SIZE: self.model_size_mb}


@dataclass(frozen=True)
class Budgets:
    """What a challenger must meet: an rmse margin (relative) and latency and size budgets."""

    min_rmse_improvement: float
    max_p95_latency_ms: float
    max_model_size_mb: float


@dataclass(frozen=True)
class Verdict:
    """The gate's answer, with one line per check that failed."""

    promote: bool
    reason: str
    failed: tuple[str, ...] = ()


def thresholds(budgets: Budgets, has_champion: bool) -> dict[str, MetricThreshold]:
    """MLflow thresholds for the checks that apply (rmse only against a champion)."""
    from mlflow.models import MetricThreshold

    checks = {
        LATENCY: MetricThreshold(threshold=budgets.max_p95_latency_ms, greater_is_better=False),  # type: ignore[no-untyped-call]
        SIZE: MetricThreshold(threshold=budgets.max_model_size_mb, greater_is_better=False),  # type: ignore[no-untyped-call]
    }
    if has_champion:
        # A relative margin above zero: a tie, or noise, never promotes.
        checks[RMSE] = MetricThreshold(  # type: ignore[no-untyped-call]
            min_relative_change=max(budgets.min_rmse_improvement, 1e-9), greater_is_better=False
        )
    return checks


def failure(metric: str, challenger: Measurement, champion: Measurement | None, b: Budgets) -> str:
    """A short sentence naming the budget ``metric`` missed."""
    if metric == RMSE and champion is not None:
        return (
            f"rmse {challenger.rmse:.4f} is not {b.min_rmse_improvement:.1%} below the "
            f"champion's {champion.rmse:.4f}"
        )
    if metric == LATENCY:
        return (
            f"p95 latency {challenger.p95_latency_ms:.1f} ms is over the budget of "
            f"{b.max_p95_latency_ms:g} ms"
        )
    return (
        f"model size {challenger.model_size_mb:.2f} MB is over the budget of "
        f"{b.max_model_size_mb:g} MB"
    )


def judge(challenger: Measurement, champion: Measurement | None, budgets: Budgets) -> Verdict:
    """Promote when every check passes; otherwise say which failed."""
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import (
        ModelValidationFailedException,
        validate_evaluation_results,
    )

    if not all(math.isfinite(v) for v in challenger.metrics().values()):
        return Verdict(False, "the challenger has no valid measurements", (RMSE,))
    candidate = EvaluationResult(metrics=challenger.metrics(), artifacts={})  # type: ignore[no-untyped-call]
    baseline = (
        EvaluationResult(metrics=champion.metrics(), artifacts={})  # type: ignore[no-untyped-call]
        if champion
        else None
    )
    failed = []
    for metric, threshold in thresholds(budgets, champion is not None).items():
        try:
            validate_evaluation_results({metric: threshold}, candidate, baseline)
        except ModelValidationFailedException:
            failed.append(metric)
    if failed:
        reasons = "; ".join(failure(m, challenger, champion, budgets) for m in failed)
        return Verdict(False, reasons, tuple(failed))
    if champion is None:
        return Verdict(True, "there is no champion yet")
    return Verdict(
        True,
        f"rmse {challenger.rmse:.4f} < champion's {champion.rmse:.4f} by more than "
        f"{budgets.min_rmse_improvement:.1%}",
    )
