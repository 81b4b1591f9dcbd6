"""Collect the Trace of a stack across two Docker hosts (c2c:hosts): one request from this
namespace to external's host, through that host's nat table and docker_gwbridge, then across the
overlay (vxlan device, VNI, forwarding entries, UDP packets on both underlays) to internal.

Each engine is asked for the stack's objects by their labels; each host's commands run in its
engine's network namespace (HostSources). Facts that cannot be read become Problems, as in
packet_trace.collect. The only change the trace makes is two counting rules per host (no
target) around the request, removed right after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar
from urllib.parse import urlsplit

from packet_trace import analyze, dns, sandbox
from packet_trace.collect import (
    REMEDY_DOCKER,
    REMEDY_ROOT,
    _host_port,
    _nat_hop,
    _NatRead,
    _read_links,
    _read_nat,
    _send,
    remedy_deploy,
)
from packet_trace.model import (
    BridgeHop,
    HostPortHop,
    NatRule,
    OverlayEndpoint,
    OverlayHop,
    OverlayHostView,
    OverlayLink,
    Replica,
    ReplicaSet,
    Trace,
    TracedRequest,
    TraceHost,
    UnderlayCount,
)
from packet_trace.parse import (
    ContainerInfo,
    Link,
    ParseError,
    classify_command_error,
    parse_bridge_fdb,
    parse_container_inspect,
    parse_dns_response,
    parse_ip_neigh,
    parse_iptables_save,
    parse_netns_links,
    parse_network_address,
    parse_overlay_inspect,
    parse_route_get,
)
from packet_trace.sources import (
    SERVICE_LABEL,
    STACK_LABEL,
    DockerApiError,
    DockerUnavailable,
    HostSources,
    Sources,
)
from packet_trace.stackfile import StackHosts

T = TypeVar("T")

SERVICES = ("external", "internal")
GWBRIDGE = "docker_gwbridge"
VXLAN_PORT = 4789  # IANA's; the vxlan device's own dstport is used when it could be read
COUNT_COMMENT = "c2c-trace-vxlan"
# Swarm's label on a task container: the service it is a replica of.
SWARM_SERVICE_LABEL = "com.docker.swarm.service.name"
REMEDY_NETNS = (
    "run the trace on the machine of the host's engine, as root; a remote engine (tcp://, "
    "ssh://) shows its containers but not its namespace"
)


@dataclass(frozen=True)
class _Placed:
    host: str
    info: ContainerInfo


@dataclass(frozen=True)
class _Found:
    overlay: OverlayHop
    placed: dict[str, _Placed]  # the one container per service (internal: the first replica)
    replicas: list[_Placed]  # running replicas of a replicated internal; [] for one container
    groups: dict[str, sandbox.ServiceContainers]  # by service, those not run by Swarm


def collect_multihost(
    client: Sources,
    engines: Mapping[str, HostSources],
    hosts: list[TraceHost],
    stack_hosts: StackHosts,
    stack: str,
    send_request: bool = True,
) -> Trace:
    """client: where the request is sent from (this process's namespace); engines: each host's
    sources by host name, in c2c:hosts order."""
    trace = Trace(stack=stack, hosts=hosts, hosts_source=stack_hosts.source)
    found = _read_engines(engines, trace, stack)
    if found is None:
        return trace
    overlay, placed, replicas = found.overlay, found.placed, found.replicas
    ext, intl = placed["external"], placed["internal"]
    expected_hosts = [("external", stack_hosts.external_host)]
    if not replicas:  # Swarm places replicas: c2c:internalHost does not apply to them
        expected_hosts.append(("internal", stack_hosts.internal_host))
    for service, expected in expected_hosts:
        if placed[service].host != expected:
            trace.notes.append(
                f"{service} runs on host {placed[service].host}, not on c2c:{service}Host "
                f"{expected}: {stack_hosts.source} changed since the last `pulumi up`?"
            )
    published = ext.info.port_bindings[0]
    ext_host = trace.host(ext.host)
    assert ext_host is not None  # every engine is a host of the trace
    base = analyze.stack_outputs(stack, _as_bridge(overlay), ext.info, intl.info, published)
    # A replicated internal has no address of its own: external reaches it by name.
    outputs = replace(
        base, host_address=ext_host.address, internal_ip="" if replicas else base.internal_ip
    )
    trace.outputs = outputs
    # A sandbox's namespace file is read on its engine's machine: only a host found here.
    local = {h.name for h in hosts if h.netns is not None}
    spaces = [
        sandbox.namespace(engines[placed[s].host], trace, found.groups[s], placed[s].host)
        for s in SERVICES
        if s in found.groups and placed[s].host in local
    ]
    if any(spaces):
        trace.namespaces = [n for n in spaces if n is not None]
    peers = [("internal", p) for p in replicas] if replicas else [("internal", intl)]
    overlay.endpoints = [
        OverlayEndpoint(
            p.info.name, service, p.host, *p.info.networks.get(overlay.network_name, ("", ""))
        )
        for service, p in [("external", ext), *peers]
    ]
    trace.overlay = overlay
    if replicas:
        overlay.replicas = _replica_set(replicas, ext, overlay.network_name)
        if ext_host.netns is not None:
            _resolve(engines[ext.host], trace, overlay.replicas, ext.info)

    ext_src = engines[ext.host]
    overlay.published_via = _gwbridge_address(ext_src, trace, ext.info)
    if ext_host.netns is None:
        _unreachable(trace, ext_host)
        trace.host_port = HostPortHop(
            published.host_port, published.host_ip, published.container_port
        )
        links, before = None, _NatRead(None, None, None)
    else:
        trace.host_port = _host_port(ext_src, trace, published)
        links = _read_links(ext_src, trace)
        before = _read_nat(ext_src, trace)
    nat = _nat_hop(trace, before, outputs, published.container_port, overlay.published_via)
    trace.nat = nat
    target = ext_host.address
    if analyze.in_subnet(target, overlay.subnet):
        # Never from this namespace: the overlay's subnet is routed off the machine from here.
        trace.add_problem(
            "host-port",
            "address-on-overlay",
            f"host {ext_host.name}'s address {target} lies in the overlay {overlay.subnet}: no "
            "request sent",
            f"give host {ext_host.name} its underlay address in c2c:hosts",
        )
        send_request = False
    choice = _choose(trace, ext_host, links, before.rules, target)

    # A host whose container is stopped has left the overlay: its namespace is gone. With
    # replicas, every host that runs one holds the overlay (one container there finds it).
    on_hosts = {p.host: p for p in reversed(replicas)} if replicas else {intl.host: intl}
    views = {
        p.host: _overlay_view(engines[p.host], trace, p, overlay)
        if p.info.running
        else OverlayHostView(host=p.host)
        for p in [*on_hosts.values(), ext]
    }
    overlay.hosts = [views[h.name] for h in hosts if h.name in views]
    for view in overlay.hosts:
        peer = next((h for h in hosts if h.name in views and h.name != view.host), None)
        host = trace.host(view.host)
        if peer is None or host is None or host.netns is None:
            continue
        src = engines[view.host]
        view.underlay_interface = _route_device(src, trace, peer.address)
        host_links = links if view.host == ext.host else _read_links(src, trace)
        view.underlay_mtu = next(
            (x.mtu for x in host_links or [] if x.name == view.underlay_interface), None
        )

    if send_request and any(p.code == "container-stopped" for p in trace.problems):
        send_request = False
        trace.notes.append("no request sent: Docker shows the stack is not running")
    if not send_request:
        trace.request = TracedRequest(
            choice.ip, outputs.host_port, choice.reason, choice.path_kind, error="not sent"
        )
    else:
        ext_group = found.groups.get("external")
        ext_app = ext_group.app if ext_group is not None else None
        logs = ext_app.name if ext_app is not None else ext.info.name
        _traced_request(client, engines, ext_src, trace, choice, ext.info, logs, before.rules)

    if overlay.replicas is not None:
        answered = _followed(trace, overlay.replicas, replicas)
        if answered is None:
            return trace
        intl = answered
    for view in overlay.hosts:
        if intl.host == ext.host:
            break  # a replica beside external: br0 carries the frames, no host forwards them
        if view.host not in (ext.host, intl.host):
            continue
        peer_service = intl if view.host == ext.host else ext
        to = next(e for e in overlay.endpoints if e.container == peer_service.info.name)
        step = analyze.forwarding_step(view, to, hosts)
        if view.host == ext.host:
            overlay.forward = step
        else:
            overlay.reply = step
    if ext.info.running and intl.info.running:
        _check_forwarding(trace, overlay, intl.host)
    return trace


# ---------------------------------------------------------------------------------------------
# a replicated internal: the name external resolves, the replicas, the one that answered
# ---------------------------------------------------------------------------------------------


def _replica_set(replicas: list[_Placed], ext: _Placed, network: str) -> ReplicaSet:
    url = ext.info.env.get("INTERNAL_URL", "")
    return ReplicaSet(
        service=replicas[0].info.labels.get(SWARM_SERVICE_LABEL, ""),
        dns_name=urlsplit(url).hostname or "",
        replicas=[
            Replica(
                p.info.name, p.info.hostname, p.host, *p.info.networks.get(network, ("", "")), True
            )
            for p in replicas
        ],
    )


def _resolve(src: HostSources, trace: Trace, replicas: ReplicaSet, external: ContainerInfo) -> None:
    """Ask external's own resolver (Docker's embedded DNS, in its namespace) for the name."""
    if not replicas.dns_name or not external.sandbox_key:
        return
    replicas.resolver = dns.EMBEDDED_DNS
    result = src.in_netns(external.sandbox_key, dns.query_argv(replicas.dns_name))
    if result.returncode != 0:
        trace.add_problem(
            "overlay",
            "dns-unreadable",
            f"asking {dns.EMBEDDED_DNS} in {external.name}'s namespace for {replicas.dns_name}: "
            f"{result.stderr.strip() or f'exit code {result.returncode}'}",
            REMEDY_ROOT,
        )
        return
    try:
        replicas.dns_answer = parse_dns_response(result.stdout)
    except ParseError as exc:
        trace.add_problem("overlay", "dns-unreadable", str(exc), REMEDY_ROOT)


def _followed(trace: Trace, replicas: ReplicaSet, placed: list[_Placed]) -> _Placed | None:
    """The replica that answered the traced request: internal reports its hostname and
    address, and each replica's engine holds both."""
    svc = trace.services
    if svc is None or svc.internal_hostname is None:
        return None
    found = analyze.answering_replica(
        replicas.replicas, svc.internal_hostname, svc.internal_container_ip
    )
    if found is None:
        trace.add_problem(
            "overlay",
            "replica-unknown",
            f"internal answered as {svc.internal_hostname} ({svc.internal_container_ip}), which "
            f"is none of the running replicas of {replicas.service}",
            "run the trace again: Swarm may have replaced a replica meanwhile",
        )
        return None
    replicas.followed = found.container
    return next(p for p in placed if p.info.name == found.container)


