"""Waiting for a server to answer: the one poller of `make local` and the test fixtures."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests


def answers(url: str, timeout_s: float = 2) -> bool:
    """True when ``url`` answers 200."""
    try:
        return requests.get(url, timeout=timeout_s).status_code == 200
    except requests.RequestException:
        return False


def worker_online(api_url: str, pool: str) -> bool:
    """True when a worker of ``pool`` has sent the Prefect server at ``api_url`` a heartbeat."""
    try:
        response = requests.post(f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=2)
    except requests.RequestException:
        return False
    return response.ok and any(w.get("status") == "ONLINE" for w in response.json())


def wait_for_http(
    url: str, timeout_s: float, still_starting: Callable[[], bool] = lambda: True
) -> None:
    """Poll ``url`` until it answers 200; fail at once when ``still_starting`` turns False (the
    server's process ended) and after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not answers(url):
        if not still_starting():
            raise RuntimeError(f"the server for {url} stopped while starting")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")
        time.sleep(0.5)
