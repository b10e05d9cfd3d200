"""Housekeeping: keep the platform's stores bounded, and say how big they are before and after.

Three parts, each deleting only what the retention no longer keeps (HOUSEKEEPING_RETENTION_DAYS):
- MLflow runs deleted longer ago, with their artifacts and their logged models (which `mlflow gc`
  leaves behind), and objects of runs that no longer exist: done by the tracking server
  (mlflow_stack_registry.housekeeping), the one process holding MLflow's database and bucket key,
  in batches, never a run that backs a registered version, never while a backup copies.
- Predictions in the data bucket by versions that hold no alias, written longer ago, and what the
  model server answered (served/) longer ago than SERVED_TRAFFIC_RETENTION_DAYS.
- Prefect's flow runs and events: Prefect's own vacuum, configured in docker-compose.yml; this flow
  counts what it has left to do.
It runs on the stack's own queue (it deletes): workers elsewhere hold neither key nor right.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.pipelines import FLOW_TIMEOUT_S
from flows.steps.housekeeping import (
    flow_run_backlog,
    housekeeping_report,
    measure_sizes,
    prune_predictions,
    prune_served,
    sweep_mlflow_leftovers,
    sweep_mlflow_runs,
)
from flows.steps.reporting import publish_report


@flow(name="housekeeping", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["housekeeping"])
def housekeeping(dry_run: bool = False) -> dict[str, Any]:
    """Delete what the retention (HOUSEKEEPING_RETENTION_DAYS) no longer keeps: MLflow's deleted
    runs, their leftovers, old predictions of versions without an alias; report sizes before and
    after. The retention is the worker's setting, not a parameter: whoever may run a deployment
    may run this one, and only an admin (a job variable) runs it with another retention."""
    from flows.settings import Settings

    settings = Settings.from_env()
    days = settings.housekeeping_retention_days
    get_run_logger().info("retention: %s days%s", days, " (dry run)" if dry_run else "")
    before = measure_sizes()
    found = {
        "runs": sweep_mlflow_runs(days, dry_run),
        "leftovers": sweep_mlflow_leftovers(days, dry_run),
        "predictions": prune_predictions(days, dry_run),
        "served": prune_served(settings.served_traffic_retention_days, dry_run),
        "backlog": flow_run_backlog(settings.flow_run_retention_days),
    }
    after = measure_sizes()
    report = housekeeping_report(before, after, found, dry_run)
    publish_report("housekeeping", report, "Housekeeping")
    print(report)
    return {**found, "before": before, "after": after}
