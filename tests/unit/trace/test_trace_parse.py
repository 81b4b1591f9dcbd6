"""Parsers on output captured from the real dev stack (fixtures/real-dev) and, for the port
published on 127.0.0.1 only, from the stand-in stack (fixtures/standin-loopback)."""

from __future__ import annotations

import json

import pytest

from packet_trace import analyze
from packet_trace.model import NatRule
from packet_trace.parse import (
    ContainerLink,
    ParseError,
    classify_command_error,
    parse_container_inspect,
    parse_ip_addr,
    parse_iptables_save,
    parse_iptables_version,
    parse_network_inspect,
    parse_nft_table,
    parse_service_response,
    parse_ss_listeners,
    parse_sysfs_link,
)
from tests.unit.trace.trace_fixtures import LOOPBACK_ONLY, REAL, read

DEV_DNAT = (
    "-A DOCKER ! -i br-f1322933b9af -p tcp -m tcp --dport 8090 "
    "-j DNAT --to-destination 172.13.0.3:8081"
)
DEV_OUTPUT_JUMP = "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"
DEV_HAIRPIN = (
    "-A POSTROUTING -s 172.13.0.3/32 -d 172.13.0.3/32 -p tcp -m tcp --dport 8081 -j MASQUERADE"
)
LOOPBACK_ONLY_DNAT = (
    "-A DOCKER -d 127.0.0.1/32 ! -i br-ffffbb9cfa24 -p tcp -m tcp --dport 18090 "
    "-j DNAT --to-destination 10.213.0.3:8081"
)


def _dev_rules(name: str) -> list[NatRule]:
    return parse_iptables_save(read(REAL, name))


def _packets(rules: list[NatRule], spec: str) -> tuple[int, int]:
    (rule,) = [r for r in rules if r.spec == spec]
    return rule.packets, rule.bytes


# -- iptables-save -----------------------------------------------------------------------------


def test_dev_dnat_rule_is_quoted_exactly_with_its_fields() -> None:
    dnat = analyze.dnat_rules_for(_dev_rules("nat-before.txt"), 8090, "172.13.0.3", 8081)
    assert [r.spec for r in dnat] == [DEV_DNAT]
    rule = dnat[0]
    assert (rule.chain, rule.target, rule.dport, rule.syntax) == (
        "DOCKER",
        "DNAT",
        8090,
        "iptables",
    )
    assert rule.destination is None  # published on 0.0.0.0: any local destination
    assert rule.in_interface == "!br-f1322933b9af"
    assert rule.to_destination == "172.13.0.3:8081"
    assert (rule.packets, rule.bytes) == (1, 60)


def test_dev_rules_in_order() -> None:
    rules = _dev_rules("nat-before.txt")
    assert [(r.chain, r.target) for r in rules] == [
        ("PREROUTING", "DOCKER"),
        ("OUTPUT", "DOCKER"),
        ("POSTROUTING", "MASQUERADE"),
        ("POSTROUTING", "MASQUERADE"),
        ("POSTROUTING", "MASQUERADE"),
        ("DOCKER", "RETURN"),
        ("DOCKER", "RETURN"),
        ("DOCKER", "DNAT"),
    ]
    masq = [r for r in rules if r.target == "MASQUERADE"]
    assert [r.out_interface for r in masq] == ["!br-f1322933b9af", "!docker0", None]
    assert masq[2].spec == DEV_HAIRPIN
    assert (masq[2].destination, masq[2].dport) == ("172.13.0.3/32", 8081)
    returns = [r.in_interface for r in rules if r.target == "RETURN"]
    assert returns == ["br-f1322933b9af", "docker0"]


def test_dev_jump_rules() -> None:
    jumps = analyze.jump_rules(_dev_rules("nat-before.txt"))
    assert [(r.chain, r.destination, r.dst_type_local, r.packets) for r in jumps] == [
        ("PREROUTING", None, True, 0),
        ("OUTPUT", "!127.0.0.0/8", True, 13),
    ]
    assert jumps[1].spec == DEV_OUTPUT_JUMP


