"""What each flow returns: one typed result per flow, built once at the end of its run.

Flows called in-process (a subflow, a test, `train-here`) hand these back as they are; the CLI
reads what a flow run on a worker did from its MLflow run (flows/cli/summaries.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionResult:
    """What the promotion flow decided, and on which numbers."""

    model_name: str
    promoted: bool
    reason: str
    challenger_version: str | None
    champion_version: str | None
    challenger_rmse: float | None
    champion_rmse: float | None
    val_uri: str | None
    # rmse, p95_latency_ms and model_size_mb of each, the budgets, and the checks that failed.
    challenger: dict[str, float] | None = None
    champion: dict[str, float] | None = None
    budgets: dict[str, float] | None = None
    failed: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced, and the promotion decision when one was asked for."""

    run_id: str
    experiment_id: str
    rmse: float
    mae: float
    r2: float
    model_name: str
    version: str
    model_uri: str
    run_url: str
    promotion: PromotionResult | None = None

    @property
    def champion(self) -> bool:
        """Whether this version became champion (False when no promotion ran)."""
        return self.promotion is not None and self.promotion.promoted


@dataclass(frozen=True)
class MonitorResult:
    """A month's figures for one version, and what they called for."""

    model_name: str
    version: str
    month: str
    source: str
    rows: int
    rmse: float
    mae: float
    reference_rmse: float
    rmse_increase: float
    drift_share: float
    drifted_columns: list[str]
    breached: bool
    breached_metrics: list[str]  # the thresholds crossed (flows/logic/monitoring.py's names)
    reason: str
    months_watched: list[str]
    retrain_requested: bool
    run_id: str


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring run wrote, with which version, how well it did, and its monitoring."""

    model_name: str
    alias: str
    version: str
    source: str
    output_uri: str
    rows: int
    rmse: float | None
    mae: float | None
    run_id: str
    monitoring: MonitorResult | None = None
    not_monitored: str | None = None  # why not, when monitoring was asked for and skipped


@dataclass(frozen=True)
class RetrainResult:
    """A retraining for a breached month, or why none was needed."""

    month: str
    training: TrainResult | None
    already_retrained_as: str | None = None

    @property
    def skipped(self) -> bool:
        """True when the version had already been retrained for this month."""
        return self.training is None


@dataclass(frozen=True)
class TuneResult:
    """The search's best trial, and the training run made with its parameters."""

    tuning_run_id: str
    best_holdout_rmse: float
    best_params: dict[str, object]
    training: TrainResult


@dataclass(frozen=True)
class PlatformCheckResult:
    """What the platform check reached from where it ran."""

    tracking_uri: str
    run_id: str
    artifact_text: str
    data_store_bytes: int | None
