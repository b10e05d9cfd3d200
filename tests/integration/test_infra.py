"""The init jobs of the stack against real servers: database roles and buckets."""

from __future__ import annotations

import os
import secrets
import subprocess

import psycopg2
import pytest

from infra.minio import create_buckets
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.integration


def test_create_buckets_is_idempotent(s3, monkeypatch):
    """A second run finds the buckets and changes nothing."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    names = [f"art-{secrets.token_hex(4)}", f"data-{secrets.token_hex(4)}"]
    assert create_buckets.main(names) == 0
    assert create_buckets.main(names) == 0
    existing = {b["Name"] for b in s3.client().list_buckets()["Buckets"]}
    assert set(names) <= existing
    assert create_buckets.ensure_bucket(s3.client(), names[0]) is False


def test_create_buckets_reports_unreachable_endpoint(monkeypatch, capsys):
    """An S3 endpoint that never answers ends the job with a message naming it."""
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    assert create_buckets.main(["b"], timeout_s=0) == 1
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_init_databases_gives_each_service_its_own_database(postgres):
    """The postgres init script: one owner per database, and no way into the other's."""
    suffix = secrets.token_hex(3)
    users = {
        f"mlflow_{suffix}": secrets.token_urlsafe(16) + "'\"$",  # quoting must hold
        f"prefect_{suffix}": secrets.token_urlsafe(16),
    }
    (ml_user, ml_pw), (pf_user, pf_pw) = users.items()
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres.port),
        "PGUSER": "postgres",
        "PGPASSWORD": postgres.password,
        "MLFLOW_DB_USER": ml_user,
        "MLFLOW_DB_PASSWORD": ml_pw,
        "PREFECT_DB_USER": pf_user,
        "PREFECT_DB_PASSWORD": pf_pw,
        "GATEWAY_DB_USER": f"gateway_{suffix}",
        "GATEWAY_DB_PASSWORD": secrets.token_urlsafe(16),
    }
    script = ["bash", str(REPO_ROOT / "infra/postgres/init-databases.sh")]
    subprocess.run(script, env=env, check=True, capture_output=True)

    def connect(user: str, password: str, dbname: str):
        return psycopg2.connect(
            host="127.0.0.1", port=postgres.port, user=user, password=password, dbname=dbname
        )

    connect(ml_user, ml_pw, ml_user).close()
    connect(ml_user, ml_pw, f"{ml_user}_auth").close()
    connect(pf_user, pf_pw, pf_user).close()
    with pytest.raises(psycopg2.OperationalError, match="permission denied"):
        connect(ml_user, ml_pw, pf_user)

    # Every `make up` runs it again: nothing fails, and a changed password in .env takes effect.
    new_pw = secrets.token_urlsafe(16)
    subprocess.run(
        script, env={**env, "MLFLOW_DB_PASSWORD": new_pw}, check=True, capture_output=True
    )
    connect(ml_user, new_pw, ml_user).close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        connect(ml_user, ml_pw, ml_user)

    # A .env whose superuser password is not the volume's: the job says what to do.
    refused = subprocess.run(
        script, env={**env, "PGPASSWORD": "not-the-volumes"}, capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert "made with another POSTGRES_PASSWORD" in refused.stderr
    assert "make clean" in refused.stderr
