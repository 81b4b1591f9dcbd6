"""Pure reasoning over parsed facts: which rules apply, which address to send the one request to,
which counters moved. No I/O.

The model of the nat table used here is Docker 20.10's (libnetwork): PREROUTING and OUTPUT jump
to the DOCKER chain for destinations of type LOCAL (OUTPUT only outside 127.0.0.0/8 while the
userland proxy is on), and DOCKER holds one DNAT rule per published port. A request this host
sends is "locally generated": it passes OUTPUT, never PREROUTING, and has no input interface.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections import Counter
from dataclasses import dataclass, replace

from packet_trace.model import (
    BridgeEndpoint,
    BridgeHop,
    CounterMove,
    ForwardingStep,
    Listener,
    NatRule,
    OverlayEndpoint,
    OverlayHostView,
    Replica,
    StackOutputs,
    TraceHost,
)
from packet_trace.parse import ContainerInfo, ContainerLink, Link, PortBinding

LOOPBACK = "127.0.0.1"
# How ss prints a socket bound to every address. Compared with, never bound to.
WILDCARDS = frozenset({"0.0.0.0", "*", "::", ""})  # noqa: S104


@dataclass(frozen=True)
class TargetChoice:
    ip: str
    path_kind: str  # "dnat", "docker-proxy" or "unknown"
    reason: str


def ip_matches(condition: str | None, ip: str) -> bool:
    """Does a rule's address condition ('10.0.0.0/8', '!127.0.0.0/8', None) admit ip?"""
    if condition is None:
        return True
    negated = condition.startswith("!")
    network = ipaddress.ip_network(condition.lstrip("!"), strict=False)
    inside = ipaddress.ip_address(ip) in network
    return inside != negated


def admits_locally_generated(in_interface: str | None) -> bool:
    # A packet this host sends has no input interface: '-i X' never matches, '! -i X' always does.
    return in_interface is None or in_interface.startswith("!")


def dnat_rules_for(rules: list[NatRule], host_port: int, to_ip: str, to_port: int) -> list[NatRule]:
    wanted = f"{to_ip}:{to_port}"
    return [
        r
        for r in rules
        if r.target == "DNAT" and r.dport == host_port and r.to_destination == wanted
    ]


def jump_rules(rules: list[NatRule], chain: str = "DOCKER") -> list[NatRule]:
    """The PREROUTING/OUTPUT rules that send packets to the DOCKER chain."""
    return [r for r in rules if r.target == chain and r.chain in ("PREROUTING", "OUTPUT")]


def traverses_dnat(rules: list[NatRule], dnat: NatRule, target_ip: str) -> bool:
    """Would a connection this host opens to target_ip:dport hit `dnat`?

    target_ip must be an address of this host (so the addrtype LOCAL match holds).
    """
    entered = any(
        r.chain == "OUTPUT" and ip_matches(r.destination, target_ip)
        for r in jump_rules(rules, dnat.chain)
    )
    return (
        entered
        and ip_matches(dnat.destination, target_ip)
        and admits_locally_generated(dnat.in_interface)
    )


def listener_for(listeners: list[Listener], ip: str, port: int) -> Listener | None:
    for listener in listeners:
        if listener.port == port and listener.local_address in (ip, *WILDCARDS):
            return listener
    return None


def is_local(links: list[Link], ip: str) -> bool:
    return ip == LOOPBACK or any(str(a.ip) == ip for link in links for a in link.ipv4)


def choose_target(
    via: str,
    host_port: int,
    rules: list[NatRule] | None,
    dnat: list[NatRule],
    listeners: list[Listener],
    links: list[Link],
    gateway: str,
    bridge_if: str,
) -> TargetChoice:
    """Pick the one address the traced request goes to. It is always an address of this host.

    auto: the first of 127.0.0.1 and the stack's gateway (this host's own address on the stack's
    bridge) whose connection passes the DNAT rule, so its counter moves; else 127.0.0.1, the
    endpoint's own path through docker-proxy. Raises ValueError for an address not on this host.
    """
    if via == "auto":
        candidates = [LOOPBACK] + ([gateway] if is_local(links, gateway) else [])
        if rules is not None and dnat:
            for ip in candidates:
                if traverses_dnat(rules, dnat[0], ip):
                    return TargetChoice(ip, "dnat", _reason_dnat(ip, gateway, bridge_if))
        ip = LOOPBACK
    elif via == "loopback":
        ip = LOOPBACK
    elif via == "gateway":
        ip = gateway
    else:
        ip = via
    if not is_local(links, ip):
        raise ValueError(
            f"{ip} is not an address of this host (per `ip -j addr`); the trace sends traffic "
            "only to this host's own addresses"
        )
    if rules is not None and dnat and traverses_dnat(rules, dnat[0], ip):
        return TargetChoice(ip, "dnat", _reason_dnat(ip, gateway, bridge_if))
    listener = listener_for(listeners, ip, host_port)
    if listener is not None:
        why = f"--via {via} asked for it" if via != "auto" else _reason_no_dnat(rules, dnat)
        who = listener.process or "the listening process"
        return TargetChoice(ip, "docker-proxy", f"{why}; {who} accepts it on {ip}")
    return TargetChoice(ip, "unknown", "no DNAT rule and no listener admit this address")


