"""lab.parse on output captured from a real two-host lab (lab tlab, hosts ta and tb, underlay
198.18.9.0/24, Swarm on; fixtures/)."""

from __future__ import annotations

import ipaddress
from pathlib import Path, PurePosixPath

from lab import parse

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_netns_list_names_every_namespace() -> None:
    assert sorted(parse.parse_netns_list(fixture("ip-netns-list.json"))) == [
        "c2c-tlab-ta",
        "c2c-tlab-tb",
    ]


def test_netns_list_is_empty_when_ip_prints_nothing() -> None:
    # `ip -j netns list` prints no JSON at all when there is no namespace.
    assert parse.parse_netns_list("") == []


def test_host_links_show_the_underlay_bridge_and_its_veths() -> None:
    links = parse.parse_links(fixture("ip-link-host.json"))
    assert links["c2ctlab0"].kind == "bridge"
    assert links["c2ctlab0"].up
    for veth in ("c2ctlab-ta", "c2ctlab-tb"):
        assert links[veth].kind == "veth"
        assert links[veth].master == "c2ctlab0"
    assert links["eth0"].master is None
    assert not links["ifb0"].up


def test_links_in_a_host_namespace_hold_its_own_docker0() -> None:
    links = parse.parse_links(fixture("ip-link-netns.json"))
    assert links["eth0"].kind == "veth"
    assert links["docker0"].kind == "bridge"
    assert links["lo"].kind is None
    assert links["lo"].up


def test_ipv4_addresses_keep_the_prefix_and_skip_ipv6() -> None:
    addresses = parse.parse_ipv4_addresses(fixture("ip-addr-netns.json"))
    assert addresses["eth0"] == [ipaddress.IPv4Interface("198.18.9.1/24")]
    assert addresses["lo"] == [ipaddress.IPv4Interface("127.0.0.1/8")]
    assert addresses["veth180bbde"] == []


def test_routes_in_a_host_namespace_have_no_default() -> None:
    routes = parse.parse_routes(fixture("ip-route-netns.json"))
    assert {r.dst for r in routes} == {"172.17.0.0/16", "172.18.0.0/16", "198.18.9.0/24"}
    assert all(r.gateway is None for r in routes)
    assert next(r for r in routes if r.dst == "198.18.9.0/24").dev == "eth0"


def test_routes_parse_a_default_route_with_its_gateway() -> None:
    routes = parse.parse_routes('[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"}]')
    assert routes == [parse.Route(dst="default", dev="eth0", gateway="192.0.2.1")]


def test_swarm_state_of_manager_and_worker() -> None:
    manager = parse.parse_swarm(fixture("swarm-manager.json"))
    worker = parse.parse_swarm(fixture("swarm-worker.json"))
    assert (manager.state, manager.is_manager, manager.nodes) == ("active", True, 2)
    assert manager.node_addr == "198.18.9.1"
    assert (worker.state, worker.is_manager, worker.nodes) == ("active", False, 0)
    assert worker.node_addr == "198.18.9.2"


def test_swarm_state_when_inactive() -> None:
    state = parse.parse_swarm(
        '{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false}'
    )
    assert state.state == "inactive"
    assert not state.is_manager


def test_rules_with_comment_finds_only_that_labs_rules() -> None:
    rules = parse.rules_with_comment(fixture("iptables-filter.txt"), "c2c-lab:tlab")
    assert [r[0] for r in rules] == ["INPUT", "FORWARD", "OUTPUT"]
    assert rules[1] == [
        "FORWARD", "-i", "c2ctlab0", "-o", "c2ctlab0",
        "-m", "comment", "--comment", "c2c-lab:tlab", "-j", "ACCEPT",
    ]  # fmt: skip
    assert parse.rules_with_comment(fixture("iptables-filter.txt"), "c2c-lab:lab") == []


def test_mounts_below_lists_deepest_first_and_only_below_the_roots() -> None:
    roots = [PurePosixPath("/run/c2c-lab/tlab/ta"), PurePosixPath("/var/lib/c2c-lab/tlab/ta")]
    mounts = parse.mounts_below(fixture("mountinfo.txt"), roots)
    assert mounts == [
        "/run/c2c-lab/tlab/ta/exec/netns/1-2ije7rauzi",
        "/run/c2c-lab/tlab/ta/exec/netns/ingress_sbox",
        "/var/lib/c2c-lab/tlab/ta",
    ]


def test_mounts_below_unescapes_spaces() -> None:
    line = r"60 27 0:4 / /run/c2c-lab/x/a\040b rw - tmpfs tmpfs rw"
    assert parse.mounts_below(line, [PurePosixPath("/run/c2c-lab/x")]) == ["/run/c2c-lab/x/a b"]


def test_cgroup_membership_over_v1_hierarchies() -> None:
    text = "9:name=systemd:/c2c-lab-tlab-ta/110ea21f\n8:pids:/c2c-lab-tlab-ta/110ea21f\n0::/\n"
    paths = parse.cgroup_paths(text)
    assert parse.in_cgroup(paths, "/c2c-lab-tlab-ta")
    # A name that merely starts the same is another engine's cgroup.
    assert not parse.in_cgroup(paths, "/c2c-lab-tlab-t")
    assert not parse.in_cgroup(parse.cgroup_paths("0::/\n"), "/c2c-lab-tlab-ta")


def test_pidfile_and_process_state() -> None:
    assert parse.parse_pidfile("29454\n") == 29454
    assert parse.parse_pidfile("") is None
    assert parse.parse_pidfile("0") is None
    assert parse.proc_state("42 (docker proxy) (x) Z 1 42") == "Z"
    assert parse.proc_state("7 (dockerd) S 1 7") == "S"
