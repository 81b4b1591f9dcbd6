"""Parsers on real captured output (tests/unit/trace/fixtures, see conftest.py)."""

from __future__ import annotations

import json

import pytest

from packet_trace import analyze
from packet_trace.parse import (
    ParseError,
    classify_command_error,
    parse_container_inspect,
    parse_container_links,
    parse_host_links,
    parse_ip_addr,
    parse_iptables_save,
    parse_iptables_version,
    parse_network_inspect,
    parse_nft_table,
    parse_service_response,
    parse_ss_listeners,
    parse_stack_outputs,
)
from tests.unit.trace.trace_fixtures import read

LOOPBACK_DNAT = (
    "-A DOCKER -d 127.0.0.1/32 ! -i br-ffffbb9cfa24 -p tcp -m tcp --dport 18090 "
    "-j DNAT --to-destination 10.213.0.3:8081"
)
ALLIF_DNAT = (
    "-A DOCKER ! -i br-6553bd1a3939 -p tcp -m tcp --dport 18090 "
    "-j DNAT --to-destination 10.213.0.3:8081"
)


# -- iptables-save -----------------------------------------------------------------------------


def test_iptables_save_loopback_dnat_rule_is_quoted_exactly() -> None:
    rules = parse_iptables_save(read("standin-loopback", "nat-before.txt"))
    dnat = analyze.dnat_rules_for(rules, 18090, "10.213.0.3", 8081)
    assert [r.spec for r in dnat] == [LOOPBACK_DNAT]
    rule = dnat[0]
    assert (rule.chain, rule.target, rule.dport) == ("DOCKER", "DNAT", 18090)
    assert rule.destination == "127.0.0.1/32"
    assert rule.in_interface == "!br-ffffbb9cfa24"
    assert rule.to_destination == "10.213.0.3:8081"
    assert (rule.packets, rule.bytes) == (0, 0)


def test_iptables_save_all_interfaces_rule_has_no_destination() -> None:
    rules = parse_iptables_save(read("standin-allif", "nat-before.txt"))
    dnat = analyze.dnat_rules_for(rules, 18090, "10.213.0.3", 8081)
    assert [r.spec for r in dnat] == [ALLIF_DNAT]
    assert dnat[0].destination is None


def test_iptables_save_counters_and_jump_rules() -> None:
    rules = parse_iptables_save(read("standin-allif", "nat-after-gateway.txt"))
    jumps = analyze.jump_rules(rules)
    assert [(r.chain, r.destination, r.dst_type_local) for r in jumps] == [
        ("PREROUTING", None, True),
        ("OUTPUT", "!127.0.0.0/8", True),
    ]
    output = jumps[1]
    assert (output.packets, output.bytes) == (2, 120)
    masq = [r for r in rules if r.target == "MASQUERADE"]
    assert masq[0].out_interface == "!br-6553bd1a3939"


def test_no_rule_case_has_no_dnat_but_keeps_docker_chain() -> None:
    rules = parse_iptables_save(read("standin-loopback", "nat-no-rule.txt"))
    assert analyze.dnat_rules_for(rules, 18090, "10.213.0.3", 8081) == []
    assert not [r for r in rules if r.target == "DNAT"]
    assert any(r.chain == "DOCKER" and r.target == "RETURN" for r in rules)


def test_iptables_save_other_tables_are_ignored() -> None:
    text = "*filter\n[5:300] -A FORWARD -j DOCKER-USER\nCOMMIT\n" + read(
        "standin-loopback", "nat-before.txt"
    )
    rules = parse_iptables_save(text)
    assert all(r.chain != "FORWARD" for r in rules)
    assert parse_iptables_save(text, table="filter")[0].packets == 5


def test_iptables_save_without_counters() -> None:
    rules = parse_iptables_save(
        "*nat\n-A DOCKER ! -i br-x -p tcp -m tcp --dport 80 -j DNAT "
        "--to-destination 10.0.0.2:8080\nCOMMIT\n"
    )
    assert rules[0].packets == 0
    assert rules[0].to_destination == "10.0.0.2:8080"


def test_iptables_version_backend() -> None:
    assert parse_iptables_version(read("standin-loopback", "iptables-version.txt")) == "nf_tables"
    assert parse_iptables_version("iptables v1.8.7 (legacy)") == "legacy"
    assert parse_iptables_version("garbage") is None


# -- no privilege --------------------------------------------------------------------------------


