"""A second machine for the end-to-end tests, on this one: a Linux network namespace with its
own address on a veth pair, reaching nothing but the stack's TLS front door (Caddy, from
Debian's package, with its own local certificate authority) on the host's end of the pair.

What runs inside sees what a worker on another host sees: a name (``stack.internal``) resolving
to the host's address, certificates signed by a CA it was given, https URLs, its own client
address, and a link the test can cut and restore.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.paths import REPO_ROOT

TLS_NAME = "stack.internal"
CADDYFILE = REPO_ROOT / "infra/tls/Caddyfile"
# A /30 per namespace, from a block no Docker network or default route of ours uses.
SUBNETS = ipaddress.ip_network("10.231.0.0/16").subnets(new_prefix=30)


def ip(*args: str) -> None:
    """One `ip` command; fail showing its error."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr.strip()}"


def taken_networks() -> list[ipaddress.IPv4Network]:
    """The networks of every IPv4 address of the host."""
    listing = subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True
    ).stdout.split()
    return [
        ipaddress.ip_interface(listing[i + 1]).network
        for i, word in enumerate(listing[:-1])
        if word == "inet"
    ]


@dataclass
class SecondHost:
    """A network namespace joined to the host by one veth pair."""

    namespace: str
    host_link: str
    host_address: str
    own_address: str

    def command(self, *args: str) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def cut(self) -> None:
        """The link goes down: nothing passes either way."""
        ip("link", "set", self.host_link, "down")

    def restore(self) -> None:
        """The link comes back."""
        ip("link", "set", self.host_link, "up")


@contextmanager
def second_host() -> Iterator[SecondHost]:
    """A namespace whose only neighbour is the host's end of its veth pair; its /etc/hosts names
    the host ``stack.internal``. Removed at the end."""
    taken = taken_networks()
    subnet = next(s for s in SUBNETS if not any(s.overlaps(n) for n in taken))
    host_address, own_address = (str(a) for a in list(subnet.hosts())[:2])
    tag = secrets.token_hex(3)
    namespace, host_link, own_link = f"host2-{tag}", f"h2h{tag}", f"h2w{tag}"
    hosts = Path("/etc/netns") / namespace / "hosts"
    ip("netns", "add", namespace)
    try:
        ip("link", "add", host_link, "type", "veth", "peer", "name", own_link)
        ip("link", "set", own_link, "netns", namespace)
        ip("addr", "add", f"{host_address}/30", "dev", host_link)
        ip("link", "set", host_link, "up")
        inside = ["netns", "exec", namespace, "ip"]
        ip(*inside, "addr", "add", f"{own_address}/30", "dev", own_link)
        ip(*inside, "link", "set", own_link, "up")
        ip(*inside, "link", "set", "lo", "up")
        # `ip netns exec` binds /etc/netns/<name>/hosts over /etc/hosts inside.
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(f"127.0.0.1 localhost\n{host_address} {TLS_NAME}\n")
        yield SecondHost(namespace, host_link, host_address, own_address)
    finally:
        # Whatever still runs inside (a flow run its worker left behind) ends with the host.
        pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
        for pid in pids.stdout.split():
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "link", "del", host_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        shutil.rmtree(hosts.parent, ignore_errors=True)


@dataclass
class FrontDoor:
    """Caddy running infra/tls/Caddyfile, and the root certificate of its local CA."""

    process: subprocess.Popen
    root_certificate: Path
    log: Path


@contextmanager
def tls_front_door(
    host: SecondHost, upstream: str, ports: dict[str, str], workdir: Path
) -> Iterator[FrontDoor]:
    """Caddy with the project's Caddyfile as a team runs it (`STACK_HOST=... caddy run`), on
    the host's end of the pair only, its certificates from its own local CA (a LAN has no
    public name): the global options a private network needs, then the Caddyfile itself."""
    caddy = shutil.which("caddy")
    assert caddy, "install Debian's caddy package (.ci/run does)"
    storage = workdir / "caddy"
    config = workdir / "Caddyfile"
    config.write_text(
        "{\n"
        "\tadmin off\n"
        "\tlocal_certs\n"
        "\tskip_install_trust\n"
        "\tauto_https disable_redirects\n"
        f"\tstorage file_system {storage}\n"
        f"\tdefault_bind {host.host_address}\n"
        "}\n"
        f"import {CADDYFILE}\n"
    )
    log = workdir / "caddy.log"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(workdir),
        "STACK_HOST": TLS_NAME,
        "BIND_ADDRESS": upstream,
        **ports,
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    root = storage / "pki/authorities/local/root.crt"
    try:
        deadline = time.monotonic() + 60
        while not root.exists():
            assert process.poll() is None, f"caddy stopped:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"caddy made no CA:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield FrontDoor(process, root, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
