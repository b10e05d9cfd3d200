"""Start the model server: python -m services.serving [--host 0.0.0.0] [--port 8080]."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from flows.settings import Settings
from services.serving.app import AliasFollower, ChampionServer, Limits, MlflowAuthenticator

# MLflow's server default, and the bound on how long a deleted account keeps working here.
DEFAULT_AUTH_TTL_S = 30.0


def main(argv: list[str] | None = None) -> int:
    """Load the aliased version (if any), follow the alias in a thread, serve over HTTP."""
    import uvicorn
    from mlflow_platform_metrics import RequestMetrics
    from prometheus_client import start_http_server

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    follower = AliasFollower(settings.model_name, settings.serving_alias)
    stop = threading.Event()
    # The first look-up runs before the server answers, so a champion is there from the start.
    thread = threading.Thread(
        target=follower.follow, args=(settings.serving_poll_seconds, stop), daemon=True
    )
    thread.start()
    ttl = float(os.environ.get("MLFLOW_AUTH_CACHE_TTL_SECONDS") or DEFAULT_AUTH_TTL_S)
    authenticator = MlflowAuthenticator(os.environ["MLFLOW_TRACKING_URI"], settings.model_name, ttl)
    limits = Limits(settings.serving_max_body_bytes, settings.serving_max_rows)
    server = RequestMetrics(ChampionServer(follower, authenticator, limits), "serving")
    if os.environ.get("METRICS_PORT"):
        # On a port of its own, which compose does not publish: the stack's network only.
        start_http_server(int(os.environ["METRICS_PORT"]), addr=args.host)
    try:
        uvicorn.run(server, host=args.host, port=args.port, log_level="warning")
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
