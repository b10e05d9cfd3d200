"""The metrics' labels stay bounded, and the platform's collector survives a source down."""

from __future__ import annotations

import pytest
from mlflow_platform_metrics import endpoint_of
from platform_edge.mlflow import ROUTE_KEY, MlflowRouter, NoRoute
from prometheus_client import CollectorRegistry, generate_latest

from services.exporter.collector import PlatformCollector, Sources, gauge

RUN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def router() -> MlflowRouter:
    """MLflow's routes, as its server dispatches them."""
    from mlflow.server import app
    from mlflow.server.fastapi_app import create_fastapi_app

    return MlflowRouter(create_fastapi_app(app), app)


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("POST", "/api/2.0/mlflow/runs/create", "/api/2.0/mlflow/runs/create"),
        ("GET", "/api/2.0/mlflow/experiments/search", "/api/2.0/mlflow/experiments/search"),
        ("GET", "/api/2.0/mlflow/logged-models/m-" + "a" * 32,
         "/api/2.0/mlflow/logged-models/<model_id>"),
        ("PUT", f"/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/model/MLmodel",
         "/api/2.0/mlflow-artifacts/artifacts/{artifact_path}"),
        ("DELETE", f"/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/x",
         "/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>"),
        ("POST", "/api/2.0/mlflow/registered-models/alias",
         "/api/2.0/mlflow/registered-models/alias"),
        ("GET", "/health", "/health"),
    ],
)  # fmt: skip
def test_requests_find_mlflows_own_route_and_are_labelled_by_it(router, method, path, template):
    """The label of a request is the template of the route MLflow's router sends it to."""
    route = router.match(method, path)
    assert route.template == template
    assert endpoint_of({ROUTE_KEY: route.template}) == template


@pytest.mark.parametrize(
    "path", ["/wp-login.php", "/api/2.0/mlflow/" + "x/" * 40 + "y", "/api/2.0/mlflow/nope"]
)
def test_a_path_mlflow_has_no_route_for_is_counted_as_other(router, path):
    with pytest.raises(NoRoute):
        router.match("GET", path)
    assert endpoint_of({"path": path}) == "other"


def test_the_alias_route_is_found_by_its_handler_whatever_the_api_prefix(router):
    """The stack's rule on aliases is keyed by MLflow's handler, so /ajax-api reaches it too."""
    for prefix in ("/api", "/ajax-api"):
        route = router.match("POST", f"{prefix}/2.0/mlflow/registered-models/alias")
        assert route.endpoint == "_set_registered_model_alias"


def test_a_source_that_fails_reports_down_and_the_others_still_answer():
    calls = {"good": 0}

    def good():
        calls["good"] += 1
        return [gauge("platform_champion_version", "v", ["model"], {("taxi",): 7.0})]

    def broken():
        raise ConnectionError("prefect-server: connection refused")

    sources = Sources("taxi", "pool", "taxi-scoring", "taxi-monitoring")
    collector = PlatformCollector(sources, cache_s=60, readers={"mlflow": good, "prefect": broken})
    registry = CollectorRegistry()
    registry.register(collector)
    page = generate_latest(registry).decode()
    assert 'platform_champion_version{model="taxi"} 7.0' in page
    assert 'platform_source_up{source="prefect"} 0.0' in page
    assert 'platform_source_up{source="mlflow"} 1.0' in page
    generate_latest(registry)
    assert calls["good"] == 1, "a second scrape within cache_s is answered from the cache"


def test_a_request_is_counted_before_its_client_sees_the_end_of_the_answer():
    """A client that reads the metrics right after an answer finds that answer counted: the
    count lands before the answer's last byte is sent, not after the app returns."""
    import asyncio

    from mlflow_platform_metrics import RequestMetrics
    from prometheus_client import REGISTRY

    labels = {"service": "unit", "endpoint": "/counted", "method": "GET", "status": "204"}

    def counted() -> float:
        found = REGISTRY.get_sample_value("platform_http_requests_total", labels)
        return found or 0.0

    async def app(scope, receive, send) -> None:
        scope[ROUTE_KEY] = "/counted"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        await asyncio.sleep(0.05)  # the app's own cleanup, after its client has the answer

    seen_at_the_end: list[float] = []

    async def send(message) -> None:
        if message["type"] == "http.response.body":
            seen_at_the_end.append(counted())

    before = counted()
    scope = {"type": "http", "method": "GET", "path": "/counted", "headers": []}
    asyncio.run(RequestMetrics(app, "unit")(scope, None, send))
    assert seen_at_the_end == [before + 1]
    assert counted() == before + 1  # once, not again when the app returns
