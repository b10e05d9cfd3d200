"""The gateway decides on exactly what Prefect will act on: a property-based differential test.

For requests to routes of every kind (reads, writes under each capability, admin-only routes,
secrets) and every role, generated spellings of the same request (double slashes, dot segments,
percent-encodings of any byte, double encodings, trailing slashes, case, encoded slashes; query
keys repeated, added or encoded; booleans in every spelling Prefect's schemas accept; other
content types, whitespace and repeated keys in bodies) are either refused with nothing forwarded,
or forwarded exactly as their canonical request is, and only where the canonical request is
allowed. The gateway runs in this process with Prefect's real routes and schemas; sign-in and
Prefect's state are stand-ins (the decisions on them are tested on real servers in
test_gateway.py), and a recording upstream keeps what would have been forwarded.
"""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.capabilities import Caller
from services.gateway.state import Deployment, FlowRun
from tests.security.conftest import status_of

POOL = "taxi-pool"
OWN_RUN, THEIR_RUN = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
OWN_TASK, THEIR_TASK = (
    "33333333-3333-4333-8333-333333333333",
    "44444444-4444-4444-8444-444444444444",
)
OWN_DEPLOYMENT = "55555555-5555-4555-8555-555555555555"
STACK_DEPLOYMENT = "66666666-6666-4666-8666-666666666666"
ARTIFACT, BLOCK = "77777777-7777-4777-8777-777777777777", "88888888-8888-4888-8888-888888888888"
CALLERS = {
    "admin": Caller("admin", "admin"),
    "alice": Caller("alice", "teammate"),
    "laptop": Caller("laptop", "worker", ("default",)),
}
NOW = "2026-12-07T10:00:00+00:00"


