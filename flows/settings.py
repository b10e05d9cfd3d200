"""The platform's settings: one typed model, read from the environment when something starts.

Every default lives here. `.env.example` documents the same names and values (a test holds the
two together), docker-compose.yml passes the values through without defaults of its own, and
`make local` and the infra jobs read this model too. An empty value counts as unset, so a blank
line in `.env` means "the default", never "the empty string".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from platform_names import CHAMPION, MONITORING_EXPERIMENT_SUFFIX, SCORING_EXPERIMENT_SUFFIX
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

if TYPE_CHECKING:  # at run time imported where used: every process imports settings
    from flows.logic.gate import Budgets
    from flows.logic.monitoring import Thresholds


TLC_BASE_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"
# The data bucket's name when a stack has S3 but DATA_BUCKET is empty. Not the model's default:
# an unset DATA_BUCKET means "no bucket" (a folder, or TLC's site) to the flows.
DEFAULT_DATA_BUCKET = "taxi-data"


class Settings(BaseSettings):
    """Where the flows find MLflow, the data bucket (or folder) and the TLC files, and names."""

    model_config = SettingsConfigDict(
        env_ignore_empty=True, extra="ignore", frozen=True, protected_namespaces=()
    )

    model_name: str = Field(default="taxi-trip-duration", description="registered model name")
    experiment_name: str = Field(
        default="taxi-trip-duration",
        validation_alias=AliasChoices("MLFLOW_EXPERIMENT_NAME", "experiment_name"),
    )
    work_pool: str = "taxi-pool"
    data_bucket: str | None = None
    data_dir: str | None = None
    # The data bucket through the stack's authenticated data proxy, for workers on other hosts
    # (`make worker`): they hold an MLflow account, not the S3 key.
    data_proxy_url: str | None = None
    # Local folders whose trip files a flow may read by path (os.pathsep-separated), besides
    # DATA_DIR: explicit paths elsewhere are refused (flows/logic/locations.py).
    local_data_dirs: str | None = None
    # What one trip file may hold, checked from its metadata before it is decoded: TLC's largest
    # months have under 8 million rows and about 1 GB of columns once decoded.
    trip_file_max_rows: int = Field(default=10_000_000, gt=0)
    trip_file_max_bytes: int = Field(default=2_000_000_000, gt=0)
    mlflow_artifact_bucket: str = "mlflow-artifacts"
    s3_endpoint_url: str | None = None
    tlc_base_url: str = TLC_BASE_URL
    mlflow_ui_url: str | None = None
    notify_webhook_url: str | None = None
    # Flow runs one worker runs at once (empty: derived from its cores and memory) and in the
    # whole pool, whatever the number of workers.
    worker_limit: int | None = Field(default=None, ge=1)
    # Which work queues of the pool a worker serves (comma-separated; empty: all of them) and the
    # name it shows in Prefect (empty: Prefect's own).
    worker_queues: str | None = None
    worker_name: str | None = None
    pool_limit: int = Field(
        default=8, ge=1, validation_alias=AliasChoices("WORK_POOL_CONCURRENCY_LIMIT", "pool_limit")
    )

    # The promotion gate (flows/logic/gate.py): better by this share of the champion's rmse, and
    # within these budgets for one-record latency (p95) and the logged model's size.
    promotion_min_rmse_improvement: float = Field(default=0.005, ge=0, lt=1)
    promotion_max_p95_latency_ms: float = Field(default=50.0, gt=0)
    promotion_max_model_mb: float = Field(default=20.0, gt=0)

    # Monitoring (flows/pipelines/monitor.py): a scored month breaches when its rmse is worse
    # than the model's validation rmse by more than this share, or more than this share of the
    # monitored columns drifted. A breach starts a retraining (the `retrain` deployment).
    monitor_max_rmse_increase: float = Field(default=0.10, gt=0)
    monitor_max_drift_share: float = Field(default=0.5, ge=0, le=1)

    # Housekeeping (the daily `housekeeping` deployment): MLflow runs deleted longer ago than
    # this (with their artifacts and logged models), and predictions older than this by versions
    # that hold no alias, are deleted for good. Prefect's own vacuum (prefect-server) deletes flow
    # runs, with their task runs and logs, that ended longer ago than FLOW_RUN_RETENTION_DAYS.
    housekeeping_retention_days: float = Field(default=30, ge=0)
    flow_run_retention_days: int = Field(default=90, ge=1)
    # What the model server answered (served/) is kept this long: the monthly run judges the
    # month before it, so this outlasts two months.
    served_traffic_retention_days: float = Field(default=90, ge=0)

    # The serving service answers with the version behind this alias, looked up this often.
    serving_alias: str = CHAMPION
    serving_poll_seconds: float = Field(default=5.0, gt=0)
    # What one prediction request may hold: larger bodies get 413, more rows 400.
    serving_max_body_bytes: int = Field(default=1_048_576, gt=0)
    serving_max_rows: int = Field(default=1_000, gt=0)
    # What the model server answered, kept for monitoring (services/serving/traffic.py): written
    # to the data bucket through the data proxy this often, or sooner at this many records; at
    # most this many wait in memory (beyond, the oldest are dropped and counted).
    serving_traffic_log: bool = True
    serving_traffic_flush_seconds: float = Field(default=60.0, gt=0)
    serving_traffic_batch_rows: int = Field(default=5_000, gt=0)
    serving_traffic_max_rows: int = Field(default=100_000, gt=0)

    def data_locations(self) -> tuple[list[str], list[str]]:
        """Where explicit trip files may come from: URLs (TLC's, the data proxy's) and folders."""
        from flows.logic.locations import local_data_dirs

        urls = [self.tlc_base_url, self.data_proxy_url or ""]
        return [u for u in urls if u], [self.data_dir or "", *local_data_dirs(self.local_data_dirs)]

    @property
    def scoring_experiment_name(self) -> str:
        """The MLflow experiment of scoring runs, beside the training experiment."""
        return self.experiment_name + SCORING_EXPERIMENT_SUFFIX

    @property
    def monitoring_experiment_name(self) -> str:
        """The MLflow experiment of monitoring runs, beside the training experiment."""
        return self.experiment_name + MONITORING_EXPERIMENT_SUFFIX

    def promotion_budgets(self) -> Budgets:
        """The promotion gate's margin and budgets."""
        from flows.logic.gate import Budgets

        return Budgets(
            min_rmse_improvement=self.promotion_min_rmse_improvement,
            max_p95_latency_ms=self.promotion_max_p95_latency_ms,
            max_model_size_mb=self.promotion_max_model_mb,
        )

    def monitor_thresholds(self) -> Thresholds:
        """When a monitored month counts as a breach."""
        from flows.logic.monitoring import Thresholds

        return Thresholds(
            max_rmse_increase=self.monitor_max_rmse_increase,
            max_drift_share=self.monitor_max_drift_share,
        )

    @field_validator("tlc_base_url")
    @classmethod
    def _without_trailing_slash(cls, url: str) -> str:
        """The flows append ``/<file>`` to the TLC URL."""
        return url.rstrip("/")

    @classmethod
    def from_env(cls) -> Settings:
        """The settings as this process's environment gives them now."""
        return cls()

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """The settings as ``env`` (environment-style names) gives them, ignoring os.environ."""
        values: dict[str, Any] = {
            name: env[key] for name, key in env_names().items() if env.get(key)
        }
        return _GivenValuesOnly(**values)


class _GivenValuesOnly(Settings):
    """Settings from the values passed in, with no environment source behind them."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values given to the constructor."""
        return (init_settings,)


def env_names() -> dict[str, str]:
    """Each setting's field name and the environment variable that sets it."""
    names = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names[field_name] = (
            str(alias.choices[0]) if isinstance(alias, AliasChoices) else field_name.upper()
        )
    return names


def documented_defaults() -> dict[str, str]:
    """Each setting's environment name and its default as `.env.example` writes it."""
    return {
        env_name: ""
        if Settings.model_fields[name].default is None
        else str(Settings.model_fields[name].default)
        for name, env_name in env_names().items()
    }
