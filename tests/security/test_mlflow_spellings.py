"""The tracking server's app decides on exactly what MLflow will act on: a property-based
differential test, as the gateway's (test_gateway_spellings.py).

For MLflow requests the stack's rules guard (moving champion, the stack's record of a version,
deleting the platform's model, writing the files of a registered version) and a few it leaves to
MLflow, under each role, generated spellings (path spellings, the /ajax-api twin of a route,
content types, a query beside the body, whitespace and repeated keys in the body) are either
refused before MLflow sees them, or read as their canonical request (the same handler, the same
values) and then decided exactly as it is. The app runs in this process with MLflow's real
routes; the accounts and the registry's state are stand-ins, the app behind a recorder.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.conftest import status_of
from tests.security.test_gateway_spellings import path_spelling

MODEL = "taxi-trip-duration"
STACK = "prefect-worker"
RUN = "0123456789abcdef0123456789abcdef"
FRESH = "fedcba9876543210fedcba9876543210"
ROLES = {"admin": 200, STACK: 403, "far-worker": 403, "ted": 403}


@dataclass(frozen=True)
class Example:
    """A canonical request: method, path, a JSON body (writes) or a query (reads)."""

    method: str
    path: str
    body: Any = None
    query: str = ""
    raw: bytes | None = None  # a file's bytes (artifact uploads)


ALIAS = "/api/2.0/mlflow/registered-models/alias"
EXAMPLES = [
    Example("POST", ALIAS, {"name": MODEL, "alias": "champion", "version": "3"}),
    Example("POST", ALIAS, {"name": MODEL, "alias": "challenger", "version": "3"}),
    Example("DELETE", ALIAS, {"name": MODEL, "alias": "champion"}),
    Example("POST", ALIAS, {"name": "someone-elses", "alias": "champion", "version": "1"}),
    Example("POST", "/api/2.0/mlflow/model-versions/set-tag",
            {"name": MODEL, "version": "3", "key": "platform.record", "value": "{}"}),
    Example("POST", "/api/2.0/mlflow/model-versions/set-tag",
            {"name": MODEL, "version": "3", "key": "val_rmse", "value": "5"}),
    Example("DELETE", "/api/2.0/mlflow/registered-models/delete", {"name": MODEL}),
    Example("DELETE", "/api/2.0/mlflow/registered-models/delete", {"name": "own-model"}),
    Example("POST", "/api/2.0/mlflow/registered-models/rename",
            {"name": MODEL, "new_name": "mine"}),
    Example("GET", "/api/2.0/mlflow/registered-models/get", query=f"name={MODEL}"),
    Example("PUT", f"/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/model/MLmodel",
            raw=b"replaced"),
    Example("PUT", f"/api/2.0/mlflow-artifacts/artifacts/1/{FRESH}/artifacts/model/MLmodel",
            raw=b"new"),
    Example("DELETE", f"/api/2.0/mlflow-artifacts/artifacts/1/{RUN}/artifacts/model/MLmodel"),
]  # fmt: skip


@dataclass
class Outcome:
    """What the app did: the status, what it read the request as (None: refused before any
    rule), and whether MLflow's app behind it got the request."""

    status: int
    read_as: tuple[Any, ...] | None
    passed: bool


@dataclass
class Harness:
    """The stack-registry app in this process: MLflow's real routes, stand-in accounts and
    registry state, a recorder behind it."""

    app: Any
    read: list[tuple[Any, ...]] = field(default_factory=list)
    passed: list[bool] = field(default_factory=list)

    def call(self, role: str, method: str, raw_path: bytes, query: bytes, headers: list,
             body: bytes) -> Outcome:  # fmt: skip
        self.read.clear()
        self.passed.clear()
        status = asyncio.run(self.request(role, method, raw_path, query, headers, body))
        return Outcome(status, self.read[0] if self.read else None, bool(self.passed))

    async def request(self, role: str, method: str, raw_path: bytes, query: bytes,
                      headers: list, body: bytes) -> int:  # fmt: skip
        from urllib.parse import unquote

        token = base64.b64encode(f"{role}:password".encode())
        scope = {
            "type": "http", "method": method, "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path, "query_string": query, "root_path": "",
            "headers": [(b"authorization", b"Basic " + token), *headers],
        }  # fmt: skip
        return await status_of(self.app, scope, body)


