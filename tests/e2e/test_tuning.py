"""`make tune` on the compose stack: every trial its own flow run on the pool and its own MLflow
run under the tuning run; the best parameters trained into a version the promotion rule judged."""

from __future__ import annotations

import re

import pytest
from platform_names import CHALLENGER, CHAMPION, FLOW_RUN_TAG

from flows.resources.registry import promotion_record

pytestmark = pytest.mark.e2e

TRIALS = 3


def test_make_tune_leaves_a_parent_run_with_child_trials_and_a_challenger(stack, trained, admin):
    output = stack.make(
        "tune", "TRAIN_MONTH=2021-01", "VAL_MONTH=2021-02", f"TRIALS={TRIALS}"
    ).stdout
    parent_id = re.search(r"tuning run: \S+/runs/([0-9a-f]{32})", output)
    assert parent_id, output
    parent = admin.get_run(parent_id.group(1))
    assert parent.info.status == "FINISHED"

    children = admin.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(children) == TRIALS and all(c.info.status == "FINISHED" for c in children)
    # Each trial ran as a flow run of its own (a tune-trial on the pool), not inside the parent.
    flow_runs = {c.data.tags[FLOW_RUN_TAG] for c in children}
    assert len(flow_runs) == TRIALS and parent.data.tags[FLOW_RUN_TAG] not in flow_runs
    best = min(c.data.metrics["holdout_rmse"] for c in children)
    assert parent.data.metrics["best_holdout_rmse"] == pytest.approx(best)

    version = re.search(r"model:\s+(\S+) version (\d+)", output)
    assert version, output
    registered = admin.get_model_version(version.group(1), version.group(2))
    assert admin.get_run(registered.run_id).data.tags["tuning.run_id"] == parent.info.run_id
    decision = promotion_record(registered)["decision"]
    # Registered as challenger; the promotion rule then made it champion or left it challenger.
    expected_alias = CHAMPION if decision == "promoted" else CHALLENGER
    assert expected_alias in registered.aliases, (decision, registered.aliases)
