"""A flow that does what the platform's flows do to Prefect's API from a worker: tasks, logs,
an artifact, a progress artifact, a subflow. Run by a worker signed in at the gateway."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)


@task
def double(value: int) -> int:
    """A task run: created, its states set, its result returned."""
    get_run_logger().info("doubling %s", value)
    return 2 * value


@flow
def inner(value: int) -> int:
    """A subflow: a flow run of no deployment, created by the flow run itself."""
    return double(value)


@flow(name="gateway-check")
def gateway_check(value: int = 1) -> int:
    """Tasks, a subflow, logs and artifacts."""
    progress = create_progress_artifact(0.0)
    doubled = inner(double(value))
    update_progress_artifact(progress, 100.0)
    create_markdown_artifact(f"doubled twice: {doubled}", key="gateway-check")
    return doubled
