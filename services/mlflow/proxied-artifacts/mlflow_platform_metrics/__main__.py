"""Serve the metrics every process of this container wrote (prometheus-client's multiprocess
mode): python -m mlflow_platform_metrics --port 9101."""

from __future__ import annotations

import argparse
import os
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    """Serve PROMETHEUS_MULTIPROC_DIR's metrics on ``--port`` until stopped."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        parser.error("set PROMETHEUS_MULTIPROC_DIR to the folder the server's processes write")
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    start_http_server(args.port, addr=args.host, registry=registry)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
