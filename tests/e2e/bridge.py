"""The host's address on Docker's default bridge network, found without trusting optional fields.

Engines differ: Debian's 20.10 engine may report the bridge's IPAM config without a ``Gateway``,
and a ``docker0`` made before dockerd started keeps its own address. So ask in three ways, most
authoritative first, and say what each gave when none works:

1. the default route of a throwaway container on the bridge network (exactly the address
   teammates' containers reach the host at);
2. the address of the bridge's own interface on the host (``docker0`` unless the network names
   another);
3. the gateway field of ``docker network inspect bridge``, when the engine fills it in.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
import subprocess
from collections.abc import Callable

SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"


class BridgeAddressNotFound(RuntimeError):
    """No way of finding the host's bridge address worked."""


def default_gateway(route_table: str) -> str | None:
    """The default route's gateway in the text of ``/proc/net/route`` (None when absent)."""
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000" and fields[2] != "00000000":
            return socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
    return None


def docker(*args: str) -> str:
    """Output of a docker CLI command; raises with its error text when it fails."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip() or f"exit code {result.returncode}")
    return result.stdout


def from_container_route(image: str) -> str | None:
    """The gateway a container on the bridge network routes through."""
    table = docker("run", "--rm", "--network", "bridge", image, "cat", "/proc/net/route")
    return default_gateway(table)


def interface_address(name: str) -> str:
    """The IPv4 address of a host network interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("256s", name.encode()[:15])
        return socket.inet_ntoa(fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)[20:24])


def from_bridge_interface() -> str | None:
    """The address of the bridge's interface (its name from the network's options, or docker0)."""
    name = docker(
        "network", "inspect", "bridge", "--format", f'{{{{index .Options "{BRIDGE_NAME_OPTION}"}}}}'
    ).strip()
    return interface_address(name if name and name != "<no value>" else "docker0")


def from_ipam_gateway() -> str | None:
    """The gateway that ``docker network inspect`` reports, when the engine fills it in."""
    out = docker(
        "network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}} {{end}}"
    )
    return next(iter(out.split()), None)


def valid_ipv4(value: str | None) -> str | None:
    """``value`` when it is a usable IPv4 address, else None."""
    try:
        address = ipaddress.IPv4Address((value or "").strip())
    except ipaddress.AddressValueError:
        return None
    return None if address.is_unspecified or address.is_loopback else str(address)


def bridge_address(image: str) -> str:
    """The host's address on the bridge network; ``image`` is any local image with ``cat``."""
    ways: list[tuple[str, Callable[[], str | None]]] = [
        (f"default route inside a container of {image} on the bridge network",
         lambda: from_container_route(image)),
        ("address of the bridge's interface on the host", from_bridge_interface),
        ("IPAM gateway of `docker network inspect bridge`", from_ipam_gateway),
    ]  # fmt: skip
    tried = []
    for description, way in ways:
        try:
            found = way()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            tried.append(f"{description}: {error}")
            continue
        if address := valid_ipv4(found):
            return address
        tried.append(f"{description}: gave {found!r}")
    raise BridgeAddressNotFound(
        "cannot find the host's address on Docker's bridge network; tried:\n  - "
        + "\n  - ".join(tried)
    )
