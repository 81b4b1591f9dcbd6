"""Pure parsers, one per command output (in the manner of jc): text or JSON in, facts out. No I/O.

Each parser is tested on output captured from the Pulumi-deployed dev stack on a Docker 20.10 host,
or from network namespaces rebuilt with the same links (tests/unit/trace/fixtures/).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from packet_trace.model import (
    BridgeEndpoint,
    BridgeHop,
    FdbEntry,
    Listener,
    NatRule,
    Neighbour,
    OverlayHop,
    OverlayLink,
)


@dataclass(frozen=True)
class PortBinding:
    container_port: int
    protocol: str
    host_ip: str
    host_port: int


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    running: bool
    labels: dict[str, str]
    env: dict[str, str]
    port_bindings: list[PortBinding]
    # network name -> (ipv4, mac)
    networks: dict[str, tuple[str, str]] = field(default_factory=dict)
    id: str = ""
    # The file of its network namespace: <engine exec root>/netns/<sandbox id prefix>.
    sandbox_key: str = ""
    hostname: str = ""
    pid: int = 0  # its first process on the engine's host (State.Pid); 0 when stopped


@dataclass(frozen=True)
class Link:
    """A network interface of the current network namespace, as netlink (`ip -j addr`) shows it."""

    ifindex: int
    name: str
    master: str | None  # the bridge a veth is enslaved to
    ipv4: tuple[ipaddress.IPv4Interface, ...] = ()
    mtu: int | None = None


@dataclass(frozen=True)
class ContainerLink:
    """A container interface: its name, its peer's ifindex on the host (iflink), its MAC."""

    container: str
    ifname: str
    iflink: int
    mac: str


class ParseError(ValueError):
    """Input that does not have the shape the parser expects."""


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"{what} is not JSON: {text[:200]!r}") from exc


# ---------------------------------------------------------------------------------------------
# nat table: iptables-save
# ---------------------------------------------------------------------------------------------

_COUNTER_RE = re.compile(r"^\[(\d+):(\d+)\]\s+")


def parse_iptables_save(text: str, table: str = "nat") -> list[NatRule]:
    """Rules of one table from `iptables-save [-c]` output, in order, with their counters.

    Without `-c` there are no counters and packets/bytes are 0.
    """
    rules: list[NatRule] = []
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = line[1:]
            continue
        if line == "COMMIT" or current != table or line.startswith(":"):
            continue
        packets = bytes_ = 0
        match = _COUNTER_RE.match(line)
        if match:
            packets, bytes_ = int(match.group(1)), int(match.group(2))
            line = line[match.end() :]
        if not line.startswith("-A "):
            continue
        rules.append(_iptables_rule(line, packets, bytes_))
    return rules


def _iptables_rule(spec: str, packets: int, bytes_: int) -> NatRule:
    tokens = shlex.split(spec)
    chain = tokens[1]
    fields: dict[str, str] = {}
    negate = False
    dst_local = False
    i = 2
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            negate = True
            i += 1
            continue
        value = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in ("-d", "-i", "-o", "--dport", "-j", "--to-destination"):
            fields[tok] = ("!" if negate else "") + value
            i += 2
        elif tok == "--dst-type":
            dst_local = value == "LOCAL" and not negate
            i += 2
        else:
            i += 1
        negate = False
    dport = fields.get("--dport")
    return NatRule(
        chain=chain,
        spec=spec,
        packets=packets,
        bytes=bytes_,
        syntax="iptables",
        target=fields.get("-j", ""),
        destination=fields.get("-d"),
        in_interface=fields.get("-i"),
        out_interface=fields.get("-o"),
        dport=int(dport) if dport and dport.isdigit() else None,
        to_destination=fields.get("--to-destination"),
        dst_type_local=dst_local,
    )


def parse_iptables_version(text: str) -> str | None:
    """'nf_tables' or 'legacy' from `iptables --version` ('iptables v1.8.9 (nf_tables)')."""
    match = re.search(r"\((nf_tables|legacy)\)", text)
    return match.group(1) if match else None


