"""What the model server answered, kept for monitoring: each answered record (its inputs, the
prediction, the answering version, when) appended in batches to the data bucket.

A request only appends to a bounded buffer in memory (a lock and a list append): a thread writes
a batch every SERVING_TRAFFIC_FLUSH_SECONDS, or sooner when SERVING_TRAFFIC_BATCH_ROWS wait,
as one Parquet object per version and month, through the data proxy with the model server's own
account (which may only add objects under ``served/``: mlflow_data_proxy). Partitioned like
batch predictions (flows/logic/predictions.py)::

    served/year=2026/month=12/taxi-trip-duration-v7-20261201T181500Z-3f9a1c.parquet

When the bucket cannot be written (MinIO or the proxy down), the batch goes back to the buffer
and is tried again next time; past SERVING_TRAFFIC_MAX_ROWS the oldest records are dropped and
counted (serving_traffic_dropped_rows_total), never a request slowed or failed. No credentials,
headers or client addresses are kept.
"""

from __future__ import annotations

import io
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from platform_names import ARTIFACTS_API_PATH, SERVED_PREFIX
from prometheus_client import Counter, Gauge

logger = logging.getLogger("serving.traffic")

INPUT_COLUMNS = ("lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance")
LOGGED = Counter("serving_traffic_logged_rows_total", "Answered records written to the bucket")
DROPPED = Counter(
    "serving_traffic_dropped_rows_total", "Answered records dropped: the buffer was full"
)
FAILED_WRITES = Counter("serving_traffic_failed_writes_total", "Batches that could not be written")
BUFFERED = Gauge("serving_traffic_buffered_rows", "Answered records waiting to be written")


@dataclass(frozen=True)
class Answered:
    """One answered record."""

    served_at: datetime
    model_name: str
    version: str
    inputs: dict[str, Any]
    prediction: float


def traffic_key(model_name: str, version: str, month: datetime, written: datetime) -> str:
    """Where one batch of a version's answers in one month goes."""
    stamp = written.strftime("%Y%m%dT%H%M%SZ")
    name = f"{model_name}-v{version}-{stamp}-{secrets.token_hex(3)}.parquet"
    return f"{SERVED_PREFIX}/year={month:%Y}/month={month:%m}/{name}"


def batch_frame(answers: list[Answered]) -> Any:
    """The Parquet columns of a batch: the inputs as sent, the prediction, version and time."""
    import pandas as pd

    frame = pd.DataFrame([{c: a.inputs.get(c) for c in INPUT_COLUMNS} for a in answers])
    frame["lpep_pickup_datetime"] = pd.to_datetime(frame["lpep_pickup_datetime"], errors="coerce")
    for column in ("PULocationID", "DOLocationID"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    frame["trip_distance"] = pd.to_numeric(frame["trip_distance"], errors="coerce")
    frame["predicted_duration"] = [a.prediction for a in answers]
    frame["model_name"] = [a.model_name for a in answers]
    frame["model_version"] = [a.version for a in answers]
    frame["served_at"] = pd.to_datetime([a.served_at for a in answers], utc=True)
    return frame


class TrafficLog:
    """The buffer, and the thread that empties it into the bucket with ``write(key, data)``."""

    def __init__(
        self,
        write: Callable[[str, bytes], None],
        batch_rows: int = 5_000,
        max_rows: int = 100_000,
        flush_s: float = 60.0,
    ) -> None:
        self.write, self.batch_rows = write, batch_rows
        self.max_rows, self.flush_s = max_rows, flush_s
        self.lock = threading.Lock()
        self.pending: list[Answered] = []
        self.wake = threading.Event()

    def record(
        self, model_name: str, version: str, records: list[dict[str, Any]], predictions: list[Any]
    ) -> None:
        """Keep a request's answered records (called on the request's path: append only)."""
        now = datetime.now(UTC)
        answers = [
            Answered(now, model_name, version, record, float(prediction))
            for record, prediction in zip(records, predictions, strict=False)
        ]
        with self.lock:
            self.pending.extend(answers)
            overflow = len(self.pending) - self.max_rows
            if overflow > 0:
                del self.pending[:overflow]
            size = len(self.pending)
        if overflow > 0:
            DROPPED.inc(overflow)
        BUFFERED.set(size)
        if size >= self.batch_rows:
            self.wake.set()

    def flush(self) -> int:
        """Write what is buffered, one object per version and month; the rows written. A batch
        that cannot be written goes back to the buffer (in front, the oldest first)."""
        with self.lock:
            taken, self.pending = self.pending, []
        groups: dict[tuple[str, str, str], list[Answered]] = {}
        for answer in taken:
            month = answer.served_at.strftime("%Y-%m")
            groups.setdefault((answer.model_name, answer.version, month), []).append(answer)
        written, failed = 0, []
        for (model_name, version, _), answers in groups.items():
            key = traffic_key(model_name, version, answers[0].served_at, datetime.now(UTC))
            try:
                buffer = io.BytesIO()
                batch_frame(answers).to_parquet(buffer, index=False)
                self.write(key, buffer.getvalue())
                written += len(answers)
            except RefusedBatch as refused:
                DROPPED.inc(len(answers))
                logger.error("dropped %d answered records (%s): %s", len(answers), key, refused)
            except Exception as error:  # noqa: BLE001 (the bucket is down: keep them for later)
                FAILED_WRITES.inc()
                logger.warning(
                    "could not write %d answered records (%s): %s", len(answers), key, error
                )
                failed += answers
        with self.lock:
            self.pending[:0] = failed
            overflow = len(self.pending) - self.max_rows
            if overflow > 0:
                del self.pending[:overflow]
            BUFFERED.set(len(self.pending))
        if overflow > 0:
            DROPPED.inc(overflow)
        LOGGED.inc(written)
        return written

    def run(self, stop: threading.Event) -> None:
        """Flush every ``flush_s`` or when a batch is full, until ``stop``; then a last flush."""
        while not stop.is_set():
            self.wake.wait(self.flush_s)
            self.wake.clear()
            self.flush()
        self.flush()


def proxy_writer(
    data_proxy_url: str, credentials: tuple[str, str], timeout_s: float = 10.0
) -> Callable[[str, bytes], None]:
    """``write(key, data)``: a PUT to the data proxy's artifact API as the given account."""
    import requests

    root = data_proxy_url.rstrip("/") + ARTIFACTS_API_PATH + "/"
    session = requests.Session()
    session.auth = credentials

    def write(key: str, data: bytes) -> None:
        answer = session.put(root + key, data=data, timeout=timeout_s)
        if answer.status_code in (400, 403, 409, 413):
            # Refused for what the batch is (too old, too large): another try cannot help.
            raise RefusedBatch(f"{answer.status_code} {answer.text[:200]}")
        answer.raise_for_status()

    return write


class RefusedBatch(Exception):
    """A batch the data proxy refuses for what it is: dropped (and counted), never retried."""
