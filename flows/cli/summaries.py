"""The lines the make verbs end with, read from the MLflow run a finished flow run made."""

from __future__ import annotations

from typing import TYPE_CHECKING

from platform_names import (
    ALIAS_TAG,
    BREACHED_TAG,
    CHAMPION,
    DRIFTED_COLUMNS_TAG,
    MODEL_NAME_TAG,
    MODEL_VERSION_TAG,
    MONTH_TAG,
    OUTPUT_URI_TAG,
    PROMOTION_TAG,
    PROMOTION_TAG_PREFIX,
    REASON_TAG,
    TUNING_RUN_TAG,
)

from flows.cli.follow import finished_run
from flows.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities import Run


def promotion_reason(tags: dict[str, str]) -> str:
    """Why the promotion decided as it did, from a version's tags: its ``promotion`` line
    ("promoted: <why>"; the yes or no is said beside it), or an older release's
    ``promotion.reason`` tag."""
    decided = tags.get(PROMOTION_TAG, "").partition(": ")[2]
    return decided or tags.get(PROMOTION_TAG_PREFIX + "reason", "not decided")


def version_lines(run: Run) -> list[str]:
    """The registered version a training run made, and whether (and why) it is champion."""
    from mlflow import MlflowClient

    from flows.resources.registry import versions_of_run

    client = MlflowClient()
    name = Settings.from_env().model_name
    version = client.get_model_version(
        name, versions_of_run(client, name, run.info.run_id)[0].version
    )
    reason = promotion_reason(version.tags)
    return [
        f"model:      {name} version {version.version}",
        f"champion:   {'yes' if CHAMPION in version.aliases else 'no'} ({reason})",
    ]


def training_summary(flow_run_id: str) -> list[str]:
    """The lines `make train` ends with: MLflow run, rmse, version, champion or not."""
    from flows.steps.tracking import run_url

    run = finished_run(flow_run_id)
    return [
        f"MLflow run: {run_url(run)}",
        f"rmse:       {run.data.metrics['rmse']:.4f}",
        *version_lines(run),
    ]


def scoring_summary(flow_run_id: str) -> dict[str, str]:
    """What a finished `score` flow run wrote and how well, from its MLflow scoring run."""
    run = finished_run(flow_run_id)
    tags, metrics = run.data.tags, run.data.metrics
    return {
        "output": tags[OUTPUT_URI_TAG],
        "model": f"{tags[MODEL_NAME_TAG]} version {tags[MODEL_VERSION_TAG]} (@{tags[ALIAS_TAG]})",
        "rows": f"{metrics['rows']:.0f}",
        "rmse": f"{metrics['rmse']:.4f}" if "rmse" in metrics else "-",
        "mae": f"{metrics['mae']:.4f}" if "mae" in metrics else "-",
    }


def monitoring_summary(flow_run_id: str) -> list[str]:
    """The figures and the decision of a finished `monitor` flow run, from its MLflow run."""
    run = finished_run(flow_run_id)
    tags, metrics = run.data.tags, run.data.metrics
    return [
        f"model:       {tags[MODEL_NAME_TAG]} version {tags[MODEL_VERSION_TAG]}, {tags[MONTH_TAG]}",
        f"rmse:        {metrics['rmse']:.4f} ({metrics['rmse_increase']:+.1%} against validation)",
        f"mae:         {metrics['mae']:.4f}",
        f"drift share: {metrics['drift_share']:.2f} ({tags.get(DRIFTED_COLUMNS_TAG) or 'none'})",
        f"decision:    {'breach' if tags[BREACHED_TAG] == 'true' else 'ok'}: {tags[REASON_TAG]}",
    ]


def tuning_summary(flow_run_id: str) -> list[str]:
    """The lines `make tune` ends with: the search, the best trial, the version it trained."""
    from mlflow import MlflowClient

    from flows.steps.tracking import run_url

    parent = finished_run(flow_run_id)
    trained = MlflowClient().search_runs(
        [parent.info.experiment_id], f"tags.`{TUNING_RUN_TAG}` = '{parent.info.run_id}'"
    )
    if not trained:
        raise LookupError(f"no training run follows the tuning run {parent.info.run_id}")
    params = parent.data.params
    best = {k.removeprefix("best_"): v for k, v in params.items() if k.startswith("best_")}
    return [
        f"tuning run: {run_url(parent)}",
        f"trials:     {params.get('trials')}, best holdout rmse "
        f"{parent.data.metrics['best_holdout_rmse']:.4f}",
        f"best:       {', '.join(f'{k}={v}' for k, v in sorted(best.items()))}",
        f"rmse:       {trained[0].data.metrics['rmse']:.4f} (validation month)",
        *version_lines(trained[0]),
    ]