def classify_command_error(returncode: int, stderr: str) -> str:
    """'ok', 'permission', 'missing' or 'error' for a command that read the nat table."""
    if returncode == 0:
        return "ok"
    lowered = stderr.lower()
    if any(s in lowered for s in ("permission denied", "not permitted", "must be root")):
        return "permission"
    if returncode == 127 or "not found" in lowered or "no such file" in lowered:
        return "missing"
    return "error"


# ---------------------------------------------------------------------------------------------
# nat table: nft list table ip nat / nft list ruleset
# ---------------------------------------------------------------------------------------------
# nft's text, not `nft -j`: Docker writes its rules through iptables-nft, and nft's JSON prints
# their DNAT and addrtype parts as opaque "xt" expressions without the destination
# (fixtures/real-dev/nft-nat.json); the text shows them translated (`dnat to 172.13.0.3:8081`).

_NFT_COUNTER_RE = re.compile(r"counter packets (\d+) bytes (\d+)")
_NFT_DNAT_RE = re.compile(r"\bdnat (?:ip )?to (\S+)")


def parse_nft_table(text: str, family: str = "ip", table: str = "nat") -> list[NatRule]:
    """Rules of one nft table from `nft list table ip nat` or `nft list ruleset`.

    The spec kept for a rule is its line with the counter's numbers removed, so that the same
    rule before and after a request has the same spec.
    """
    rules: list[NatRule] = []
    in_table = False
    chain: str | None = None
    depth = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("table ") and line.endswith("{"):
            in_table = line.split()[1:3] == [family, table]
            depth = 1
            continue
        if line.startswith("chain ") and line.endswith("{"):
            chain = line.split()[1]
            depth = 2
            continue
        if line == "}":
            depth -= 1
            if depth <= 1:
                chain = None
            if depth == 0:
                in_table = False
            continue
        if not in_table or chain is None or line.startswith(("type ", "policy ")):
            continue
        rules.append(_nft_rule(chain, line))
    return rules


def _nft_rule(chain: str, line: str) -> NatRule:
    packets = bytes_ = 0
    counter = _NFT_COUNTER_RE.search(line)
    if counter:
        packets, bytes_ = int(counter.group(1)), int(counter.group(2))
    spec = _NFT_COUNTER_RE.sub("counter", line)
    tokens = shlex.split(line)
    target = ""
    to_destination = None
    dnat = _NFT_DNAT_RE.search(line)
    if dnat:
        target, to_destination = "DNAT", dnat.group(1)
    elif "masquerade" in tokens:
        target = "MASQUERADE"
    elif "return" in tokens:
        target = "RETURN"
    elif "jump" in tokens:
        target = tokens[tokens.index("jump") + 1]
    return NatRule(
        chain=chain,
        spec=spec,
        packets=packets,
        bytes=bytes_,
        syntax="nft",
        target=target,
        destination=_nft_match(tokens, ["ip", "daddr"]),
        in_interface=_nft_match(tokens, ["iifname"]),
        out_interface=_nft_match(tokens, ["oifname"]),
        dport=_int_or_none(_nft_match(tokens, ["tcp", "dport"])),
        to_destination=to_destination,
        dst_type_local="fib daddr type local" in line,
    )


def _nft_match(tokens: list[str], key: list[str]) -> str | None:
    """The value after a key such as `ip daddr`, with '!' for `!=`."""
    n = len(key)
    for i in range(len(tokens) - n):
        if tokens[i : i + n] == key:
            value = tokens[i + n]
            if value == "!=" and i + n + 1 < len(tokens):
                return "!" + tokens[i + n + 1]
            return value
    return None


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


# ---------------------------------------------------------------------------------------------
# ss, ip -j addr, the container's sysfs
# ---------------------------------------------------------------------------------------------

_SS_PROC_RE = re.compile(r'\("([^"]+)",pid=(\d+)')


def parse_ss_listeners(text: str) -> list[Listener]:
    """Listening TCP sockets from `ss -Hltnp` (process known only when run with privilege)."""
    listeners: list[Listener] = []
    for raw in text.splitlines():
        parts = raw.split()
        if len(parts) < 5 or parts[0] != "LISTEN":
            continue
        address, _, port = parts[3].rpartition(":")
        if not port.isdigit():
            continue
        address = address.strip("[]").split("%", 1)[0]
        process = pid = None
        proc = _SS_PROC_RE.search(raw)
        if proc:
            process, pid = proc.group(1), int(proc.group(2))
        listeners.append(Listener(local_address=address, port=int(port), process=process, pid=pid))
    return listeners


