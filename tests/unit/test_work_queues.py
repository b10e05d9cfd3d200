"""Which flows a worker on another host may run: its account reads the data bucket, writes only
to the training experiment and model and never moves champion, so the rest (promotion included)
wait in the queue only the stack serves."""

from __future__ import annotations

import yaml

from infra.worker.settings_file import worker_settings
from tests.paths import REPO_ROOT

IN_STACK = {
    "score",
    "monthly",
    "monitor",
    "platform-check",
    "reap-mlflow-runs",
    "promote",
    "retrain",
    "housekeeping",  # it deletes
}
ANYWHERE = {"train", "tune", "tune-trial"}


def queues() -> dict[str, str]:
    """Each deployment of prefect.yaml and its work queue ("default" when none is named)."""
    deployments = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    return {d["name"]: d["work_pool"].get("work_queue_name", "default") for d in deployments}


def test_flows_that_write_data_or_other_experiments_wait_for_the_stacks_workers():
    assert set(queues()) == IN_STACK | ANYWHERE  # a new deployment must be placed on purpose
    assert {name for name, queue in queues().items() if queue == "in-stack"} == IN_STACK


def test_workers_elsewhere_serve_only_the_default_queue():
    compose = yaml.safe_load((REPO_ROOT / "infra/worker/compose.yml").read_text())
    assert (
        compose["services"]["worker"]["environment"]["WORKER_QUEUES"] == "${WORKER_QUEUES:-default}"
    )
    account = {"MLFLOW_TRACKING_USERNAME": "w", "MLFLOW_TRACKING_PASSWORD": "p"}
    stack = {"PREFECT_API_AUTH_STRING": "a:b"}
    assert "WORKER_QUEUES=default\n" in worker_settings(stack, account, "w", "h", "w.env")
