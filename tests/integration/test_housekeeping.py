"""Housekeeping on a real tracking server as compose runs it (stack-registry app, accounts,
PostgreSQL, S3) and the platform's `housekeeping` flow on a real Prefect server: what the
retention no longer keeps is gone from the database and the buckets, and nothing else is."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

import mlflow
import numpy as np
import pytest
import requests
import xgboost as xgb
from mlflow import MlflowClient

from tests import servers
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.integration

API = "/api/2.0/platform/housekeeping"


@dataclass(frozen=True)
class Tracking:
    """The server, its bucket and database, and the accounts of the test."""

    server: servers.AccountsServer
    stack: tuple[str, str]
    teammate: tuple[str, str]
    s3: servers.S3Server

    def call(self, account: tuple[str, str] | None, method: str, action: str, body=None):
        """One housekeeping request as ``account`` (None: without credentials)."""
        return requests.request(
            method, f"{self.server.url}{API}/{action}", json=body, auth=account, timeout=120
        )

    def keys(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        """Every object key under ``prefix`` in the artifact bucket (or ``bucket``)."""
        pages = (
            self.s3.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket or self.server.bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.fixture(scope="module")
def tracking(stack_tracking, postgres, s3) -> Tracking:
    """The stack's tracking server, the database-size function postgres-init installs, and a
    teammate's account."""
    server, stack = stack_tracking
    name = server.backend.rsplit("/", 1)[1]
    subprocess.run(
        [
            str(postgres.bindir / "psql"),
            "--host=127.0.0.1",
            f"--port={postgres.port}",
            "--username=postgres",
            f"--dbname={name}",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            f"reader={name}",
            "--file",
            str(REPO_ROOT / "infra/postgres/database-sizes.sql"),
        ],
        env={**os.environ, "PGPASSWORD": postgres.password},
        check=True,
        capture_output=True,
    )
    return Tracking(server, stack, server.create_account(f"ted-{secrets.token_hex(3)}"), s3)


