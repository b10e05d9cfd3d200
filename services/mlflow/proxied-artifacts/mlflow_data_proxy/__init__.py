"""The data proxy's app (`mlflow server --app-name data-proxy`): MLflow's basic-auth app, and
only admins write.

The data proxy serves the data bucket through MLflow's artifact proxy. MLflow decides who may
write under a proxied path by reading its first segment as an experiment id, so an account that
creates experiment 7 on the tracking server (the same accounts) could write and delete under
``7/`` in the data bucket. Here every write to the proxy (PUT, POST, DELETE, multipart uploads)
needs an admin, whatever experiments the account has; reads stay MLflow's (any account).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def writer_of(authorization: bytes | None) -> tuple[int, str]:
    """200 when the basic-auth credentials are an admin's, 401 when wrong, 403 otherwise; and
    the account's name."""
    from mlflow.server.auth import store

    scheme, _, encoded = (authorization or b"").partition(b" ")
    try:
        username, _, password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return 401, ""
    if scheme.lower() != b"basic" or not store.authenticate_user(username, password):
        return 401, username
    return (200 if store.get_user(username).is_admin else 403), username


class AdminsWrite:
    """ASGI middleware in front of MLflow's: writes to the artifact proxy need an admin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        from mlflow.server.auth import _is_proxy_artifact_path

        is_write = scope["type"] == "http" and scope["method"] not in READ_METHODS
        if is_write and _is_proxy_artifact_path(scope["path"]):
            status, _ = await asyncio.to_thread(
                writer_of, dict(scope["headers"]).get(b"authorization")
            )
            if status != 200:
                await refuse(send, status, "only admins write to the data proxy")
                return
        await self.app(scope, receive, send)


async def refuse(send: Any, status: int, refusal: str) -> None:
    """MLflow's shape of a refusal: ``refusal`` when signed in (403), else a prompt to sign in."""
    message = refusal if status == 403 else "sign in"
    code = "PERMISSION_DENIED" if status == 403 else "UNAUTHENTICATED"
    body = json.dumps({"error_code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Basic realm="mlflow"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def replay(body: bytes) -> Any:
    """An ASGI ``receive`` that hands the app a body already read."""
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def create_app(app: Any = None) -> Any:
    """MLflow's basic-auth app around the server, behind the admins-only writes."""
    from mlflow.server import app as server_app
    from mlflow.server import auth
    from mlflow_platform_metrics import RequestMetrics

    served = auth.create_app(app if app is not None else server_app)
    return RequestMetrics(AdminsWrite(served), "data-proxy")
