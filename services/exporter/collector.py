"""What Prometheus asks the platform for, read from Prefect and MLflow when it scrapes.

Prefect's API has no metrics of flow runs and workers, nor MLflow of what the models do: this
collector answers them from their APIs (Prefect's directly with the stack's auth string, MLflow
with a read-only account), at most once per ``cache_s``, and Prefect server's own process metrics
(PREFECT_SERVER_METRICS_ENABLED, behind the auth string) relayed under ``prefect_server_``. A
source that cannot be read says so (``platform_source_up 0``) instead of failing the scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from platform_names import (
    BREACHED_TAG,
    CHAMPION,
    MODEL_VERSION_TAG,
    MONTH_TAG,
    SOURCE_TAG,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger("platform-metrics")

# Flow runs are counted by state over this window (their expected start in it).
WINDOW = timedelta(hours=24)
ACTIVE_STATES = ("Pending", "Running")
LATEST_RUNS = 200


@dataclass(frozen=True)
class Sources:
    """Where the figures come from: the platform's names."""

    model_name: str
    work_pool: str
    scoring_experiment: str
    monitoring_experiment: str


Samples = dict[tuple[str, ...], float]


def gauge(name: str, documentation: str, labels: list[str], samples: Samples) -> Metric:
    """A gauge family with one sample per label values."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in sorted(samples.items()):
        family.add_metric(list(values), value)
    return family


def prefect_figures(sources: Sources) -> list[Metric]:
    """Flow runs by deployment and state, late runs, the pool's slots in use, workers online."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateName,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.exceptions import ObjectNotFound

    since = datetime.now(UTC) - WINDOW
    with get_client(sync_client=True) as client:
        deployments = {d.id: d.name for d in client.read_deployments()}
        by_state: Samples = {}
        offset = 0
        while True:
            page = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    expected_start_time=FlowRunFilterExpectedStartTime(after_=since)
                ),
                limit=200,
                offset=offset,
            )
            for run in page:
                deployment = deployments.get(run.deployment_id, "") if run.deployment_id else ""
                state = str(run.state.name) if run.state else "Unknown"
                key = (deployment or "(none)", state)
                by_state[key] = by_state.get(key, 0) + 1
            if len(page) < 200:
                break
            offset += 200
        late = client.count_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"]))
            )
        )
        in_pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[sources.work_pool]))
        active = client.count_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=list(ACTIVE_STATES)))
            ),
            work_pool_filter=in_pool,
        )
        try:
            limit = client.read_work_pool(sources.work_pool).concurrency_limit or 0
            workers = client.read_workers_for_work_pool(sources.work_pool)
        except ObjectNotFound:  # before `make deploy` made the pool
            limit, workers = 0, []
    online = sum(1 for worker in workers if str(worker.status).upper().endswith("ONLINE"))
    pool_label = (sources.work_pool,)
    return [
        gauge(
            "platform_flow_runs",
            f"Flow runs expected to start in the last {WINDOW.total_seconds() / 3600:g} h, "
            "by deployment and state",
            ["deployment", "state"],
            by_state,
        ),
        gauge("platform_flow_runs_late", "Flow runs in state Late now", [], {(): late}),
        gauge(
            "platform_work_pool_slots_in_use",
            "Flow runs Pending or Running in the work pool",
            ["pool"],
            {pool_label: active},
        ),
        gauge(
            "platform_work_pool_slots",
            "The work pool's concurrency limit (0: none)",
            ["pool"],
            {pool_label: float(limit)},
        ),
        gauge(
            "platform_workers_online",
            "Workers of the pool Prefect sees online (heartbeats)",
            ["pool"],
            {pool_label: online},
        ),
    ]


def month_of_run(run: Any) -> str:
    """A run's month: its tag, else the TLC file it read (scoring runs before the tag)."""
    from flows.logic.predictions import month_of

    if MONTH_TAG in run.data.tags:
        return str(run.data.tags[MONTH_TAG])
    found = month_of(run.data.params.get("input_uri", ""))
    return found[1] if found else ""


def latest_by_month(runs: list[Any], by_source: bool = False) -> dict[tuple[str, ...], Any]:
    """The newest run of each (month, version), and source (a scored month or served traffic)
    when ``by_source``, from runs newest first."""
    found: dict[tuple[str, ...], Any] = {}
    for run in runs:
        key: tuple[str, ...] = (month_of_run(run), run.data.tags.get(MODEL_VERSION_TAG, ""))
        if by_source:
            key += (run.data.tags.get(SOURCE_TAG, "batch"),)
        if all(key):
            found.setdefault(key, run)
    return found


