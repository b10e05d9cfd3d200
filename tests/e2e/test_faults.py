"""Fault injection on the real compose stack (`make e2e-faults`): bad input, failure webhook,
MLflow and MinIO outages during training, a killed worker, restarts, backup and restore.

The tests share one stack and run in file order; each prints the window it covered.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from uuid import UUID

import pytest
from mlflow import MlflowClient

from tests.conftest import TLC_DATA
from tests.corpus import write_corpus
from tests.e2e.conftest import PROJECT, RECEIVER, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

MODEL = "taxi-trip-duration"
DATA_BUCKET = "taxi-data"
# Enough trees that fitting lasts several seconds on 2 cores: time to kill the worker mid-fit.
SLOW_PARAMS = {"n_estimators": 1500, "learning_rate": 0.05, "early_stopping_rounds": None}


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect(stack: Stack):
    """Prefect client settings for the host, with the stack's auth string."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings(
        {
            PREFECT_API_URL: stack.prefect_api_url,
            PREFECT_API_AUTH_STRING: stack.env()["PREFECT_API_AUTH_STRING"],
        }
    ):
        yield


@pytest.fixture(scope="module")
def trained(stack: Stack, prefect) -> None:
    """Months in the bucket, deployments applied, one champion trained."""
    files = " ".join(str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))
    stack.make("upload-data", f"FILES={files}")
    stack.make("deploy")
    stack.make("train", "TRAIN_MONTH=2021-01", "VAL_MONTH=2021-02")


@pytest.fixture
def admin(stack: Stack, monkeypatch) -> MlflowClient:
    """An MLflow client on the stack as its admin."""
    stack.use_mlflow_as_admin(monkeypatch)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")  # the stack may be restarting
    return MlflowClient()


def start_training(**parameters) -> UUID:
    """Start the train deployment on the worker without waiting; return the flow-run id."""
    from prefect.deployments import run_deployment

    base = {"train_month": "2021-01", "val_month": "2021-02"}
    return run_deployment("train/train", parameters=base | parameters, timeout=0).id


def flow_run_state(flow_run_id: UUID):
    """The flow run's current state."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def poll_state(flow_run_id: UUID, reached, timeout_s: float):
    """Poll until the flow run's state satisfies ``reached`` or is final; return that state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = flow_run_state(flow_run_id)
        if reached(state) or state.is_final():
            return state
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} still {state.name} after {timeout_s}s")


def wait_for_state(flow_run_id: UUID, names: set[str], timeout_s: float):
    """Poll until the flow run is in one of ``names``; return that state."""
    state = poll_state(flow_run_id, lambda s: s.name in names, timeout_s)
    if state.name not in names:
        raise AssertionError(f"flow run {flow_run_id} ended {state.name}: {state.message}")
    return state


def wait_until_final(flow_run_id: UUID, timeout_s: float):
    """Poll until the flow run has ended; return its final state."""
    return poll_state(flow_run_id, lambda s: False, timeout_s)