def _traced_request(
    client: Sources,
    engines: Mapping[str, HostSources],
    ext_src: HostSources,
    trace: Trace,
    choice: analyze.TargetChoice,
    external: ContainerInfo,
    external_app: str,
    nat_before: list[NatRule] | None,
) -> None:
    """Send the one request between two readings of every counter: the nat table of external's
    host, the counting rules on each underlay, each vxlan device."""
    assert trace.overlay is not None
    assert trace.outputs is not None
    assert trace.nat is not None
    views = trace.overlay.hosts
    added = {v.host: _add_counting_rules(engines[v.host], trace, v) for v in views}
    try:
        counts_before = {v.host: _counted(engines[v.host], trace) for v in views if added[v.host]}
        vxlan_before = {v.host: v.vxlan for v in views}
        _send(client, trace, choice, trace.outputs, external, external_app)
        counts_after = {v.host: _counted(engines[v.host], trace) for v in views if added[v.host]}
    finally:
        for view in views:
            for chain, match in added[view.host]:
                engines[view.host].command(["iptables", "-w", "-D", chain, *match])
    if nat_before is not None:
        nat_after = _read_nat(ext_src, Trace(stack=trace.stack))
        if nat_after.rules is not None:
            nat = trace.nat
            nat.moves = analyze.diff_counters(nat_before, nat_after.rules)
            dnat_specs = {(r.chain, r.spec) for r in nat.dnat_rules}
            nat.dnat_moved_by = sum(m.delta for m in nat.moves if (m.chain, m.spec) in dnat_specs)
    for view in views:
        before, after = counts_before.get(view.host), counts_after.get(view.host)
        if before is not None and after is not None and view.underlay_interface:
            view.counts = [
                UnderlayCount(view.underlay_interface, chain, before.get(chain, 0), after[chain])
                for chain in ("OUTPUT", "INPUT")
                if chain in after
            ]
        old = vxlan_before[view.host]
        new = _overlay_links(engines[view.host], trace, view)
        new_vxlan = next((link for link in new if link.kind == "vxlan"), None)
        if old is not None and new_vxlan is not None:
            if old.tx_packets is not None and new_vxlan.tx_packets is not None:
                view.vxlan_tx_delta = new_vxlan.tx_packets - old.tx_packets
            if old.rx_packets is not None and new_vxlan.rx_packets is not None:
                view.vxlan_rx_delta = new_vxlan.rx_packets - old.rx_packets
    request = trace.request
    if request is not None and request.status == 200 and _crossed_hosts(trace):
        silent = [v.host for v in views if v.counts and any(c.delta <= 0 for c in v.counts)]
        if silent:
            trace.add_problem(
                "overlay",
                "vxlan-not-counted",
                f"the request succeeded but UDP {_port(views[0])} was not counted both ways on "
                f"the underlay of {', '.join(silent)}",
                "check that the overlay really spans the hosts (`docker network inspect`)",
            )