def test_no_privilege_iptables_save_is_classified_as_permission() -> None:
    rc = int(read("standin-loopback", "noperm-iptables-save.rc"))
    stderr = read("standin-loopback", "noperm-iptables-save.stderr")
    assert rc != 0
    assert read("standin-loopback", "noperm-iptables-save.stdout") == ""
    assert classify_command_error(rc, stderr) == "permission"


def test_no_privilege_nft_is_classified_as_permission() -> None:
    rc = int(read("standin-loopback", "noperm-nft.rc"))
    assert classify_command_error(rc, read("standin-loopback", "noperm-nft.stderr")) == "permission"


def test_classify_other_errors() -> None:
    assert classify_command_error(0, "") == "ok"
    assert classify_command_error(127, "iptables-save: command not found") == "missing"
    assert classify_command_error(1, "iptables-save: unknown table") == "error"


# -- nft -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["standin-loopback", "standin-allif"])
def test_nft_and_iptables_agree_on_the_dnat_rule(scenario: str) -> None:
    nft = parse_nft_table(read(scenario, "nft-nat.txt"))
    ipt = parse_iptables_save(read(scenario, "nat-before.txt"))
    nft_dnat = analyze.dnat_rules_for(nft, 18090, "10.213.0.3", 8081)
    ipt_dnat = analyze.dnat_rules_for(ipt, 18090, "10.213.0.3", 8081)
    assert len(nft_dnat) == len(ipt_dnat) == 1
    a, b = nft_dnat[0], ipt_dnat[0]
    assert (a.chain, a.in_interface, a.dport, a.to_destination) == (
        b.chain,
        b.in_interface,
        b.dport,
        b.to_destination,
    )
    # iptables prints 127.0.0.1/32, nft prints 127.0.0.1: the same match.
    assert (a.destination or "").split("/")[0] == (b.destination or "").split("/")[0]
    assert a.syntax == "nft"
    assert "counter packets" not in a.spec
    assert "dnat to" in a.spec


def test_nft_output_jump_and_counters() -> None:
    rules = parse_nft_table(read("standin-allif", "nft-nat.txt"))
    output = [r for r in analyze.jump_rules(rules) if r.chain == "OUTPUT"]
    assert len(output) == 1
    assert output[0].destination == "!127.0.0.0/8"
    assert output[0].dst_type_local
    assert (output[0].packets, output[0].bytes) == (1, 60)


def test_nft_ignores_other_tables() -> None:
    text = "table ip filter {\n\tchain DOCKER {\n\t\tcounter packets 1 bytes 2 drop\n\t}\n}\n"
    assert parse_nft_table(text) == []


# -- ss ------------------------------------------------------------------------------------------


def test_ss_with_privilege_names_docker_proxy() -> None:
    listeners = [
        x for x in parse_ss_listeners(read("standin-loopback", "ss-listen.txt")) if x.port == 18090
    ]
    assert len(listeners) == 1
    x = listeners[0]
    assert (x.local_address, x.process) == ("127.0.0.1", "docker-proxy")
    assert x.pid is not None
    assert x.pid > 0


def test_ss_all_interfaces_listener() -> None:
    listeners = parse_ss_listeners(read("standin-allif", "ss-listen.txt"))
    assert [(x.local_address, x.process) for x in listeners if x.port == 18090] == [
        ("0.0.0.0", "docker-proxy")
    ]


def test_ss_without_privilege_hides_process() -> None:
    listeners = [
        x
        for x in parse_ss_listeners(read("standin-loopback", "ss-listen-noperm.txt"))
        if x.port == 18090
    ]
    assert len(listeners) == 1
    assert listeners[0].process is None
    assert listeners[0].pid is None


def test_ss_no_rule_case_has_no_listener_on_the_port() -> None:
    listeners = parse_ss_listeners(read("standin-loopback", "ss-listen-no-rule.txt"))
    assert listeners
    assert all(x.port != 18090 for x in listeners)


def test_ss_ipv6_and_scoped_addresses() -> None:
    text = (
        'LISTEN 0 4096 [::]:8090 [::]:* users:(("docker-proxy",pid=7,fd=4))\n'
        "LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*\n"
    )
    got = parse_ss_listeners(text)
    assert [(x.local_address, x.port, x.pid) for x in got] == [
        ("::", 8090, 7),
        ("127.0.0.53", 53, None),
    ]


# -- docker inspect ------------------------------------------------------------------------------