@dataclass(frozen=True)
class Example:
    """A canonical request: method, raw path, query pairs and a JSON body (or none)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None


EXAMPLES = [
    Example("GET", "/api/health"),
    Example("POST", "/api/flow_runs/filter", body={"limit": 5}),
    Example("GET", f"/api/flow_runs/{OWN_RUN}"),
    Example("GET", f"/api/block_documents/{BLOCK}"),
    Example("GET", f"/api/block_documents/{BLOCK}", (("include_secrets", "true"),)),
    Example("POST", "/api/block_documents/filter", body={"include_secrets": False}),
    Example("POST", "/api/block_documents/filter", body={"include_secrets": True}),
    Example("GET", "/api/admin/settings"),
    Example("POST", "/api/variables/", body={"name": "v", "value": 1}),
    Example("GET", "/api/deployments/name/train/train"),
    Example("POST", f"/api/deployments/{OWN_DEPLOYMENT}/create_flow_run",
            body={"parameters": {"value": 1}}),
    Example("POST", f"/api/deployments/{STACK_DEPLOYMENT}/create_flow_run",
            body={"parameters": {}, "parent_task_run_id": OWN_TASK}),
    Example("POST", f"/api/deployments/{OWN_DEPLOYMENT}/create_flow_run",
            body={"job_variables": {"command": "id"}}),
    Example("POST", f"/api/flow_runs/{OWN_RUN}/set_state",
            body={"state": {"type": "CANCELLING"}, "force": False}),
    Example("POST", f"/api/flow_runs/{THEIR_RUN}/set_state", body={"state": {"type": "RUNNING"}}),
    Example("PATCH", f"/api/flow_runs/{OWN_RUN}/labels", body={"team": "a"}),
    Example("PATCH", f"/api/flow_runs/{THEIR_RUN}/labels", body={"team": "a"}),
    Example("PATCH", f"/api/flow_runs/{OWN_RUN}", body={"infrastructure_pid": "1"}),
    Example("PATCH", f"/api/flow_runs/{OWN_RUN}", body={"job_variables": {"command": "id"}}),
    Example("POST", "/api/flow_runs/", body={"flow_id": OWN_RUN, "parent_task_run_id": OWN_TASK}),
    Example("POST", "/api/flow_runs/", body={"flow_id": OWN_RUN, "work_queue_name": "in-stack",
                                             "parent_task_run_id": OWN_TASK}),
    Example("POST", "/api/logs/", body=[{"name": "n", "level": 20, "message": "m",
                                         "timestamp": NOW, "flow_run_id": OWN_RUN}]),
    Example("POST", "/api/logs/", body=[{"name": "n", "level": 20, "message": "m",
                                         "timestamp": NOW, "flow_run_id": THEIR_RUN}]),
    Example("POST", "/api/artifacts/", body={"type": "markdown", "data": "d",
                                             "flow_run_id": OWN_RUN}),
    Example("PATCH", f"/api/artifacts/{ARTIFACT}", body={"data": "d"}),
    Example("POST", "/api/task_runs/", body={"name": "t", "task_key": "k", "dynamic_key": "0",
                                             "flow_run_id": THEIR_RUN}),
    Example("POST", f"/api/work_pools/{POOL}/get_scheduled_flow_runs",
            body={"work_queue_names": ["default"]}),
    Example("POST", f"/api/work_pools/{POOL}/get_scheduled_flow_runs",
            body={"work_queue_names": ["in-stack"]}),
    Example("POST", f"/api/work_pools/{POOL}/workers/heartbeat", body={"name": "laptop"}),
    Example("POST", "/api/events", body=[{
        "event": "taxi.monitoring.breach", "occurred": NOW,
        "id": "99999999-9999-4999-8999-999999999999",
        "resource": {"prefect.resource.id": "taxi.model.m.1"}}]),
    Example("POST", "/api/events", body=[{
        "event": "prefect.flow-run.heartbeat", "occurred": NOW,
        "id": "99999999-9999-4999-8999-999999999998",
        "resource": {"prefect.resource.id": f"prefect.flow-run.{OWN_RUN}"}}]),
    Example("DELETE", f"/api/flow_runs/{OWN_RUN}"),
]  # fmt: skip


class FakeState:
    """Prefect's state as the decisions read it: one run of the worker's queue, one of the
    stack's, a task run in each, two deployments, an artifact of the worker's run."""

    async def flow_run(self, flow_run_id: Any) -> FlowRun | None:
        queue = {OWN_RUN: "default", THEIR_RUN: "in-stack"}.get(str(flow_run_id))
        if queue is None:
            return None
        return FlowRun(str(flow_run_id), POOL, queue, OWN_DEPLOYMENT, None)

    async def flow_run_of_task_run(self, task_run_id: Any) -> str | None:
        return {OWN_TASK: OWN_RUN, THEIR_TASK: THEIR_RUN}.get(str(task_run_id))

    async def task_run_exists(self, task_run_id: Any) -> bool:
        return str(task_run_id) in (OWN_TASK, THEIR_TASK)

    async def flow_run_of_artifact(self, artifact_id: Any) -> str | None:
        return OWN_RUN if str(artifact_id) == ARTIFACT else None

    async def flow_run_state_type(self, flow_run_id: Any) -> str | None:
        return "FAILED"

    async def deployment(self, deployment_id: Any) -> Deployment | None:
        known = {
            OWN_DEPLOYMENT: Deployment(OWN_DEPLOYMENT, "train/train", POOL, "default"),
            STACK_DEPLOYMENT: Deployment(STACK_DEPLOYMENT, "score/score", POOL, "in-stack"),
        }
        return known.get(str(deployment_id))


@dataclass
class Outcome:
    """What the gateway did with one request: its status, what it read the request as (the
    request rebuilt from Prefect's parse, None when it was refused before: not canonical, not
    valid), and what it forwarded (or None)."""

    status: int
    read_as: tuple[Any, ...] | None
    forwarded: tuple[Any, ...] | None


@dataclass
class Harness:
    """The gateway app in this process, with stand-in sign-in and state and a recording
    upstream."""

    app: Any
    gateway: Any
    forwarded: list[tuple[Any, ...]] = field(default_factory=list)
    read: list[tuple[Any, ...]] = field(default_factory=list)

    def call(self, role: str, method: str, raw_path: bytes, query: bytes, headers: list,
             body: bytes) -> Outcome:  # fmt: skip
        """One request through the gateway; what happened to it."""
        self.forwarded.clear()
        self.read.clear()
        status = asyncio.run(self.request(role, method, raw_path, query, headers, body))
        read_as = self.read[0] if self.read else None
        return Outcome(status, read_as, self.forwarded[0] if self.forwarded else None)

    async def request(self, role: str, method: str, raw_path: bytes, query: bytes,
                      headers: list, body: bytes) -> int:  # fmt: skip
        """Run the ASGI app on one request; the answer's status."""
        from urllib.parse import unquote

        token = f"{role}:password".encode()
        import base64

        scope = {
            "type": "http", "http_version": "1.1", "method": method, "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
            "query_string": query, "root_path": "", "client": ("192.0.2.1", 50000),
            "server": ("gateway", 4200),
            "headers": [(b"host", b"gateway"),
                        (b"authorization", b"Basic " + base64.b64encode(token)), *headers],
        }  # fmt: skip
        return await status_of(self.app, scope, body)


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Iterator[Harness]:
    """The gateway app, built once: Prefect's routes and schemas, its UI app."""
    import os

    from starlette.responses import JSONResponse

    from services.gateway.app import GatewaySettings, create_app

    os.environ.setdefault("PREFECT_UI_STATIC_DIRECTORY", str(tmp_path_factory.mktemp("ui")))
    settings = GatewaySettings(
        prefect_url="http://prefect-server:4200", auth_string="internal:secret",
        mlflow_url="http://mlflow:5000", database_url="postgresql://unused/gateway",
        work_pool=POOL,
    )  # fmt: skip
    app = create_app(settings)
    gateway = app.gateway
    harness = Harness(app, gateway)

    async def sign_in(credentials: Any, address: Any) -> Caller | int:
        return CALLERS.get(credentials.username, 401) if credentials else 401

    def rebuilt(method: str, parsed: Any) -> tuple[Any, ...]:
        return (method, parsed.path, parsed.query, parsed.headers, parsed.body)

    async def forward(method: str, parsed: Any) -> JSONResponse:
        harness.forwarded.append(rebuilt(method, parsed))
        if not harness.read:
            harness.read.append(rebuilt(method, parsed))
        return JSONResponse({}, status_code=200)

    decide = gateway.why_refused

    async def why_refused(caller: Caller, parsed: Any) -> str | None:
        harness.read.append(rebuilt(parsed.endpoint.method, parsed))
        return await decide(caller, parsed)

    async def record(*args: Any, **kwargs: Any) -> None:
        return None

    gateway.accounts.sign_in = sign_in
    gateway.forward = forward
    gateway.why_refused = why_refused
    gateway.record = record
    gateway.decider.state = FakeState()
    yield harness


