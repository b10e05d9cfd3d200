"""Tuning flow: an Optuna search whose trials are flow runs of their own, spread over the pool.

`tune` asks Optuna for a batch of parameter sets, starts one `tune-trial` flow run per set on the
work pool (so trials run on whichever workers, on whichever hosts, have free slots), tells Optuna
each trial's rmse as read from its MLflow run (a child of the tuning run), and repeats until
``trials`` are done. The best parameters are then trained on the training month, validated on the
validation month and put through the promotion gate, like any `train` run.

Trials never see the validation month that promotion uses: each fits on the earlier 80% of the
training month's pickups and is scored on the latest 20%.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.months import load, month_or_path
from flows.retry import IO_RETRIES
from flows.settings import Settings
from flows.tracking import failed_if_raises, open_run

if TYPE_CHECKING:
    import optuna
    import pandas as pd

PARENT_TAG, TRIAL_TAG = "mlflow.parentRunId", "tuning.trial"
TUNING_HOLDOUT_SHARE = 0.2
TRIAL_DEPLOYMENT = "tune-trial/tune-trial"
SEED = 42


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """The search space: the tree shape, the learning rate and the regularisation (depth at most
    8, the default's: deeper trees grew models past the promotion gate's size budget)."""
    return {
        "max_depth": trial.suggest_int("max_depth", 4, 8),
        "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 20.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.6, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def tuning_split(trips: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training month split by pickup time: trials fit on the earlier part, are scored on
    the latest ``TUNING_HOLDOUT_SHARE`` (never on the validation month)."""
    order = trips["pickup_datetime"].sort_values(kind="stable").index
    cut = int(len(order) * (1 - TUNING_HOLDOUT_SHARE))
    return trips.loc[order[:cut]], trips.loc[order[cut:]]


@task(cache_policy=NO_CACHE)
def fit_and_score(trips: pd.DataFrame, params: dict[str, Any]) -> tuple[float, int]:
    """Fit on the earlier pickups, score on the latest: (holdout rmse, trees used)."""
    from flows.model import evaluate, train_model, trees_used

    fit_trips, holdout = tuning_split(trips)
    model = train_model(fit_trips, params)
    return evaluate(model.predict(holdout), holdout["duration"])["rmse"], trees_used(model)


@task(**IO_RETRIES)
def record_trial(run_id: str, parent_run_id: str, number: int, params: dict[str, Any],
                 rmse: float, trees: int) -> None:  # fmt: skip
    """The trial's MLflow run: a child of the tuning run, with its parameters and rmse."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_tag(run_id, PARENT_TAG, parent_run_id)
    client.set_tag(run_id, TRIAL_TAG, str(number))
    for key, value in params.items():
        client.log_param(run_id, key, value)
    client.log_metric(run_id, "holdout_rmse", rmse)
    client.log_metric(run_id, "trees_used", trees)
    client.set_terminated(run_id, "FINISHED")


@flow(name="tune-trial", log_prints=True)
def tune_trial(
    train_location: str, params: dict[str, Any], parent_run_id: str, number: int
) -> float:
    """One trial: fit with ``params`` on the training month's earlier pickups; its rmse."""
    settings = Settings.from_env()
    data = load(train_location)
    run_id = open_run(settings.experiment_name, f"trial {number}")
    with failed_if_raises(run_id):
        rmse, trees = fit_and_score(data.trips, params)
        record_trial(run_id, parent_run_id, number, params, rmse, trees)
    print(f"trial {number}: holdout rmse {rmse:.4f} ({trees} trees)")
    return rmse


