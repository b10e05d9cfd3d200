"""The Prefect gateway: Prefect's API and UI for people and workers, each with their own account.

Open-source Prefect knows one shared auth string and no users. The gateway stands in front of it
(the only way in from outside the stack), signs each caller in with their MLflow account (HTTP
basic auth, or Prefect's WebSocket auth message: ``PREFECT_API_AUTH_STRING=alice:<password>``),
lets the call through when the caller's role may make it (services/gateway/policy.py), and
forwards it with the internal auth string, which never leaves the stack. Runs started through it
carry a ``started-by:<account>`` tag, and every write lands in the audit log.

Its own routes, under ``/gateway``: ``health`` (anyone), ``whoami`` (any account), and, for
admins, ``audit`` and ``workers/{name}`` (the worker accounts and their work queues).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import websockets
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.gateway import policy
from services.gateway.accounts import MlflowAccounts, Store
from services.gateway.checks import Caller, refusal, with_starter
from services.signin import from_header, from_token

logger = logging.getLogger("gateway")

API_PREFIX = "/api"
# Headers that belong to one hop, not to the request or answer passed on.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "authorization",
        "content-length",
    }
)
MAX_BODY_BYTES = 32 * 1024 * 1024  # Prefect's largest bodies are batches of logs and events
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
WS_POLICY_VIOLATION = 1008


@dataclass(frozen=True)
class GatewaySettings:
    """Where Prefect and MLflow are, the internal auth string, and the password cache's TTL."""

    prefect_url: str
    auth_string: str
    mlflow_url: str
    database_url: str
    cache_ttl_s: float = 30.0


def refused(status: int, message: str) -> JSONResponse:
    """Prefect's shape of an error answer."""
    return JSONResponse({"detail": message, "exception_message": message}, status_code=status)


SIGN_IN = {
    401: "sign in with your MLflow account: PREFECT_API_AUTH_STRING=<user>:<password>",
    429: "too many wrong passwords lately: wait a little, then sign in again",
    503: "the MLflow server could not check the credentials; try again",
}