def mlflow_figures(sources: Sources) -> list[Metric]:
    """The champion's version, monitoring's rmse, drift share and breaches, scoring's rows."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        champion = client.get_model_version_by_alias(sources.model_name, CHAMPION).version
        champion_version = float(champion)
    except MlflowException:
        champion_version = 0.0
    figures = [
        gauge(
            "platform_champion_version",
            "The version behind the champion alias (0: none)",
            ["model"],
            {(sources.model_name,): champion_version},
        )
    ]
    monitored = latest_by_month(runs_of(client, sources.monitoring_experiment), by_source=True)
    per_month = ["month", "version", "source"]
    for metric, name, documentation in (
        ("rmse", "platform_monitoring_rmse", "rmse of the latest monitoring of a month"),
        ("drift_share", "platform_monitoring_drift_share", "Share of columns drifted"),
    ):
        samples: Samples = {
            key: float(run.data.metrics[metric])
            for key, run in monitored.items()
            if metric in run.data.metrics
        }
        documentation += ", by month, version and source (batch: a scored month; served)"
        figures.append(gauge(name, documentation, per_month, samples))
    breaches: Samples = {
        key: 1.0 if run.data.tags.get(BREACHED_TAG) == "true" else 0.0
        for key, run in monitored.items()
    }
    figures.append(
        gauge(
            "platform_monitoring_breached",
            "1 when the latest monitoring of a month, version and source breached",
            per_month,
            breaches,
        )
    )
    scored = latest_by_month(runs_of(client, sources.scoring_experiment))
    rows: Samples = {key: float(run.data.metrics.get("rows", 0)) for key, run in scored.items()}
    figures.append(
        gauge(
            "platform_scoring_rows",
            "Rows the latest scoring of a month wrote, by month and version",
            ["month", "version"],
            rows,
        )
    )
    return figures


def runs_of(client: Any, experiment_name: str) -> list[Any]:
    """The experiment's latest finished runs, newest first ([] when it does not exist yet)."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    runs: list[Any] = client.search_runs(
        [experiment.experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=LATEST_RUNS,
    )
    return runs


def prefect_server_metrics() -> list[Metric]:
    """Prefect server's own metrics (its /api/metrics), renamed ``prefect_server_*``."""
    from prefect.client.orchestration import get_client
    from prometheus_client.parser import text_string_to_metric_families

    with get_client(sync_client=True) as client:
        answer = client._client.get("/metrics")
        answer.raise_for_status()
    families = []
    for family in text_string_to_metric_families(answer.text):
        family.name = f"prefect_server_{family.name}"
        family.samples = [
            sample._replace(name=f"prefect_server_{sample.name}") for sample in family.samples
        ]
        families.append(family)
    return families


class PlatformCollector(Collector):
    """Collects every source at most once per ``cache_s``; a failing source reports up 0."""

    def __init__(
        self,
        sources: Sources,
        cache_s: float = 10.0,
        readers: dict[str, Callable[[], list[Metric]]] | None = None,
    ) -> None:
        self.sources, self.cache_s = sources, cache_s
        self.readers = readers or {
            "prefect": lambda: prefect_figures(sources),
            "mlflow": lambda: mlflow_figures(sources),
            "prefect-server": prefect_server_metrics,
        }
        self.lock = threading.Lock()
        self.cached: tuple[float, list[Metric]] = (0.0, [])

    def describe(self) -> list[Metric]:
        """Nothing ahead: registering must not read every source (it would, without this)."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            taken, families = self.cached
            if time.monotonic() - taken >= self.cache_s or not families:
                families = self.read_all()
                self.cached = (time.monotonic(), families)
        yield from families

    def read_all(self) -> list[Metric]:
        """Every source's figures, and whether each could be read and how long it took."""
        families: list[Metric] = []
        up: Samples = {}
        seconds: Samples = {}
        for name, reader in self.readers.items():
            started = time.perf_counter()
            try:
                families += reader()
                up[(name,)] = 1.0
            except Exception as error:  # noqa: BLE001 (one source down must not hide the others)
                logger.warning("could not read %s: %s", name, error)
                up[(name,)] = 0.0
            seconds[(name,)] = time.perf_counter() - started
        families.append(gauge("platform_source_up", "1 when the source answered", ["source"], up))
        families.append(
            gauge("platform_source_seconds", "Time to read the source", ["source"], seconds)
        )
        return families
