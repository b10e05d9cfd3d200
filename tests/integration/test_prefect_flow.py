"""A flow run recorded by a real Prefect server, reaching MLflow and the data bucket."""

from __future__ import annotations

import asyncio

import pytest
from prefect.client.orchestration import get_client

from flows.pipelines.platform_check import platform_check

pytestmark = pytest.mark.integration


def test_platform_check_flow_runs_against_the_servers(
    prefect_api, tracking, s3, monkeypatch, unique_name
):
    """The worker's smoke flow passes, and the Prefect server records it as completed."""
    bucket = f"data-{unique_name}"
    s3.client().create_bucket(Bucket=bucket)
    for key, value in s3.env().items():
        if key != "MLFLOW_S3_ENDPOINT_URL":  # the worker has the data bucket's key, not MLflow's
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DATA_BUCKET", bucket)

    state = platform_check(experiment_name=unique_name, return_state=True)
    result = state.result()

    async def recorded_state() -> str:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
            return run.state.type.value

    assert asyncio.run(recorded_state()) == "COMPLETED"
    assert result.data_store_bytes == 2
    assert result.artifact_text.startswith("written by flow run")
    assert result.tracking_uri == tracking
