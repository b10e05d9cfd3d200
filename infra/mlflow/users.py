"""MLflow accounts: the worker's and the model server's (kept in step with .env), teammates'
(`make user`) and those of workers on other hosts (`make worker-env`); on every `make up`, also
the adoption of versions trained before the stack kept records.

python -m infra.mlflow.users sync-accounts | create NAME | worker NAME | delete NAME | grant ...
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

from flows.settings import Settings


def auth_client() -> Any:
    """The basic-auth admin client; credentials come from MLFLOW_TRACKING_USERNAME/PASSWORD."""
    return get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def user_exists(client: Any, username: str) -> bool:
    """True when ``username`` has an account."""
    try:
        client.get_user(username)
        return True
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def ensure_user(client: Any, username: str, password: str) -> str:
    """Create the account, or set its password to ``password``; say which."""
    if user_exists(client, username):
        client.update_user_password(username, password)
        return "updated"
    client.create_user(username, password)
    return "created"


def grant_permission(
    client: Any, username: str, experiment: str | None, model: str | None, permission: str
) -> int:
    """Grant ``permission`` on an experiment (by name) or a registered model."""
    import mlflow

    if experiment:
        found = mlflow.get_experiment_by_name(experiment)
        if found is None:
            print(f"no experiment named {experiment}", file=sys.stderr)
            return 1
        resource_type, resource_id = "experiment", str(found.experiment_id)
    else:
        resource_type, resource_id = "registered_model", str(model)
    client.grant_user_permission(username, resource_type, resource_id, permission)
    print(f"{username}: {permission} on {resource_type} {experiment or model}")
    return 0


def sync_accounts(client: Any) -> int:
    """The worker's account, the platform's experiments and model (made here, by the admin, so
    no teammate can take their names first), and the model server's account, read-only: READ
    on the model it serves, never more."""
    name = os.environ["MLFLOW_WORKER_USERNAME"]
    outcome = ensure_user(client, name, os.environ["MLFLOW_WORKER_PASSWORD"])
    print(f"worker account {name}: {outcome}")
    settings = Settings.from_env()
    ensure_training_targets(client, name, settings.experiment_name, settings.model_name)
    for experiment in (settings.scoring_experiment_name, settings.monitoring_experiment_name):
        ensure_experiment(client, name, experiment)
    print(
        f"experiments {settings.experiment_name}, {settings.scoring_experiment_name}, "
        f"{settings.monitoring_experiment_name} and model {settings.model_name}: managed by {name}"
    )
    serving = os.environ.get("MLFLOW_SERVING_USERNAME")
    if serving:
        outcome = ensure_user(client, serving, os.environ["MLFLOW_SERVING_PASSWORD"])
        model = Settings.from_env().model_name
        ensure_model_permission(client, serving, model, "READ")
        print(f"model server account {serving}: {outcome}, READ on model {model}")
    adopt_earlier_versions(settings.model_name)
    return 0


def adopt_earlier_versions(model: str) -> None:
    """Versions trained before the stack kept records (an upgrade from such a release) adopted
    once, or named with why not (flows/resources/registry.py `adopt_versions`)."""
    from mlflow import MlflowClient

    from flows.resources.registry import adopt_versions

    for version, outcome in adopt_versions(MlflowClient(), model):
        print(f"model {model} version {version}: {outcome}")


def ensure_model_permission(client: Any, username: str, model: str, permission: str) -> None:
    """Give ``username`` exactly ``permission`` on a registered model."""
    ensure_permission(client, username, "registered_model", model, permission)


def ensure_permission(
    client: Any, username: str, resource_type: str, key: str, permission: str
) -> None:
    """Give ``username`` exactly ``permission`` on one experiment (by id) or registered model
    (safe to re-run: MLflow refuses a second grant, so an existing one is changed instead)."""
    try:
        client.grant_user_permission(username, resource_type, key, permission)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        current = client.get_user_permission(username, resource_type, key)
        if current.permission != permission:
            client.revoke_user_permission(username, resource_type, key)
            client.grant_user_permission(username, resource_type, key, permission)


def ensure_experiment(client: Any, worker: str, experiment: str) -> str:
    """Create an experiment if it is missing and keep the stack's worker its manager; its id."""
    from mlflow import MlflowClient

    tracking = MlflowClient()
    found = tracking.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else tracking.create_experiment(experiment)
    ensure_permission(client, worker, "experiment", str(experiment_id), "MANAGE")
    return str(experiment_id)


def ensure_training_targets(client: Any, worker: str, experiment: str, model: str) -> str:
    """Create the training experiment and registered model if they are missing, keep the
    stack's worker their manager, and return the experiment's id.

    Made here rather than by whichever worker trains first: MLflow makes a creator the only
    manager, and the stack's worker and workers on other hosts must all write to both.
    """
    from mlflow import MlflowClient

    experiment_id = ensure_experiment(client, worker, experiment)
    tracking = MlflowClient()
    try:
        tracking.get_registered_model(model)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        tracking.create_registered_model(model)
    ensure_model_permission(client, worker, model, "MANAGE")
    return experiment_id