def _reason_dnat(ip: str, gateway: str, bridge_if: str) -> str:
    if ip == LOOPBACK:
        return (
            "the OUTPUT chain sends connections to 127.0.0.1 through DOCKER (the userland "
            "proxy is off), so the endpoint's own address passes the DNAT rule"
        )
    if ip == gateway:
        return (
            f"127.0.0.1 would bypass the nat table (the OUTPUT chain jumps to DOCKER only "
            f"outside 127.0.0.0/8; docker-proxy serves loopback), so the request went to "
            f"{gateway}, this host's own address on {bridge_if}, which the OUTPUT chain "
            f"sends through the DNAT rule"
        )
    return f"{ip} is an address of this host that the OUTPUT chain sends through the DNAT rule"


def _reason_no_dnat(rules: list[NatRule] | None, dnat: list[NatRule]) -> str:
    if rules is None:
        return "the nat table could not be read, so the request took the endpoint's path"
    if not dnat:
        return "there is no DNAT rule for the port, so the request took the endpoint's path"
    return (
        f"no address of this host reaches the DNAT rule from the host itself (it matches "
        f"destination {dnat[0].destination or 'any'}, and the OUTPUT chain jumps to DOCKER only "
        f"outside 127.0.0.0/8), so the request went to the endpoint on 127.0.0.1"
    )


def diff_counters(before: list[NatRule], after: list[NatRule]) -> list[CounterMove]:
    """Every rule present before and after whose packet counter changed.

    Rules are matched on (chain, spec, occurrence), so two identical rules stay distinct.
    """

    def keyed(rules: list[NatRule]) -> dict[tuple[str, str, int], NatRule]:
        seen: Counter[tuple[str, str]] = Counter()
        out = {}
        for r in rules:
            seen[(r.chain, r.spec)] += 1
            out[(r.chain, r.spec, seen[(r.chain, r.spec)])] = r
        return out

    old, new = keyed(before), keyed(after)
    moves = []
    for key, rule in new.items():
        prev = old.get(key)
        if prev is not None and prev.packets != rule.packets:
            moves.append(CounterMove(rule.chain, rule.spec, prev.packets, rule.packets))
    return moves


def attach_veths(
    bridge: BridgeHop, links: list[Link], container_links: list[ContainerLink]
) -> BridgeHop:
    """Fill in each endpoint's host-side veth: the host interface whose ifindex is the
    container interface's iflink (matched to the endpoint by MAC)."""
    by_index = {link.ifindex: link for link in links}
    endpoints: list[BridgeEndpoint] = []
    for ep in bridge.endpoints:
        found = next(
            (c for c in container_links if c.container == ep.container and c.mac == ep.mac), None
        )
        if found is None:
            endpoints.append(ep)
            continue
        host = by_index.get(found.iflink)
        endpoints.append(
            replace(
                ep,
                container_ifname=found.ifname,
                host_ifindex=found.iflink,
                host_veth=host.name if host else None,
                veth_master=host.master if host else None,
            )
        )
    present = any(link.name == bridge.interface for link in links)
    return replace(bridge, endpoints=endpoints, interface_present=present)


def stack_outputs(
    stack: str,
    bridge: BridgeHop,
    external: ContainerInfo,
    internal: ContainerInfo,
    published: PortBinding,
) -> StackOutputs:
    """The stack outputs, as Docker's objects of the stack hold them."""
    return StackOutputs(
        stack=stack,
        host_port=published.host_port,
        internal_ip=internal.networks.get(bridge.network_name, ("", ""))[0],
        external_ip=external.networks.get(bridge.network_name, ("", ""))[0],
        subnet=bridge.subnet,
        gateway=bridge.gateway,
        network_name=bridge.network_name,
        internal_url=external.env.get("INTERNAL_URL", ""),
    )


