"""Only versions the stack trained or approved load, and each predicts with its own code: the
stack's record of a version (flows/logic/provenance.py) against real MLflow, S3 and model server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from platform_names import CHALLENGER, CHAMPION, RECORD_TAG
from prefect.exceptions import FailedRun

from flows.errors import UntrustedVersion
from flows.logic.provenance import Record
from flows.pipelines.promote import promote
from flows.pipelines.score import score
from flows.pipelines.train import train
from flows.resources.registry import load_version, promotion_record, record_version
from tests import servers
from tests.integration.params import QUICK
from tests.paths import REPO_ROOT, TLC_DATA

pytestmark = pytest.mark.integration

JAN, FEB = (str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))
AUTH = ("teammate", "password")  # the test MLflow server has no accounts


@dataclass(frozen=True)
class Platform:
    """The module's model: one trained, promoted version, and where MLflow keeps artifacts."""

    name: str
    champion: str
    bucket: str
    s3: servers.S3Server


@pytest.fixture(scope="module")
def platform(prefect_server, mlflow_server, s3) -> Iterator[Platform]:
    """One champion trained for the whole module (training is most of a test's time)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    name = f"test-{uuid.uuid4().hex[:10]}"
    bucket = f"data-{name}"
    s3.client().create_bucket(Bucket=bucket)
    with (
        pytest.MonkeyPatch.context() as env,
        temporary_settings({PREFECT_API_URL: prefect_server.api_url}),
    ):
        for key, value in s3.env().items():
            if key != "MLFLOW_S3_ENDPOINT_URL":
                env.setenv(key, value)
        for key, value in {
            "DATA_BUCKET": bucket,
            "MODEL_NAME": name,
            "MLFLOW_EXPERIMENT_NAME": name,
            "MLFLOW_TRACKING_URI": mlflow_server.url,
        }.items():
            env.setenv(key, value)
        mlflow.set_tracking_uri(mlflow_server.url)
        trained = train(train_path=JAN, val_path=FEB, params=QUICK, promote=True)
        assert trained.promotion and trained.promotion.promoted
        yield Platform(name, trained.version, mlflow_server.bucket, s3)
        mlflow.set_tracking_uri(None)


def records(count: int) -> pd.DataFrame:
    """Raw February records as a client sends them."""
    raw = pd.read_parquet(FEB).head(count)
    return raw[["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]]


def copy_of(
    platform: Platform,
    tmp_path: Path,
    experiment: str | None = None,
    change: Callable[[Path], None] | None = None,
    recorded: bool = True,
) -> str:
    """A new version of the model with the champion's files, logged in ``experiment`` (the
    training one by default) and recorded by the stack; then ``change`` applied to its files
    where MLflow keeps them (as a writer of the artifact store could)."""
    client = MlflowClient()
    files = Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{platform.name}/{platform.champion}", dst_path=str(tmp_path / "files")
        )
    )
    (files / "registered_model_meta").unlink(missing_ok=True)
    mlflow.set_experiment(experiment or platform.name)
    trained = client.get_run(client.get_model_version(platform.name, platform.champion).run_id)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(files), "model")
        mlflow.log_params(trained.data.params)  # what promotion reads of a training run
        mlflow.log_metrics(trained.data.metrics)
    version = str(mlflow.register_model(f"runs:/{run.info.run_id}/model", platform.name).version)
    if recorded:
        assert record_version(client, platform.name, version)
    if change is not None:
        change(files)
        prefix = run.info.artifact_uri.split(":/", 1)[1].lstrip("/")
        s3 = platform.s3.client()  # the artifact store itself: the test holds its key
        for path in files.rglob("*"):
            if path.is_file():
                key = f"{prefix}/model/{path.relative_to(files).as_posix()}"
                s3.upload_file(str(path), platform.bucket, key)
    return version


def with_features_changed(files: Path) -> None:
    """The feature code of the version's code/ rewritten (every pickup at midnight)."""
    features = files / "code/flows/features.py"
    features.write_text(
        features.read_text()
        + "\n\ndef pickup_hour(pickup):\n    return (pickup.dt.hour * 0).astype('float64')\n"
    )


def with_loader_changed(files: Path) -> None:
    """The MLmodel pointed at another loader module."""
    mlmodel = files / "MLmodel"
    mlmodel.write_text(
        mlmodel.read_text().replace("loader_module: mlflow.xgboost", "loader_module: evil")
    )


def test_a_trained_version_carries_the_stacks_record_of_every_file(platform):
    tags = MlflowClient().get_model_version(platform.name, platform.champion).tags
    record = Record.from_tag(tags[RECORD_TAG], platform.name, platform.champion)
    assert record.approved_by == "training"
    assert {"MLmodel", "model.ubj", "code/flows/model.py", "code/flows/features.py"} <= set(
        record.files
    )
    assert all(len(digest) == 64 for digest in record.files.values())


