"""Start the model server: python -m services.serving [--host 0.0.0.0] [--port 8080]."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from flows.settings import Settings
from services.serving.app import AliasFollower, ChampionServer, Limits, MlflowAuthenticator
from services.serving.traffic import TrafficLog, proxy_writer

# MLflow's server default, and the bound on how long a deleted account keeps working here.
DEFAULT_AUTH_TTL_S = 30.0


def traffic_log(settings: Settings) -> TrafficLog | None:
    """The log of answered records, through the data proxy as this server's account; None when
    SERVING_TRAFFIC_LOG is off or there is no data proxy (DATA_PROXY_URL)."""
    if not (settings.serving_traffic_log and settings.data_proxy_url):
        return None
    account = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    return TrafficLog(
        proxy_writer(settings.data_proxy_url, account),
        batch_rows=settings.serving_traffic_batch_rows,
        max_rows=settings.serving_traffic_max_rows,
        flush_s=settings.serving_traffic_flush_seconds,
    )


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
    authenticator = MlflowAuthenticator(
        os.environ["MLFLOW_TRACKING_URI"],
        settings.model_name,
        ttl,
        os.environ.get("TRUSTED_PROXY_ADDRESSES", ""),
    )
    limits = Limits(settings.serving_max_body_bytes, settings.serving_max_rows)
    traffic = traffic_log(settings)
    if traffic is not None:
        threading.Thread(target=traffic.run, args=(stop,), daemon=True).start()
    server = RequestMetrics(ChampionServer(follower, authenticator, limits, traffic), "serving")
    if os.environ.get("METRICS_PORT"):
        # On a port of its own, which compose does not publish: the stack's network only.
        start_http_server(int(os.environ["METRICS_PORT"]), addr=args.host)
    try:
        uvicorn.run(server, host=args.host, port=args.port, log_level="warning")
    finally:
        stop.set()
        if traffic is not None:
            traffic.flush()  # what was answered since the last batch
    return 0


if __name__ == "__main__":
    sys.exit(main())
