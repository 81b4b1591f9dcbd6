"""The diagram of a multi-host trace: the client, external's host (nat table, docker_gwbridge,
the overlay's namespace), the underlay between the hosts, internal's host. Same style as
packet_trace.diagram: the traced request is solid blue and numbered."""

from __future__ import annotations

from urllib.parse import urlsplit

import graphviz

from packet_trace.diagram import FONT, OTHER, TRACED, _lines, _wrapped, app_lines
from packet_trace.model import OverlayHostView, Trace, TraceHost


def _counts(view: OverlayHostView | None) -> str | None:
    if view is None or not view.counts:
        return None
    port = view.vxlan.dstport if view.vxlan else "?"
    moved = ", ".join(
        f"{'sent' if c.chain == 'OUTPUT' else 'received'} +{c.delta}" for c in view.counts
    )
    return f"UDP {port} during the trace: {moved}"


def _host_cluster(
    g: graphviz.Digraph, host: TraceHost | None, view: OverlayHostView | None, key: str
) -> graphviz.Digraph:
    label = "host ?"
    if host is not None:
        label = _lines(
            f"host {host.name}  {host.address}",
            f"netns {host.netns_name or host.netns or '(not reachable)'}",
        )
    cluster = graphviz.Digraph(name=f"cluster_{key}")
    cluster.attr(label=label, style="rounded", color="#57606a", fontname=FONT)
    cluster.node(
        f"{key}_underlay",
        _lines(
            f"underlay {view.underlay_interface if view and view.underlay_interface else '?'}"
            + (f"  MTU {view.underlay_mtu}" if view and view.underlay_mtu else ""),
            host.address if host else None,
            _counts(view),
        ),
        shape="box",
        fillcolor="#fff8c5",
    )
    return cluster


def _overlay_cluster(
    parent: graphviz.Digraph, view: OverlayHostView | None, key: str, network: str
) -> graphviz.Digraph:
    cluster = graphviz.Digraph(name=f"cluster_{key}_overlay")
    cluster.attr(
        label=_lines(f"overlay {network}", view.netns if view and view.netns else None),
        style="rounded,filled",
        fillcolor="#ddf4ff",
        color="#54aeff",
    )
    vx = view.vxlan if view else None
    cluster.node(
        f"{key}_vxlan",
        _lines(
            f"{vx.name}  VNI {vx.vni}" if vx else "vxlan: not read",
            f"UDP port {vx.dstport}, MTU {vx.mtu}" if vx else None,
        ),
        fillcolor="#ffebe9",
    )
    br = view.bridge if view else None
    cluster.node(
        f"{key}_br",
        _lines(br.name if br else "bridge", ", ".join(br.ipv4) if br else None),
        shape="ellipse",
    )
    return cluster


