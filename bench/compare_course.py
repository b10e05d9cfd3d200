"""Course pipeline vs ours on green 2021-01 -> 2021-02: validation RMSE and wall time, same run.

    uv run python -m bench.compare_course [--data DIR] [--quick]

The course pipeline (MLOps Zoomcamp week 3): DictVectorizer on PU_DO + trip_distance, xgboost
max_depth 30, 100 rounds with early stopping 20, the course's tuned parameters, then its MLflow
logging (params, rmse, preprocessor, model). The course ran xgboost 1.x, whose tree_method "auto"
chose "exact" for data of this size; that is the baseline. The same pipeline with today's
default ("hist", xgboost >= 2.0) is timed too, for reference. Ours: the `train` flow, from
reading the files to a registered model version. All log to the same MLflow server and run on
the same machine, one after the other. --quick cuts the course to 10 rounds (a smoke test of the
script itself; its ratios then mean nothing).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

from tests.paths import TLC_DATA
from tests.servers import launch_mlflow, stop_process

COURSE_PARAMS = {
    "max_depth": 30,
    "learning_rate": 0.09585355369315604,
    "reg_alpha": 0.018060244040060163,
    "reg_lambda": 0.011658731377413597,
    "min_child_weight": 1.060597050922164,
    "objective": "reg:squarederror",  # the course's reg:linear, under its current name
    "seed": 42,
}


def course_pipeline(
    train_path: Path, val_path: Path, rounds: int, tree_method: str
) -> tuple[float, str]:
    """The course's code path, condensed; returns its validation RMSE and the tree method that
    xgboost reports it used (so the row's label is what ran, not what was asked for)."""
    import json

    import mlflow
    import pandas as pd
    import xgboost as xgb
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.metrics import root_mean_squared_error

    def read(path: Path) -> pd.DataFrame:
        df = pd.read_parquet(path)
        df["duration"] = (df.lpep_dropoff_datetime - df.lpep_pickup_datetime).dt.total_seconds()
        df["duration"] = df.duration / 60
        df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
        df[["PULocationID", "DOLocationID"]] = df[["PULocationID", "DOLocationID"]].astype(str)
        df["PU_DO"] = df["PULocationID"] + "_" + df["DOLocationID"]
        return df

    df_train, df_val = read(train_path), read(val_path)
    dv = DictVectorizer()
    columns = ["PU_DO", "trip_distance"]
    x_train = dv.fit_transform(df_train[columns].to_dict(orient="records"))
    x_val = dv.transform(df_val[columns].to_dict(orient="records"))
    train = xgb.DMatrix(x_train, label=df_train.duration.values)
    valid = xgb.DMatrix(x_val, label=df_val.duration.values)
    params = {**COURSE_PARAMS, "tree_method": tree_method}
    mlflow.set_experiment("bench-course")
    with mlflow.start_run():
        mlflow.log_params(params)
        booster = xgb.train(
            params,
            train,
            num_boost_round=rounds,
            evals=[(valid, "validation")],
            early_stopping_rounds=20,
            verbose_eval=False,
        )
        used = json.loads(booster.save_config())["learner"]["gradient_booster"]
        method_used = used["gbtree_train_param"]["tree_method"]
        rmse = float(root_mean_squared_error(df_val.duration.values, booster.predict(valid)))
        mlflow.log_metric("rmse", rmse)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "preprocessor.b"
            path.write_bytes(pickle.dumps(dv))
            mlflow.log_artifact(str(path), artifact_path="preprocessor")
        mlflow.xgboost.log_model(booster, name="models_mlflow")
    return rmse, method_used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=TLC_DATA)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    train_path = args.data / "green_tripdata_2021-01.parquet"
    val_path = args.data / "green_tripdata_2021-02.parquet"

    import mlflow
    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness():
        url, server = launch_mlflow(f"sqlite:///{tmp}/mlflow.db", f"{tmp}/artifacts", {}, Path(tmp))
        os.environ["MLFLOW_TRACKING_URI"] = url
        os.environ["MODEL_NAME"] = f"bench-{os.getpid()}"
        mlflow.set_tracking_uri(url)
        from flows.pipelines.train import train

        rounds = 10 if args.quick else 100
        rows = []
        try:
            for method in ("exact", "hist"):
                started = time.perf_counter()
                rmse, used = course_pipeline(train_path, val_path, rounds, method)
                label = f"course, tree_method={used}" + (" (baseline)" if method == "exact" else "")
                rows.append((label, rmse, time.perf_counter() - started))
            started = time.perf_counter()
            ours = train(train_path=str(train_path), val_path=str(val_path))
            rows.append(
                (
                    "ours: train flow, read -> registered",
                    ours.rmse,
                    time.perf_counter() - started,
                )
            )
        finally:
            stop_process(server)

    print()
    print("| pipeline | validation rmse | wall time (s) |")
    print("| --- | ---: | ---: |")
    for label, rmse, seconds in rows:
        print(f"| {label} | {rmse:.3f} | {seconds:.1f} |")
    (_, course_rmse, course_s), (_, _, hist_s), (_, our_rmse, our_s) = rows
    print(
        f"time ours / course (baseline, exact): {our_s / course_s:.3f} "
        f"({100 * our_s / course_s:.1f} %)"
    )
    print(
        f"time ours / course with hist:         {our_s / hist_s:.3f} ({100 * our_s / hist_s:.1f} %)"
    )
    print(f"rmse ours / course:                   {our_rmse / course_rmse:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
