"""MLflow accounts: the worker's and the model server's (kept in step with .env) and teammates'
(`make user`).

python -m infra.mlflow.users sync-accounts | create NAME | delete NAME | grant NAME ...
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client


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
    """The worker's account, and the model server's, read-only: READ on the model it serves
    (the model need not exist yet), never more."""
    name = os.environ["MLFLOW_WORKER_USERNAME"]
    outcome = ensure_user(client, name, os.environ["MLFLOW_WORKER_PASSWORD"])
    print(f"worker account {name}: {outcome}")
    serving = os.environ.get("MLFLOW_SERVING_USERNAME")
    if serving:
        outcome = ensure_user(client, serving, os.environ["MLFLOW_SERVING_PASSWORD"])
        model = os.environ.get("MODEL_NAME") or "taxi-trip-duration"
        ensure_model_permission(client, serving, model, "READ")
        print(f"model server account {serving}: {outcome}, READ on model {model}")
    return 0


def ensure_model_permission(client: Any, username: str, model: str, permission: str) -> None:
    """Give ``username`` exactly ``permission`` on a registered model (safe to re-run: MLflow
    refuses a second grant, so an existing one is changed instead)."""
    try:
        client.grant_user_permission(username, "registered_model", model, permission)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        current = client.get_user_permission(username, "registered_model", model)
        if current.permission != permission:
            client.revoke_user_permission(username, "registered_model", model)
            client.grant_user_permission(username, "registered_model", model, permission)


def main() -> int:
    """Run one account command as the admin (MLFLOW_TRACKING_USERNAME/PASSWORD)."""
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "sync-accounts", help="create or update the worker's and model server's accounts"
    )
    create = commands.add_parser("create", help="create a teammate; prints its password once")
    create.add_argument("name")
    delete = commands.add_parser("delete", help="delete an account")
    delete.add_argument("name")
    grant = commands.add_parser("grant", help="give a user a permission on one experiment/model")
    grant.add_argument("name")
    target = grant.add_mutually_exclusive_group(required=True)
    target.add_argument("--experiment", help="experiment name")
    target.add_argument("--model", help="registered model name")
    grant.add_argument("--permission", default="EDIT", choices=["READ", "EDIT", "MANAGE"])
    args = parser.parse_args()
    client = auth_client()

    if args.command == "grant":
        return grant_permission(client, args.name, args.experiment, args.model, args.permission)

    if args.command == "sync-accounts":
        return sync_accounts(client)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
