"""Text rendering of a Trace: the five hops, the nat explanation and the summary paragraph.

Every sentence is built from collected facts; where a fact is missing the text says so instead of
falling back to what the configuration says should be there.
"""

from __future__ import annotations

import json
import textwrap

from packet_trace.analyze import listener_for
from packet_trace.model import (
    BridgeHop,
    HostPortHop,
    NatHop,
    NatRule,
    ServiceHop,
    StackOutputs,
    Trace,
    TracedRequest,
)

WIDTH = 100


def _wrap(text: str, indent: str = "   ") -> str:
    return textwrap.fill(
        text, WIDTH, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False
    )


def _ms(value: float | None) -> str:
    return f"{value:.1f} ms" if value is not None else "unknown"


def _proxy(trace: Trace) -> str | None:
    """'docker-proxy (pid N) on ADDR:PORT' for the listener that accepted the request."""
    hop, req = trace.host_port, trace.request
    x = listener_for(hop.listeners, req.target_ip, hop.port) if hop and req else None
    if x is None:
        return None
    who = f"{x.process} (pid {x.pid})" if x.process else "a process (name hidden: not root)"
    return f"{who} on {x.local_address}:{x.port}"


def _rule_text(rule: NatRule) -> str:
    return rule.spec if rule.syntax == "iptables" else f"{rule.chain}: {rule.spec}"


# ---------------------------------------------------------------------------------------------
# nat explanation and summary (also in the JSON)
# ---------------------------------------------------------------------------------------------


def explain_nat(trace: Trace) -> str:
    if trace.hosts is not None:
        from packet_trace import render_hosts  # it builds on this module

        return render_hosts.explain_nat(trace)
    nat, req, out = trace.nat, trace.request, trace.outputs
    if nat is None or out is None:
        return "The nat table was not examined."
    if not nat.readable:
        return (
            "The nat table could not be read, so neither the DNAT rule nor its counter can be "
            "shown; the request's path below is inferred from the listening socket alone."
        )
    if not nat.dnat_rules:
        return (
            f"No DNAT rule maps port {out.host_port} to {out.external_ip}: Docker adds it when "
            "external starts with its port published and removes it when external stops."
        )
    rule = nat.dnat_rules[0]
    to = rule.to_destination
    if req is None or req.error == "not sent":
        return f"No request was sent, so the counter of the DNAT rule to {to} was not exercised."
    if req.path_kind == "dnat":
        jump = next((r for r in nat.jump_rules if r.chain == "OUTPUT"), None)
        jump_txt = f"`{_rule_text(jump)}`" if jump else "the OUTPUT rule"
        why_jump = (
            " and this OUTPUT jump does not exclude loopback (the userland proxy is off)"
            if req.target_ip.startswith("127.")
            else " outside 127.0.0.0/8"
        )
        return (
            f"The request was opened by this host to {req.target_ip}:{req.port}, so it entered "
            f"the nat table at OUTPUT (packets a host sends itself never pass PREROUTING). "
            f"{jump_txt} sent it to the DOCKER chain, because {req.target_ip} is a local address"
            f"{why_jump}, and the DNAT rule rewrote its destination to {to}: its "
            f"counter moved by {nat.dnat_moved_by}. The nat table sees only the first packet of a "
            f"connection; conntrack rewrites the rest and the replies without consulting it again. "
            f"A packet from another host takes the same DNAT rule through PREROUTING."
        )
    gateway = out.gateway
    seen = trace.services.external_client_ip if trace.services else None
    seen_txt = f", which is the client_ip external reports ({seen})" if seen else ""
    text = (
        f"The request went to {req.target_ip}:{req.port}. The OUTPUT chain sends only "
        f"destinations outside 127.0.0.0/8 to DOCKER, so a connection to loopback never meets the "
        f"DNAT rule{' (no nat counter moved)' if not nat.moves else ''}. Instead "
        f"{_proxy(trace) or 'docker-proxy'} accepted the connection and opened its own "
        f"connection to {to} from {gateway}, the host's address on the stack's bridge{seen_txt}. "
        f"That second connection is the host's own, to an address that is not local, so no DOCKER "
        f"rule applies to it either."
    )
    if rule.destination and rule.destination.startswith("127."):
        text += (
            f" This DNAT rule matches only destination {rule.destination} (the port is published "
            "on loopback): with the userland proxy on, no request from this host can move its "
            "counter. It serves when the proxy is off (dockerd --userland-proxy=false), where the "
            "OUTPUT jump also covers 127.0.0.0/8."
        )
    return text


