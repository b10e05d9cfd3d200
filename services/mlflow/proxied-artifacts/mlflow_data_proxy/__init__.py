"""The data proxy's app (`mlflow server --app-name data-proxy`): MLflow's basic-auth app, and
only admins write.

The data proxy serves the data bucket through MLflow's artifact proxy. MLflow decides who may
write under a proxied path by reading its first segment as an experiment id, so an account that
creates experiment 7 on the tracking server (the same accounts) could write and delete under
``7/`` in the data bucket. Here every write to the proxy needs an admin, whatever experiments the
account has; reads stay MLflow's (any account). Requests are decided on MLflow's own routes and a
canonical path (platform_edge.mlflow).

One exception: the model server's account (DATA_PROXY_TRAFFIC_WRITER) adds what it answered, a
PUT of one new Parquet object at exactly a key the model server makes
(``served/year=YYYY/month=MM/<model>-v<version>-<UTC time>-<6 hex>.parquet``: the platform's
model, a month and a time within a day of now), never an existing key (append-only), at most
DATA_PROXY_SERVED_MAX_BYTES an object and DATA_PROXY_SERVED_DAILY_BYTES a day; refusals are
counted (``data_proxy_served_refusals_total``). MLflow's own check would read ``served`` as an
experiment id and refuse, so this app stores such an object itself, with the proxy's key.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from platform_edge.answers import read_body, replay, respond_json
from platform_edge.mlflow import (
    ARTIFACT_WRITES,
    Call,
    MlflowEdge,
    MlflowRouter,
    error,
    refuse,
    writer_of,
)
from prometheus_client import Counter

__all__ = ["AdminsWrite", "create_app", "read_body", "refuse", "replay", "respond_json"]

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]
SERVED_KEY = re.compile(
    r"^served/year=(?P<year>[0-9]{4})/month=(?P<month>[0-9]{2})/"
    r"(?P<model>[A-Za-z0-9][A-Za-z0-9._-]{0,200})-v(?P<version>[1-9][0-9]{0,8})-"
    r"(?P<stamp>[0-9]{8}T[0-9]{6}Z)-[0-9a-f]{6}\.parquet$"
)
SERVED_REFUSALS = Counter(
    "data_proxy_served_refusals_total",
    "Answered-records objects the data proxy refused, by reason",
    ["reason"],
)
DAY = timedelta(days=1)


@dataclass
class ServedRules:
    """What the model server's account may add: its model, the limits of one object and a day."""

    writer: str
    model: str
    max_object_bytes: int = 16 * 1024 * 1024
    daily_bytes: int = 1024 * 1024 * 1024

    def key_problem(self, key: str, now: datetime) -> tuple[str, str] | None:
        """(reason, message) when ``key`` is not one the model server makes now, or None."""
        found = SERVED_KEY.match(key)
        if found is None:
            return (
                "key",
                "answered records go to served/year=YYYY/month=MM/<model>-v<n>-<time>-<id>.parquet",
            )
        if found["model"] != self.model:
            return "model", f"answered records are of {self.model}"
        try:
            stamp = datetime.strptime(found["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "time", "the object's time is not a time"
        months = {f"{day:%Y-%m}" for day in (now - DAY, now, now + DAY)}
        if abs(stamp - now) > DAY or f"{found['year']}-{found['month']}" not in months:
            return "time", "answered records are written within a day of their month and time"
        return None


class DailyBytes:
    """Bytes of answered records stored today, counted from the bucket when the day starts."""

    def __init__(self) -> None:
        self.day, self.bytes, self.lock = "", 0, threading.Lock()

    def add(self, size: int, limit: int, bucket: str, root: str, now: datetime) -> bool:
        """Count ``size`` more bytes today unless that passes ``limit``; False when it would."""
        with self.lock:
            today = f"{now:%Y%m%d}"
            if today != self.day:
                self.day, self.bytes = today, stored_today(bucket, root, now)
            if self.bytes + size > limit:
                return False
            self.bytes += size
            return True


def stored_today(bucket: str, root: str, now: datetime) -> int:
    """Bytes of answered records written today, as the bucket holds them."""
    client = s3_client()
    prefix = f"{root}served/year={now:%Y}/month={now:%m}/"
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if f"-{now:%Y%m%d}T" in item["Key"]:
                total += int(item["Size"])
    return total


class AdminsWrite(MlflowEdge):
    """ASGI middleware in front of MLflow's: writes to the data proxy need an admin, but the
    model server's additions of what it answered."""

    def __init__(
        self, app: ASGIApp, router: MlflowRouter, served: ServedRules | None = None
    ) -> None:
        super().__init__(app, router)
        self.served = served
        self.today = DailyBytes()

    async def decide(self, call: Call, send: Any) -> bool:
        """Reads pass (MLflow's rule); a write needs an admin or is a served addition."""
        if call.method in ("GET", "HEAD", "OPTIONS"):
            return False
        status, username = await asyncio.to_thread(writer_of, call.authorization)
        if status == 200:
            return False
        if (
            status == 403
            and self.served is not None
            and username == self.served.writer
            and call.route.endpoint in ARTIFACT_WRITES
        ):
            await self.add_served(call, send)
            return True
        await refuse(send, status, "only admins write to the data proxy")
        return True

    async def add_served(self, call: Call, send: Any) -> None:
        """Store one batch of answered records at its key, if it is a new key of the model
        server's own, within the limits; else refuse, saying why."""
        assert self.served is not None
        rules = self.served
        key = call.route.artifact_path or ""
        if call.method != "PUT" or call.route.endpoint != "upload_artifact":
            await self.refuse_served(send, 403, "method", "the model server only adds objects")
            return
        problem = rules.key_problem(key, datetime.now(UTC))
        if problem is not None:
            await self.refuse_served(send, 403, *problem)
            return
        body = await read_body(call.receive, rules.max_object_bytes)
        if body is None:
            limit = f"an object of answered records is at most {rules.max_object_bytes} bytes"
            await self.refuse_served(send, 413, "size", limit)
            return
        bucket, root = destination()
        if await asyncio.to_thread(exists, bucket, root + key):
            await self.refuse_served(send, 409, "exists", "answered records are never replaced")
            return
        if not self.today.add(len(body), rules.daily_bytes, bucket, root, datetime.now(UTC)):
            limit = f"answered records are at most {rules.daily_bytes} bytes a day"
            await self.refuse_served(send, 429, "quota", limit)
            return
        await asyncio.to_thread(put_object, bucket, root + key, body)
        await respond_json(send, 200, {})

    @staticmethod
    async def refuse_served(send: Any, status: int, reason: str, message: str) -> None:
        """A refused addition, counted by reason."""
        SERVED_REFUSALS.labels(reason).inc()
        code = {409: "RESOURCE_ALREADY_EXISTS", 413: "REQUEST_TOO_LARGE", 429: "RESOURCE_EXHAUSTED"}
        await respond_json(send, status, error(code.get(status, "PERMISSION_DENIED"), message))


def destination() -> tuple[str, str]:
    """The proxied bucket and the key prefix under it (`mlflow server --artifacts-destination`)."""
    from mlflow.server.constants import ARTIFACTS_DESTINATION_ENV_VAR

    where = os.environ[ARTIFACTS_DESTINATION_ENV_VAR].removeprefix("s3://").rstrip("/")
    bucket, _, root = where.partition("/")
    return bucket, (f"{root}/" if root else "")


def s3_client() -> Any:
    """A client of the proxied bucket's S3 server, with the proxy's own key."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None,
        config=Config(signature_version="s3v4", retries={"max_attempts": 3, "mode": "standard"}),
    )


def exists(bucket: str, key: str) -> bool:
    """Whether the bucket holds ``key``."""
    from botocore.exceptions import ClientError

    try:
        s3_client().head_object(Bucket=bucket, Key=key)
    except ClientError as problem:
        if problem.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def put_object(bucket: str, key: str, data: bytes) -> None:
    """One object into the bucket, with the proxy's own S3 key."""
    s3_client().put_object(Bucket=bucket, Key=key, Body=data)


def create_app(app: Any = None) -> Any:
    """MLflow's basic-auth app around the server, behind the admins-only writes."""
    from mlflow.server import app as server_app
    from mlflow.server import auth
    from mlflow_platform_metrics import RequestMetrics

    flask_app = app if app is not None else server_app
    served_app = auth.create_app(flask_app)
    writer = os.environ.get("DATA_PROXY_TRAFFIC_WRITER", "")
    served = None
    if writer:
        served = ServedRules(
            writer,
            os.environ.get("MLFLOW_PLATFORM_MODEL") or "taxi-trip-duration",
            int(os.environ.get("DATA_PROXY_SERVED_MAX_BYTES") or 16 * 1024 * 1024),
            int(os.environ.get("DATA_PROXY_SERVED_DAILY_BYTES") or 1024 * 1024 * 1024),
        )
    guarded = AdminsWrite(served_app, MlflowRouter(served_app, flask_app), served)
    return RequestMetrics(guarded, "data-proxy")
