"""Retry policy of the flows' I/O tasks: back off on failures that may pass, never on bad input."""

from __future__ import annotations

from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.data import TripDataError
from flows.registry import NotPromotable

# Errors that another attempt cannot fix: retrying only delays the message.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (TripDataError, NotPromotable, ValueError)


def is_transient(task, task_run, state) -> bool:
    """Retry unless the task failed with a permanent error."""
    try:
        state.result()
    except PERMANENT_ERRORS:
        return False
    except BaseException:  # noqa: BLE001 (anything else may be an outage: retry it)
        return True
    return True


# Waits of 5, 10, 20 and 40 s: a task outlives a 60 s outage of MinIO or MLflow, on top of the
# clients' own retries (boto3's last seconds; MLflow's client backs off for minutes). No task
# caching either: every run must do its work (and hashing data frames or registry objects for
# cache keys is wasted time).
IO_RETRIES = {
    "retries": 4,
    "retry_delay_seconds": exponential_backoff(backoff_factor=5),
    "retry_condition_fn": is_transient,
    "cache_policy": NO_CACHE,
}
