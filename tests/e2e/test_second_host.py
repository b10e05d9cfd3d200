"""A worker on a second machine, through the TLS front door, as docs/scaling.md's "Workers on
other hosts" and infra/tls/Caddyfile set it up: a network namespace of its own (tests/e2e/
second_host.py) that reaches the stack only through Caddy, with the https URLs `make worker-env
HOST=https://...` writes and the CA it was handed. It trains to a registered version; the gateway's
audit log sees the worker's own address (Caddy's X-Forwarded-For, believed from Caddy alone);
cutting the link leaves its running flow Crashed within the documented bound; and with the link
back, the worker is online again and takes the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from flows.resources.registry import runs_of_flow_run
from infra import make_env
from infra.make_env import read_env
from tests.e2e.compose import (
    Stack,
    flow_run_state,
    start_deployment,
    wait_until_final,
    write_env_file,
)
from tests.e2e.second_host import TLS_NAME, SecondHost, second_host, tls_front_door
from tests.e2e.test_faults import SLOW_PARAMS  # still fitting when the link goes down
from tests.e2e.test_scale import online_workers
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.e2e

NAME = "second-host-e2e"
# docs/operations.md: heartbeats every 30 s, Crashed after 90 s of silence; the automation
# evaluates within seconds. Twice that, so a slow machine does not fail a correct stack.
CRASHED_BOUND_S = 2 * (30 + 90)
# Where the image keeps the project, and so where deployed flow runs start.
APP_DIR = Path("/app")


def published(url: str) -> tuple[str, str]:
    """(address, port) of one of the stack's published URLs."""
    parts = urlsplit(url)
    return str(parts.hostname), str(parts.port)


