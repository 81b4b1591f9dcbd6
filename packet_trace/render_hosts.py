"""Text of a multi-host Trace: the hosts, host port and nat table of external's host, the overlay
between the hosts (hop 3), the services, and the summary. Built on packet_trace.render's hops;
every sentence comes from collected facts."""

from __future__ import annotations

from packet_trace.model import (
    ForwardingStep,
    OverlayHop,
    OverlayHostView,
    Replica,
    ReplicaSet,
    ServiceHop,
    Trace,
    TraceHost,
)
from packet_trace.render import _hop1, _hop2, _hop4, _ms, _rule_text, _wrap, problems_sentence

# Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8) headers around each overlay frame.
VXLAN_OVERHEAD = 50


def hops(trace: Trace) -> list[str]:
    out, hosts = trace.outputs, trace.hosts or []
    ext = trace.service_host("external")
    source = f" of {trace.hosts_source}" if trace.hosts_source else ""
    names = ", ".join(h.name for h in hosts)
    lines = [f"Packet trace of stack '{trace.stack}'"]
    if out is not None:
        lines[0] += f" (facts from docker-labels on hosts {names}): endpoint {out.endpoint}"
    lines += ["", f"0. Hosts (c2c:hosts{source})"]
    lines += [f"   {_host_line(h)}" for h in hosts]
    lines.append("")
    where = f"host {ext.name}'s " if ext else ""
    hop1 = _hop1(trace.host_port, trace, where)
    if ext is not None:
        hop1[0] += f" at {ext.address}"
    lines += hop1
    lines += _hop2(trace.nat, trace, f"of host {ext.name} " if ext else "")
    lines += _hop3(trace.overlay, trace)
    hop4 = _hop4(trace.services, trace)
    svc, overlay = trace.services, trace.overlay
    if svc and overlay and overlay.replicas and svc.internal_hostname:
        answered = _followed(overlay.replicas)
        hop4[4:4] = [
            _wrap(
                f"that is replica {answered.container} on host {answered.host}, one of "
                f"{len(overlay.replicas.replicas)}"
                if answered
                else "that is none of the running replicas the engines list",
                "   ",
            )
        ]
    if (
        svc
        and overlay
        and svc.external_container_ip
        and svc.external_container_ip == (overlay.published_via)
    ):
        hop4[3:3] = [
            _wrap(
                f"({svc.external_container_ip} is external's address on "
                f"{overlay.gwbridge_network}: the request came in over that bridge, while "
                "external calls internal over the overlay)"
            )
        ]
    return lines + hop4


def _host_line(host: TraceHost) -> str:
    runs = f"runs {', '.join(host.services)}" if host.services else "runs neither service"
    netns = host.netns_name or host.netns or "not reachable from here"
    return f"{host.name:<6} {host.address:<15} {host.url}  netns {netns}  {runs}"


def _hop3(overlay: OverlayHop | None, trace: Trace) -> list[str]:
    if overlay is None:
        return ["3. Overlay: not read", ""]
    width = max([28, *(len(e.container) for e in overlay.endpoints)])
    lines = [
        f"3. Overlay {overlay.network_name} (id {overlay.network_id[:12]}, driver "
        f"{overlay.driver}), subnet {overlay.subnet}, gateway {overlay.gateway}"
        + (f", Swarm's own range {overlay.ip_range}" if overlay.ip_range else ""),
        f"   {'container':<{width}} {'host':<6} {'ip':<15} mac",
    ]
    for e in overlay.endpoints:
        via = (
            f"  (published via {overlay.gwbridge_network} {overlay.published_via})"
            if e.service == "external" and overlay.published_via
            else ""
        )
        if overlay.replicas is not None and e.service == "internal":
            via = _replica_note(overlay.replicas, e.container)
        lines.append(f"   {e.container:<{width}} {e.host:<6} {e.ipv4:<15} {e.mac}{via}")
    if overlay.replicas is not None:
        lines += _replica_lines(overlay.replicas)
    for view in overlay.hosts:
        lines += _view_lines(view, overlay, trace)
    lines.append("")
    return lines


