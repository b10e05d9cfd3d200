"""The tracking server's app and the data proxy on real servers, one test for each thing a role
must not do: a teammate and a worker account try it and are refused. MLflow's own bug first:
plain basic auth lets a teammate delete another's model; the stack's app does not."""

from __future__ import annotations

import http.client
import secrets
import statistics
import time
from base64 import b64encode
from collections.abc import Iterator

import pytest
import requests

from tests import servers
from tests.conftest import PLATFORM_MODEL
from tests.metrics import scrape

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"


def raw(url: str, method: str, target: str, account, body: bytes, content_type: str):
    """A request sent exactly as given (requests would normalise the target)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    token = b64encode(":".join(account).encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": content_type}
    connection.request(method, target, body=body, headers=headers)
    answer = connection.getresponse()
    return answer.status, answer.read().decode(errors="replace")


def models(url: str, admin) -> set[str]:
    """Every registered model's name."""
    found = requests.get(f"{url}{API}/registered-models/search", params={"max_results": 1000},
                         auth=admin, timeout=30).json()  # fmt: skip
    return {model["name"] for model in found.get("registered_models", [])}


def two_teammates_models(server) -> tuple[tuple[str, str], str, str]:
    """A teammate with a model of their own, and another teammate's model."""
    mallory = server.create_account(f"mallory-{secrets.token_hex(3)}")
    alice = server.create_account(f"alice-{secrets.token_hex(3)}")
    own, theirs = f"own-{secrets.token_hex(3)}", f"theirs-{secrets.token_hex(3)}"
    for account, name in ((mallory, own), (alice, theirs)):
        made = requests.post(f"{server.url}{API}/registered-models/create", json={"name": name},
                             auth=account, timeout=30)  # fmt: skip
        made.raise_for_status()
    return mallory, own, theirs


