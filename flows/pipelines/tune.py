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

from typing import TYPE_CHECKING, Any

from platform_names import (
    TUNE_TRIAL_DEPLOYMENT,
)
from prefect import flow, get_run_logger

from flows.logic.results import TuneResult
from flows.pipelines import FLOW_TIMEOUT_S
from flows.pipelines.train import train
from flows.pipelines.tune_trial import tune_trial
from flows.settings import Settings
from flows.steps.ingest import load, month_or_path
from flows.steps.tracking import failed_if_raises, open_run
from flows.steps.tuning import (
    finish_parent,
    tag_training_run,
    trial_rmse,
)

if TYPE_CHECKING:
    import optuna

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


def run_on_pool(
    train_location: str, batch: list[tuple[int, dict[str, Any]]], parent_run_id: str,
    timeout_s: float,
) -> None:  # fmt: skip
    """Start one `tune-trial` flow run per trial on the pool; wait until all have ended."""
    from flows.resources.deployments import start_runs, wait_until_final

    parameter_sets = [
        {"train_location": train_location, "params": params, "parent_run_id": parent_run_id,
         "number": number}
        for number, params in batch
    ]  # fmt: skip
    started = start_runs(TUNE_TRIAL_DEPLOYMENT, parameter_sets)
    waiting = wait_until_final([flow_run.id for flow_run in started], timeout_s)
    if waiting:
        scheduled = sum(1 for r in waiting if r.state is not None and r.state.is_scheduled())
        raise TimeoutError(
            f"{scheduled} trial flow runs still Scheduled after {timeout_s:.0f} s: no free "
            "worker slot (this tuning run holds one itself; raise WORKER_LIMIT or add "
            "workers: make up WORKERS=3)"
        )


def search(
    train_location: str, parent_run_id: str, trials: int, parallel: int, distribute: bool,
    trial_timeout_s: float,
) -> optuna.Study:  # fmt: skip
    """Optuna's study, told each trial's holdout rmse: ``parallel`` trials at a time, as flow
    runs on the pool (``distribute``) or in this process."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=SEED))
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
        if any(t.value is not None for t in study.trials):
            get_run_logger().info(
                "%d/%d trials done, best holdout rmse %.4f", len(study.trials), trials,
                study.best_value,
            )  # fmt: skip
    if not any(t.value is not None for t in study.trials):
        raise RuntimeError(f"none of the {trials} trials finished: see their flow runs")
    return study


@flow(name="tune", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["tune"])
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
) -> TuneResult:
    """Search xgboost parameters with Optuna, ``parallel`` trials at a time as flow runs on the
    pool (``distribute``; in this process otherwise), then train the best on the training month
    and promote it under the usual gate."""
    if trials < 1 or parallel < 1:
        from flows.errors import InvalidParameters

        raise InvalidParameters(f"trials ({trials}) and parallel ({parallel}) must be >= 1")
    settings = Settings.from_env()
    train_location = month_or_path(color, train_month, train_path, "train")
    val_location = month_or_path(color, val_month, val_path, "val")
    load(train_location)  # bad data stops the search before any run exists
    parent_run_id = open_run(settings.experiment_name, f"tune {train_location.rsplit('/', 1)[-1]}")
    with failed_if_raises(parent_run_id):
        study = search(train_location, parent_run_id, trials, parallel, distribute, trial_timeout_s)
        finish_parent(parent_run_id, study, trials)
    print(f"best trial {study.best_trial.number}: {study.best_params}")
    trained = train(
        color=color,
        train_path=train_location,
        val_path=val_location,
        model_name=model_name,
        params=study.best_params,
        promote=True,
    )
    tag_training_run(trained.run_id, parent_run_id)
    return TuneResult(parent_run_id, study.best_value, study.best_params, trained)