def _followed(replicas: ReplicaSet) -> Replica | None:
    return next((r for r in replicas.replicas if r.container == replicas.followed), None)


def _replica_note(replicas: ReplicaSet, container: str) -> str:
    replica = next(r for r in replicas.replicas if r.container == container)
    notes = [f"hostname {replica.hostname}"]
    if replicas.dns_answer is not None and replica.ipv4 not in replicas.dns_answer:
        notes.append("not in the DNS answer")
    if container == replicas.followed:
        notes.append("answered the traced request")
    return f"  ({', '.join(notes)})"


def _replica_lines(replicas: ReplicaSet) -> list[str]:
    """What replaces one static IP: a name, and the embedded DNS's answer for it."""
    count = len(replicas.replicas)
    lines = [
        _wrap(
            f"internal is the Swarm service {replicas.service}: {count} running replicas, each "
            f"with its own address from Swarm's range, none static; external reaches them by "
            f"the DNS name {replicas.dns_name} (the host of its INTERNAL_URL)",
            "   ",
        )
    ]
    if replicas.dns_answer is None:
        return [*lines, "   the name's DNS answer: not read"]
    answer = ", ".join(replicas.dns_answer) or "no address"
    own = {r.ipv4 for r in replicas.replicas}
    if set(replicas.dns_answer) == own:
        meaning = (
            "every running replica's own address (endpoint mode dnsrr: no virtual IP in front), "
            "in the order of this lookup"
        )
    else:
        missing = sorted(own - set(replicas.dns_answer))
        meaning = (
            f"not the running replicas' addresses exactly ({', '.join(missing)} missing: a "
            "replica joins the answer once healthy)"
            if missing
            else "addresses that no running replica has"
        )
    lines.append(
        _wrap(
            f"asked in external's network namespace, Docker's embedded DNS {replicas.resolver} "
            f"answers {replicas.dns_name} with {answer}: {meaning}",
            "   ",
        )
    )
    return lines


def _view_lines(view: OverlayHostView, overlay: OverlayHop, trace: Trace) -> list[str]:
    lines = [f"   host {view.host}: overlay namespace {view.netns or 'not read'}"]
    if view.bridge is not None:
        addresses = ", ".join(view.bridge.ipv4) or "no address"
        lines.append(f"     {view.bridge.name} {addresses}, MTU {view.bridge.mtu}")
    if view.vxlan is not None:
        x = view.vxlan
        lines.append(
            f"     {x.name} VNI {x.vni}, UDP port {x.dstport}, MTU {x.mtu}, master {x.master}"
        )
        if view.underlay_mtu is not None and view.underlay_interface:
            room = view.underlay_mtu - x.mtu
            why = (
                "the outer Ethernet, IPv4, UDP and VXLAN headers (14+20+8+8)"
                if room == VXLAN_OVERHEAD
                else f"VXLAN's {VXLAN_OVERHEAD} bytes of outer headers, "
                f"{room - VXLAN_OVERHEAD} to spare"
            )
            lines.append(
                _wrap(
                    f"MTU {x.mtu} on the overlay, {view.underlay_mtu} on the underlay "
                    f"({view.underlay_interface}): {room} bytes per frame for {why}",
                    "     ",
                )
            )
    step = overlay.forward if overlay.forward and overlay.forward.host == view.host else None
    step = step or (overlay.reply if overlay.reply and overlay.reply.host == view.host else None)
    if step is not None and view.vxlan is not None:
        lines += _step_lines(step, overlay)
    answered = _followed(overlay.replicas) if overlay.replicas else None
    ext = trace.service_host("external")
    if answered is not None and ext is not None and view.vxlan is not None:
        if answered.host == view.host == ext.name:
            lines.append(
                _wrap(
                    f"to internal: replica {answered.hostname} ({answered.ipv4}) is on this "
                    f"host too: br0 carries the frames between its veth and external's, "
                    f"{view.vxlan.name} is not on the path",
                    "     ",
                )
            )
        elif view.host not in (answered.host, ext.name):
            lines.append(
                f"     not on the traced request's path: replica {answered.hostname} runs on "
                f"host {answered.host}"
            )
    if view.counts:
        moved = ", ".join(f"{_direction(c.chain)} +{c.delta}" for c in view.counts)
        port = view.vxlan.dstport if view.vxlan else None
        lines.append(
            f"     underlay {view.underlay_interface}: UDP {port} packets during the request: "
            f"{moved}"
        )
    if view.vxlan_tx_delta is not None and view.vxlan is not None:
        lines.append(
            f"     {view.vxlan.name} device counters: tx +{view.vxlan_tx_delta}, rx "
            f"+{view.vxlan_rx_delta}"
        )
    return lines