def _crossed_hosts(trace: Trace) -> bool:
    """Did the traced request leave external's host? Not when a replica beside external
    answered it (one internal container is on another host by definition)."""
    overlay, svc = trace.overlay, trace.services
    if overlay is None or overlay.replicas is None:
        return True
    ext = next((e for e in overlay.endpoints if e.service == "external"), None)
    found = analyze.answering_replica(
        overlay.replicas.replicas,
        svc.internal_hostname if svc else None,
        svc.internal_container_ip if svc else None,
    )
    return found is None or ext is None or found.host != ext.host


# ---------------------------------------------------------------------------------------------
# the engines: the stack's overlay and containers, by label
# ---------------------------------------------------------------------------------------------


def _read_engines(engines: Mapping[str, HostSources], trace: Trace, stack: str) -> _Found | None:
    overlay: OverlayHop | None = None
    placed: dict[str, _Placed] = {}
    tasks: list[_Placed] = []  # containers of a Swarm service (internal's replicas)
    groups: dict[str, sandbox.ServiceContainers] = {}
    for name, src in engines.items():
        try:
            networks = src.networks(stack)
            containers = [parse_container_inspect(doc) for doc in src.containers(stack)]
        except DockerUnavailable as exc:
            trace.add_problem(
                "hosts",
                "docker-unreachable",
                f"cannot reach the engine of host {name}: {exc}",
                REMEDY_DOCKER,
            )
            return None
        except DockerApiError as exc:
            trace.add_problem("hosts", "docker-error", f"host {name}: {exc}", REMEDY_DOCKER)
            return None
        if networks and overlay is None:
            overlay = parse_overlay_inspect(networks[0])
        host = trace.host(name)
        for info in containers:
            service = info.labels.get(SERVICE_LABEL)
            # Swarm keeps ended tasks' containers as history: only running ones serve.
            if SWARM_SERVICE_LABEL in info.labels and service == "internal" and info.running:
                tasks.append(_Placed(name, info))
                if host is not None and service not in host.services:
                    host.services.append(service)
        plain = [c for c in containers if SWARM_SERVICE_LABEL not in c.labels]
        for service, group in sandbox.group(plain).items():
            view = group.view()
            if service in SERVICES and service not in placed and view is not None:
                placed[service] = _Placed(name, view)
                groups[service] = group
                if host is not None:
                    host.services.append(service)
        if host is not None:
            host.services.sort(key=SERVICES.index)
    if tasks and "internal" not in placed:
        placed["internal"] = tasks[0]
    if overlay is None:
        trace.add_problem(
            "overlay",
            "stack-not-deployed",
            f"no engine of {', '.join(engines)} has a network labelled {STACK_LABEL}={stack}",
            remedy_deploy(stack),
        )
        return None
    for service in SERVICES:
        where = placed.get(service)
        if where is None:
            trace.add_problem(
                "hosts",
                "container-missing",
                f"no engine has a container labelled {SERVICE_LABEL}={service} in stack {stack}",
                remedy_deploy(stack),
            )
        elif not where.info.running:
            trace.add_problem(
                "hosts",
                "container-stopped",
                f"container {where.info.name} on host {where.host} is not running",
                remedy_deploy(stack),
            )
        elif service in groups:
            sandbox.check_apps(
                trace, groups[service], remedy_deploy(stack), f" on host {where.host}"
            )
    if len(placed) < len(SERVICES):
        return None
    if not placed["external"].info.port_bindings:
        trace.add_problem(
            "host-port",
            "port-not-published",
            f"{placed['external'].info.name} publishes no host port",
            remedy_deploy(stack),
        )
        return None
    return _Found(overlay, placed, tasks, groups)


