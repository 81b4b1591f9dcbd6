"""The collector on replayed captures: which address it picks, which counters it sees move, and
what it reports when it cannot read something."""

from __future__ import annotations

import json

import pytest

from packet_trace import analyze
from packet_trace.collect import UsageError, collect
from packet_trace.model import NatRule, Problem
from packet_trace.parse import LocalAddress, parse_iptables_save
from tests.unit.trace.trace_fixtures import FixtureSources, read


def codes(problems: list[Problem]) -> set[str]:
    return {p.code for p in problems}


def test_loopback_published_port_takes_the_docker_proxy_path(
    loopback_sources: FixtureSources,
) -> None:
    trace = collect(loopback_sources, "tracefixture")
    assert loopback_sources.requests == [("127.0.0.1", 18090)]
    assert trace.request is not None
    assert trace.request.path_kind == "docker-proxy"
    assert trace.nat is not None
    assert trace.nat.readable
    # Evidence from the capture: no nat counter at all moved for a request to 127.0.0.1.
    assert trace.nat.moves == []
    assert trace.nat.dnat_moved_by == 0
    assert trace.host_port is not None
    assert [x.process for x in trace.host_port.listeners] == ["docker-proxy"]
    assert trace.services is not None
    assert trace.services.external_client_ip == "10.213.0.1"
    assert trace.problems == []


def test_all_interfaces_port_is_traced_through_the_gateway_and_dnat_moves(
    allif_sources: FixtureSources,
) -> None:
    trace = collect(allif_sources, "tracefixture")
    assert allif_sources.requests == [("10.213.0.1", 18090)]
    assert trace.request is not None
    assert trace.request.path_kind == "dnat"
    assert trace.nat is not None
    assert trace.nat.dnat_moved_by == 1
    moved = {(m.chain, m.delta) for m in trace.nat.moves}
    assert moved == {("OUTPUT", 1), ("DOCKER", 1)}
    assert trace.services is not None
    assert (trace.services.external_client_ip, trace.services.internal_client_ip) == (
        "10.213.0.1",
        "10.213.0.3",
    )
    assert trace.services.upstream_ms is not None
    assert trace.services.total_ms == 12.5


def test_via_loopback_overrides_auto(allif_sources: FixtureSources) -> None:
    trace = collect(allif_sources, "tracefixture", via="loopback")
    assert allif_sources.requests == [("127.0.0.1", 18090)]
    assert trace.request is not None
    assert trace.request.path_kind == "docker-proxy"
    assert trace.nat is not None
    assert trace.nat.dnat_moved_by == 0


def test_via_an_address_not_of_this_host_is_refused_before_any_traffic(
    allif_sources: FixtureSources,
) -> None:
    with pytest.raises(UsageError, match="not an address of this host"):
        collect(allif_sources, "tracefixture", via="198.51.100.7")
    assert allif_sources.requests == []


def test_no_request_sends_nothing(allif_sources: FixtureSources) -> None:
    trace = collect(allif_sources, "tracefixture", send_request=False)
    assert allif_sources.requests == []
    assert trace.request is not None
    assert trace.request.error == "not sent"
    assert trace.nat is not None
    assert trace.nat.dnat_moved_by is None


def test_bridge_hop_has_veths(loopback_sources: FixtureSources) -> None:
    trace = collect(loopback_sources, "tracefixture")
    assert trace.bridge is not None
    assert trace.bridge.interface == "br-ffffbb9cfa24"
    assert all(e.host_veth and e.veth_master == "br-ffffbb9cfa24" for e in trace.bridge.endpoints)


def test_outputs_rebuilt_from_docker_labels_match_the_stand_in(
    loopback_sources: FixtureSources,
) -> None:
    trace = collect(loopback_sources, "tracefixture")
    out = trace.outputs
    assert out is not None
    assert out.source == "docker-labels"
    assert (out.endpoint, out.internal_ip, out.external_ip) == (
        "http://localhost:18090",
        "10.213.0.2",
        "10.213.0.3",
    )
    assert (out.subnet, out.gateway, out.network_name, out.internal_url) == (
        "10.213.0.0/24",
        "10.213.0.1",
        "c2c-tracefixture-net",
        "http://10.213.0.2:8080",
    )
    assert any("pulumi CLI not on PATH" in n for n in trace.notes)