def _direction(chain: str) -> str:
    return {"OUTPUT": "sent", "INPUT": "received"}.get(chain, chain)


def _step_lines(step: ForwardingStep, overlay: OverlayHop) -> list[str]:
    forward = step is overlay.forward
    what = "to internal" if forward else "the reply, to external"
    neighbour = (
        f"neighbour {step.ip} -> {step.neighbour_mac}"
        if step.neighbour_mac
        else f"no neighbour entry for {step.ip}"
    )
    if step.vtep:
        fdb = f"fdb {step.mac} dst {step.vtep}" + (
            f" (host {step.vtep_host})" if step.vtep_host else " (not a host of c2c:hosts)"
        )
    else:
        fdb = f"no fdb entry for {step.mac}"
    return [_wrap(f"{what}: {neighbour}; {fdb}", "     ")]


# ---------------------------------------------------------------------------------------------
# the nat explanation and the summary (also in the JSON)
# ---------------------------------------------------------------------------------------------


def explain_nat(trace: Trace) -> str:
    nat, req, out, overlay = trace.nat, trace.request, trace.outputs, trace.overlay
    ext = trace.service_host("external")
    host = f"host {ext.name}" if ext else "external's host"
    if nat is None or out is None or overlay is None:
        return "The nat table was not examined."
    if not nat.readable:
        return f"The nat table of {host} could not be read."
    if not nat.dnat_rules:
        return (
            f"No DNAT rule of {host} maps port {out.host_port} to external's address on "
            f"{overlay.gwbridge_network} ({overlay.published_via or 'unknown'})."
        )
    rule = nat.dnat_rules[0]
    gw = (
        f"A container on an overlay is published through {overlay.gwbridge_network}, a bridge "
        f"of {host} that also gives it its way out: the rule leads to {rule.to_destination}, "
        f"external's address on that bridge, not to its overlay IP {out.external_ip}."
    )
    if req is None or req.error == "not sent":
        return f"No request was sent, so the DNAT rule's counter was not exercised. {gw}"
    if req.path_kind != "dnat":
        return f"The request to {req.target_ip}:{req.port} did not meet the DNAT rule. {gw}"
    jump = next((r for r in nat.jump_rules if r.chain == "PREROUTING"), None)
    jump_txt = f"`{_rule_text(jump)}`" if jump else "the PREROUTING rule"
    return (
        f"The request came to {req.target_ip}:{req.port} from outside {host}'s namespace, so it "
        f"entered the nat table at PREROUTING: {jump_txt} sent it to the DOCKER chain, because "
        f"{req.target_ip} is a local address of {host}, and the DNAT rule rewrote its "
        f"destination: its counter moved by {nat.dnat_moved_by}. {gw}"
    )


