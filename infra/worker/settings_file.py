"""Write the settings file of a worker on another host (`make worker-env`).

    <account lines> | python3 -m infra.worker.settings_file --env-file .env --name NAME
        [--host HOST | --host https://NAME] --output worker-NAME.env

Reads the stack's .env for the published ports, pool and names, and the account that
`infra.mlflow.users worker` just made from stdin. The file holds what a teammate's machine needs
and can reach, nothing more: the Prefect gateway's URL, the MLflow URL and the worker's
own account (for MLflow, the data proxy and the Prefect gateway alike), and the data proxy's URL;
never the S3 key, a database password, Prefect's internal string or the admin's.
Standard library only: it runs with the host's python3.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from infra.make_env import parse_env, read_env

# Addresses that only this machine (or no one in particular) can reach.
LOCAL_ONLY = {"127.0.0.1", "localhost", "0.0.0.0", "::1", "::"}


def documented_default(name: str) -> str:
    """A setting's default as .env.example writes it (held equal to flows/settings.py's by
    tests/unit/test_configuration.py): this runs on the host's python3, without pydantic."""
    return read_env(Path(__file__).resolve().parents[2] / ".env.example")[name]


def stack_host(stack: dict[str, str], given: str | None) -> str:
    """The name or address other hosts reach the stack at: as given, else BIND_ADDRESS when it
    names one interface, else this machine's name."""
    if given:
        return given
    bound = stack.get("BIND_ADDRESS") or "127.0.0.1"
    return bound if bound not in LOCAL_ONLY else socket.getfqdn()


# The ports of infra/tls/Caddyfile: TLS in front of each published service, when the stack is
# given as https://<name> (make worker-env HOST=https://stack.example.org).
TLS_PORTS = {"MLFLOW_PORT": 443, "PREFECT_PORT": 4443, "DATA_PROXY_PORT": 5443}
PLAIN_PORTS = {"MLFLOW_PORT": 5000, "PREFECT_PORT": 4200, "DATA_PROXY_PORT": 5001}


def service_urls(stack: dict[str, str], host: str) -> dict[str, str]:
    """MLflow's, the Prefect gateway's and the data proxy's URLs for other hosts: https through
    the TLS proxy when ``host`` says https://, else the published ports over http."""
    scheme, separator, name = host.partition("://")
    if separator and scheme == "https":
        base = {key: f"https://{name.rstrip('/')}:{port}" for key, port in TLS_PORTS.items()}
        base["MLFLOW_PORT"] = f"https://{name.rstrip('/')}"
    else:
        bare = name if separator else host
        base = {
            key: f"http://{bare}:{stack.get(key) or default}"
            for key, default in PLAIN_PORTS.items()
        }
    return {
        "PREFECT_API_URL": f"{base['PREFECT_PORT']}/api",
        "MLFLOW_TRACKING_URI": base["MLFLOW_PORT"],
        "DATA_PROXY_URL": base["DATA_PROXY_PORT"],
    }


def worker_settings(
    stack: dict[str, str], account: dict[str, str], name: str, host: str, file_name: str
) -> str:
    """The worker's settings file."""
    urls = service_urls(stack, host)
    values = {
        "WORKER_NAME": name,
        # The `in-stack` queue holds flows that write into the data bucket.
        "WORKER_QUEUES": "default",
        "WORK_POOL": stack.get("WORK_POOL") or documented_default("WORK_POOL"),
        "PREFECT_API_URL": urls["PREFECT_API_URL"],
        # The worker's own account, at the Prefect gateway too: never the stack's internal string.
        "PREFECT_API_AUTH_STRING": (
            f"{account['MLFLOW_TRACKING_USERNAME']}:{account['MLFLOW_TRACKING_PASSWORD']}"
        ),
        "MLFLOW_TRACKING_URI": urls["MLFLOW_TRACKING_URI"],
        "MLFLOW_TRACKING_USERNAME": account["MLFLOW_TRACKING_USERNAME"],
        "MLFLOW_TRACKING_PASSWORD": account["MLFLOW_TRACKING_PASSWORD"],
        "DATA_PROXY_URL": urls["DATA_PROXY_URL"],
        "MODEL_NAME": stack.get("MODEL_NAME", ""),
        "MLFLOW_EXPERIMENT_NAME": stack.get("MLFLOW_EXPERIMENT_NAME", ""),
        "TLC_BASE_URL": stack.get("TLC_BASE_URL", ""),
        "NOTIFY_WEBHOOK_URL": stack.get("NOTIFY_WEBHOOK_URL", ""),
        # Empty: derived from the cores and memory of the worker's own machine.
        "WORKER_LIMIT": "",
    }
    header = (
        f"# Worker {name} on another host: copy this file there, then, in a checkout of the\n"
        f"# project, `make worker WORKER_ENV={file_name}`. It holds the worker's password: send\n"
        "# it privately, never commit it. On the stack's machine,\n"
        f"# `make user-delete NAME={name}` revokes the account.\n"
    )
    return header + "".join(f"{key}={value}\n" for key, value in values.items())


def main() -> int:
    """Write the file (owner-only) from the stack's .env and the account on stdin."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    account = parse_env(sys.stdin.read())
    if set(account) != {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}:
        print("no worker account was made (see the message above)", file=sys.stderr)
        return 1
    stack = read_env(args.env_file)
    host = stack_host(stack, args.host)
    bound = stack.get("BIND_ADDRESS") or "127.0.0.1"
    served_over_tls = host.startswith("https://")
    if not served_over_tls and (host in LOCAL_ONLY or bound == "127.0.0.1"):
        print(
            f"warning: the stack publishes on {bound}, which other hosts cannot reach: "
            "set BIND_ADDRESS in .env (README: share with your team)",
            file=sys.stderr,
        )
    descriptor = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(worker_settings(stack, account, args.name, host, args.output.name))
    print(f"wrote {args.output} for worker {args.name} (stack at {host})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
