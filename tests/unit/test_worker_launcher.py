"""The worker launcher: its concurrency limit (from cores and memory unless WORKER_LIMIT says), and
the TLS proxy's own CA (STACK_CA_FILE) trusted by every client."""

from __future__ import annotations

import os
from pathlib import Path

import certifi
import pytest

from infra.prefect import worker

GIB = 1 << 30


def test_one_run_per_core_when_memory_allows():
    assert worker.default_limit(worker.Machine(cpus=2, memory_bytes=24 * GIB)) == 2
    assert worker.default_limit(worker.Machine(cpus=16, memory_bytes=64 * GIB)) == 16


def test_memory_caps_the_limit_but_never_below_one():
    assert worker.default_limit(worker.Machine(cpus=8, memory_bytes=3 * GIB)) == 3
    assert worker.default_limit(worker.Machine(cpus=4, memory_bytes=GIB // 2)) == 1


def test_cgroup_cpu_quota_is_read_in_whole_cores():
    assert worker.cgroup_cpus("max 100000\n") is None
    assert worker.cgroup_cpus("200000 100000\n") == 2
    assert worker.cgroup_cpus("50000 100000") == 1  # half a core still runs one flow


def test_this_machine_is_read():
    machine = worker.this_machine()
    assert machine.cpus >= 1 and machine.memory_bytes > GIB


def test_worker_command_carries_pool_and_limit():
    command = worker.worker_command("taxi-pool", 3, healthcheck=True)
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] == "taxi-pool"
    assert command[command.index("--limit") + 1] == "3"
    assert "--with-healthcheck" in command
    assert "--work-queue" not in command  # every queue of the pool


def test_an_outside_worker_serves_only_the_queues_it_is_given():
    command = worker.worker_command("taxi-pool", 1, False, queues="default, extra", name="w-2")
    queues = [command[i + 1] for i, arg in enumerate(command) if arg == "--work-queue"]
    assert queues == ["default", "extra"]
    assert command[command.index("--name") + 1] == "w-2"
    assert "--no-create-pool-if-not-found" in command  # the gateway refuses a worker's pool


def test_replicas_on_one_machine_share_its_cores_and_threads():
    two_cores = worker.Machine(cpus=2, memory_bytes=24 * GIB)
    assert worker.default_limit(two_cores, workers_here=3) == 1
    assert worker.threads_per_run(two_cores, limit=1, workers_here=3) == 1
    eight = worker.Machine(cpus=8, memory_bytes=64 * GIB)
    assert worker.default_limit(eight, workers_here=2) == 4
    assert worker.threads_per_run(eight, limit=4, workers_here=2) == 1
    assert worker.threads_per_run(eight, limit=1) == 8


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def keep_environment(monkeypatch) -> None:
    """The CA settings restored after the test (trust_stack_ca writes os.environ itself)."""
    for name in worker.CA_BUNDLE_SETTINGS:
        monkeypatch.setenv(name, "before")


def test_a_stack_ca_is_trusted_besides_the_public_ones_by_every_client(tmp_path, monkeypatch):
    keep_environment(monkeypatch)
    ca = tmp_path / "root.crt"
    ca.write_text(PEM)
    bundle = worker.trust_stack_ca(str(ca), tmp_path)
    assert bundle is not None
    text = bundle.read_text()
    assert text.startswith(Path(certifi.where()).read_text().rstrip("\n")) and text.endswith(PEM)
    assert {name: os.environ[name] for name in worker.CA_BUNDLE_SETTINGS} == {
        name: str(bundle) for name in worker.CA_BUNDLE_SETTINGS
    }


def test_no_stack_ca_changes_nothing_and_a_wrong_one_stops_with_its_name(tmp_path, monkeypatch):
    keep_environment(monkeypatch)
    assert worker.trust_stack_ca("") is None and worker.trust_stack_ca(None) is None
    assert {os.environ[name] for name in worker.CA_BUNDLE_SETTINGS} == {"before"}
    key = tmp_path / "root.key"
    key.write_text("-----BEGIN EC PRIVATE KEY-----\n")
    with pytest.raises(SystemExit, match=f"STACK_CA_FILE={key}: not a PEM certificate"):
        worker.trust_stack_ca(str(key), tmp_path)
    with pytest.raises(SystemExit, match="cannot be read"):
        worker.trust_stack_ca(str(tmp_path / "missing.crt"), tmp_path)