def _as_bridge(overlay: OverlayHop) -> BridgeHop:
    """The overlay in the shape analyze.stack_outputs reads (name, subnet, gateway)."""
    return BridgeHop(
        network_name=overlay.network_name,
        network_id=overlay.network_id,
        interface="",
        interface_present=False,
        subnet=overlay.subnet,
        gateway=overlay.gateway,
    )


def _gwbridge_address(src: HostSources, trace: Trace, external: ContainerInfo) -> str | None:
    """external's address on docker_gwbridge: where a container on an overlay publishes."""
    try:
        doc = src.network(GWBRIDGE)
    except (DockerUnavailable, DockerApiError) as exc:
        doc, why = None, str(exc)
    else:
        why = f"Docker has no network {GWBRIDGE}"
    address = parse_network_address(doc, external.id) if doc else None
    if address is None:
        if doc is not None:
            why = f"{external.name} is not attached to {GWBRIDGE}"
        trace.add_problem("nat", "no-gwbridge", why, remedy_deploy(trace.stack))
    return address


def _choose(
    trace: Trace,
    ext_host: TraceHost,
    links: list[Link] | None,
    rules: list[NatRule] | None,
    target: str,
) -> analyze.TargetChoice:
    """The request goes to external's host's address, from this namespace: a client of another
    machine as far as that host is concerned, so it enters the nat table at PREROUTING."""
    nat = trace.nat
    dnat = nat.dnat_rules if nat else []
    port = trace.outputs.host_port if trace.outputs else 0
    name = ext_host.name
    reason = (
        f"host {name}'s address, where the stack's clients connect (its endpoint); sent from "
        f"this namespace, a client on another machine as far as {name} is concerned"
    )
    iface = analyze.interface_of(links, target) if links is not None else None
    if (
        rules is not None
        and dnat
        and iface is not None
        and analyze.traverses_dnat_from_outside(rules, dnat[0], target, iface)
    ):
        return analyze.TargetChoice(
            target,
            "dnat",
            f"{reason}: it arrives on {name}'s {iface}, so {name}'s nat table takes it at "
            f"PREROUTING into {dnat[0].chain}",
        )
    if ext_host.netns is not None and links is not None and iface is None:
        trace.add_problem(
            "host-port",
            "address-not-on-host",
            f"{target} (c2c:hosts) is not an address of host {name}'s namespace",
            f"set host {name}'s address in c2c:hosts to one of its own",
        )
    listeners = trace.host_port.listeners if trace.host_port else []
    listener = analyze.listener_for(listeners, target, port)
    if listener is not None and not dnat:
        return analyze.TargetChoice(target, "docker-proxy", f"{reason}: no DNAT rule admits it")
    return analyze.TargetChoice(target, "unknown", reason)