# ---------------------------------------------------------------------------------------------
# multi-host: the request from another machine, the overlay's namespace and forwarding
# ---------------------------------------------------------------------------------------------


def interface_admits(condition: str | None, interface: str | None) -> bool:
    """Does a rule's interface condition ('eth0', '!docker0', None) admit a packet that came in
    on `interface` (None: sent by this host)?"""
    if condition is None:
        return True
    if interface is None:
        return admits_locally_generated(condition)
    negated = condition.startswith("!")
    name = condition.lstrip("!")
    # iptables' '+' suffix is a prefix match.
    same = interface.startswith(name[:-1]) if name.endswith("+") else interface == name
    return same != negated


def traverses_dnat_from_outside(
    rules: list[NatRule], dnat: NatRule, target_ip: str, in_interface: str
) -> bool:
    """Would a connection from another machine to target_ip:dport, arriving on in_interface, hit
    `dnat`? It enters the nat table at PREROUTING. target_ip must be local to the host."""
    entered = any(
        r.chain == "PREROUTING"
        and ip_matches(r.destination, target_ip)
        and interface_admits(r.in_interface, in_interface)
        for r in jump_rules(rules, dnat.chain)
    )
    return (
        entered
        and ip_matches(dnat.destination, target_ip)
        and interface_admits(dnat.in_interface, in_interface)
    )


def interface_of(links: list[Link], ip: str) -> str | None:
    """The interface holding address ip."""
    return next((link.name for link in links for a in link.ipv4 if str(a.ip) == ip), None)


def in_subnet(ip: str, subnet: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        return False


def overlay_netns(names: list[str], network_id: str) -> str | None:
    """The overlay's namespace among the names in an engine's <exec-root>/netns: libnetwork names
    it '<epoch>-<network id>' cut to 12 characters (e.g. 1-tz5yy0f9yb)."""
    for name in names:
        epoch, sep, prefix = name.partition("-")
        if sep and epoch.isdigit() and prefix and network_id.startswith(prefix):
            return name
    return None


def host_with_address(hosts: list[TraceHost], address: str | None) -> str | None:
    return next((h.name for h in hosts if address is not None and h.address == address), None)


def forwarding_step(
    view: OverlayHostView, to: OverlayEndpoint, hosts: list[TraceHost]
) -> ForwardingStep:
    """How view's host reaches `to` over the overlay: the vxlan's neighbour entry for to's IP,
    then the fdb entry for to's MAC, whose dst is the remote host's underlay address."""
    neighbour = next((n for n in view.neighbours if n.ip == to.ipv4), None)
    entry = next((e for e in view.fdb if e.mac == to.mac and e.dst), None)
    vtep = entry.dst if entry else None
    return ForwardingStep(
        host=view.host,
        to_container=to.container,
        ip=to.ipv4,
        mac=to.mac,
        neighbour_mac=neighbour.mac if neighbour else None,
        vtep=vtep,
        vtep_host=host_with_address(hosts, vtep),
    )


def counted_packets(rules: list[NatRule], comment: str) -> dict[str, int]:
    """Packets counted so far by the rules carrying `comment`, per chain (iptables-save -c)."""
    counts: dict[str, int] = {}
    for rule in rules:
        if comment in shlex.split(rule.spec):
            counts[rule.chain] = counts.get(rule.chain, 0) + rule.packets
    return counts


def counting_rules(interface: str, port: int, comment: str) -> list[tuple[str, list[str]]]:
    """(chain, match) of the rules that count UDP to `port` leaving and entering on `interface`.
    They have no target: a packet goes on as if they were not there."""
    match = ["-p", "udp", "--dport", str(port), "-m", "comment", "--comment", comment]
    return [("OUTPUT", ["-o", interface, *match]), ("INPUT", ["-i", interface, *match])]


def answering_replica(
    replicas: list[Replica], hostname: str | None, container_ip: str | None
) -> Replica | None:
    """The replica that answered a request, by the hostname and address it reported (both must
    match: a replaced replica can take the same slot hostname, or a freed address)."""
    return next(
        (r for r in replicas if r.hostname == hostname and r.ipv4 == container_ip),
        None,
    )
