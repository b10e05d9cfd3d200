"""The Prefect gateway: Prefect's API and UI for people and workers, each with their own account.

Open-source Prefect knows one shared auth string and no users. The gateway stands in front of it
(the only way in from outside the stack) and decides on exactly what Prefect will act on:

1. the path, canonical or refused (platform_edge.paths): never normalised;
2. outside /api, the UI: GET and HEAD only, answered by Prefect's own UI app in this process;
   nothing outside /api is forwarded;
3. under /api, the route Prefect's router sends the request to (prefect_api.PrefectApi), then the
   caller signed in with their MLflow account (HTTP basic auth, or Prefect's WebSocket auth
   message: ``PREFECT_API_AUTH_STRING=alice:<password>``);
4. the request's parameters and body read with the route's own schemas, and the caller's
   capability for the route (policy.py) checked on those values and Prefect's state
   (capabilities.py); secret values of blocks are for admins alone, on any route;
5. a request rebuilt from the parsed values alone, sent with the internal auth string (which
   never leaves the stack) to a URL built from parts.

Runs started through it carry a ``started-by:<account>`` tag, and every write, allowed or
refused, lands in the audit log. Open WebSockets are signed in again every password-cache TTL and
closed once their account is gone or its password changed.

Its own routes, under ``/gateway``: ``health`` (anyone), ``whoami`` (any account), and, for
admins, ``audit`` and ``workers/{name}`` (the worker accounts and their work queues).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from platform_edge.paths import NotCanonical, canonical_path
from platform_edge.signin import (
    Credentials,
    client_address,
    from_header,
    from_token,
    trusted_networks,
)
from platform_names import PROMOTE_DEPLOYMENT, STARTED_BY_TAG_PREFIX, TRAIN_DEPLOYMENT
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.gateway import policy
from services.gateway.accounts import MlflowAccounts, Store
from services.gateway.capabilities import Caller, Decider, HandOff, event_message, event_of
from services.gateway.prefect_api import Parsed, Refused, encoded_query, prefect_api
from services.gateway.state import PrefectState

logger = logging.getLogger("gateway")

API_PREFIX = "/api"
# Answer headers that belong to one hop, not to the answer passed on.
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "te", "trailers", "transfer-encoding",
     "upgrade", "content-length"}
)  # fmt: skip
MAX_BODY_BYTES = 32 * 1024 * 1024  # Prefect's largest bodies are batches of logs and events
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
WS_POLICY_VIOLATION = 1008
# Prefect's unauthenticated probes, as its own server leaves them open.
OPEN_ROUTES = frozenset({("GET", "/health"), ("GET", "/ready")})
# Hand-offs the platform's flows make by design: a training on a worker elsewhere hands its new
# challenger to the stack's promotion (flows/pipelines/train.py promote_on_stack).
HANDOFFS = {
    PROMOTE_DEPLOYMENT: HandOff(
        started_from=frozenset({TRAIN_DEPLOYMENT}),
        parameters=frozenset({"model_name", "color", "val_month", "val_path"}),
    )
}
# Parameters whose true value Prefect reads as "send secret values": admins only, on any route.
SECRET_PARAMETERS = ("include_secrets",)
# Header parameters that make a run look created by an automation: the stack's own.
AUTOMATION_PARAMETERS = ("prefect_automation_id", "prefect_automation_name")


@dataclass(frozen=True)
class GatewaySettings:
    """Where Prefect and MLflow are, the internal auth string, the platform's pool, the password
    cache's TTL, and the TLS proxy whose X-Forwarded-For is trusted."""

    prefect_url: str
    auth_string: str
    mlflow_url: str
    database_url: str
    cache_ttl_s: float = 30.0
    work_pool: str = "taxi-pool"
    trusted_proxies: str = ""


def refused(status: int, message: str) -> JSONResponse:
    """Prefect's shape of an error answer."""
    return JSONResponse({"detail": message, "exception_message": message}, status_code=status)


