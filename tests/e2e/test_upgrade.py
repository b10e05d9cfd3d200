"""Upgrading MLflow keeps every run: databases made by an older MLflow release (from PyPI, in a
virtualenv of its own) are migrated by the stack's job (infra/mlflow/migrate.py), and then the
installed MLflow serves every experiment, run, artifact, version, alias and account, and trains.

No compose stack: the servers run on the test's PostgreSQL, started as the compose services start
them (services/mlflow/start-server.sh)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests import servers
from tests.paths import REPO_ROOT, TLC_DATA

pytestmark = pytest.mark.e2e

OLD_MLFLOW = "3.10.1"  # an older 3.x whose accounts schema predates 3.17's roles
ADMIN = ("admin", secrets.token_urlsafe(12))

# Run by the old MLflow's client against the old server: what a team had made by then.
OLD_WORK = """
import json, os, mlflow
from mlflow import MlflowClient
from mlflow.server import get_app_client
auth = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
auth.create_user("alice", os.environ["ALICE_PASSWORD"])
client = MlflowClient()
experiment = client.create_experiment("taxi-trip-duration")
auth.create_experiment_permission(experiment, "alice", "EDIT")
with mlflow.start_run(experiment_id=experiment) as run:
    mlflow.log_params({"n_estimators": 40, "val_uri": "s3://taxi-data/x.parquet"})
    mlflow.log_metric("rmse", 5.79)
    mlflow.log_dict({"note": "made by mlflow %s" % mlflow.__version__}, "notes/made.json")
client.create_registered_model("taxi-trip-duration")
source = run.info.artifact_uri + "/notes"
version = client.create_model_version("taxi-trip-duration", source, run.info.run_id)
client.set_registered_model_alias("taxi-trip-duration", "champion", version.version)
print(json.dumps({"experiment": experiment, "run": run.info.run_id, "version": version.version}))
"""


@pytest.fixture(scope="module")
def old_mlflow(tmp_path_factory) -> Path:
    """A virtualenv with the older MLflow release, from PyPI."""
    venv = tmp_path_factory.mktemp("old-mlflow") / "venv"
    subprocess.run(["uv", "venv", "-q", "--python", "3.11", str(venv)], check=True)
    subprocess.run(
        [
            "uv",
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin/python"),
            f"mlflow[auth]=={OLD_MLFLOW}",
            "psycopg2-binary",
        ],
        check=True,
        timeout=600,
    )
    return venv / "bin"


def start_server(
    bin_dir: Path, app: str, tracking: str, accounts: str, artifacts: Path, log: Path
) -> tuple[str, subprocess.Popen]:
    """`mlflow server` (from ``bin_dir``) as the compose service starts it, with accounts."""
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "MLFLOW_BACKEND_STORE_URI": tracking,
        "MLFLOW_AUTH_DATABASE_URI": accounts,
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(16),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_APP_NAME": app,
        "MLFLOW_PLATFORM_MODEL": "taxi-trip-duration",
        "MLFLOW_STACK_ACCOUNT": ADMIN[0],
    }
    command = ["bash", str(REPO_ROOT / "services/mlflow/start-server.sh"), "--workers=1"]
    if app == "basic-auth":
        # Releases before 3.17 read the admin's password from the ini file only, which the
        # stack's script does not write: the older server gets a file of its own.
        ini = log.parent / "old-basic-auth.ini"
        ini.write_text(
            f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {accounts}\n"
            f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        command = [str(bin_dir / "mlflow"), "server", "--app-name", "basic-auth", "--workers=1"]
    command += ["--serve-artifacts", f"--artifacts-destination={artifacts}"]
    return servers.serve_command_on_free_port(command, env, log, "/health", 180)


@pytest.fixture(scope="module")
def prefect_alone(postgres, workdir):
    """A Prefect server for the training at the end, without the session's MLflow server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    database = "postgresql+asyncpg://" + postgres.create_database(
        f"prefect_upgrade_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    )
    server = servers.start_prefect(database, workdir)
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield server.api_url
    server.stop()


