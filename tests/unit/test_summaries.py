"""The line `make train` ends with says why the promotion decided, whichever release decided it."""

from __future__ import annotations

from flows.cli.summaries import promotion_reason


def test_the_reason_is_read_from_the_promotion_line_without_its_decision():
    tags = {"promotion": "promoted: rmse 5.1 < champion's 5.3 by 3.8%", "stage": "production"}
    assert promotion_reason(tags) == "rmse 5.1 < champion's 5.3 by 3.8%"
    assert promotion_reason({"promotion": "rejected: p95 latency 61.2 ms"}) == "p95 latency 61.2 ms"


def test_a_version_decided_by_an_earlier_release_or_not_at_all():
    assert promotion_reason({"promotion.reason": "there is no champion yet"}) == (
        "there is no champion yet"
    )
    assert promotion_reason({}) == "not decided"
