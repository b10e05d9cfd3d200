"""Write the settings file of a worker on another host (`make worker-env`).

    <account lines> | python3 -m infra.worker.settings_file --env-file .env --name NAME
        [--host HOST] --output worker-NAME.env

Reads the stack's .env for the published ports, pool and names, and the account that
`infra.mlflow.users worker` just made from stdin. The file holds what a teammate's machine needs
and can reach, nothing more: the Prefect API URL and auth string, the MLflow URL and the worker's
own account, and the data proxy's URL; never the S3 key, a database password or the admin's.
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


def worker_settings(
    stack: dict[str, str], account: dict[str, str], name: str, host: str, file_name: str
) -> str:
    """The worker's settings file."""
    values = {
        "WORKER_NAME": name,
        # The `in-stack` queue holds flows that write into the data bucket.
        "WORKER_QUEUES": "default",
        "WORK_POOL": stack.get("WORK_POOL") or documented_default("WORK_POOL"),
        "PREFECT_API_URL": f"http://{host}:{stack.get('PREFECT_PORT') or 4200}/api",
        "PREFECT_API_AUTH_STRING": stack["PREFECT_API_AUTH_STRING"],
        "MLFLOW_TRACKING_URI": f"http://{host}:{stack.get('MLFLOW_PORT') or 5000}",
        "MLFLOW_TRACKING_USERNAME": account["MLFLOW_TRACKING_USERNAME"],
        "MLFLOW_TRACKING_PASSWORD": account["MLFLOW_TRACKING_PASSWORD"],
        "DATA_PROXY_URL": f"http://{host}:{stack.get('DATA_PROXY_PORT') or 5001}",
        "MODEL_NAME": stack.get("MODEL_NAME", ""),
        "MLFLOW_EXPERIMENT_NAME": stack.get("MLFLOW_EXPERIMENT_NAME", ""),
        "TLC_BASE_URL": stack.get("TLC_BASE_URL", ""),
        "NOTIFY_WEBHOOK_URL": stack.get("NOTIFY_WEBHOOK_URL", ""),
        # Empty: derived from the cores and memory of the worker's own machine.
        "WORKER_LIMIT": "",
    }
    header = (
        f"# Worker {name} on another host: copy this file there, then, in a checkout of the\n"
        f"# project, `make worker WORKER_ENV={file_name}`. It holds a password and the Prefect\n"
        "# auth string: send it privately, never commit it. On the stack's machine,\n"
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
    if host in LOCAL_ONLY or bound == "127.0.0.1":
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