@pytest.fixture(scope="module")
def harness() -> Harness:
    """The app, with MLflow's routes; accounts, the registry and MLflow's app stood in."""
    import mlflow_stack_registry as registry
    import platform_edge.mlflow as edge
    from mlflow.server import app as flask_app
    from mlflow.server.fastapi_app import create_fastapi_app
    from mlflow_stack_registry.write_once import Owner

    harness_ref: list[Harness] = []

    async def mlflow_app(scope: dict, receive: Any, send: Any) -> None:
        harness_ref[0].passed.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def writer_of(authorization: bytes | None) -> tuple[int, str]:
        username = base64.b64decode(authorization.split()[1]).decode().partition(":")[0]
        return ROLES.get(username, 401), username

    async def equal_time(scope: Any) -> str:
        return ""

    def version_on(engine: Any, owner: Owner) -> str | None:
        return f"version 3 of {MODEL}" if owner.id == RUN else None

    patch = pytest.MonkeyPatch()
    patch.setattr(registry, "writer_of", writer_of)
    patch.setattr(registry, "version_on", version_on)
    patch.setattr(edge, "equal_time_sign_in", equal_time)
    router = edge.MlflowRouter(create_fastapi_app(flask_app), flask_app)
    app = registry.StackMovesTheModel(
        mlflow_app, router, MODEL, STACK, history=None, housekeeper=None, registry_engine=object()
    )
    decide = app.decide

    async def recording_decide(call: Any, send: Any) -> bool:
        fields = json.dumps(call.fields, sort_keys=True)
        query = call.scope.get("query_string")
        read = (call.method, call.route.endpoint, fields, call.route.artifact_path, query)
        harness_ref[0].read.append(read)
        return await decide(call, send)

    app.decide = recording_decide  # type: ignore[method-assign]
    harness_ref.append(Harness(app))
    return harness_ref[0]


def canonical_parts(example: Example) -> tuple[bytes, bytes, list, bytes]:
    """The example's raw path, query, headers and body as MLflow's client sends them."""
    if example.raw is not None:
        return example.path.encode(), b"", [], example.raw
    if example.body is None:
        return example.path.encode(), example.query.encode(), [], b""
    body = json.dumps(example.body).encode()
    return example.path.encode(), b"", [(b"content-type", b"application/json")], body


@st.composite
def variant(draw: st.DrawFn, example: Example) -> tuple[bytes, bytes, list, bytes]:
    """The example spelled otherwise."""
    raw_path, query, headers, body = canonical_parts(example)
    where = draw(st.sampled_from(["path", "ajax", "query", "content-type", "body"]))
    if where == "path":
        raw_path = draw(path_spelling(example.path)).encode()
    elif where == "ajax":
        raw_path = example.path.replace("/api/", "/ajax-api/", 1).encode()
    elif where == "query":
        name = draw(st.sampled_from([MODEL, "own-model", "x"]))
        query = f"name={quote(name)}&alias=champion&version=3".encode()
    elif where == "content-type":
        spelled = draw(st.sampled_from([
            b"text/plain", b"application/x-www-form-urlencoded", b"application/json; charset=utf-8",
            b"Application/JSON", b"application/merge-patch+json", b"",
        ]))  # fmt: skip
        headers = [(b"content-type", spelled)] if spelled else []
    elif example.body is not None:
        text = json.dumps(example.body)
        if draw(st.booleans()) and isinstance(example.body, dict):
            key = next(iter(example.body))
            text = "{" + json.dumps(key) + ': "decoy", ' + text[1:]
        else:
            text = "\n " + text.replace(": ", " :\t") + " "
        body = text.encode()
    return raw_path, query, headers, body


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(example=st.sampled_from(EXAMPLES), role=st.sampled_from(sorted(ROLES)), data=st.data())
def test_a_spelling_is_refused_or_decided_as_its_canonical_request(harness, example, role, data):
    canonical = harness.call(role, example.method, *canonical_parts(example))
    spelled = data.draw(variant(example))
    outcome = harness.call(role, example.method, *spelled)
    if outcome.read_as is None:
        assert not outcome.passed and outcome.status >= 400, (spelled, outcome)
        return
    if outcome.read_as == canonical.read_as:
        assert outcome.passed == canonical.passed, (
            f"{role}: {spelled} reads as the canonical request ({canonical.status}) but was "
            f"decided otherwise ({outcome.status})"
        )


def test_the_examples_are_decided_as_their_roles_may(harness):
    """A few decisions written out, so the property above cannot pass by refusing everything."""

    def passed(role: str, example: Example) -> bool:
        return harness.call(role, example.method, *canonical_parts(example)).passed

    champion, challenger, *_ = EXAMPLES
    assert not passed("far-worker", champion) and passed(STACK, champion)
    assert passed("admin", champion) and passed("far-worker", challenger)
    record = EXAMPLES[4]
    assert not passed("ted", record) and passed(STACK, record)
    replace, fresh, delete = EXAMPLES[-3:]
    assert not passed("far-worker", replace) and not passed("far-worker", delete)
    assert passed("far-worker", fresh) and passed(STACK, replace)
