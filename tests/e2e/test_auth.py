"""A stack a team can share: every API asks who you are, and teammates get their own accounts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

from tests.e2e.compose import CONTAINER_SCRIPTS

pytestmark = pytest.mark.e2e


def status(method: str, url: str, **kwargs) -> int:
    return requests.request(method, url, timeout=10, **kwargs).status_code


def test_mlflow_api_and_artifact_proxy_need_a_password(stack):
    env = stack.env()
    admin = (env["MLFLOW_ADMIN_USERNAME"], env["MLFLOW_ADMIN_PASSWORD"])
    search = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    artifacts = f"{stack.mlflow_url}/api/2.0/mlflow-artifacts/artifacts?path=0"
    for url in (search, artifacts):
        assert status("GET", url) == 401
        assert status("GET", url, auth=(admin[0], "wrong-password")) == 401
        assert status("GET", url, auth=admin) == 200


def test_prefect_api_needs_an_account(stack):
    url = f"{stack.prefect_api_url}/flows/filter"
    assert status("POST", url, json={}) == 401
    assert status("POST", url, json={}, auth=(stack.prefect_auth[0], "wrong")) == 401
    assert status("POST", url, json={}, auth=stack.prefect_auth) == 200


def auth_cache_ttl(stack) -> int:
    """Seconds MLflow's server workers cache a good password (MLFLOW_AUTH_CACHE_TTL_SECONDS)."""
    return int(stack.env()["MLFLOW_AUTH_CACHE_TTL_SECONDS"])


def answers(stack, user: str, password: str, times: int = 12) -> set[int]:
    """Status codes of ``times`` searches as ``user``, each on a new connection (so any of the
    server's workers may answer)."""
    url = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    return {status("GET", url, auth=(user, password)) for _ in range(times)}


def seconds_until_refused(stack, user: str, password: str, limit_s: float) -> float:
    """Poll until every request with these credentials gets 401; fail after ``limit_s``."""
    started = time.monotonic()
    while answers(stack, user, password, times=6) != {401}:
        assert time.monotonic() - started < limit_s, f"{user}'s old credentials work {limit_s}s on"
        time.sleep(1)
    return time.monotonic() - started


def create_user(stack, name: str) -> str:
    """`make user NAME=...`; returns the password it printed once."""
    out = stack.make("user", f"NAME={name}").stdout
    return re.search(r"shown only now:\s+(\S+)", out).group(1)


def test_teammates_work_with_their_own_accounts(stack, monkeypatch, tmp_path):
    """A teammate with only the URL and a password logs a >100 MB artifact and a model."""
    alice, bob = create_user(stack, "alice"), create_user(stack, "bob")
    stack.use_mlflow_as(monkeypatch, "alice", alice)
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        for _ in range(105):
            out.write(os.urandom(1024 * 1024))
    mlflow.set_experiment("alice-experiment")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big))
        mlflow.pyfunc.log_model(name="model", python_model=Echo())
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "alice-model")
    assert version.version == "1"
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="big.bin", dst_path=str(tmp_path / "back")
    )
    assert Path(back).stat().st_size == big.stat().st_size
    assert Path(back).read_bytes()[-4096:] == big.read_bytes()[-4096:]
    loaded = mlflow.pyfunc.load_model(f"models:/alice-model/{version.version}")
    assert list(loaded.predict([1, 2])) == [1, 2]
    experiment_id = run.info.experiment_id

    stack.use_mlflow_as(monkeypatch, "bob", bob)
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
        MlflowClient().delete_experiment(experiment_id)
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
        MlflowClient().create_run(experiment_id)
    stack.make("grant", "NAME=bob", "EXPERIMENT=alice-experiment", "PERMISSION=EDIT")
    assert MlflowClient().create_run(experiment_id).info.experiment_id == experiment_id

    stack.make("user-delete", "NAME=alice")
    # Refused at once by the server worker that deleted it, by the others within the cache's TTL.
    seconds_until_refused(stack, "alice", alice, auth_cache_ttl(stack) + 10)


class Echo(mlflow.pyfunc.PythonModel):
    """The smallest model: returns its input."""

    def predict(self, context, model_input):
        return model_input


def test_teammate_in_another_container_follows_the_readme(stack):
    """The README's teammate steps, from a container outside the stack's network."""
    password = create_user(stack, "carol")
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "bridge",
            "-e",
            f"MLFLOW_TRACKING_URI={stack.mlflow_url}",
            "-e",
            "MLFLOW_TRACKING_USERNAME=carol",
            "-e",
            f"MLFLOW_TRACKING_PASSWORD={password}",
            "-v",
            f"{CONTAINER_SCRIPTS / 'teammate.py'}:/teammate.py:ro",
            stack.env()["APP_IMAGE"],
            "python",
            "/teammate.py",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"same_bytes": True, "version": "1", "predictions": 4}


def test_worker_holds_no_database_or_admin_secret(stack):
    env = stack.env()
    worker_env = stack.compose("exec", "-T", "worker", "env").stdout
    for name in (
        "POSTGRES_PASSWORD",
        "MLFLOW_DB_PASSWORD",
        "PREFECT_DB_PASSWORD",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_SECRET_KEY",
    ):
        assert env[name] not in worker_env, name


def test_no_secret_appears_in_the_logs(stack):
    env = stack.env()
    logs = stack.compose("logs", "--no-color").stdout
    secrets_ = [env[k] for k in env if k.endswith(("PASSWORD", "SECRET_KEY", "SECRET_ACCESS_KEY"))]
    secrets_.append(env["PREFECT_API_AUTH_STRING"].split(":", 1)[1])
    assert len(secrets_) >= 7
    for secret in secrets_:
        assert secret not in logs


def test_auth_cache_forgets_old_passwords_and_deleted_accounts_within_its_ttl(stack, monkeypatch):
    """MLflow caches good passwords per server worker for MLFLOW_AUTH_CACHE_TTL_SECONDS: that
    must bound how long a changed password or a deleted account keeps working, and a wrong
    password must never pass, cached right one or not."""
    ttl = auth_cache_ttl(stack)
    first = create_user(stack, "dave")
    assert answers(stack, "dave", first) == {200}  # now cached in the workers that answered
    assert answers(stack, "dave", "wrong-password") == {401}
    assert answers(stack, "dave", first) == {200}  # a refused attempt disturbed nothing

    stack.use_mlflow_as_admin(monkeypatch)
    second = "changed-" + first
    get_app_client("basic-auth", tracking_uri=stack.mlflow_url).update_user_password("dave", second)
    assert answers(stack, "dave", second) == {200}  # the new password works at once, everywhere
    forgotten_after = seconds_until_refused(stack, "dave", first, ttl + 10)

    stack.make("user-delete", "NAME=dave")
    deleted_after = seconds_until_refused(stack, "dave", second, ttl + 10)
    print(
        f"\nauth cache (TTL {ttl}s): old password refused {forgotten_after:.0f}s after the "
        f"change, deleted account refused {deleted_after:.0f}s after deletion"
    )