def test_a_version_predicts_with_its_own_code_whatever_the_platforms_code(platform, monkeypatch):
    import flows.features

    batch = records(50)
    pinned, _ = load_version(platform.name, platform.champion)
    before = pinned.predict(batch)
    # The platform's feature code changes (as an upgrade of the image would change it).
    monkeypatch.setattr(flows.features, "pickup_hour", lambda pickup: pickup.dt.hour * 0.0)
    np.testing.assert_allclose(pinned.predict(batch), before)
    np.testing.assert_allclose(
        load_version(platform.name, platform.champion)[0].predict(batch), before
    )
    # Loading as MLflow does in this process would follow the platform's code: what the
    # pinned load protects from.
    unpinned = mlflow.pyfunc.load_model(f"models:/{platform.name}/{platform.champion}")
    assert not np.allclose(unpinned.predict(batch), before)
    # A notebook (a fresh process without this repository) gets the same numbers.
    notebook = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, json, mlflow, pandas as pd; "
            f"m = mlflow.pyfunc.load_model('models:/{platform.name}/{platform.champion}'); "
            "b = pd.read_json(sys.stdin, orient='split'); "
            "print(json.dumps(m.predict(b).tolist()))",
        ],
        input=batch.to_json(orient="split", date_format="iso"),
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "PYTHONPATH": ""},
        check=True,
    )
    np.testing.assert_allclose(json.loads(notebook.stdout), before, rtol=1e-6)


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (with_features_changed, "code/flows/features.py changed"),
        (with_loader_changed, "MLmodel changed"),
    ],
    ids=["one-file-changed", "loader-changed"],
)
def test_a_version_changed_after_its_record_is_refused(platform, tmp_path, change, refusal):
    version = copy_of(platform, tmp_path, change=change)
    with pytest.raises(UntrustedVersion, match=refusal):
        load_version(platform.name, version)
    with pytest.raises(UntrustedVersion, match=refusal):
        load_version(platform.name, version, approve=False)


def test_a_version_from_a_teammates_own_run_is_refused(platform, tmp_path):
    version = copy_of(platform, tmp_path, experiment=f"{platform.name}-notebook", recorded=False)
    with pytest.raises(UntrustedVersion, match="not the training experiment"):
        load_version(platform.name, version)
    with pytest.raises(UntrustedVersion, match="no record"):
        load_version(platform.name, version, approve=False)  # the model server's way


def test_a_record_copied_from_another_version_is_refused(platform, tmp_path):
    client = MlflowClient()
    version = copy_of(platform, tmp_path, recorded=False)
    champion_record = client.get_model_version(platform.name, platform.champion).tags[RECORD_TAG]
    client.set_model_version_tag(platform.name, version, RECORD_TAG, champion_record)
    with pytest.raises(UntrustedVersion, match=f"its record is of {platform.name} version"):
        load_version(platform.name, version)


def test_a_version_approved_on_first_load_is_recorded_once(platform, tmp_path):
    client = MlflowClient()
    version = copy_of(platform, tmp_path, recorded=False)  # as a worker elsewhere registers
    load_version(platform.name, version)
    record = Record.from_tag(
        client.get_model_version(platform.name, version).tags[RECORD_TAG], platform.name, version
    )
    assert record.approved_by == "loading"


def test_scoring_and_promotion_refuse_a_tampered_challenger(platform, tmp_path):
    client = MlflowClient()
    version = copy_of(platform, tmp_path, change=with_features_changed)
    client.set_registered_model_alias(platform.name, CHALLENGER, version)
    with pytest.raises(FailedRun, match="refused, so nothing was scored: .*features.py changed"):
        score(path=FEB, alias=CHALLENGER)
    with pytest.raises(UntrustedVersion, match="features.py changed"):
        promote()
    assert client.get_model_version_by_alias(platform.name, CHAMPION).version == platform.champion
    client.delete_registered_model_alias(platform.name, CHALLENGER)


def test_a_refused_champion_stops_neither_promotion_nor_the_team(platform, tmp_path):
    """A champion whose files changed (an admin's mistake) is not compared: the challenger stays
    registered, and promotion and scoring say why in one line, with what to do."""
    client = MlflowClient()
    tampered = copy_of(platform, tmp_path, change=with_features_changed)
    challenger = copy_of(platform, tmp_path / "challenger")
    client.set_registered_model_alias(platform.name, CHAMPION, tampered)
    client.set_registered_model_alias(platform.name, CHALLENGER, challenger)
    try:
        decision = promote()
        with pytest.raises(FailedRun) as scoring:
            score(path=FEB)
        kept = client.get_model_version(platform.name, challenger)
        aliases = {
            alias: client.get_model_version_by_alias(platform.name, alias).version
            for alias in (CHAMPION, CHALLENGER)
        }
    finally:
        client.set_registered_model_alias(platform.name, CHAMPION, platform.champion)
        client.delete_registered_model_alias(platform.name, CHALLENGER)
    assert not decision.promoted
    assert decision.reason.startswith(f"{platform.name} v{tampered} (@champion) is refused")
    assert f"v{challenger} was not compared with it and stays challenger" in decision.reason
    assert "features.py changed" in decision.reason and "make rollback" in decision.reason
    assert "\n" not in decision.reason
    assert aliases == {CHAMPION: tampered, CHALLENGER: challenger}
    assert promotion_record(kept)["failed"] == "champion_refused"
    line = str(scoring.value)
    assert "refused, so nothing was scored" in line and "make rollback" in line
    assert "\n" not in line


