"""Commands behind `make train` and `make upload-data` (in the worker container, or locally)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.data import TripDataError, upload_month_file
from flows.settings import Settings
from flows.store import data_store


def upload(paths: list[str]) -> int:
    """Put local TLC files into the data store; stop at the first bad one."""
    store = data_store(Settings.from_env())
    if store is None:
        print("neither DATA_BUCKET nor DATA_DIR is set: nowhere to store files", file=sys.stderr)
        return 2
    for path in paths:
        try:
            print(f"{path} -> {upload_month_file(store, Path(path))}")
        except TripDataError as error:
            print(f"not uploaded: {error}", file=sys.stderr)
            return 1
    return 0


def run_training(color: str, train_month: str, val_month: str, timeout_s: int) -> int:
    """Run the `train` deployment with promotion on the worker, wait, report what it produced."""
    import mlflow
    from mlflow import MlflowClient
    from prefect.deployments import run_deployment

    from flows.train import run_url

    parameters = {
        "color": color,
        "train_month": train_month,
        "val_month": val_month,
        "promote": True,
    }
    flow_run = run_deployment("train/train", parameters=parameters, timeout=timeout_s)
    print(f"flow run {flow_run.name} ({flow_run.id}): {flow_run.state.name}")
    if not flow_run.state.is_completed():
        print(flow_run.state.message or "", file=sys.stderr)
        return 1
    # The flow tags its MLflow run with the Prefect flow-run id: follow that link back (a retried
    # flow run may also have a FAILED run from its crashed attempt).
    runs = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=(
            f"tags.`prefect.flow_run_id` = '{flow_run.id}' and attributes.status = 'FINISHED'"
        ),
    )
    if not runs:
        print("no MLflow run is tagged with this flow run", file=sys.stderr)
        return 1
    run = runs[0]
    client = MlflowClient()
    name = Settings.from_env().model_name
    version = client.search_model_versions(f"name='{name}' and run_id='{run.info.run_id}'")[0]
    champion = "champion" in client.get_model_version(name, version.version).aliases
    print(f"MLflow run: {run_url(run)}")
    print(f"rmse:       {run.data.metrics['rmse']:.4f}")
    print(f"model:      {name} version {version.version}")
    print(f"champion:   {'yes' if champion else 'no'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upload", help="store local TLC parquet files in the data bucket")
    up.add_argument("paths", nargs="+")
    tr = commands.add_parser("train", help="run the train deployment (with promotion) and wait")
    tr.add_argument("--color", default="green", choices=["green", "yellow"])
    tr.add_argument("--train-month", required=True)
    tr.add_argument("--val-month", required=True)
    tr.add_argument("--timeout", type=int, default=1800, help="seconds to wait for the run")
    args = parser.parse_args(argv)
    if args.command == "upload":
        return upload(args.paths)
    return run_training(args.color, args.train_month, args.val_month, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