def test_dev_counters_move_for_the_gateway_request_only() -> None:
    """capture.sh: nat-before, a request to 127.0.0.1, nat-after-loopback, a request to the
    gateway 172.13.0.1, nat-after-gateway."""
    before, loop, gw = (
        _dev_rules(n) for n in ("nat-before.txt", "nat-after-loopback.txt", "nat-after-gateway.txt")
    )
    assert [_packets(r, DEV_DNAT) for r in (before, loop, gw)] == [(1, 60), (1, 60), (2, 120)]
    assert [_packets(r, DEV_OUTPUT_JUMP) for r in (before, loop, gw)] == [
        (13, 780),
        (13, 780),
        (14, 840),
    ]
    assert analyze.diff_counters(before, loop) == []
    moves = analyze.diff_counters(loop, gw)
    assert [(m.chain, m.spec, m.packets_before, m.packets_after) for m in moves] == [
        ("OUTPUT", DEV_OUTPUT_JUMP, 13, 14),
        ("DOCKER", DEV_DNAT, 1, 2),
    ]


def test_dev_no_rule_case_drops_the_dnat_and_the_hairpin_masquerade() -> None:
    before = {r.spec for r in _dev_rules("nat-before.txt")}
    no_rule = _dev_rules("nat-no-rule.txt")
    assert analyze.dnat_rules_for(no_rule, 8090, "172.13.0.3", 8081) == []
    assert not [r for r in no_rule if r.target == "DNAT"]
    assert before - {r.spec for r in no_rule} == {DEV_DNAT, DEV_HAIRPIN}
    # The DOCKER chain and the jumps into it stay: they belong to the network, not the port.
    assert [r.in_interface for r in no_rule if r.chain == "DOCKER"] == [
        "br-f1322933b9af",
        "docker0",
    ]
    assert len(analyze.jump_rules(no_rule)) == 2


def test_loopback_only_dnat_rule_matches_only_127_0_0_1() -> None:
    rules = parse_iptables_save(read(LOOPBACK_ONLY, "nat-before.txt"))
    dnat = analyze.dnat_rules_for(rules, 18090, "10.213.0.3", 8081)
    assert [r.spec for r in dnat] == [LOOPBACK_ONLY_DNAT]
    assert dnat[0].destination == "127.0.0.1/32"
    assert dnat[0].in_interface == "!br-ffffbb9cfa24"


def test_iptables_save_other_tables_are_ignored() -> None:
    text = "*filter\n[5:300] -A FORWARD -j DOCKER-USER\nCOMMIT\n" + read(REAL, "nat-before.txt")
    rules = parse_iptables_save(text)
    assert len(rules) == 8
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
    assert read(REAL, "iptables-version.txt").strip() == "iptables v1.8.9 (nf_tables)"
    assert parse_iptables_version(read(REAL, "iptables-version.txt")) == "nf_tables"
    assert parse_iptables_version("iptables v1.8.7 (legacy)") == "legacy"
    assert parse_iptables_version("garbage") is None


# -- no privilege --------------------------------------------------------------------------------


def test_no_privilege_iptables_save_is_classified_as_permission() -> None:
    rc = int(read(REAL, "noperm-iptables-save.rc"))
    stderr = read(REAL, "noperm-iptables-save.stderr")
    assert rc == 4
    assert read(REAL, "noperm-iptables-save.stdout") == ""
    assert "Could not fetch rule set generation id: Permission denied (you must be root)" in stderr
    assert classify_command_error(rc, stderr) == "permission"


def test_no_privilege_nft_is_classified_as_permission() -> None:
    rc = int(read(REAL, "noperm-nft.rc"))
    stderr = read(REAL, "noperm-nft.stderr")
    assert rc == 1
    assert "Operation not permitted (you must be root)" in stderr
    assert classify_command_error(rc, stderr) == "permission"


def test_classify_other_errors() -> None:
    assert classify_command_error(0, "") == "ok"
    assert classify_command_error(127, "iptables-save: command not found") == "missing"
    assert classify_command_error(1, "iptables-save: unknown table") == "error"


