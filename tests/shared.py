"""Servers shared by every test process of one run: started once, by whichever process needs one
first, and stopped by the run's main process when the run ends.

`make test` runs two pytest processes (pytest-xdist). Each used to start its own PostgreSQL, S3
server, MLflow and Prefect servers and accounts servers: on two cores, a minute of the run went
to starting the same servers twice. Here a server is started under a file lock in the folder the
run's processes share, its handle (URLs, credentials, process ids: see tests/servers.py) is
written beside the lock, and the other process reads it. Every process group started that way is
on record in the same folder, so the main process (the xdist controller, or the only process)
stops them all at the end, whichever process started them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

Handle = TypeVar("Handle")
PROCESSES = "processes.txt"
CLUSTERS = "clusters.pickle"


def run_folder(base_temp: Path) -> Path:
    """The folder this run's processes share: pytest's base temp folder, whose per-process
    sub-folders xdist's workers get."""
    return base_temp.parent if os.environ.get("PYTEST_XDIST_WORKER") else base_temp


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (made if missing) for the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared(folder: Path, name: str, start: Callable[[], Handle]) -> Handle:
    """The run's one ``name`` server: started by the first process to ask, read by the rest."""
    with locked(folder / f"{name}.lock"):
        saved = folder / f"{name}.pickle"
        if saved.exists():
            handle: Handle = pickle.loads(saved.read_bytes())
            return handle
        handle = start()
        saved.write_bytes(pickle.dumps(handle))
        return handle


def on_record(folder: Path, pid: int) -> None:
    """Put a started process group on record, for the end of the run."""
    with locked(folder / f"{PROCESSES}.lock"), (folder / PROCESSES).open("a") as out:
        out.write(f"{pid}\n")


def cluster_on_record(folder: Path, cluster: object) -> None:
    """Put a PostgreSQL cluster on record, for the end of the run."""
    with locked(folder / f"{CLUSTERS}.lock"):
        path = folder / CLUSTERS
        clusters = pickle.loads(path.read_bytes()) if path.exists() else []
        path.write_bytes(pickle.dumps([*clusters, cluster]))


def stop_everything(folder: Path) -> None:
    """Stop every process group and cluster on record (at the end of the run)."""
    from tests import servers

    processes = folder / PROCESSES
    if processes.exists():
        for line in reversed(processes.read_text().split()):
            servers.stop_group(int(line))
        processes.unlink()
    clusters = folder / CLUSTERS
    if clusters.exists():
        for cluster in pickle.loads(clusters.read_bytes()):
            cluster.stop()
        clusters.unlink()