def _source_text(trace: Trace) -> str:
    """What happened to the source address on the DNAT path, from the counters that moved."""
    req, svc, nat = trace.request, trace.services, trace.nat
    seen = svc.external_client_ip if svc else None
    masqueraded = nat is not None and any(
        m.chain == "POSTROUTING" and "MASQUERADE" in m.spec.upper() for m in nat.moves
    )
    if masqueraded:
        tail = f", so external saw client {seen}" if seen else ""
        return f"; a MASQUERADE rule in POSTROUTING replaced its source address{tail}"
    if seen is None or req is None:
        return ""
    if seen == req.target_ip:
        return (
            f" with its source address unchanged: external saw client {seen} (a host connecting "
            "to one of its own addresses uses that address as the source)"
        )
    return f"; external saw client {seen}"


def summarize(trace: Trace) -> str:
    """One plain-language paragraph of the path, from the facts collected."""
    if trace.hosts is not None:
        from packet_trace import render_hosts

        return render_hosts.summarize(trace)
    out, req, nat, br, svc = trace.outputs, trace.request, trace.nat, trace.bridge, trace.services
    if out is None:
        if any(p.code == "docker-unreachable" for p in trace.problems):
            return (
                f"Nothing to trace: Docker could not be reached, so neither the port nor the "
                f"containers of stack {trace.stack} are known."
            )
        return (
            f"Nothing to trace: stack {trace.stack} has no running network and containers "
            "labelled for it on this host."
        )
    sentences: list[str] = []
    bridge_txt = (
        f"bridge {br.interface} ({br.subnet}, gateway {br.gateway})" if br else "the stack's bridge"
    )
    ext_ep = next((e for e in br.endpoints if e.ipv4 == out.external_ip), None) if br else None
    veth_txt = f" and its veth {ext_ep.host_veth}" if ext_ep and ext_ep.host_veth else ""
    rule = nat.dnat_rules[0] if nat and nat.dnat_rules else None
    if req is None or req.error == "not sent":
        sentences.append(f"No request was sent to port {out.host_port}.")
    elif req.path_kind == "dnat":
        counter = (
            f" — its packet counter moved by {nat.dnat_moved_by}"
            if nat and nat.dnat_moved_by is not None
            else ""
        )
        rule_txt = f"`{rule.spec}`" if rule else "the DNAT rule"
        sentences.append(
            f"A request from this host to {req.target_ip}:{req.port} passed the nat table's "
            f"OUTPUT chain into DOCKER, where {rule_txt} rewrote its destination to "
            f"{rule.to_destination if rule else out.external_ip}{counter}. The kernel then "
            f"routed it over {bridge_txt}{veth_txt} to external{_source_text(trace)}."
        )
    elif req.path_kind == "unknown":
        sentences.append(
            f"A request from this host to {req.target_ip}:{req.port} met neither a DNAT rule nor "
            "a listening socket for that address, so nothing on the host could forward it to "
            "external."
        )
    else:
        sentences.append(_proxy_sentence(trace, out, req, bridge_txt + veth_txt))
    if svc and svc.internal_client_ip:
        sentences.append(
            f"External then called internal at {svc.internal_url or out.internal_url} directly "
            f"across the same bridge, without any NAT: internal saw client "
            f"{svc.internal_client_ip}, external's own address."
        )
        sentences.append(
            f"The whole request took {_ms(svc.total_ms)}, of which {_ms(svc.upstream_ms)} was "
            "external waiting for internal."
        )
    elif req is not None and req.error not in (None, "not sent"):
        sentences.append(f"The request failed ({req.error}), so the services' view is missing.")
    sentences += problems_sentence(trace)
    return " ".join(sentences)


def _proxy_sentence(trace: Trace, out: StackOutputs, req: TracedRequest, over: str) -> str:
    """The request that went to the host port's listener (docker-proxy) instead of the DNAT rule."""
    nat, svc = trace.nat, trace.services
    rule = nat.dnat_rules[0] if nat and nat.dnat_rules else None
    proxy = _proxy(trace)
    proxy_txt = f"by {proxy}" if proxy else "by a process on the host"
    counter = ""
    if rule is not None and nat is not None and nat.dnat_moved_by is not None:
        counter = (
            f", so the DNAT rule to {rule.to_destination} did not count it (+{nat.dnat_moved_by})"
        )
    elif nat is not None and not nat.readable:
        counter = " (the nat table could not be read to confirm it)"
    skips = f"loopback traffic skips the nat table's DOCKER chain{counter}."
    if req.error is not None:
        # Whether the proxy got as far as connecting to external is unknown: say only this much.
        return (
            f"A request to {req.target_ip}:{req.port} went to the socket held {proxy_txt}; {skips}"
        )
    seen = (
        f", from {svc.external_client_ip} — the host's own address on the bridge — which is why "
        "external reports that address as its client"
        if svc and svc.external_client_ip
        else ""
    )
    return (
        f"A request to {req.target_ip}:{req.port} was accepted on the host {proxy_txt}; {skips} "
        f"That proxy then opened a new connection to external at {out.external_ip} over "
        f"{over}{seen}."
    )