@pytest.fixture
def as_stack(tracking, monkeypatch) -> Iterator[MlflowClient]:
    """MLflow's client signed in as the stack's worker."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", tracking.stack[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", tracking.stack[1])
    mlflow.set_tracking_uri(tracking.server.url)
    yield MlflowClient()
    mlflow.set_tracking_uri(None)


def logged_run(experiment_id: str) -> tuple[str, str]:
    """A run that logs an xgboost model and a file, as training does; (run id, model id)."""
    rng = np.random.default_rng(0)
    booster = xgb.train(
        {"max_depth": 2}, xgb.DMatrix(rng.random((50, 3)), rng.random(50)), num_boost_round=2
    )
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_text("reference sample", "reference/sample.txt")
        logged = mlflow.xgboost.log_model(booster, name="model", pip_requirements=["xgboost"])
    return run.info.run_id, logged.model_id


def test_deleted_runs_go_with_their_models_and_registered_ones_stay(tracking, as_stack):
    experiment = as_stack.create_experiment(f"hk-{secrets.token_hex(4)}")
    gone, gone_model = logged_run(experiment)
    backing, backing_model = logged_run(experiment)
    alive, alive_model = logged_run(experiment)
    model = f"hk-model-{secrets.token_hex(3)}"
    version = mlflow.register_model(f"models:/{backing_model}", model)
    for run_id in (gone, backing):
        as_stack.delete_run(run_id)
    assert tracking.keys(f"{experiment}/models/{gone_model}/")  # gc leaves these (see module)

    dry = tracking.call(tracking.stack, "POST", "runs", {"older_than_days": 0, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["deleted_runs"] == [gone] and tracking.keys(f"{experiment}/{gone}/")

    swept = tracking.call(tracking.stack, "POST", "runs", {"older_than_days": 0})
    assert swept.status_code == 200, swept.text
    answer = swept.json()
    assert answer["deleted_runs"] == [gone]
    assert answer["deleted_logged_models"] == [gone_model]
    assert answer["kept"] == {backing: f"backs version {version.version} of {model}"}
    assert answer["deleted_objects"] >= 4 and answer["remaining"] == 0
    assert tracking.keys(f"{experiment}/{gone}/") == []
    assert tracking.keys(f"{experiment}/models/{gone_model}/") == []
    with pytest.raises(mlflow.exceptions.MlflowException):
        as_stack.get_run(gone)
    # What a version and a live run need is all there, and the version still loads.
    for run_id, model_id in ((backing, backing_model), (alive, alive_model)):
        assert as_stack.get_run(run_id).info.run_id == run_id
        assert tracking.keys(f"{experiment}/models/{model_id}/")
        assert tracking.keys(f"{experiment}/{run_id}/artifacts/reference/")
    loaded = mlflow.xgboost.load_model(f"models:/{model}/{version.version}")
    assert loaded.num_boosted_rounds() == 2


def test_a_run_deleted_recently_stays(tracking, as_stack):
    experiment = as_stack.create_experiment(f"hk-{secrets.token_hex(4)}")
    recent, _ = logged_run(experiment)
    as_stack.delete_run(recent)
    swept = tracking.call(tracking.stack, "POST", "runs", {"older_than_days": 1})
    assert swept.status_code == 200, swept.text
    assert recent not in swept.json()["deleted_runs"]
    assert tracking.keys(f"{experiment}/{recent}/")


def test_leftovers_of_runs_that_no_longer_exist_are_found_and_deleted(tracking, as_stack, s3):
    experiment = as_stack.create_experiment(f"hk-{secrets.token_hex(4)}")
    kept_run, kept_model = logged_run(experiment)
    ghost_run, ghost_model = secrets.token_hex(16), f"m-{secrets.token_hex(16)}"
    planted = [
        f"{experiment}/{ghost_run}/artifacts/model/model.ubj",
        f"{experiment}/models/{ghost_model}/artifacts/MLmodel",
    ]
    for key in planted:
        s3.client().put_object(Bucket=tracking.server.bucket, Key=key, Body=b"left behind")
    young = tracking.call(tracking.stack, "POST", "leftovers", {"older_than_days": 1})
    assert young.json()["orphans"] == [], "objects written a moment ago are not leftovers yet"

    swept = tracking.call(tracking.stack, "POST", "leftovers", {"older_than_days": 0})
    assert swept.status_code == 200, swept.text
    # The server is shared with other tests: their leftovers may be swept too, never a live run's.
    orphans = set(swept.json()["orphans"])
    assert {f"run {ghost_run}", f"model {ghost_model}"} <= orphans
    assert not {f"run {kept_run}", f"model {kept_model}"} & orphans
    assert swept.json()["deleted_objects"] >= 2
    for key in planted:
        assert tracking.keys(key) == []
    assert tracking.keys(f"{experiment}/{kept_run}/") and tracking.keys(
        f"{experiment}/models/{kept_model}/"
    )


@pytest.mark.parametrize(
    ("action", "body"),
    [("runs", {"older_than_days": 0}), ("leftovers", {"older_than_days": 0})],
    ids=["runs", "leftovers"],
)
def test_a_teammate_cannot_delete_and_a_stranger_must_sign_in(tracking, action, body):
    refused = tracking.call(tracking.teammate, "POST", action, body)
    assert refused.status_code == 403
    assert "only the stack's housekeeping and admins" in refused.json()["message"]
    assert tracking.call(None, "POST", action, body).status_code == 401
    wrong = (tracking.stack[0], "not-the-password")
    assert tracking.call(wrong, "POST", action, body).status_code == 401


@pytest.mark.parametrize(
    "body",
    [{}, {"older_than_days": -1}, {"older_than_days": "30"}, {"older_than_days": 1, "max_runs": 0}],
    ids=["no-age", "negative", "text", "no-runs"],
)
def test_bad_options_are_refused_with_the_reason(tracking, body):
    refused = tracking.call(tracking.stack, "POST", "runs", body)
    assert refused.status_code == 400
    assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_nothing_is_deleted_while_a_backup_holds_the_lock(
    tracking, as_stack, postgres, monkeypatch
):
    """`make backup`'s own lock (infra/backup/archive.py), its psql run here instead of in the
    postgres container: while it is held the sweep answers 409 and deletes nothing."""
    from mlflow_stack_registry.housekeeping import MAINTENANCE_LOCK

    from infra.backup import archive

    assert archive.MAINTENANCE_LOCK == MAINTENANCE_LOCK
    experiment = as_stack.create_experiment(f"hk-{secrets.token_hex(4)}")
    run_id, _ = logged_run(experiment)
    as_stack.delete_run(run_id)
    # `docker compose exec -T postgres psql ...` becomes `psql -h 127.0.0.1 -p PORT ...`.
    psql = f'shift 4; exec {postgres.bindir / "psql"} -h 127.0.0.1 -p {postgres.port} "$@"'
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    database = tracking.server.backend.rsplit("/", 1)[1]
    stack = archive.Stack(["bash", "-c", psql, "compose"], {"MLFLOW_DB_USER": database})
    with stack.maintenance_lock():
        busy = tracking.call(tracking.stack, "POST", "runs", {"older_than_days": 0})
        assert busy.status_code == 409, busy.text
        assert "backup" in busy.json()["message"]
        assert tracking.keys(f"{experiment}/{run_id}/")
    swept = tracking.call(tracking.stack, "POST", "runs", {"older_than_days": 0})
    assert swept.status_code == 200 and run_id in swept.json()["deleted_runs"]
    assert tracking.keys(f"{experiment}/{run_id}/") == []


def test_sizes_of_every_database_and_the_bucket_for_any_account(tracking):
    answer = tracking.call(tracking.teammate, "GET", "sizes")
    assert answer.status_code == 200, answer.text
    sizes = answer.json()
    databases = sizes["databases"]
    assert "postgres" in databases and len(databases) >= 3, "all databases, not only MLflow's"
    assert all(size > 1_000_000 for size in databases.values())
    bucket = sizes["buckets"][tracking.server.bucket]
    pages = (
        tracking.s3.client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=tracking.server.bucket)
    )
    listed = [item["Size"] for page in pages for item in page.get("Contents", [])]
    assert (bucket["objects"], bucket["bytes"]) == (len(listed), sum(listed))
    assert sizes["counts"]["runs"] >= sizes["counts"]["deleted_runs"] >= 0
    assert tracking.call(None, "GET", "sizes").status_code == 401


def test_the_flow_deletes_old_predictions_of_versions_without_an_alias(
    tracking, as_stack, prefect_api, s3, monkeypatch
):
    from flows.pipelines.housekeeping import housekeeping

    experiment = as_stack.create_experiment(f"hk-{secrets.token_hex(4)}")
    model = f"hk-flow-{secrets.token_hex(3)}"
    versions = [mlflow.register_model(f"models:/{logged_run(experiment)[1]}", model) for _ in "ab"]
    as_stack.set_registered_model_alias(model, "champion", versions[1].version)
    deleted_run, _ = logged_run(experiment)
    as_stack.delete_run(deleted_run)
    bucket = f"data-{secrets.token_hex(4)}"
    s3.client().create_bucket(Bucket=bucket)
    month = "predictions/color=green/year=2021/month=03"
    retired, champion = (f"{month}/{model}-v{v.version}.parquet" for v in versions)
    answered = f"served/year=2026/month=12/{model}-v{versions[1].version}-20261201T0000Z.parquet"
    for key in (retired, champion, "tlc/green/green_tripdata_2021-03.parquet", answered):
        s3.client().put_object(Bucket=bucket, Key=key, Body=b"parquet" * 1000)
    for key, value in s3.env().items():
        if key != "MLFLOW_S3_ENDPOINT_URL":
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DATA_BUCKET", bucket)

    monkeypatch.setenv("HOUSEKEEPING_RETENTION_DAYS", "1")
    kept = housekeeping()
    assert kept["predictions"]["objects"] == 0, "a day's retention keeps today's predictions"
    assert kept["served"]["objects"] == 0, "answered records have their own retention (90 days)"
    assert deleted_run not in kept["runs"]["runs"]

    monkeypatch.setenv("HOUSEKEEPING_RETENTION_DAYS", "0")
    monkeypatch.setenv("SERVED_TRAFFIC_RETENTION_DAYS", "0")  # their own retention
    report = housekeeping()
    assert report["predictions"] == {"objects": 1, "bytes": 7000}
    assert report["served"] == {"objects": 1, "bytes": 7000}
    assert deleted_run in report["runs"]["runs"]
    trips = "tlc/green/green_tripdata_2021-03.parquet"
    assert sorted(tracking.keys(bucket=bucket)) == sorted([champion, trips])
    before, after = report["before"], report["after"]
    assert after[f"bucket {bucket}"] == before[f"bucket {bucket}"] - 14000
    artifacts = f"bucket {tracking.server.bucket}"
    assert after[artifacts] < before[artifacts]
    assert report["backlog"] == 0


def test_prefect_vacuums_old_flow_runs_with_the_settings_compose_gives_it(prefect_api, postgres):
    """The test server runs with prefect-server's vacuum settings from docker-compose.yml
    (tests/servers.py compose_prefect_settings: the retention two hours, checked every 5 s): a
    flow run that ended before the retention is deleted with its logs, a recent one stays."""
    import time

    from prefect import flow, get_run_logger, runtime
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.logging.handlers import APILogWorker

    @flow(name=f"vacuumed-{secrets.token_hex(3)}")
    def vacuumed() -> str:
        get_run_logger().info("a line of the flow run's log")
        return str(runtime.flow_run.id)

    settings = servers.compose_prefect_settings()
    assert settings["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"] == "events,flow_runs"
    old, new = vacuumed(), vacuumed()
    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        # The API sets end times from the server's clock: this one ended three hours ago.
        database = postgres.connect("prefect")
        with database, database.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM log WHERE flow_run_id = %s", (old,))
            assert cursor.fetchone()[0] > 0
            cursor.execute(
                "UPDATE flow_run SET end_time = now() - interval '3 hours' WHERE id = %s",
                (old,),
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                client.read_flow_run(UUID(old))
            except ObjectNotFound:
                break
            time.sleep(1)
        with pytest.raises(ObjectNotFound):
            client.read_flow_run(UUID(old))
        assert client.read_flow_run(UUID(new)).state.is_completed()
        with database, database.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM log WHERE flow_run_id = %s", (old,))
            assert cursor.fetchone()[0] == 0, "its logs go with it"
        database.close()