SIGN_IN = {
    401: "sign in with your MLflow account: PREFECT_API_AUTH_STRING=<user>:<password>",
    429: "too many wrong passwords lately: wait a little, then sign in again",
    503: "the MLflow server could not check the credentials; try again",
}


class Gateway:
    """The app's state: Prefect's routes, the upstream client, the accounts, the decisions."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.api = prefect_api()
        self.store = Store(settings.database_url)
        self.accounts = MlflowAccounts(settings.mlflow_url, settings.cache_ttl_s, self.store)
        upstream = httpx.URL(settings.prefect_url)
        self.upstream = httpx.AsyncClient(
            base_url=upstream.copy_with(path="/"), timeout=httpx.Timeout(60, connect=10)
        )
        token = base64.b64encode(settings.auth_string.encode()).decode()
        self.internal_authorization = f"Basic {token}"
        self.state = PrefectState(self.upstream, self.internal_authorization)
        self.decider = Decider(self.state, settings.work_pool, HANDOFFS)
        self.trusted = trusted_networks(settings.trusted_proxies)
        self.ui: ASGIApp = ui_app()

    # --- who is calling ------------------------------------------------------------------------

    def address(self, scope: Scope) -> str | None:
        """The client's address (the TLS proxy's header trusted only from the proxy)."""
        peer = scope.get("client")
        return client_address(peer[0] if peer else None, scope.get("headers", []), self.trusted)

    async def sign_in(self, request: Request) -> Caller | Response:
        """The caller, or the answer refusing them."""
        credentials = from_header(request.headers.get("authorization"))
        signed_in = await self.accounts.sign_in(credentials, self.address(request.scope))
        if isinstance(signed_in, int):
            # No WWW-Authenticate challenge, as Prefect's own server answers: a browser would
            # answer it with its native prompt for every call of the UI, which asks by itself.
            return refused(signed_in, SIGN_IN.get(signed_in, "sign in"))
        return signed_in

    # --- HTTP ----------------------------------------------------------------------------------

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every request: the UI's files outside /api, Prefect's API under it."""
        request = Request(scope, receive)
        path = canonical_path(scope.get("raw_path") or scope["path"].encode()).text
        if path != API_PREFIX and not path.startswith(API_PREFIX + "/"):
            if request.method not in ("GET", "HEAD"):
                await refused(405, "the UI's files are read-only")(scope, receive, send)
                return
            await self.ui({**scope, "path": path, "root_path": ""}, receive, send)
            return
        answer = await self.api_call(request, path.removeprefix(API_PREFIX) or "/")
        await answer(scope, receive, send)

    async def api_call(self, request: Request, api_path: str) -> Response:
        """One call of Prefect's API: matched, signed in, parsed, decided, forwarded."""
        try:
            endpoint, path_params = self.api.match(request.method, api_path)
        except Refused as problem:
            return refused(problem.status, problem.message)
        key = (endpoint.method, endpoint.template)
        caller: Caller | None = None
        if key not in OPEN_ROUTES:
            signed_in = await self.sign_in(request)
            if isinstance(signed_in, Response):
                return signed_in
            caller = signed_in
        if caller is not None and caller.role != "admin":
            rule = policy.rule_of(*key)
            if rule is None or rule.capability(policy.Role(caller.role)) is None:
                reason = (
                    f"{caller.role}s may not call {endpoint.method} {API_PREFIX}{endpoint.template}"
                )
                if not policy.is_read(*key):
                    await self.record(caller, request, 403, {"refused": reason})
                return refused(403, reason)
        body = await read_body(request)
        if body is None:
            return refused(413, f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        try:
            parsed = await self.api.parse(
                endpoint, path_params, request.scope.get("query_string", b""), request.headers, body
            )
        except Refused as problem:
            if caller is not None and not policy.is_read(*key):
                await self.record(caller, request, problem.status, {"refused": problem.message})
            return refused(problem.status, problem.message)
        if caller is not None:
            refusal = await self.why_refused(caller, parsed)
            if refusal is not None:
                await self.record(caller, request, 403, {"refused": refusal})
                return refused(403, refusal)
            if endpoint.template == "/deployments/{id}/create_flow_run":
                parsed = await self.with_starter(parsed, caller)
        response = await self.forward(request.method, parsed)
        if caller is not None and not policy.is_read(*key):
            await self.record(caller, request, response.status_code, detail_of(parsed))
        return response

    async def why_refused(self, caller: Caller, parsed: Parsed) -> str | None:
        """Why the caller may not make this call, or None."""
        if caller.role == "admin":
            return None
        for name in SECRET_PARAMETERS:
            if parsed.values.get(name) is True:
                return "secret values of blocks are for admins"
        if any(parsed.values.get(name) is not None for name in AUTOMATION_PARAMETERS):
            return "only the stack's automations start runs as automations"
        endpoint = parsed.endpoint
        rule = policy.rule_of(endpoint.method, endpoint.template)
        capability = rule.capability(policy.Role(caller.role)) if rule else None
        if capability is None:
            return f"{caller.role}s may not call {endpoint.method} {API_PREFIX}{endpoint.template}"
        return await self.decider.refusal(caller, capability, parsed)

    async def with_starter(self, parsed: Parsed, caller: Caller) -> Parsed:
        """The run's tags with ``started-by:<account>``: a teammate's own such tags are replaced;
        a worker's flows pass on the starter of the run that started them."""
        run = parsed.values["flow_run"]
        tags = [str(tag) for tag in run.tags or []]
        if not (caller.role == "worker" and any(t.startswith(STARTED_BY_TAG_PREFIX) for t in tags)):
            tags = [t for t in tags if not t.startswith(STARTED_BY_TAG_PREFIX)]
            tags.append(f"{STARTED_BY_TAG_PREFIX}{caller.username}")
        run.tags = tags
        return await self.api.reserialized(parsed)

    async def forward(self, method: str, parsed: Parsed) -> Response:
        """Send the rebuilt request to Prefect with the internal string; stream the answer."""
        headers = [*parsed.headers, ("authorization", self.internal_authorization)]
        if parsed.body is not None:
            headers.append(("content-type", "application/json"))
        url = httpx.URL(path=API_PREFIX + parsed.path, query=encoded_query(parsed.query).encode())
        upstream_request = self.upstream.build_request(
            method, url, headers=headers, content=parsed.body
        )
        try:
            answer = await self.upstream.send(upstream_request, stream=True)
        except httpx.HTTPError as error:
            return refused(502, f"Prefect's server did not answer: {type(error).__name__}")
        answer_headers = {
            name: value
            for name, value in answer.headers.items()
            if name.lower() not in HOP_HEADERS or name.lower() == "content-length"
        }
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers=answer_headers,
            background=BackgroundTask(answer.aclose),
        )

    async def record(
        self, caller: Caller, request: Request | WebSocket, status: int, detail: dict[str, Any]
    ) -> None:
        """Append one entry to the audit log; a log that cannot be written refuses nothing, but
        says so in the gateway's own log."""
        entry = {
            "username": caller.username,
            "role": caller.role,
            "method": getattr(request, "method", None) or "WS",
            "path": request.url.path,
            "status": status,
            "client": self.address(request.scope),
            "detail": detail,
        }
        try:
            await self.store.audit(entry)
        except Exception as error:  # noqa: BLE001 (the database is down: the API stays up)
            logger.error("audit log not written (%s): %s", error, json.dumps(entry))

    # --- WebSockets ----------------------------------------------------------------------------

    async def websocket(self, websocket: WebSocket) -> None:
        """Prefect's WebSocket protocol: the client's auth message signs it in; the gateway signs
        in upstream with the internal string; then messages pass both ways, those a worker sends
        checked one by one, until either side closes or the account is revoked."""
        try:
            path = canonical_path(websocket.scope.get("raw_path") or b"").text
            endpoint, path_params = self.api.match("WS", path.removeprefix(API_PREFIX))
            if not path.startswith(API_PREFIX + "/") or websocket.url.query:
                raise Refused(400, "not a WebSocket of Prefect's API")
        except (NotCanonical, Refused) as problem:
            await websocket.close(WS_POLICY_VIOLATION, str(problem)[:120])
            return
        if "prefect" not in websocket.scope.get("subprotocols", []):
            await websocket.close(WS_POLICY_VIOLATION, "the 'prefect' subprotocol is required")
            return
        await websocket.accept(subprotocol="prefect")
        try:
            message = await websocket.receive_json()
        except (WebSocketDisconnect, ValueError):
            return
        token = message.get("token") if isinstance(message, dict) else None
        credentials = from_token(token)
        signed_in = await self.accounts.sign_in(credentials, self.address(websocket.scope))
        if isinstance(signed_in, int) or credentials is None:
            reason = SIGN_IN.get(signed_in if isinstance(signed_in, int) else 401, "sign in")
            await websocket.close(WS_POLICY_VIOLATION, reason[:120])
            return
        caller = signed_in
        rule = policy.rule_of("WS", endpoint.template)
        capability = rule.capability(policy.Role(caller.role)) if rule else None
        if caller.role != "admin" and capability is None:
            reason = f"{caller.role}s may not open {path}"
            await self.record(caller, websocket, 403, {"refused": reason})
            await websocket.close(WS_POLICY_VIOLATION, reason)
            return
        if not policy.is_read("WS", endpoint.template):
            await self.record(caller, websocket, 101, {})
        session = Relay(self, websocket, caller, credentials, endpoint.template, path_params)
        await session.run(API_PREFIX + path.removeprefix(API_PREFIX))

    # --- the gateway's own routes ------------------------------------------------------------

    async def admin(self, request: Request) -> Caller | Response:
        """The caller, when an admin."""
        caller = await self.sign_in(request)
        if isinstance(caller, Caller) and caller.role != "admin":
            return refused(403, "only admins may use this route")
        return caller

    async def health(self, request: Request) -> Response:
        """Up when Prefect's server answers."""
        try:
            answer = await self.upstream.get(f"{API_PREFIX}/health", timeout=5)
        except httpx.HTTPError:
            return refused(503, "Prefect's server does not answer")
        return JSONResponse({"status": "ok" if answer.status_code == 200 else "degraded"})

    async def whoami(self, request: Request) -> Response:
        """Who the credentials are to the gateway."""
        caller = await self.sign_in(request)
        if not isinstance(caller, Caller):
            return caller
        return JSONResponse(
            {
                "username": caller.username,
                "role": caller.role,
                "work_queues": list(caller.work_queues),
            }
        )

    async def audit(self, request: Request) -> Response:
        """The latest audit entries (``?limit=100&username=``), newest first."""
        caller = await self.admin(request)
        if not isinstance(caller, Caller):
            return caller
        try:
            limit = min(int(request.query_params.get("limit", "100")), 10_000)
        except ValueError:
            return refused(400, "limit must be a whole number")
        username = request.query_params.get("username")
        return JSONResponse(await self.store.audit_entries(limit, username))

    async def workers(self, request: Request) -> Response:
        """PUT records a worker account's work queues; DELETE forgets it."""
        caller = await self.admin(request)
        if not isinstance(caller, Caller):
            return caller
        name = request.path_params["name"]
        if request.method == "DELETE":
            existed = await self.store.delete_worker(name)
            self.accounts.forget(name)
            await self.record(caller, request, 200, {"worker": name, "existed": existed})
            return JSONResponse({"username": name, "deleted": existed})
        body = await request.json()
        queues = body.get("work_queues") if isinstance(body, dict) else None
        if not queues or not all(isinstance(queue, str) and queue for queue in queues):
            return refused(400, 'the body must be {"work_queues": ["<queue>", ...]}')
        await self.store.set_worker(name, list(queues))
        self.accounts.forget(name)
        await self.record(caller, request, 200, {"worker": name, "work_queues": queues})
        return JSONResponse({"username": name, "work_queues": queues})