def audit(stack: Stack, username: str, limit: int = 200) -> list[dict[str, Any]]:
    """The gateway's audit entries of ``username``, newest first (asked as the admin)."""
    gateway = stack.prefect_api_url.removesuffix("/api")
    answer = requests.get(
        f"{gateway}/gateway/audit", params={"username": username, "limit": str(limit)},
        auth=stack.prefect_auth, timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()
    return entries


def set_trusted_proxy(stack: Stack, addresses: str) -> None:
    """TRUSTED_PROXY_ADDRESSES in the stack's settings, and the gateway restarted with it."""
    settings = make_env.render(stack.env_file.read_text(), {"TRUSTED_PROXY_ADDRESSES": addresses})
    write_env_file(stack.env_file, settings)
    stack.compose("up", "--detach", "--wait", "--no-deps", "prefect-gateway")


def in_namespace_python(host: SecondHost, code: str, env: dict[str, str]) -> str:
    """Run Python code inside the second host, with the project's interpreter; its output."""
    result = subprocess.run(
        host.command(str(REPO_ROOT / ".venv/bin/python"), "-c", code),
        env=env | {"REQUESTS_CA_BUNDLE": env["STACK_CA_FILE"]}, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def worker_environment(settings_file: Path, ca: Path, home: Path) -> dict[str, str]:
    """What infra/worker/compose.yml gives the worker container, for a process on the second
    host (a container would live in Docker's network, not the namespace): the settings file,
    the CA it trusts (STACK_CA_FILE: Caddy's local CA), its checkout as APP_DIR."""
    given = read_env(settings_file)
    return {
        **given,
        "PATH": f"{REPO_ROOT / '.venv/bin'}{os.pathsep}/usr/bin:/bin",
        "HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "APP_DIR": str(REPO_ROOT),
        "MLFLOW_UI_URL": given["MLFLOW_TRACKING_URI"],
        "WORKER_QUEUES": given.get("WORKER_QUEUES") or "default",
        # Two: the run cut short may still hold a slot when the link is back.
        "WORKER_LIMIT": "2",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
        # Caddy's local CA, as docs/scaling.md says to hand it over: the launcher makes every
        # client of the worker and its flow runs trust it.
        "STACK_CA_FILE": str(ca),
    }


class Restarting:
    """A command kept running as Docker's `restart: unless-stopped` keeps `make worker`'s
    container: started again a moment after it exits (Prefect's worker exits after a minute of
    failed calls), until ``stop``; its output appended to ``log``."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.command, self.env, self.log = command, env, log
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.keep_running, daemon=True)
        self.thread.start()

    def keep_running(self) -> None:
        """Start the command, wait for it, start it again, until stopped."""
        while not self.stopping.is_set():
            with self.log.open("a") as out:
                self.process = subprocess.Popen(
                    self.command, env=self.env, cwd=REPO_ROOT, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
                self.starts += 1
                self.process.wait()
            self.stopping.wait(2)

    def stop(self) -> None:
        """Stop restarting, and end the running command and what it started."""
        self.stopping.set()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        self.thread.join(timeout=60)


def worker_checkout() -> None:
    """The checkout at the path the stack's deployments start flow runs in (prefect.yaml's pull
    step, resolved when `make deploy` ran in the image: /app), as `make worker`'s image has it:
    a link to this checkout for the test's length (the namespace shares the host's files)."""
    assert not APP_DIR.exists() or APP_DIR.resolve() == REPO_ROOT, f"{APP_DIR} is taken here"
    if not APP_DIR.exists():
        APP_DIR.symlink_to(REPO_ROOT)


@pytest.fixture
def host2(stack: Stack, tmp_path: Path) -> Iterator[tuple[SecondHost, Any]]:
    """The second host and the TLS front door in front of the shared stack."""
    upstream, _ = published(stack.mlflow_url)
    ports = {
        "MLFLOW_PORT": published(stack.mlflow_url)[1],
        "PREFECT_PORT": published(stack.prefect_api_url)[1],
        "DATA_PROXY_PORT": published(stack.data_proxy_url)[1],
        "SERVING_PORT": published(stack.serving_url)[1],
    }
    with second_host() as host, tls_front_door(host, upstream, ports, tmp_path) as door:
        yield host, door


def test_a_worker_on_a_second_host_works_through_tls_and_survives_a_cut_link(
    stack, prefect, trained, admin, host2, tmp_path
):
    host, door = host2
    upstream, _ = published(stack.prefect_api_url)
    env = stack.env()
    pool = env["WORK_POOL"]
    settings_file = tmp_path / f"worker-{NAME}.env"
    stack.make("worker-env", f"NAME={NAME}", f"HOST=https://{TLS_NAME}",
               f"WORKER_ENV={settings_file}")  # fmt: skip
    given = read_env(settings_file)
    assert given["PREFECT_API_URL"] == f"https://{TLS_NAME}:4443/api"
    assert given["MLFLOW_TRACKING_URI"] == f"https://{TLS_NAME}"
    assert given["DATA_PROXY_URL"] == f"https://{TLS_NAME}:5443"
    worker_env = worker_environment(settings_file, door.root_certificate, tmp_path)

    # From the second host, the stack's own published ports are out of reach; the front door
    # is the way in.
    probe = (
        "import socket, sys\n"
        "for target in sys.argv[1:]:\n"
        "    address, port = target.rsplit(':', 1)\n"
        "    try: socket.create_connection((address, int(port)), 3).close(); print('open')\n"
        "    except OSError: print('closed')\n"
    )
    targets = [f"{upstream}:{published(stack.prefect_api_url)[1]}",
               f"{upstream}:{published(stack.mlflow_url)[1]}",
               f"{host.host_address}:4443", f"{host.host_address}:443"]  # fmt: skip
    reach = subprocess.run(
        host.command(str(REPO_ROOT / ".venv/bin/python"), "-c", probe, *targets),
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert reach == ["closed", "closed", "open", "open"], (targets, reach)

    # The gateway learns Caddy's address (what it sees of a request made through Caddy), and
    # believes X-Forwarded-For from there alone: the address of a worker is its own.
    # (A write a worker may not make: refused, and so in the audit log, with its client.)
    whoami = (
        "import os, requests\n"
        "import uuid\n"
        "url = os.environ['PREFECT_API_URL'] + '/flow_runs/' + str(uuid.UUID(int=0))\n"
        "user, password = os.environ['PREFECT_API_AUTH_STRING'].split(':', 1)\n"
        "answer = requests.delete(url, auth=(user, password),\n"
        "                         headers={'X-Forwarded-For': '203.0.113.9'}, timeout=30)\n"
        "print(answer.status_code)\n"
    )
    assert in_namespace_python(host, whoami, worker_env).split() == ["403"]
    proxy_address = audit(stack, NAME, 1)[0]["client"]
    assert proxy_address not in (host.own_address, "203.0.113.9"), proxy_address
    set_trusted_proxy(stack, proxy_address)
    deployed = stack.exec_python("worker", "import os; print(os.environ['APP_DIR'])").split()
    assert Path(deployed[-1]) == APP_DIR, deployed
    stack.compose("stop", "worker")  # runs can only land on the second host
    worker: Restarting | None = None
    log = tmp_path / "worker.log"
    try:
        assert in_namespace_python(host, whoami, worker_env).split() == ["403"]
        clients = {entry["client"] for entry in audit(stack, NAME, 1)}
        assert clients == {host.own_address}, clients  # not the spoofed one, not Caddy's

        worker_checkout()
        worker = Restarting(
            host.command(str(REPO_ROOT / ".venv/bin/python"), "-m", "infra.prefect.worker"),
            worker_env, log,
        )  # fmt: skip
        wait_online(pool, log)

        versions_before = {v.version for v in admin.search_model_versions("")}
        trained_there = start_deployment(
            "train/train", color="green", train_month="2021-01", val_month="2021-02"
        )
        state = wait_until_final(trained_there, timeout_s=600)
        assert state.name == "Completed", log.read_text()[-3000:]
        new = [v for v in admin.search_model_versions("") if v.version not in versions_before]
        assert len(new) == 1, new
        params = admin.get_run(new[0].run_id).data.params
        assert params["train_uri"].startswith(f"https://{TLS_NAME}:5443"), params["train_uri"]
        entries = audit(stack, NAME, 10_000)[:-1]  # all but the one made before the trust
        assert len(entries) > 10 and {e["client"] for e in entries} == {host.own_address}

        # The link drops while a run is fitting: Prefect marks it Crashed within the bound.
        cut_short = start_deployment(
            "train/train", color="green", train_month="2021-01", val_month="2021-02",
            params=SLOW_PARAMS,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while not runs_of_flow_run(admin, str(cut_short)):  # fitting has begun
            assert not flow_run_state(cut_short).is_final(), flow_run_state(cut_short)
            assert time.monotonic() < deadline, "the slow run never started on the second host"
            time.sleep(1)
        host.cut()
        cut_at = time.monotonic()
        state = wait_until_final(cut_short, timeout_s=CRASHED_BOUND_S + 60)
        crashed_after = time.monotonic() - cut_at
        assert state.name == "Crashed", (state.name, state.message)
        assert crashed_after < CRASHED_BOUND_S, crashed_after

        # The link is back: the worker is online again and takes the next run.
        host.restore()
        restored_at = time.monotonic()
        wait_online(pool, log)
        online_after = time.monotonic() - restored_at
        again = start_deployment(
            "train/train", color="green", train_month="2021-01", val_month="2021-02"
        )
        print(
            f"\nsecond host: link cut -> Crashed after {crashed_after:.0f} s; link back -> "
            f"online after {online_after:.0f} s (the worker started {worker.starts} times)"
        )
        assert wait_until_final(again, timeout_s=600).name == "Completed", log.read_text()[-3000:]
    finally:
        host.restore()
        if worker is not None:
            worker.stop()
        if APP_DIR.is_symlink():
            APP_DIR.unlink()
        set_trusted_proxy(stack, "")
        stack.make("up")  # the stack's own worker back
        stack.make("user-delete", f"NAME={NAME}", check=False)


def wait_online(pool: str, log: Path) -> None:
    """Until Prefect sees the second host's worker ONLINE."""
    deadline = time.monotonic() + 180
    while NAME not in online_workers(pool):
        assert time.monotonic() < deadline, f"{NAME} never came online:\n{log.read_text()[-3000:]}"
        time.sleep(2)