@task(**IO_RETRIES)
def trial_rmse(parent_run_id: str, number: int) -> float | None:
    """A finished trial's rmse, from its MLflow run (None when it did not finish)."""
    from mlflow import MlflowClient

    parent = MlflowClient().get_run(parent_run_id)
    runs = MlflowClient().search_runs(
        [parent.info.experiment_id],
        f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TRIAL_TAG}` = '{number}' "
        "and attributes.status = 'FINISHED'",
    )
    return float(runs[0].data.metrics["holdout_rmse"]) if runs else None


def run_on_pool(
    train_location: str, batch: list[tuple[int, dict[str, Any]]], parent_run_id: str,
    timeout_s: float,
) -> None:  # fmt: skip
    """Start one `tune-trial` flow run per trial on the pool; wait until all have ended."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    started: list[UUID] = []
    for number, params in batch:
        flow_run = run_deployment(
            TRIAL_DEPLOYMENT,
            parameters={
                "train_location": train_location,
                "params": params,
                "parent_run_id": parent_run_id,
                "number": number,
            },
            timeout=0,
        )
        started.append(flow_run.id)  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            states = [client.read_flow_run(i).state for i in started]
            if all(s is not None and s.is_final() for s in states):
                return
            if time.monotonic() > deadline:
                waiting = sum(1 for s in states if s is not None and s.is_scheduled())
                raise TimeoutError(
                    f"{waiting} trial flow runs still Scheduled after {timeout_s:.0f} s: no free "
                    "worker slot (this tuning run holds one itself; raise WORKER_LIMIT or add "
                    "workers: make up WORKERS=3)"
                )
            time.sleep(1)


@task(**IO_RETRIES)
def finish_parent(parent_run_id: str, study: optuna.Study, trials: int) -> None:
    """The tuning run: the best trial, the search's plots, FINISHED."""
    import mlflow
    from matplotlib.figure import Figure
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    from flows import plots

    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
        mlflow.log_params({"trials": trials, "tuning_holdout_share": TUNING_HOLDOUT_SHARE})
        mlflow.log_metric("best_holdout_rmse", study.best_value)
        mlflow.set_tag("tuning.best_trial", str(study.best_trial.number))
        for name, plot in (
            ("optimization_history.png", plot_optimization_history),
            ("param_importances.png", plot_param_importances),
        ):
            if name == "param_importances.png" and len(study.trials) < 2:
                continue
            figure = plot(study).get_figure()
            assert isinstance(figure, Figure)
            mlflow.log_figure(figure, f"plots/{name}")
            plots.close(figure)


@flow(name="tune", log_prints=True)
def tune(
    color: str = "green",
    train_month: str | None = None,
    val_month: str | None = None,
    train_path: str | None = None,
    val_path: str | None = None,
    trials: int = 20,
    parallel: int = 4,
    distribute: bool = True,
    model_name: str | None = None,
    trial_timeout_s: float = 1800,
) -> dict[str, Any]:
    """Search xgboost parameters with Optuna, ``parallel`` trials at a time as flow runs on the
    pool (``distribute``; in this process otherwise), then train the best on the training month
    and promote it under the usual gate."""
    import optuna

    from flows.train import train

    if trials < 1 or parallel < 1:
        from flows.errors import InvalidParameters

        raise InvalidParameters(f"trials ({trials}) and parallel ({parallel}) must be >= 1")
    settings = Settings.from_env()
    train_location = month_or_path(color, train_month, train_path, "train")
    val_location = month_or_path(color, val_month, val_path, "val")
    load(train_location)  # bad data stops the search before any run exists
    parent_run_id = open_run(settings.experiment_name, f"tune {train_location.rsplit('/', 1)[-1]}")
    logger = get_run_logger()
    with failed_if_raises(parent_run_id):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=SEED)
        )
        while len(study.trials) < trials:
            asked = [study.ask() for _ in range(min(parallel, trials - len(study.trials)))]
            batch = [(t.number, suggest(t)) for t in asked]
            if distribute:
                run_on_pool(train_location, batch, parent_run_id, trial_timeout_s)
            else:
                for number, params in batch:
                    tune_trial(train_location, params, parent_run_id, number)
            for trial in asked:
                rmse = trial_rmse(parent_run_id, trial.number)
                if rmse is None:  # the trial's flow run failed: Optuna samples around it
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, rmse)
            finished = [t for t in study.trials if t.value is not None]
            if finished:
                logger.info(
                    "%d/%d trials done, best holdout rmse %.4f", len(study.trials), trials,
                    study.best_value,
                )  # fmt: skip
        if not any(t.value is not None for t in study.trials):
            raise RuntimeError(f"none of the {trials} trials finished: see their flow runs")
        finish_parent(parent_run_id, study, trials)
    print(f"best trial {study.best_trial.number}: {study.best_params}")
    result = train(
        color=color,
        train_path=train_location,
        val_path=val_location,
        model_name=model_name,
        params=study.best_params,
        promote=True,
    )
    from mlflow import MlflowClient

    MlflowClient().set_tag(result["run_id"], "tuning.run_id", parent_run_id)
    result["tuning_run_id"] = parent_run_id
    result["best_holdout_rmse"] = study.best_value
    result["best_params"] = study.best_params
    return result