def parse_ip_addr(text: str) -> list[Link]:
    """Every interface with its ifindex, bridge and IPv4 addresses from `ip -j addr show`."""
    return [
        Link(
            ifindex=int(item["ifindex"]),
            name=str(item["ifname"]),
            master=item.get("master"),
            ipv4=tuple(
                ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
                for a in item.get("addr_info") or []
                if a.get("family") == "inet"
            ),
            mtu=int(item["mtu"]) if "mtu" in item else None,
        )
        for item in _json(text, "`ip -j addr show`")
    ]


def parse_sysfs_link(text: str) -> tuple[int, str] | None:
    """(iflink, mac) from `cat /sys/class/net/IF/iflink /sys/class/net/IF/address` run inside a
    container: iflink is the ifindex of the veth's other end, on the host."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1].lower()


# ---------------------------------------------------------------------------------------------
# Docker inspect JSON (CLI `docker ... inspect` or the API: the same documents)
# ---------------------------------------------------------------------------------------------


def _one(data: Any) -> dict[str, Any]:
    """`docker inspect` prints a list; the API returns one object. Accept both."""
    if isinstance(data, str):
        data = _json(data, "inspect output")
    if isinstance(data, list):
        if len(data) != 1:
            raise ParseError(f"expected one inspected object, got {len(data)}")
        data = data[0]
    if not isinstance(data, dict):
        raise ParseError("inspect output is not a JSON object")
    return data


def parse_network_inspect(data: Any) -> BridgeHop:
    """The bridge facts of a `docker network inspect` document (veths are filled in later)."""
    net = _one(data)
    configs = (net.get("IPAM") or {}).get("Config") or []
    if not configs:
        raise ParseError(f"network {net.get('Name')} has no IPAM config")
    network_id = str(net["Id"])
    options = net.get("Options") or {}
    # Docker names a user-defined bridge br-<first 12 hex of the network id> unless told otherwise.
    interface = options.get("com.docker.network.bridge.name") or f"br-{network_id[:12]}"
    endpoints = [
        BridgeEndpoint(
            container=str(info.get("Name", "")),
            ipv4=str(info.get("IPv4Address", "")).split("/", 1)[0],
            mac=str(info.get("MacAddress", "")).lower(),
        )
        for info in (net.get("Containers") or {}).values()
    ]
    endpoints.sort(key=lambda e: _ip_sort_key(e.ipv4))
    return BridgeHop(
        network_name=str(net["Name"]),
        network_id=network_id,
        interface=interface,
        interface_present=False,
        subnet=str(configs[0].get("Subnet", "")),
        gateway=str(configs[0].get("Gateway", "")),
        endpoints=endpoints,
    )


def _ip_sort_key(ip: str) -> tuple[int, ...]:
    return tuple(int(p) for p in ip.split(".")) if ip.count(".") == 3 else (999,)


def parse_container_inspect(data: Any) -> ContainerInfo:
    c = _one(data)
    config = c.get("Config") or {}
    env = {k: v for k, _, v in (str(item).partition("=") for item in config.get("Env") or [])}
    bindings: list[PortBinding] = []
    ports = (c.get("HostConfig") or {}).get("PortBindings") or {}
    for key, hosts in ports.items():
        cport, _, proto = str(key).partition("/")
        for host in hosts or []:
            bindings.append(
                PortBinding(
                    container_port=int(cport),
                    protocol=proto or "tcp",
                    # Docker leaves HostIp empty for "every address"; name it as ss does.
                    host_ip=str(host.get("HostIp") or "0.0.0.0"),  # noqa: S104 - a label
                    host_port=int(host.get("HostPort") or 0),
                )
            )
    networks: dict[str, tuple[str, str]] = {}
    for name, info in ((c.get("NetworkSettings") or {}).get("Networks") or {}).items():
        # A stopped container has no IPAddress; its static IP stays in IPAMConfig.
        static = (info.get("IPAMConfig") or {}).get("IPv4Address", "")
        ip = str(info.get("IPAddress") or static)
        networks[name] = (ip, str(info.get("MacAddress", "")).lower())
    return ContainerInfo(
        name=str(c.get("Name", "")).lstrip("/"),
        running=bool((c.get("State") or {}).get("Running")),
        labels=dict(config.get("Labels") or {}),
        env=env,
        port_bindings=bindings,
        networks=networks,
        id=str(c.get("Id", "")),
        sandbox_key=str((c.get("NetworkSettings") or {}).get("SandboxKey") or ""),
        hostname=str(config.get("Hostname") or ""),
        pid=int((c.get("State") or {}).get("Pid") or 0),
    )


def parse_container_top(data: Any) -> list[int]:
    """The PIDs (on the engine's host) of a container's processes, from the API's
    /containers/<id>/top document (`docker top`)."""
    if not isinstance(data, dict):
        raise ParseError("top output is not a JSON object")
    titles = [str(t) for t in data.get("Titles") or []]
    if "PID" not in titles:
        raise ParseError(f"top output has no PID column: {titles}")
    column = titles.index("PID")
    return [
        int(row[column])
        for row in data.get("Processes") or []
        if len(row) > column and str(row[column]).isdigit()
    ]


def parse_overlay_inspect(data: Any) -> OverlayHop:
    """The overlay facts of a `docker network inspect` document of a Swarm overlay. Endpoints are
    left out: each engine lists only its own containers, so the collector merges them."""
    net = _one(data)
    configs = (net.get("IPAM") or {}).get("Config") or []
    if not configs:
        raise ParseError(f"network {net.get('Name')} has no IPAM config")
    return OverlayHop(
        network_name=str(net["Name"]),
        network_id=str(net["Id"]),
        driver=str(net.get("Driver", "")),
        subnet=str(configs[0].get("Subnet", "")),
        gateway=str(configs[0].get("Gateway", "")),
        ip_range=configs[0].get("IPRange") or None,
    )


def parse_network_address(data: Any, container_id: str) -> str | None:
    """A container's IPv4 address on a network, from that network's inspect document (its
    Containers are keyed by container id): e.g. external's address on docker_gwbridge, which
    Docker does not list among the container's own networks."""
    net = _one(data)
    info = (net.get("Containers") or {}).get(container_id)
    if not info or not info.get("IPv4Address"):
        return None
    return str(info["IPv4Address"]).split("/", 1)[0]


# ---------------------------------------------------------------------------------------------
# an overlay's namespace: ip -j -d -s addr, bridge -j fdb, ip -j neigh; ip -j route get
# ---------------------------------------------------------------------------------------------


def parse_netns_links(text: str) -> list[OverlayLink]:
    """Every link of a namespace from `ip -j -d -s addr show`: kind, MTU, bridge, addresses,
    packet counters and, for a vxlan device, its VNI and UDP port."""
    links = []
    for item in _json(text, "`ip -j -d -s addr show`"):
        info = item.get("linkinfo") or {}
        data = info.get("info_data") or {}
        kind = info.get("info_kind")
        stats = item.get("stats64") or item.get("stats") or {}
        links.append(
            OverlayLink(
                name=str(item["ifname"]),
                kind=str(kind) if kind else None,
                mtu=int(item["mtu"]),
                mac=str(item.get("address", "")).lower(),
                master=item.get("master"),
                ipv4=tuple(
                    f"{a['local']}/{a['prefixlen']}"
                    for a in item.get("addr_info") or []
                    if a.get("family") == "inet"
                ),
                vni=int(data["id"]) if kind == "vxlan" and "id" in data else None,
                dstport=int(data["port"]) if kind == "vxlan" and "port" in data else None,
                rx_packets=_packets(stats, "rx"),
                tx_packets=_packets(stats, "tx"),
            )
        )
    return links


def _packets(stats: dict[str, Any], direction: str) -> int | None:
    value = (stats.get(direction) or {}).get("packets")
    return int(value) if value is not None else None


def parse_bridge_fdb(text: str) -> list[FdbEntry]:
    """Forwarding entries from `bridge -j fdb show dev DEV`: MAC -> remote VTEP (dst)."""
    return [
        FdbEntry(
            mac=str(item["mac"]).lower(),
            dst=item.get("dst"),
            state=str(item.get("state", "")),
            master=item.get("master"),
        )
        for item in _json(text, "`bridge -j fdb show`")
    ]


def parse_ip_neigh(text: str) -> list[Neighbour]:
    """Neighbours from `ip -j neigh show dev DEV`: IP -> MAC (entries without a MAC skipped)."""
    found = []
    for item in _json(text, "`ip -j neigh show`"):
        if "lladdr" not in item:
            continue
        state = item.get("state") or []
        found.append(
            Neighbour(
                ip=str(item["dst"]),
                mac=str(item["lladdr"]).lower(),
                state=",".join(state) if isinstance(state, list) else str(state),
            )
        )
    return found


def parse_route_get(text: str) -> str | None:
    """The device of the route `ip -j route get ADDR` picks (None when it names none)."""
    routes = _json(text, "`ip -j route get`")
    if not routes or not isinstance(routes, list):
        return None
    dev = routes[0].get("dev")
    return str(dev) if dev else None


# ---------------------------------------------------------------------------------------------
# the services' JSON
# ---------------------------------------------------------------------------------------------


def parse_service_response(text: str) -> dict[str, Any]:
    """external's `GET /` JSON; checks the keys the trace reads."""
    data = _json(text, "external's answer")
    if not isinstance(data, dict):
        raise ParseError("external's answer is not a JSON object")
    if "error" in data:
        raise ParseError(f"external answered an error: {data.get('error')}: {data.get('message')}")
    for key in ("client_ip", "container_ip", "upstream", "upstream_ms"):
        if key not in data:
            raise ParseError(f"external's answer lacks {key!r}")
    if not isinstance(data["upstream"], dict) or "client_ip" not in data["upstream"]:
        raise ParseError("external's answer has no upstream client_ip")
    return data


# ---------------------------------------------------------------------------------------------
# a DNS answer (packet_trace.dns prints it in hex)
# ---------------------------------------------------------------------------------------------

DNS_TYPE_A = 1
DNS_NXDOMAIN = 3


def parse_dns_response(text: str) -> list[str]:
    """The IPv4 addresses of a DNS response's A records, in the order the server gave them;
    [] when the name does not exist. Input: the response in hex, as packet_trace.dns prints."""
    try:
        data = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise ParseError(f"DNS answer is not hex: {exc}") from exc
    if len(data) < 12:
        raise ParseError(f"DNS answer of {len(data)} bytes is shorter than its header")
    _, flags, questions, answers = (int.from_bytes(data[i : i + 2], "big") for i in (0, 2, 4, 6))
    rcode = flags & 0xF
    if rcode == DNS_NXDOMAIN:
        return []
    if rcode != 0:
        raise ParseError(f"DNS answered with error code {rcode}")
    at = 12
    for _ in range(questions):
        at = _dns_skip_name(data, at) + 4  # type, class
    found = []
    for _ in range(answers):
        at = _dns_skip_name(data, at)
        if at + 10 > len(data):
            raise ParseError("DNS answer cut short in a record")
        rtype = int.from_bytes(data[at : at + 2], "big")
        length = int.from_bytes(data[at + 8 : at + 10], "big")
        rdata = data[at + 10 : at + 10 + length]
        if len(rdata) != length:
            raise ParseError("DNS answer cut short in a record's data")
        if rtype == DNS_TYPE_A and length == 4:
            found.append(str(ipaddress.IPv4Address(rdata)))
        at += 10 + length
    return found


def _dns_skip_name(data: bytes, at: int) -> int:
    """The offset after a (possibly compressed) name starting at `at`."""
    while True:
        if at >= len(data):
            raise ParseError("DNS answer cut short in a name")
        length = data[at]
        if length & 0xC0 == 0xC0:  # a pointer ends the name
            return at + 2
        at += 1 + length
        if length == 0:
            return at
