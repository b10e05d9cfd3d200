"""Fault injection on the real compose stack (`make e2e-faults`): bad input, failure webhook,
MLflow and MinIO outages during training, a killed worker, restarts, backup and restore.

Each test brings what it needs (the `trained` fixture, its own receiver) and leaves a working
stack behind, so they pass in any order; each prints the window it covered.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from mlflow import MlflowClient
from platform_names import CHAMPION, FAILURE_REASON_TAG

from flows.resources.registry import all_versions, runs_of_flow_run, versions_of_run
from tests.corpus import write_corpus
from tests.e2e.compose import (
    DATA_BUCKET,
    MODEL,
    PROJECT,
    Stack,
    posts_received,
    start_deployment,
    wait_for_state,
    wait_until_final,
)

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

# Enough trees that fitting lasts several seconds on 2 cores: time to kill the worker mid-fit.
SLOW_PARAMS = {"n_estimators": 1500, "learning_rate": 0.05, "early_stopping_rounds": None}


# --- helpers ------------------------------------------------------------------------------------


def start_training(**parameters) -> UUID:
    """Start the train deployment on the worker without waiting; return the flow-run id."""
    base = {"train_month": "2021-01", "val_month": "2021-02"}
    return start_deployment("train/train", **(base | parameters))


def assert_one_clean_run(client: MlflowClient, flow_run_id: UUID) -> None:
    """The flow run left exactly one MLflow run, FINISHED, and one model version from it."""
    runs = runs_of_flow_run(client, str(flow_run_id))
    assert [r.info.status for r in runs] == ["FINISHED"], [
        (r.info.run_id, r.info.status) for r in runs
    ]
    assert len(versions_of_run(client, MODEL, runs[0].info.run_id)) == 1


def every_flow_run(client: Any) -> list[Any]:
    """All flow runs the server knows, a page (the API's most: 200) at a time."""
    from prefect.client.schemas.sorting import FlowRunSort

    runs: list[Any] = []
    while page := client.read_flow_runs(limit=200, offset=len(runs), sort=FlowRunSort.ID_DESC):
        runs += page
    return runs


def snapshot(stack: Stack, client: MlflowClient) -> dict:
    """What must survive a restart or a restore: tracking, registry, artifacts, flow runs."""
    from prefect.client.orchestration import get_client

    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments], max_results=1000)
    versions = all_versions(client, MODEL)
    with get_client(sync_client=True) as prefect_client:
        flow_runs = every_flow_run(prefect_client)
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
        # The model server adds what it answered whenever it flushes (at a stop too): those
        # objects are compared on their own (served_objects).
        "objects": {k: v for k, v in stack.buckets("digests").items() if "/served/" not in k},
        # Scheduled runs come and go with the clock; every run that happened must stay.
        "flow_runs": sorted(
            (str(f.id), f.state.name) for f in flow_runs if f.state and f.state.is_final()
        ),
    }


def served_objects(stack: Stack) -> dict[str, str]:
    """The model server's answered records in the data bucket, by key: their digests."""
    return {k: v for k, v in stack.buckets("digests").items() if "/served/" in k}


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_corpus_stops_each_run_naming_file_and_problem(
    stack, prefect, trained, admin, tmp_path
):
    expected = write_corpus(tmp_path)
    for path in (tmp_path, *tmp_path.iterdir()):  # readable by the image's non-root user
        path.chmod(0o755 if path.is_dir() else 0o644)
    # Put the broken files in the data bucket as if someone had copied them there by hand.
    files = [f"/corpus/{name}" for name in expected]
    stack.buckets("put", "corpus", *files, volume=f"{tmp_path}:/corpus:ro")
    versions_before = len(all_versions(admin, MODEL))
    champion_before = admin.get_model_version_by_alias(MODEL, CHAMPION).version
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
        assert runs_of_flow_run(admin, str(flow_run_id)) == []  # nothing logged from bad data
    print(
        f"\n{len(runs)} broken files, each stopped with its name and problem "
        f"in {time.monotonic() - started:.0f}s"
    )
    assert len(all_versions(admin, MODEL)) == versions_before
    assert admin.get_model_version_by_alias(MODEL, CHAMPION).version == champion_before


# --- notifications ------------------------------------------------------------------------------


def test_failed_flow_run_posts_to_the_webhook(stack, prefect, trained, receiver):
    flow_run_id = start_training(train_path=f"s3://{DATA_BUCKET}/corpus/no-such-file.parquet")
    state = wait_until_final(flow_run_id, timeout_s=300)
    assert state.name == "Failed"
    deadline = time.monotonic() + 120
    while not (posts := [p for p in posts_received(receiver) if str(flow_run_id) in p["body"]]):
        assert time.monotonic() < deadline, "no post about the failed flow run"
        time.sleep(2)
    post = posts[0]
    assert "Failed" in post["subject"] and "train" in post["subject"]
    assert "file not found" in post["body"] or "NoSuchKey" in post["body"], post["body"]