def create_worker_account(client: Any, name: str) -> int:
    """An account for a worker on another host: EDIT on the training experiment and the model
    (it registers versions and points `challenger` at them; the tracking server's app leaves
    every other alias and the stack's records to the stack). Prints its two settings; the
    password only this once."""
    if user_exists(client, name):
        print(f"user {name} exists already", file=sys.stderr)
        return 1
    settings = Settings.from_env()
    experiment, model = settings.experiment_name, settings.model_name
    stack_worker = os.environ["MLFLOW_WORKER_USERNAME"]
    experiment_id = ensure_training_targets(client, stack_worker, experiment, model)
    # First the gateway's record (the account as a worker, polling only these queues): should
    # this fail, no account exists that the gateway would take for a teammate.
    gateway_request("PUT", name, {"work_queues": [WORKER_QUEUE]})
    password = secrets.token_urlsafe(24)
    client.create_user(name, password)
    ensure_permission(client, name, "experiment", experiment_id, "EDIT")
    ensure_model_permission(client, name, model, "EDIT")
    print(f"MLFLOW_TRACKING_USERNAME={name}")
    print(f"MLFLOW_TRACKING_PASSWORD={password}")
    return 0


# The work queue of workers on other hosts (the `in-stack` queue is the stack's own).
WORKER_QUEUE = "default"


def gateway_request(method: str, worker: str, body: dict[str, Any] | None = None) -> bool:
    """Record (PUT) or forget (DELETE) a worker account at the Prefect gateway, as the admin;
    True when the gateway had it (DELETE)."""
    import requests

    answer = requests.request(
        method,
        f"{os.environ['GATEWAY_URL'].rstrip('/')}/gateway/workers/{worker}",
        json=body,
        auth=(os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]),
        timeout=30,
    )
    answer.raise_for_status()
    return bool(answer.json().get("deleted", True))


def print_audit(limit: int, username: str | None) -> int:
    """The gateway's latest audit entries, one line each, newest first."""
    import requests

    answer = requests.get(
        f"{os.environ['GATEWAY_URL'].rstrip('/')}/gateway/audit",
        params={"limit": str(limit), **({"username": username} if username else {})},
        auth=(os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]),
        timeout=30,
    )
    answer.raise_for_status()
    for entry in answer.json():
        refused = entry["detail"].get("refused")
        print(
            f"{entry['at']}  {entry['username']} ({entry['role']})  {entry['method']} "
            f"{entry['path']}  {entry['status']}" + (f"  refused: {refused}" if refused else "")
        )
    return 0


def main() -> int:
    """Run one account command as the admin (MLFLOW_TRACKING_USERNAME/PASSWORD)."""
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "sync-accounts", help="create or update the worker's and model server's accounts"
    )
    create = commands.add_parser("create", help="create a teammate; prints its password once")
    create.add_argument("name")
    worker = commands.add_parser(
        "worker", help="create a worker's account for another host; prints its settings"
    )
    worker.add_argument("name")
    delete = commands.add_parser("delete", help="delete an account")
    delete.add_argument("name")
    grant = commands.add_parser("grant", help="give a user a permission on one experiment/model")
    grant.add_argument("name")
    target = grant.add_mutually_exclusive_group(required=True)
    target.add_argument("--experiment", help="experiment name")
    target.add_argument("--model", help="registered model name")
    grant.add_argument("--permission", default="READ", choices=["READ", "EDIT", "MANAGE"])
    audit = commands.add_parser("audit", help="print the Prefect gateway's audit log")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--username")
    args = parser.parse_args()
    if args.command == "audit":
        return print_audit(args.limit, args.username)
    client = auth_client()

    if args.command == "grant":
        return grant_permission(client, args.name, args.experiment, args.model, args.permission)

    if args.command == "sync-accounts":
        return sync_accounts(client)
    if args.command == "worker":
        return create_worker_account(client, args.name)
    if args.command == "create":
        if user_exists(client, args.name):
            print(f"user {args.name} exists already", file=sys.stderr)
            return 1
        password = secrets.token_urlsafe(24)
        client.create_user(args.name, password)
        print(f"created MLflow user {args.name}. Its password, shown only now:\n\n  {password}\n")
        print("The teammate sets MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to these.")
        return 0
    if not user_exists(client, args.name):
        print(f"no user {args.name}", file=sys.stderr)
        return 1
    client.delete_user(args.name)
    print(f"deleted MLflow user {args.name}")
    # A worker account's record at the gateway goes too, so a later account of the same name
    # starts as a teammate.
    if os.environ.get("GATEWAY_URL") and gateway_request("DELETE", args.name):
        print(f"the Prefect gateway forgot worker {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
