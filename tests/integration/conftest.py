"""Fixtures of the integration tests that run flows in this process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from platform_names import CHAMPION

from tests.paths import TLC_DATA

JAN, FEB = (str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))


@pytest.fixture
def flow_env(prefect_api, tracking, s3, unique_name, monkeypatch):
    """Settings a worker would have: tracking URI, data bucket, names unique to the test."""
    bucket = f"data-{unique_name}"
    s3.client().create_bucket(Bucket=bucket)
    for key, value in s3.env().items():
        if key != "MLFLOW_S3_ENDPOINT_URL":
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DATA_BUCKET", bucket)
    monkeypatch.setenv("MODEL_NAME", unique_name)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", unique_name)
    # Latency is timed on a machine the other test process shares: a decision by rmse must not
    # depend on how busy it is. The test of the latency budget sets its own.
    monkeypatch.setenv("PROMOTION_MAX_P95_LATENCY_MS", "60000")
    return unique_name


@dataclass(frozen=True)
class TrainedFiles:
    """One training's files (the model, its run's artifacts) and numbers, kept on disk."""

    model: Path
    artifacts: Path
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass(frozen=True)
class Registered:
    """A version registered for a test: what tests read of a TrainResult."""

    version: str
    run_id: str


def train_once(platform_servers, s3, keep: Path, params: dict) -> TrainedFiles:
    """One training (green 2021-01 -> 2021-02), its model and run's files kept on disk."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipelines.train import train

    mlflow_server, prefect_server = platform_servers
    name = f"trained-once-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=f"data-{name}")
    settings = {PREFECT_API_URL: prefect_server.api_url}
    with pytest.MonkeyPatch.context() as env, temporary_settings(settings):
        for key, value in {**s3.env(), "DATA_BUCKET": f"data-{name}", "MODEL_NAME": name}.items():
            if key != "MLFLOW_S3_ENDPOINT_URL":
                env.setenv(key, value)
        env.setenv("MLFLOW_EXPERIMENT_NAME", name)
        env.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        mlflow.set_tracking_uri(mlflow_server.url)
        try:
            trained = train(train_path=JAN, val_path=FEB, params=params)
            run = MlflowClient().get_run(trained.run_id)
            model = Path(
                mlflow.artifacts.download_artifacts(trained.model_uri, dst_path=str(keep / "model"))
            )
            (model / "registered_model_meta").unlink(missing_ok=True)
            artifacts = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=trained.run_id, dst_path=str(keep / "run")
                )
            )
        finally:
            mlflow.set_tracking_uri(None)
    return TrainedFiles(model, artifacts, dict(run.data.params), dict(run.data.metrics))


@pytest.fixture(scope="session")
def trained_once(platform_servers, s3, tmp_path_factory) -> TrainedFiles:
    """One QUICK training per test process, its files kept: the tests that need a champion but
    do not test training register copies of it (`champion`), in seconds instead of the half
    minute a training and promotion take."""
    from tests.integration.params import QUICK

    return train_once(platform_servers, s3, tmp_path_factory.mktemp("trained-once"), QUICK)


@pytest.fixture(scope="session")
def trained_weak_once(platform_servers, s3, tmp_path_factory) -> TrainedFiles:
    """One WEAK training per test process (a worse model than ``trained_once``), for the tests of
    promotion's both ways."""
    from tests.integration.params import WEAK

    return train_once(platform_servers, s3, tmp_path_factory.mktemp("trained-weak"), WEAK)


@pytest.fixture
def champion(flow_env, request) -> Callable[..., Registered]:
    """Registers a copy of the session's trained model (``weak``: the weak one) as a new version
    of the test's model (MODEL_NAME: flow_env's unless the test changed it), logged in its
    training experiment with the training's params, updated by ``params``, recorded by the stack,
    as champion or challenger."""
    from flows.resources.registry import crown, register_challenger, version_by_alias

    def register(
        alias: str = CHAMPION, weak: bool = False, params: dict[str, str] | None = None
    ) -> Registered:
        trained = request.getfixturevalue("trained_weak_once" if weak else "trained_once")
        client = MlflowClient()
        name = os.environ["MODEL_NAME"]
        mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(trained.artifacts))
            mlflow.log_artifacts(str(trained.model), "model")
            mlflow.log_params({**trained.params, **(params or {})})
            mlflow.log_metrics(trained.metrics)
        rmse = trained.metrics["rmse"]
        version = register_challenger(client, name, f"runs:/{run.info.run_id}/model", rmse)
        if alias == CHAMPION:
            before = version_by_alias(client, name, CHAMPION)
            crown(client, name, version, before, "a copy of the session's trained model")
        return Registered(str(version.version), run.info.run_id)

    return register