# -- nft -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "port", "to_ip"),
    [(REAL, 8090, "172.13.0.3"), (LOOPBACK_ONLY, 18090, "10.213.0.3")],
)
def test_nft_and_iptables_agree_on_the_dnat_rule(scenario: str, port: int, to_ip: str) -> None:
    nft = parse_nft_table(read(scenario, "nft-nat.txt"))
    ipt = parse_iptables_save(read(scenario, "nat-before.txt"))
    nft_dnat = analyze.dnat_rules_for(nft, port, to_ip, 8081)
    ipt_dnat = analyze.dnat_rules_for(ipt, port, to_ip, 8081)
    assert len(nft_dnat) == len(ipt_dnat) == 1
    a, b = nft_dnat[0], ipt_dnat[0]
    fields = ("chain", "in_interface", "dport", "to_destination", "packets", "bytes")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    # iptables prints 127.0.0.1/32, nft prints 127.0.0.1: the same match.
    assert (a.destination or "").split("/")[0] == (b.destination or "").split("/")[0]
    assert a.syntax == "nft"
    assert "counter packets" not in a.spec
    assert "dnat to" in a.spec


def test_nft_dev_rules_and_counters() -> None:
    rules = parse_nft_table(read(REAL, "nft-nat.txt"))
    (dnat,) = [r for r in rules if r.target == "DNAT"]
    assert (
        dnat.spec == 'iifname != "br-f1322933b9af" tcp dport 8090 counter dnat to 172.13.0.3:8081'
    )
    assert (dnat.packets, dnat.bytes) == (1, 60)
    output = [r for r in analyze.jump_rules(rules) if r.chain == "OUTPUT"]
    assert len(output) == 1
    assert output[0].destination == "!127.0.0.0/8"
    assert output[0].dst_type_local
    assert (output[0].packets, output[0].bytes) == (13, 780)
    assert sorted(r.chain for r in rules if r.target == "MASQUERADE") == ["POSTROUTING"] * 3


def test_nft_json_hides_the_dnat_target_of_iptables_nft_rules() -> None:
    """Why the nft parser reads text: on the same rules, `nft -j` prints Docker's DNAT (written
    through iptables-nft) as an opaque xt target, without --to-destination."""
    listing = json.loads(read(REAL, "nft-nat.json"))["nftables"]
    docker_rules = [
        x["rule"]["expr"] for x in listing if x.get("rule", {}).get("chain") == "DOCKER"
    ]
    dnat = docker_rules[-1]
    assert dnat[-1] == {"xt": {"type": "target", "name": "DNAT"}}
    assert "172.13.0.3" not in json.dumps(dnat)
    assert "dnat to 172.13.0.3:8081" in read(REAL, "nft-nat.txt")


def test_nft_ignores_other_tables() -> None:
    text = "table ip filter {\n\tchain DOCKER {\n\t\tcounter packets 1 bytes 2 drop\n\t}\n}\n"
    assert parse_nft_table(text) == []


# -- ss ------------------------------------------------------------------------------------------


def test_ss_with_privilege_names_docker_proxy() -> None:
    text = read(REAL, "ss-listen.txt")
    assert [(x.local_address, x.port, x.process, x.pid) for x in parse_ss_listeners(text)] == [
        ("0.0.0.0", 8090, "docker-proxy", 1992),
        ("0.0.0.0", 2024, None, None),
    ]


def test_ss_loopback_only_listener() -> None:
    listeners = parse_ss_listeners(read(LOOPBACK_ONLY, "ss-listen.txt"))
    assert [(x.local_address, x.process) for x in listeners if x.port == 18090] == [
        ("127.0.0.1", "docker-proxy")
    ]


def test_ss_without_privilege_hides_process() -> None:
    text = read(REAL, "ss-listen-noperm.txt")
    assert all(x.process is None for x in parse_ss_listeners(text))
    listeners = [x for x in parse_ss_listeners(text) if x.port == 8090]
    assert [(x.local_address, x.process, x.pid) for x in listeners] == [("0.0.0.0", None, None)]