class Relay:
    """One WebSocket between a client and Prefect: messages both ways, the client's checked when
    the caller is a worker, and the caller signed in again every cache TTL."""

    def __init__(
        self,
        gateway: Gateway,
        websocket: WebSocket,
        caller: Caller,
        credentials: Credentials,
        template: str,
        path_params: Mapping[str, Any],
    ) -> None:
        self.gateway, self.websocket, self.caller = gateway, websocket, caller
        self.credentials, self.template, self.path_params = credentials, template, path_params
        self.hello_seen = False

    async def run(self, path: str) -> None:
        """Connect upstream, authenticate with the internal string, pass messages on."""
        base = httpx.URL(self.gateway.settings.prefect_url)
        url = base.copy_with(scheme="wss" if base.scheme == "https" else "ws", path=path, query=b"")
        try:
            async with websockets.connect(str(url), subprotocols=["prefect"]) as upstream:  # type: ignore[list-item]
                auth = {"type": "auth", "token": self.gateway.settings.auth_string}
                await upstream.send(json.dumps(auth))
                await self.websocket.send_text(str(await upstream.recv()))  # auth_success
                await self.pump(upstream)
        except (OSError, websockets.WebSocketException):
            with contextlib.suppress(Exception):
                await self.websocket.close(1011, "Prefect's server closed the connection")

    async def pump(self, upstream: Any) -> None:
        """Messages both ways until either side closes, a message is refused, or the account is
        no longer signed in."""

        async def downstream_to_upstream() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    message = await self.websocket.receive_text()
                    checked = await self.checked(message)
                    if checked is None:
                        return
                    await upstream.send(checked)

        async def upstream_to_downstream() -> None:
            async for message in upstream:
                if isinstance(message, bytes):
                    await self.websocket.send_bytes(message)
                else:
                    await self.websocket.send_text(message)

        tasks = [
            asyncio.create_task(downstream_to_upstream()),
            asyncio.create_task(upstream_to_downstream()),
            asyncio.create_task(self.revocation()),
        ]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.websocket.close()

    async def revocation(self) -> None:
        """Sign the caller in again every cache TTL (asking MLflow, not the cache); return, and
        so close the socket, once the account is gone or its password changed."""
        ttl = max(self.gateway.settings.cache_ttl_s, 1.0)
        while True:
            await asyncio.sleep(ttl)
            status, caller = await self.gateway.accounts.verify(self.credentials)
            if status == 503:
                continue  # MLflow is down: not a revocation
            if status != 200 or caller is None or caller.role != self.caller.role:
                await self.refuse("the account was revoked or changed: sign in again")
                return

    async def checked(self, message: str) -> str | None:
        """What to send upstream for a client's message (rebuilt from what was checked), or
        None after refusing it and closing."""
        if self.caller.role == "admin" and self.template != "/events/in":
            return message
        if self.template == "/events/in":
            return await self.checked_event(message)
        if self.template == "/work_pools/{work_pool_name}/workers/connect":
            return await self.checked_worker_frame(message)
        return message  # the subscriptions' filters (events/out, logs/out): reads

    async def checked_event(self, message: str) -> str | None:
        """An event as Prefect reads it, a worker's only about its own runs."""
        try:
            event = event_of(message)
        except ValueError as error:
            await self.refuse(f"not an event: {str(error)[:80]}")
            return None
        if self.caller.role != "admin":
            reason = await self.gateway.decider.own_event(self.caller, event)
            if reason is not None:
                await self.refuse(reason)
                return None
        return event_message(event)

    async def checked_worker_frame(self, message: str) -> str | None:
        """A worker channel frame as Prefect reads it: first the hello (own name, pool and
        queues), then only the frames a worker sends."""
        from prefect.client.schemas.worker_channel import (
            WorkerHelloFrame,
            validate_worker_channel_frame,
        )

        try:
            frame = validate_worker_channel_frame(json.loads(message))
        except ValueError as error:
            await self.refuse(f"not a worker channel frame: {str(error)[:80]}")
            return None
        if not self.hello_seen:
            if not isinstance(frame, WorkerHelloFrame):
                await self.refuse("the worker channel starts with the worker's hello")
                return None
            pool = str(self.path_params.get("work_pool_name", ""))
            reason = self.gateway.decider.worker_channel_hello(self.caller, pool, frame)
            if reason is not None:
                await self.refuse(reason)
                return None
            self.hello_seen = True
        elif isinstance(frame, WorkerHelloFrame):
            await self.refuse("one hello per worker channel")
            return None
        return frame.model_dump_json(exclude_unset=True)

    async def refuse(self, reason: str) -> None:
        """Record the refusal and close the socket."""
        await self.gateway.record(self.caller, self.websocket, 403, {"refused": reason})
        with contextlib.suppress(Exception):
            await self.websocket.close(WS_POLICY_VIOLATION, reason[:120])


