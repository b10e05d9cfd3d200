"""The edge in front of an MLflow server (the tracking server's app, the data proxy's): it decides
on exactly what MLflow will act on.

MLflow's basic-auth app checks a request against the values *it* reads, and MLflow's handlers act
on the values *they* read; the two differ (a DELETE is checked against its query string and
handled on its body when that is not JSON: a teammate deleted another's model that way). Here, in
front of both:

1. the path must be canonical (platform_edge.paths), and MLflow's own router must send it
   somewhere: its FastAPI routes first (artifacts, server info, the GenAI routers), then the
   Flask app's url map, matched with werkzeug as Flask matches it; the route is known by its
   handler (Flask's endpoint name), never by a regex of ours over the path;
2. an API write (POST, PUT, PATCH, DELETE outside the artifact proxy) carries a JSON object body
   (Content-Type application/json) and no query string: MLflow's handlers then read exactly the
   body the app decides on, and its auth reads the same (JSON bodies are what auth reads too);
   an artifact upload carries no query string either;
3. a sign-in attempt for an account that does not exist costs what a wrong password costs (a
   dummy hash), so account names cannot be listed by timing;
4. the service's own rules (a subclass's ``decide``) on the matched route and the parsed body;
5. the request passes on with the body it was decided on, and the route template is left in
   the scope for the metrics (never the raw path: series stay bounded).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from platform_edge.answers import read_body, replay, respond_json
from platform_edge.paths import NotCanonical, canonical_path
from platform_edge.signin import from_header

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]
# Where the edge leaves the matched route's template for the request metrics.
ROUTE_KEY = "platform.route"
OTHER = "other"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Handlers of MLflow's artifact proxy that write: their bodies are files, not JSON.
ARTIFACT_WRITES = frozenset(
    {
        "_upload_artifact",
        "_delete_artifact_mlflow_artifacts",
        "_create_multipart_upload_artifact",
        "_complete_multipart_upload_artifact",
        "_abort_multipart_upload_artifact",
        "upload_artifact",  # the FastAPI artifact router's PUT
        "delete_artifact",
    }
)
MAX_JSON_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Route:
    """The route MLflow sends a request to: its handler's name, its template, its arguments."""

    endpoint: str
    template: str
    args: dict[str, Any]

    @property
    def artifact_path(self) -> str | None:
        """The artifact path of an artifact-proxy route."""
        value = self.args.get("artifact_path", self.args.get("path"))
        return str(value) if value is not None else None


class NoRoute(Exception):
    """MLflow has no route for the request: the status (404, 405) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class MlflowRouter:
    """MLflow's routes as its server dispatches them: the FastAPI app's routes before its
    catch-all mount of the Flask app, then the Flask app's url map."""

    def __init__(self, fastapi_app: Any, flask_app: Any) -> None:
        from fastapi.routing import iter_route_contexts

        self.contexts = [
            context
            for context in iter_route_contexts(fastapi_app.router.routes)
            if type(context.original_route).__name__ != "Mount"
        ]
        self.flask_app = flask_app

    @cached_property
    def url_map(self) -> Any:
        """Flask's url map, bound as Flask binds it for a request (no host, no scheme rules)."""
        return self.flask_app.url_map.bind("mlflow", url_scheme="http")

    def match(self, method: str, path: str) -> Route:
        """The route of ``method path``; NoRoute when MLflow has none."""
        from starlette.routing import Match
        from werkzeug.exceptions import MethodNotAllowed, NotFound
        from werkzeug.routing import RequestRedirect

        scope = {"type": "http", "path": path, "root_path": "", "method": method}
        for context in self.contexts:
            found, child_scope = context.matches(scope)
            if found == Match.FULL:
                endpoint = getattr(context, "endpoint", None)
                name = getattr(endpoint, "__name__", str(context.path_format))
                return Route(name, str(context.path_format), child_scope.get("path_params", {}))
        try:
            rule, args = self.url_map.match(path, method=method, return_rule=True)
        except MethodNotAllowed:
            raise NoRoute(405, f"{path} does not take {method}") from None
        except (NotFound, RequestRedirect):
            raise NoRoute(404, f"{path} is not a route of MLflow's server") from None
        return Route(str(rule.endpoint), str(rule.rule), dict(args))


@dataclass
class Call:
    """One request as the edge decided on it: route, the JSON body (parsed, for API writes) and
    the raw bytes passed on."""

    scope: MutableMapping[str, Any]
    route: Route
    body: bytes | None
    fields: dict[str, Any]
    username: str
    receive: Any  # the request's own, for a body the edge did not read (an artifact upload)

    @property
    def method(self) -> str:
        return str(self.scope["method"])

    @property
    def authorization(self) -> bytes | None:
        return dict(self.scope["headers"]).get(b"authorization")


