"""Tasks that find a month of trip records and read it: what every flow starts with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import get_run_logger, task

from flows.errors import InvalidParameters
from flows.settings import Settings
from flows.steps.retry import IO_RETRIES

if TYPE_CHECKING:
    from flows.logic.trips import TripData


@task(**IO_RETRIES)
def locate_month(color: str, month: str) -> str:
    """The month's location: in the data store, fetched from TLC into it the first time."""
    from flows.logic.months import official_url
    from flows.resources.store import data_store
    from flows.resources.tlc_files import ensure_month_stored

    settings = Settings.from_env()
    store = data_store(settings)
    if store is None:
        return official_url(settings.tlc_base_url, color, month)
    return ensure_month_stored(store, settings.tlc_base_url, color, month, get_run_logger())


@task(**IO_RETRIES)
def load(location: str) -> TripData:
    """Read and validate one file; a TripDataError (bad data) is not retried."""
    from flows.logic.trips import FileLimits
    from flows.resources.s3 import s3_client
    from flows.resources.store import ProxyStore
    from flows.resources.tlc_files import load_trips

    settings = Settings.from_env()
    needs_s3 = location.startswith("s3://")
    s3 = s3_client(settings.s3_endpoint_url) if needs_s3 else None
    proxy = ProxyStore(settings.data_proxy_url) if settings.data_proxy_url else None
    limits = FileLimits(settings.trip_file_max_rows, settings.trip_file_max_bytes)
    data = load_trips(location, s3, proxy, limits)
    get_run_logger().info(
        "%s: %d rows read, %d kept (1-60 min)", location, data.rows_read, data.rows_kept
    )
    return data


def data_path(path: str, parameter: str) -> str:
    """``path`` when it is in the data store; else InvalidParameters naming ``parameter``."""
    from flows.logic.locations import allowed_location

    settings = Settings.from_env()
    urls, folders = settings.data_locations()
    return allowed_location(path, parameter, settings.data_bucket, urls, folders)


def month_or_path(color: str, month: str | None, path: str | None, name: str) -> str:
    """An explicit path from the data store, else the month's location; one of the two is
    required. A path elsewhere is refused before anything is fetched."""
    if path:
        return data_path(path, f"{name}_path")
    if not month:
        raise InvalidParameters(f"give either {name}_month (YYYY-MM) or {name}_path")
    return locate_month(color, month)