# --- outages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["mlflow", "minio"])
def test_training_survives_a_60s_outage(stack, prefect, trained, admin, service):
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


def test_answers_are_kept_through_a_30s_minio_outage_and_no_request_waits(stack, trained):
    """The model server answers through a MinIO outage as fast as before; what it answered
    meanwhile reaches the bucket once MinIO is back."""
    import requests

    env = stack.env()
    auth = (env["MLFLOW_ADMIN_USERNAME"], env["MLFLOW_ADMIN_PASSWORD"])
    marker = 7.123456  # a trip distance no real trip has: these requests' records
    body = {"dataframe_records": [{"lpep_pickup_datetime": "2021-02-01 08:00:00",
            "PULocationID": 74, "DOLocationID": 75, "trip_distance": marker}]}  # fmt: skip
    url = f"{stack.serving_url}/invocations"
    assert requests.post(url, json=body, auth=auth, timeout=30).status_code == 200
    stack.compose("stop", "minio")
    answered, slowest = 0, 0.0
    try:
        ends = time.monotonic() + 30
        while time.monotonic() < ends:
            started = time.monotonic()
            reply = requests.post(url, json=body, auth=auth, timeout=30)
            slowest = max(slowest, time.monotonic() - started)
            assert reply.status_code == 200, reply.text
            answered += 1
            time.sleep(0.2)
    finally:
        stack.compose("up", "--detach", "--wait", "--no-deps", "--no-recreate", "minio")
    print(
        f"\n{answered} answers during a 30 s MinIO outage, the slowest in {slowest * 1000:.0f} ms"
    )
    assert answered > 50 and slowest < 2.0

    code = (
        "import io, pandas as pd; from flows.resources.store import data_store; "
        "from flows.settings import Settings; s = data_store(Settings.from_env()); "
        "keys = [o.key for o in s.listing('served/')]; "
        "f = pd.concat([pd.read_parquet(io.BytesIO(s.read_bytes(k))) for k in keys]); "
        f"print(int((f['trip_distance'] == {marker}).sum()))"
    )
    deadline, logged = time.monotonic() + 90, 0
    while time.monotonic() < deadline:  # the next flushes (every 5 s here) write them
        logged = int(stack.exec_python("worker", code).strip().splitlines()[-1])
        if logged >= answered + 1:
            break
        time.sleep(5)
    assert logged == answered + 1, f"{logged} of {answered + 1} answers reached the bucket"


# --- worker crash -------------------------------------------------------------------------------


def test_killed_worker_leaves_a_crashed_run_and_no_running_mlflow_run(
    stack, prefect, trained, admin
):
    flow_run_id = start_training(params=SLOW_PARAMS, promote=False)
    deadline = time.monotonic() + 300
    while not (runs := runs_of_flow_run(admin, str(flow_run_id))):  # fitting has begun
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
    assert str(flow_run_id) in run.data.tags[FAILURE_REASON_TAG]
    print(
        f"\nworker killed: flow run Crashed after {crashed_after:.0f}s, "
        f"its MLflow run FAILED after {reaped_after:.0f}s"
    )

    # One command runs it again, with the same parameters.
    stack.make("retry", f"RUN={flow_run_id}")
    assert wait_until_final(flow_run_id, timeout_s=600).name == "Completed"
    statuses = sorted(r.info.status for r in runs_of_flow_run(admin, str(flow_run_id)))
    assert statuses == ["FAILED", "FINISHED"]


# --- restart, backup, restore -------------------------------------------------------------------


def test_down_and_up_keeps_everything(stack, prefect, trained, admin):
    before, served = snapshot(stack, admin), served_objects(stack)
    assert before["versions"] and before["objects"] and before["flow_runs"]
    stack.make("down")
    stack.make("up")
    assert snapshot(stack, admin) == before
    assert served.items() <= served_objects(stack).items(), "an answered record was lost"


def test_backup_then_restore_into_a_wiped_stack(stack, prefect, trained, admin, tmp_path):
    backup = stack.make("backup", f"BACKUP_DIR={tmp_path}")
    written = [line for line in backup.stdout.splitlines() if line.startswith("backup written: ")]
    archive = Path(written[0].removeprefix("backup written: "))
    assert archive.is_file() and archive.name.startswith(f"{PROJECT}-")
    before = snapshot(stack, admin)

    stack.make("clean")
    stack.make("up")
    # Really wiped: `make up` made the platform's model again, with no version.
    assert admin.search_model_versions() == []
    assert [m.name for m in admin.search_registered_models()] == [MODEL]

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
