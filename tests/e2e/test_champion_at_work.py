"""The champion at work on the compose stack: batch scoring and the model server that follows it."""

from __future__ import annotations

import re
import threading
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from tests.e2e.compose import MODEL, start_deployment, wait_for_state

pytestmark = pytest.mark.e2e

INPUTS = ["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance"]
WEAK = {"n_estimators": 3, "max_depth": 2}  # a deliberately poor model
ONE_TRIP = {
    "lpep_pickup_datetime": "2021-02-01 08:00:00",
    "PULocationID": 74,
    "DOLocationID": 75,
    "trip_distance": 1.2,
}


def summary(output: str) -> dict[str, str]:
    """`key: value` lines of a make target's output."""
    return {m[1]: m[2].strip() for m in re.finditer(r"^(\w+):\s+(.*)$", output, re.MULTILINE)}


def invocation(frame: pd.DataFrame) -> dict:
    """MLflow's scoring protocol, timestamps as ISO strings."""
    split = frame.astype({"lpep_pickup_datetime": str}).to_dict(orient="split")
    split.pop("index")
    return {"dataframe_split": split}


def admin_auth(stack) -> tuple[str, str]:
    env = stack.env()
    return env["MLFLOW_ADMIN_USERNAME"], env["MLFLOW_ADMIN_PASSWORD"]


def test_make_score_stores_the_champions_predictions_and_serving_answers_the_same(
    stack, trained, admin
):
    out = stack.make("score", "MONTH=2021-02").stdout
    scored = summary(out)
    champion = admin.get_model_version_by_alias(MODEL, "champion")
    assert scored["model"] == f"{MODEL} version {champion.version} (@champion)", out
    assert scored["output"].endswith(
        f"/predictions/color=green/year=2021/month=02/{MODEL}-v{champion.version}.parquet"
    )
    count, frame = stack.read_predictions(scored["output"], 200)
    assert count == int(scored["rows"]) > 50_000
    assert set(frame["model_version"].astype(str)) == {champion.version}
    frame["lpep_pickup_datetime"] = pd.to_datetime(frame["lpep_pickup_datetime"]).dt.tz_localize(
        None
    )

    # On the host, with only the tracking URL: the same version predicts the same numbers.
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{champion.version}")
    np.testing.assert_allclose(frame["predicted_duration"], model.predict(frame[INPUTS]), rtol=1e-5)

    # The model server, as a teammate with their own account.
    password = re.search(r"shown only now:\s+(\S+)", stack.make("user", "NAME=dana").stdout)[1]
    url = f"{stack.serving_url}/invocations"
    answer = requests.post(url, json=invocation(frame[INPUTS]), auth=("dana", password), timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-model-version"] == champion.version
    np.testing.assert_allclose(answer.json()["predictions"], frame["predicted_duration"], rtol=1e-5)
    # Nobody else: anonymous and wrong passwords are refused.
    assert requests.post(url, json=invocation(frame[INPUTS].head(1)), timeout=10).status_code == 401
    wrong = requests.post(
        url, json=invocation(frame[INPUTS].head(1)), auth=("dana", "x"), timeout=10
    )
    assert wrong.status_code == 401


def test_make_backfill_scores_each_month_in_its_own_flow_run(stack, trained):
    out = stack.make("backfill", "FROM=2021-01", "TO=2021-02").stdout
    done = re.findall(r"^(2021-0[12]): Completed .* -> (s3://\S+)$", out, re.MULTILINE)
    assert sorted(month for month, _ in done) == ["2021-01", "2021-02"], out
    assert "2 months in" in out and "0 not completed" in out


def wait_for_version(url: str, auth: tuple[str, str], version: str, timeout_s: float) -> float:
    """Seconds until the server answers as ``version``."""
    started = time.monotonic()
    body = {"dataframe_records": [ONE_TRIP]}
    while time.monotonic() - started < timeout_s:
        answer = requests.post(url, json=body, auth=auth, timeout=10)
        if answer.headers.get("x-model-version") == version:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"the model server did not answer as version {version} in {timeout_s} s")