def test_outputs_from_pulumi_are_used() -> None:
    outputs = json.dumps(
        {
            "endpoint": "http://localhost:18090",
            "internalIp": "10.213.0.2",
            "externalIp": "10.213.0.3",
            "subnet": "10.213.0.0/24",
            "gateway": "10.213.0.1",
            "networkName": "c2c-tracefixture-net",
            "internalUrl": "http://10.213.0.2:8080",
        }
    )
    trace = collect(FixtureSources("standin-loopback", outputs=outputs), "tracefixture")
    assert trace.outputs is not None
    assert trace.outputs.source == "pulumi"
    assert trace.problems == []


def test_outputs_naming_a_missing_network_mean_not_deployed() -> None:
    outputs = json.dumps(
        {
            "endpoint": "http://localhost:8090",
            "internalIp": "172.13.0.2",
            "externalIp": "172.13.0.3",
            "subnet": "172.13.0.0/16",
            "gateway": "172.13.0.1",
            "networkName": "c2c-dev-net",
            "internalUrl": "http://172.13.0.2:8080",
        }
    )
    sources = FixtureSources("standin-loopback", outputs=outputs)
    trace = collect(sources, "dev")
    assert "stack-not-deployed" in codes(trace.problems)
    msg = next(p for p in trace.problems if p.code == "stack-not-deployed")
    assert "c2c-dev-net" in msg.message
    assert "tracefixture" in msg.message
    assert "make up" in msg.remedy


def test_unknown_stack_without_outputs_is_not_deployed(loopback_sources: FixtureSources) -> None:
    trace = collect(loopback_sources, "nosuch")
    assert trace.outputs is None
    assert codes(trace.problems) == {"stack-not-deployed"}
    assert loopback_sources.requests == []


def test_no_privilege_reports_nat_and_process_and_still_traces() -> None:
    sources = FixtureSources("standin-loopback", mode="noperm")
    trace = collect(sources, "tracefixture")
    assert codes(trace.problems) == {"nat-permission", "ss-no-process"}
    nat_problem = next(p for p in trace.problems if p.code == "nat-permission")
    assert "Permission denied" in nat_problem.message
    assert "sudo" in nat_problem.remedy
    assert trace.nat is not None
    assert not trace.nat.readable
    assert trace.nat.dnat_rules == []
    # What could be read is still there: the request, the bridge, the services.
    assert trace.request is not None
    assert trace.request.target_ip == "127.0.0.1"
    assert trace.bridge is not None
    assert trace.services is not None
    assert trace.services.internal_client_ip == "10.213.0.3"


def test_no_rule_case() -> None:
    sources = FixtureSources("standin-loopback", mode="no-rule")
    trace = collect(sources, "tracefixture")
    assert {"no-dnat-rule", "request-failed"} <= codes(trace.problems)
    assert trace.host_port is not None
    assert trace.host_port.listeners == []
    assert trace.nat is not None
    assert trace.nat.readable
    assert trace.nat.dnat_rules == []


def test_docker_unreachable_with_outputs_still_reads_the_host() -> None:
    outputs = json.dumps(
        {
            "endpoint": "http://localhost:18090",
            "internalIp": "10.213.0.2",
            "externalIp": "10.213.0.3",
            "subnet": "10.213.0.0/24",
            "gateway": "10.213.0.1",
            "networkName": "c2c-tracefixture-net",
            "internalUrl": "http://10.213.0.2:8080",
        }
    )
    sources = FixtureSources("standin-allif", docker_up=False)
    trace = collect(sources, "tracefixture", outputs_text=outputs)
    assert "docker-unreachable" in codes(trace.problems)
    # Without Docker the container port is unknown, yet the DNAT rule is found by host port + IP.
    assert trace.nat is not None
    assert len(trace.nat.dnat_rules) == 1
    assert trace.nat.dnat_moved_by == 1
    assert trace.bridge is None


