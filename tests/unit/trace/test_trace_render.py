"""The text report, the summary and the JSON document, from traces collected on the replayed
captures of the real dev stack."""

from __future__ import annotations

import json
from pathlib import Path

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
from tests.unit.trace.trace_fixtures import REAL, FixtureSources

HEADINGS = (
    "1. Client -> host port",
    "2. NAT table",
    "3. Bridge",
    "4. External -> internal",
    "5. Summary",
)
DEV_DNAT = (
    "-A DOCKER ! -i br-f1322933b9af -p tcp -m tcp --dport 8090 "
    "-j DNAT --to-destination 172.13.0.3:8081"
)


def _dev_text(*, root: bool = True, no_rule: bool = False, refuse: bool = False) -> str:
    sources = FixtureSources(REAL, root=root, no_rule=no_rule, refuse=refuse)
    return render.render_text(collect(sources, "dev"))


def test_report_has_all_five_parts_in_order(dev_sources: FixtureSources) -> None:
    text = render.render_text(collect(dev_sources, "dev"))
    positions = [text.index(h) for h in HEADINGS]
    assert positions == sorted(positions)
    assert text.startswith(
        "Packet trace of stack 'dev' (facts from docker-labels): endpoint http://localhost:8090\n"
    )
    assert "Problems" not in text
    assert "Notes" not in text


def test_part_1_the_socket_and_its_process(dev_sources: FixtureSources) -> None:
    lines = render.render_text(collect(dev_sources, "dev")).splitlines()
    assert "1. Client -> host port 8090" in lines
    assert "   published: 0.0.0.0:8090 -> external's container port 8081" in lines
    assert "   listening socket: 0.0.0.0:8090  held by docker-proxy (pid 1992)" in lines


def test_part_2_the_rule_verbatim_and_its_counter(dev_sources: FixtureSources) -> None:
    lines = render.render_text(collect(dev_sources, "dev")).splitlines()
    assert "2. NAT table (`iptables-save -t nat -c`, iptables backend nf_tables)" in lines
    assert f"     {DEV_DNAT}" in lines
    assert "     -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER   [0 pkts]" in lines
    assert (
        "     -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER   [13 pkts]"
        in lines
    )
    assert "   traced request (sent): GET http://172.13.0.1:8090/" in lines
    assert "   DNAT packet counter: 1 before, 2 after (+1)" in lines
    assert (
        "     13 -> 14  OUTPUT: -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"
        in lines
    )
    assert f"     1 -> 2  DOCKER: {DEV_DNAT}" in lines


def test_part_3_the_bridge_and_veths(dev_sources: FixtureSources) -> None:
    lines = render.render_text(collect(dev_sources, "dev")).splitlines()
    assert "3. Bridge br-f1322933b9af" in lines
    assert (
        "   network c2c-dev-net (id f1322933b9af), subnet 172.13.0.0/16, gateway 172.13.0.1 "
        "(the host's own address on the bridge)" in lines
    )
    assert (
        "   c2c-dev-internal             172.13.0.2      02:42:ac:0d:00:02  eth0    "
        "veth96e917c (123) -> br-f1322933b9af" in lines
    )
    assert (
        "   c2c-dev-external             172.13.0.3      02:42:ac:0d:00:03  eth0    "
        "veth6210463 (125) -> br-f1322933b9af" in lines
    )


def test_part_4_url_client_ips_and_times(dev_sources: FixtureSources) -> None:
    lines = render.render_text(collect(dev_sources, "dev")).splitlines()
    i = lines.index("4. External -> internal")
    assert lines[i + 1 : i + 6] == [
        "   external called INTERNAL_URL=http://172.13.0.2:8080 (from its container's env)",
        "   external (172.13.0.3, hostname c2c-dev-external) saw client 172.13.0.1",
        "   internal (172.13.0.2, hostname c2c-dev-internal) saw client 172.13.0.3",
        "   client <-> external: 12.5 ms (whole request, measured here)",
        "   external <-> internal: 1.6 ms (upstream_ms from external)",
    ]


