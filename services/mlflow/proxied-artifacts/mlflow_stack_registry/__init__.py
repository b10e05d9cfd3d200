"""The tracking server's app (`mlflow server --app-name stack-registry`): MLflow's basic-auth app,
and only the stack's account and admins change what the platform's model serves.

MLflow lets whoever may EDIT a registered model also move its aliases, rename it and tag its
versions; workers on other hosts need EDIT to register the versions they train. Here, on the
platform's model (MLFLOW_PLATFORM_MODEL), moving or deleting any alias but ``challenger``,
renaming or deleting the model or one of its versions, and on any model writing the stack's record
of a version (the ``platform.record`` tag, flows/logic/provenance.py), need an admin or the
stack's own worker account (MLFLOW_STACK_ACCOUNT). Everything else is MLflow's own rule.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from mlflow_data_proxy import refuse, replay, writer_of

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

RECORD_TAG = "platform.record"
OPEN_ALIASES = frozenset({"challenger"})
REGISTRY_PATH = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow/(?P<endpoint>[a-z-]+/[a-z-]+)$")
# Endpoints (method, path under /mlflow/) that change what the platform's model serves.
MODEL_ENDPOINTS = {
    ("POST", "registered-models/rename"),
    ("DELETE", "registered-models/delete"),
    ("DELETE", "model-versions/delete"),
}
ALIAS_ENDPOINTS = {("POST", "registered-models/alias"), ("DELETE", "registered-models/alias")}
TAG_ENDPOINTS = {("POST", "model-versions/set-tag"), ("DELETE", "model-versions/delete-tag")}
CREATE_VERSION = ("POST", "model-versions/create")


def request_fields(query: bytes, body: bytes) -> dict[str, Any]:
    """A registry request's fields: its JSON body, else its query string (first values)."""
    fields: dict[str, Any] = {k: v[0] for k, v in parse_qs(query.decode()).items()}
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {}
    if isinstance(parsed, dict):
        fields.update(parsed)
    return fields


def needs_stack(method: str, endpoint: str, fields: dict[str, Any], model: str) -> bool:
    """True when this request changes what the platform's model serves, or writes a record."""
    key = (method, endpoint)
    if key in TAG_ENDPOINTS:
        return fields.get("key") == RECORD_TAG
    if key == CREATE_VERSION:
        tags = fields.get("tags") or []
        return any(isinstance(t, dict) and t.get("key") == RECORD_TAG for t in tags)
    if fields.get("name") != model:
        return False
    if key in ALIAS_ENDPOINTS:
        return fields.get("alias") not in OPEN_ALIASES
    return key in MODEL_ENDPOINTS


class StackMovesTheModel:
    """ASGI middleware in front of MLflow's: the platform model's serving needs the stack."""

    def __init__(self, app: ASGIApp, model: str, stack_account: str) -> None:
        self.app, self.model, self.stack_account = app, model, stack_account

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        match = REGISTRY_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] not in ("POST", "DELETE"):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        fields = request_fields(scope.get("query_string", b""), bytes(body))
        if needs_stack(scope["method"], match["endpoint"], fields, self.model):
            authorization = dict(scope["headers"]).get(b"authorization")
            status, username = await asyncio.to_thread(writer_of, authorization)
            if status == 403 and username == self.stack_account:
                status = 200
            if status != 200:
                refusal = f"only the stack's promotion and admins change what {self.model} serves"
                await refuse(send, status, refusal)
                return
        await self.app(scope, replay(bytes(body)), send)


def create_app(app: Any = None) -> Any:
    """MLflow's basic-auth app around the server, behind the stack's rule for its model."""
    from mlflow.server import app as server_app
    from mlflow.server import auth

    served = auth.create_app(app if app is not None else server_app)
    model = os.environ.get("MLFLOW_PLATFORM_MODEL") or "taxi-trip-duration"
    return StackMovesTheModel(served, model, os.environ["MLFLOW_STACK_ACCOUNT"])
