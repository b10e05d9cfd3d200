"""Tasks of the tuning flow: a trial's rmse, the tuning run's record."""

from __future__ import annotations

from typing import TYPE_CHECKING

from platform_names import (
    BEST_TRIAL_TAG,
    PARENT_RUN_TAG,
    TRIAL_TAG,
    TUNING_RUN_TAG,
)
from prefect import task

from flows.steps.retry import IO_RETRIES
from flows.steps.trials import TUNING_HOLDOUT_SHARE

if TYPE_CHECKING:
    import optuna


@task(**IO_RETRIES)
def trial_rmse(parent_run_id: str, number: int) -> float | None:
    """A finished trial's rmse, from its MLflow run (None when it did not finish)."""
    from mlflow import MlflowClient

    parent = MlflowClient().get_run(parent_run_id)
    runs = MlflowClient().search_runs(
        [parent.info.experiment_id],
        f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}' and tags.`{TRIAL_TAG}` = '{number}' "
        "and attributes.status = 'FINISHED'",
    )
    return float(runs[0].data.metrics["holdout_rmse"]) if runs else None


@task(**IO_RETRIES)
def finish_parent(parent_run_id: str, study: optuna.Study, trials: int) -> None:
    """The tuning run: the best trial, the search's plots, FINISHED."""
    import mlflow
    from matplotlib.figure import Figure
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    from flows.logic import plots

    with mlflow.start_run(run_id=parent_run_id):
        mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
        mlflow.log_params({"trials": trials, "tuning_holdout_share": TUNING_HOLDOUT_SHARE})
        mlflow.log_metric("best_holdout_rmse", study.best_value)
        mlflow.set_tag(BEST_TRIAL_TAG, str(study.best_trial.number))
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


@task(**IO_RETRIES)
def tag_training_run(run_id: str, tuning_run_id: str) -> None:
    """Link the training run of the best parameters to the search that chose them."""
    from mlflow import MlflowClient

    MlflowClient().set_tag(run_id, TUNING_RUN_TAG, tuning_run_id)