def test_ss_no_rule_case_has_no_listener_on_the_port() -> None:
    listeners = parse_ss_listeners(read(REAL, "ss-listen-no-rule.txt"))
    assert [(x.local_address, x.port) for x in listeners] == [("0.0.0.0", 2024)]


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
    hop = parse_network_inspect(read(REAL, "network-inspect.json"))
    assert hop.network_name == "c2c-dev-net"
    assert hop.interface == "br-f1322933b9af"
    assert hop.network_id.startswith("f1322933b9af10a5")
    assert (hop.subnet, hop.gateway) == ("172.13.0.0/16", "172.13.0.1")
    assert [(e.container, e.ipv4, e.mac) for e in hop.endpoints] == [
        ("c2c-dev-internal", "172.13.0.2", "02:42:ac:0d:00:02"),
        ("c2c-dev-external", "172.13.0.3", "02:42:ac:0d:00:03"),
    ]
    assert not hop.interface_present  # known only once the host's links are read
    assert json.loads(read(REAL, "network-inspect.json"))[0]["Labels"] == {
        "c2c.project": "c2c",
        "c2c.stack": "dev",
    }


def test_network_inspect_honours_a_bridge_name_option() -> None:
    data = json.loads(read(REAL, "network-inspect.json"))
    data[0]["Options"] = {"com.docker.network.bridge.name": "c2cbr0"}
    assert parse_network_inspect(data).interface == "c2cbr0"


def test_network_inspect_rejects_lists_of_several_and_no_ipam() -> None:
    data = json.loads(read(REAL, "network-inspect.json"))
    with pytest.raises(ParseError, match="expected one"):
        parse_network_inspect(data + data)
    data[0]["IPAM"]["Config"] = []
    with pytest.raises(ParseError, match="no IPAM config"):
        parse_network_inspect(data)


def test_container_inspect_env_ports_networks() -> None:
    internal, external = (
        parse_container_inspect(d) for d in json.loads(read(REAL, "containers-inspect.json"))
    )
    assert internal.name == "c2c-dev-internal"
    assert internal.port_bindings == []  # internal publishes no port
    assert internal.env["PORT"] == "8080"
    assert internal.networks == {"c2c-dev-net": ("172.13.0.2", "02:42:ac:0d:00:02")}
    assert external.name == "c2c-dev-external"
    assert (external.env["INTERNAL_URL"], external.env["PORT"]) == (
        "http://172.13.0.2:8080",
        "8081",
    )
    assert [
        (b.container_port, b.protocol, b.host_ip, b.host_port) for b in external.port_bindings
    ] == [(8081, "tcp", "0.0.0.0", 8090)]
    assert external.networks == {"c2c-dev-net": ("172.13.0.3", "02:42:ac:0d:00:03")}
    assert external.labels["c2c.stack"] == "dev"
    assert external.labels["c2c.service"] == "external"
    assert internal.running
    assert external.running


def test_container_inspect_loopback_only_binding() -> None:
    external = parse_container_inspect(
        json.loads(read(LOOPBACK_ONLY, "containers-inspect.json"))[1]
    )
    assert [(b.container_port, b.host_ip, b.host_port) for b in external.port_bindings] == [
        (8081, "127.0.0.1", 18090)
    ]


def test_container_inspect_empty_host_ip_means_every_address() -> None:
    doc = json.loads(read(REAL, "containers-inspect.json"))[1]
    doc["HostConfig"]["PortBindings"]["8081/tcp"][0]["HostIp"] = ""
    assert parse_container_inspect(doc).port_bindings[0].host_ip == "0.0.0.0"


def test_container_inspect_of_a_stopped_container_keeps_its_static_ip() -> None:
    doc = json.loads(read(REAL, "containers-inspect.json"))[1]
    doc["NetworkSettings"]["Networks"]["c2c-dev-net"]["IPAddress"] = ""
    assert parse_container_inspect(doc).networks["c2c-dev-net"][0] == "172.13.0.3"


# -- links and addresses -------------------------------------------------------------------------


def test_host_links_from_netlink() -> None:
    hosts = parse_ip_addr(read(REAL, "ip-addr.json"))
    assert [(h.ifindex, h.name, h.master) for h in hosts] == [
        (1, "lo", None),
        (2, "ifb0", None),
        (3, "ifb1", None),
        (4, "eth0", None),
        (61, "docker0", None),
        (121, "br-f1322933b9af", None),
        (123, "veth96e917c", "br-f1322933b9af"),
        (125, "veth6210463", "br-f1322933b9af"),
    ]


