"""The model server: MLflow's own scoring server, answering with whichever version is @champion.

`mlflow models serve` loads one model URI when it starts. This server runs the same scoring app
(`mlflow.pyfunc.scoring_server.init`: `POST /invocations` with `dataframe_split` or
`dataframe_records`, `GET /ping`, `GET /version`) for the version behind an alias, and looks the
alias up again every few seconds: a new version is loaded beside the old one, which keeps answering
until the swap, so a promotion never fails a request. Every answer names its version in the
``X-Model-Version`` header.

Callers sign in with their MLflow account (HTTP basic auth), checked against the MLflow server
itself and remembered for MLFLOW_AUTH_CACHE_TTL_SECONDS, as MLflow's own password cache does
(platform_edge.signin: keyed on the user and a keyed hash of the password, bounded). Wrong
credentials are never remembered, and repeated ones for one account from one client address are
refused at once for a while (429).
``/ping`` and ``/health`` answer anyone (no data; /health names the answering version, and a
version the alias points at that was refused).

A version loads only when its files are the ones the stack recorded (flows/logic/provenance.py);
one that is not keeps the server answering with the version it has.

Before MLflow's app sees a prediction request, its body is bounded (SERVING_MAX_BODY_BYTES: 413),
its rows too (SERVING_MAX_ROWS: 400), and each record is checked as training checks trips
(services/serving/inputs.py: 400 naming the column and the value). Error answers never quote the
request back: MLflow's own, which do, are replaced by a short line.

Its metrics (requests, latency, in flight from mlflow_platform_metrics; predictions and rows by
answering version, sign-ins refused, versions loaded and refused from services/serving/metrics.py)
are served on METRICS_PORT, a port of their own (services/serving/__main__.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import requests
from platform_edge.answers import replay
from platform_edge.mlflow import ROUTE_KEY
from platform_edge.signin import (
    Credentials,
    SignIn,
    basic_header,
    client_address,
    from_header,
    trusted_networks,
)

from flows.errors import UntrustedVersion
from services.serving import metrics
from services.serving.inputs import Refused, records_of, validate
from services.serving.traffic import TrafficLog

logger = logging.getLogger("serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VERSION_HEADER, NAME_HEADER = b"x-model-version", b"x-model-name"
OPEN_PATHS = frozenset({"/ping", "/health"})
# MLflow's scoring app's routes and ours: every other path is answered, and counted, as "other".
ROUTES = frozenset({"/invocations", "/ping", "/health", "/version"})
# How long a version that failed the stack's record stays refused before it is checked again.
REFUSAL_RECHECK_S = 60.0


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

    # The model server only checks: it never records a version (its account may not).
    model, _ = load_registered(model_name, version, approve=False)
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
        # The version the alias points at that failed the stack's record, and why: not loaded,
        # checked again only when the alias moves or REFUSAL_RECHECK_S have passed.
        self.refused: tuple[str, str, float] | None = None

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
            self.refused = None  # the alias points at what answers: nothing refused any more
            metrics.REFUSED_VERSION.set(0)
            return False
        if version is None:
            # The alias was removed: keep answering with what we have rather than fail.
            return False
        refused = self.refused
        if refused and refused[0] == version and time.monotonic() - refused[2] < REFUSAL_RECHECK_S:
            return False
        started = time.perf_counter()
        try:
            loaded = self.loader(self.model_name, version)
        except UntrustedVersion as untrusted:
            self.refused = (version, str(untrusted), time.monotonic())
            metrics.VERSION_LOADS.labels("refused").inc()
            metrics.REFUSED_VERSION.set(number_of(version))
            logger.error(
                "%s@%s points at a refused version; still answering with %s: %s",
                self.model_name, self.alias, current.version if current else "none", untrusted,
            )  # fmt: skip
            return False
        except Exception:
            metrics.VERSION_LOADS.labels("failed").inc()
            raise
        self.refused = None
        self.current = loaded
        metrics.VERSION_LOADS.labels("loaded").inc()
        metrics.ANSWERING_VERSION.set(number_of(version))
        metrics.REFUSED_VERSION.set(0)
        logger.info(
            "%s@%s: now version %s (loaded in %.1f s, was %s)",
            self.model_name, self.alias, version, time.perf_counter() - started,
            current.version if current else "none",
        )  # fmt: skip
        return True

    def health(self) -> dict[str, Any]:
        """What /health says: the answering version, and a version the alias points at but
        that was refused (``status`` is then ``refused``)."""
        current = self.current
        body: dict[str, Any] = {
            "status": "refused" if self.refused else "ok",
            "model": self.model_name,
            "alias": self.alias,
            "version": current.version if current else None,
        }
        if self.refused:
            body["refused"] = {"version": self.refused[0], "reason": self.refused[1]}
        return body

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


def keep_answer(
    traffic: TrafficLog, loaded: Loaded, records: list[dict[str, Any]], body: bytes
) -> None:
    """Hand an answered request to the traffic log (MLflow's ``{"predictions": [...]}``)."""
    try:
        predictions = json.loads(body)["predictions"]
    except (ValueError, KeyError, TypeError):
        logger.warning("an answer of version %s had no predictions to log", loaded.version)
        return
    traffic.record(loaded.model_name, loaded.version, records, list(predictions))


def number_of(version: str) -> int:
    """A version's number for a gauge (0 when it is not one)."""
    return int(version) if version.isdigit() else 0


class MlflowAuthenticator:
    """Checks basic-auth credentials by asking the MLflow server whether they may read the model,
    through platform_edge's sign-in (cache, brake per account and client address)."""

    def __init__(
        self, tracking_uri: str, model_name: str, ttl_s: float, trusted_proxies: str = ""
    ) -> None:
        self.url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/get"
        self.model_name = model_name
        self.sign_in: SignIn[bool] = SignIn(self.verify, ttl_s)
        self.trusted = trusted_networks(trusted_proxies)

    def ask_mlflow(self, credentials: Credentials) -> int:
        """MLflow's answer to these credentials: 200 (may read the model), 401, 403, 404 (signed
        in, but the model does not exist yet) or 503."""
        answer = requests.get(
            self.url,
            params={"name": self.model_name},
            headers={"Authorization": basic_header(credentials)},
            timeout=10,
        )
        if answer.status_code in (401, 403, 404):
            return answer.status_code
        return 200 if answer.status_code == 200 else 503

    async def verify(self, credentials: Credentials) -> tuple[int, bool]:
        """MLflow's answer, off the event loop (a 404, no such model yet, is never cached)."""
        try:
            status = await asyncio.to_thread(self.ask_mlflow, credentials)
        except requests.RequestException:
            return 503, False
        return status, status == 200

    async def check(self, scope: Scope) -> int:
        """200 when the request's credentials may read the model (cached), else 401, 403, 404,
        429 or 503."""
        headers = dict(scope["headers"])
        peer = scope.get("client")
        address = client_address(peer[0] if peer else None, scope["headers"], self.trusted)
        signed_in = await self.sign_in(from_header(headers.get(b"authorization")), address)
        return 200 if signed_in is True else int(signed_in)


def without_echo(send: Send) -> Send:
    """``send`` that replaces the body of MLflow's error answers (which quote the input) with
    one short line."""
    status = 200

    async def send_without_echo(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            if status >= 400:
                return  # sent with the replaced body
        elif message["type"] == "http.response.body" and status >= 400:
            if message.get("more_body"):
                return
            line = MLFLOW_ERRORS.get(status, "the model server could not answer this request")
            error = {"error_code": ERROR_CODES.get(status, "ERROR"), "message": line}
            await respond(send, status, error, [])
            return
        await send(message)

    return send_without_echo


async def respond(send: Send, status: int, body: dict[str, Any], headers: list[Any]) -> None:
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
    429: ("TOO_MANY_REQUESTS", "too many wrong passwords lately: wait a little, then try again"),
    503: ("TEMPORARILY_UNAVAILABLE", "the MLflow server could not check the credentials"),
}
ERROR_CODES = {400: "BAD_REQUEST", 413: "REQUEST_TOO_LARGE"}
# MLflow's scoring app quotes invalid input in its errors: its error bodies become these lines.
MLFLOW_ERRORS = {
    400: "the records do not fit the model's signature (columns and types of a TLC trip)",
    415: "send JSON (Content-Type: application/json)",
}


@dataclass(frozen=True)
class Limits:
    """What one prediction request may hold."""

    max_body_bytes: int = 1_048_576
    max_rows: int = 1_000


class ChampionServer:
    """The ASGI app: auth, then MLflow's scoring app of the current version, with its header."""

    def __init__(
        self,
        follower: AliasFollower,
        authenticator: MlflowAuthenticator,
        limits: Limits = Limits(),
        traffic: TrafficLog | None = None,
    ) -> None:
        self.follower, self.authenticator, self.limits = follower, authenticator, limits
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] in ROUTES:
            scope[ROUTE_KEY] = scope["path"]  # the metrics' label: a route, never any path
        if scope["path"] == "/health":
            await respond(send, 200, self.follower.health(), [])
            return
        if scope["path"] in OPEN_PATHS:
            await respond(send, 200, {"status": "ok"}, [])
            return
        headers = dict(scope["headers"])
        status = await self.authenticator.check(scope)
        if status == 404:
            await self.no_champion(send)
            return
        if status != 200:
            metrics.SIGNIN_REFUSALS.labels(str(status)).inc()
            code, message = REFUSALS[status]
            challenge = [(b"www-authenticate", b'Basic realm="mlflow"')] if status == 401 else []
            if status == 429:
                challenge = [(b"retry-after", b"5")]
            await respond(send, status, {"error_code": code, "message": message}, challenge)
            return
        records: list[dict[str, Any]] | None = None
        if scope["method"] == "POST" and scope["path"].rstrip("/") == "/invocations":
            try:
                body, records = await self.checked_body(headers, receive)
            except Refused as refused:
                error = {"error_code": ERROR_CODES[refused.status], "message": refused.message}
                await respond(send, refused.status, error, [])
                return
            receive = replay(body)
        loaded = self.follower.current  # read once: this request is answered by one version
        if loaded is None:
            await self.no_champion(send)
            return
        answer = self.with_version(without_echo(send), loaded, records, self.traffic)
        await loaded.app(scope, receive, answer)

    async def no_champion(self, send: Send) -> None:
        """503: nothing to answer with yet."""
        message = (
            f"model {self.follower.model_name!r} has no {self.follower.alias!r} version yet "
            f"(train and promote one: make train)"
        )
        await respond(send, 503, {"error_code": "NO_CHAMPION", "message": message}, [])

    async def checked_body(
        self, headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[bytes, list[dict[str, Any]]]:
        """The request's body and its records, within the limits, the records valid; else
        Refused."""
        limit = self.limits.max_body_bytes
        declared = headers.get(b"content-length")
        too_large = f"bodies are limited to {limit} bytes (SERVING_MAX_BODY_BYTES)"
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refused(413, too_large)
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > limit:
                raise Refused(413, too_large)
            if not message.get("more_body"):
                break
        records = records_of(bytes(body), self.limits.max_rows)
        validate(records)
        return bytes(body), records

    @staticmethod
    def with_version(
        send: Send,
        loaded: Loaded,
        records: list[dict[str, Any]] | None = None,
        traffic: TrafficLog | None = None,
    ) -> Send:
        """``send`` that adds the answering version's headers to the response; for a prediction
        request (``records`` given) it counts the answer for that version and, once the answer
        is sent, hands the records and predictions to ``traffic``."""
        status, answer = 0, bytearray()

        async def send_with_version(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if records is not None:
                    metrics.PREDICTIONS.labels(loaded.version, str(status)).inc()
                    if status == 200:
                        metrics.ROWS.labels(loaded.version).inc(len(records))
                message["headers"] = [
                    *message.get("headers", []),
                    (VERSION_HEADER, loaded.version.encode()),
                    (NAME_HEADER, loaded.model_name.encode()),
                ]
            await send(message)
            if message["type"] != "http.response.body" or records is None or traffic is None:
                return
            if status == 200:
                answer.extend(message.get("body", b""))
                if not message.get("more_body"):
                    keep_answer(traffic, loaded, records, bytes(answer))

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