def build_hosts(trace: Trace) -> graphviz.Digraph:
    out, overlay, nat, req, svc = (
        trace.outputs,
        trace.overlay,
        trace.nat,
        trace.request,
        trace.services,
    )
    assert out is not None
    assert overlay is not None
    ext_host, int_host = trace.service_host("external"), trace.service_host("internal")
    a = ext_host.name if ext_host else "external's host"
    views = {v.host: v for v in overlay.hosts}
    va = views.get(ext_host.name) if ext_host else None
    vb = views.get(int_host.name) if int_host else None
    eps = {e.service: e for e in overlay.endpoints}

    g = graphviz.Digraph("c2c", format="svg")
    # Top to bottom: the path is long, and the two hosts then stand side by side.
    g.attr(rankdir="TB", fontname=FONT, labelloc="t", fontsize="16", compound="true")
    g.attr(
        label=f"c2c stack '{out.stack}' across two hosts: the path of one request (generated "
        "from live state by python -m packet_trace diagram)"
    )
    g.attr(
        "node", fontname=FONT, fontsize="11", shape="box", style="rounded,filled", fillcolor="white"
    )
    g.attr("edge", fontname=FONT, fontsize="10")
    target = req.target_ip if req else out.host_address
    g.node(
        "client",
        _lines("client (the trace's namespace)", f"GET http://{target}:{out.host_port}/"),
        fillcolor="#f6f8fa",
    )

    host_a = _host_cluster(g, ext_host, va, "a")
    rule = nat.dnat_rules[0] if nat and nat.dnat_rules else None
    counter = (
        f"counter +{nat.dnat_moved_by} during the trace"
        if nat and nat.dnat_moved_by is not None
        else None
    )
    host_a.node(
        "nat",
        _lines(f"nat table of host {a}, chain {rule.chain}", _wrapped(rule.spec), counter)
        if rule
        else "nat table: no DNAT rule read",
        fillcolor="#ffebe9",
    )
    listeners = trace.host_port.listeners if trace.host_port else []
    if listeners:
        x = listeners[0]
        host_a.node(
            "proxy",
            _lines(
                f"{x.process or 'listener'}" + (f" (pid {x.pid})" if x.pid else ""),
                f"listens {x.local_address}:{x.port}",
            ),
            fillcolor="#fff8c5",
        )
    host_a.node(
        "gwbridge",
        _lines(
            overlay.gwbridge_network,
            f"external there: {overlay.published_via or '?'}",
        ),
        shape="ellipse",
    )
    ext = eps.get("external")
    overlay_a = _overlay_cluster(host_a, va, "a", overlay.network_name)
    ext_port = trace.host_port.container_port if trace.host_port else None
    overlay_a.node(
        "external",
        _lines(
            ext.container if ext else "external",
            f"{out.external_ip}:{ext_port}" if ext_port else out.external_ip,
            f"mac {ext.mac}" if ext else None,
            *app_lines(trace, "external"),
        ),
    )
    host_a.subgraph(overlay_a)
    g.subgraph(host_a)

    host_b = _host_cluster(g, int_host, vb, "b")
    overlay_b = _overlay_cluster(host_b, vb, "b", overlay.network_name)
    intl = eps.get("internal")
    int_port = urlsplit(svc.internal_url if svc and svc.internal_url else out.internal_url).port
    overlay_b.node(
        "internal",
        _lines(
            (intl.container if intl else "internal") + " (no published port)",
            f"{out.internal_ip}:{int_port}" if int_port else out.internal_ip,
            f"mac {intl.mac}" if intl else None,
            *app_lines(trace, "internal"),
        ),
    )
    host_b.subgraph(overlay_b)
    g.subgraph(host_b)

    kept = svc.external_client_ip if svc and svc.external_client_ip else None
    g.edge("client", "nat", label=f"1. to {target}:{out.host_port}\nPREROUTING -> DOCKER", **TRACED)
    if listeners:
        g.edge("client", "proxy", label="not taken: the nat table rewrites it first", **OTHER)
    dnat_to = rule.to_destination if rule else f"{overlay.published_via}:?"
    g.edge(
        "nat",
        "gwbridge",
        label=f"2. DNAT to {dnat_to}" + (f"\nsource kept: {kept}" if kept else ""),
        **TRACED,
    )
    g.edge("gwbridge", "external", **TRACED)
    g.edge(
        "external",
        "a_br",
        label=f"3. GET {svc.internal_url if svc and svc.internal_url else out.internal_url}",
        **TRACED,
    )
    g.edge("a_br", "a_vxlan", **TRACED)
    step = overlay.forward
    fdb = f"fdb {step.mac}\n-> dst {step.vtep}" if step and step.vtep else "fdb: not read"
    g.edge("a_vxlan", "a_underlay", label=fdb, **TRACED)
    vni = va.vxlan.vni if va and va.vxlan else "?"
    g.edge("a_underlay", "b_underlay", label=f"4. VXLAN, VNI {vni}", **TRACED)
    g.edge("b_underlay", "b_vxlan", **TRACED)
    g.edge("b_vxlan", "b_br", **TRACED)
    int_client = svc.internal_client_ip if svc and svc.internal_client_ip else out.external_ip
    upstream = f", {svc.upstream_ms:.1f} ms" if svc and svc.upstream_ms is not None else ""
    g.edge("b_br", "internal", label=f"5. internal sees client {int_client}{upstream}", **TRACED)
    return g
