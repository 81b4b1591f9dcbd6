"""The collector on replayed captures of the real dev stack: which address it picks, which
counters it sees move, and what it reports when it cannot read something."""

from __future__ import annotations

import ipaddress

import pytest

from packet_trace import analyze, render
from packet_trace.collect import UsageError, collect
from packet_trace.model import Listener, NatRule, Problem, Trace
from packet_trace.parse import Link, parse_ip_addr, parse_iptables_save
from tests.unit.trace.trace_fixtures import REAL, REFUSED, REPLAY_MS, FixtureSources, read

DEV_DNAT = (
    "-A DOCKER ! -i br-f1322933b9af -p tcp -m tcp --dport 8090 "
    "-j DNAT --to-destination 172.13.0.3:8081"
)
DEV_OUTPUT_JUMP = "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"


def codes(problems: list[Problem]) -> set[str]:
    return {p.code for p in problems}


# -- the dev stack, as `make trace` runs it ------------------------------------------------------


def assert_docker_proxy_path(trace: Trace, reason: str, external_client_ip: str) -> None:
    """The request went to docker-proxy: no nat counter moved, and external saw the gateway."""
    assert trace.request is not None
    assert trace.request.path_kind == "docker-proxy"
    assert reason in trace.request.reason
    assert trace.nat is not None
    assert trace.nat.moves == []
    assert trace.nat.dnat_moved_by == 0
    assert trace.services is not None
    assert trace.services.external_client_ip == external_client_ip


def test_dev_request_goes_to_the_gateway_and_moves_the_dnat_counter(
    dev_sources: FixtureSources,
) -> None:
    trace = collect(dev_sources, "dev")
    assert dev_sources.requests == [("172.13.0.1", 8090)]
    req = trace.request
    assert req is not None
    assert (req.target_ip, req.port, req.path_kind, req.status) == ("172.13.0.1", 8090, "dnat", 200)
    assert "this host's own address on br-f1322933b9af" in req.reason
    nat = trace.nat
    assert nat is not None
    assert (nat.backend, nat.command, nat.readable) == (
        "nf_tables",
        "iptables-save -t nat -c",
        True,
    )
    assert [r.spec for r in nat.dnat_rules] == [DEV_DNAT]
    assert [(r.chain, r.packets) for r in nat.jump_rules] == [("PREROUTING", 0), ("OUTPUT", 13)]
    assert [(m.chain, m.spec, m.packets_before, m.packets_after) for m in nat.moves] == [
        ("OUTPUT", DEV_OUTPUT_JUMP, 13, 14),
        ("DOCKER", DEV_DNAT, 1, 2),
    ]
    assert nat.dnat_moved_by == 1
    assert trace.problems == []
    assert trace.notes == []


def test_dev_outputs_come_from_the_labelled_docker_objects(dev_sources: FixtureSources) -> None:
    out = collect(dev_sources, "dev").outputs
    assert out is not None
    assert (out.host_port, out.external_ip, out.gateway) == (8090, "172.13.0.3", "172.13.0.1")


def test_dev_host_port_hop(dev_sources: FixtureSources) -> None:
    hop = collect(dev_sources, "dev").host_port
    assert hop is not None
    assert (hop.port, hop.bind_ip, hop.container_port, hop.process_visible) == (
        8090,
        "0.0.0.0",
        8081,
        True,
    )
    # Only the stack's port: ss also lists 0.0.0.0:2024, which is not the trace's business.
    assert hop.listeners == [Listener("0.0.0.0", 8090, "docker-proxy", 1992)]


def test_dev_bridge_hop(dev_sources: FixtureSources) -> None:
    br = collect(dev_sources, "dev").bridge
    assert br is not None
    assert (br.network_name, br.interface, br.interface_present) == (
        "c2c-dev-net",
        "br-f1322933b9af",
        True,
    )
    assert (br.subnet, br.gateway) == ("172.13.0.0/16", "172.13.0.1")
    assert [(e.container, e.ipv4, e.mac, e.host_veth, e.host_ifindex) for e in br.endpoints] == [
        ("c2c-dev-internal", "172.13.0.2", "02:42:ac:0d:00:02", "veth96e917c", 123),
        ("c2c-dev-external", "172.13.0.3", "02:42:ac:0d:00:03", "veth6210463", 125),
    ]


