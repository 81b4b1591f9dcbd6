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
    # Multi-host only: the address of external's host (c2c:hosts), which clients reach.
    host_address: str | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host_address or 'localhost'}:{self.host_port}"


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


@dataclass(frozen=True)
class AppContainer:
    """An app container: it has no network of its own, it runs in its sandbox's namespace."""

    name: str
    running: bool
    pid: int | None  # its first process on the engine's host (None: stopped)


@dataclass(frozen=True)
class NamespaceListener:
    """A listening TCP socket inside a service's namespace and the app container holding it."""

    local_address: str
    port: int
    process: str | None
    pid: int | None
    container: str | None  # the app container whose process it is (None: not found)


@dataclass
class ServiceNamespace:
    """A service's network namespace: the sandbox container owns it (its IP, MAC, published
    port), the app container(s) run in it; during a redeploy two apps listen side by side."""

    service: str
    sandbox: str
    hostname: str
    apps: list[AppContainer] = field(default_factory=list)
    listeners: list[NamespaceListener] | None = None  # None: not read (see the notes)
    host: str | None = None  # multi-host: the host of c2c:hosts it runs on


# --- multi-host: the stack's engines and the overlay between them ------------------------------


@dataclass
class TraceHost:
    """One Docker host of a multi-host stack (c2c:hosts) and where its namespace was found."""

    name: str
    address: str  # where clients reach it (its underlay address in the lab)
    url: str
    services: list[str] = field(default_factory=list)  # c2c.service labels found on its engine
    netns: str | None = None  # file of its engine's network namespace (None: not reachable here)
    netns_name: str | None = None  # that namespace's name under /run/netns, if it has one


@dataclass(frozen=True)
class OverlayLink:
    """A link of an overlay's namespace (`ip -j -d -s addr show` there)."""

    name: str
    kind: str | None  # linkinfo.info_kind: "bridge", "vxlan", "veth"; None for lo
    mtu: int
    mac: str
    master: str | None
    ipv4: tuple[str, ...] = ()  # "172.13.0.1/16"
    vni: int | None = None  # vxlan only
    dstport: int | None = None  # vxlan only: the UDP port of the encapsulation
    rx_packets: int | None = None
    tx_packets: int | None = None


@dataclass(frozen=True)
class FdbEntry:
    """One forwarding entry of a vxlan device (`bridge -j fdb show dev vxlan0`)."""

    mac: str
    # The remote VTEP (a host's underlay address), on the vxlan device's own entries ("self");
    # None on the entries the bridge holds for its port (master br0, learned or local).
    dst: str | None
    state: str
    master: str | None = None


@dataclass(frozen=True)
class Neighbour:
    """One ARP entry of a vxlan device (`ip -j neigh show dev vxlan0`): overlay IP -> MAC."""

    ip: str
    mac: str
    state: str


@dataclass
class UnderlayCount:
    """UDP packets to the VXLAN port counted on a host's underlay interface around the request,
    by rules the trace inserted for the request and removed after it."""

    interface: str
    chain: str  # OUTPUT (sent) or INPUT (received)
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass
class OverlayHostView:
    """The overlay as one host holds it: its namespace, devices, forwarding and counters."""

    host: str
    netns: str | None = None  # <exec-root>/netns/<n>-<network id prefix>
    bridge: OverlayLink | None = None
    vxlan: OverlayLink | None = None
    fdb: list[FdbEntry] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    underlay_interface: str | None = None  # the device the host routes to its peer through
    underlay_mtu: int | None = None
    counts: list[UnderlayCount] = field(default_factory=list)
    vxlan_tx_delta: int | None = None  # vxlan device's own packet counters around the request
    vxlan_rx_delta: int | None = None


@dataclass(frozen=True)
class OverlayEndpoint:
    container: str
    service: str
    host: str
    ipv4: str
    mac: str


@dataclass(frozen=True)
class ForwardingStep:
    """How `host` sends a frame to `to_container`: neighbour IP -> MAC, fdb MAC -> VTEP."""

    host: str
    to_container: str
    ip: str
    mac: str
    neighbour_mac: str | None  # what the vxlan's ARP table answers for ip
    vtep: str | None  # the fdb entry's dst for mac
    vtep_host: str | None  # the host of c2c:hosts with that address


@dataclass(frozen=True)
class Replica:
    """One task container of a replicated internal (a Swarm service, c2c:internalReplicas > 1)."""

    container: str  # the task's container name, <service>.<slot>.<task id>
    hostname: str  # what the replica reports as its hostname (<service>-<slot>)
    host: str
    ipv4: str
    mac: str
    running: bool


@dataclass
class ReplicaSet:
    """internal as several replicas reached by a DNS name instead of one static IP."""

    service: str  # the Swarm service (com.docker.swarm.service.name)
    dns_name: str  # the host of INTERNAL_URL, which external resolves
    replicas: list[Replica] = field(default_factory=list)
    resolver: str | None = None  # where the name was asked: Docker's embedded DNS
    dns_answer: list[str] | None = None  # its A records, in the order given (None: not read)
    followed: str | None = None  # container of the replica that answered the traced request


@dataclass
class OverlayHop:
    network_name: str
    network_id: str
    driver: str
    subnet: str
    gateway: str
    ip_range: str | None
    published_via: str | None = None  # external's address on docker_gwbridge (the DNAT target)
    gwbridge_network: str = "docker_gwbridge"
    endpoints: list[OverlayEndpoint] = field(default_factory=list)
    hosts: list[OverlayHostView] = field(default_factory=list)
    forward: ForwardingStep | None = None  # external's host -> internal
    reply: ForwardingStep | None = None  # internal's host -> external
    # Replicated internal only (None for one internal container, and then left out of the JSON).
    replicas: ReplicaSet | None = None

    def view(self, host: str) -> OverlayHostView | None:
        return next((v for v in self.hosts if v.host == host), None)


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
    # Multi-host stacks only (None on one host, and then left out of the JSON).
    hosts: list[TraceHost] | None = None
    hosts_source: str | None = None  # the stack file c2c:hosts was read from
    overlay: OverlayHop | None = None
    # Stacks whose services run in sandboxes (None before them, and then left out of the JSON).
    namespaces: list[ServiceNamespace] | None = None

    def host(self, name: str) -> TraceHost | None:
        return next((h for h in self.hosts or [] if h.name == name), None)

    def service_host(self, service: str) -> TraceHost | None:
        return next((h for h in self.hosts or [] if service in h.services), None)

    def add_problem(self, hop: str, code: str, message: str, remedy: str) -> None:
        self.problems.append(Problem(hop, code, message, remedy))

    def to_dict(self) -> dict[str, Any]:
        """The facts as JSON-ready data, with the derived endpoint and counter deltas."""
        data = asdict(self)
        if self.hosts is None:  # one host: the report as it has always been
            for key in ("hosts", "hosts_source", "overlay"):
                del data[key]
        if self.namespaces is None:
            del data["namespaces"]
        if self.outputs is not None:
            data["outputs"]["endpoint"] = self.outputs.endpoint
            if self.outputs.host_address is None:
                del data["outputs"]["host_address"]
        if self.overlay is not None:
            if self.overlay.replicas is None:
                del data["overlay"]["replicas"]
            for view, raw in zip(self.overlay.hosts, data["overlay"]["hosts"], strict=True):
                for count, raw_count in zip(view.counts, raw["counts"], strict=True):
                    raw_count["delta"] = count.delta
        if self.nat is not None:
            for move, raw in zip(self.nat.moves, data["nat"]["moves"], strict=True):
                raw["delta"] = move.delta
        return data
