"""A burst of flow runs on the compose stack: the worker's concurrency limit holds."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from tests.e2e.compose import Stack, start_deployment, wait_until_final

pytestmark = pytest.mark.e2e

BURST = 6


def worker_limit(stack: Stack) -> int:
    """The limit the worker started with, as its launcher printed it."""
    logs = stack.compose("logs", "--no-color", "worker").stdout
    limits = re.findall(r"up to (\d+) flow runs at once", logs)
    assert limits, logs[-2000:]
    return int(limits[-1])


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of (start, end) intervals that overlap at one moment."""
    # At equal times an end sorts before a start: a run that ends as another starts is no overlap.
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_most_at_once_counts_overlaps():
    t = [datetime(2026, 1, 1, 0, 0, s) for s in range(6)]
    assert most_at_once([(t[0], t[2]), (t[1], t[3]), (t[2], t[4])]) == 2
    assert most_at_once([(t[0], t[1]), (t[1], t[2])]) == 1


def test_a_burst_never_runs_more_than_the_worker_limit(stack, prefect, trained):
    """Small runs (platform-check) started at once: all complete, at most `limit` at a time."""
    from prefect.client.orchestration import get_client

    limit = worker_limit(stack)
    assert 1 <= limit < BURST
    ids = [start_deployment("platform-check/platform-check") for _ in range(BURST)]
    states = [wait_until_final(flow_run_id, timeout_s=600) for flow_run_id in ids]
    assert [s.name for s in states] == ["Completed"] * BURST
    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(flow_run_id) for flow_run_id in ids]
    peak = most_at_once([(r.start_time, r.end_time) for r in runs])
    print(f"\nburst of {BURST} platform-check runs: at most {peak} at once (worker limit {limit})")
    assert 1 <= peak <= limit