def test_dev_services_hop(dev_sources: FixtureSources) -> None:
    svc = collect(dev_sources, "dev").services
    assert svc is not None
    assert svc.internal_url == "http://172.13.0.2:8080"  # from external's container env
    assert (svc.external_client_ip, svc.external_container_ip, svc.external_hostname) == (
        "172.13.0.1",
        "172.13.0.3",
        "c2c-dev-external",
    )
    assert (svc.internal_client_ip, svc.internal_container_ip, svc.internal_hostname) == (
        "172.13.0.3",
        "172.13.0.2",
        "c2c-dev-internal",
    )
    assert (svc.total_ms, svc.upstream_ms) == (REPLAY_MS, 1.577)


def test_outputs_rebuilt_from_docker_equal_the_dev_outputs(dev_sources: FixtureSources) -> None:
    trace = collect(dev_sources, "dev")
    out = trace.outputs
    assert out is not None
    assert {
        "endpoint": out.endpoint,
        "internalIp": out.internal_ip,
        "externalIp": out.external_ip,
        "subnet": out.subnet,
        "gateway": out.gateway,
        "networkName": out.network_name,
        "internalUrl": out.internal_url,
    } == {  # `pulumi stack output --json` of the dev stack, the keys the trace reads
        "endpoint": "http://localhost:8090",
        "internalIp": "172.13.0.2",
        "externalIp": "172.13.0.3",
        "subnet": "172.13.0.0/16",
        "gateway": "172.13.0.1",
        "networkName": "c2c-dev-net",
        "internalUrl": "http://172.13.0.2:8080",
    }
    assert trace.notes == []
    assert dev_sources.requests == [("172.13.0.1", 8090)]


# -- --via and --no-request ----------------------------------------------------------------------


def test_via_loopback_takes_the_docker_proxy_path_and_no_counter_moves() -> None:
    sources = FixtureSources(REAL)
    trace = collect(sources, "dev", via="loopback")
    assert sources.requests == [("127.0.0.1", 8090)]
    assert_docker_proxy_path(trace, "docker-proxy accepts it on 127.0.0.1", "172.13.0.1")
    assert trace.services is not None
    assert trace.services.upstream_ms == 2.422


def test_via_gateway_is_what_auto_picks() -> None:
    sources = FixtureSources(REAL)
    trace = collect(sources, "dev", via="gateway")
    assert sources.requests == [("172.13.0.1", 8090)]
    assert trace.nat is not None
    assert trace.nat.dnat_moved_by == 1


@pytest.mark.parametrize("via", ["198.51.100.7", "172.13.0.3", "172.13.0.2"])
def test_via_an_address_not_of_this_host_is_refused_before_any_traffic(via: str) -> None:
    # The containers' own IPs are not this host's: the trace never sends to them.
    sources = FixtureSources(REAL)
    with pytest.raises(UsageError, match=f"{via} is not an address of this host"):
        collect(sources, "dev", via=via)
    assert sources.requests == []


def test_no_request_sends_nothing(dev_sources: FixtureSources) -> None:
    trace = collect(dev_sources, "dev", send_request=False)
    assert dev_sources.requests == []
    assert trace.request is not None
    assert (trace.request.target_ip, trace.request.error) == ("172.13.0.1", "not sent")
    assert trace.nat is not None
    assert trace.nat.dnat_moved_by is None
    assert trace.nat.moves == []
    assert trace.services is None
    assert trace.bridge is not None


# -- the stack is not there ----------------------------------------------------------------------


def test_a_stack_without_a_labelled_network_is_not_deployed() -> None:
    sources = FixtureSources(REAL)
    trace = collect(sources, "prod")
    assert codes(trace.problems) == {"stack-not-deployed"}
    msg = next(p for p in trace.problems if p.code == "stack-not-deployed")
    assert (
        "Docker has no network labelled c2c.stack=prod (stacks found on this Docker: dev)"
        in msg.message
    )
    assert "pulumi up --stack prod" in msg.remedy
    # Never knock on a port that Docker says the stack does not hold.
    assert sources.requests == []
    assert trace.outputs is None


def test_unknown_stack_is_not_deployed(dev_sources: FixtureSources) -> None:
    trace = collect(dev_sources, "nosuch")
    assert trace.outputs is None
    assert codes(trace.problems) == {"stack-not-deployed"}
    assert dev_sources.requests == []
    assert render.summarize(trace).startswith(
        "Nothing to trace: stack nosuch has no running network and containers labelled for it"
    )


def test_docker_unreachable_sends_nothing() -> None:
    sources = FixtureSources(REAL, docker_up=False)
    trace = collect(sources, "dev")
    assert codes(trace.problems) == {"docker-unreachable"}
    assert trace.outputs is None
    assert sources.requests == []
    assert render.summarize(trace).startswith("Nothing to trace: Docker could not be reached")