def test_the_model_server_follows_promotions_without_a_failed_request(
    stack, prefect, trained, admin
):
    url, auth = f"{stack.serving_url}/invocations", admin_auth(stack)
    body = {"dataframe_records": [ONE_TRIP]}
    seen: list[tuple[float, int, str | None]] = []  # (time, status, version) of each call
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            try:
                reply = requests.post(url, json=body, auth=auth, timeout=10)
                seen.append((time.time(), reply.status_code, reply.headers.get("x-model-version")))
            except requests.RequestException as error:
                seen.append((time.time(), 0, str(error)))
            time.sleep(0.05)

    client = threading.Thread(target=keep_calling)
    client.start()
    try:
        # An operator rolls the champion back to a weak version; the next `make train` beats it.
        weak_run = start_deployment(
            "train/train", color="green", train_month="2021-01", val_month="2021-02", params=WEAK
        )
        wait_for_state(weak_run, {"Completed"}, 300)
        weak = admin.get_model_version_by_alias(MODEL, "challenger")
        admin.set_registered_model_alias(MODEL, "champion", weak.version)
        wait_for_version(url, auth, weak.version, 30)

        trained_again = stack.make("train", "TRAIN_MONTH=2021-01", "VAL_MONTH=2021-02").stdout
        assert "champion:   yes" in trained_again, trained_again
        promoted = admin.get_model_version_by_alias(MODEL, "champion")
        wait_for_version(url, auth, promoted.version, 30)
        time.sleep(2)  # the calling client meets the new version too
    finally:
        stop.set()
        client.join()
    # From the promotion's last write (the version's description) to the first answer by it.
    crowned = promoted.last_updated_timestamp / 1000
    first_answer = min(t for t, _, version in seen if version == promoted.version)
    print(
        f"\nmodel server: {len(seen)} calls; the new champion answered "
        f"{first_answer - crowned:.1f} s after its promotion"
    )
    assert first_answer - crowned < 30
    failed = [s for s in seen if s[1] != 200]
    assert not failed, (
        f"{len(failed)} of {len(seen)} calls failed during the switches: {failed[:5]}"
    )
    assert {v for _, _, v in seen} >= {weak.version, promoted.version}


def test_every_champion_move_is_in_make_history_and_make_rollback_puts_one_back(
    stack, prefect, trained, admin
):
    url, auth = f"{stack.serving_url}/invocations", admin_auth(stack)
    champion = admin.get_model_version_by_alias(MODEL, "champion").version
    weak_run = start_deployment(
        "train/train", color="green", train_month="2021-01", val_month="2021-02", params=WEAK
    )
    wait_for_state(weak_run, {"Completed"}, 300)
    weak = admin.get_model_version_by_alias(MODEL, "challenger").version
    admin.set_registered_model_alias(MODEL, "champion", weak)  # a manual change, as in the UI
    wait_for_version(url, auth, weak, 30)

    rolled = stack.make("rollback", "REASON=the weak one was a mistake").stdout
    assert f"champion is version {champion} again (was {weak})" in rolled, rolled
    wait_for_version(url, auth, champion, 30)  # the model server follows the rollback

    lines = stack.make("history", "LIMIT=20").stdout.splitlines()
    moves = [line for line in lines if re.match(r"^\d{4}-\d\d-\d\dT", line)]
    rollback, manual, registered = moves[0], moves[1], moves[2]
    assert re.search(
        rf"champion\s+{weak} -> {champion}\s+prefect-worker\s+rollback from version {weak}: "
        r"by \S+@\S+: the weak one was a mistake",
        rollback,
    ), rollback
    assert re.search(rf"champion\s+{champion} -> {weak}\s+admin\s+manual change", manual), manual
    assert re.search(
        rf"challenger\s+\S+ -> {weak}\s+prefect-worker\s+registered \(val rmse", registered
    ), registered
    assert any(
        re.search(rf"champion\s+\S+ -> {champion}\s+prefect-worker\s+promotion: ", m) for m in moves
    ), moves
