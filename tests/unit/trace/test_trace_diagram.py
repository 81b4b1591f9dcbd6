"""The diagram is built from the trace's facts (graph source checked without Graphviz; the SVG
and PNG when `dot` is installed)."""

from __future__ import annotations

import html
import shutil
from pathlib import Path

import pytest

from packet_trace import diagram
from packet_trace.collect import collect
from tests.unit.trace.trace_fixtures import FixtureSources


def test_graph_carries_the_live_facts(allif_sources: FixtureSources) -> None:
    source = diagram.build(collect(allif_sources, "tracefixture")).source
    for fact in (
        "br-6553bd1a3939",
        "10.213.0.0/24",
        "10.213.0.1",
        "c2c-tracefixture-external",
        "10.213.0.3:8081",
        "c2c-tracefixture-internal",
        "10.213.0.2:8080",
        "--to-destination 10.213.0.3:8081",
        "docker-proxy",
        "counter +1 during the trace",
    ):
        assert fact in source, fact


def test_traced_path_is_the_highlighted_one(
    allif_sources: FixtureSources, loopback_sources: FixtureSources
) -> None:
    dnat = diagram.build(collect(allif_sources, "tracefixture")).source
    proxy = diagram.build(collect(loopback_sources, "tracefixture")).source
    assert '"1. to 10.213.0.1:18090' in dnat.replace("label=", "")
    assert '"1. to 127.0.0.1:18090"' in proxy.replace("label=", "")


def test_nothing_to_draw_without_outputs(loopback_sources: FixtureSources) -> None:
    with pytest.raises(ValueError, match="nothing to draw"):
        diagram.build(collect(loopback_sources, "nosuch"))


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")
def test_writes_svg_and_png(allif_sources: FixtureSources, tmp_path: Path) -> None:
    written = diagram.write(collect(allif_sources, "tracefixture"), tmp_path / "topology")
    svg, png = written
    text = svg.read_text()
    # Graphviz writes '-' as '&#45;' in SVG text.
    assert text.lstrip().startswith("<?xml")
    assert "br-6553bd1a3939" in html.unescape(text)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
