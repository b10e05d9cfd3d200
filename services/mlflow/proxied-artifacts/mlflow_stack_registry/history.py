"""Every move of a registered model's aliases, as the tracking server saw it: when, who, from
which version to which, and why. MLflow keeps only where an alias points now (mlflow/mlflow#2169);
this table, in the tracking database beside MLflow's own, keeps every move, whichever client
made it (the platform's flows, the MLflow UI, a notebook), because all of them pass the
tracking server's app (mlflow_stack_registry)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

METADATA = sa.MetaData()
MOVES = sa.Table(
    "platform_alias_moves",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model", sa.String(256), nullable=False, index=True),
    sa.Column("alias", sa.String(256), nullable=False),
    sa.Column("from_version", sa.String(32)),
    sa.Column("to_version", sa.String(32)),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)


class AliasHistory:
    """The moves table on one database."""

    def __init__(self, database_uri: str) -> None:
        self.engine = sa.create_engine(database_uri, pool_pre_ping=True)
        try:
            METADATA.create_all(self.engine, checkfirst=True)
        except sa.exc.DBAPIError:
            # Each server worker starts this at once: another one created the table first.
            METADATA.create_all(self.engine, checkfirst=True)

    def append(
        self,
        model: str,
        alias: str,
        from_version: str | None,
        to_version: str | None,
        actor: str,
        reason: str,
    ) -> None:
        """Record one move that the registry has made."""
        with self.engine.begin() as connection:
            connection.execute(
                MOVES.insert().values(
                    at=dt.datetime.now(dt.UTC),
                    model=model,
                    alias=alias,
                    from_version=from_version,
                    to_version=to_version,
                    actor=actor,
                    reason=reason[:2000],
                )
            )

    def moves(self, model: str, alias: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The latest moves of ``model``'s aliases (one alias's when given), newest first."""
        query = MOVES.select().where(MOVES.c.model == model)
        if alias:
            query = query.where(MOVES.c.alias == alias)
        query = query.order_by(MOVES.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [{**row, "at": row["at"].isoformat()} for row in rows]