def test_missing_container_is_reported_by_its_service_label() -> None:
    sources = FixtureSources(REAL, removed=frozenset({"c2c-dev-internal"}))
    trace = collect(sources, "dev")
    assert codes(trace.problems) == {"container-missing"}
    assert trace.problems[0].message == "no container labelled c2c.service=internal in stack dev"
    assert trace.outputs is None
    assert sources.requests == []


# -- no privilege, no rule, no answer ------------------------------------------------------------


def test_no_privilege_reports_nat_and_process_and_still_traces() -> None:
    sources = FixtureSources(REAL, root=False)
    trace = collect(sources, "dev")
    assert codes(trace.problems) == {"nat-permission", "ss-no-process"}
    nat_problem = next(p for p in trace.problems if p.code == "nat-permission")
    assert "Could not fetch rule set generation id: Permission denied" in nat_problem.message
    assert "sudo make trace" in nat_problem.remedy
    assert trace.nat is not None
    assert (trace.nat.readable, trace.nat.backend) == (False, "nf_tables")
    assert trace.nat.dnat_rules == []
    assert trace.host_port is not None
    assert trace.host_port.listeners == [Listener("0.0.0.0", 8090, None, None)]
    assert not trace.host_port.process_visible
    # Without the nat table it cannot know the gateway passes DNAT: it takes the endpoint's path.
    assert sources.requests == [("127.0.0.1", 8090)]
    assert trace.request is not None
    assert trace.request.path_kind == "docker-proxy"
    assert trace.bridge is not None
    assert trace.services is not None
    assert trace.services.internal_client_ip == "172.13.0.3"


def test_no_privilege_and_no_iptables_save_reports_nft_refusal() -> None:
    sources = FixtureSources(REAL, root=False, iptables_save=False)
    trace = collect(sources, "dev")
    nat_problem = next(p for p in trace.problems if p.code == "nat-permission")
    assert "`nft list table ip nat` says: Operation not permitted" in nat_problem.message


def test_without_iptables_save_the_nft_listing_is_used() -> None:
    sources = FixtureSources(REAL, iptables_save=False)
    trace = collect(sources, "dev")
    assert trace.nat is not None
    assert (trace.nat.backend, trace.nat.command) == ("nft", "nft list table ip nat")
    assert [r.spec for r in trace.nat.dnat_rules] == [
        'iifname != "br-f1322933b9af" tcp dport 8090 counter dnat to 172.13.0.3:8081'
    ]
    # The nft OUTPUT jump excludes 127.0.0.0/8 too, so the gateway is chosen, as with iptables.
    assert sources.requests == [("172.13.0.1", 8090)]
    # One nft capture answers before and after: no counter can be seen to move in this replay.
    assert trace.nat.dnat_moved_by == 0


def test_no_rule_case() -> None:
    sources = FixtureSources(REAL, no_rule=True)
    trace = collect(sources, "dev")
    assert codes(trace.problems) == {"no-dnat-rule", "request-failed"}
    no_rule = next(p for p in trace.problems if p.code == "no-dnat-rule")
    assert "no DNAT rule for port 8090 -> 172.13.0.3:8081" in no_rule.message
    assert trace.host_port is not None
    assert trace.host_port.listeners == []
    assert trace.nat is not None
    assert trace.nat.readable
    assert trace.nat.dnat_rules == []
    assert trace.nat.jump_rules == []
    # No rule and no listener admit any address: it tries the endpoint and reports the refusal.
    assert sources.requests == [("127.0.0.1", 8090)]
    assert trace.request is not None
    assert (trace.request.path_kind, trace.request.error) == ("unknown", REFUSED)


def test_no_rule_with_external_stopped_sends_nothing() -> None:
    sources = FixtureSources(REAL, no_rule=True, stopped=frozenset({"c2c-dev-external"}))
    trace = collect(sources, "dev")
    assert codes(trace.problems) == {"container-stopped", "no-dnat-rule"}
    stopped = next(p for p in trace.problems if p.code == "container-stopped")
    assert stopped.message == "container c2c-dev-external is not running"
    assert "`docker start c2c-dev-external`" in stopped.remedy
    assert sources.requests == []
    # A stopped container has no veth to look up; the running one still has its own.
    assert trace.bridge is not None
    assert [e.host_veth for e in trace.bridge.endpoints] == ["veth96e917c", None]


