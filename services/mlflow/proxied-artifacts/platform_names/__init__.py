"""Names that cross processes: written by one (a flow, the CLI, an automation, a server) and read
by another, or by people. Their only home, installed with the MLflow apps so that every package
imports it: flows, services, infra, bench and the apps in the tracking server. A test holds them
to prefect.yaml and finds them spelled nowhere else.

The seed's stages map onto aliases: Staging = ``challenger``, Production = ``champion``; a demoted
champion keeps its version and is tagged ``stage=archived``.
"""

from __future__ import annotations

# Aliases of registered versions.
CHAMPION, CHALLENGER = "champion", "challenger"

# Tags on MLflow runs: which Prefect flow run (and deployment) made them, and why one failed.
FLOW_RUN_TAG = "prefect.flow_run_id"
FLOW_RUN_NAME_TAG = "prefect.flow_run_name"
DEPLOYMENT_TAG = "prefect.deployment"
DEPLOYMENT_ID_TAG = "prefect.deployment_id"
FAILURE_REASON_TAG = "failure_reason"
# Who started the flow run: a Prefect tag `started-by:<account>` (the gateway sets it from the
# account that signed in), copied onto the MLflow runs the flow run makes.
STARTED_BY_TAG_PREFIX = "started-by:"
STARTED_BY_TAG = "platform.started_by"

# Tags on model versions: the seed's stage, and why the promotion flow decided as it did.
STAGE_TAG, ARCHIVED_BY_TAG = "stage", "archived_by"
STAGING, PRODUCTION, ARCHIVED = "staging", "production", "archived"
VAL_RMSE_TAG = "val_rmse"
# The stack's record of a version's files (flows/logic/provenance.py): only the stack's own account
# (and admins) may write it, so every loader trusts it.
RECORD_TAG = "platform.record"
# A version without a record that an upgrade looked at and did not adopt, and why (looked at once).
ADOPTION_REFUSED_TAG = "platform.adoption_refused"
# A promotion's decision on a version, one line ("promoted: ..." / "rejected: ..."); its every
# number in the version's training run, PROMOTION_FILE. Versions decided before this release
# carry their numbers as ``promotion.*`` tags instead, still read.
PROMOTION_TAG, PROMOTION_TAG_PREFIX = "promotion", "promotion."
PROMOTION_FILE = "promotion/version-{version}.json"
# Tags on a monitored version: a breach reported for a month, and the retraining it started.
BREACH_TAG_PREFIX, RETRAINED_TAG_PREFIX = "monitoring.breach.", "monitoring.retrained."

# Tags of scoring and monitoring runs, read back by the CLI's summaries.
MODEL_NAME_TAG, MODEL_VERSION_TAG, MODEL_RUN_ID_TAG = "model_name", "model_version", "model_run_id"
ALIAS_TAG, OUTPUT_URI_TAG, MONTH_TAG = "alias", "output_uri", "month"
BREACHED_TAG, REASON_TAG, DRIFTED_COLUMNS_TAG = "breached", "reason", "drifted_columns"

# Tags of tuning runs: a trial's parent (MLflow's own key), its number, the best, and the
# training run that followed the search.
PARENT_RUN_TAG, TRIAL_TAG = "mlflow.parentRunId", "tuning.trial"
BEST_TRIAL_TAG, TUNING_RUN_TAG = "tuning.best_trial", "tuning.run_id"

# Experiments beside the training experiment (MLFLOW_EXPERIMENT_NAME + suffix).
SCORING_EXPERIMENT_SUFFIX = "-scoring"
MONITORING_EXPERIMENT_SUFFIX = "-monitoring"

# Deployments, as `flow name/deployment name` (prefect.yaml); each flow is named as its deployment.
TRAIN_DEPLOYMENT = "train/train"
PROMOTE_DEPLOYMENT = "promote/promote"
SCORE_DEPLOYMENT = "score/score"
MONITOR_DEPLOYMENT = "monitor/monitor"
RETRAIN_DEPLOYMENT = "retrain/retrain"
TUNE_DEPLOYMENT = "tune/tune"
TUNE_TRIAL_DEPLOYMENT = "tune-trial/tune-trial"
MONTHLY_DEPLOYMENT = "monthly/monthly"
PLATFORM_CHECK_DEPLOYMENT = "platform-check/platform-check"
REAPER_DEPLOYMENT = "reap-mlflow-runs/reap-mlflow-runs"
HOUSEKEEPING_DEPLOYMENT = "housekeeping/housekeeping"
# Where batch predictions go in the data bucket (flows/logic/predictions.py).
PREDICTIONS_PREFIX = "predictions"
# Where the model server's answered records go (services/serving/traffic.py).
SERVED_PREFIX = "served"

# The event a monitoring breach emits (the `retrain` trigger and the notification match it),
# about a resource `taxi.model.<name>.<version>` carrying these labels.
BREACH_EVENT = "taxi.monitoring.breach"
MODEL_RESOURCE_PREFIX = "taxi.model."
MODEL_LABEL, VERSION_LABEL, MONTH_LABEL, COLOR_LABEL = (
    "taxi.model",
    "taxi.version",
    "taxi.month",
    "taxi.color",
)
# What was monitored: a scored month ("batch") or what the model server answered ("served").
SOURCE_LABEL, SOURCE_TAG = "taxi.source", "source"

# The tracking server's own API beside MLflow's (mlflow_stack_registry): the alias history, and
# housekeeping's runs, leftovers and sizes; an alias move's reason travels in this header.
ALIAS_HISTORY_PATH = "/api/2.0/platform/alias-history"
HOUSEKEEPING_API_PATH = "/api/2.0/platform/housekeeping"
REASON_HEADER = "x-platform-reason"
# MLflow's artifact proxy API (the tracking server's and the data proxy's).
ARTIFACTS_API_PATH = "/api/2.0/mlflow-artifacts/artifacts"
# The PostgreSQL advisory lock a backup holds from its first dump to its last object and that
# housekeeping takes before it deletes ("taxi" "hk" as bytes): the two never overlap.
MAINTENANCE_LOCK = 0x7461_7869_686B
