"""Prometheus metrics of the stack's HTTP services: requests by endpoint, method and status,
their latency, and requests in flight, from one ASGI middleware (prometheus-client).

The tracking server and the data proxy run several worker processes (uvicorn ``--workers``):
their metrics go through prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, one
file per process) and ``python -m mlflow_platform_metrics --port N`` serves the sum of them on a
port of its own that compose does not publish, so the metrics stay on the stack's network and
the services' own ports keep MLflow's routes only. The model server (one process) serves its
registry the same way (services/serving). Endpoints are labelled by the route template the
service's edge matched (platform_edge.mlflow leaves it in the scope: MLflow's own routes), and
``other`` for anything else, so the number of series stays bounded whatever paths clients ask
for.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

# From a 5 ms metadata read to a minutes-long artifact upload.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
REQUESTS = Counter(
    "platform_http_requests_total",
    "HTTP requests answered, by service, endpoint, method and status",
    ["service", "endpoint", "method", "status"],
)
LATENCY = Histogram(
    "platform_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by service and endpoint",
    ["service", "endpoint"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "platform_http_requests_in_flight",
    "Requests being answered now, by service",
    ["service"],
    multiprocess_mode="livesum",
)

OTHER = "other"


def endpoint_of(scope: MutableMapping[str, Any]) -> str:
    """A bounded label for a request: the route template its service matched, else ``other``."""
    from platform_edge.mlflow import ROUTE_KEY

    route = scope.get(ROUTE_KEY)
    return str(route) if route else OTHER


class RequestMetrics:
    """ASGI middleware: counts, times and gauges every HTTP request of ``service``."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, started, counted_once = 500, time.perf_counter(), False
        in_flight = IN_FLIGHT.labels(self.service)

        def count() -> None:
            """Count the request once, before its client can see the whole answer (a client
            that reads the metrics next must find it there)."""
            nonlocal counted_once
            if counted_once:
                return
            counted_once = True
            in_flight.dec()
            endpoint = endpoint_of(scope)  # set by the service while it answered
            method = scope.get("method", "GET")
            REQUESTS.labels(self.service, endpoint, method, str(status)).inc()
            LATENCY.labels(self.service, endpoint).observe(time.perf_counter() - started)

        async def counted(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                count()
            await send(message)

        in_flight.inc()
        try:
            await self.app(scope, receive, counted)
        finally:
            count()  # an app that failed before its answer's end