def test_the_model_server_keeps_answering_and_says_why_it_refused(platform, tmp_path):
    port = servers.free_port()
    env = {
        **os.environ,
        "MODEL_NAME": platform.name,
        "SERVING_POLL_SECONDS": "1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    process = servers.start_logged(
        [sys.executable, "-m", "services.serving", "--port", str(port)], env, tmp_path / "log"
    )
    url = f"http://127.0.0.1:{port}"
    client = MlflowClient()
    try:
        servers.wait_for_http(f"{url}/ping", 120, lambda: process.poll() is None)
        health = wait_for(
            lambda: requests.get(f"{url}/health", timeout=5).json(),
            lambda h: h["version"] == platform.champion,
        )
        assert health["status"] == "ok"
        tampered = copy_of(platform, tmp_path, change=with_loader_changed)
        client.set_registered_model_alias(platform.name, CHAMPION, tampered)
        health = wait_for(
            lambda: requests.get(f"{url}/health", timeout=5).json(),
            lambda h: h["status"] == "refused",
        )
        assert health["version"] == platform.champion
        assert health["refused"]["version"] == tampered
        assert "MLmodel changed" in health["refused"]["reason"]
        split = records(3).astype({"lpep_pickup_datetime": str}).to_dict(orient="split")
        split.pop("index")
        answer = requests.post(
            f"{url}/invocations", json={"dataframe_split": split}, auth=AUTH, timeout=30
        )
        assert answer.status_code == 200 and answer.headers["x-model-version"] == platform.champion
        client.set_registered_model_alias(platform.name, CHAMPION, platform.champion)
        back = wait_for(
            lambda: requests.get(f"{url}/health", timeout=5).json(),
            lambda h: h["status"] == "ok",
        )
        assert back == {**back, "status": "ok", "version": platform.champion}
        assert "refused" not in back
    finally:
        client.set_registered_model_alias(platform.name, CHAMPION, platform.champion)
        servers.stop_process(process)


def wait_for(read: Callable[[], dict], done: Callable[[dict], bool], timeout_s: float = 60) -> dict:
    """``read()`` again until ``done`` holds for its value (the last value either way)."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.5)
        value = read()
    return value


def code_of_an_earlier_release() -> dict[str, bytes]:
    """The model modules as the commit before their latest change had them (an earlier release,
    whose versions carry other code than this checkout's)."""
    from flows.logic.provenance import MODEL_MODULES

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, check=True
        ).stdout

    paths = [f"flows/{module}" for module in MODEL_MODULES]
    latest = git("log", "-1", "--format=%H", "--", *paths).decode().strip()
    return {path: git("show", f"{latest}^:{path}") for path in paths}


def test_versions_trained_before_records_are_adopted_once_and_others_stay_refused(
    platform, tmp_path
):
    """An upgrade from a release without records (`make up` runs the adoption): a version of the
    platform's released code is recorded, with the reason, and loads; one with any other code
    is named and left refused; a second adoption changes nothing."""
    from platform_names import ADOPTION_REFUSED_TAG

    from flows.logic.provenance import ADOPTED
    from flows.resources.registry import adopt_versions

    earlier = code_of_an_earlier_release()

    def with_earlier_code(files: Path) -> None:
        for path, content in earlier.items():
            (files / "code" / path).write_bytes(content)

    client = MlflowClient()
    before_records = copy_of(platform, tmp_path / "old", change=with_earlier_code, recorded=False)
    foreign = copy_of(platform, tmp_path / "foreign", change=with_features_changed, recorded=False)
    client.set_registered_model_alias(platform.name, CHALLENGER, before_records)
    try:
        outcomes = dict(adopt_versions(client, platform.name))
        again = dict(adopt_versions(client, platform.name))
        adopted = client.get_model_version(platform.name, before_records)
        model, _ = load_version(platform.name, before_records, approve=False)
    finally:
        client.delete_registered_model_alias(platform.name, CHALLENGER)
    assert outcomes[before_records] == "adopted"
    assert Record.from_tag(adopted.tags[RECORD_TAG], platform.name, before_records).approved_by == (
        ADOPTED
    )
    assert outcomes[foreign].startswith("not adopted: code/flows/features.py is not code")
    refused = client.get_model_version(platform.name, foreign)
    assert RECORD_TAG not in refused.tags and ADOPTION_REFUSED_TAG in refused.tags
    with pytest.raises(UntrustedVersion, match="no record"):
        load_version(platform.name, foreign, approve=False)
    assert before_records not in again and foreign not in again
    assert len(model.predict(records(5))) == 5