def detail_of(parsed: Parsed) -> dict[str, Any]:
    """What the audit log keeps of a write: its body's top-level keys and, for runs, the
    parameters and tags (never a log's or artifact's content)."""
    kept: dict[str, Any] = {"fields": sorted(parsed.body_keys)}
    run = parsed.values.get("flow_run")
    for name in ("parameters", "tags", "name"):
        value = getattr(run, name, None) if run is not None else None
        if value:
            kept[name] = value if name != "parameters" else dict(value)
    state = parsed.values.get("state")
    if state is not None:
        kept["state"] = {"type": str(state.type.value), "name": state.name}
    plain: dict[str, Any] = json.loads(json.dumps(kept, default=str))
    return plain


async def read_body(request: Request) -> bytes | None:
    """The request's body, or None past MAX_BODY_BYTES."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return None
    return bytes(raw)


def ui_app() -> ASGIApp:
    """Prefect's own UI app (its files and its page, with the settings it serves the browser),
    answered here: nothing outside /api reaches Prefect's server."""
    from prefect.server.api.server import create_ui_app

    return create_ui_app(ephemeral=False)


def create_app(settings: GatewaySettings) -> GatewayApp:
    """The ASGI app."""
    gateway = Gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.upstream.aclose()

    routes = [
        Route("/gateway/health", gateway.health, methods=["GET"]),
        Route("/gateway/whoami", gateway.whoami, methods=["GET"]),
        Route("/gateway/audit", gateway.audit, methods=["GET"]),
        Route("/gateway/workers/{name}", gateway.workers, methods=["PUT", "DELETE"]),
        WebSocketRoute("/{path:path}", gateway.websocket),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return GatewayApp(app, gateway)


class GatewayApp:
    """The gateway's own routes (exact canonical paths under /gateway), WebSockets, and every
    other HTTP request to the pipeline above (nothing is matched by a second router)."""

    def __init__(self, routes: Starlette, gateway: Gateway) -> None:
        self.routes, self.gateway = routes, gateway
        self.state = routes.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                path = canonical_path(scope.get("raw_path") or scope["path"].encode()).text
            except NotCanonical as problem:
                await refused(400, f"not a canonical path: {problem}")(scope, receive, send)
                return
            if path.startswith("/gateway/"):
                await self.routes(scope, receive, send)
                return
            await self.gateway.http(scope, receive, send)
            return
        await self.routes(scope, receive, send)


__all__ = ["GatewaySettings", "create_app"]
