"""The model server: MLflow's own scoring server, answering with whichever version is @champion.

`mlflow models serve` loads one model URI when it starts. This server runs the same scoring app
(`mlflow.pyfunc.scoring_server.init`: `POST /invocations` with `dataframe_split` or
`dataframe_records`, `GET /ping`, `GET /version`) for the version behind an alias, and looks the
alias up again every few seconds: a new version is loaded beside the old one, which keeps answering
until the swap, so a promotion never fails a request. Every answer names its version in the
``X-Model-Version`` header.

Callers sign in with their MLflow account (HTTP basic auth), checked against the MLflow server
itself and remembered for MLFLOW_AUTH_CACHE_TTL_SECONDS, as MLflow's own password cache does.
Wrong credentials are never remembered. ``/ping`` and ``/health`` answer anyone (no data).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import requests

logger = logging.getLogger("serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VERSION_HEADER, NAME_HEADER = b"x-model-version", b"x-model-name"
OPEN_PATHS = frozenset({"/ping", "/health"})


@dataclass(frozen=True)
class Loaded:
    """One registered version, loaded, with MLflow's scoring app around it."""

    model_name: str
    version: str
    app: ASGIApp


def load_version(model_name: str, version: str) -> Loaded:
    """Download and load a version, and build MLflow's scoring app for it."""
    from mlflow.pyfunc import scoring_server

    from flows.resources.registry import load_version as load_registered

    model, _ = load_registered(model_name, version)
    return Loaded(model_name, version, scoring_server.init(model))


class AliasFollower:
    """Keeps the version behind an alias loaded; ``current`` is swapped in one assignment."""

    def __init__(
        self,
        model_name: str,
        alias: str,
        loader: Callable[[str, str], Loaded] = load_version,
    ) -> None:
        self.model_name, self.alias, self.loader = model_name, alias, loader
        self.current: Loaded | None = None
        self.last_error: str | None = None

    def aliased_version(self) -> str | None:
        """The version the alias points at now, or None when it points nowhere."""
        from mlflow import MlflowClient

        from flows.resources.registry import version_by_alias

        found = version_by_alias(MlflowClient(), self.model_name, self.alias)
        return str(found.version) if found else None

    def refresh(self) -> bool:
        """Load the aliased version if it changed; True when the answering version changed."""
        version = self.aliased_version()
        current = self.current
        if version == (current.version if current else None):
            return False
        if version is None:
            # The alias was removed: keep answering with what we have rather than fail.
            return False
        started = time.perf_counter()
        loaded = self.loader(self.model_name, version)
        self.current = loaded
        logger.info(
            "%s@%s: now version %s (loaded in %.1f s, was %s)",
            self.model_name, self.alias, version, time.perf_counter() - started,
            current.version if current else "none",
        )  # fmt: skip
        return True

    def follow(self, every_s: float, stop: threading.Event) -> None:
        """Refresh every ``every_s`` seconds until ``stop`` is set; errors are logged, not fatal."""
        while True:
            try:
                self.refresh()
                self.last_error = None
            except Exception as error:  # noqa: BLE001 (MLflow down: keep serving the old version)
                self.last_error = str(error)
                logger.warning("could not refresh %s@%s: %s", self.model_name, self.alias, error)
            if stop.wait(every_s):
                return


class MlflowAuthenticator:
    """Checks basic-auth credentials by asking the MLflow server whether they may read the model."""

    def __init__(self, tracking_uri: str, model_name: str, ttl_s: float) -> None:
        self.url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/get"
        self.model_name, self.ttl_s = model_name, ttl_s
        self.valid_until: dict[str, float] = {}

    def ask_mlflow(self, authorization: str) -> int:
        """MLflow's answer to these credentials: 200 (may read), 401 or 403."""
        answer = requests.get(
            self.url,
            params={"name": self.model_name},
            headers={"Authorization": authorization},
            timeout=10,
        )
        if answer.status_code in (401, 403):
            return answer.status_code
        # 404: signed in, and the model does not exist yet. Anything else is MLflow's trouble.
        return 200 if answer.status_code in (200, 404) else 503

    async def check(self, authorization: bytes | None) -> int:
        """200 when the credentials may read the model (cached), else 401, 403 or 503."""
        if not authorization or not authorization.lower().startswith(b"basic "):
            return 401
        key = hashlib.sha256(authorization).hexdigest()
        if self.valid_until.get(key, 0.0) > time.monotonic():
            return 200
        try:
            status = await asyncio.to_thread(self.ask_mlflow, authorization.decode("latin-1"))
        except requests.RequestException:
            return 503
        if status == 200:
            self.valid_until[key] = time.monotonic() + self.ttl_s
        return status


async def respond(send: Send, status: int, body: dict[str, str], headers: list[Any]) -> None:
    """A JSON answer."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


REFUSALS = {
    401: ("UNAUTHENTICATED", "sign in with an MLflow account (HTTP basic auth)"),
    403: ("PERMISSION_DENIED", "this MLflow account may not read the model"),
    503: ("TEMPORARILY_UNAVAILABLE", "the MLflow server could not check the credentials"),
}


class ChampionServer:
    """The ASGI app: auth, then MLflow's scoring app of the current version, with its header."""

    def __init__(self, follower: AliasFollower, authenticator: MlflowAuthenticator) -> None:
        self.follower, self.authenticator = follower, authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] in OPEN_PATHS:
            await respond(send, 200, {"status": "ok"}, [])
            return
        status = await self.authenticator.check(dict(scope["headers"]).get(b"authorization"))
        if status != 200:
            code, message = REFUSALS[status]
            challenge = [(b"www-authenticate", b'Basic realm="mlflow"')] if status == 401 else []
            await respond(send, status, {"error_code": code, "message": message}, challenge)
            return
        loaded = self.follower.current  # read once: this request is answered by one version
        if loaded is None:
            message = (
                f"model {self.follower.model_name!r} has no {self.follower.alias!r} version yet "
                f"(train and promote one: make train)"
            )
            await respond(send, 503, {"error_code": "NO_CHAMPION", "message": message}, [])
            return
        await loaded.app(scope, receive, self.with_version(send, loaded))

    @staticmethod
    def with_version(send: Send, loaded: Loaded) -> Send:
        """``send`` that adds the answering version's headers to the response."""

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (VERSION_HEADER, loaded.version.encode()),
                    (NAME_HEADER, loaded.model_name.encode()),
                ]
            await send(message)

        return send_with_version

    @staticmethod
    async def lifespan(receive: Receive, send: Send) -> None:
        """Nothing to start or stop per process: the follower thread is started by main()."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
