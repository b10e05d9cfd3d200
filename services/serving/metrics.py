"""The model server's own figures for Prometheus, beside the request metrics every service has
(mlflow_platform_metrics): which version answered how many predictions and rows, sign-ins
refused, and versions loaded or refused."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PREDICTIONS = Counter(
    "serving_predictions_total",
    "Prediction requests (POST /invocations) answered, by answering version and status",
    ["version", "status"],
)
ROWS = Counter(
    "serving_predicted_rows_total",
    "Records in the prediction requests answered with 200, by answering version",
    ["version"],
)
SIGNIN_REFUSALS = Counter(
    "serving_signin_refusals_total",
    "Requests refused before the model: 401 unknown, 403 no read, 429 braked, 503 MLflow down",
    ["status"],
)
VERSION_LOADS = Counter(
    "serving_version_loads_total",
    "Versions the alias pointed at: loaded, refused (no valid stack record) or failed to load",
    ["outcome"],
)
ANSWERING_VERSION = Gauge(
    "serving_answering_version", "The version number answering now (0: none yet)"
)
REFUSED_VERSION = Gauge(
    "serving_refused_version", "The version the alias points at that was refused (0: none)"
)
