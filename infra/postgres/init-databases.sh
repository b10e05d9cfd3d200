#!/usr/bin/env bash
# Runs once, on the first start of an empty data volume (postgres image's initdb hook):
# one database and one owner per service, so MLflow and Prefect cannot touch each other's data.
set -euo pipefail

create_database() {
  local name="$1" password="$2"
  echo "creating role and database '${name}'"
  # psql's :'var' quoting keeps passwords with any characters intact.
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
       -v name="$name" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'name', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name') \gexec
SQL
}

create_database "${MLFLOW_DB_USER:?}" "${MLFLOW_DB_PASSWORD:?}"
# MLflow's basic-auth app keeps users and permissions in a database of its own, same owner.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v name="${MLFLOW_DB_USER}_auth" -v owner="$MLFLOW_DB_USER" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'owner') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name') \gexec
SQL
create_database "${PREFECT_DB_USER:?}" "${PREFECT_DB_PASSWORD:?}"
