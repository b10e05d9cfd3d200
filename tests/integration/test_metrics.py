"""Metrics on real servers: the tracking server's (started as compose starts it, METRICS_PORT)
count exactly the requests made, and the platform's collector reads real Prefect and MLflow."""

from __future__ import annotations

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from tests.metrics import scrape, value

pytestmark = pytest.mark.integration

REQUESTS = "platform_http_requests_total"


def test_the_tracking_server_counts_each_request_by_endpoint_and_status(stack_tracking):
    server, stack = stack_tracking
    stranger = ("nobody", "wrong")
    endpoint = "/api/2.0/mlflow/experiments/search"
    url = f"{server.url}{endpoint}"
    labels = {"service": "mlflow", "endpoint": endpoint, "method": "GET"}
    before = scrape(server.metrics_url)
    for _ in range(3):
        assert requests.get(url, params={"max_results": 1}, auth=stack, timeout=30).ok
    for _ in range(2):
        refused = requests.get(url, params={"max_results": 1}, auth=stranger, timeout=30)
        assert refused.status_code == 401
    after = scrape(server.metrics_url)

    def added(name: str, **more: str) -> float:
        return value(after, name, **more) - value(before, name, **more)

    assert added(REQUESTS, status="200", **labels) == 3
    assert added(REQUESTS, status="401", **labels) == 2
    timed = {"service": "mlflow", "endpoint": endpoint}
    assert added("platform_http_request_duration_seconds_count", **timed) == 5
    assert value(after, "platform_http_requests_in_flight", service="mlflow") >= 0


def test_the_collector_reads_flow_runs_pool_champion_monitoring_and_scoring(
    prefect_api, tracking, unique_name
):
    from platform_names import BREACHED_TAG, MODEL_VERSION_TAG, MONTH_TAG
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment

    from services.exporter.collector import PlatformCollector, Sources

    pool = f"pool-{unique_name}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process", concurrency_limit=3))

    @flow(name=f"counted-{unique_name}")
    def counted() -> None:
        """A flow with a deployment, never run: its runs stay Scheduled."""

    deployment_id = counted.to_deployment(name="counted", work_pool_name=pool).apply()
    assert deployment_id
    for _ in range(2):
        run_deployment(f"counted-{unique_name}/counted", timeout=0)

    client = MlflowClient()
    run = client.create_run(client.create_experiment(f"{unique_name}-train"))
    client.create_registered_model(unique_name)
    version = client.create_model_version(
        unique_name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    ).version
    client.set_registered_model_alias(unique_name, "champion", version)
    for suffix, tags, metrics in (
        ("monitoring", {BREACHED_TAG: "true"}, {"rmse": 7.25, "drift_share": 0.75}),
        ("scoring", {}, {"rows": 64_572}),
    ):
        experiment = client.create_experiment(f"{unique_name}-{suffix}")
        with mlflow.start_run(experiment_id=experiment):
            mlflow.set_tags({MONTH_TAG: "2021-03", MODEL_VERSION_TAG: version, **tags})
            mlflow.log_metrics(metrics)

    sources = Sources(unique_name, pool, f"{unique_name}-scoring", f"{unique_name}-monitoring")
    families = {family.name: family for family in PlatformCollector(sources).read_all()}

    def sample(name: str, **labels: str) -> float:
        found = [s.value for s in families[name].samples if labels.items() <= s.labels.items()]
        assert len(found) == 1, (name, labels, families[name].samples)
        return found[0]

    for source in ("prefect", "mlflow", "prefect-server"):
        assert sample("platform_source_up", source=source) == 1.0, source
    assert sample("platform_flow_runs", deployment="counted", state="Scheduled") == 2
    assert sample("platform_work_pool_slots", pool=pool) == 3
    assert sample("platform_work_pool_slots_in_use", pool=pool) == 0
    assert sample("platform_workers_online", pool=pool) == 0
    assert sample("platform_champion_version", model=unique_name) == float(version)
    month = {"month": "2021-03", "version": version}
    assert sample("platform_monitoring_rmse", **month) == 7.25
    assert sample("platform_monitoring_drift_share", **month) == 0.75
    assert sample("platform_monitoring_breached", **month) == 1.0
    assert sample("platform_scoring_rows", **month) == 64_572
    assert any(name.startswith("prefect_server_") for name in families), "Prefect's own metrics"
