"""The promotion gate on its own: rmse margin, latency and size budgets (MLflow's thresholds)."""

from __future__ import annotations

import math

from flows.logic.gate import LATENCY, RMSE, SIZE, Budgets, Measurement, judge

BUDGETS = Budgets(min_rmse_improvement=0.01, max_p95_latency_ms=20, max_model_size_mb=5)


def numbers(rmse: float, latency: float = 3.0, size: float = 1.0) -> Measurement:
    return Measurement(rmse=rmse, p95_latency_ms=latency, model_size_mb=size)


def test_first_version_becomes_champion_within_budgets():
    verdict = judge(numbers(6.0), None, BUDGETS)
    assert verdict.promote and verdict.reason == "there is no champion yet"


def test_better_by_more_than_the_margin_is_promoted():
    verdict = judge(numbers(5.9), numbers(6.0), BUDGETS)
    assert verdict.promote and "5.9000 < champion's 6.0000" in verdict.reason


def test_better_by_less_than_the_margin_is_noise():
    verdict = judge(numbers(5.95), numbers(6.0), BUDGETS)  # 0.8% better, margin 1%
    assert not verdict.promote and verdict.failed == (RMSE,)
    assert "not 1.0% below the champion's 6.0000" in verdict.reason


def test_equal_or_worse_is_not_promoted_even_with_no_margin():
    no_margin = Budgets(0.0, 20, 5)
    assert not judge(numbers(6.0), numbers(6.0), no_margin).promote
    assert not judge(numbers(6.5), numbers(6.0), no_margin).promote
    assert judge(numbers(5.99), numbers(6.0), no_margin).promote


def test_a_slow_or_large_model_is_refused_naming_each_budget():
    verdict = judge(numbers(5.0, latency=25.0, size=7.5), numbers(6.0), BUDGETS)
    assert not verdict.promote and set(verdict.failed) == {LATENCY, SIZE}
    assert "p95 latency 25.0 ms is over the budget of 20 ms" in verdict.reason
    assert "model size 7.50 MB is over the budget of 5 MB" in verdict.reason


def test_budgets_apply_to_the_first_version_too():
    verdict = judge(numbers(6.0, latency=30.0), None, BUDGETS)
    assert not verdict.promote and verdict.failed == (LATENCY,)


def test_missing_or_invalid_numbers_are_never_promoted():
    assert not judge(numbers(math.nan), numbers(6.0), BUDGETS).promote
    assert not judge(numbers(math.inf), None, BUDGETS).promote
    assert not judge(numbers(5.0, latency=math.nan), None, BUDGETS).promote
