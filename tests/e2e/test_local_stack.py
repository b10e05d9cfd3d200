"""`make local`: the platform as local processes, driven through the Makefile as a user would."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from infra.local.stack import LocalStack, stack_from_env
from tests.paths import REPO_ROOT, TLC_DATA
from tests.servers import free_port

pytestmark = pytest.mark.e2e

MODEL = "taxi-trip-duration"
# Settings a developer's shell may hold that must not leak into the stack under test.
FOREIGN_PREFIXES = ("MLFLOW_", "PREFECT_", "AWS_", "S3_", "DATA_")


@dataclass
class LocalRun:
    """Runs Makefile targets against one local stack."""

    env: dict[str, str]
    where: LocalStack  # its data directory and URLs, derived as `make local` derives them

    def make(self, target: str, *variables: str, check: bool = True) -> str:
        """``make target`` with this stack's settings; return its output."""
        result = subprocess.run(
            ["make", target, *variables],
            cwd=REPO_ROOT,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=600,
        )
        output = result.stdout + result.stderr
        if check:
            assert result.returncode == 0, f"make {target} failed:\n{output[-4000:]}"
        return output

    def champion(self) -> tuple[str, float]:
        """The champion's version and its run's rmse, read from the stack's registry."""
        url = self.where.mlflow_url
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        version = client.get_model_version_by_alias(MODEL, "champion")
        return version.version, client.get_run(version.run_id).data.metrics["rmse"]


def local_run(tmp_path: Path, **settings: str) -> LocalRun:
    """A clean environment naming a fresh data directory and free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    data_dir = tmp_path / "local"
    env |= {
        "LOCAL_DIR": str(data_dir),
        "MLFLOW_PORT": str(free_port()),
        "PREFECT_PORT": str(free_port()),
        **settings,
    }
    return LocalRun(env=env, where=stack_from_env(env))


@pytest.fixture
def started() -> Iterator[list[LocalRun]]:
    """Stops every stack a test started, whatever happened."""
    stacks: list[LocalRun] = []
    yield stacks
    for stack in stacks:
        stack.make("local-down", check=False)


def start(stack: LocalRun, started: list[LocalRun]) -> None:
    """``make local`` and record it for teardown."""
    started.append(stack)
    stack.make("local")


def assert_stopped(stack: LocalRun) -> None:
    """Neither server answers any more."""
    for url in (f"{stack.where.mlflow_url}/health", f"{stack.where.prefect_api_url}/health"):
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=2)


def test_local_stack_on_sqlite_trains_a_champion_and_keeps_it(tmp_path, tlc_site, started):
    """Defaults: SQLite and folders under LOCAL_DIR; months fetched from the TLC site."""
    base_url, _ = tlc_site
    stack = local_run(tmp_path, TLC_BASE_URL=base_url)
    start(stack, started)
    stack.make("deploy")
    output = stack.make("train", "TRAIN_MONTH=2021-01", "VAL_MONTH=2021-02")
    assert "champion:   yes" in output, output

    version, rmse = stack.champion()
    assert version == "1" and 5.0 < rmse < 6.1
    # The months were fetched into the data folder, the model into the artifact folder.
    stored = sorted(p.name for p in (stack.where.data_dir / "data" / "tlc" / "green").iterdir())
    assert stored == ["green_tripdata_2021-01.parquet", "green_tripdata_2021-02.parquet"]
    assert list((stack.where.data_dir / "artifacts").rglob("MLmodel"))
    assert (stack.where.data_dir / "mlflow.db").is_file()
    assert (stack.where.data_dir / "prefect" / "prefect.db").is_file()

    stack.make("local-down")
    assert_stopped(stack)
    # Data stays: the next start serves the same registry.
    stack.make("local")
    assert stack.champion() == (version, rmse)


def test_local_stack_on_postgres_and_s3(tmp_path, postgres, s3, started):
    """DATABASE_URL-style settings and an S3 endpoint: the same processes use them instead."""
    mlflow_db = postgres.create_database("local_mlflow", secrets.token_urlsafe(16))
    prefect_db = postgres.create_database("local_prefect", secrets.token_urlsafe(16))
    stack = local_run(
        tmp_path,
        MLFLOW_BACKEND_STORE_URI=f"postgresql+psycopg2://{mlflow_db}",
        PREFECT_API_DATABASE_CONNECTION_URL=f"postgresql+asyncpg://{prefect_db}",
        S3_ENDPOINT_URL=s3.endpoint_url,
        S3_ACCESS_KEY_ID=s3.access_key_id,
        S3_SECRET_ACCESS_KEY=s3.secret_access_key,
        MLFLOW_ARTIFACT_BUCKET="local-artifacts",
        DATA_BUCKET="local-data",
        TLC_BASE_URL="http://127.0.0.1:9/unreachable",  # every month must come from upload-data
    )
    start(stack, started)
    files = " ".join(str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))
    stack.make("upload-data", f"FILES={files}")
    stack.make("deploy")
    output = stack.make("train", "TRAIN_MONTH=2021-01", "VAL_MONTH=2021-02")
    assert "champion:   yes" in output, output

    version, rmse = stack.champion()
    assert version == "1" and 5.0 < rmse < 6.1
    bucket = s3.client()
    data_keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="local-data")["Contents"]]
    assert sorted(data_keys) == [
        "tlc/green/green_tripdata_2021-01.parquet",
        "tlc/green/green_tripdata_2021-02.parquet",
    ]
    artifact_keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="local-artifacts")["Contents"]]
    assert any(key.endswith("/MLmodel") for key in artifact_keys)
    # Nothing went to SQLite or the local folders.
    assert not (stack.where.data_dir / "mlflow.db").exists()
    assert not (stack.where.data_dir / "prefect" / "prefect.db").exists()
    assert not any((stack.where.data_dir / "artifacts").iterdir())
    with postgres.connect("local_mlflow") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM registered_models WHERE name = %s", (MODEL,))
        assert cur.fetchone()[0] == 1

    stack.make("local-down")
    assert_stopped(stack)
