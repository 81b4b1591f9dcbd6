"""lab.naming: every name fits Linux's limits, and names map back to their host."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from lab.naming import (
    AddressPlan,
    LabError,
    LabNames,
    check_lab_name,
    is_removable_dir,
    parse_host_list,
)

IFNAMSIZ = 15


def test_default_lab_names() -> None:
    names = LabNames("lab")
    assert names.bridge == "c2clab0"
    assert names.netns("a") == "c2c-lab-a"
    assert names.veth("a") == "c2clab-a"
    assert names.data_root("a") == Path("/var/lib/c2c-lab/lab/a")
    assert names.docker_host("a") == "unix:///run/c2c-lab/lab/a/docker.sock"
    assert names.pidfile("a") == Path("/run/c2c-lab/lab/a/dockerd.pid")
    assert names.exec_root("a").is_relative_to(Path("/run/c2c-lab/lab/a"))
    assert names.rule_comment == "c2c-lab:lab"


def test_longest_names_fit_interface_names() -> None:
    names = LabNames("abcdef")
    assert len(names.bridge) <= IFNAMSIZ
    assert len(names.veth("vwxyz")) == IFNAMSIZ


@pytest.mark.parametrize("bad", ["", "Lab", "1ab", "abcdefg", "a-b", "a_b"])
def test_bad_lab_names_are_refused(bad: str) -> None:
    with pytest.raises(LabError, match="lab name"):
        check_lab_name(bad)


@pytest.mark.parametrize("bad", ["a,abcdef", "a,A", ",,", "a,a", "a, b-c"])
def test_bad_host_lists_are_refused(bad: str) -> None:
    with pytest.raises(LabError):
        parse_host_list(bad)


def test_host_list_keeps_order() -> None:
    assert parse_host_list(" b, a ") == ("b", "a")


def test_names_map_back_to_their_host_and_no_other_labs() -> None:
    lab, lab0 = LabNames("lab"), LabNames("lab0")
    assert lab.host_of_netns("c2c-lab-a") == "a"
    assert lab.host_of_netns("c2c-lab0-a") is None  # lab "lab0"'s
    assert lab0.host_of_netns("c2c-lab0-a") == "a"
    assert lab.host_of_veth("c2clab-b") == "b"
    assert lab.host_of_veth("c2clab0") is None  # the bridge
    assert lab.host_of_veth("c2clab0-a") is None
    assert lab.host_of_netns("c2c-lab-a-b") is None


def test_address_plan_is_by_order_with_the_bridge_last() -> None:
    plan = AddressPlan(ipaddress.IPv4Network("198.18.0.0/24"))
    assert plan.gateway == ipaddress.IPv4Interface("198.18.0.254/24")
    assert plan.hosts(["a", "b"]) == {
        "a": ipaddress.IPv4Interface("198.18.0.1/24"),
        "b": ipaddress.IPv4Interface("198.18.0.2/24"),
    }
    assert plan.host(252) == ipaddress.IPv4Interface("198.18.0.253/24")
    with pytest.raises(LabError, match="room for 253"):
        plan.host(253)


@pytest.mark.parametrize("network", ["10.0.0.0/24", "198.20.0.0/24", "198.18.0.0/30"])
def test_underlay_must_be_in_the_benchmark_block_and_big_enough(network: str) -> None:
    with pytest.raises(LabError):
        AddressPlan(ipaddress.IPv4Network(network))


def test_only_lab_directories_are_removable() -> None:
    assert is_removable_dir(Path("/var/lib/c2c-lab/lab/a"))
    assert is_removable_dir(Path("/run/c2c-lab/lab"))
    assert not is_removable_dir(Path("/var/lib/c2c-lab"))
    assert not is_removable_dir(Path("/var/lib/c2c-lab/../docker"))
    assert not is_removable_dir(Path("/var/lib/docker"))
