"""A flow that imports nothing but Prefect and does nothing: the floor of pick-up (bench.pickup)."""

from __future__ import annotations

from prefect import flow


@flow(name="noop")
def noop() -> None:
    """Nothing."""
