"""Run in a worker container: print the tracking URI, whether MLflow answers, the work pools."""

from __future__ import annotations

import asyncio

import mlflow
from prefect.client.orchestration import get_client


async def work_pool_names() -> list[str]:
    """Names of the work pools the Prefect server knows."""
    async with get_client() as client:
        return [pool.name for pool in await client.read_work_pools()]


if __name__ == "__main__":
    print(mlflow.get_tracking_uri(), len(mlflow.search_experiments()) >= 1)
    print(",".join(asyncio.run(work_pool_names())))
