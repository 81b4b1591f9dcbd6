"""The text report and the summary, from traces collected on replayed captures."""

from __future__ import annotations

import json

from packet_trace import render
from packet_trace.collect import collect
from packet_trace.model import (
    CounterMove,
    HostPortHop,
    NatHop,
    NatRule,
    ServiceHop,
    StackOutputs,
    Trace,
    TracedRequest,
)
from tests.unit.trace.trace_fixtures import FixtureSources

HEADINGS = (
    "1. Client -> host port",
    "2. NAT table",
    "3. Bridge",
    "4. External -> internal",
    "5. Summary",
)


def test_report_has_all_five_parts_with_live_values(allif_sources: FixtureSources) -> None:
    text = render.render_text(collect(allif_sources, "tracefixture"))
    positions = [text.index(h) for h in HEADINGS]
    assert positions == sorted(positions)
    # Part 1: the socket and its process.
    assert "0.0.0.0:18090  held by docker-proxy (pid " in text
    # Part 2: the rule verbatim, and its counter before/after.
    assert (
        "-A DOCKER ! -i br-6553bd1a3939 -p tcp -m tcp --dport 18090 -j DNAT "
        "--to-destination 10.213.0.3:8081" in text
    )
    assert "DNAT packet counter: 0 before, 1 after (+1)" in text
    assert "GET http://10.213.0.1:18090/" in text
    # Part 3: bridge, subnet, gateway, veths.
    assert "3. Bridge br-6553bd1a3939" in text
    assert "subnet 10.213.0.0/24, gateway 10.213.0.1" in text
    assert "02:42:0a:d5:00:03" in text
    assert "-> br-6553bd1a3939" in text
    # Part 4: URL, client IPs, times.
    assert "INTERNAL_URL=http://10.213.0.2:8080" in text
    assert "saw client 10.213.0.1" in text
    assert "saw client 10.213.0.3" in text
    assert "client <-> external: 12.5 ms" in text


def test_summary_mentions_the_real_values_dnat_path(allif_sources: FixtureSources) -> None:
    trace = collect(allif_sources, "tracefixture")
    s = trace.summary
    for fact in (
        "10.213.0.1:18090",
        "10.213.0.3:8081",
        "br-6553bd1a3939",
        "10.213.0.0/24",
        "http://10.213.0.2:8080",
        "moved by 1",
        "12.5 ms",
    ):
        assert fact in s, fact
    veth = next(
        e.host_veth
        for e in trace.bridge.endpoints  # type: ignore[union-attr]
        if e.ipv4 == "10.213.0.3"
    )
    assert veth
    assert veth in s
    assert "\n" not in s  # one paragraph


def test_summary_of_docker_proxy_path(loopback_sources: FixtureSources) -> None:
    trace = collect(loopback_sources, "tracefixture")
    s = trace.summary
    assert "docker-proxy (pid " in s
    assert "127.0.0.1:18090" in s
    assert "did not count it (+0)" in s
    assert "10.213.0.1" in s
    assert "internal saw client 10.213.0.3" in s
    explanation = trace.nat.explanation  # type: ignore[union-attr]
    assert "matches only destination 127.0.0.1/32" in explanation
    assert "no nat counter moved" in explanation


def test_no_privilege_report_says_what_to_do() -> None:
    trace = collect(FixtureSources("standin-loopback", mode="noperm"), "tracefixture")
    text = render.render_text(trace)
    assert "Problems (what could not be read, and what to do):" in text
    assert "Permission denied (you must be root)" in text
    assert "sudo make trace" in text
    assert "process hidden (run as root)" in text
    assert "5. Summary" in text
    assert "internal saw client 10.213.0.3" in text


def test_json_document_has_the_same_facts(allif_sources: FixtureSources) -> None:
    data = json.loads(render.render_json(collect(allif_sources, "tracefixture")))
    assert data["outputs"]["host_port"] == 18090
    assert data["nat"]["dnat_moved_by"] == 1
    assert data["nat"]["dnat_rules"][0]["to_destination"] == "10.213.0.3:8081"
    assert {m["chain"]: m["delta"] for m in data["nat"]["moves"]} == {"OUTPUT": 1, "DOCKER": 1}
    assert data["bridge"]["interface"] == "br-6553bd1a3939"
    assert data["services"]["internal_client_ip"] == "10.213.0.3"
    assert data["summary"]
    assert data["problems"] == []


def _proxy_off_trace() -> Trace:
    """A loopback request through DNAT, as with dockerd --userland-proxy=false (not capturable
    on this host, whose dockerd runs with the proxy): built by hand from plausible facts."""
    rule = NatRule(
        chain="DOCKER",
        spec="-A DOCKER ! -i br-abc -p tcp -m tcp --dport 8090 -j DNAT "
        "--to-destination 172.13.0.3:8081",
        packets=4,
        bytes=240,
        syntax="iptables",
        target="DNAT",
        dport=8090,
        to_destination="172.13.0.3:8081",
    )
    jump = NatRule(
        "OUTPUT",
        "-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER",
        9,
        540,
        "iptables",
        "DOCKER",
        dst_type_local=True,
    )
    masq = "-A POSTROUTING -o br-abc -m addrtype --src-type LOCAL -j MASQUERADE"
    outputs = StackOutputs(
        "dev",
        "http://localhost:8090",
        "172.13.0.2",
        "172.13.0.3",
        "172.13.0.0/16",
        "172.13.0.1",
        "c2c-dev-net",
        "http://172.13.0.2:8080",
        "pulumi",
    )
    return Trace(
        stack="dev",
        outputs=outputs,
        host_port=HostPortHop(8090, "0.0.0.0", 8081, []),
        request=TracedRequest("127.0.0.1", 8090, "loopback passes DNAT", "dnat", 200, 9.0),
        nat=NatHop(
            "nf_tables",
            "iptables-save -t nat -c",
            True,
            [rule],
            [jump],
            [CounterMove("DOCKER", rule.spec, 4, 5), CounterMove("POSTROUTING", masq, 0, 1)],
            1,
        ),
        services=ServiceHop(
            "http://172.13.0.2:8080",
            "172.13.0.1",
            "172.13.0.3",
            "e",
            "172.13.0.3",
            "172.13.0.2",
            "i",
            9.0,
            4.0,
        ),
    )


def test_proxy_off_loopback_dnat_is_explained_from_the_moves() -> None:
    trace = _proxy_off_trace()
    summary = render.summarize(trace)
    assert "127.0.0.1:8090" in summary
    assert "MASQUERADE rule in POSTROUTING replaced its source address" in summary
    assert "external saw client 172.13.0.1" in summary
    assert "unchanged" not in summary
    explanation = render.explain_nat(trace)
    assert "does not exclude loopback" in explanation
    text = render.render_text(trace)
    assert "listening socket: none on port 8090" in text
    assert "DNAT packet counter: 4 before, 5 after (+1)" in text
