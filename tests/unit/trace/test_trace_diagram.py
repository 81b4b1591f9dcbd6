"""The diagram is built from the trace's facts (graph source checked without Graphviz; the SVG
and PNG when `dot` is installed), on the replayed captures of the real dev stack."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pytest

from packet_trace import diagram
from packet_trace.collect import collect
from tests.unit.trace.trace_fixtures import REAL, FixtureSources


def test_graph_carries_the_live_facts(dev_sources: FixtureSources) -> None:
    source = diagram.build(collect(dev_sources, "dev")).source
    for fact in (
        "c2c stack 'dev'",
        "bridge br-f1322933b9af  subnet 172.13.0.0/16",
        "network c2c-dev-net",
        "gateway (host side)\n172.13.0.1",
        "c2c-dev-external\n172.13.0.3:8081\nmac 02:42:ac:0d:00:03",
        "eth0 <-> veth6210463 (ifindex 125)",
        "c2c-dev-internal (no published port)\n172.13.0.2:8080",
        "eth0 <-> veth96e917c (ifindex 123)",
        "--to-destination 172.13.0.3:8081",
        "docker-proxy (pid 1992)\nlistens 0.0.0.0:8090",
        "counter +1 during the trace",
        "source kept: 172.13.0.1",
        "internal sees client 172.13.0.3, 1.6 ms",
    ):
        assert fact in source, fact


def test_traced_path_is_the_numbered_one(dev_sources: FixtureSources) -> None:
    dnat = diagram.build(collect(dev_sources, "dev")).source
    assert "1. to 172.13.0.1:8090" in dnat
    assert '"2. DNAT to 172.13.0.3:8081' in dnat
    assert "1. to 127.0.0.1:8090" not in dnat
    proxy_sources = FixtureSources(REAL)
    proxy = diagram.build(collect(proxy_sources, "dev", via="loopback")).source
    assert '"1. to 127.0.0.1:8090"' in proxy
    assert '"2. new connection"' in proxy
    assert "from 172.13.0.1" in proxy


def test_unreadable_nat_table_is_drawn_as_such() -> None:
    trace = collect(FixtureSources(REAL, root=False), "dev")
    assert "nat table (not readable: run as root)" in diagram.build(trace).source


def test_nothing_to_draw_without_outputs(dev_sources: FixtureSources) -> None:
    with pytest.raises(ValueError, match="nothing to draw"):
        diagram.build(collect(dev_sources, "nosuch"))


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")
def test_writes_svg_and_png(dev_sources: FixtureSources, tmp_path: Path) -> None:
    written = diagram.write(collect(dev_sources, "dev"), tmp_path / "topology")
    svg, png = written
    assert (svg.name, png.name) == ("topology.svg", "topology.png")
    text = svg.read_text()
    # Graphviz writes '-' as '&#45;' in SVG text.
    assert text.lstrip().startswith("<?xml")
    assert "br-f1322933b9af" in html.unescape(text)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
