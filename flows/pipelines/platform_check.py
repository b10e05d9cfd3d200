"""A small flow that proves a worker can reach every service it depends on."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.logic.results import PlatformCheckResult
from flows.pipelines import FLOW_TIMEOUT_S
from flows.steps.platform_check import (
    log_probe_run,
    read_probe_artifact,
    round_trip_data_store,
    tracking_uri,
)


@flow(name="platform-check", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["platform-check"])
def platform_check(experiment_name: str = "platform-check") -> PlatformCheckResult:
    """Reach MLflow (tracking and artifact proxy) and the data store from where the flow runs."""
    logger = get_run_logger()
    run_id = log_probe_run(experiment_name)
    artifact_text = read_probe_artifact(run_id)
    store_bytes = round_trip_data_store()
    result = PlatformCheckResult(
        tracking_uri=tracking_uri(),
        run_id=run_id,
        artifact_text=artifact_text.strip(),
        data_store_bytes=store_bytes,
    )
    logger.info("platform check passed: %s", result)
    return result
