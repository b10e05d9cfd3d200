"""The xgboost parameters a flow accepts: known names, in ranges that train in bounded time and
memory. Checked before any data is fetched, so a bad request fails at once and leaves nothing."""

from __future__ import annotations

from typing import Any

from flows.errors import InvalidParameters

# name: (lowest, highest, whole number). Bounds a search would never leave; beyond them a run
# holds a worker's slot for hours (n_estimators=10**8) or its memory (max_depth, max_bin).
PARAM_RANGES: dict[str, tuple[float, float, bool]] = {
    "n_estimators": (1, 5_000, True),
    "learning_rate": (1e-4, 1.0, False),
    "max_depth": (1, 16, True),
    "min_child_weight": (0, 1_000, False),
    "subsample": (0.05, 1.0, False),
    "colsample_bytree": (0.05, 1.0, False),
    "max_cat_to_onehot": (1, 300, True),
    "max_bin": (2, 1_024, True),
    "early_stopping_rounds": (1, 1_000, True),
    "reg_alpha": (0, 1_000, False),
    "reg_lambda": (0, 1_000, False),
    "gamma": (0, 1_000, False),
    "random_state": (0, 2**31 - 1, True),
}
# Names that may also be None (early stopping off).
NULLABLE = {"early_stopping_rounds"}
# Names whose values are chosen by the platform, not by a request.
FIXED = {"objective": {"reg:squarederror"}, "tree_method": {"hist"}}


def checked_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` when every name is known and every value in range; else InvalidParameters
    naming the first that is not."""
    for name, value in (params or {}).items():
        if name in FIXED:
            if value not in FIXED[name]:
                raise InvalidParameters(f"params: {name} must be {sorted(FIXED[name])[0]!r}")
            continue
        if name not in PARAM_RANGES:
            known = ", ".join(sorted([*PARAM_RANGES, *FIXED]))
            raise InvalidParameters(f"params: unknown parameter {name!r} (known: {known})")
        if value is None and name in NULLABLE:
            continue
        lowest, highest, whole = PARAM_RANGES[name]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (whole and float(value) != int(value)) or not lowest <= value <= highest:
            kind = "a whole number" if whole else "a number"
            raise InvalidParameters(
                f"params: {name}={value!r} must be {kind} from {lowest:g} to {highest:g}"
            )
    return dict(params or {})


def platform_model(model_name: str | None, platform: str) -> str:
    """The platform's model: ``model_name`` may only name it (the flows load and register no
    other, so a request cannot point the stack's worker at someone else's versions)."""
    if model_name and model_name != platform:
        raise InvalidParameters(
            f"model_name {model_name!r}: the flows work on the platform's model {platform!r} only "
            "(MODEL_NAME)"
        )
    return platform
