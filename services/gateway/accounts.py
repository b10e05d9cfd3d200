"""Signing callers in with their MLflow account, and what the gateway stores of its own: the
worker accounts with their work queues, and the append-only audit log (PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from platform_edge.signin import Credentials, SignIn, basic_header

from services.gateway.capabilities import Caller


class MlflowAccounts:
    """Asks the MLflow server who the credentials are, through platform_edge's sign-in: good
    answers cached for ``ttl_s``, wrong passwords never, and repeated wrong ones for one account
    from one address refused at once (429) without asking MLflow."""

    def __init__(self, tracking_uri: str, ttl_s: float, store: Store) -> None:
        self.url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/users/get"
        self.store = store
        self.http = httpx.AsyncClient(timeout=10)
        self.sign_in: SignIn[Caller] = SignIn(self.verify, ttl_s)

    async def verify(self, credentials: Credentials) -> tuple[int, Caller | None]:
        """MLflow's answer to the credentials, and who they are to the gateway: (200, caller),
        (401, None) or (503, None)."""
        try:
            answer = await self.http.get(
                self.url,
                params={"username": credentials.username},
                headers={"Authorization": basic_header(credentials)},
            )
        except httpx.HTTPError:
            return 503, None
        if answer.status_code in (401, 403):
            return 401, None
        if answer.status_code != 200:
            return 503, None
        return 200, await self.caller(credentials.username, bool(answer.json()["user"]["is_admin"]))

    async def caller(self, username: str, is_admin: bool) -> Caller:
        """The account's role: admin, a worker on other hosts (with its queues), or teammate."""
        if is_admin:
            return Caller(username, "admin")
        queues = await self.store.worker_queues(username)
        if queues is not None:
            return Caller(username, "worker", tuple(queues))
        return Caller(username, "teammate")

    def forget(self, username: str) -> None:
        """Drop the account's cached sign-ins (its worker record changed)."""
        self.sign_in.forget(username)


class Store:
    """The gateway's tables (infra/postgres/gateway.sql): worker accounts, and the audit log,
    which the gateway's database role may only add to and read."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: Any = None
        self.lock = asyncio.Lock()

    async def connection_pool(self) -> Any:
        """The asyncpg pool, opened on first use."""
        import asyncpg

        async with self.lock:
            if self.pool is None:
                self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
        return self.pool

    async def worker_queues(self, username: str) -> list[str] | None:
        """The work queues of a worker account, or None when the account is no worker."""
        pool = await self.connection_pool()
        row = await pool.fetchrow(
            "SELECT work_queues FROM gateway_workers WHERE username = $1", username
        )
        return list(row["work_queues"]) if row else None

    async def set_worker(self, username: str, queues: list[str]) -> None:
        """Record (or change) a worker account and its queues."""
        pool = await self.connection_pool()
        await pool.execute(
            "INSERT INTO gateway_workers (username, work_queues) VALUES ($1, $2) "
            "ON CONFLICT (username) DO UPDATE SET work_queues = EXCLUDED.work_queues",
            username,
            queues,
        )

    async def delete_worker(self, username: str) -> bool:
        """Forget a worker account; True when there was one."""
        pool = await self.connection_pool()
        status = await pool.execute("DELETE FROM gateway_workers WHERE username = $1", username)
        return bool(status != "DELETE 0")

    async def audit(self, entry: dict[str, Any]) -> None:
        """Append one entry to the audit log."""
        pool = await self.connection_pool()
        await pool.execute(
            "INSERT INTO gateway_audit (username, role, method, path, status, client, detail) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            entry["username"],
            entry["role"],
            entry["method"],
            entry["path"],
            entry["status"],
            entry["client"],
            json.dumps(entry.get("detail") or {}),
        )

    async def audit_entries(self, limit: int, username: str | None) -> list[dict[str, Any]]:
        """The latest entries, newest first."""
        pool = await self.connection_pool()
        rows = await pool.fetch(
            "SELECT id, at, username, role, method, path, status, client, detail "
            "FROM gateway_audit WHERE ($2::text IS NULL OR username = $2) "
            "ORDER BY id DESC LIMIT $1",
            limit,
            username,
        )
        return [
            {**dict(row), "at": row["at"].isoformat(), "detail": json.loads(row["detail"])}
            for row in rows
        ]
