"""Serve the platform's figures for Prometheus: python -m services.exporter [--port 9102]."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from flows.settings import Settings
from services.exporter.collector import PlatformCollector, Sources


def main(argv: list[str] | None = None) -> int:
    """Register the collector and serve it until stopped."""
    from prometheus_client import REGISTRY, start_http_server

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9102)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env()
    sources = Sources(
        model_name=settings.model_name,
        work_pool=settings.work_pool,
        scoring_experiment=settings.scoring_experiment_name,
        monitoring_experiment=settings.monitoring_experiment_name,
    )
    # Imported now, not on the first scrape (they take seconds).
    import mlflow  # noqa: F401
    import prefect.client.orchestration  # noqa: F401

    REGISTRY.register(PlatformCollector(sources))
    start_http_server(args.port, addr=args.host)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