def test_container_links_from_sysfs() -> None:
    assert [
        parse_sysfs_link(read(REAL, f"exec-{name}-eth0.txt"))
        for name in ("c2c-dev-internal", "c2c-dev-external")
    ] == [(123, "02:42:ac:0d:00:02"), (125, "02:42:ac:0d:00:03")]


def test_sysfs_link_rejects_what_is_not_iflink_and_mac() -> None:
    assert parse_sysfs_link("125\n02:42:AC:0D:00:03\n") == (125, "02:42:ac:0d:00:03")
    assert parse_sysfs_link("") is None
    assert parse_sysfs_link("cat: /sys/class/net/eth1/iflink: No such file or directory") is None


def test_veths_are_matched_through_iflink() -> None:
    bridge = parse_network_inspect(read(REAL, "network-inspect.json"))
    hosts = parse_ip_addr(read(REAL, "ip-addr.json"))
    conts = [
        ContainerLink("c2c-dev-internal", "eth0", 123, "02:42:ac:0d:00:02"),
        ContainerLink("c2c-dev-external", "eth0", 125, "02:42:ac:0d:00:03"),
    ]
    joined = analyze.attach_veths(bridge, hosts, conts)
    assert joined.interface_present
    assert [
        (e.container, e.container_ifname, e.host_veth, e.host_ifindex, e.veth_master)
        for e in joined.endpoints
    ] == [
        ("c2c-dev-internal", "eth0", "veth96e917c", 123, "br-f1322933b9af"),
        ("c2c-dev-external", "eth0", "veth6210463", 125, "br-f1322933b9af"),
    ]


def test_veth_is_not_guessed_when_the_mac_differs() -> None:
    bridge = parse_network_inspect(read(REAL, "network-inspect.json"))
    hosts = parse_ip_addr(read(REAL, "ip-addr.json"))
    wrong = [ContainerLink("c2c-dev-external", "eth0", 125, "02:42:ac:0d:00:99")]
    joined = analyze.attach_veths(bridge, hosts, wrong)
    assert [e.host_veth for e in joined.endpoints] == [None, None]


def test_ip_addr_lists_ipv4_only() -> None:
    links = parse_ip_addr(read(REAL, "ip-addr.json"))
    assert [(link.name, [str(a) for a in link.ipv4]) for link in links if link.ipv4] == [
        ("lo", ["127.0.0.1/8"]),
        ("eth0", ["192.0.2.2/24"]),  # its inet6 addresses are left out
        ("docker0", ["172.17.0.1/16"]),
        ("br-f1322933b9af", ["172.13.0.1/16"]),
    ]
    with pytest.raises(ParseError, match="not JSON"):
        parse_ip_addr("1: lo    inet 127.0.0.1/8 scope host lo")  # `ip -o addr`, not -j


# -- service JSON --------------------------------------------------------------------------------


def test_service_responses_of_the_dev_stack() -> None:
    gateway = parse_service_response(read(REAL, "response-gateway.json"))
    assert (gateway["client_ip"], gateway["container_ip"], gateway["hostname"]) == (
        "172.13.0.1",
        "172.13.0.3",
        "c2c-dev-external",
    )
    up = gateway["upstream"]
    assert (up["client_ip"], up["container_ip"], up["hostname"]) == (
        "172.13.0.3",
        "172.13.0.2",
        "c2c-dev-internal",
    )
    assert gateway["upstream_ms"] == 1.577
    loopback = parse_service_response(read(REAL, "response-loopback.json"))
    # Through docker-proxy external also sees the gateway: the proxy connects from there.
    assert loopback["client_ip"] == "172.13.0.1"
    assert loopback["upstream_ms"] == 2.422


def test_service_response_errors() -> None:
    with pytest.raises(ParseError, match="upstream_unreachable"):
        parse_service_response(
            json.dumps({"error": "upstream_unreachable", "message": "x", "status": 502})
        )
    with pytest.raises(ParseError, match="JSON"):
        parse_service_response("<html>")
    data = json.loads(read(REAL, "response-gateway.json"))
    del data["upstream_ms"]
    with pytest.raises(ParseError, match="upstream_ms"):
        parse_service_response(json.dumps(data))
