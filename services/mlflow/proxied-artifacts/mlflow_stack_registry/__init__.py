"""The tracking server's app (`mlflow server --app-name stack-registry`): MLflow's basic-auth app,
and only the stack's account and admins change what the platform's model serves.

MLflow lets whoever may EDIT a registered model also move its aliases, rename it and tag its
versions; workers on other hosts need EDIT to register the versions they train. Here, on the
platform's model (MLFLOW_PLATFORM_MODEL), moving or deleting any alias but ``challenger``,
renaming or deleting the model or one of its versions, and on any model writing the stack's record
of a version (the ``platform.record`` tag, flows/logic/provenance.py), need an admin or the
stack's own worker account (MLFLOW_STACK_ACCOUNT), and so does writing, replacing or deleting the
files of a run or logged model a registered version stands on (write_once.py). The rules are
decided on the handler MLflow's own router sends the request to and on the JSON body that handler
reads (platform_edge.mlflow: canonical paths, JSON-only writes), never on our reading of a path.
Everything else is MLflow's own rule.

A version names the account that registered it (``user_id``, the UI's "Created by"), which MLflow
itself leaves empty: written from the signed-in account once MLflow has made the version.

Every alias move it lets through and MLflow makes is recorded (mlflow_stack_registry.history):
when, who, from which version to which, and the reason the platform's flows send in the
``X-Platform-Reason`` header ("manual change" without one). GET /api/2.0/platform/alias-history
answers any signed-in account.

Housekeeping (mlflow_stack_registry.housekeeping) runs here, the only process holding the
tracking database and the artifact bucket's key: POST /api/2.0/platform/housekeeping/runs and
/leftovers (the stack's account and admins) delete what the retention no longer keeps, GET
/api/2.0/platform/housekeeping/sizes (any signed-in account) measures databases and bucket.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, unquote

import platform_names as names
import sqlalchemy as sa
from platform_edge.answers import read_body, replay, respond_json
from platform_edge.mlflow import Call, MlflowEdge, MlflowRouter, refuse, writer_of
from platform_edge.paths import NotCanonical, canonical_path
from platform_edge.signin import from_header
from platform_names import ALIAS_HISTORY_PATH, HOUSEKEEPING_API_PATH, RECORD_TAG

from mlflow_stack_registry.history import AliasHistory
from mlflow_stack_registry.housekeeping import Housekeeper, MaintenanceBusy
from mlflow_stack_registry.ui import UI_PAGE, injecting
from mlflow_stack_registry.write_once import owner_of, version_on

logger = logging.getLogger(__name__)

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

OPEN_ALIASES = frozenset({"challenger"})
# MLflow's handlers (Flask's endpoint names) that change what the platform's model serves, and
# those that write the stack's record of a version: whatever path reached them.
MODEL_HANDLERS = frozenset(
    {"_rename_registered_model", "_delete_registered_model", "_delete_model_version"}
)
ALIAS_HANDLERS = frozenset({"_set_registered_model_alias", "_delete_registered_model_alias"})
TAG_HANDLERS = frozenset({"_set_model_version_tag", "_delete_model_version_tag"})
CREATE_VERSION = "_create_model_version"
# Handlers that write or delete the files of a run or logged model (artifact proxy), and that
# delete a logged model: refused under a registered version but for the stack and admins.
FILE_WRITES = frozenset(
    {
        "upload_artifact",
        "_upload_artifact",
        "_delete_artifact_mlflow_artifacts",
        "_create_multipart_upload_artifact",
        "_complete_multipart_upload_artifact",
        "_abort_multipart_upload_artifact",
    }
)
DELETE_LOGGED_MODEL = "_delete_logged_model"
# The alias history: read by any account; a move's reason comes in this header (%-encoded).
HISTORY_PATH = ALIAS_HISTORY_PATH
REASON_HEADER = names.REASON_HEADER.encode()
MANUAL = "manual change (MLflow UI or client)"
HOUSEKEEPING_PATH = HOUSEKEEPING_API_PATH + "/"
HOUSEKEEPING_ACTIONS = {("POST", "runs"), ("POST", "leftovers"), ("GET", "sizes")}
MAX_RUNS_PER_CALL = 500


def needs_stack(endpoint: str, fields: dict[str, Any], model: str) -> bool:
    """True when this request changes what the platform's model serves, or writes a record."""
    if endpoint in TAG_HANDLERS:
        return fields.get("key") == RECORD_TAG
    if endpoint == CREATE_VERSION:
        tags = fields.get("tags") or []
        return any(isinstance(t, dict) and t.get("key") == RECORD_TAG for t in tags)
    if fields.get("name") != model:
        return False
    if endpoint in ALIAS_HANDLERS:
        return fields.get("alias") not in OPEN_ALIASES
    return endpoint in MODEL_HANDLERS


