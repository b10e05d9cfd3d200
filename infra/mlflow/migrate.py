"""Bring MLflow's databases to the installed MLflow's schema before any server starts.

`mlflow server` does not migrate an existing tracking database: it creates tables only when none
exist and otherwise refuses to start on an older schema ("Detected out-of-date database schema",
mlflow/store/db/utils.py `_verify_schema`). So every `make up` runs this one-shot job first
(compose service `mlflow-migrate`): the tracking database through MLflow's own `mlflow db
upgrade` (alembic; a new database is created at the head), and the accounts database through the
basic-auth app's migrations, once, instead of racing in each server worker. Prefect migrates its
own database when its server starts (PREFECT_API_DATABASE_MIGRATE_ON_START, on by default).

Each migration either reaches the head or fails with MLflow's error and a non-zero exit, and the
servers (which wait for this job) do not start: restore the backup `make upgrade` took first.
"""

from __future__ import annotations

import logging
import os
import sys
import time

logger = logging.getLogger("mlflow-migrate")


def tracking_revision(uri: str) -> str | None:
    """The tracking database's alembic revision, or None when it has no tables yet."""
    import sqlalchemy as sa

    engine = sa.create_engine(uri)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def migrate_tracking(uri: str) -> tuple[str | None, str | None]:
    """`mlflow db upgrade` on the tracking database; (revision before, after)."""
    from mlflow.store.db.utils import (
        _initialize_tables,
        _is_empty_database,
        _upgrade_db,
        create_sqlalchemy_engine_with_retry,
    )

    before = tracking_revision(uri)
    # What `mlflow db upgrade` does (mlflow/db.py): a new database gets every table at the head.
    engine = create_sqlalchemy_engine_with_retry(uri)  # type: ignore[no-untyped-call]
    try:
        if _is_empty_database(engine):  # type: ignore[no-untyped-call]
            _initialize_tables(engine)  # type: ignore[no-untyped-call]
        else:
            _upgrade_db(engine)  # type: ignore[no-untyped-call]
    finally:
        engine.dispose()
    return before, tracking_revision(uri)


def migrate_accounts(uri: str) -> None:
    """The basic-auth app's migrations on the accounts database, up to its head."""
    from mlflow.server.auth.db.utils import migrate_if_needed
    from mlflow.store.db.utils import create_sqlalchemy_engine_with_retry

    engine = create_sqlalchemy_engine_with_retry(uri)  # type: ignore[no-untyped-call]
    try:
        migrate_if_needed(engine, "head")
    finally:
        engine.dispose()


def main() -> int:
    """Migrate both databases; 0 when both are at the installed MLflow's head."""
    import mlflow

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    started = time.monotonic()
    tracking, accounts = (
        os.environ["MLFLOW_BACKEND_STORE_URI"],
        os.environ.get("MLFLOW_AUTH_DATABASE_URI"),
    )
    before, after = migrate_tracking(tracking)
    if before == after:
        logger.info(
            "tracking database: at %s (MLflow %s), nothing to migrate", after, mlflow.__version__
        )
    else:
        logger.info(
            "tracking database: %s -> %s (MLflow %s)", before or "new", after, mlflow.__version__
        )
    if accounts:
        migrate_accounts(accounts)
        logger.info("accounts database: at the basic-auth app's head")
    logger.info("done in %.1f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
