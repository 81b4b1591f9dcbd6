"""The facts a trace collects, as plain dataclasses.

Everything here is data read from the live system (or from fixtures captured from it); nothing is
computed from configuration. The text renderer, the JSON output and the diagram all read this one
model, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class StackOutputs:
    """The stack's outputs (as `pulumi stack output` names them), read from Docker's objects
    labelled c2c.stack=<stack>."""

    stack: str
    host_port: int
    internal_ip: str
    external_ip: str
    subnet: str
    gateway: str
    network_name: str
    internal_url: str  # INTERNAL_URL in external's container env

    @property
    def endpoint(self) -> str:
        return f"http://localhost:{self.host_port}"


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket, as `ss -Hltnp` prints it."""

    local_address: str
    port: int
    process: str | None
    pid: int | None


@dataclass(frozen=True)
class NatRule:
    """One rule of the nat table with its counters, in the syntax the tool printed it."""

    chain: str
    spec: str  # exactly as the kernel's tool printed it, without the counters
    packets: int
    bytes: int
    syntax: str  # "iptables" (iptables-save) or "nft" (nft list)
    target: str  # DNAT, MASQUERADE, RETURN, or the chain jumped to
    destination: str | None = None  # -d / ip daddr, e.g. "127.0.0.1/32", "!127.0.0.0/8"
    in_interface: str | None = None  # -i / iifname, "!" prefix when negated
    out_interface: str | None = None
    dport: int | None = None
    to_destination: str | None = None  # DNAT target "ip:port"
    dst_type_local: bool = False  # -m addrtype --dst-type LOCAL / fib daddr type local


@dataclass(frozen=True)
class CounterMove:
    chain: str
    spec: str
    packets_before: int
    packets_after: int

    @property
    def delta(self) -> int:
        return self.packets_after - self.packets_before


@dataclass
class Problem:
    """Something the trace could not read, and what the user can do about it."""

    hop: str
    code: str
    message: str
    remedy: str


@dataclass
class HostPortHop:
    port: int
    bind_ip: str | None  # HostIp of the container's port binding
    container_port: int | None
    listeners: list[Listener] = field(default_factory=list)
    process_visible: bool = True  # False when ss ran without privilege: no users:(...) column


@dataclass
class TracedRequest:
    """The one request the trace sent, and why it went where it went."""

    target_ip: str
    port: int
    reason: str
    path_kind: str  # "dnat" (through the nat table), "docker-proxy" or "unknown"
    status: int | None = None
    total_ms: float | None = None
    error: str | None = None


@dataclass
class NatHop:
    backend: str | None  # "nf_tables" or "legacy" (from iptables --version), or "nft"
    command: str | None
    readable: bool
    dnat_rules: list[NatRule] = field(default_factory=list)
    jump_rules: list[NatRule] = field(default_factory=list)  # PREROUTING/OUTPUT -> DOCKER
    moves: list[CounterMove] = field(default_factory=list)  # every rule whose counter moved
    dnat_moved_by: int | None = None


@dataclass
class BridgeEndpoint:
    container: str
    ipv4: str
    mac: str
    container_ifname: str | None = None
    host_veth: str | None = None
    host_ifindex: int | None = None
    veth_master: str | None = None


@dataclass
class BridgeHop:
    network_name: str
    network_id: str
    interface: str
    interface_present: bool
    subnet: str
    gateway: str
    endpoints: list[BridgeEndpoint] = field(default_factory=list)


@dataclass
class ServiceHop:
    internal_url: str | None  # INTERNAL_URL from external's container env
    external_client_ip: str | None = None
    external_container_ip: str | None = None
    external_hostname: str | None = None
    internal_client_ip: str | None = None
    internal_container_ip: str | None = None
    internal_hostname: str | None = None
    total_ms: float | None = None
    upstream_ms: float | None = None


@dataclass
class Trace:
    stack: str
    outputs: StackOutputs | None = None
    host_port: HostPortHop | None = None
    request: TracedRequest | None = None
    nat: NatHop | None = None
    bridge: BridgeHop | None = None
    services: ServiceHop | None = None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts about how the trace got its data

    def add_problem(self, hop: str, code: str, message: str, remedy: str) -> None:
        self.problems.append(Problem(hop, code, message, remedy))

    def to_dict(self) -> dict[str, Any]:
        """The facts as JSON-ready data, with the derived endpoint and counter deltas."""
        data = asdict(self)
        if self.outputs is not None:
            data["outputs"]["endpoint"] = self.outputs.endpoint
        if self.nat is not None:
            for move, raw in zip(self.nat.moves, data["nat"]["moves"], strict=True):
                raw["delta"] = move.delta
        return data
