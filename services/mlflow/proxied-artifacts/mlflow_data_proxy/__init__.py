"""The data proxy's app (`mlflow server --app-name data-proxy`): MLflow's basic-auth app, and
only admins write.

The data proxy serves the data bucket through MLflow's artifact proxy. MLflow decides who may
write under a proxied path by reading its first segment as an experiment id, so an account that
creates experiment 7 on the tracking server (the same accounts) could write and delete under
``7/`` in the data bucket. Here every write to the proxy (PUT, POST, DELETE, multipart uploads)
needs an admin, whatever experiments the account has; reads stay MLflow's (any account).

One exception: the model server's account (DATA_PROXY_TRAFFIC_WRITER) may add what it answered,
a PUT of one Parquet object under ``served/year=YYYY/month=MM/`` (services/serving/traffic.py);
nothing else, and no other method. MLflow's own check would read ``served`` as an experiment id
and refuse, so this app stores such an object itself, with the proxy's key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SERVED_OBJECT = re.compile(
    r"^/api/2\.0/mlflow-artifacts/artifacts/served/year=[0-9]{4}/month=[0-9]{2}/"
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.parquet$"
)
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

    def __init__(self, app: ASGIApp, traffic_writer: str = "") -> None:
        self.app, self.traffic_writer = app, traffic_writer

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        from mlflow.server.auth import _is_proxy_artifact_path

        is_write = scope["type"] == "http" and scope["method"] not in READ_METHODS
        if is_write and _is_proxy_artifact_path(scope["path"]):
            status, username = await asyncio.to_thread(
                writer_of, dict(scope["headers"]).get(b"authorization")
            )
            if status == 403 and self.adds_served_traffic(scope, username):
                await store_served(scope, receive, send)
                return
            if status != 200:
                await refuse(send, status, "only admins write to the data proxy")
                return
        await self.app(scope, receive, send)

    def adds_served_traffic(self, scope: MutableMapping[str, Any], username: str) -> bool:
        """True for the model server's PUT of one batch of answered records."""
        return bool(
            self.traffic_writer
            and username == self.traffic_writer
            and scope["method"] == "PUT"
            and not scope.get("query_string")
            and SERVED_OBJECT.match(scope["path"])
            and ".." not in scope["path"]
        )


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


MAX_SERVED_BYTES = 64 * 1024 * 1024
ARTIFACT_API = "/api/2.0/mlflow-artifacts/artifacts/"


async def store_served(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """Store one batch of answered records at its key in the data bucket (at most 64 MiB)."""
    from mlflow.server.constants import ARTIFACTS_DESTINATION_ENV_VAR

    body = await read_body(receive, MAX_SERVED_BYTES)
    if body is None:
        await respond_json(send, 413, {"error_code": "REQUEST_TOO_LARGE", "message": "64 MiB"})
        return
    destination = os.environ[ARTIFACTS_DESTINATION_ENV_VAR].removeprefix("s3://").rstrip("/")
    bucket, _, root = destination.partition("/")
    key = (f"{root}/" if root else "") + scope["path"].removeprefix(ARTIFACT_API)
    await asyncio.to_thread(put_object, bucket, key, body)
    await respond_json(send, 200, {})


def put_object(bucket: str, key: str, data: bytes) -> None:
    """One object into the bucket, with the proxy's own S3 key."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None,
        config=Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}),
    )
    client.put_object(Bucket=bucket, Key=key, Body=data)


async def read_body(receive: Any, limit: int | None = None) -> bytes | None:
    """A request's whole body, read from ASGI ``receive``; None once it passes ``limit`` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if limit is not None and len(body) > limit:
            return None
        if not message.get("more_body"):
            return bytes(body)


async def respond_json(send: Any, status: int, body: dict[str, Any]) -> None:
    """A JSON answer."""
    payload = json.dumps(body).encode()
    length = str(len(payload)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", length)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def create_app(app: Any = None) -> Any:
    """MLflow's basic-auth app around the server, behind the admins-only writes."""
    from mlflow.server import app as server_app
    from mlflow.server import auth
    from mlflow_platform_metrics import RequestMetrics

    served = auth.create_app(app if app is not None else server_app)
    writer = os.environ.get("DATA_PROXY_TRAFFIC_WRITER", "")
    return RequestMetrics(AdminsWrite(served, writer), "data-proxy")
