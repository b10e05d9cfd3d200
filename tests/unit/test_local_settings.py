"""`make local`'s settings: which store and databases a configuration selects, and its env files."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from honcho.environ import parse

from infra.local import stack


def test_defaults_keep_everything_in_the_data_directory(tmp_path):
    local = stack.stack_from_env({"LOCAL_DIR": str(tmp_path)})
    settings = stack.services_settings(local, {})
    assert settings["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{tmp_path}/mlflow.db"
    assert settings["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
        f"sqlite+aiosqlite:///{tmp_path}/"
    )
    assert settings["MLFLOW_ARTIFACTS_DESTINATION"] == str(tmp_path / "artifacts")
    assert settings["DATA_DIR"] == str(tmp_path / "data")
    assert "DATA_BUCKET" not in settings and "AWS_ACCESS_KEY_ID" not in settings
    assert settings["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert settings["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"


def test_s3_and_databases_replace_the_local_defaults(tmp_path):
    env = {
        "LOCAL_DIR": str(tmp_path),
        "MLFLOW_PORT": "5100",
        "MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://u:p@db/mlflow",
        "S3_ENDPOINT_URL": "http://s3.internal:9000",
        "S3_ACCESS_KEY_ID": "key",
        "S3_SECRET_ACCESS_KEY": "secret",
        "DATA_BUCKET": "trips",
    }
    local = stack.stack_from_env(env)
    settings = stack.services_settings(local, env)
    assert settings["MLFLOW_BACKEND_STORE_URI"] == env["MLFLOW_BACKEND_STORE_URI"]
    assert settings["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow-artifacts"
    assert settings["DATA_BUCKET"] == "trips" and "DATA_DIR" not in settings
    assert (settings["AWS_ACCESS_KEY_ID"], settings["AWS_SECRET_ACCESS_KEY"]) == ("key", "secret")
    assert settings["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5100"
    # What the make targets read has no database URL in it.
    client = stack.client_settings(local, env)
    assert not any("postgresql" in value for value in client.values())


def test_env_file_reads_the_same_in_honcho_and_the_shell(tmp_path):
    values = {"PLAIN": "abc", "URL": "postgresql://u:p@h:5/db?x=1&y=2", "ODD": "it's a $HOME `x`"}
    path = tmp_path / "services.env"
    stack.write_env_file(path, values)
    assert path.stat().st_mode & 0o077 == 0  # private: it may hold database passwords
    assert parse(path.read_text()) == values
    script = f"set -a; . {path}; set +a; " + "; ".join(f'printf "%s\\n" "${k}"' for k in values)
    shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert shell.stdout.splitlines() == list(values.values())


def test_alive_counts_running_processes_but_not_exited_ones():
    running = subprocess.Popen(["sleep", "30"])
    exited = subprocess.Popen(["true"])
    try:
        assert stack.alive(running.pid)
        # `exited` ends at once but stays a zombie until waited for: it must not count.
        deadline = time.monotonic() + 5
        while stack.alive(exited.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Path(f"/proc/{exited.pid}").exists() and not stack.alive(exited.pid)
    finally:
        running.kill()
        running.wait()
        exited.wait()


def test_a_taken_port_is_detected_whatever_answers_on_it():
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert stack.port_in_use(port)  # not HTTP at all, still taken
    assert not stack.port_in_use(port)
