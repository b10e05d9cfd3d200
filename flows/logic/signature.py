"""A registered version's inputs in the types its own signature names.

Months differ in how TLC stores a column (zones are int64 up to 2023-01, int32 since), and MLflow's
schema enforcement refuses every narrowing cast. Versions logged before the types were made
canonical (flows/logic/trips.py) carry the types of the month that validated them; this hands each
version its columns in those types wherever every value survives the cast, and otherwise stops with
one line naming the file, the column and both types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from flows.errors import MissingModel, SchemaMismatch

if TYPE_CHECKING:
    from mlflow.types import Schema


def conform(inputs: pd.DataFrame, schema: Schema, source: str, reader: str) -> pd.DataFrame:
    """The columns ``schema`` names, each in the schema's type; ``reader`` names the version."""
    if schema.is_tensor_spec():
        return inputs
    missing = [name for name in schema.input_names() if name not in inputs.columns]
    if missing:
        raise SchemaMismatch(
            source, f"has no column {', '.join(map(str, missing))}, which {reader} reads"
        )
    return pd.DataFrame(
        {
            spec.name: conform_column(inputs[spec.name], spec.type, source, reader)
            for spec in schema.inputs
        },
        index=inputs.index,
    )


def conform_column(values: pd.Series, wanted: Any, source: str, reader: str) -> pd.Series:
    """``values`` in the MLflow type ``wanted`` when every value survives the cast unchanged."""
    from mlflow.types import DataType

    target = np.dtype(wanted.to_numpy())
    if values.dtype == target:
        return values
    if wanted == DataType.datetime:
        if pd.api.types.is_datetime64_dtype(values.dtype):
            return values  # MLflow's datetime accepts any precision
        raise mismatch(source, values, wanted, reader)
    if not (is_number(values.dtype) and is_number(target)):
        raise mismatch(source, values, wanted, reader)
    try:
        cast = values.astype(target)
        changed = ~np.isclose(cast.astype(values.dtype), values, rtol=0, atol=0, equal_nan=True)
    except (ValueError, TypeError, OverflowError):  # NaN or inf into an integer type
        raise mismatch(
            source, values, wanted, reader, "it holds missing or infinite values"
        ) from None
    if changed.any():
        first = values[changed].iloc[0]
        raise mismatch(
            source,
            values,
            wanted,
            reader,
            f"{int(changed.sum())} of {len(values)} values do not fit, e.g. {first}",
        )
    return cast


def is_number(dtype: Any) -> bool:
    """A numeric type that is not boolean."""
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def mismatch(
    source: str, values: pd.Series, wanted: Any, reader: str, why: str = "no safe conversion"
) -> SchemaMismatch:
    """The one-line error of a column a version cannot read."""
    wanted_type = f"{wanted.name} ({np.dtype(wanted.to_numpy())})"
    return SchemaMismatch(
        source, f"column {values.name} is {values.dtype}, but {reader} reads {wanted_type}: {why}"
    )


def predict_raw(
    model: Any, raw: pd.DataFrame, source: str, reader: str
) -> tuple[pd.DataFrame, Any]:
    """The columns of ``raw`` the version reads (as they were) and its predictions of them, made
    on those columns conformed to its signature. A schema refusal MLflow still raises becomes one
    line naming the file, instead of MLflow's message quoting the whole frame."""
    from mlflow.exceptions import MlflowException

    schema = model.metadata.get_input_schema()
    if schema is None:
        raise MissingModel(
            f"{reader} was logged without a signature: nothing says which columns it reads"
        )
    conformed = conform(raw, schema, source, reader)
    try:
        predicted = model.predict(conformed)
    except MlflowException as error:
        message = str(error)
        if "enforce schema" not in message:
            raise
        # MLflow ends its message with "Error: <why>" after quoting the data.
        detail = message.rsplit("Error:", 1)[-1].strip().splitlines()[0][:300]
        # Not chained: the chained error's message would quote the data frame all over again.
        raise SchemaMismatch(source, f"{reader} refuses its columns: {detail}") from None
    return raw[list(conformed.columns)], predicted