def test_part_5_summary_of_the_dnat_path(dev_sources: FixtureSources) -> None:
    s = render.summarize(collect(dev_sources, "dev"))
    for fact in (
        "A request from this host to 172.13.0.1:8090 passed the nat table's OUTPUT chain",
        f"`{DEV_DNAT}` rewrote its destination to 172.13.0.3:8081",
        "its packet counter moved by 1",
        "bridge br-f1322933b9af (172.13.0.0/16, gateway 172.13.0.1) and its veth veth6210463",
        "with its source address unchanged: external saw client 172.13.0.1",
        "called internal at http://172.13.0.2:8080",
        "internal saw client 172.13.0.3, external's own address",
        "The whole request took 12.5 ms, of which 1.6 ms was external waiting for internal.",
    ):
        assert fact in s, fact
    assert "\n" not in s  # one paragraph


def test_summary_of_the_docker_proxy_path() -> None:
    sources = FixtureSources(REAL)
    trace = collect(sources, "dev", via="loopback")
    s = render.summarize(trace)
    assert s.startswith(
        "A request to 127.0.0.1:8090 was accepted on the host by docker-proxy (pid 1992) on "
        "0.0.0.0:8090; loopback traffic skips the nat table's DOCKER chain, so the DNAT rule to "
        "172.13.0.3:8081 did not count it (+0)."
    )
    assert "from 172.13.0.1 — the host's own address on the bridge" in s
    assert "of which 2.4 ms was external waiting for internal" in s
    explanation = render.explain_nat(trace)
    assert "never meets the DNAT rule (no nat counter moved)" in explanation
    assert "docker-proxy (pid 1992) on 0.0.0.0:8090 accepted the connection" in explanation
    # The port is published on every address: no loopback-only remark.
    assert "matches only destination" not in explanation
    text = render.render_text(trace)
    assert "   DNAT packet counter: 1 before, 1 after (+0)" in text.splitlines()
    assert "   every nat counter that moved: none" in text.splitlines()


def test_loopback_only_port_is_explained(loopback_only_sources: FixtureSources) -> None:
    trace = collect(loopback_only_sources, "tracefixture")
    explanation = render.explain_nat(trace)
    assert "This DNAT rule matches only destination 127.0.0.1/32" in explanation
    assert "no request from this host can move its counter" in explanation
    assert "did not count it (+0)" in render.summarize(trace)
    text = render.render_text(trace)
    assert "   listening socket: 127.0.0.1:18090  held by docker-proxy (pid 19428)" in text


def test_no_privilege_report_says_what_to_do() -> None:
    text = _dev_text(root=False)
    lines = text.splitlines()
    assert "   listening socket: 0.0.0.0:8090  held by process hidden (run as root)" in lines
    assert "Problems (what could not be read, and what to do):" in lines
    assert "  - [host-port] ss shows who listens on port 8090 only to root" in lines
    assert "Permission denied (you must be root)" in text
    assert "sudo make trace" in text
    assert "The nat table could not be read, so neither the DNAT rule nor its counter" in text
    assert "DNAT packet counter" not in text
    # Everything else still printed from live state.
    assert "veth6210463 (125) -> br-f1322933b9af" in text
    assert "   internal (172.13.0.2, hostname c2c-dev-internal) saw client 172.13.0.3" in lines
    flat = " ".join(line.strip() for line in lines)
    assert "Some facts could not be read (nat-permission, ss-no-process)" in flat


def test_no_rule_report_does_not_claim_anything_accepted_the_request() -> None:
    text = _dev_text(no_rule=True)
    flat = " ".join(line.strip() for line in text.splitlines())
    assert "listening socket: none on port 8090; and no DNAT rule either" in flat
    assert "No DNAT rule maps port 8090 to 172.13.0.3" in flat
    assert "met neither a DNAT rule nor a listening socket" in flat
    assert "accepted" not in flat
    assert "That proxy" not in flat
    assert "The request failed (ConnectionRefusedError: [Errno 111] Connection refused)" in flat
    assert "-> ConnectionRefusedError: [Errno 111] Connection refused what to do" in flat


