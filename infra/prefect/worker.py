"""Start a Prefect process worker on the platform's pool, sized to the machine it runs on.

    python -m infra.prefect.worker [--healthcheck]

The worker runs at most WORKER_LIMIT flow runs at once (empty: one per CPU core, fewer when
memory is short: each training run needs up to RUN_MEMORY_BYTES; shared out among the
WORKER_REPLICAS workers of one machine); runs beyond it wait as Scheduled and start as slots
free. Each run's xgboost gets its share of the cores as threads, so runs side by side share the
cores instead of fighting over them.

With STACK_CA_FILE (the TLS proxy's own certificate authority: Caddy's `tls internal` on a LAN),
the worker and its flow runs trust that CA besides the public ones, in every client they use.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flows.settings import Settings

# Peak resident memory of one training flow run (a month of trips, xgboost, MLflow), measured at
# ~0.6 GB; rounded up so a burst never pushes the machine into swap.
RUN_MEMORY_BYTES = 1 << 30
QUERY_SECONDS = 1


@dataclass(frozen=True)
class Machine:
    """What the worker may use: CPU cores and memory (cgroup limits included)."""

    cpus: int
    memory_bytes: int


def cgroup_cpus(cpu_max: str) -> int | None:
    """Whole cores of a cgroup v2 ``cpu.max`` line ("max 100000" or "200000 100000")."""
    quota, _, period = cpu_max.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return max(1, int(quota) // int(period))


def read_first(*paths: str) -> str | None:
    """The text of the first of ``paths`` that can be read."""
    for path in paths:
        try:
            return Path(path).read_text()
        except OSError:
            continue
    return None


def this_machine() -> Machine:
    """The cores this process may run on and the memory it may use."""
    cpus = len(os.sched_getaffinity(0))
    cpu_max = read_first("/sys/fs/cgroup/cpu.max")
    if cpu_max and (limited := cgroup_cpus(cpu_max)):
        cpus = min(cpus, limited)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    memory_max = read_first("/sys/fs/cgroup/memory.max")
    if memory_max and memory_max.strip().isdigit():
        memory = min(memory, int(memory_max))
    return Machine(cpus=cpus, memory_bytes=memory)


def default_limit(
    machine: Machine, run_memory_bytes: int = RUN_MEMORY_BYTES, workers_here: int = 1
) -> int:
    """One flow run per core, but never more than memory holds; ``workers_here`` workers on
    the same machine share it."""
    fits = min(machine.cpus, machine.memory_bytes // run_memory_bytes)
    return max(1, fits // max(1, workers_here))


def threads_per_run(machine: Machine, limit: int, workers_here: int = 1) -> int:
    """OpenMP threads for each run, so full workers on this machine use its cores once."""
    return max(1, machine.cpus // (limit * max(1, workers_here)))


# The settings every client of a worker and its flow runs reads its CA bundle from: Python's ssl
# defaults, requests (MLflow, the data proxy) and Prefect's httpx and WebSocket clients.
CA_BUNDLE_SETTINGS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PREFECT_API_SSL_CERT_FILE")


def trust_stack_ca(ca_file: str | None, bundle_dir: Path | None = None) -> Path | None:
    """With ``ca_file`` (STACK_CA_FILE), write the public CAs (certifi's, what the clients trust
    by default) and that CA into one bundle and point every client at it; the bundle's path."""
    if not ca_file:
        return None
    import certifi

    try:
        extra = Path(ca_file).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise SystemExit(f"STACK_CA_FILE={ca_file}: cannot be read ({error})") from None
    if "-----BEGIN CERTIFICATE-----" not in extra:
        raise SystemExit(f"STACK_CA_FILE={ca_file}: not a PEM certificate")
    directory = bundle_dir or Path(tempfile.mkdtemp(prefix="stack-ca-"))
    bundle = directory / "ca-bundle.pem"
    bundle.write_text(Path(certifi.where()).read_text().rstrip("\n") + "\n" + extra)
    for name in CA_BUNDLE_SETTINGS:
        os.environ[name] = str(bundle)
    return bundle


def worker_command(
    pool: str,
    limit: int,
    healthcheck: bool,
    queues: str | None = None,
    name: str | None = None,
) -> list[str]:
    """The `prefect worker start` command line: every queue of the pool unless ``queues`` (comma-
    separated) names some."""
    command = ["prefect", "worker", "start", "--pool", pool, "--type", "process"]
    command += ["--limit", str(limit)]
    for queue in (queues or "").split(","):
        if queue.strip():
            command += ["--work-queue", queue.strip()]
    if name:
        # A named worker is one on another host (make worker-env): it joins the stack's pool,
        # which the stack made, and never asks for one (the gateway refuses that).
        command += ["--name", name, "--no-create-pool-if-not-found"]
    return command + (["--with-healthcheck"] if healthcheck else [])


def main(argv: list[str] | None = None) -> int:
    """Replace this process with the worker (so signals reach it directly)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthcheck", action="store_true", help="serve /health (port 8080)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    stack_ca = os.environ.get("STACK_CA_FILE")
    trust_stack_ca(stack_ca)
    machine = this_machine()
    # Replicas of the compose worker run on one machine (WORKER_REPLICAS) and share it.
    workers_here = int(os.environ.get("WORKER_REPLICAS") or 1)
    limit = settings.worker_limit or default_limit(machine, workers_here=workers_here)
    threads = threads_per_run(machine, limit, workers_here)
    # Flow-run processes inherit this: xgboost (OpenMP) then uses `threads` cores per run.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    # Prefect's workers look for new flow runs every 10 s by default; a run then waits 5 s on
    # average before it starts. One query a second per worker is a light load for the server.
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", str(QUERY_SECONDS))
    print(
        f"worker{' ' + settings.worker_name if settings.worker_name else ''}: "
        f"pool {settings.work_pool} "
        f"(queues: {settings.worker_queues or 'all'}), up to {limit} flow runs at once "
        f"({machine.cpus} cores, {machine.memory_bytes / 2**30:.1f} GiB, {workers_here} worker(s) "
        f"on this machine; "
        f"{os.environ['OMP_NUM_THREADS']} thread(s) per run)"
        f"{f'; trusting the CA in {stack_ca} too' if stack_ca else ''}",
        flush=True,
    )
    command = worker_command(
        settings.work_pool, limit, args.healthcheck, settings.worker_queues, settings.worker_name
    )
    os.execvp(command[0], command)
    return 1  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