def _unreachable(trace: Trace, host: TraceHost) -> None:
    trace.add_problem(
        "hosts",
        "netns-unreachable",
        f"host {host.name}'s network namespace is not reachable from here ({host.url}): its "
        "ports, nat table and overlay devices are not read",
        REMEDY_NETNS,
    )


# ---------------------------------------------------------------------------------------------
# the overlay's namespace on each host
# ---------------------------------------------------------------------------------------------


def _overlay_view(
    src: HostSources, trace: Trace, placed: _Placed, overlay: OverlayHop
) -> OverlayHostView:
    view = OverlayHostView(host=placed.host)
    host = trace.host(placed.host)
    if host is None or host.netns is None:
        if host is not None and placed.info.labels.get(SERVICE_LABEL) == "internal":
            _unreachable(trace, host)  # external's host was reported already
        return view
    # The container's namespace file lies in <exec root>/netns, beside the overlay's.
    directory = placed.info.sandbox_key.rpartition("/")[0]
    names = src.netns_files(directory) if directory else None
    name = analyze.overlay_netns(names or [], overlay.network_id)
    if name is None:
        trace.add_problem(
            "overlay",
            "overlay-netns-missing",
            f"no namespace of overlay {overlay.network_id[:12]} in {directory or '?'} on host "
            f"{placed.host}",
            REMEDY_ROOT,
        )
        return view
    view.netns = f"{directory}/{name}"
    links = _overlay_links(src, trace, view)
    view.bridge = next((link for link in links if link.kind == "bridge"), None)
    view.vxlan = next((link for link in links if link.kind == "vxlan"), None)
    if view.vxlan is None:
        trace.add_problem(
            "overlay",
            "no-vxlan",
            f"no vxlan device in {view.netns} on host {placed.host}",
            remedy_deploy(trace.stack),
        )
        return view
    dev = view.vxlan.name
    fdb = _netns_json(src, trace, view.netns, ["bridge", "-j", "fdb", "show", "dev", dev])
    view.fdb = _parsed(trace, fdb, parse_bridge_fdb) or []
    neigh = _netns_json(src, trace, view.netns, ["ip", "-j", "neigh", "show", "dev", dev])
    view.neighbours = _parsed(trace, neigh, parse_ip_neigh) or []
    return view


