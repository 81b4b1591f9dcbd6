"""The trace of a stack across two hosts, on runs recorded against real two-host labs (Debian's
Docker 20.10 and the current engine): the parsers on each command's real output, the reasoning,
and whole traces replayed through the command line, including what it reports when a part is
missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from packet_trace import analyze, cli, diagram
from packet_trace.model import NatRule, OverlayEndpoint, OverlayHostView, TraceHost
from packet_trace.multihost import COUNT_COMMENT
from packet_trace.parse import (
    ParseError,
    parse_bridge_fdb,
    parse_container_inspect,
    parse_ip_neigh,
    parse_iptables_save,
    parse_netns_links,
    parse_network_address,
    parse_overlay_inspect,
    parse_route_get,
)
from packet_trace.sources import CommandResult, HostSources
from packet_trace.stackfile import StackFileError, parse_stack_file, read_stack_file
from tests.unit.trace.multihost_fixtures import CURRENT, DEB, Replay, _Calls

# What each recording's lab had: host a's and b's underlay addresses, and the overlay's id.
LABS = {
    DEB: ("198.18.10.1", "198.18.10.2", "tz5yy0f9ybmmomv09dfzxpka1"),
    CURRENT: ("198.18.11.1", "198.18.11.2", "mg1z136g7hxe2omu5hbzwk03n"),
}
ENGINES = pytest.mark.parametrize("scenario", [DEB, CURRENT])
REPO_ROOT = Path(__file__).resolve().parents[3]


def _overlay_netns(calls: _Calls, host: str) -> str:
    return next(
        str(c["args"][0]) for c in calls.calls if c["host"] == host and c["method"] == "in_netns"
    )


def _docker(calls: _Calls, host: str, method: str, arg: str) -> Any:
    (answer, *_) = calls.answers(host, method, [arg])
    return answer


# -- one parser per command, on the recorded output -------------------------------------------


@ENGINES
def test_overlay_namespace_links(scenario: str) -> None:
    calls = _Calls(scenario)
    for host in ("a", "b"):
        links = parse_netns_links(calls.stdout(host, ["ip", "-j", "-d", "-s", "addr", "show"]))
        by_name = {link.name: link for link in links}
        vxlan, br0 = by_name["vxlan0"], by_name["br0"]
        assert (vxlan.kind, vxlan.vni, vxlan.dstport, vxlan.mtu) == ("vxlan", 4097, 4789, 1450)
        assert vxlan.master == "br0"
        assert (br0.kind, br0.ipv4, br0.mtu) == ("bridge", ("172.13.0.1/16",), 1450)
        assert by_name["lo"].kind is None
        # One veth per container of this host on the overlay, plus the load balancer's.
        assert {link.kind for link in links if link.master == "br0"} == {"vxlan", "veth"}
        assert vxlan.tx_packets is not None
        assert vxlan.rx_packets is not None


@ENGINES
def test_vxlan_forwarding_entries_name_the_other_host(scenario: str) -> None:
    calls = _Calls(scenario)
    a, b, _ = LABS[scenario]
    internal = parse_container_inspect(_docker(calls, "b", "containers", "multihost")[0])
    internal_mac = next(iter(internal.networks.values()))[1]
    fdb = parse_bridge_fdb(calls.stdout("a", ["bridge", "-j", "fdb", "show", "dev", "vxlan0"]))
    assert {e.dst for e in fdb if e.mac == internal_mac and e.dst} == {b}
    # The bridge's entries (learned ones and the vxlan device's own MAC) name no remote VTEP.
    assert all(e.dst is None for e in fdb if e.master == "br0")
    assert all(e.master is None for e in fdb if e.dst)
    back = parse_bridge_fdb(calls.stdout("b", ["bridge", "-j", "fdb", "show", "dev", "vxlan0"]))
    assert {e.dst for e in back if e.dst} == {a}


@ENGINES
def test_vxlan_neighbours_map_overlay_ips_to_macs(scenario: str) -> None:
    neighbours = parse_ip_neigh(
        _Calls(scenario).stdout("a", ["ip", "-j", "neigh", "show", "dev", "vxlan0"])
    )
    by_ip = {n.ip: n for n in neighbours}
    assert by_ip["172.13.0.2"].state == "PERMANENT"
    assert by_ip["172.13.0.2"].mac.count(":") == 5


@ENGINES
def test_route_get_names_the_underlay_device(scenario: str) -> None:
    _, b, _ = LABS[scenario]
    text = _Calls(scenario).stdout("a", ["ip", "-j", "route", "get", b], method="command")
    assert parse_route_get(text) == "eth0"
    assert parse_route_get("[]") is None
    with pytest.raises(ParseError):
        parse_route_get("RTNETLINK answers: Network is unreachable")


@ENGINES
def test_overlay_inspect_and_the_gwbridge_address(scenario: str) -> None:
    calls = _Calls(scenario)
    _, _, network_id = LABS[scenario]
    overlay = parse_overlay_inspect(_docker(calls, "a", "networks", "multihost")[0])
    assert (overlay.network_name, overlay.network_id, overlay.driver) == (
        "c2c-multihost-net",
        network_id,
        "overlay",
    )
    assert (overlay.subnet, overlay.gateway, overlay.ip_range) == (
        "172.13.0.0/16",
        "172.13.0.1",
        "172.13.128.0/17",
    )
    external = parse_container_inspect(_docker(calls, "a", "containers", "multihost")[0])
    assert external.sandbox_key.startswith("/run/c2c-lab/")
    gwbridge = _docker(calls, "a", "network", "docker_gwbridge")
    assert parse_network_address(gwbridge, external.id) == "172.18.0.3"
    assert parse_network_address(gwbridge, "no-such-container") is None


@ENGINES
def test_counting_rules_in_the_filter_table(scenario: str) -> None:
    dumps = _Calls(scenario).answers("a", "command", [["iptables-save", "-t", "filter", "-c"]])
    before, after = (parse_iptables_save(d.stdout, "filter") for d in dumps)
    counted_before = analyze.counted_packets(before, COUNT_COMMENT)
    counted_after = analyze.counted_packets(after, COUNT_COMMENT)
    assert set(counted_before) == set(counted_after) == {"INPUT", "OUTPUT"}
    assert all(counted_after[c] > counted_before[c] for c in counted_after)


def test_stack_file_gives_the_hosts_through_infras_parser() -> None:
    hosts = read_stack_file(REPO_ROOT / "Pulumi.multihost.yaml")
    assert hosts is not None
    assert (hosts.internal_host, hosts.external_host) == ("b", "a")
    assert {n: (h.url, h.address) for n, h in hosts.hosts.items()} == {
        "a": ("unix:///run/c2c-lab/lab/a/docker.sock", "198.18.0.1"),
        "b": ("unix:///run/c2c-lab/lab/b/docker.sock", "198.18.0.2"),
    }
    # A single-host stack file, or none at all: the engine DOCKER_HOST names.
    assert read_stack_file(REPO_ROOT / "Pulumi.dev.yaml") is None
    assert read_stack_file(REPO_ROOT / "Pulumi.nosuch.yaml") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("config:\n  c2c:hosts: {a: 'unix:///x.sock'}\n", "give the host's address"),
        (
            "config:\n  c2c:hosts: {a: 'tcp://h:2376'}\n  c2c:internalHost: a\n",
            "c2c:externalHost is None",
        ),
        ("config: [\n", "is not YAML"),
    ],
)
def test_a_bad_stack_file_is_an_error(text: str, message: str) -> None:
    with pytest.raises(StackFileError, match=message):
        parse_stack_file(text, "Pulumi.x.yaml")


# -- the reasoning ------------------------------------------------------------------------------


def test_the_overlay_namespace_is_found_by_network_id() -> None:
    names = ["1-ns82cyktwn", "1-tz5yy0f9yb", "8a234e48c41f", "ingress_sbox", "lb_tz5yy0f9y"]
    assert analyze.overlay_netns(names, "tz5yy0f9ybmmomv09dfzxpka1") == "1-tz5yy0f9yb"
    # A network created again keeps its namespace name's shape with a later epoch.
    assert analyze.overlay_netns(["2-tz5yy0f9yb"], "tz5yy0f9ybmmomv09dfzxpka1") == "2-tz5yy0f9yb"
    assert analyze.overlay_netns(["lb_tz5yy0f9y"], "tz5yy0f9ybmmomv09dfzxpka1") is None


def _rule(chain: str, target: str, **kwargs: Any) -> NatRule:
    return NatRule(chain, f"-A {chain}", 0, 0, "iptables", target, **kwargs)


def test_a_packet_from_outside_takes_the_dnat_rule_through_prerouting() -> None:
    jump = _rule("PREROUTING", "DOCKER", dst_type_local=True)
    dnat = _rule(
        "DOCKER", "DNAT", in_interface="!docker_gwbridge", dport=8090, to_destination="x:1"
    )
    assert analyze.traverses_dnat_from_outside([jump, dnat], dnat, "198.18.0.1", "eth0")
    # From the gwbridge itself the rule does not apply (that is its RETURN's job).
    assert not analyze.traverses_dnat_from_outside(
        [jump, dnat], dnat, "198.18.0.1", "docker_gwbridge"
    )
    # Without the PREROUTING jump, nothing from outside reaches DOCKER.
    assert not analyze.traverses_dnat_from_outside([dnat], dnat, "198.18.0.1", "eth0")
    assert analyze.interface_admits("veth+", "veth12")
    assert not analyze.interface_admits("!veth+", "veth12")


def test_forwarding_follows_neighbour_then_fdb_to_a_host() -> None:
    view = OverlayHostView(
        host="a",
        neighbours=parse_ip_neigh('[{"dst":"172.13.0.2","lladdr":"0a:58:ac:0d:00:02"}]'),
        fdb=parse_bridge_fdb(
            '[{"mac":"0a:58:ac:0d:00:02","dst":"198.18.0.2","state":"permanent"},'
            '{"mac":"5a:29:3a:d3:ad:17","state":"permanent"}]'
        ),
    )
    to = OverlayEndpoint("c2c-x-internal", "internal", "b", "172.13.0.2", "0a:58:ac:0d:00:02")
    hosts = [TraceHost("a", "198.18.0.1", "unix:///a"), TraceHost("b", "198.18.0.2", "unix:///b")]
    step = analyze.forwarding_step(view, to, hosts)
    assert (step.neighbour_mac, step.vtep, step.vtep_host) == (
        "0a:58:ac:0d:00:02",
        "198.18.0.2",
        "b",
    )
    elsewhere = analyze.forwarding_step(view, to, hosts[:1])
    assert elsewhere.vtep_host is None


# -- whole traces, replayed through the command line --------------------------------------------


def _main(capsys: pytest.CaptureFixture[str], replay: Replay, *extra: str) -> tuple[int, str, str]:
    argv = ["--stack", "multihost", "--stack-file", str(replay.stack_file), *extra]
    code = cli.main(argv, sources=replay.client, connect=replay.connect)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@ENGINES
def test_a_recorded_trace_reports_every_hop(
    capsys: pytest.CaptureFixture[str], scenario: str
) -> None:
    replay = Replay(scenario)
    code, out, _ = _main(capsys, replay)
    a, b, _ = LABS[scenario]
    assert code == cli.EXIT_OK
    for fact in (
        f"endpoint http://{a}:8090",
        "0. Hosts (c2c:hosts of ",
        "1. Client -> host a's port 8090",
        "2. NAT table of host a",
        "--to-destination 172.18.0.3:8081",
        "3. Overlay c2c-multihost-net",
        "(published via docker_gwbridge 172.18.0.3)",
        "vxlan0 VNI 4097, UDP port 4789, MTU 1450, master br0",
        f"dst {b} (host b)",
        f"dst {a} (host a)",
        "4. External -> internal",
        "saw client 172.13.0.3",
        "5. Summary",
    ):
        assert fact in out or fact in " ".join(out.split()), fact
    assert "Problems" not in out
    # The one request went to host a's underlay address, never to an overlay address.
    assert replay.requests() == [[a, 8090]]


@ENGINES
def test_the_json_carries_vni_mtu_fdb_and_counters(
    capsys: pytest.CaptureFixture[str], scenario: str
) -> None:
    code, out, _ = _main(capsys, Replay(scenario), "--json")
    a, b, _ = LABS[scenario]
    data = json.loads(out)
    assert code == cli.EXIT_OK
    assert data["problems"] == []
    assert [(h["name"], h["address"], h["services"]) for h in data["hosts"]] == [
        ("a", a, ["external"]),
        ("b", b, ["internal"]),
    ]
    assert data["outputs"]["endpoint"] == f"http://{a}:8090"
    overlay = data["overlay"]
    assert overlay["published_via"] == "172.18.0.3"
    assert data["nat"]["dnat_rules"][0]["to_destination"] == "172.18.0.3:8081"
    assert data["nat"]["dnat_moved_by"] == 1
    assert data["request"]["path_kind"] == "dnat"
    assert (overlay["forward"]["vtep"], overlay["forward"]["vtep_host"]) == (b, "b")
    assert (overlay["reply"]["vtep"], overlay["reply"]["vtep_host"]) == (a, "a")
    for view in overlay["hosts"]:
        assert (view["vxlan"]["vni"], view["vxlan"]["mtu"], view["underlay_mtu"]) == (
            4097,
            1450,
            1500,
        )
        assert {c["chain"] for c in view["counts"]} == {"INPUT", "OUTPUT"}
        assert all(c["delta"] > 0 for c in view["counts"])


@ENGINES
def test_counting_rules_are_removed_after_the_request(
    capsys: pytest.CaptureFixture[str], scenario: str
) -> None:
    replay = Replay(scenario)
    _main(capsys, replay)
    for host in ("a", "b"):
        iptables = [argv for argv in replay.commands(host) if argv[0] == "iptables"]
        # iptables -w -I CHAIN 1 RULE... then iptables -w -D CHAIN RULE...
        inserted = [[argv[3], *argv[5:]] for argv in iptables if argv[2] == "-I"]
        deleted = [argv[3:] for argv in iptables if argv[2] == "-D"]
        assert len(inserted) == 2
        assert deleted == inserted
        assert [argv[2] for argv in iptables] == ["-I", "-I", "-D", "-D"]


def test_no_request_sends_nothing_and_adds_no_rule(capsys: pytest.CaptureFixture[str]) -> None:
    replay = Replay(DEB)
    code, out, _ = _main(capsys, replay, "--no-request")
    assert code == cli.EXIT_OK
    assert replay.requests() == []
    assert not [argv for h in ("a", "b") for argv in replay.commands(h) if argv[0] == "iptables"]
    assert "traced request (not sent)" in out


def test_an_unreachable_engine_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    replay = Replay(DEB, down=frozenset({"b"}))
    code, out, _ = _main(capsys, replay)
    assert code == cli.EXIT_DOCKER
    assert "cannot reach the engine of host b" in out
    assert replay.requests() == []


def test_counting_rules_that_cannot_be_added_make_it_partial(
    capsys: pytest.CaptureFixture[str],
) -> None:
    denied = CommandResult(["iptables"], 4, "", "iptables: Permission denied (you must be root)")
    replay = Replay(DEB, overrides={"b": {("command", "iptables"): denied}})
    code, out, _ = _main(capsys, replay, "--json")
    data = json.loads(out)
    assert code == cli.EXIT_PARTIAL
    assert [p["code"] for p in data["problems"]] == ["count-rule-failed"]
    assert {v["host"]: v["counts"] for v in data["overlay"]["hosts"]}["b"] == []
    # Host a's rules were added, so they are removed; b's none.
    assert [argv[2] for argv in replay.commands("a") if argv[0] == "iptables"] == [
        "-I",
        "-I",
        "-D",
        "-D",
    ]


def test_a_missing_forwarding_entry_is_a_problem(capsys: pytest.CaptureFixture[str]) -> None:
    empty = CommandResult(["bridge"], 0, "[]", "")
    replay = Replay(DEB, overrides={"a": {("in_netns", "bridge"): empty}})
    code, out, _ = _main(capsys, replay)
    assert code == cli.EXIT_PARTIAL
    assert (
        "[overlay] host a's vxlan has no forwarding entry for c2c-multihost-internal's MAC" in out
    )
    assert "no fdb entry for" in out


def test_via_is_refused_across_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    replay = Replay(DEB)
    code, out, err = _main(capsys, replay, "--via", "gateway")
    assert code == cli.EXIT_USAGE
    assert (out, replay.requests()) == ("", [])
    assert "always goes to external's host address" in err


def test_a_bad_stack_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.multihost.yaml"
    bad.write_text("config:\n  c2c:hosts: {a: 'ftp://x'}\n")
    code = cli.main(["--stack", "multihost", "--stack-file", str(bad)])
    assert code == cli.EXIT_USAGE
    assert "c2c:hosts: host 'a': url 'ftp://x'" in capsys.readouterr().err


@ENGINES
def test_the_diagram_draws_both_hosts(capsys: pytest.CaptureFixture[str], scenario: str) -> None:
    replay = Replay(scenario)
    from packet_trace.multihost import collect_multihost
    from packet_trace.stackfile import read_stack_file as read

    stack_hosts = read(replay.stack_file)
    assert stack_hosts is not None
    hosts = [
        TraceHost(n, h.address, str(h.url), [], *replay.connect(n, str(h.url))[1:])
        for n, h in stack_hosts.hosts.items()
    ]
    trace = collect_multihost(replay.client, replay.engines, hosts, stack_hosts, "multihost")
    source = diagram.build(trace).source
    a, b, _ = LABS[scenario]
    for fact in (
        f"host a  {a}",
        f"host b  {b}",
        "--to-destination 172.18.0.3:8081",
        "docker_gwbridge\nexternal there: 172.18.0.3",
        "vxlan0  VNI 4097\nUDP port 4789, MTU 1450",
        f"-> dst {b}",
        "4. VXLAN, VNI 4097",
        "internal sees client 172.13.0.3",
    ):
        assert fact in source, fact


def test_both_services_on_one_host_of_another_namespace_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    replay = Replay(DEB)
    same = tmp_path / "Pulumi.multihost.yaml"
    same.write_text(
        replay.stack_file.read_text().replace("c2c:internalHost: b", "c2c:internalHost: a")
    )
    elsewhere = tmp_path / "netns"  # a file that is not this process's namespace
    elsewhere.touch()

    def connect(name: str, url: str) -> tuple[HostSources, str | None, str | None]:
        return replay.engines[name], str(elsewhere), None

    argv = ["--stack", "multihost", "--stack-file", str(same)]
    code = cli.main(argv, sources=replay.client, connect=connect)
    assert code == cli.EXIT_USAGE
    assert "both services of multihost run on host a" in capsys.readouterr().err
    assert replay.requests() == []


def test_a_single_host_trace_keeps_its_json(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.unit.trace.trace_fixtures import REAL, FixtureSources

    code = cli.main(["--stack", "dev", "--json"], sources=FixtureSources(REAL))
    data = json.loads(capsys.readouterr().out)
    assert code == cli.EXIT_OK
    assert not {"hosts", "hosts_source", "overlay"} & set(data)
    assert "host_address" not in data["outputs"]
    assert data["outputs"]["endpoint"] == "http://localhost:8090"
