"""Finding the host's bridge address: route parsing, and a clear error when every way fails."""

from __future__ import annotations

import pytest

from tests.e2e import bridge

# /proc/net/route of a container on the default bridge network (172.17.0.1 is 010011AC).
ROUTES = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
)


def test_default_gateway_is_read_from_the_route_table():
    assert bridge.default_gateway(ROUTES) == "172.17.0.1"


def test_a_table_without_a_default_route_gives_none():
    header, _, local = ROUTES.splitlines()
    assert bridge.default_gateway(f"{header}\n{local}\n") is None


@pytest.mark.parametrize("value", ["", None, "0.0.0.0", "127.0.0.1", "<no value>", "172.17.0"])
def test_unusable_addresses_are_rejected(value):
    assert bridge.valid_ipv4(value) is None


def test_later_ways_are_tried_when_earlier_ones_give_nothing(monkeypatch):
    monkeypatch.setattr(bridge, "from_container_route", lambda image: None)
    monkeypatch.setattr(bridge, "from_bridge_interface", lambda: "172.18.0.1")
    assert bridge.bridge_address("any-image") == "172.18.0.1"


def test_every_way_failing_names_each_and_what_it_gave(monkeypatch):
    def no_engine(*args):
        raise RuntimeError("Cannot connect to the Docker daemon")

    monkeypatch.setattr(bridge, "from_container_route", lambda image: None)
    monkeypatch.setattr(bridge, "from_bridge_interface", lambda: no_engine())
    monkeypatch.setattr(bridge, "from_ipam_gateway", lambda: "")
    with pytest.raises(bridge.BridgeAddressNotFound) as caught:
        bridge.bridge_address("img:1")
    message = str(caught.value)
    assert "inside a container of img:1" in message and "gave None" in message
    assert "bridge's interface" in message and "Cannot connect to the Docker daemon" in message
    assert "IPAM gateway" in message and "gave ''" in message