# ---------------------------------------------------------------------------------------------
# the text report
# ---------------------------------------------------------------------------------------------


def render_text(trace: Trace) -> str:
    if trace.hosts is not None:
        from packet_trace import render_hosts

        lines = render_hosts.hops(trace)
    else:
        lines = _hops(trace)
    lines += ["5. Summary", _wrap(summarize(trace)), ""]
    return "\n".join(lines + _problems_and_notes(trace))


def _hops(trace: Trace) -> list[str]:
    out = trace.outputs
    lines = [f"Packet trace of stack '{trace.stack}'"]
    if out is not None:
        lines[0] += f" (facts from docker-labels): endpoint {out.endpoint}"
    lines.append("")
    lines += _hop1(trace.host_port, trace)
    lines += _hop2(trace.nat, trace)
    lines += _hop3(trace.bridge, trace)
    lines += _hop4(trace.services, trace)
    return lines


def _problems_and_notes(trace: Trace) -> list[str]:
    lines: list[str] = []
    if trace.problems:
        lines.append("Problems (what could not be read, and what to do):")
        for p in trace.problems:
            lines.append(
                textwrap.fill(
                    f"- [{p.hop}] {p.message}", WIDTH, initial_indent="  ", subsequent_indent="    "
                )
            )
            lines.append(_wrap(f"what to do: {p.remedy}", "    "))
        lines.append("")
    if trace.notes:
        lines.append("Notes:")
        lines += [
            textwrap.fill(f"- {n}", WIDTH, initial_indent="  ", subsequent_indent="    ")
            for n in trace.notes
        ]
        lines.append("")
    return lines


def _hop1(hop: HostPortHop | None, trace: Trace, where: str = "") -> list[str]:
    """where: whose port it is, on several hosts ("host a's ")."""
    if hop is None:
        return [f"1. Client -> {where or 'host '}port: not read", ""]
    lines = [f"1. Client -> {where or 'host '}port {hop.port}"]
    if hop.container_port is not None:
        lines.append(
            f"   published: {hop.bind_ip}:{hop.port} -> external's container port "
            f"{hop.container_port}"
        )
    if not hop.listeners:
        nat = trace.nat
        if nat is not None and nat.readable and not nat.dnat_rules:
            why = (
                "and no DNAT rule either (see 2): external is down or its port is not published, "
                "so nothing makes the port reachable."
            )
        else:
            why = (
                "the userland proxy is off (or external is down): only the DNAT rule below makes "
                "the port reachable."
            )
        lines.append(_wrap(f"listening socket: none on port {hop.port}; {why}"))
    for x in hop.listeners:
        who = f"{x.process} (pid {x.pid})" if x.process else "process hidden (run as root)"
        lines.append(f"   listening socket: {x.local_address}:{x.port}  held by {who}")
    if any(x.process == "docker-proxy" for x in hop.listeners):
        lines.append(
            _wrap(
                "docker-proxy is dockerd's userland proxy: a process on the host that accepts "
                "connections the nat table does not rewrite (such as to 127.0.0.1) and relays "
                "them to the container."
            )
        )
    lines.append("")
    return lines


def _hop2(nat: NatHop | None, trace: Trace, where: str = "") -> list[str]:
    """where: whose table it is, on several hosts ("of host a ")."""
    if nat is None:
        return [f"2. NAT table {where}".rstrip() + ": not read", ""]
    backend = f", iptables backend {nat.backend}" if nat.backend else ""
    lines = [f"2. NAT table {where}(`{nat.command}`{backend})"]
    if nat.readable and nat.dnat_rules:
        lines.append("   DNAT rule, as the kernel holds it:")
        lines += [f"     {_rule_text(r)}" for r in nat.dnat_rules]
        lines.append("   reached from:")
        lines += [f"     {_rule_text(r)}   [{r.packets} pkts]" for r in nat.jump_rules]
    req = trace.request
    if req is not None:
        sent = "not sent" if req.error == "not sent" else "sent"
        lines.append(f"   traced request ({sent}): GET http://{req.target_ip}:{req.port}/")
        lines.append(_wrap(f"why this address: {req.reason}.", "     "))
    if nat.readable and nat.dnat_rules and nat.dnat_moved_by is not None:
        rule = nat.dnat_rules[0]
        before = rule.packets
        lines.append(
            f"   DNAT packet counter: {before} before, {before + nat.dnat_moved_by} after "
            f"(+{nat.dnat_moved_by})"
        )
    if nat.moves:
        lines.append("   every nat counter that moved:")
        for m in nat.moves:
            lines.append(f"     {m.packets_before} -> {m.packets_after}  {m.chain}: {m.spec}")
    elif nat.readable and req is not None and req.error != "not sent":
        lines.append("   every nat counter that moved: none")
    lines.append(_wrap(explain_nat(trace)))
    lines.append("")
    return lines


