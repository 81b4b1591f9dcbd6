"""Pure reasoning over parsed facts: which rules apply, which address to send the one request to,
which counters moved. No I/O.

The model of the nat table used here is Docker 20.10's (libnetwork): PREROUTING and OUTPUT jump
to the DOCKER chain for destinations of type LOCAL (OUTPUT only outside 127.0.0.0/8 while the
userland proxy is on), and DOCKER holds one DNAT rule per published port. A request this host
sends is "locally generated": it passes OUTPUT, never PREROUTING, and has no input interface.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, replace

from packet_trace.model import (
    BridgeEndpoint,
    BridgeHop,
    CounterMove,
    Listener,
    NatRule,
    StackOutputs,
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
