"""The tracking server's app (`--app-name stack-registry`) on a real MLflow server with accounts:
only the stack's account and admins change what the platform's model serves."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest
import requests

from tests.conftest import PLATFORM_MODEL, STACK_ACCOUNT

pytestmark = pytest.mark.integration

RECORD = "platform.record"


@dataclass(frozen=True)
class Registry:
    """The server and its accounts: the stack's, a worker elsewhere, a teammate, the admin."""

    url: str
    admin: tuple[str, str]
    stack: tuple[str, str]
    far_worker: tuple[str, str]
    teammate: tuple[str, str]

    def call(
        self, account: tuple[str, str], method: str, endpoint: str, body: dict | None = None
    ) -> requests.Response:
        """One REST call to MLflow as ``account``."""
        return requests.request(
            method, f"{self.url}/api/2.0/mlflow/{endpoint}", json=body, auth=account, timeout=30
        )


def ok(response: requests.Response) -> dict:
    """The JSON of a successful answer (the test stops with MLflow's message otherwise)."""
    assert response.status_code == 200, response.text
    return response.json()


def run_of(registry: Registry, account: tuple[str, str]) -> dict:
    """A new run of ``account``'s, in an experiment of its own."""
    experiment = {"name": f"{account[0]}-{secrets.token_hex(4)}"}
    created = ok(registry.call(account, "POST", "experiments/create", experiment))
    body = {"experiment_id": created["experiment_id"]}
    return ok(registry.call(account, "POST", "runs/create", body))["run"]


def version_of(registry: Registry, account: tuple[str, str], model: str) -> str:
    """A new version of ``model`` made by ``account`` from a run of its own."""
    run = run_of(registry, account)
    body = {"name": model, "source": f"{run['info']['artifact_uri']}/model"}
    body["run_id"] = run["info"]["run_id"]
    return str(
        ok(registry.call(account, "POST", "model-versions/create", body))["model_version"][
            "version"
        ]
    )


@pytest.fixture(scope="module")
def registry(stack_tracking) -> Registry:
    """The platform's model with a version, and the accounts `make up` and `make worker-env`
    make: MANAGE for the stack's account, EDIT for the worker elsewhere, READ for teammates."""
    server, stack = stack_tracking
    accounts = {STACK_ACCOUNT: stack}
    for name in ("far-worker", "ted"):
        accounts[name] = (name, secrets.token_urlsafe(16))
        body = {"username": name, "password": accounts[name][1]}
        ok(
            requests.post(
                f"{server.url}/api/2.0/mlflow/users/create",
                json=body,
                auth=server.admin,
                timeout=30,
            )
        )
    found = Registry(
        server.url, server.admin, accounts[STACK_ACCOUNT], accounts["far-worker"], accounts["ted"]
    )
    # The server is the run's shared one: another module may have made the model already.
    made = found.call(found.admin, "POST", "registered-models/create", {"name": PLATFORM_MODEL})
    assert made.ok or made.json().get("error_code") == "RESOURCE_ALREADY_EXISTS", made.text
    for name, permission in ((STACK_ACCOUNT, "MANAGE"), ("far-worker", "EDIT")):
        grant = {"username": name, "resource_type": "registered_model"}
        grant |= {"resource_id": PLATFORM_MODEL, "permission": permission}
        url = f"{server.url}/api/3.0/mlflow/users/permissions/grant"
        granted = requests.post(url, json=grant, auth=server.admin, timeout=30)
        assert granted.ok or "already exists" in granted.text, granted.text
    return found


def test_a_worker_elsewhere_registers_and_names_challengers_but_not_the_champion(registry):
    version = version_of(registry, registry.far_worker, PLATFORM_MODEL)
    alias = {"name": PLATFORM_MODEL, "version": version}
    assert (
        registry.call(
            registry.far_worker, "POST", "registered-models/alias", {**alias, "alias": "challenger"}
        ).status_code
        == 200
    )
    refused = registry.call(
        registry.far_worker, "POST", "registered-models/alias", {**alias, "alias": "champion"}
    )
    assert refused.status_code == 403
    assert "only the stack's promotion and admins" in refused.json()["message"]
    tag = {**alias, "key": "val_rmse", "value": "5.0"}
    assert (
        registry.call(registry.far_worker, "POST", "model-versions/set-tag", tag).status_code == 200
    )


@pytest.mark.parametrize(
    ("method", "endpoint", "body"),
    [
        ("POST", "model-versions/set-tag", {"key": RECORD, "value": "{}"}),
        ("POST", "registered-models/rename", {"new_name": "elsewhere"}),
        ("POST", "registered-models/alias", {"alias": "production"}),
    ],
    ids=["writes-a-record", "renames-the-model", "sets-another-alias"],
)
def test_a_worker_elsewhere_is_refused(registry, method, endpoint, body):
    version = version_of(registry, registry.stack, PLATFORM_MODEL)
    answer = registry.call(
        registry.far_worker, method, endpoint, {"name": PLATFORM_MODEL, "version": version, **body}
    )
    assert answer.status_code == 403, answer.text


def test_a_record_cannot_come_with_a_new_version(registry):
    run = run_of(registry, registry.far_worker)
    body = {
        "name": PLATFORM_MODEL,
        "source": f"{run['info']['artifact_uri']}/model",
        "run_id": run["info"]["run_id"],
        "tags": [{"key": RECORD, "value": "{}"}],
    }
    assert (
        registry.call(registry.far_worker, "POST", "model-versions/create", body).status_code == 403
    )


