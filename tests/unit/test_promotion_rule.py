"""The promotion rule on its own."""

from __future__ import annotations

import math

from flows.registry import decide


def test_first_version_becomes_champion():
    assert decide(6.0, None).promote


def test_better_challenger_is_promoted():
    decision = decide(5.9, 6.0)
    assert decision.promote and "5.9000 < champion's 6.0000" in decision.reason


def test_equal_or_worse_challenger_is_not_promoted():
    assert not decide(6.0, 6.0).promote
    assert not decide(6.5, 6.0).promote


def test_missing_or_invalid_metric_is_never_promoted():
    assert not decide(None, None).promote
    assert not decide(math.nan, 6.0).promote
    assert not decide(math.inf, None).promote