def _hop3(br: BridgeHop | None, trace: Trace) -> list[str]:
    if br is None:
        return ["3. Bridge: not read", ""]
    present = "" if br.interface_present else "  (NOT present on this host)"
    lines = [
        f"3. Bridge {br.interface}{present}",
        f"   network {br.network_name} (id {br.network_id[:12]}), subnet {br.subnet}, "
        f"gateway {br.gateway} (the host's own address on the bridge)",
        f"   {'container':<28} {'ip':<15} {'mac':<18} {'inside':<7} host veth (ifindex) -> master",
    ]
    for e in br.endpoints:
        veth = f"{e.host_veth} ({e.host_ifindex}) -> {e.veth_master}" if e.host_veth else "unknown"
        lines.append(
            f"   {e.container:<28} {e.ipv4:<15} {e.mac:<18} {e.container_ifname or '?':<7} {veth}"
        )
    if trace.namespaces:
        lines.append(
            _wrap(
                "each address belongs to a sandbox container, which owns the network namespace; "
                "the app containers run inside it (see 4)"
            )
        )
    lines.append("")
    return lines


def _hop4(svc: ServiceHop | None, trace: Trace) -> list[str]:
    if svc is None:
        return ["4. External -> internal: no answer to read", ""]
    lines = ["4. External -> internal"]
    url = svc.internal_url or "unknown (external's env not readable)"
    whose = "app container" if trace.namespaces else "container"
    lines.append(f"   external called INTERNAL_URL={url} (from its {whose}'s env)")
    if svc.external_client_ip is not None:
        lines.append(
            f"   external ({svc.external_container_ip}, hostname {svc.external_hostname}) saw "
            f"client {svc.external_client_ip}"
        )
        lines.append(
            f"   internal ({svc.internal_container_ip}, hostname {svc.internal_hostname}) saw "
            f"client {svc.internal_client_ip}"
        )
    req = trace.request
    whole = "until it failed" if req is not None and req.error else "whole request"
    lines.append(f"   client <-> external: {_ms(svc.total_ms)} ({whole}, measured here)")
    lines.append(f"   external <-> internal: {_ms(svc.upstream_ms)} (upstream_ms from external)")
    lines += namespace_lines(trace)
    lines.append("")
    return lines


def namespace_lines(trace: Trace) -> list[str]:
    """Each service's namespace: its sandbox, its app(s), and which app holds each listener."""
    if not trace.namespaces:
        return []
    lines = ["   network namespaces (owned by the sandbox; the apps run inside it):"]
    for space in trace.namespaces:
        on = f" on host {space.host}" if space.host else ""
        lines.append(
            f"     {space.service}{on}: sandbox {space.sandbox} (hostname {space.hostname})"
        )
        if not space.apps:
            lines.append("       app: none")
        for app in space.apps:
            state = f"running, pid {app.pid}" if app.running else "NOT running"
            lines.append(f"       app {app.name}  ({state})")
        if space.listeners is None:
            lines.append("       listening sockets: not read (see the notes)")
        elif not space.listeners:
            lines.append("       listening sockets: none")
        for x in space.listeners or []:
            who = f"{x.process} (pid {x.pid})" if x.process else "process hidden (run as root)"
            owner = f"of app {x.container}" if x.container else "(a process of no app)"
            lines.append(f"       listening {x.local_address}:{x.port}  {who} {owner}")
    return lines


def render_json(trace: Trace) -> str:
    data = trace.to_dict()
    if data["nat"] is not None:
        data["nat"]["explanation"] = explain_nat(trace)
    data["summary"] = summarize(trace)
    return json.dumps(data, indent=2)


def problems_sentence(trace: Trace) -> list[str]:
    """The summary's last sentence when something could not be read (none otherwise)."""
    if not trace.problems:
        return []
    codes = ", ".join(sorted({p.code for p in trace.problems}))
    return [f"Some facts could not be read ({codes}); the problems listed say what to do."]