SET_CREATOR = sa.text(
    "UPDATE model_versions SET user_id = :user_id "
    "WHERE name = :name AND version = :version AND user_id IS NULL"
)


def created_by(engine: sa.Engine, model: str, version: Any, username: str) -> None:
    """Name ``username`` as the one who registered version ``version`` of ``model``."""
    with engine.begin() as connection:
        connection.execute(
            SET_CREATOR, {"user_id": username, "name": model, "version": int(version)}
        )


def username_of(authorization: bytes | None) -> str:
    """The user name of basic-auth credentials ('' when there are none)."""
    credentials = from_header(authorization)
    return credentials.username if credentials else ""


def aliased_version(model: str, alias: str) -> str | None:
    """The version ``alias`` of ``model`` points at now, or None."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_model_registry_store

    try:
        return str(_get_model_registry_store().get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


class StackMovesTheModel(MlflowEdge):
    """ASGI middleware in front of MLflow's (platform_edge.mlflow: canonical paths, MLflow's own
    routes, JSON-only writes): the platform model's serving needs the stack, the files of
    registered versions are written once, and every alias move is recorded (``history``)."""

    def __init__(
        self,
        app: ASGIApp,
        router: MlflowRouter,
        model: str,
        stack_account: str,
        history: AliasHistory | None = None,
        housekeeper: Housekeeper | None = None,
        registry_engine: Any = None,
    ) -> None:
        super().__init__(app, router)
        self.model, self.stack_account = model, stack_account
        self.history, self.housekeeper = history, housekeeper
        self.registry_engine = registry_engine

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            try:
                path = canonical_path(scope.get("raw_path") or scope["path"].encode()).text
            except NotCanonical:
                path = ""  # the edge refuses it
            if path == HISTORY_PATH:
                scope["platform.route"] = HISTORY_PATH
                await self.answer_history(scope, send)
                return
            if path.startswith(HOUSEKEEPING_PATH):
                scope["platform.route"] = HOUSEKEEPING_PATH + "*"
                await self.housekeep(scope, receive, send)
                return
            if path == UI_PAGE and scope["method"] == "GET":
                send = injecting(send)
        await super().__call__(scope, receive, send)

    async def stack_or_admin(self, call: Call) -> int:
        """200 for the stack's own account and admins; 401 or 403 for the rest."""
        status, username = await asyncio.to_thread(writer_of, call.authorization)
        return 200 if status == 403 and username == self.stack_account else status

    async def decide(self, call: Call, send: Any) -> bool:
        """The stack's rules; an alias move goes through ``move_alias`` (recorded)."""
        endpoint = call.route.endpoint
        if needs_stack(endpoint, call.fields, self.model):
            status = await self.stack_or_admin(call)
            if status != 200:
                refusal = f"only the stack's promotion and admins change what {self.model} serves"
                await refuse(send, status, refusal)
                return True
        written_once = await self.written_once(call)
        if written_once is not None:
            status = await self.stack_or_admin(call)
            if status != 200:
                await refuse(send, status, written_once)
                return True
        if endpoint == CREATE_VERSION and self.registry_engine is not None and call.body:
            await self.create_version(call, send)
            return True
        if endpoint in ALIAS_HANDLERS and self.history is not None and call.body is not None:
            headers = dict(call.scope["headers"])
            await self.move_alias(call.scope, call.body, send, call.fields, headers)
            return True
        return False

    async def written_once(self, call: Call) -> str | None:
        """Why this request may not touch the files it names (they make a registered version),
        or None."""
        if self.registry_engine is None:
            return None
        if call.route.endpoint in FILE_WRITES:
            owner = owner_of(call.route.artifact_path or "")
        elif call.route.endpoint == DELETE_LOGGED_MODEL:
            owner = owner_of(f"0/models/{call.route.args.get('model_id', '')}")
        else:
            return None
        if owner is None:
            return None
        version = await asyncio.to_thread(version_on, self.registry_engine, owner)
        if version is None:
            return None
        return (
            f"the files of {owner.kind} {owner.id} make {version}: written once, changed only by "
            f"the stack and admins"
        )

    async def create_version(self, call: Call, send: Any) -> None:
        """Let MLflow register the version, then name who did (the UI's "Created by"): MLflow
        itself leaves a version's user_id empty. The answer waits for the name to be written."""
        held: list[MutableMapping[str, Any]] = []

        async def hold(message: MutableMapping[str, Any]) -> None:
            held.append(message)

        await self.app(call.scope, replay(call.body or b""), hold)
        started = next((m for m in held if m["type"] == "http.response.start"), None)
        if started is not None and started["status"] == 200 and call.username:
            body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
            try:
                made = json.loads(body)["model_version"]
                await asyncio.to_thread(
                    created_by, self.registry_engine, made["name"], made["version"], call.username
                )
            except Exception:  # noqa: BLE001 (the version is made: say loudly it has no creator)
                logger.exception("a version was registered by %s but not named so", call.username)
        for message in held:
            await send(message)

    async def move_alias(
        self,
        scope: MutableMapping[str, Any],
        body: bytes,
        send: Any,
        fields: dict[str, Any],
        headers: dict[bytes, bytes],
    ) -> None:
        """Let MLflow move the alias, then record the move if it was made."""
        model, alias = str(fields.get("name", "")), str(fields.get("alias", ""))
        before = await asyncio.to_thread(aliased_version, model, alias)
        status = 0

        async def watched(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, replay(body), watched)
        if status != 200 or self.history is None:
            return
        after = str(fields["version"]) if scope["method"] == "POST" else None
        reason = unquote(headers.get(REASON_HEADER, b"").decode("latin-1")) or MANUAL
        actor = username_of(headers.get(b"authorization"))
        try:
            await asyncio.to_thread(self.history.append, model, alias, before, after, actor, reason)
        except Exception:  # noqa: BLE001 (the move is made: say loudly that it is not on record)
            logger.exception(
                "%s@%s moved %s -> %s by %s but NOT recorded", model, alias, before, after, actor
            )

    async def answer_history(self, scope: MutableMapping[str, Any], send: Any) -> None:
        """GET: the moves of a model's aliases, newest first, for any signed-in account."""
        status, _ = await asyncio.to_thread(writer_of, dict(scope["headers"]).get(b"authorization"))
        if status == 401:
            await refuse(send, 401, "sign in")
            return
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        if self.history is None or "name" not in query:
            await respond_json(
                send, 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "give name="}
            )
            return
        limit = min(
            int(query.get("limit", "100")) if query.get("limit", "").isdigit() else 100, 1000
        )
        moves = await asyncio.to_thread(
            self.history.moves, query["name"], query.get("alias"), limit
        )
        await respond_json(send, 200, {"moves": moves})

    async def housekeep(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        """Housekeeping: sizes for any signed-in account; deletions for the stack and admins."""
        action = scope["path"].removeprefix(HOUSEKEEPING_PATH)
        if (scope["method"], action) not in HOUSEKEEPING_ACTIONS or self.housekeeper is None:
            await respond_json(send, 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": action})
            return
        status, username = await asyncio.to_thread(
            writer_of, dict(scope["headers"]).get(b"authorization")
        )
        if status == 403 and (username == self.stack_account or action == "sizes"):
            status = 200
        if status != 200:
            await refuse(send, status, "only the stack's housekeeping and admins delete")
            return
        if action == "sizes":
            await respond_json(send, 200, await asyncio.to_thread(self.housekeeper.sizes))
            return
        try:
            options = housekeeping_options(await read_body(receive) or b"")
        except ValueError as problem:
            await respond_json(
                send, 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": str(problem)}
            )
            return
        try:
            answer = await asyncio.to_thread(self.sweep, action, *options)
        except MaintenanceBusy as busy:
            await respond_json(send, 409, {"error_code": "RESOURCE_CONFLICT", "message": str(busy)})
            return
        logger.info("housekeeping %s by %s: %s", action, username, json.dumps(answer)[:2000])
        await respond_json(send, 200, answer)

    def sweep(
        self, action: str, older_than: dt.timedelta, max_runs: int, dry_run: bool
    ) -> dict[str, Any]:
        """One housekeeping action under the maintenance lock."""
        assert self.housekeeper is not None
        with self.housekeeper.exclusive():
            if action == "runs":
                return self.housekeeper.sweep_runs(older_than, max_runs, dry_run).as_json()
            return self.housekeeper.sweep_leftovers(older_than, dry_run)


def housekeeping_options(body: bytes) -> tuple[dt.timedelta, int, bool]:
    """(older than, at most this many runs, dry run) from a housekeeping request's JSON body."""
    try:
        fields = json.loads(body) if body else {}
    except ValueError as bad:
        raise ValueError(f"the body is not JSON: {bad}") from None
    if not isinstance(fields, dict):
        raise ValueError("the body must be a JSON object")
    days, max_runs = fields.get("older_than_days"), fields.get("max_runs", 100)
    if isinstance(days, bool) or not isinstance(days, int | float) or days < 0:
        raise ValueError("older_than_days must be a number of days, 0 or more")
    if isinstance(max_runs, bool) or not isinstance(max_runs, int):
        raise ValueError(f"max_runs must be an integer from 1 to {MAX_RUNS_PER_CALL}")
    if not 1 <= max_runs <= MAX_RUNS_PER_CALL:
        raise ValueError(f"max_runs must be an integer from 1 to {MAX_RUNS_PER_CALL}")
    return dt.timedelta(days=days), max_runs, bool(fields.get("dry_run", False))


def create_app(app: Any = None) -> Any:
    """MLflow's basic-auth app around the server, behind the stack's rules for its model."""
    from mlflow.server import app as server_app
    from mlflow.server import auth
    from mlflow.server.constants import ARTIFACTS_DESTINATION_ENV_VAR
    from mlflow_platform_metrics import RequestMetrics

    flask_app = app if app is not None else server_app
    served = auth.create_app(flask_app)
    model = os.environ.get("MLFLOW_PLATFORM_MODEL") or "taxi-trip-duration"
    backend = os.environ.get("MLFLOW_BACKEND_STORE_URI")
    history = AliasHistory(backend) if backend else None
    # `mlflow server` hands its --artifacts-destination to its workers in this variable.
    destination = os.environ.get(ARTIFACTS_DESTINATION_ENV_VAR, "")
    housekeeper = (
        Housekeeper(backend, destination) if backend and destination.startswith("s3://") else None
    )
    engine = None
    if backend:
        from mlflow.server.handlers import _get_model_registry_store

        engine = getattr(_get_model_registry_store(), "engine", None)
    guarded = StackMovesTheModel(
        served,
        MlflowRouter(served, flask_app),
        model,
        os.environ["MLFLOW_STACK_ACCOUNT"],
        history,
        housekeeper,
        engine,
    )
    return RequestMetrics(guarded, "mlflow")
