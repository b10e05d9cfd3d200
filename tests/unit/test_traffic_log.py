"""The model server's log of answered records: batches by version and month, bounded memory, and
a bucket that is down costs nothing but a retry."""

from __future__ import annotations

import io
import re
import threading
import time
from datetime import UTC, datetime

import pandas as pd
import pytest

from services.serving.traffic import TrafficLog, traffic_key

TRIP = {
    "lpep_pickup_datetime": "2021-02-01 08:00:00",
    "PULocationID": 74,
    "DOLocationID": 75,
    "trip_distance": 1.2,
}


class Bucket:
    """Objects written, or a bucket that refuses while ``down``."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.down = False

    def write(self, key: str, data: bytes) -> None:
        if self.down:
            raise ConnectionError("minio:9000 refused the connection")
        self.objects[key] = data

    def frames(self) -> list[pd.DataFrame]:
        return [pd.read_parquet(io.BytesIO(data)) for data in self.objects.values()]


def test_a_key_is_partitioned_like_batch_predictions():
    key = traffic_key(
        "taxi", "7", datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 1, 18, 15, tzinfo=UTC)
    )
    assert re.fullmatch(
        r"served/year=2026/month=12/taxi-v7-20261201T181500Z-[0-9a-f]{6}\.parquet", key
    )


def test_answers_are_written_per_version_with_inputs_prediction_and_time():
    bucket = Bucket()
    log = TrafficLog(bucket.write)
    log.record("taxi", "7", [TRIP, {**TRIP, "trip_distance": 3.5}], [10.5, 21.0])
    log.record("taxi", "8", [TRIP], [11.0])
    assert log.flush() == 3
    assert sorted(key.split("/")[-1].split("-2")[0] for key in bucket.objects) == [
        "taxi-v7",
        "taxi-v8",
    ]
    frame = pd.concat(bucket.frames()).sort_values("predicted_duration")
    assert frame["predicted_duration"].tolist() == [10.5, 11.0, 21.0]
    assert frame["model_version"].tolist() == ["7", "8", "7"]
    assert frame["trip_distance"].tolist() == [1.2, 1.2, 3.5]
    assert str(frame["lpep_pickup_datetime"].iloc[0]) == "2021-02-01 08:00:00"
    assert frame["served_at"].notna().all()
    assert log.flush() == 0, "nothing twice"


def test_a_bucket_that_is_down_keeps_the_answers_for_the_next_flush():
    bucket = Bucket()
    log = TrafficLog(bucket.write)
    log.record("taxi", "7", [TRIP] * 3, [1.0, 2.0, 3.0])
    bucket.down = True
    assert log.flush() == 0 and bucket.objects == {}
    log.record("taxi", "7", [TRIP], [4.0])
    bucket.down = False
    assert log.flush() == 4
    (frame,) = bucket.frames()
    assert frame["predicted_duration"].tolist() == [1.0, 2.0, 3.0, 4.0], "in order, none lost"


def test_memory_is_bounded_and_the_oldest_are_dropped():
    bucket = Bucket()
    bucket.down = True
    log = TrafficLog(bucket.write, max_rows=5)
    for number in range(8):
        log.record("taxi", "7", [TRIP], [float(number)])
    log.flush()
    assert len(log.pending) == 5
    bucket.down = False
    log.flush()
    (frame,) = bucket.frames()
    assert frame["predicted_duration"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]


def test_a_full_batch_is_written_at_once_and_recording_never_waits_for_the_bucket():
    written = threading.Event()
    slow = threading.Event()

    def write(key: str, data: bytes) -> None:
        slow.wait(5)  # a bucket that takes its time
        written.set()

    log = TrafficLog(write, batch_rows=2, flush_s=3600)
    stop = threading.Event()
    thread = threading.Thread(target=log.run, args=(stop,), daemon=True)
    thread.start()
    log.record("taxi", "7", [TRIP, TRIP], [1.0, 2.0])  # a full batch wakes the writer
    started = time.perf_counter()
    for _ in range(1000):
        log.record("taxi", "7", [TRIP], [1.0])
    assert time.perf_counter() - started < 1.0, "recording waited for the writer"
    slow.set()
    assert written.wait(5), "the full batch was not written before flush_s"
    stop.set()
    log.wake.set()
    thread.join(10)
    assert not thread.is_alive()


@pytest.mark.parametrize("predictions", [[], [1.0]])
def test_records_and_predictions_pair_up(predictions):
    bucket = Bucket()
    log = TrafficLog(bucket.write)
    log.record("taxi", "7", [TRIP], predictions)
    assert log.flush() == len(predictions)
