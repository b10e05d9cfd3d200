"""What housekeeping may delete: predictions by version and age, MLflow's object layout, and
the arithmetic of the yearly projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mlflow_stack_registry import housekeeping_options
from mlflow_stack_registry.housekeeping import bucket_and_prefix, key_prefix, owner_of

from flows.logic.predictions import ScoredBy, prediction_key
from flows.logic.retention import (
    Growth,
    StoredObject,
    expired_predictions,
    expired_served,
    human_bytes,
    predicted_by,
    sizes_table,
    yearly_projection,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
RUN = "0123456789abcdef0123456789abcdef"
MODEL = "m-fedcba9876543210fedcba9876543210"


def stored(key: str, days_old: float, size: int = 10) -> StoredObject:
    """An object written ``days_old`` days before NOW."""
    return StoredObject(key, size, NOW - timedelta(days=days_old))


def test_predicted_by_reads_what_prediction_key_writes():
    for source in ("s3://data/tlc/green/green_tripdata_2021-03.parquet", "/tmp/rides.parquet"):
        key = prediction_key(source, ScoredBy("taxi-trip-duration", "12", "run"))
        assert predicted_by(key) == ("taxi-trip-duration", "12")
    assert predicted_by("tlc/green/green_tripdata_2021-03.parquet") is None
    assert predicted_by("predictions/color=green/year=2021/month=03/notes.txt") is None


def test_only_old_predictions_of_versions_without_an_alias_expire():
    month = "predictions/color=green/year=2021/month=03"
    objects = [
        stored(f"{month}/taxi-v1.parquet", 40),  # retired, old: expires
        stored(f"{month}/taxi-v2.parquet", 40),  # champion: stays however old
        stored(f"{month}/taxi-v3.parquet", 5),  # retired, recent: stays
        stored(f"{month}/gone-v1.parquet", 40),  # a deleted model's: expires
        stored("tlc/green/green_tripdata_2021-03.parquet", 400),  # trip data: never
    ]
    aliased = {"taxi": {"2"}, "gone": set()}
    expired = expired_predictions(objects, aliased, NOW - timedelta(days=30))
    assert [item.key for item in expired] == [
        f"{month}/taxi-v1.parquet",
        f"{month}/gone-v1.parquet",
    ]


@pytest.mark.parametrize(
    ("key", "owner"),
    [
        (f"1/{RUN}/artifacts/model/MLmodel", ("run", RUN, f"1/{RUN}/")),
        (f"1/models/{MODEL}/artifacts/MLmodel", ("model", MODEL, f"1/models/{MODEL}/")),
        ("1/traces/tr-1/artifacts/x", None),
        (f"{RUN}", None),
        ("1/not-a-run/artifacts/x", None),
    ],
)
def test_objects_are_told_apart_by_mlflow_layout(key, owner):
    assert owner_of(key, "") == owner


def test_an_artifact_root_prefix_is_kept():
    bucket, root = bucket_and_prefix("s3://artifacts/mlflow")
    assert (bucket, root) == ("artifacts", "mlflow/")
    assert owner_of(f"mlflow/1/{RUN}/artifacts/x", root) == ("run", RUN, f"mlflow/1/{RUN}/")
    assert key_prefix(f"mlflow-artifacts:/1/{RUN}/artifacts", bucket, root) == (
        f"mlflow/1/{RUN}/artifacts/"
    )
    assert key_prefix(f"s3://artifacts/mlflow/1/{RUN}/artifacts", bucket, root) == (
        f"mlflow/1/{RUN}/artifacts/"
    )
    # Elsewhere (another bucket, a local path, the root itself): not ours to delete.
    for elsewhere in (
        "s3://other/1/x",
        "file:///tmp/mlruns/1/x",
        "mlflow-artifacts:/",
        "s3://artifacts/",
    ):
        assert key_prefix(elsewhere, bucket, root) is None
    with pytest.raises(ValueError, match="not s3://bucket"):
        bucket_and_prefix("file:///tmp/artifacts")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "older_than_days must be"),
        (b"[1]", "must be a JSON object"),
        (b"{", "not JSON"),
        (b'{"older_than_days": true}', "older_than_days must be"),
        (b'{"older_than_days": -0.5}', "older_than_days must be"),
        (b'{"older_than_days": 1, "max_runs": 501}', "max_runs must be"),
        (b'{"older_than_days": 1, "max_runs": 2.5}', "max_runs must be"),
    ],
)
def test_bad_housekeeping_options_name_the_problem(body, problem):
    with pytest.raises(ValueError, match=problem):
        housekeeping_options(body)


def test_housekeeping_options():
    assert housekeeping_options(b'{"older_than_days": 0.5, "max_runs": 7, "dry_run": true}') == (
        timedelta(hours=12),
        7,
        True,
    )


def test_a_year_with_and_without_housekeeping():
    growth = Growth(database_bytes_per_run=20_000, bucket_bytes_per_run=980_000)  # 1 MB a run
    year = yearly_projection(growth, runs_per_day=50, deleted_share=0.8, retention_days=30)
    assert year["without"] == pytest.approx(50 * 365 * 1e6)
    # A fifth of the year's runs stay; the deleted ones stay 30 days each.
    assert year["with"] == pytest.approx((50 * 365 * 0.2 + 50 * 30 * 0.8) * 1e6)


def test_answered_records_expire_after_their_own_retention():
    objects = [
        stored("served/year=2026/month=08/taxi-v7-x.parquet", 100),
        stored("served/year=2026/month=11/taxi-v7-y.parquet", 10),
        stored("predictions/color=green/year=2021/month=03/taxi-v1.parquet", 400),
    ]
    expired = expired_served(objects, NOW - timedelta(days=90))
    assert [item.key for item in expired] == ["served/year=2026/month=08/taxi-v7-x.parquet"]


def test_sizes_are_shown_for_people():
    assert human_bytes(999) == "999 B"
    assert human_bytes(1_500_000) == "1.5 MB"
    assert human_bytes(-2_000) == "-2.0 kB"
    table = sizes_table({"bucket a": 3_000_000}, {"bucket a": 1_000_000, "database m": 5})
    assert "| bucket a | 3.0 MB | 1.0 MB | -2.0 MB |" in table
    assert "| database m | 0 B | 5 B | 5 B |" in table
