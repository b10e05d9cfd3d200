#!/usr/bin/env bash
# Start the MLflow tracking server with basic auth. The auth app reads its user database URI from
# an ini file only, so the file is written here, from the environment, into a private temp dir:
# the password never lands in the image, the compose file or the command line.
set -euo pipefail

: "${MLFLOW_AUTH_DATABASE_URI:?MLFLOW_AUTH_DATABASE_URI is required}"
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?MLFLOW_AUTH_ADMIN_PASSWORD is required}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?MLFLOW_FLASK_SERVER_SECRET_KEY is required}"

config_dir=$(mktemp -d)
umask 077
cat > "${config_dir}/basic_auth.ini" <<INI
[mlflow]
# Authenticated users may read everything and create experiments and models of their own;
# writing to someone else's experiment needs a permission (README: per-experiment permissions).
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# A password is checked with PBKDF2 (~0.4 s on 2 cores) on every request unless a good one is
# cached: for this many seconds per server worker. It bounds how long a deleted account or an old
# password keeps working on the other workers (the one that handled the change forgets at once).
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-30}
INI
export MLFLOW_AUTH_CONFIG_PATH="${config_dir}/basic_auth.ini"
unset MLFLOW_AUTH_DATABASE_URI

# An --artifacts-only server (the data proxy) has no backend store, and the auth app then opens
# MLflow's default one, ./mlflow.db: keep that unused file out of the working directory.
# It would also migrate that file on the first request naming an experiment, and two such at once
# race (SQLite: "table _alembic_tmp_experiments already exists", a 500): made here, before any.
# Migrating a new one takes ~10 s: the image holds one made when it was built
# (MLFLOW_EMPTY_TRACKING_STORE), copied here.
for arg in "$@"; do
  if [[ "${arg}" == "--artifacts-only" ]]; then
    cd "${config_dir}"
    if [[ -n "${MLFLOW_EMPTY_TRACKING_STORE:-}" ]]; then
      install -m 600 "${MLFLOW_EMPTY_TRACKING_STORE}" mlflow.db
    else
      python -c "import sqlalchemy; from mlflow.store.db.utils import _initialize_tables; _initialize_tables(sqlalchemy.create_engine('sqlite:///mlflow.db'))"
    fi
  fi
done

# Metrics (mlflow_platform_metrics): every server process writes its own into this folder, and
# one more process serves their sum on METRICS_PORT, which compose does not publish.
if [[ -n "${METRICS_PORT:-}" ]]; then
  export PROMETHEUS_MULTIPROC_DIR="${config_dir}/metrics"
  mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
  python -m mlflow_platform_metrics --port "${METRICS_PORT}" &
fi

# The tracking server runs MLflow's basic-auth app behind the stack's rule for its model
# (MLFLOW_APP_NAME=stack-registry), the data proxy with writes for admins only (data-proxy).
exec mlflow server --app-name "${MLFLOW_APP_NAME:-basic-auth}" "$@"
