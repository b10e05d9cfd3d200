"""One real compose stack for every end-to-end test: brought up once, removed at the end.

Before it, the whole-platform tests that need no Docker: `make local` (the same platform as local
processes) and the README's development command.

Tests that break the stack on purpose (marked ``faults``: outages, a killed worker, restarts,
restores) run after the others, so those meet the stack as a new user does; each fault test
brings what it needs itself and leaves a working stack behind, so they pass in any order.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.compose import CONTAINER_SCRIPTS, NETWORK, RECEIVER, Stack, shared_stack_settings
from tests.paths import TLC_DATA

TRAINING_MONTHS = ("2021-01", "2021-02")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """First the tests that need no compose stack (the local stack, the development command:
    they start their own processes, and should not share two cores with the stack), then those
    on the stack, fault tests last (stable sort: file order otherwise)."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("faults") is not None:
            return 2
        return 1 if "stack" in getattr(item, "fixturenames", ()) else 0

    items.sort(key=rank)


def dangling_images() -> set[str]:
    """The ids of the engine's untagged images."""
    listed = subprocess.run(
        ["docker", "images", "--quiet", "--no-trunc", "--filter", "dangling=true"],
        capture_output=True, text=True,
    )  # fmt: skip
    return set(listed.stdout.split())


@pytest.fixture(scope="session", autouse=True)
def no_dangling_images() -> Iterator[None]:
    """Images this run left untagged (an image rebuilt under the same tag, an old release's) are
    removed at its end: a CI machine would otherwise gather gigabytes of them."""
    before = dangling_images()
    yield
    left = sorted(dangling_images() - before)
    if left:
        subprocess.run(["docker", "image", "rm", *left], capture_output=True)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`make up` on fresh settings and ports; `docker compose down -v` at the end."""
    workdir = tmp_path_factory.mktemp("e2e")
    stack = shared_stack_settings(workdir)
    try:
        up = stack.make("up", check=False)
        (workdir / "make-up.log").write_text(up.stdout + up.stderr)
        assert up.returncode == 0, f"make up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", check=False)
        (workdir / "compose.log").write_text(logs.stdout + logs.stderr)
        print(f"\ncompose logs: {workdir / 'compose.log'}")
        stack.compose("down", "--volumes", "--remove-orphans", check=False)


@pytest.fixture(scope="session")
def prefect(stack: Stack) -> Iterator[None]:
    """This process's Prefect client on the stack, through the gateway as the admin."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings(
        {
            PREFECT_API_URL: stack.prefect_api_url,
            PREFECT_API_AUTH_STRING: ":".join(stack.prefect_auth),
        }
    ):
        yield


@pytest.fixture(scope="session")
def trained(stack: Stack) -> str:
    """What a new user does first, once per stack: `make upload-data`, `make deploy`, `make train`
    on two months; returns `make train`'s output (it ends with the champion's summary)."""
    files = " ".join(str(TLC_DATA / f"green_tripdata_{m}.parquet") for m in TRAINING_MONTHS)
    upload = stack.make("upload-data", f"FILES={files}")
    assert upload.stdout.count("-> s3://") == 2, upload.stdout
    stack.make("deploy")
    month, val = TRAINING_MONTHS
    return stack.make("train", f"TRAIN_MONTH={month}", f"VAL_MONTH={val}").stdout


@pytest.fixture
def admin(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An MLflow client on the stack as its admin (patient: the stack may be restarting)."""
    from mlflow import MlflowClient

    stack.use_mlflow_as_admin(monkeypatch)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    return MlflowClient()


@pytest.fixture
def receiver(stack: Stack) -> Iterator[str]:
    """The webhook receiver NOTIFY_WEBHOOK_URL points at: a container on the stack's network
    that prints each POST body on a line of its log. Yields its container name. Removed after
    the test: `make down` cannot remove a network that a container still uses."""
    subprocess.run(
        [
            "docker", "run", "--detach", "--rm", "--name", RECEIVER, "--network", NETWORK,
            "-v", f"{CONTAINER_SCRIPTS / 'receiver.py'}:/receiver.py:ro",
            stack.env()["APP_IMAGE"], "python", "-u", "/receiver.py",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    yield RECEIVER
    subprocess.run(["docker", "rm", "--force", RECEIVER], capture_output=True)