def test_docker_unreachable_without_outputs() -> None:
    trace = collect(FixtureSources("standin-loopback", docker_up=False), "tracefixture")
    assert codes(trace.problems) == {"docker-unreachable"}
    assert trace.outputs is None


# -- choose_target and diff_counters on synthetic rules ------------------------------------------


def _proxy_off_rules() -> list[NatRule]:
    # With --userland-proxy=false dockerd's OUTPUT jump has no '! -d 127.0.0.0/8'.
    text = (
        "*nat\n"
        "[0:0] -A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER\n"
        "[0:0] -A DOCKER -i br-x -j RETURN\n"
        "[0:0] -A DOCKER -p tcp -m tcp --dport 8090 -j DNAT --to-destination 172.13.0.3:8081\n"
        "COMMIT\n"
    )
    return parse_iptables_save(text)


def test_auto_prefers_loopback_when_it_passes_dnat() -> None:
    rules = _proxy_off_rules()
    dnat = analyze.dnat_rules_for(rules, 8090, "172.13.0.3", 8081)
    choice = analyze.choose_target("auto", 8090, rules, dnat, [], [], "172.13.0.1", "br-x")
    assert (choice.ip, choice.path_kind) == ("127.0.0.1", "dnat")


def test_auto_falls_back_to_loopback_proxy_when_gateway_is_not_local() -> None:
    rules = parse_iptables_save(read("standin-allif", "nat-before.txt"))
    dnat = analyze.dnat_rules_for(rules, 18090, "10.213.0.3", 8081)
    addrs = [LocalAddress("eth0", "192.0.2.2", 24, "global")]
    choice = analyze.choose_target("auto", 18090, rules, dnat, [], addrs, "10.213.0.1", "br-x")
    assert choice.ip == "127.0.0.1"


def test_diff_counters_keeps_duplicate_rules_apart() -> None:
    before = parse_iptables_save("*nat\n[1:60] -A X -j RETURN\n[5:300] -A X -j RETURN\nCOMMIT\n")
    after = parse_iptables_save("*nat\n[1:60] -A X -j RETURN\n[7:420] -A X -j RETURN\nCOMMIT\n")
    moves = analyze.diff_counters(before, after)
    assert [(m.packets_before, m.packets_after, m.delta) for m in moves] == [(5, 7, 2)]


def test_ip_matches_negation() -> None:
    assert analyze.ip_matches("!127.0.0.0/8", "10.213.0.1")
    assert not analyze.ip_matches("!127.0.0.0/8", "127.0.0.1")
    assert analyze.ip_matches("127.0.0.1/32", "127.0.0.1")
    assert analyze.ip_matches(None, "1.2.3.4")


def test_without_iptables_save_the_nft_listing_is_used() -> None:
    sources = FixtureSources("standin-allif", mode="nft-only")
    trace = collect(sources, "tracefixture")
    assert trace.nat is not None
    assert trace.nat.backend == "nft"
    assert trace.nat.command == "nft list table ip nat"
    assert [r.syntax for r in trace.nat.dnat_rules] == ["nft"]
    assert "dnat to 10.213.0.3:8081" in trace.nat.dnat_rules[0].spec
    # The nft OUTPUT jump excludes 127.0.0.0/8 too, so the gateway is chosen, as with iptables.
    assert sources.requests == [("10.213.0.1", 18090)]


def test_no_request_to_the_port_of_a_stack_docker_says_is_gone() -> None:
    outputs = json.dumps(
        {
            "endpoint": "http://localhost:8090",
            "internalIp": "172.13.0.2",
            "externalIp": "172.13.0.3",
            "subnet": "172.13.0.0/16",
            "gateway": "172.13.0.1",
            "networkName": "c2c-dev-net",
            "internalUrl": "http://172.13.0.2:8080",
        }
    )
    sources = FixtureSources("standin-loopback", outputs=outputs)
    trace = collect(sources, "dev")
    assert sources.requests == []
    assert any("no request sent" in n for n in trace.notes)