class MlflowEdge:
    """ASGI middleware in front of MLflow's app (its basic auth and handlers): canonical paths,
    MLflow's routes, JSON-only API writes, equal-time sign-in, then ``decide``."""

    service = "mlflow"

    def __init__(self, app: ASGIApp, router: MlflowRouter) -> None:
        self.app, self.router = app, router

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            path = canonical_path(scope.get("raw_path") or scope["path"].encode()).text
            route = self.router.match(scope["method"], path)
        except NotCanonical as problem:
            await respond_json(
                send, 400, error("INVALID_PARAMETER_VALUE", f"not a canonical path: {problem}")
            )
            return
        except NoRoute as problem:
            await respond_json(send, problem.status, error("ENDPOINT_NOT_FOUND", problem.message))
            return
        scope[ROUTE_KEY] = route.template
        body: bytes | None = None
        fields: dict[str, Any] = {}
        if scope["method"] not in READ_METHODS:
            if scope.get("query_string"):
                only_body = "writes take their values in the body only"
                await respond_json(send, 400, error("INVALID_PARAMETER_VALUE", only_body))
                return
            if route.endpoint not in ARTIFACT_WRITES:
                parsed = await json_object(scope, receive)
                if isinstance(parsed, str):
                    await respond_json(send, 400, error("INVALID_PARAMETER_VALUE", parsed))
                    return
                body, fields = parsed
        username = await equal_time_sign_in(scope)
        call = Call(scope, route, body, fields, username, receive)
        if await self.decide(call, send):
            return
        inner_receive = replay(body) if body is not None else receive
        await self.app(scope, inner_receive, send)

    async def decide(self, call: Call, send: Any) -> bool:
        """The service's own rules: answer (and return True), or let the request pass."""
        return False


async def json_object(
    scope: MutableMapping[str, Any], receive: Any
) -> tuple[bytes, dict[str, Any]] | str:
    """An API write's body and its JSON object; else why it is refused."""
    headers = dict(scope["headers"])
    body = await read_body(receive, MAX_JSON_BYTES)
    if body is None:
        return f"bodies of MLflow's API are limited to {MAX_JSON_BYTES} bytes"
    if not body:
        return "writes of MLflow's API carry a JSON object body"
    content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
    if content_type.lower() != "application/json":
        return "MLflow's API takes JSON bodies (Content-Type: application/json)"
    try:
        fields = json.loads(body)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(fields, dict):
        return "the body must be a JSON object"
    return body, fields


def error(code: str, message: str) -> dict[str, str]:
    """MLflow's shape of an error answer."""
    return {"error_code": code, "message": message}


# A hash of a random password, made once: checking a password against it costs what checking a
# real account's costs, and it can never match.
_DUMMY_HASH: str | None = None


def dummy_hash() -> str:
    """The process's dummy password hash, made with MLflow's own hashing."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        from werkzeug.security import generate_password_hash

        _DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(32))
    return _DUMMY_HASH


async def equal_time_sign_in(scope: MutableMapping[str, Any]) -> str:
    """The username of the request's basic-auth credentials (''); for one no account has, the
    hashing MLflow does for an existing account's wrong password, so both take the same time."""
    import asyncio

    credentials = from_header(dict(scope["headers"]).get(b"authorization"))
    if credentials is None:
        return ""

    def hash_if_unknown() -> None:
        from mlflow.server.auth import store
        from werkzeug.security import check_password_hash

        if not store.has_user(credentials.username):
            check_password_hash(dummy_hash(), credentials.password)

    await asyncio.to_thread(hash_if_unknown)
    return credentials.username


def writer_of(authorization: bytes | None) -> tuple[int, str]:
    """200 when the basic-auth credentials are an admin's, 401 when wrong, 403 otherwise; and
    the account's name."""
    from mlflow.server.auth import store

    credentials = from_header(authorization)
    if credentials is None or not store.authenticate_user(
        credentials.username, credentials.password
    ):
        return 401, credentials.username if credentials else ""
    return (200 if store.get_user(credentials.username).is_admin else 403), credentials.username


async def refuse(send: Any, status: int, refusal: str) -> None:
    """MLflow's shape of a refusal: ``refusal`` when signed in (403), else a prompt to sign in."""
    message = refusal if status == 403 else "sign in"
    code = "PERMISSION_DENIED" if status == 403 else "UNAUTHENTICATED"
    headers = [(b"www-authenticate", b'Basic realm="mlflow"')] if status == 401 else []
    await respond_json(send, status, error(code, message), headers)