def test_network_inspect_bridge_facts() -> None:
    hop = parse_network_inspect(read("standin-loopback", "network-inspect.json"))
    assert hop.network_name == "c2c-tracefixture-net"
    assert hop.interface == "br-ffffbb9cfa24"
    assert hop.network_id.startswith("ffffbb9cfa24")
    assert (hop.subnet, hop.gateway) == ("10.213.0.0/24", "10.213.0.1")
    assert [(e.container, e.ipv4, e.mac) for e in hop.endpoints] == [
        ("c2c-tracefixture-internal", "10.213.0.2", "02:42:0a:d5:00:02"),
        ("c2c-tracefixture-external", "10.213.0.3", "02:42:0a:d5:00:03"),
    ]


def test_network_inspect_honours_a_bridge_name_option() -> None:
    data = json.loads(read("standin-loopback", "network-inspect.json"))
    data[0]["Options"] = {"com.docker.network.bridge.name": "c2cbr0"}
    assert parse_network_inspect(data).interface == "c2cbr0"


def test_network_inspect_rejects_lists_of_several() -> None:
    data = json.loads(read("standin-loopback", "network-inspect.json"))
    with pytest.raises(ParseError):
        parse_network_inspect(data + data)


def test_container_inspect_env_ports_networks() -> None:
    docs = json.loads(read("standin-loopback", "containers-inspect.json"))
    internal, external = (parse_container_inspect(d) for d in docs)
    assert internal.name == "c2c-tracefixture-internal"
    assert internal.port_bindings == []
    assert external.env["INTERNAL_URL"] == "http://10.213.0.2:8080"
    assert [(b.container_port, b.host_ip, b.host_port) for b in external.port_bindings] == [
        (8081, "127.0.0.1", 18090)
    ]
    assert external.networks["c2c-tracefixture-net"] == ("10.213.0.3", "02:42:0a:d5:00:03")
    assert external.labels["c2c.stack"] == "tracefixture"
    assert external.running


# -- links and addresses -------------------------------------------------------------------------


def test_veths_are_matched_through_iflink() -> None:
    bridge = parse_network_inspect(read("standin-loopback", "network-inspect.json"))
    hosts = parse_host_links(read("standin-loopback", "host-links.txt"))
    conts = parse_container_links(read("standin-loopback", "container-links.txt"))
    joined = analyze.attach_veths(bridge, hosts, conts)
    assert joined.interface_present
    for ep in joined.endpoints:
        assert ep.host_veth is not None
        assert ep.host_veth.startswith("veth")
        assert ep.veth_master == "br-ffffbb9cfa24"
        assert ep.container_ifname == "eth0"
    # Distinct veths, each the host peer whose ifindex is the container's iflink.
    by_name = {h.name: h.ifindex for h in hosts}
    assert {by_name[e.host_veth or ""] for e in joined.endpoints} == {c.iflink for c in conts}


def test_ip_addr_lists_ipv4_with_scope() -> None:
    addrs = parse_ip_addr(read("standin-loopback", "ip-addr.txt"))
    pairs = {(a.ifname, a.address, a.scope) for a in addrs}
    assert ("lo", "127.0.0.1", "host") in pairs
    assert ("br-ffffbb9cfa24", "10.213.0.1", "global") in pairs
    assert all(":" not in a.address for a in addrs)


# -- outputs and service JSON --------------------------------------------------------------------


def test_stack_outputs_and_host_port() -> None:
    text = json.dumps(
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
    out = parse_stack_outputs(text, "dev", "pulumi")
    assert out.host_port == 8090
    assert out.network_name == "c2c-dev-net"


def test_stack_outputs_missing_key_is_named() -> None:
    with pytest.raises(ParseError, match="networkName"):
        parse_stack_outputs(
            json.dumps(
                {
                    "endpoint": "http://localhost:1",
                    "internalIp": "x",
                    "externalIp": "y",
                    "subnet": "s",
                    "gateway": "g",
                    "internalUrl": "u",
                }
            ),
            "dev",
            "file",
        )
    with pytest.raises(ParseError, match="lack"):
        parse_stack_outputs("{}", "dev", "pulumi")  # what Pulumi prints before the first `up`


def test_service_response_real_and_error() -> None:
    data = parse_service_response(read("standin-loopback", "response-loopback.json"))
    assert data["client_ip"] == "10.213.0.1"
    assert data["upstream"]["client_ip"] == "10.213.0.3"
    with pytest.raises(ParseError, match="upstream_unreachable"):
        parse_service_response(
            json.dumps({"error": "upstream_unreachable", "message": "x", "status": 502})
        )
    with pytest.raises(ParseError, match="JSON"):
        parse_service_response("<html>")