def test_refused_request_report() -> None:
    """The request passed the DNAT rule but external refused it (it was restarting)."""
    text = _dev_text(refuse=True)
    lines = text.splitlines()
    flat = " ".join(line.strip() for line in lines)
    assert "   DNAT packet counter: 1 before, 2 after (+1)" in lines
    assert "   client <-> external: 0.3 ms (until it failed, measured here)" in lines
    assert "   external <-> internal: unknown (upstream_ms from external)" in lines
    assert "saw client" not in text
    assert "its packet counter moved by 1" in flat
    assert "The request failed (ConnectionRefusedError: [Errno 111] Connection refused)" in flat
    assert "  - [services] GET http://172.13.0.1:8090/ -> ConnectionRefusedError: [Errno 111]" in (
        text
    )
    assert "Connection refused:" not in flat  # no empty body tacked on


def test_json_document_has_the_same_facts(dev_sources: FixtureSources) -> None:
    data = json.loads(render.render_json(collect(dev_sources, "dev")))
    assert data["stack"] == "dev"
    assert data["outputs"]["host_port"] == 8090
    assert data["outputs"]["endpoint"] == "http://localhost:8090"
    assert data["host_port"]["listeners"] == [
        {"local_address": "0.0.0.0", "port": 8090, "process": "docker-proxy", "pid": 1992}
    ]
    assert data["request"]["target_ip"] == "172.13.0.1"
    assert data["request"]["path_kind"] == "dnat"
    assert data["nat"]["dnat_moved_by"] == 1
    assert data["nat"]["dnat_rules"][0]["spec"] == DEV_DNAT
    assert [
        (m["chain"], m["packets_before"], m["packets_after"], m["delta"])
        for m in data["nat"]["moves"]
    ] == [
        ("OUTPUT", 13, 14, 1),
        ("DOCKER", 1, 2, 1),
    ]
    assert data["bridge"]["interface"] == "br-f1322933b9af"
    assert [e["host_veth"] for e in data["bridge"]["endpoints"]] == ["veth96e917c", "veth6210463"]
    assert data["services"]["internal_client_ip"] == "172.13.0.3"
    assert data["services"]["upstream_ms"] == 1.577
    assert data["summary"] == render.summarize(collect(FixtureSources(REAL), "dev"))
    assert data["nat"]["explanation"].startswith("The request was opened by this host")
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
        8090,
        "172.13.0.2",
        "172.13.0.3",
        "172.13.0.0/16",
        "172.13.0.1",
        "c2c-dev-net",
        "http://172.13.0.2:8080",
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
    assert "listening socket: none on port 8090; the userland proxy is off" in text
    assert "DNAT packet counter: 4 before, 5 after (+1)" in text


def _block(text: str, heading: str) -> list[str]:
    """The lines of one numbered part of a report, from its heading to the next blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = lines.index("", start)
    return lines[start:end]


def test_docs_quote_the_same_parts_1_and_3_the_fixtures_render(dev_sources: FixtureSources) -> None:
    """The real `make trace` in docs/packet-trace.md ran just before real-dev was captured, on the
    same docker-proxy and veths, so its parts 1 and 3 are exactly what the replay renders."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "packet-trace.md").read_text()
    section = doc[doc.index("## Real output") :]
    quoted = section.split("```\n")[1]
    rendered = render.render_text(collect(dev_sources, "dev"))
    for heading in ("1. Client -> host port", "3. Bridge"):
        assert _block(quoted, heading) == _block(rendered, heading), heading
    # Part 2 differs only in the counters: the quoted run moved the DNAT rule 0 -> 1.
    assert "   DNAT packet counter: 0 before, 1 after (+1)" in quoted.splitlines()
