"""Batch scoring on the compose stack: rows per second for one month, and a backfill of five
months side by side against the same months one after another.

    uv run python -m bench.scoring [--month 2021-02]

Against the running compose stack of ENV_FILE (.env); the bench deploys, uploads the five real
months here (green 2021-01, 2021-02, 2023-01, 2023-02, 2023-03) and trains a champion if there is
none. It prints:

- one month: `make score MONTH=...` wall; of its `score` flow run (Prefect's start to end),
  the scoring itself (read, predict, write, log) and the monitoring subflow that follows it; rows
  per second of the scoring, against the champion's pyfunc `predict` on the same month's raw
  records in this process (the model alone: no reading, writing or logging);
- five months: one `make backfill MONTHS="..."` (five flow runs side by side; backfills do not
  monitor) against `make backfill MONTHS=<month>` for each month, one after another.
"""

from __future__ import annotations

import argparse
import re
import time

from bench.stack import champion_version, make, seconds, use_prefect_of_stack
from tests.paths import TLC_DATA

MONTHS = ("2021-01", "2021-02", "2023-01", "2023-02", "2023-03")


def prepare() -> None:
    """Deployments, the five months in the bucket, a champion."""
    make("deploy")
    files = " ".join(str(TLC_DATA / f"green_tripdata_{m}.parquet") for m in MONTHS)
    make("upload-data", f"FILES={files}")


def score_once(month: str) -> tuple[float, str]:
    """`make score MONTH=...`: (wall, output)."""
    started = time.perf_counter()
    output = make("score", f"MONTH={month}")
    return time.perf_counter() - started, output


def flow_seconds(output: str) -> tuple[float, float]:
    """(whole `score` flow run, its monitoring subflow), from the id `make score` printed."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    found = re.search(r"flow run \S+ \(([0-9a-f-]{36})\) of score/score", output)
    assert found, output
    run_id = UUID(found.group(1))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])
            )
        )
    monitoring = sum(seconds(c.start_time, c.end_time) for c in children)
    return seconds(run.start_time, run.end_time), monitoring


def model_alone(settings: dict[str, str], month: str, version: str) -> tuple[int, float]:
    """(rows, seconds) of the version's pyfunc predict on the month's kept trips, here."""
    import mlflow

    from flows.resources.tlc_files import load_trips

    data = load_trips(str(TLC_DATA / f"green_tripdata_{month}.parquet"))
    name = settings.get("MODEL_NAME") or "taxi-trip-duration"
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    inputs = data.as_raw()[model.metadata.get_input_schema().input_names()]
    model.predict(inputs.head(100))  # warm-up
    started = time.perf_counter()
    model.predict(inputs)
    return len(inputs), time.perf_counter() - started


def main() -> int:
    """Measure; print the tables and ratios."""
    import os

    from bench.stack import env_file
    from infra.make_env import read_env
    from tests.paths import REPO_ROOT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--month", default="2021-02", choices=MONTHS)
    args = parser.parse_args()
    settings = read_env(REPO_ROOT / env_file())
    os.environ["MLFLOW_TRACKING_URI"] = f"http://localhost:{settings.get('MLFLOW_PORT', '5000')}"
    os.environ["MLFLOW_TRACKING_USERNAME"] = settings["MLFLOW_ADMIN_USERNAME"]
    os.environ["MLFLOW_TRACKING_PASSWORD"] = settings["MLFLOW_ADMIN_PASSWORD"]
    use_prefect_of_stack()
    prepare()
    version = champion_version(settings)

    wall, output = score_once(args.month)
    whole_s, monitoring_s = flow_seconds(output)
    flow_s = whole_s - monitoring_s
    rows = int(re.search(r"^rows:\s+(\d+)", output, re.MULTILINE)[1])  # type: ignore[index]
    model_rows, model_s = model_alone(settings, args.month, version)

    sequential_started = time.perf_counter()
    for month in MONTHS:
        make("backfill", f"MONTHS={month}")
    sequential = time.perf_counter() - sequential_started
    backfill_started = time.perf_counter()
    backfill = make("backfill", f"MONTHS={' '.join(MONTHS)}")
    side_by_side = time.perf_counter() - backfill_started
    assert "0 not completed" in backfill, backfill

    print(f"\nScoring green {args.month} ({rows} trips) with taxi-trip-duration v{version}")
    print("| what | seconds | rows/s |\n| --- | ---: | ---: |")
    print(f"| make score, command -> printed result (monitoring included) | {wall:.1f} | - |")
    print(
        f"| of its flow run: scoring (read, predict, write, log) | {flow_s:.1f} | "
        f"{rows / flow_s:,.0f} |"
    )
    print(f"| of its flow run: the monitoring subflow | {monitoring_s:.1f} | - |")
    print(
        f"| baseline: pyfunc predict alone, in this process | {model_s:.2f} | "
        f"{model_rows / model_s:,.0f} |"
    )
    print(f"scoring rows/s / predict-alone rows/s: {(rows / flow_s) / (model_rows / model_s):.3f}")
    print(f"\n{len(MONTHS)} months ({', '.join(MONTHS)})")
    print("| how | wall (s) |\n| --- | ---: |")
    print(f"| make backfill MONTHS=<month>, one month after another | {sequential:.1f} |")
    print(f"| make backfill MONTHS=..., one flow run each, side by side | {side_by_side:.1f} |")
    print(f"backfill / one after another: {side_by_side / sequential:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