class Gateway:
    """The app's state: the upstream client, the accounts, the store, the audit queue."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.store = Store(settings.database_url)
        self.accounts = MlflowAccounts(settings.mlflow_url, settings.cache_ttl_s, self.store)
        self.upstream = httpx.AsyncClient(
            base_url=settings.prefect_url.rstrip("/"), timeout=httpx.Timeout(60, connect=10)
        )
        token = base64.b64encode(settings.auth_string.encode()).decode()
        self.internal_authorization = f"Basic {token}"
        self.flow_runs: dict[str, tuple[float, Mapping[str, Any] | None]] = {}

    # --- HTTP --------------------------------------------------------------------------------

    async def http(self, request: Request) -> Response:
        """Anything outside /api (the UI's files) passes through; /api is signed in and checked."""
        path = request.url.path
        if any(segment in (".", "..") for segment in path.split("/")):
            # A client would resolve these; forwarded, they could reach another route than the
            # one checked.
            return refused(400, "paths with . or .. segments are not accepted")
        if not path.startswith(API_PREFIX + "/") and path != API_PREFIX:
            if request.method not in ("GET", "HEAD"):
                return refused(405, "the UI's files are read-only")
            return await self.forward(request, path, None)
        api_path = path[len(API_PREFIX) :] or "/"
        template = policy.route_of(request.method, api_path)
        if template in ("/health", "/ready") and request.method == "GET":
            return await self.forward(request, path, None)
        signed_in = await self.sign_in(request)
        if isinstance(signed_in, Response):
            return signed_in
        caller = signed_in
        body = await self.json_body(request)
        if isinstance(body, Response):
            return body
        reason = await self.why_refused(caller, request, api_path, template, body)
        if reason is not None:
            await self.record(caller, request, 403, {"refused": reason})
            return refused(403, reason)
        content: bytes | None = None
        if template == "/deployments/{id}/create_flow_run" and isinstance(body, dict):
            content = json.dumps(with_starter(body, caller)).encode()
        response = await self.forward(request, path, content)
        if not policy.is_read(request.method, template):
            await self.record(caller, request, response.status_code, self.detail(body))
        return response

    async def why_refused(
        self, caller: Caller, request: Request, api_path: str, template: str | None, body: Any
    ) -> str | None:
        """Why the caller may not make this call, or None."""
        if caller.role == "admin":
            return None
        role = policy.Role(caller.role)
        if template is None:
            return (
                f"{request.method} {API_PREFIX}{api_path} is not a route the gateway lets through"
            )
        rules = policy.rules_for(request.method, template, role)
        if not rules:
            return f"{caller.role}s may not call {request.method} {API_PREFIX}{template}"
        path_id = api_path.strip("/").split("/")[1] if "{id}" in template else None
        reasons = []
        for rule in rules:
            if rule.check is None:
                return None
            reason = await refusal(
                rule.check, caller, body, request.query_params, path_id, self.flow_run
            )
            if reason is None:
                return None
            reasons.append(reason)
        return "; ".join(reasons)

    @staticmethod
    async def json_body(request: Request) -> Any:
        """The request's JSON body (None when empty), or the answer refusing it."""
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                return refused(413, f"request bodies are limited to {MAX_BODY_BYTES} bytes")
        request.state.raw = raw
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw  # not JSON: Prefect answers it (checks see a non-object and refuse)

    async def forward(self, request: Request, path: str, content: bytes | None) -> Response:
        """Pass the request to Prefect with the internal string; stream the answer back."""
        headers = [
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in HOP_HEADERS
        ]
        headers.append(("authorization", self.internal_authorization))
        body = content if content is not None else getattr(request.state, "raw", None)
        if body is None and request.method not in ("GET", "HEAD"):
            body = await request.body()
        upstream_request = self.upstream.build_request(
            request.method,
            path,
            params=request.url.query or None,
            headers=headers,
            content=body,
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

    async def flow_run(self, flow_run_id: str) -> Mapping[str, Any] | None:
        """A flow run as Prefect has it (its deployment and queue), cached for a minute."""
        cached = self.flow_runs.get(flow_run_id)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        answer = await self.upstream.get(
            f"{API_PREFIX}/flow_runs/{flow_run_id}",
            headers={"authorization": self.internal_authorization},
        )
        found = answer.json() if answer.status_code == 200 else None
        if len(self.flow_runs) > 10_000:
            self.flow_runs.clear()
        self.flow_runs[flow_run_id] = (time.monotonic() + 60, found)
        return found

    @staticmethod
    def detail(body: Any) -> dict[str, Any]:
        """What the audit log keeps of a write's body: its top-level keys and, for runs, the
        parameters and tags (never a log's or artifact's content)."""
        if not isinstance(body, dict):
            return {}
        kept = {key: body[key] for key in ("parameters", "tags", "name", "state") if key in body}
        return {"fields": sorted(body), **kept}

    async def record(
        self, caller: Caller, request: Request, status: int, detail: dict[str, Any]
    ) -> None:
        """Append one entry to the audit log; a log that cannot be written refuses nothing, but
        says so in the gateway's own log."""
        entry = {
            "username": caller.username,
            "role": caller.role,
            "method": request.method,
            "path": request.url.path,
            "status": status,
            "client": request.client.host if request.client else None,
            "detail": detail,
        }
        try:
            await self.store.audit(entry)
        except Exception as error:  # noqa: BLE001 (the database is down: the API stays up)
            logger.error("audit log not written (%s): %s", error, json.dumps(entry))

    # --- WebSockets --------------------------------------------------------------------------

    async def websocket(self, websocket: WebSocket) -> None:
        """Prefect's WebSocket protocol: the client's auth message signs it in, the gateway
        signs in upstream with the internal string, then messages pass both ways."""
        path = websocket.url.path
        api_path = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else None
        if "prefect" not in websocket.scope.get("subprotocols", []) or api_path is None:
            await websocket.close(WS_POLICY_VIOLATION, "the 'prefect' subprotocol is required")
            return
        await websocket.accept(subprotocol="prefect")
        try:
            message = await websocket.receive_json()
        except (WebSocketDisconnect, ValueError):
            return
        token = message.get("token") if isinstance(message, dict) else None
        address = websocket.client.host if websocket.client else None
        signed_in = await self.accounts.sign_in(from_token(token), address)
        if isinstance(signed_in, int):
            await websocket.close(WS_POLICY_VIOLATION, SIGN_IN[signed_in][:120])
            return
        caller = signed_in
        template = policy.route_of("WS", api_path)
        if caller.role != "admin":
            allowed = template and policy.rules_for("WS", template, policy.Role(caller.role))
            if not allowed:
                reason = f"{caller.role}s may not open {path}"
                await self.record_ws(caller, websocket, 403, reason)
                await websocket.close(WS_POLICY_VIOLATION, reason)
                return
        if template == "/events/in":
            await self.record_ws(caller, websocket, 101, None)
        await self.relay(websocket, api_path)

    async def relay(self, websocket: WebSocket, api_path: str) -> None:
        """Connect upstream, authenticate with the internal string, then pass messages on."""
        base = urlsplit(self.settings.prefect_url)
        scheme = "wss" if base.scheme == "https" else "ws"
        query = websocket.url.query
        url = urlunsplit((scheme, base.netloc, f"{API_PREFIX}{api_path}", query, ""))
        try:
            async with websockets.connect(url, subprotocols=["prefect"]) as upstream:  # type: ignore[list-item]
                await upstream.send(
                    json.dumps({"type": "auth", "token": self.settings.auth_string})
                )
                await websocket.send_text(str(await upstream.recv()))  # auth_success
                await self.pump(websocket, upstream)
        except (OSError, websockets.WebSocketException):
            with contextlib.suppress(Exception):
                await websocket.close(1011, "Prefect's server closed the connection")

    @staticmethod
    async def pump(websocket: WebSocket, upstream: Any) -> None:
        """Messages both ways until either side closes."""

        async def downstream_to_upstream() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await upstream.send(await websocket.receive_text())

        async def upstream_to_downstream() -> None:
            async for message in upstream:
                if isinstance(message, bytes):
                    await websocket.send_bytes(message)
                else:
                    await websocket.send_text(message)

        tasks = [
            asyncio.create_task(downstream_to_upstream()),
            asyncio.create_task(upstream_to_downstream()),
        ]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            await websocket.close()

    async def record_ws(
        self, caller: Caller, websocket: WebSocket, status: int, reason: str | None
    ) -> None:
        """An audit entry for a WebSocket opened to write (events) or refused."""
        entry = {
            "username": caller.username,
            "role": caller.role,
            "method": "WS",
            "path": websocket.url.path,
            "status": status,
            "client": websocket.client.host if websocket.client else None,
            "detail": {"refused": reason} if reason else {},
        }
        try:
            await self.store.audit(entry)
        except Exception as error:  # noqa: BLE001
            logger.error("audit log not written (%s): %s", error, json.dumps(entry))

    # --- the gateway's own routes ------------------------------------------------------------

    async def sign_in(self, request: Request) -> Caller | Response:
        """The caller, or the answer refusing them."""
        address = request.client.host if request.client else None
        credentials = from_header(request.headers.get("authorization"))
        signed_in = await self.accounts.sign_in(credentials, address)
        if isinstance(signed_in, int):
            return refused(signed_in, SIGN_IN[signed_in])
        return signed_in

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


def create_app(settings: GatewaySettings) -> Starlette:
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
        Route("/{path:path}", gateway.http, methods=METHODS),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app


__all__ = ["GatewaySettings", "create_app"]