def test_the_ajax_path_and_a_query_string_are_held_to_the_same_rule(registry):
    version = version_of(registry, registry.stack, PLATFORM_MODEL)
    answer = requests.post(
        f"{registry.url}/ajax-api/2.0/mlflow/registered-models/alias",
        params={"name": PLATFORM_MODEL, "alias": "champion", "version": version},
        auth=registry.far_worker,
        timeout=30,
    )
    # A write's values come in its JSON body only: refused before any rule is looked at.
    assert answer.status_code == 400, answer.text
    assert "body only" in answer.json()["message"]


def test_the_stack_and_admins_move_the_champion_and_write_records(registry):
    version = version_of(registry, registry.stack, PLATFORM_MODEL)
    for account in (registry.stack, registry.admin):
        alias = {"name": PLATFORM_MODEL, "alias": "champion", "version": version}
        ok(registry.call(account, "POST", "registered-models/alias", alias))
        tag = {"name": PLATFORM_MODEL, "version": version, "key": RECORD, "value": "{}"}
        ok(registry.call(account, "POST", "model-versions/set-tag", tag))
    champion = registry.call(registry.teammate, "GET", "registered-models/alias", None)
    assert champion.status_code in (200, 400)  # a read: MLflow's own rule


def test_a_teammate_may_not_move_the_champion_but_names_their_own_models(registry):
    version = version_of(registry, registry.stack, PLATFORM_MODEL)
    alias = {"name": PLATFORM_MODEL, "alias": "champion", "version": version}
    assert (
        registry.call(registry.teammate, "POST", "registered-models/alias", alias).status_code
        == 403
    )
    own = f"ted-model-{secrets.token_hex(3)}"
    ok(registry.call(registry.teammate, "POST", "registered-models/create", {"name": own}))
    mine = version_of(registry, registry.teammate, own)
    ok(
        registry.call(
            registry.teammate,
            "POST",
            "registered-models/alias",
            {"name": own, "alias": "champion", "version": mine},
        )
    )


def test_wrong_passwords_are_refused_before_the_rule(registry):
    alias = {"name": PLATFORM_MODEL, "alias": "champion", "version": "1"}
    wrong = (STACK_ACCOUNT, "not-the-password")
    assert registry.call(wrong, "POST", "registered-models/alias", alias).status_code == 401


def history(registry: Registry, account: tuple[str, str]) -> list[dict]:
    """The platform model's alias moves, newest first, as ``account`` reads them."""
    answer = requests.get(
        f"{registry.url}/api/2.0/platform/alias-history",
        params={"name": PLATFORM_MODEL},
        auth=account,
        timeout=30,
    )
    return ok(answer)["moves"]


def test_every_alias_move_is_recorded_with_who_from_to_and_why(registry, monkeypatch):
    from mlflow import MlflowClient

    from flows.resources.registry import move_alias, roll_back

    first, second = (version_of(registry, registry.stack, PLATFORM_MODEL) for _ in range(2))
    for version in (first, second):  # the stack's record, so rollback may put them back
        tag = {"name": PLATFORM_MODEL, "version": version, "key": RECORD, "value": "{}"}
        ok(registry.call(registry.stack, "POST", "model-versions/set-tag", tag))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", registry.stack[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", registry.stack[1])
    client = MlflowClient(registry.url)
    move_alias(client, PLATFORM_MODEL, "champion", first, "promotion: better rmse (5.1 < 5.3)")
    # A manual change in MLflow (the UI calls the same endpoint, under /ajax-api).
    manual = {"name": PLATFORM_MODEL, "alias": "champion", "version": second}
    ok(
        requests.post(
            f"{registry.url}/ajax-api/2.0/mlflow/registered-models/alias",
            json=manual,
            auth=registry.admin,
            timeout=30,
        )
    )
    refused = {"name": PLATFORM_MODEL, "alias": "champion", "version": first}
    assert (
        registry.call(registry.teammate, "POST", "registered-models/alias", refused).status_code
        == 403
    )
    old, new = roll_back(
        client, PLATFORM_MODEL, None, "by alice@laptop: the manual change was a mistake"
    )
    assert (old, new) == (second, first)
    assert client.get_model_version_by_alias(PLATFORM_MODEL, "champion").version == first

    moves = [m for m in history(registry, registry.teammate) if m["alias"] == "champion"][:3]
    assert [(m["from_version"], m["to_version"], m["actor"]) for m in moves] == [
        (second, first, STACK_ACCOUNT),
        (moves[1]["from_version"], second, "admin"),
        (moves[2]["from_version"], first, STACK_ACCOUNT),
    ]
    assert (
        moves[0]["reason"]
        == f"rollback from version {second}: by alice@laptop: the manual change was a mistake"
    )
    assert moves[1]["reason"] == "manual change (MLflow UI or client)"
    assert moves[2]["reason"] == "promotion: better rmse (5.1 < 5.3)"
    assert moves[1]["from_version"] == first


def test_the_history_needs_an_account(registry):
    answer = requests.get(
        f"{registry.url}/api/2.0/platform/alias-history",
        params={"name": PLATFORM_MODEL},
        timeout=30,
    )
    assert answer.status_code == 401
