"""An upgrade from the previous release of this project, with a team's data, as the README's
"Upgrades" says: the stack of the last released commit (built from its own sources, a tag the
repository keeps) trains a champion, scores, makes an account and leaves runs; then `make
upgrade` from this checkout, keeping `.env` and the volumes. After it the champion serves, scores
and is compared in the next promotion, the old account signs in everywhere, the old runs and
alias moves are there, and the next `make train` promotes.

It runs before the shared e2e stack exists (one compose stack at a time) and removes its own,
with the image the old release built.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from infra import make_env
from tests.e2e.compose import MODEL, write_env_file
from tests.paths import REPO_ROOT, TLC_DATA
from tests.servers import free_port

pytestmark = pytest.mark.e2e

# The release before this one: a tag the repository keeps and the commit it names (a clone
# without tags still has the commit). Move both forward at each release, so every landing is
# tested as an upgrade from the one before.
PREVIOUS_RELEASE = ("release-36", "f07465ad3eaa45da85c3b51cc3dec260469bc837")
PROJECT = "taxi-mlops-upgrade"
MONTHS = ("2021-01", "2021-02", "2023-01", "2023-02")
ONE_TRIP = {
    "lpep_pickup_datetime": "2023-02-01 08:00:00",
    "PULocationID": 74,
    "DOLocationID": 75,
    "trip_distance": 1.2,
}


@dataclass
class Checkout:
    """One checkout's make verbs on the upgrade's stack (its settings file is shared)."""

    root: Path
    env_file: Path

    def make(self, target: str, *variables: str) -> str:
        """`make TARGET` in this checkout; its output, or a failure showing its end."""
        result = subprocess.run(
            ["make", "-C", str(self.root), target, f"ENV_FILE={self.env_file}", "STACK=compose",
             *variables],
            text=True, capture_output=True,
        )  # fmt: skip
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"make {target} ({self.root.name}) failed:\n{output[-4000:]}"
        return output


def release_commit() -> str:
    """The previous release's commit: its tag where the clone has it, else the pinned id."""
    tag, commit = PREVIOUS_RELEASE
    found = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", "--quiet", f"{tag}^{{commit}}"],
        capture_output=True, text=True,
    )  # fmt: skip
    if found.returncode == 0:
        assert found.stdout.strip() == commit, f"tag {tag} is not {commit}: move both together"
    return commit


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory) -> Iterator[dict]:
    """The previous release's stack with a team's work in it, then `make upgrade` to this
    checkout; what the team had made before, for the tests to find again."""
    work = tmp_path_factory.mktemp("release-upgrade")
    old = work / "previous"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", release_commit()],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    ports = {name: free_port() for name in ("MLFLOW", "PREFECT", "SERVING", "DATA_PROXY")}
    overrides = {
        "COMPOSE_PROJECT_NAME": PROJECT,
        **{f"{name}_PORT": str(port) for name, port in ports.items()},
        "APP_IMAGE": f"{PROJECT}/app:release",
        "COMPOSE_PROFILES": "minio",
    }
    for name in ("PYTHON_IMAGE", "POSTGRES_IMAGE", "MINIO_IMAGE"):  # the stand-ins, in CI
        if os.environ.get(name):
            overrides[name] = os.environ[name]
    env_file = work / "upgrade.env"
    write_env_file(env_file, make_env.render((old / ".env.example").read_text(), overrides))
    before, after = Checkout(old, env_file), Checkout(REPO_ROOT, env_file)
    compose = ["docker", "compose", "--project-name", PROJECT, "--env-file", str(env_file)]
    old_image = ""
    try:
        before.make("up")
        old_image = image_id(overrides["APP_IMAGE"])
        files = " ".join(str(TLC_DATA / f"green_tripdata_{month}.parquet") for month in MONTHS)
        before.make("upload-data", f"FILES={files}")
        before.make("deploy")
        trained = before.make("train", "TRAIN_MONTH=2021-01", "VAL_MONTH=2021-02")
        assert "champion" in trained, trained[-2000:]
        scored = before.make("score", "MONTH=2021-02")
        created = before.make("user", "NAME=olduser")
        password = re.search(r"shown only now:\s+(\S+)", created)
        assert password, created
        upgrade = after.make("upgrade")
        settings = make_env.read_env(env_file)
        yield {
            "upgrade": upgrade,
            "scored": scored,
            "olduser": ("olduser", password[1]),
            "admin": (settings["MLFLOW_ADMIN_USERNAME"], settings["MLFLOW_ADMIN_PASSWORD"]),
            "urls": {name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
            "after": after,
        }
    finally:
        logs = subprocess.run([*compose, "logs", "--no-color"], capture_output=True, text=True)
        (work / "compose.log").write_text(logs.stdout + logs.stderr)
        subprocess.run([*compose, "down", "--volumes", "--remove-orphans"], capture_output=True)
        subprocess.run(["docker", "image", "rm", f"{PROJECT}/app:release"], capture_output=True)
        if old_image:  # the old release's image, untagged by the upgrade's build
            subprocess.run(["docker", "image", "rm", old_image], capture_output=True)


def image_id(tag: str) -> str:
    """The id of a local image."""
    found = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return found.stdout.strip()


def test_make_upgrade_backs_up_first_and_adds_the_new_settings(upgraded):
    out = upgraded["upgrade"]
    assert "backup written:" in out and "upgraded;" in out, out[-3000:]
    assert out.index("backup written:") < out.index("upgraded;")


def test_the_champion_trained_before_serves_and_scores(upgraded):
    urls, olduser = upgraded["urls"], upgraded["olduser"]
    deadline, answer = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        answer = requests.post(
            f"{urls['SERVING']}/invocations",
            json={"dataframe_records": [ONE_TRIP]},
            auth=olduser,
            timeout=30,
        )
        if answer.status_code == 200:
            break
        time.sleep(2)
    assert answer is not None and answer.status_code == 200, answer.text if answer else None
    assert answer.headers["x-model-version"] == "1"
    health = requests.get(f"{urls['SERVING']}/health", timeout=30).json()
    assert health["status"] == "ok" and health["version"] == "1", health
    # The month it was validated on: a month that drifts would start a retraining (a breach),
    # which would race the next test's training.
    scored = upgraded["after"].make("score", "MONTH=2021-02")
    assert f"{MODEL} version 1 (@champion)" in scored, scored[-2000:]


def test_the_old_account_signs_in_everywhere(upgraded):
    urls, olduser = upgraded["urls"], upgraded["olduser"]
    mlflow = requests.get(
        f"{urls['MLFLOW']}/api/2.0/mlflow/experiments/search",
        params={"max_results": 5},
        auth=olduser,
        timeout=30,
    )
    assert mlflow.status_code == 200, mlflow.text
    who = requests.get(f"{urls['PREFECT']}/gateway/whoami", auth=olduser, timeout=30)
    assert who.status_code == 200 and who.json()["role"] == "teammate", who.text
    data = requests.get(f"{urls['DATA_PROXY']}/api/2.0/mlflow-artifacts/artifacts",
                        params={"path": "tlc/green"}, auth=olduser, timeout=30)  # fmt: skip
    assert data.status_code == 200, data.text


def test_old_runs_and_alias_moves_are_there(upgraded):
    urls, admin = upgraded["urls"], upgraded["admin"]
    runs = requests.post(
        f"{urls['PREFECT']}/api/flow_runs/filter",
        json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 50},
        auth=admin,
        timeout=30,
    )
    assert runs.status_code == 200, runs.text
    names = {run["name"] for run in runs.json()}
    assert len(names) >= 3, names  # the training, its promotion and the scoring
    history = upgraded["after"].make("history")
    assert re.search(r"champion\s+- -> 1\s", history), history[-2000:]


def test_the_next_training_is_compared_with_the_old_champion_and_promotes(upgraded):
    out = upgraded["after"].make("train", "TRAIN_MONTH=2023-01", "VAL_MONTH=2023-02")
    assert re.search(rf"model:\s+{MODEL} version 2\b", out), out[-3000:]
    assert re.search(r"champion:\s+yes \(rmse [0-9.]+ < champion.s", out), out[-3000:]
    history = upgraded["after"].make("history", "LIMIT=5")
    assert re.search(r"champion\s+1 -> 2\s", history), history[-2000:]