def _overlay_links(src: HostSources, trace: Trace, view: OverlayHostView) -> list[OverlayLink]:
    if view.netns is None:
        return []
    text = _netns_json(src, trace, view.netns, ["ip", "-j", "-d", "-s", "addr", "show"])
    return _parsed(trace, text, parse_netns_links) or []


def _netns_json(src: HostSources, trace: Trace, netns: str, argv: list[str]) -> str | None:
    result = src.in_netns(netns, argv)
    if result.returncode == 0:
        return result.stdout
    trace.add_problem(
        "overlay",
        "overlay-unreadable",
        f"`nsenter --net={netns} {result.command}`: {result.stderr.strip()}",
        REMEDY_ROOT,
    )
    return None


def _parsed(trace: Trace, text: str | None, parser: Callable[[str], T]) -> T | None:
    if text is None:
        return None
    try:
        return parser(text)
    except (ParseError, KeyError, ValueError) as exc:
        trace.add_problem("overlay", "overlay-unreadable", str(exc), REMEDY_ROOT)
        return None


def _route_device(src: HostSources, trace: Trace, address: str) -> str | None:
    """The underlay interface: the device this host routes its peer's address through."""
    result = src.command(["ip", "-j", "route", "get", address])
    try:
        return parse_route_get(result.stdout) if result.returncode == 0 else None
    except ParseError as exc:
        trace.notes.append(str(exc))
        return None


# ---------------------------------------------------------------------------------------------
# UDP to the VXLAN port on each underlay: counting rules around the request
# ---------------------------------------------------------------------------------------------


def _port(view: OverlayHostView) -> int:
    return view.vxlan.dstport if view.vxlan and view.vxlan.dstport else VXLAN_PORT


def _add_counting_rules(
    src: HostSources, trace: Trace, view: OverlayHostView
) -> list[tuple[str, list[str]]]:
    """Insert the rules; return those inserted (to delete after the request)."""
    if view.underlay_interface is None:
        return []
    added = []
    for chain, match in analyze.counting_rules(view.underlay_interface, _port(view), COUNT_COMMENT):
        result = src.command(["iptables", "-w", "-I", chain, "1", *match])
        if result.returncode != 0:
            kind = classify_command_error(result.returncode, result.stderr)
            trace.add_problem(
                "overlay",
                "count-rule-failed",
                f"host {view.host}: `{result.command}`: {result.stderr.strip()}",
                REMEDY_ROOT if kind == "permission" else "install iptables",
            )
            break
        added.append((chain, match))
    return added


def _counted(src: HostSources, trace: Trace) -> dict[str, int] | None:
    result = src.command(["iptables-save", "-t", "filter", "-c"])
    if result.returncode != 0:
        trace.notes.append(f"`{result.command}`: {result.stderr.strip()}")
        return None
    return analyze.counted_packets(parse_iptables_save(result.stdout, "filter"), COUNT_COMMENT)


def _check_forwarding(trace: Trace, overlay: OverlayHop, internal_host: str) -> None:
    step = overlay.forward
    view = overlay.view(step.host) if step is not None else None
    if step is None or view is None or view.vxlan is None:
        return
    internal = trace.host(internal_host)
    if step.vtep is None:
        trace.add_problem(
            "overlay",
            "no-fdb-entry",
            f"host {step.host}'s vxlan has no forwarding entry for {step.to_container}'s MAC "
            f"{step.mac}",
            "Docker programs it when the container joins the overlay: check both engines' logs",
        )
    elif internal is not None and step.vtep != internal.address:
        trace.add_problem(
            "overlay",
            "fdb-elsewhere",
            f"host {step.host}'s forwarding entry sends {step.mac} to {step.vtep}, not to host "
            f"{internal.name} ({internal.address})",
            "check c2c:hosts addresses against the engines' Swarm addresses",
        )
