"""xgboost parameters the integration tests train with. What they prove does not hang on a
model's last tenths of a minute of rmse, and fitting is the largest part of their time."""

from __future__ import annotations

# 40 trees instead of early stopping's ~150: green 2021-01 -> 2021-02 rmse 5.79 (the default
# 5.61), a quarter of the fitting time.
QUICK = {"n_estimators": 40}
# A deliberately poor model, to test promotion.
WEAK = {"n_estimators": 3, "max_depth": 2}