def canonical_parts(example: Example) -> tuple[bytes, bytes, list, bytes]:
    """The example's raw path, query, headers and body as a client sends them."""
    from urllib.parse import urlencode

    body = b"" if example.body is None else json.dumps(example.body).encode()
    headers = [(b"content-type", b"application/json")] if body else []
    return example.path.encode(), urlencode(list(example.query)).encode(), headers, body


# --- spellings -----------------------------------------------------------------------------------

TRUE_SPELLINGS = ["true", "True", "TRUE", "1", "yes", "on", "t", "y", "YES", "On"]
FALSE_SPELLINGS = ["false", "False", "0", "no", "off", "f", "n", "NO"]
BOOLEAN_SPELLINGS = TRUE_SPELLINGS + FALSE_SPELLINGS


@st.composite
def path_spelling(draw: st.DrawFn, path: str) -> str:
    """Another spelling of ``path``."""
    segments = path.split("/")
    kind = draw(st.sampled_from([
        "double-slash", "dot", "dot-dot", "encode", "encode-upper", "double-encode",
        "trailing-slash", "case", "encoded-slash", "leading-double", "encoded-dot",
    ]))  # fmt: skip
    index = draw(st.integers(1, len(segments) - 1))
    if kind == "double-slash":
        segments.insert(index, "")
    elif kind == "dot":
        segments.insert(index, ".")
    elif kind == "dot-dot":
        segments[index:index] = [draw(st.sampled_from(["x", "api", "gateway"])), ".."]
    elif kind in ("encode", "encode-upper", "double-encode"):
        segment = segments[index] or "a"
        at = draw(st.integers(0, max(0, len(segment) - 1)))
        hexed = f"%{ord(segment[at]):02{'X' if kind == 'encode-upper' else 'x'}}"
        if kind == "double-encode":
            hexed = "%25" + hexed[1:]
        segments[index] = segment[:at] + hexed + segment[at + 1 :]
    elif kind == "trailing-slash":
        return path[:-1] if path.endswith("/") else path + "/"
    elif kind == "case":
        segments[index] = segments[index].swapcase()
    elif kind == "encoded-slash":
        joined = "/".join(segments)
        cut = draw(st.integers(1, len(joined) - 1))
        return joined[:cut] + joined[cut:].replace("/", "%2F", 1)
    elif kind == "leading-double":
        return "/" + draw(st.sampled_from(["", "x", "gateway"])) + path
    elif kind == "encoded-dot":
        segments.insert(index, draw(st.sampled_from(["%2e", "%2E", "%2e%2e", ".%2e"])))
    return "/".join(segments)


