"""The xgboost parameters flows accept (flows/logic/params.py)."""

from __future__ import annotations

import pytest

from flows.errors import PERMANENT_ERRORS, InvalidParameters
from flows.logic.params import checked_params
from flows.model import DEFAULT_PARAMS


def test_the_defaults_and_a_search_space_pass():
    assert checked_params(DEFAULT_PARAMS) == DEFAULT_PARAMS
    assert checked_params(None) == {}
    assert checked_params({"n_estimators": 1500, "early_stopping_rounds": None})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_estimators": 10**8}, "n_estimators=100000000 must be a whole number from 1 to 5000"),
        ({"max_depth": 2.5}, "max_depth=2.5 must be a whole number"),
        ({"learning_rate": "fast"}, "learning_rate='fast' must be a number"),
        ({"subsample": True}, "subsample=True must be a number"),
        ({"nthread": 64}, "unknown parameter 'nthread'"),
        ({"objective": "reg:pseudohubererror"}, "objective must be 'reg:squarederror'"),
    ],
)
def test_out_of_range_or_unknown_parameters_are_refused_by_name(params, message):
    with pytest.raises(InvalidParameters, match="params: ") as refused:
        checked_params(params)
    assert message in str(refused.value)
    assert isinstance(refused.value, PERMANENT_ERRORS)  # never retried
