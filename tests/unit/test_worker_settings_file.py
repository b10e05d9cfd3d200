"""The settings file of a worker on another host (`make worker-env`)."""

from __future__ import annotations

from infra.make_env import parse_env
from infra.worker.settings_file import stack_host, worker_settings

STACK = {
    "BIND_ADDRESS": "10.0.0.5",
    "MLFLOW_PORT": "5000",
    "PREFECT_PORT": "4200",
    "DATA_PROXY_PORT": "5001",
    "WORK_POOL": "taxi-pool",
    "PREFECT_API_AUTH_STRING": "admin:prefect-secret",
    "S3_SECRET_ACCESS_KEY": "s3-secret",
    "POSTGRES_PASSWORD": "pg-secret",
    "MLFLOW_ADMIN_PASSWORD": "admin-secret",
}
ACCOUNT = {"MLFLOW_TRACKING_USERNAME": "gpu-box", "MLFLOW_TRACKING_PASSWORD": "its-own"}


def test_the_stack_is_found_where_it_publishes():
    assert stack_host(STACK, None) == "10.0.0.5"
    assert stack_host(STACK, "stack.example.org") == "stack.example.org"
    assert stack_host({"BIND_ADDRESS": "0.0.0.0"}, None) not in ("0.0.0.0", "")


def test_the_file_holds_urls_and_its_own_account_only():
    text = worker_settings(STACK, ACCOUNT, "gpu-box", "10.0.0.5", "worker-gpu-box.env")
    values = parse_env(text)
    assert values["PREFECT_API_URL"] == "http://10.0.0.5:4200/api"
    assert values["MLFLOW_TRACKING_URI"] == "http://10.0.0.5:5000"
    assert values["DATA_PROXY_URL"] == "http://10.0.0.5:5001"
    assert values["WORKER_QUEUES"] == "default"  # never the in-stack queue, which writes data
    assert values["MLFLOW_TRACKING_PASSWORD"] == "its-own"
    # Its own account at the Prefect gateway too, never the stack's internal string.
    assert values["PREFECT_API_AUTH_STRING"] == "gpu-box:its-own"
    assert "make worker WORKER_ENV=worker-gpu-box.env" in text
    for secret in ("s3-secret", "pg-secret", "admin-secret", "prefect-secret"):
        assert secret not in text


def test_a_stack_behind_tls_is_given_by_https_urls():
    text = worker_settings(STACK, ACCOUNT, "gpu-box", "https://stack.example.org", "w.env")
    values = parse_env(text)
    assert values["MLFLOW_TRACKING_URI"] == "https://stack.example.org"
    assert values["PREFECT_API_URL"] == "https://stack.example.org:4443/api"
    assert values["DATA_PROXY_URL"] == "https://stack.example.org:5443"
