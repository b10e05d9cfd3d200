"""The flows, one per file; each is named as its deployment (prefect.yaml)."""

from __future__ import annotations

# The longest each flow may run before Prefect fails it (seconds): a stuck download or a runaway
# fit gives its worker slot back instead of holding it for days. Sized at about 10x a normal run
# of a yellow month on 2 cores (train ~5 min, a 20-trial tuning ~40 min).
FLOW_TIMEOUT_S: dict[str, int] = {
    "train": 2 * 3600,
    "tune": 6 * 3600,
    "tune-trial": 3600,
    "promote": 3600,
    "score": 3600,
    "monitor": 3600,
    "retrain": 3 * 3600,
    "monthly": 8 * 3600,
    "platform-check": 600,
    "reap-mlflow-runs": 600,
    "housekeeping": 3600,
}
