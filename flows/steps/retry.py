"""Retry policy of the flows' I/O tasks: back off on failures that may pass, never on bad input."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.errors import PERMANENT_ERRORS


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unless the task failed with one of the permanent (bad input) errors."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, PERMANENT_ERRORS)


# Waits of 5, 10, 20 and 40 s: a task outlives a 60 s outage of MinIO or MLflow, on top of the
# clients' own retries (boto3's last seconds; MLflow's client backs off for minutes). No task
# caching either: every run must do its work (and hashing data frames or registry objects for
# cache keys is wasted time).
IO_RETRIES: dict[str, Any] = {
    "retries": 4,
    "retry_delay_seconds": exponential_backoff(backoff_factor=5),
    "retry_condition_fn": is_transient,
    "cache_policy": NO_CACHE,
}