def test_databases_of_an_older_mlflow_are_migrated_and_keep_everything(
    old_mlflow, postgres, prefect_alone, tmp_path, monkeypatch
):
    tracking, accounts = (
        "postgresql+psycopg2://"
        + postgres.create_database(f"old_{kind}_{secrets.token_hex(3)}", "pw")
        for kind in ("tracking", "accounts")
    )
    databases = {"MLFLOW_BACKEND_STORE_URI": tracking, "MLFLOW_AUTH_DATABASE_URI": accounts}
    artifacts = tmp_path / "artifacts"
    alice = secrets.token_urlsafe(12)

    # 1. The older release makes its databases and a team's work.
    url, process = start_server(
        old_mlflow, "basic-auth", tracking, accounts, artifacts, tmp_path / "old.log"
    )
    try:
        made = subprocess.run(
            [str(old_mlflow / "python"), "-c", OLD_WORK],
            env={
                **os.environ,
                "MLFLOW_TRACKING_URI": url,
                "MLFLOW_TRACKING_USERNAME": ADMIN[0],
                "MLFLOW_TRACKING_PASSWORD": ADMIN[1],
                "ALICE_PASSWORD": alice,
            },
            capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
    finally:
        servers.stop_process(process)
    old = json.loads(made.stdout.strip().splitlines()[-1])

    # 2. The installed MLflow refuses the old schema until the stack's job migrates it.
    migrated = subprocess.run(
        [sys.executable, "-m", "infra.mlflow.migrate"],
        env={**os.environ, **databases},
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert "tracking database: " in migrated.stderr and " -> " in migrated.stderr, migrated.stderr
    assert "pw@" not in migrated.stdout + migrated.stderr  # no connection string in the log
    again = subprocess.run(
        [sys.executable, "-m", "infra.mlflow.migrate"],
        env={**os.environ, **databases},
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0 and "nothing to migrate" in again.stderr, again.stderr

    # 3. The installed MLflow, as the stack runs it, serves everything the old one made.
    url, process = start_server(
        Path(sys.executable).parent,
        "stack-registry",
        tracking,
        accounts,
        artifacts,
        tmp_path / "new.log",
    )
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
        import mlflow
        from mlflow import MlflowClient

        mlflow.set_tracking_uri(url)
        client = MlflowClient(url)
        run = client.get_run(old["run"])
        assert run.data.params["n_estimators"] == "40" and run.data.metrics["rmse"] == 5.79
        assert run.info.experiment_id == old["experiment"]
        note = mlflow.artifacts.load_dict(f"runs:/{old['run']}/notes/made.json")
        assert note == {"note": f"made by mlflow {OLD_MLFLOW}"}
        assert (
            client.get_model_version_by_alias("taxi-trip-duration", "champion").version
            == old["version"]
        )
        signed_in = requests.get(
            f"{url}/api/2.0/mlflow/users/get",
            params={"username": "alice"},
            auth=("alice", alice),
            timeout=30,
        )
        assert signed_in.status_code == 200, signed_in.text
        permission = requests.get(
            f"{url}/api/2.0/mlflow/experiments/get",
            params={"experiment_id": old["experiment"]},
            auth=("alice", alice),
            timeout=30,
        )
        assert permission.status_code == 200

        # 4. And the platform trains on it: a new run, a version, a promotion beside the old ones.
        from flows.pipelines.train import train
        from tests.integration.params import QUICK

        for key, value in {
            "MODEL_NAME": "taxi-trip-duration",
            "MLFLOW_EXPERIMENT_NAME": "taxi-trip-duration",
        }.items():
            monkeypatch.setenv(key, value)
        jan, feb = (str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))
        trained = train(train_path=jan, val_path=feb, params=QUICK)
        assert trained.experiment_id == old["experiment"]
        assert int(trained.version) == int(old["version"]) + 1
    finally:
        mlflow.set_tracking_uri(None)
        servers.stop_process(process)
