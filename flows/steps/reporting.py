"""The task every flow ends with: its report, as a Prefect markdown artifact."""

from __future__ import annotations

from prefect import task

from flows.steps.retry import IO_RETRIES


@task(**IO_RETRIES)
def publish_report(key: str, markdown: str, description: str) -> None:
    """A flow's report (flows/logic/reports.py) on its run's page in Prefect."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown, key=key, description=description)
