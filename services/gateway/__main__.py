"""Start the Prefect gateway: python -m services.gateway [--host 0.0.0.0] [--port 4200].

Settings from the environment: PREFECT_UPSTREAM_URL (Prefect's server inside the stack),
PREFECT_API_AUTH_STRING (its internal string), MLFLOW_TRACKING_URI (the accounts),
GATEWAY_DATABASE_URL (the audit log), MLFLOW_AUTH_CACHE_TTL_SECONDS (30), WORK_POOL (the
platform's pool), TRUSTED_PROXY_ADDRESSES (the TLS proxy's addresses, whose X-Forwarded-For is
believed). Prefect's UI, answered here, reads PREFECT_UI_API_URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from services.gateway.app import GatewaySettings, create_app

# MLflow's own default, and the bound on how long a deleted account keeps working here.
DEFAULT_AUTH_TTL_S = 30.0


def settings_from_env() -> GatewaySettings:
    """The gateway's settings; a missing one stops it with its name."""
    missing = [
        name
        for name in (
            "PREFECT_UPSTREAM_URL",
            "PREFECT_API_AUTH_STRING",
            "MLFLOW_TRACKING_URI",
            "GATEWAY_DATABASE_URL",
        )
        if not os.environ.get(name)
    ]
    if missing:
        raise SystemExit(f"gateway: set {', '.join(missing)}")
    return GatewaySettings(
        prefect_url=os.environ["PREFECT_UPSTREAM_URL"],
        auth_string=os.environ["PREFECT_API_AUTH_STRING"],
        mlflow_url=os.environ["MLFLOW_TRACKING_URI"],
        database_url=os.environ["GATEWAY_DATABASE_URL"],
        cache_ttl_s=float(os.environ.get("MLFLOW_AUTH_CACHE_TTL_SECONDS") or DEFAULT_AUTH_TTL_S),
        work_pool=os.environ.get("WORK_POOL") or "taxi-pool",
        trusted_proxies=os.environ.get("TRUSTED_PROXY_ADDRESSES", ""),
    )


def main(argv: list[str] | None = None) -> int:
    """Serve the gateway over HTTP and WebSockets."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4200)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app(settings_from_env())
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws="websockets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