def test_refused_request_still_shows_the_dnat_counter_move() -> None:
    """As in a `make trace` run right after capture.sh restarted external: the SYN passed the
    DNAT rule (counter +1) and the container, not listening yet, refused it."""
    sources = FixtureSources(REAL, refuse=True)
    trace = collect(sources, "dev")
    assert codes(trace.problems) == {"request-failed"}
    assert trace.nat is not None
    assert trace.nat.dnat_moved_by == 1
    assert trace.services is not None
    assert trace.services.external_client_ip is None
    assert trace.services.upstream_ms is None
    assert trace.services.internal_url == "http://172.13.0.2:8080"


# -- the port published on 127.0.0.1 only (stand-in stack) ---------------------------------------


def test_loopback_only_port_takes_the_docker_proxy_path(
    loopback_only_sources: FixtureSources,
) -> None:
    trace = collect(loopback_only_sources, "tracefixture")
    assert loopback_only_sources.requests == [("127.0.0.1", 18090)]
    assert_docker_proxy_path(trace, "it matches destination 127.0.0.1/32", "10.213.0.1")
    assert trace.problems == []


def test_loopback_only_port_via_gateway_is_refused_and_masqueraded(
    loopback_only_sources: FixtureSources,
) -> None:
    trace = collect(loopback_only_sources, "tracefixture", via="gateway")
    assert loopback_only_sources.requests == [("10.213.0.1", 18090)]
    assert trace.request is not None
    assert trace.request.path_kind == "unknown"
    assert (trace.request.error or "").startswith("curl: (7) Failed to connect to 10.213.0.1")
    assert trace.nat is not None
    assert trace.nat.dnat_moved_by == 0
    assert {(m.chain, m.delta) for m in trace.nat.moves} == {("OUTPUT", 1), ("POSTROUTING", 1)}


# -- choose_target and diff_counters ---------------------------------------------------------------


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


def test_auto_on_the_dev_rules_picks_the_gateway() -> None:
    rules = parse_iptables_save(read(REAL, "nat-before.txt"))
    dnat = analyze.dnat_rules_for(rules, 8090, "172.13.0.3", 8081)
    addrs = parse_ip_addr(read(REAL, "ip-addr.json"))
    choice = analyze.choose_target(
        "auto", 8090, rules, dnat, [], addrs, "172.13.0.1", "br-f1322933b9af"
    )
    assert (choice.ip, choice.path_kind) == ("172.13.0.1", "dnat")
    # This host's eth0 address passes the same OUTPUT jump and DNAT rule.
    eth0 = analyze.choose_target("192.0.2.2", 8090, rules, dnat, [], addrs, "172.13.0.1", "br")
    assert (eth0.ip, eth0.path_kind) == ("192.0.2.2", "dnat")


def test_auto_falls_back_to_loopback_when_the_gateway_is_not_local() -> None:
    rules = parse_iptables_save(read(REAL, "nat-before.txt"))
    dnat = analyze.dnat_rules_for(rules, 8090, "172.13.0.3", 8081)
    addrs = [Link(4, "eth0", None, (ipaddress.IPv4Interface("192.0.2.2/24"),))]
    proxy = [Listener("0.0.0.0", 8090, "docker-proxy", 1992)]
    choice = analyze.choose_target("auto", 8090, rules, dnat, proxy, addrs, "172.13.0.1", "br-x")
    assert (choice.ip, choice.path_kind) == ("127.0.0.1", "docker-proxy")
    assert choice.reason.endswith("docker-proxy accepts it on 127.0.0.1")


def test_diff_counters_keeps_duplicate_rules_apart() -> None:
    before = parse_iptables_save("*nat\n[1:60] -A X -j RETURN\n[5:300] -A X -j RETURN\nCOMMIT\n")
    after = parse_iptables_save("*nat\n[1:60] -A X -j RETURN\n[7:420] -A X -j RETURN\nCOMMIT\n")
    moves = analyze.diff_counters(before, after)
    assert [(m.packets_before, m.packets_after, m.delta) for m in moves] == [(5, 7, 2)]


def test_diff_counters_ignores_rules_that_appear_or_vanish() -> None:
    # Between the dev captures with and without external, the DNAT rule vanished: not a move.
    before = parse_iptables_save(read(REAL, "nat-after-gateway.txt"))
    no_rule = parse_iptables_save(read(REAL, "nat-no-rule.txt"))
    assert analyze.diff_counters(before, no_rule) == []


def test_ip_matches_negation() -> None:
    assert analyze.ip_matches("!127.0.0.0/8", "172.13.0.1")
    assert not analyze.ip_matches("!127.0.0.0/8", "127.0.0.1")
    assert analyze.ip_matches("127.0.0.1/32", "127.0.0.1")
    assert not analyze.ip_matches("127.0.0.1/32", "172.13.0.1")
    assert analyze.ip_matches(None, "1.2.3.4")