@st.composite
def variant(draw: st.DrawFn, example: Example) -> tuple[bytes, bytes, list, bytes]:
    """The example spelled otherwise: path, query or body."""
    raw_path, query, headers, body = canonical_parts(example)
    where = draw(st.sampled_from(["path", "query", "body", "headers"]))
    if where == "path":
        raw_path = draw(path_spelling(example.path)).encode()
    elif where == "query":
        pairs = list(example.query)
        how = draw(st.sampled_from(["repeat", "unknown", "boolean", "encoded-key"]))
        if how == "repeat" and pairs:
            pairs.append((pairs[0][0], draw(st.sampled_from(BOOLEAN_SPELLINGS))))
        elif how == "unknown" or not pairs:
            pairs.append((draw(st.sampled_from(["include_secrets", "x", "limit"])), "1"))
        elif how == "boolean":
            same = TRUE_SPELLINGS if pairs[0][1] in TRUE_SPELLINGS else FALSE_SPELLINGS
            pairs[0] = (pairs[0][0], draw(st.sampled_from(same)))
        else:
            key = pairs[0][0]
            pairs[0] = ("%" + f"{ord(key[0]):02x}" + key[1:], pairs[0][1])
            return raw_path, "&".join(f"{k}={v}" for k, v in pairs).encode(), headers, body
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()
    elif where == "body" and example.body is not None:
        text = json.dumps(example.body)
        how = draw(st.sampled_from(["whitespace", "repeat-key", "boolean", "bool-string"]))
        if how == "whitespace":
            text = "\n " + text.replace(":", " : ") + " \t"
        elif how == "repeat-key" and isinstance(example.body, dict) and example.body:
            key = next(iter(example.body))
            text = "{" + json.dumps(key) + ": null, " + text[1:]
        elif how == "boolean":
            text = text.replace("false", draw(st.sampled_from(["0", '"off"', '"no"', '"f"'])))
            text = text.replace("true", draw(st.sampled_from(["1", '"on"', '"yes"', '"t"'])))
            text = text.replace('"CANCELLING"', '"cancelling"')
        else:
            text = text.replace('"value": 1', '"value": "1"')
        body = text.encode()
    else:
        spelled = draw(st.sampled_from([
            b"application/json; charset=utf-8", b"Application/JSON", b"text/plain",
            b"application/x-www-form-urlencoded", b"application/merge-patch+json", b"",
        ]))  # fmt: skip
        headers = [(b"content-type", spelled)] if spelled else []
        if draw(st.booleans()):
            headers.append((b"cookie", b"session=1"))
    return raw_path, query, headers, body


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(
    example=st.sampled_from(EXAMPLES),
    role=st.sampled_from(sorted(CALLERS)),
    data=st.data(),
)
def test_a_spelling_is_refused_or_forwarded_as_its_canonical_request(harness, example, role, data):
    """A spelling is refused before any decision (not canonical, not valid), or read as a
    request of its own, or read as its canonical request: then decided and forwarded exactly as
    that (never allowed where the canonical request is refused)."""
    canonical = harness.call(role, example.method, *canonical_parts(example))
    spelled = data.draw(variant(example))
    outcome = harness.call(role, example.method, *spelled)
    if outcome.read_as is None:
        assert outcome.forwarded is None and outcome.status >= 400, (spelled, outcome)
        return
    if outcome.forwarded is not None and not example.path.endswith("/create_flow_run"):
        # (a run started through the gateway also gets its starter's tag: test_gateway.py)
        assert outcome.forwarded == outcome.read_as, "forwarded what was decided on, rebuilt"
    if outcome.read_as == canonical.read_as:
        assert outcome.forwarded == canonical.forwarded, (
            f"{role}: {spelled} reads as the canonical request ({canonical.status}) but was "
            f"decided otherwise ({outcome.status})"
        )


def test_every_example_is_decided_as_its_role_may(harness):
    """The examples themselves: a few decisions written out, so the property above cannot pass
    by refusing everything."""
    allowed = {
        (role, example.method, example.path, example.query): harness.call(
            role, example.method, *canonical_parts(example)
        ).forwarded is not None
        for example in EXAMPLES
        for role in CALLERS
    }  # fmt: skip
    assert all(v for (role, *_), v in allowed.items() if role == "admin")
    assert allowed[("alice", "POST", "/api/flow_runs/filter", ())]
    assert not allowed[("alice", "GET", f"/api/block_documents/{BLOCK}",
                        (("include_secrets", "true"),))]  # fmt: skip
    assert not allowed[("laptop", "PATCH", f"/api/flow_runs/{THEIR_RUN}/labels", ())]
    assert allowed[("laptop", "PATCH", f"/api/flow_runs/{OWN_RUN}/labels", ())]
    assert not allowed[("alice", "GET", "/api/admin/settings", ())]
    assert not allowed[("laptop", "DELETE", f"/api/flow_runs/{OWN_RUN}", ())]


def test_printable_paths_never_reach_prefect_by_another_name(harness):
    """Every printable ASCII character percent-encoded in an API path is refused."""
    for character in string.printable.strip():
        if character in string.ascii_letters + string.digits + "-._~":
            continue
        raw = f"/api/flow_runs/filter%{ord(character):02x}".encode()
        outcome = harness.call("admin", "POST", raw, b"", [], b"")
        assert outcome.forwarded is None or outcome.forwarded[1] != "/flow_runs/filter"