def mlflow_runs_of(client: MlflowClient, flow_run_id: UUID) -> list:
    """MLflow runs tagged with the flow run, in every experiment."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`prefect.flow_run_id` = '{flow_run_id}'")


def versions_of_run(client: MlflowClient, run_id: str) -> list:
    """Registered versions made from ``run_id``."""
    return client.search_model_versions(f"name='{MODEL}' and run_id='{run_id}'")


def assert_one_clean_run(client: MlflowClient, flow_run_id: UUID) -> None:
    """The flow run left exactly one MLflow run, FINISHED, and one model version from it."""
    runs = mlflow_runs_of(client, flow_run_id)
    assert [r.info.status for r in runs] == ["FINISHED"], [
        (r.info.run_id, r.info.status) for r in runs
    ]
    assert len(versions_of_run(client, runs[0].info.run_id)) == 1


def bucket_digests(stack: Stack) -> dict[str, str]:
    """sha256 of every object in the artifact and data buckets, computed inside the stack."""
    code = (
        "import boto3, hashlib, json, os;"
        "s3 = boto3.client('s3', endpoint_url=os.environ['S3_ENDPOINT_URL']);"
        "out = {};\n"
        "for b in (os.environ['MLFLOW_ARTIFACT_BUCKET'], os.environ['DATA_BUCKET']):\n"
        "    for p in s3.get_paginator('list_objects_v2').paginate(Bucket=b):\n"
        "        for o in p.get('Contents', []):\n"
        "            body = s3.get_object(Bucket=b, Key=o['Key'])['Body'].read()\n"
        "            out[b + '/' + o['Key']] = hashlib.sha256(body).hexdigest()\n"
        "print(json.dumps(out))"
    )
    result = stack.compose("run", "--rm", "--no-deps", "-T", "create-buckets", "python", "-c", code)
    return json.loads(result.stdout.strip().splitlines()[-1])


def snapshot(stack: Stack, client: MlflowClient) -> dict:
    """What must survive a restart or a restore: tracking, registry, artifacts, flow runs."""
    from prefect.client.orchestration import get_client

    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    versions = client.search_model_versions(f"name='{MODEL}'")
    with get_client(sync_client=True) as prefect_client:
        flow_runs = prefect_client.read_flow_runs(limit=200)
    return {
        "experiments": sorted((e.experiment_id, e.name) for e in experiments),
        "runs": sorted(
            (
                r.info.run_id,
                r.info.status,
                json.dumps(r.data.metrics, sort_keys=True),
                json.dumps(r.data.params, sort_keys=True),
            )
            for r in runs
        ),
        "versions": sorted((v.version, v.run_id, v.status) for v in versions),
        "aliases": sorted(client.get_registered_model(MODEL).aliases.items()),
        "objects": bucket_digests(stack),
        # Scheduled runs come and go with the clock; every run that happened must stay.
        "flow_runs": sorted(
            (str(f.id), f.state.name) for f in flow_runs if f.state and f.state.is_final()
        ),
    }


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_corpus_stops_each_run_naming_file_and_problem(stack, trained, admin, tmp_path):
    expected = write_corpus(tmp_path)
    for path in (tmp_path, *tmp_path.iterdir()):  # readable by the image's non-root user
        path.chmod(0o755 if path.is_dir() else 0o644)
    # Put the broken files in the data bucket as if someone had copied them there by hand.
    stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "-v",
        f"{tmp_path}:/corpus:ro",
        "create-buckets",
        "python",
        "-c",
        "import boto3, os, pathlib;"
        "s3 = boto3.client('s3', endpoint_url=os.environ['S3_ENDPOINT_URL']);"
        "[s3.upload_file(str(p), os.environ['DATA_BUCKET'], 'corpus/' + p.name)"
        " for p in pathlib.Path('/corpus').iterdir()]",
    )
    versions_before = len(admin.search_model_versions(f"name='{MODEL}'"))
    champion_before = admin.get_model_version_by_alias(MODEL, "champion").version
    started = time.monotonic()
    runs = {
        name: start_training(train_path=f"s3://{DATA_BUCKET}/corpus/{name}", promote=True)
        for name in expected
    }
    for name, flow_run_id in runs.items():
        state = wait_until_final(flow_run_id, timeout_s=600)
        assert state.name == "Failed", (name, state.name, state.message)
        assert f"s3://{DATA_BUCKET}/corpus/{name}" in state.message, state.message
        assert expected[name] in state.message, state.message
        assert mlflow_runs_of(admin, flow_run_id) == []  # nothing logged from bad data
    print(
        f"\n{len(runs)} broken files, each stopped with its name and problem "
        f"in {time.monotonic() - started:.0f}s"
    )
    assert len(admin.search_model_versions(f"name='{MODEL}'")) == versions_before
    assert admin.get_model_version_by_alias(MODEL, "champion").version == champion_before


# --- notifications ------------------------------------------------------------------------------


@pytest.fixture
def receiver(stack: Stack):
    """A webhook receiver on the compose network (NOTIFY_WEBHOOK_URL points at it)."""
    server = (
        "import http.server, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_POST(self):\n"
        "        body = self.rfile.read(int(self.headers['Content-Length'] or 0))\n"
        "        print(body.decode(), flush=True)\n"
        "        self.send_response(200); self.end_headers()\n"
        "http.server.HTTPServer(('0.0.0.0', 8000), H).serve_forever()\n"
    )
    image = stack.env()["APP_IMAGE"]
    subprocess.run(
        [
            "docker",
            "run",
            "--detach",
            "--rm",
            "--name",
            RECEIVER,
            "--network",
            f"{PROJECT}_default",
            image,
            "python",
            "-u",
            "-c",
            server,
        ],
        check=True,
        capture_output=True,
    )
    yield RECEIVER
    subprocess.run(["docker", "rm", "--force", RECEIVER], capture_output=True)


def test_failed_flow_run_posts_to_the_webhook(stack, trained, receiver):
    flow_run_id = start_training(train_path=f"s3://{DATA_BUCKET}/corpus/no-such-file.parquet")
    state = wait_until_final(flow_run_id, timeout_s=300)
    assert state.name == "Failed"
    deadline = time.monotonic() + 120
    posts: list[dict] = []
    while time.monotonic() < deadline:
        logs = subprocess.run(["docker", "logs", receiver], capture_output=True, text=True).stdout
        posts = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        if any(str(flow_run_id) in post["body"] for post in posts):
            break
        time.sleep(2)
    post = next(p for p in posts if str(flow_run_id) in p["body"])
    assert "Failed" in post["subject"] and "train" in post["subject"]
    assert "file not found" in post["body"] or "NoSuchKey" in post["body"], post["body"]


# --- outages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["mlflow", "minio"])
def test_training_survives_a_60s_outage(stack, trained, admin, service):
    flow_run_id = start_training(promote=False)
    wait_for_state(flow_run_id, {"Running"}, timeout_s=120)
    stopped = time.monotonic()
    stack.compose("stop", service)
    time.sleep(60)
    stack.compose("up", "--detach", "--wait", "--no-deps", "--no-recreate", service)
    outage = time.monotonic() - stopped
    state = wait_until_final(flow_run_id, timeout_s=600)
    print(
        f"\n{service} unavailable for {outage:.0f}s (stop -> healthy) during the flow run; "
        f"it ended {state.name}"
    )
    assert state.name == "Completed", state.message
    assert_one_clean_run(admin, flow_run_id)


# --- worker crash -------------------------------------------------------------------------------


def test_killed_worker_leaves_a_crashed_run_and_no_running_mlflow_run(stack, trained, admin):
    flow_run_id = start_training(params=SLOW_PARAMS, promote=False)
    deadline = time.monotonic() + 300
    while not (runs := mlflow_runs_of(admin, flow_run_id)):  # fitting has begun
        assert time.monotonic() < deadline, "the flow never opened its MLflow run"
        time.sleep(0.5)
    assert runs[0].info.status == "RUNNING"
    killed = time.monotonic()
    stack.compose("kill", "worker")  # SIGKILL: no hook, no cleanup, as a lost machine
    stack.compose("up", "--detach", "--wait", "--no-deps", "--no-recreate", "worker")

    state = wait_until_final(flow_run_id, timeout_s=300)
    crashed_after = time.monotonic() - killed
    assert state.name == "Crashed", state.message
    deadline = time.monotonic() + 180
    while (run := admin.get_run(runs[0].info.run_id)).info.status == "RUNNING":
        assert time.monotonic() < deadline, "the MLflow run is still RUNNING"
        time.sleep(2)
    reaped_after = time.monotonic() - killed
    assert run.info.status == "FAILED"
    assert str(flow_run_id) in run.data.tags["failure_reason"]
    print(
        f"\nworker killed: flow run Crashed after {crashed_after:.0f}s, "
        f"its MLflow run FAILED after {reaped_after:.0f}s"
    )

    # One command runs it again, with the same parameters.
    stack.make("retry", f"RUN={flow_run_id}")
    assert wait_until_final(flow_run_id, timeout_s=600).name == "Completed"
    statuses = sorted(r.info.status for r in mlflow_runs_of(admin, flow_run_id))
    assert statuses == ["FAILED", "FINISHED"]


# --- restart, backup, restore -------------------------------------------------------------------


def test_down_and_up_keeps_everything(stack, trained, admin):
    before = snapshot(stack, admin)
    assert before["versions"] and before["objects"] and before["flow_runs"]
    stack.make("down")
    stack.make("up")
    assert snapshot(stack, admin) == before


def test_backup_then_restore_into_a_wiped_stack(stack, trained, admin, tmp_path):
    backup = stack.make("backup", f"BACKUP_DIR={tmp_path}")
    written = [line for line in backup.stdout.splitlines() if line.startswith("backup written: ")]
    archive = Path(written[0].removeprefix("backup written: "))
    assert archive.is_file() and archive.name.startswith(f"{PROJECT}-")
    before = snapshot(stack, admin)

    stack.make("clean")
    stack.make("up")
    assert admin.search_registered_models() == []  # really wiped

    started = time.monotonic()
    stack.make("restore", f"FILE={archive}")
    print(
        f"\nrestore of {archive.stat().st_size / 1e6:.1f} MB took {time.monotonic() - started:.0f}s"
    )
    after = snapshot(stack, admin)
    assert after == before  # same registry, runs, flow runs, byte-identical objects
    acls = stack.compose(
        "exec", "-T", "postgres", "psql", "-U", "postgres", "-tAc",
        "SELECT datname, datacl FROM pg_database"
        " WHERE datname IN ('mlflow', 'mlflow_auth', 'prefect')",
    ).stdout.split()  # fmt: skip
    # An empty ACL would mean PostgreSQL's default: anyone may connect.
    acl_of = dict(row.split("|", 1) for row in acls)
    assert set(acl_of) == {"mlflow", "mlflow_auth", "prefect"}, acls
    public = [name for name, acl in acl_of.items() if not acl or re.search(r"[{,]=", acl)]
    assert public == [], acls

    # The restored platform works: the worker trains and registers the next version.
    trained_again = stack.make("train", "TRAIN_MONTH=2021-01", "VAL_MONTH=2021-02")
    assert "model:      taxi-trip-duration version" in trained_again.stdout