def summarize(trace: Trace) -> str:
    out, req, nat, svc, overlay = (
        trace.outputs,
        trace.request,
        trace.nat,
        trace.services,
        trace.overlay,
    )
    if out is None or overlay is None:
        if any(p.code == "docker-unreachable" for p in trace.problems):
            return f"Nothing to trace: an engine of stack {trace.stack} could not be reached."
        names = ", ".join(h.name for h in trace.hosts or [])
        return (
            f"Nothing to trace: the engines of hosts {names} have no network and containers "
            f"labelled for stack {trace.stack}."
        )
    ext, intl = trace.service_host("external"), trace.service_host("internal")
    a, b = (ext.name if ext else "?"), (intl.name if intl else "?")
    sentences: list[str] = []
    rule = nat.dnat_rules[0] if nat and nat.dnat_rules else None
    if req is None or req.error == "not sent":
        sentences.append(f"No request was sent to port {out.host_port}.")
    else:
        to = rule.to_destination if rule else f"{overlay.published_via}:?"
        counter = (
            f" (its counter +{nat.dnat_moved_by})" if nat and nat.dnat_moved_by is not None else ""
        )
        sentences.append(
            f"A request from this namespace to host {a}'s address {req.target_ip}:{req.port} "
            f"entered {a}'s nat table at PREROUTING, where the DNAT rule{counter} sent it to {to}: "
            f"external's address on {overlay.gwbridge_network}, the bridge through which a "
            f"container on an overlay is published."
        )
    view = overlay.view(a)
    step = overlay.forward
    answered = _followed(overlay.replicas) if overlay.replicas else None
    if overlay.replicas and svc and svc.internal_client_ip and view and view.vxlan and answered:
        b = answered.host
        count = len(overlay.replicas.dns_answer or [])
        by_name = (
            f"External then called internal by name at {svc.internal_url}, a name Docker's "
            f"embedded DNS resolves to {count} replica addresses, and replica "
            f"{answered.hostname} ({answered.ipv4}) on host {b} answered."
        )
        if b == a:
            sentences.append(
                f"{by_name} It runs beside external on host {a}, so the request's frames went "
                f"through the overlay's br0 from veth to veth and needed no VXLAN (UDP packets "
                f"counted meanwhile are other overlay traffic)."
            )
        elif step is not None:
            sentences.append(
                f"{by_name} On host {a}, {view.vxlan.name} (VNI {view.vxlan.vni}, MTU "
                f"{view.vxlan.mtu}) maps its MAC {step.mac} to {step.vtep or 'no address'}"
                + (f", host {step.vtep_host}" if step.vtep_host else "")
                + f", so the frame left {a} in UDP to port {view.vxlan.dstport} and host {b} "
                "unwrapped it to the replica."
            )
        sentences += _counted_and_client(overlay, svc, view)
    elif svc and svc.internal_client_ip and view and view.vxlan and step:
        sentences.append(
            f"External then called internal at {svc.internal_url or out.internal_url} over the "
            f"overlay {overlay.network_name}: on host {a}, {view.vxlan.name} (VNI "
            f"{view.vxlan.vni}, MTU {view.vxlan.mtu}) maps internal's MAC {step.mac} to "
            f"{step.vtep or 'no address'}"
            + (f", host {step.vtep_host}" if step.vtep_host else "")
            + f", so the frame left {a} in UDP to port {view.vxlan.dstport} and host {b} "
            f"unwrapped it to internal."
        )
        sentences += _counted_and_client(overlay, svc, view)
    elif req is not None and req.error not in (None, "not sent"):
        sentences.append(f"The request failed ({req.error}), so the services' view is missing.")
    sentences += problems_sentence(trace)
    return " ".join(sentences)


def _counted_and_client(overlay: OverlayHop, svc: ServiceHop, view: OverlayHostView) -> list[str]:
    """The UDP counts on each underlay, and what internal saw, as summary sentences."""
    port = view.vxlan.dstport if view.vxlan else None
    counted = [
        f"{v.host} {'/'.join(f'{_direction(c.chain)} +{c.delta}' for c in v.counts)}"
        for v in overlay.hosts
        if v.counts
    ]
    sentences = []
    if counted:
        sentences.append(
            f"UDP packets to port {port} on the underlay during the request: "
            + "; ".join(counted)
            + "."
        )
    sentences.append(
        f"Internal saw client {svc.internal_client_ip}, external's own overlay address: no "
        f"NAT between the hosts. The whole request took {_ms(svc.total_ms)}, of which "
        f"{_ms(svc.upstream_ms)} was external waiting for internal."
    )
    return sentences
