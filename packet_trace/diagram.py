"""A topology diagram (SVG and PNG) drawn with graphviz from the same Trace the text report uses.

Needs Graphviz's `dot` binary (Debian package `graphviz`) besides the `graphviz` Python package.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import graphviz

from packet_trace.model import BridgeEndpoint, Trace

FONT = "Helvetica"
TRACED = {"color": "#1f6feb", "fontcolor": "#1f6feb", "penwidth": "2.2"}
OTHER = {"color": "#8b949e", "fontcolor": "#57606a", "style": "dashed"}


def _lines(*parts: str | None) -> str:
    return "\n".join(p for p in parts if p)


def _wrapped(text: str, width: int = 60) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))


def app_lines(trace: Trace, service: str) -> list[str]:
    """The app containers in a service's sandbox, for its box (none without a sandbox)."""
    space = next((n for n in trace.namespaces or [] if n.service == service), None)
    if space is None:
        return []
    apps = [f"app {a.name}" + ("" if a.running else " (stopped)") for a in space.apps]
    return ["sandbox: owns the namespace, the address", *(apps or ["app: none"])]


def _container_label(
    ep: BridgeEndpoint | None,
    service: str,
    ip: str,
    port: int | None,
    note: str = "",
    apps: list[str] | None = None,
) -> str:
    veth = None
    if ep is not None and ep.host_veth:
        veth = f"{ep.container_ifname} <-> {ep.host_veth} (ifindex {ep.host_ifindex})"
    return _lines(
        (ep.container if ep is not None else service) + note,
        f"{ip}:{port}" if port else ip,
        f"mac {ep.mac}" if ep is not None else None,
        veth,
        *(apps or []),
    )


def build(trace: Trace) -> graphviz.Digraph:
    """The graph of one trace. Edges of the traced request are solid blue; the other path is
    dashed grey."""
    out = trace.outputs
    if out is None:
        raise ValueError("nothing to draw: the trace has no stack outputs")
    if trace.overlay is not None:
        from packet_trace.diagram_hosts import build_hosts  # it builds on this module

        return build_hosts(trace)
    br, nat, req, svc, hp = trace.bridge, trace.nat, trace.request, trace.services, trace.host_port
    g = graphviz.Digraph("c2c", format="svg")
    g.attr(rankdir="LR", fontname=FONT, labelloc="t", fontsize="16", compound="true")
    g.attr(
        label=f"c2c stack '{out.stack}': the path of one request (generated from live state by "
        "python -m packet_trace diagram)"
    )
    g.attr(
        "node", fontname=FONT, fontsize="11", shape="box", style="rounded,filled", fillcolor="white"
    )
    g.attr("edge", fontname=FONT, fontsize="10")

    target = req.target_ip if req else "127.0.0.1"
    g.node(
        "client",
        _lines("client (a process on the host)", f"GET http://{target}:{out.host_port}/"),
        fillcolor="#f6f8fa",
    )

    with g.subgraph(name="cluster_host") as host:
        host.attr(label="host network namespace", style="rounded", color="#57606a", fontname=FONT)
        listeners = hp.listeners if hp else []
        if listeners:
            x = listeners[0]
            host.node(
                "proxy",
                _lines(
                    f"{x.process or 'listener'}" + (f" (pid {x.pid})" if x.pid else ""),
                    *[f"listens {y.local_address}:{y.port}" for y in listeners],
                ),
                fillcolor="#fff8c5",
            )
        else:
            host.node(
                "proxy",
                _lines("no listener on the host port", "(userland proxy off)"),
                fillcolor="#fff8c5",
            )
        rule = nat.dnat_rules[0] if nat and nat.dnat_rules else None
        if rule is not None:
            counter = (
                f"counter +{nat.dnat_moved_by} during the trace"
                if nat and nat.dnat_moved_by is not None
                else None
            )
            nat_label = _lines("nat table, chain " + rule.chain, _wrapped(rule.spec), counter)
        elif nat is not None and not nat.readable:
            nat_label = "nat table (not readable: run as root)"
        else:
            nat_label = "nat table: no DNAT rule for the port"
        host.node("nat", nat_label, fillcolor="#ffebe9")

        with host.subgraph(name="cluster_bridge") as bridge:
            title = (
                f"bridge {br.interface}  subnet {br.subnet}"
                if br
                else f"bridge of {out.network_name}  subnet {out.subnet}"
            )
            bridge.attr(
                label=_lines(title, f"network {out.network_name}"),
                style="rounded,filled",
                fillcolor="#ddf4ff",
                color="#54aeff",
            )
            bridge.node(
                "gateway",
                _lines("gateway (host side)", br.gateway if br else out.gateway),
                shape="ellipse",
            )
            eps = {e.ipv4: e for e in br.endpoints} if br else {}
            ext_port = hp.container_port if hp else None
            int_port = urlsplit(
                svc.internal_url if svc and svc.internal_url else out.internal_url
            ).port
            bridge.node(
                "external",
                _container_label(
                    eps.get(out.external_ip),
                    "external",
                    out.external_ip,
                    ext_port,
                    apps=app_lines(trace, "external"),
                ),
            )
            bridge.node(
                "internal",
                _container_label(
                    eps.get(out.internal_ip),
                    "internal",
                    out.internal_ip,
                    int_port,
                    " (no published port)",
                    app_lines(trace, "internal"),
                ),
            )

    path = req.path_kind if req else "docker-proxy"
    dnat_to = rule.to_destination if rule is not None else f"{out.external_ip}:?"
    seen = svc.external_client_ip if svc and svc.external_client_ip else None
    # The traced path is numbered 1, 2, 3; the other way into external is drawn dashed.
    traced_dnat = path == "dnat"
    p1, p2 = ("", "") if traced_dnat else ("1. ", "2. ")
    d1, d2 = ("1. ", "2. ") if traced_dnat else ("", "")
    proxy_style, dnat_style = (OTHER, TRACED) if traced_dnat else (TRACED, OTHER)
    g.edge("client", "proxy", label=f"{p1}to 127.0.0.1:{out.host_port}", **proxy_style)
    g.edge("proxy", "gateway", label=f"{p2}new connection", **proxy_style)
    proxy_src = seen if seen and not traced_dnat else out.gateway
    g.edge("gateway", "external", label=f"from {proxy_src}", **proxy_style)
    dnat_via = target if traced_dnat else "a non-loopback host address"
    g.edge(
        "client", "nat", label=f"{d1}to {dnat_via}:{out.host_port}\nOUTPUT -> DOCKER", **dnat_style
    )
    kept = f"\nsource kept: {seen}" if seen and traced_dnat else ""
    g.edge("nat", "external", label=f"{d2}DNAT to {dnat_to}{kept}", **dnat_style)
    int_client = svc.internal_client_ip if svc and svc.internal_client_ip else out.external_ip
    upstream = f", {svc.upstream_ms:.1f} ms" if svc and svc.upstream_ms is not None else ""
    g.edge(
        "external",
        "internal",
        label=f"3. GET {svc.internal_url if svc and svc.internal_url else out.internal_url}\n"
        f"internal sees client {int_client}{upstream}",
        **TRACED,
    )
    return g


def write(trace: Trace, out_base: Path) -> list[Path]:
    """Write <out_base>.svg and <out_base>.png; return the paths written."""
    graph = build(trace)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in ("svg", "png"):
        path = out_base.with_suffix(f".{fmt}")
        path.write_bytes(graph.pipe(format=fmt))
        written.append(path)
    return written
