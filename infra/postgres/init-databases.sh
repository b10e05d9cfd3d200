#!/usr/bin/env bash
# One database and one owner per service, so MLflow and Prefect cannot touch each other's data.
# Idempotent: the `postgres-init` job runs it on every `make up`, so databases added in a later
# version appear in existing volumes too, and role passwords follow .env.
# Connection: libpq's PG* variables (PGHOST, PGUSER, PGPASSWORD) or the local socket.
set -euo pipefail

run_sql() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --dbname "${POSTGRES_DB:-postgres}" "$@"
}

ensure_role() {
  local name="$1" password="$2"
  # psql's :'var' quoting keeps passwords with any characters intact. The password reaches psql
  # through its environment (\getenv), never its command line, which any process may read.
  ROLE_PASSWORD="$password" run_sql -v name="$name" <<'SQL'
\getenv password ROLE_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'name')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'name', :'password') \gexec
SQL
}

ensure_database() {
  local name="$1" owner="$2"
  run_sql -v name="$name" -v owner="$owner" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name') \gexec
SQL
  echo "database ${name} (owner ${owner}): ready"
}

# A volume keeps the superuser password it was made with: say so, rather than only psql's
# "password authentication failed", when .env no longer matches it.
if ! login_error=$(run_sql --command 'SELECT 1' 2>&1 >/dev/null); then
  echo "postgres-init: cannot sign in to PostgreSQL at ${PGHOST:-the local socket} as ${PGUSER:-postgres}: ${login_error}" >&2
  if [[ "${login_error}" == *"password authentication failed"* ]]; then
    echo "postgres-init: the database volume was made with another POSTGRES_PASSWORD than .env's." \
      "Put back the .env it was made with, or 'make clean' to delete the volumes and start over." >&2
  fi
  exit 1
fi

ensure_role "${MLFLOW_DB_USER:?}" "${MLFLOW_DB_PASSWORD:?}"
ensure_database "${MLFLOW_DB_USER}" "${MLFLOW_DB_USER}"
# MLflow's basic-auth app keeps users and permissions in a database of its own, same owner.
ensure_database "${MLFLOW_DB_USER}_auth" "${MLFLOW_DB_USER}"
# The tracking server's housekeeping reports every database's size (infra/postgres/database-sizes.sql).
POSTGRES_DB="${MLFLOW_DB_USER}" run_sql -v reader="${MLFLOW_DB_USER}" --file "$(dirname "$0")/database-sizes.sql"
ensure_role "${PREFECT_DB_USER:?}" "${PREFECT_DB_PASSWORD:?}"
ensure_database "${PREFECT_DB_USER}" "${PREFECT_DB_USER}"
# The Prefect gateway's database belongs to the superuser: its role may append to the audit log
# (infra/postgres/gateway.sql), never rewrite it.
ensure_role "${GATEWAY_DB_USER:?}" "${GATEWAY_DB_PASSWORD:?}"
ensure_database gateway postgres
run_sql -v gateway_role="${GATEWAY_DB_USER}" <<'SQL'
SELECT format('GRANT CONNECT ON DATABASE gateway TO %I', :'gateway_role') \gexec
SQL
POSTGRES_DB=gateway run_sql -v gateway_role="${GATEWAY_DB_USER}" --file "$(dirname "$0")/gateway.sql"
echo "gateway tables: ready"
