"""Monitoring closes the loop on the compose stack: a drifted month retrains on its own."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from flows.resources.registry import promotion_record
from tests.corpus import slower_traffic
from tests.e2e.compose import MODEL, posts_received, wait_until_final

pytestmark = pytest.mark.e2e


def retrain_runs(since: datetime) -> list:
    """Flow runs of the `retrain` deployment created since ``since``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["retrain"]))
        )
    return [run for run in runs if run.created and run.created >= since]


def test_a_drifted_month_retrains_once_and_tells_the_webhook_why(
    stack, prefect, trained, admin, receiver, tmp_path
):
    drifted = slower_traffic(tmp_path)  # March 2021 standing for a month of slower traffic
    stack.make("upload-data", f"FILES={drifted}")
    champion = admin.get_model_version_by_alias(MODEL, "champion")
    started = datetime.now(UTC)

    stack.make("score", "MONTH=2021-03")  # scores with the champion, then monitors: a breach

    deadline = time.monotonic() + 120
    while not (runs := retrain_runs(started)):
        assert time.monotonic() < deadline, "the breach started no retrain flow run"
        time.sleep(2)
    (retraining,) = runs
    assert retraining.parameters["month"] == "2021-03"
    assert retraining.parameters["version"] == champion.version
    assert "rmse" in retraining.parameters["reason"]
    assert wait_until_final(retraining.id, 600).name == "Completed"

    # A new challenger, trained on February and judged with the champion on the new month.
    challenger = max(admin.search_model_versions(f"name = '{MODEL}'"), key=lambda v: int(v.version))
    assert int(challenger.version) > int(champion.version)
    numbers = promotion_record(challenger)
    assert numbers["val_uri"].endswith("green_tripdata_2021-03.parquet")
    assert numbers["decision"] in {"promoted", "rejected"}
    watched = admin.get_model_version(MODEL, champion.version)
    assert watched.tags["monitoring.retrained.2021-03"] == challenger.version

    # The webhook is told which metric, which month, by how much.
    deadline = time.monotonic() + 120
    while not (
        posts := [p for p in posts_received(receiver) if "Monitoring breach" in p["subject"]]
    ):
        assert time.monotonic() < deadline, "no post about the breach"
        time.sleep(2)
    assert f"v{champion.version} on 2021-03" in posts[0]["subject"]
    assert re.search(r"rmse [\d.]+ is \+\d+\.\d% against its validation rmse", posts[0]["body"])

    # Monitoring the month again (by hand) shows the breach but retrains no second time.
    again = stack.make("monitor", "MONTH=2021-03", f"VERSION={champion.version}").stdout
    assert "decision:    breach" in again, again
    time.sleep(10)
    assert len(retrain_runs(started)) == 1