@pytest.fixture(scope="module")
def plain_basic_auth(postgres, s3, workdir) -> Iterator[servers.AccountsServer]:
    """MLflow's own basic-auth app, as `mlflow server --app-name basic-auth` runs it."""
    admin = ("admin", secrets.token_urlsafe(16))
    auth_db = f"postgresql+psycopg2://{servers.accounts_database(postgres, admin)}"
    bucket = f"plain-{secrets.token_hex(3)}"
    s3.client().create_bucket(Bucket=bucket)
    backend = postgres.create_mlflow_database(f"plain_{secrets.token_hex(3)}", "p" * 16)
    env = {
        "MLFLOW_APP_NAME": "basic-auth",
        "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://{backend}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    server = servers.start_with_accounts(s3, bucket, workdir, [], env, auth_db, admin)
    yield server
    server.stop()


def test_mlflows_own_basic_auth_deletes_another_teammates_model(plain_basic_auth):
    """MLflow 3.17's bug, shown: auth checks the DELETE's query string (the caller's own model),
    the handler reads the text/plain body (another teammate's)."""
    server = plain_basic_auth
    mallory, own, theirs = two_teammates_models(server)
    status, _ = raw(
        server.url, "DELETE", f"{API}/registered-models/delete?name={own}", mallory,
        f'{{"name": "{theirs}"}}'.encode(), "text/plain",
    )  # fmt: skip
    assert status == 200 and theirs not in models(server.url, server.admin)


def test_the_stacks_app_refuses_a_write_whose_query_and_body_disagree(accounts):
    server = accounts.tracking
    mallory, own, theirs = two_teammates_models(server)
    for target, content_type in (
        (f"{API}/registered-models/delete?name={own}", "text/plain"),
        (f"{API}/registered-models/delete?name={own}", "application/json"),
        (f"{API}/registered-models/delete", "text/plain"),
        (f"{API}/registered-models/delete", "application/x-www-form-urlencoded"),
    ):
        status, text = raw(server.url, "DELETE", target, mallory,
                           f'{{"name": "{theirs}"}}'.encode(), content_type)  # fmt: skip
        assert status in (400, 403), (target, content_type, status, text)
    assert theirs in models(server.url, server.admin)
    deleted = requests.delete(f"{server.url}{API}/registered-models/delete", json={"name": own},
                              auth=mallory, timeout=30)  # fmt: skip
    assert deleted.status_code == 200, "their own model, as MLflow allows"


def call(server, account, method: str, endpoint: str, body: dict | None = None) -> dict:
    """One call of MLflow's REST API that must succeed; its JSON answer."""
    answer = requests.request(
        method, f"{server.url}{API}/{endpoint}", json=body, auth=account, timeout=30
    )
    assert answer.ok, (method, endpoint, answer.status_code, answer.text)
    return answer.json() if answer.content else {}


@pytest.fixture(scope="module")
def platform_model(accounts) -> tuple[tuple[str, str], str, str]:
    """The platform's model with a version the stack made champion, and a worker account
    elsewhere with EDIT on the model and its experiment (what `make worker-env` gives): the
    worker, the version, the artifact path of the champion's run."""
    server, stack = accounts.tracking, accounts.stack
    worker = server.create_account(f"far-{secrets.token_hex(3)}")
    experiment = call(server, stack, "POST", "experiments/create",
                      {"name": f"training-{secrets.token_hex(3)}"})["experiment_id"]  # fmt: skip
    if PLATFORM_MODEL not in models(server.url, server.admin):
        call(server, server.admin, "POST", "registered-models/create", {"name": PLATFORM_MODEL})
    grants = [
        (worker[0], "experiment", experiment, "EDIT"),
        (worker[0], "registered_model", PLATFORM_MODEL, "EDIT"),
        (stack[0], "registered_model", PLATFORM_MODEL, "MANAGE"),  # what `make up` gives
    ]
    for username, resource_type, resource_id, permission in grants:
        grant = {"username": username, "resource_type": resource_type,
                 "resource_id": resource_id, "permission": permission}  # fmt: skip
        granted = requests.post(f"{server.url}/api/3.0/mlflow/users/permissions/grant",
                                json=grant, auth=server.admin, timeout=30)  # fmt: skip
        assert granted.ok or "already" in granted.text.lower(), granted.text
    run = call(server, stack, "POST", "runs/create", {"experiment_id": experiment})["run"]
    uri = run["info"]["artifact_uri"]
    artifacts = uri.split("mlflow-artifacts:/", 1)[1].lstrip("/")
    put = requests.put(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{artifacts}/model/MLmodel",
        data=b"flavors: {}", auth=stack, timeout=30,
    )  # fmt: skip
    assert put.ok, put.text
    created = call(server, stack, "POST", "model-versions/create",
                   {"name": PLATFORM_MODEL, "source": f"{uri}/model",
                    "run_id": run["info"]["run_id"]})  # fmt: skip
    version = created["model_version"]["version"]
    alias = {"name": PLATFORM_MODEL, "alias": "champion", "version": version}
    call(server, stack, "POST", "registered-models/alias", alias)
    return worker, version, artifacts


@pytest.mark.parametrize(
    "path",
    [
        "/ajax-api/2.0/mlflow/registered-models/alias",
        "//api/2.0/mlflow/registered-models/alias",
        "/api/2.0/mlflow//registered-models/alias",
        "/api/2.0/mlflow/registered-models%2Falias",
        "/api/2.0/mlflow/./registered-models/alias",
        "/api/2.0/mlflow/registered-models/alias/",
        "/API/2.0/mlflow/registered-models/alias",
        "/api/2.0/mlflow/registered-models/%61lias",
    ],
)
def test_a_worker_moves_champion_by_no_spelling_of_the_route(accounts, platform_model, path):
    worker, version, _ = platform_model
    body = f'{{"name": "{PLATFORM_MODEL}", "alias": "champion", "version": "{version}"}}'
    status, text = raw(accounts.tracking.url, "POST", path, worker, body.encode(),
                       "application/json")  # fmt: skip
    assert status in (400, 403, 404, 405), (path, status, text)


def test_the_files_of_a_registered_version_are_written_once(accounts, platform_model):
    """EDIT on the training experiment writes new runs' files, never a registered version's:
    no file added, replaced or deleted under the champion's run, by any route of the proxy."""
    worker, _, artifacts = platform_model
    url = f"{accounts.tracking.url}/api/2.0/mlflow-artifacts"
    attempts = [
        ("PUT", f"{url}/artifacts/{artifacts}/model/SECURITY_PROBE.txt", b"x"),
        ("PUT", f"{url}/artifacts/{artifacts}/model/MLmodel", b"replaced"),
        ("DELETE", f"{url}/artifacts/{artifacts}/model/MLmodel", None),
        ("POST", f"{url}/mpu/create/{artifacts}/model/big.bin", b'{"path": "x", "num_parts": 1}'),
    ]
    for method, target, body in attempts:
        answer = requests.request(method, target, data=body, auth=worker, timeout=30,
                                  headers={"Content-Type": "application/json"})  # fmt: skip
        assert answer.status_code == 403, (method, target, answer.text)
        assert "written once" in answer.json()["message"]
    still = requests.get(f"{url}/artifacts/{artifacts}/model/MLmodel", auth=worker, timeout=30)
    assert still.content == b"flavors: {}"
    fresh_run = artifacts.split("/")[0] + "/" + "f" * 32 + "/artifacts/model/MLmodel"
    assert (
        requests.put(f"{url}/artifacts/{fresh_run}", data=b"x", auth=worker, timeout=30).status_code
        == 200
    ), "a run no version stands on is writable"
    # Gone again (MLflow lets a MANAGE holder delete): no leftover for the housekeeping tests.
    admin = accounts.tracking.admin
    deleted = requests.delete(f"{url}/artifacts/{fresh_run}", auth=admin, timeout=30)
    assert deleted.status_code == 200, deleted.text


def test_a_version_names_the_account_that_registered_it(accounts, platform_model):
    """MLflow leaves a version's "Created by" (user_id) empty; the stack's app names the signed-in
    account that registered it, and a body naming another user changes nothing."""
    worker, version, artifacts = platform_model
    server, stack = accounts.tracking, accounts.stack

    def creator(number: str) -> str:
        query = {"name": PLATFORM_MODEL, "version": number}
        answer = requests.get(
            f"{server.url}{API}/model-versions/get", auth=server.admin, params=query, timeout=30
        )
        assert answer.ok, answer.text
        return str(answer.json()["model_version"].get("user_id", ""))

    assert creator(version) == stack[0]
    run_id = artifacts.split("/")[1]
    source = f"mlflow-artifacts:/{artifacts}/model"
    made = call(server, worker, "POST", "model-versions/create",
                {"name": PLATFORM_MODEL, "source": source, "run_id": run_id,
                 "user_id": stack[0]})  # fmt: skip
    assert creator(made["model_version"]["version"]) == worker[0]


def test_metrics_series_stay_bounded_whatever_paths_are_asked_for(accounts):
    """A thousand made-up paths, anonymous: the request metrics gain no series but 'other'."""
    server = accounts.tracking

    def endpoints() -> set[str]:
        page = scrape(server.metrics_url)
        return {dict(labels).get("endpoint", "") for name, labels in page
                if name == "platform_http_requests_total"}  # fmt: skip

    before = endpoints()
    session = requests.Session()
    for _ in range(1000):
        session.get(f"{server.url}/api/2.0/mlflow/{secrets.token_hex(4)}/{secrets.token_hex(2)}",
                    timeout=30)  # fmt: skip
    added = endpoints() - before
    assert added <= {"other"}, added


def test_signing_in_takes_as_long_for_an_unknown_account_as_for_a_wrong_password(accounts):
    """Accounts cannot be listed by timing: an unknown name is hashed as a known one is."""
    server = accounts.tracking
    known = server.create_account(f"known-{secrets.token_hex(3)}")

    def sign_in_ms(username: str) -> float:
        """One wrong sign-in as ``username``: how long the 401 took."""
        started = time.perf_counter()
        answer = requests.get(f"{server.url}{API}/experiments/search",
                              params={"max_results": 1}, auth=(username, "wrong-password"),
                              timeout=30)  # fmt: skip
        assert answer.status_code == 401
        return (time.perf_counter() - started) * 1000

    nobody = f"nobody-{secrets.token_hex(4)}"
    # Interleaved, so the machine's load weighs on both alike.
    pairs = [(sign_in_ms(nobody), sign_in_ms(known[0])) for _ in range(9)]
    unknown = statistics.median(first for first, _ in pairs)
    wrong = statistics.median(second for _, second in pairs)
    # Before: 7 ms against 109 ms (a ratio of 0.06). Hashing both, whatever the machine's load.
    assert unknown > 0.4 * wrong, (unknown, wrong)
