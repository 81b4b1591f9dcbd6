"""A request from another host, proven from live state (default stack: 8090 -> 172.13.0.3:8081).

The "other host" is a network namespace this module creates: its own network stack, joined to
the host by a veth pair with a private /30. A connection it opens to the host's address on the
veth arrives from outside, so it enters the host's nat table at PREROUTING (never OUTPUT), is
sent to DOCKER by `-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER` and rewritten by the
same DNAT rule a local request to the gateway meets. Nothing SNATs it on the way to the bridge,
so external sees the client's real address. A request to 127.0.0.1 instead is served by
docker-proxy, which opens its own connection to external from the bridge's gateway.

Traffic goes only to the host's own addresses (the veth, loopback) and from there to our own
containers; the namespace and veth are removed after the module, also when a test fails.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from lab.stacks import Engine, Stack
from packet_trace.analyze import diff_counters, dnat_rules_for, jump_rules, listener_for
from packet_trace.model import NatRule
from packet_trace.parse import (
    parse_container_inspect,
    parse_ip_addr,
    parse_iptables_save,
    parse_network_inspect,
    parse_ss_listeners,
)
from tests.e2e import harness
from tests.e2e.harness import tcp_connect

pytestmark = pytest.mark.e2e

NETNS_PREFIX = "c2c-e2e-client-"
# veth names: c2ce2e + 6 hex + h/n = 13 characters (Linux allows 15).
VETH_RE = re.compile(r"^c2ce2e[0-9a-f]{6}[hn]$")
# The /30s tried in order: the first free one is used (host .1, client .2 of the /30).
CANDIDATE_POOLS = (
    ipaddress.IPv4Network("192.168.213.0/24"),
    ipaddress.IPv4Network("10.213.213.0/24"),
)
REQUEST_TIMEOUT_S = 5.0
MAX_ATTEMPTS = 3  # one request, and at most two retries if it could not connect
ROUTE_TYPES = frozenset(
    {"unicast", "local", "broadcast", "multicast", "anycast", "blackhole", "unreachable"}
    | {"prohibit", "throw", "nat"}
)

# Runs inside the namespace: one GET, prints {"status", "body"}; a failed connect exits non-zero.
CLIENT_SCRIPT = """
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as answer:
        status, body = answer.status, answer.read()
except urllib.error.HTTPError as error:
    status, body = error.code, error.read()
print(json.dumps({"status": status, "body": json.loads(body)}))
"""


@pytest.fixture(autouse=True)
def _root_only() -> None:
    # Namespaces, veths and the nat counters need root. CI runs as root, so there it must fail.
    harness.require_root("the test creates a network namespace and reads iptables")


# --- the client host --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientHost:
    engine: Engine  # the client is a neighbour of the engine's host; host-side commands run there
    netns: str
    host_if: str
    ns_if: str
    network: ipaddress.IPv4Network
    host_ip: str  # the host's address on the veth: where the client sends its request
    client_ip: str  # the namespace's address: what external must see


def _routed_networks(text: str) -> list[ipaddress.IPv4Network]:
    """Destinations of `ip -4 route show table all` lines ('default' is every address: skipped)."""
    found = []
    for raw in text.splitlines():
        tokens = raw.split()
        if tokens and tokens[0] in ROUTE_TYPES:
            tokens = tokens[1:]
        if not tokens or tokens[0] == "default":
            continue
        try:
            found.append(ipaddress.IPv4Network(tokens[0], strict=False))
        except ValueError:
            continue
    return found


def _taken_networks(engine: Engine, client: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this host already has an address in, a route to, or a Docker pool for."""
    taken = [
        address.network
        for link in parse_ip_addr(engine.run("ip", "-j", "addr", "show").stdout)
        for address in link.ipv4
    ]
    taken += _routed_networks(engine.run("ip", "-4", "route", "show", "table", "all").stdout)
    for network in client.networks.list():
        for pool in (network.attrs.get("IPAM") or {}).get("Config") or []:
            subnet = ipaddress.ip_network(pool.get("Subnet", "::/128"))
            if isinstance(subnet, ipaddress.IPv4Network):
                taken.append(subnet)
    return taken


def _free_slash30(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    for pool in CANDIDATE_POOLS:
        for candidate in pool.subnets(new_prefix=30):
            if not any(candidate.overlaps(t) for t in taken):
                return candidate
    raise AssertionError(f"no free /30 in {CANDIDATE_POOLS}; taken: {taken}")


def _remove_client_host(engine: Engine, netns: str | None, host_if: str | None) -> None:
    # Deleting one end of a veth deletes both; deleting the namespace then cannot leave a link.
    if host_if:
        engine.run("ip", "link", "del", host_if, check=False)
    if netns:
        engine.run("ip", "netns", "del", netns, check=False)


def _remove_leftovers(engine: Engine) -> list[str]:
    """Namespaces and veths an earlier, interrupted run of this module left (only ours)."""
    removed = []
    for line in engine.run("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(NETNS_PREFIX):
            _remove_client_host(engine, name, None)
            removed.append(f"netns {name}")
    for line in engine.run("ip", "-o", "link", "show").stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if line.count(":") >= 2 else ""
        if VETH_RE.match(name):
            _remove_client_host(engine, None, name)
            removed.append(f"link {name}")
    return removed


def _link_exists(engine: Engine, name: str) -> bool:
    return engine.run("ip", "link", "show", name, check=False).returncode == 0


@pytest.fixture(scope="module")
def client_host(deployed_stack: Stack, docker_client: docker.DockerClient) -> Iterator[ClientHost]:
    engine = deployed_stack.engine
    removed = _remove_leftovers(engine)
    if removed:
        print(f"removed leftovers of an earlier remote-client run: {', '.join(removed)}")
    # Chosen with the stack's network up, so the /30 cannot overlap its bridge either.
    network = _free_slash30(_taken_networks(engine, docker_client))
    host_ip, client_ip = (str(h) for h in list(network.hosts())[:2])
    short_id = secrets.token_hex(3)
    host = ClientHost(
        engine=engine,
        netns=f"{NETNS_PREFIX}{short_id}",
        host_if=f"c2ce2e{short_id}h",
        ns_if=f"c2ce2e{short_id}n",
        network=network,
        host_ip=host_ip,
        client_ip=client_ip,
    )
    try:
        engine.run("ip", "netns", "add", host.netns)
        engine.run("ip", "link", "add", host.host_if, "type", "veth", "peer", "name", host.ns_if)
        engine.run("ip", "link", "set", host.ns_if, "netns", host.netns)
        engine.run("ip", "addr", "add", f"{host_ip}/{network.prefixlen}", "dev", host.host_if)
        engine.run("ip", "link", "set", host.host_if, "up")
        ns = ("ip", "-n", host.netns)
        engine.run(*ns, "addr", "add", f"{client_ip}/{network.prefixlen}", "dev", host.ns_if)
        engine.run(*ns, "link", "set", "lo", "up")
        engine.run(*ns, "link", "set", host.ns_if, "up")
        engine.run(*ns, "route", "add", "default", "via", host_ip)
        print(f"client host: netns {host.netns}, {client_ip} -> {host_ip} ({network})")
        yield host
    finally:
        _remove_client_host(engine, host.netns, host.host_if)
        assert not _link_exists(engine, host.host_if), f"{host.host_if} survived the cleanup"
        assert host.netns not in engine.run("ip", "netns", "list").stdout.split()


# --- live state ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tables:
    nat: list[NatRule]
    filter: list[NatRule]  # NatRule is the parser's rule type for any table
    text: str


def _tables(engine: Engine) -> Tables:
    # One snapshot of both tables, so their counters are read at the same moment.
    text = engine.run("iptables-save", "-c").stdout
    return Tables(parse_iptables_save(text, "nat"), parse_iptables_save(text, "filter"), text)


@dataclass(frozen=True)
class Published:
    host_port: int
    external_ip: str
    container_port: int
    gateway: str
    bridge: str


@pytest.fixture(scope="module")
def published(deployed_stack: Stack, docker_client: docker.DockerClient) -> Published:
    out = deployed_stack.outputs
    # The published port is the sandbox's: it owns external's network identity.
    external = parse_container_inspect(deployed_stack.sandbox("external").attrs)
    binding = external.port_bindings[0]
    network = docker_client.networks.get(out["networkName"])
    return Published(
        host_port=binding.host_port,
        external_ip=out["externalIp"],
        container_port=binding.container_port,
        gateway=out["gateway"],
        bridge=parse_network_inspect(network.attrs).interface,
    )


def _prerouting_jump(rules: list[NatRule]) -> NatRule:
    found = [r for r in jump_rules(rules) if r.chain == "PREROUTING" and r.dst_type_local]
    assert len(found) == 1, f"no single PREROUTING -> DOCKER jump in: {[r.spec for r in rules]}"
    return found[0]


def _dnat(rules: list[NatRule], pub: Published) -> NatRule:
    found = dnat_rules_for(rules, pub.host_port, pub.external_ip, pub.container_port)
    assert len(found) == 1, f"no single DNAT rule for {pub} in: {[r.spec for r in rules]}"
    return found[0]


def _filter_accepts(rules: list[NatRule], pub: Published) -> tuple[NatRule, list[NatRule]]:
    """The filter rule that lets the DNATed flow into the bridge, and those letting replies out.

    Matched by what they do, not by chain, so Docker's later FORWARD layouts match too.
    """
    inbound = [
        r
        for r in rules
        if r.target == "ACCEPT"
        and r.destination == f"{pub.external_ip}/32"
        and r.dport == pub.container_port
        and r.out_interface == pub.bridge
    ]
    assert len(inbound) == 1, f"no single ACCEPT for the published port: {[r.spec for r in rules]}"
    outbound = [
        r
        for r in rules
        if r.target == "ACCEPT"
        and r.in_interface == pub.bridge
        and r.out_interface in (None, f"!{pub.bridge}")
    ]
    assert outbound, f"no ACCEPT for packets leaving {pub.bridge}: {[r.spec for r in rules]}"
    return inbound[0], outbound


def _sysctl(engine: Engine, path: str, netns: str | None = None) -> str:
    cmd: tuple[str, ...] = ("cat", f"/proc/sys/net/ipv4/{path}")
    if netns:
        cmd = ("ip", "netns", "exec", netns, *cmd)
    proc = engine.run(*cmd, check=False)
    return proc.stdout.strip() or proc.stderr.strip()


def _forwarding_evidence(host: ClientHost, tables: Tables) -> dict[str, str]:
    """What decides whether the flow is forwarded and answered, for failure messages."""
    policy = re.search(r"^:FORWARD (\S+)", tables.text.split("*filter", 1)[-1], re.MULTILINE)
    return {
        "ip_forward": _sysctl(host.engine, "ip_forward"),
        "rp_filter all": _sysctl(host.engine, "conf/all/rp_filter"),
        f"rp_filter {host.host_if}": _sysctl(host.engine, f"conf/{host.host_if}/rp_filter"),
        "rp_filter in netns (all)": _sysctl(host.engine, "conf/all/rp_filter", host.netns),
        f"rp_filter in netns ({host.ns_if})": _sysctl(
            host.engine, f"conf/{host.ns_if}/rp_filter", host.netns
        ),
        "filter FORWARD policy": policy.group(1) if policy else "?",
        "netns routes": host.engine.run("ip", "-n", host.netns, "route").stdout.strip(),
    }


def _get_from_netns(host: ClientHost, url: str) -> tuple[dict[str, Any], int]:
    """GET url from inside the client's namespace; (answer, attempts it took)."""
    in_netns = ("ip", "netns", "exec", host.netns)
    failures = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        proc = subprocess.run(
            [*in_netns, sys.executable, "-I", "-c", CLIENT_SCRIPT, url, str(REQUEST_TIMEOUT_S)],
            capture_output=True,
            text=True,
            timeout=REQUEST_TIMEOUT_S + 15,
            check=False,
            cwd=Path("/"),
        )
        if proc.returncode == 0:
            answer: dict[str, Any] = json.loads(proc.stdout)
            return answer, attempt
        lines = proc.stderr.strip().splitlines()
        failures.append(lines[-1] if lines else f"exit {proc.returncode}")
        time.sleep(0.5)
    raise AssertionError(f"{url} from netns {host.netns} failed {MAX_ATTEMPTS} times: {failures}")


def _moved(before: list[NatRule], after: list[NatRule], rule: NatRule) -> int:
    return sum(m.delta for m in diff_counters(before, after) if m.spec == rule.spec)


# --- the tests -----------------------------------------------------------------------------------


def test_request_from_another_host_is_dnatted_through_prerouting_with_its_source_kept(
    client_host: ClientHost, published: Published
) -> None:
    url = f"http://{client_host.host_ip}:{published.host_port}/"
    before = _tables(client_host.engine)
    prerouting_before = _prerouting_jump(before.nat)
    dnat_before = _dnat(before.nat, published)
    try:
        answer, attempts = _get_from_netns(client_host, url)
    except AssertionError as exc:
        evidence = _forwarding_evidence(client_host, _tables(client_host.engine))
        raise AssertionError(f"{exc}\nforwarding evidence: {evidence}") from exc
    after = _tables(client_host.engine)
    prerouting_after = _prerouting_jump(after.nat)
    dnat_after = _dnat(after.nat, published)
    accept_before, replies_before = _filter_accepts(before.filter, published)
    accept_after, _ = _filter_accepts(after.filter, published)
    reply_moves = sum(_moved(before.filter, after.filter, r) for r in replies_before)
    evidence = _forwarding_evidence(client_host, after)
    print(
        f"GET {url} from {client_host.client_ip} (netns {client_host.netns}), "
        f"{attempts} attempt(s): {answer}\n"
        f"PREROUTING jump packets {prerouting_before.packets} -> {prerouting_after.packets}; "
        f"DNAT packets {dnat_before.packets} -> {dnat_after.packets}; "
        f"filter ACCEPT into {published.bridge} {accept_before.packets} -> "
        f"{accept_after.packets}; replies out of {published.bridge} +{reply_moves}\n"
        f"evidence: {evidence}"
    )

    assert answer["status"] == 200, answer
    body = answer["body"]
    assert body["container_ip"] == published.external_ip
    # DNAT rewrote only the destination: external saw the client's own address, no SNAT.
    assert body["client_ip"] == client_host.client_ip, body
    assert body["upstream"]["client_ip"] == published.external_ip, body
    # It came in from outside: the PREROUTING jump and the DNAT rule both counted it. The nat
    # table sees only a connection's first packet, so one connection adds exactly one to DNAT.
    assert prerouting_after.packets - prerouting_before.packets >= 1
    assert 1 <= dnat_after.packets - dnat_before.packets <= attempts
    # The forwarded flow was let into the bridge by Docker's filter rule, and the reply out.
    assert accept_after.packets - accept_before.packets >= 1, evidence
    assert reply_moves >= 1, evidence

    harness.record_measurements(
        "remote_client",
        {
            "client_netns_ip": client_host.client_ip,
            "host_veth_ip": client_host.host_ip,
            "client_ip_seen_by_external": body["client_ip"],
            "upstream_client_ip": body["upstream"]["client_ip"],
            "attempts": attempts,
            "prerouting_jump_packets": [prerouting_before.packets, prerouting_after.packets],
            "dnat_packets": [dnat_before.packets, dnat_after.packets],
            "filter_accept_packets": [accept_before.packets, accept_after.packets],
            "ip_forward": evidence["ip_forward"],
            "filter_forward_policy": evidence["filter FORWARD policy"],
        },
    )


def test_loopback_request_arrives_from_the_gateway(engine: Engine, published: Published) -> None:
    url = f"http://127.0.0.1:{published.host_port}/"
    listeners = parse_ss_listeners(engine.run("ss", "-Hltnp").stdout)
    listener = listener_for(listeners, "127.0.0.1", published.host_port)
    before = _dnat(_tables(engine).nat, published)
    status, body, _ = engine.get_json(url)
    after = _dnat(_tables(engine).nat, published)
    print(
        f"GET {url}: {status}, client_ip {body.get('client_ip')}, listener {listener}, "
        f"DNAT packets {before.packets} -> {after.packets}"
    )

    assert status == 200
    # Both engines run with the userland proxy (their default): docker-proxy holds the port
    # and connects to external from the gateway.
    assert listener is not None, listeners
    assert listener.process == "docker-proxy", listener
    assert body["client_ip"] == published.gateway
    # The OUTPUT jump excludes 127.0.0.0/8: the DNAT rule never saw this request.
    assert after.packets == before.packets
    harness.record_measurements(
        "remote_client",
        {
            "loopback_client_ip": body["client_ip"],
            "loopback_listener": listener.process,
        },
    )


# --- internal's own address, from the other host ---------------------------------------------

# What drops the other host's packets to internal's own IP (docs/engines.md): Debian 20.10 has
# no rule of its own, so they fall to the FORWARD chain's policy, which it set to DROP when it
# enabled ip_forward itself; the current engine drops them explicitly, first in the raw table.
DROPPED_BY = {
    "docker-20.10": "policy filter FORWARD",
    "docker-current": "raw PREROUTING -d {internal_ip}/32 ! -i {bridge} -j DROP",
}


def _drop_counters(text: str) -> dict[str, int]:
    """Packets counted by what can drop a forwarded packet in the raw and filter tables of an
    `iptables-save -c`: each built-in chain's DROP policy ("policy <table> <chain>") and each
    DROP rule ("<table> <chain> <matches> -j DROP")."""
    counters: dict[str, int] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif policy := re.match(r"^:(\S+) DROP \[(\d+):\d+\]", line):
            counters[f"policy {table} {policy[1]}"] = int(policy[2])
    for table in ("raw", "filter"):
        for rule in parse_iptables_save(text, table):
            if rule.target == "DROP":
                key = f"{table} {rule.chain} {rule.spec.split(' ', 2)[2]}"
                counters[key] = counters.get(key, 0) + rule.packets
    return counters


def test_internal_ip_is_unreachable_from_another_host(
    client_host: ClientHost, published: Published, config: dict[str, str]
) -> None:
    """The client's default route is the engine host, so it can address internal's own IP: the
    engine host must not forward it there."""
    engine = client_host.engine
    internal_ip, internal_port = config["internalIp"], int(config["internalPort"])
    before = _drop_counters(engine.run("iptables-save", "-c").stdout)
    outcome = tcp_connect(internal_ip, internal_port, client_host.netns)
    after = _tables(engine)
    counted = _drop_counters(after.text)
    dropped = {key: n - before.get(key, 0) for key, n in counted.items() if n > before.get(key, 0)}
    expected = DROPPED_BY[engine.kind].format(internal_ip=internal_ip, bridge=published.bridge)
    print(
        f"{client_host.client_ip} (netns {client_host.netns}) -> {internal_ip}:{internal_port}: "
        f"{outcome} on {engine.kind}; dropped by {dropped}; "
        f"evidence {_forwarding_evidence(client_host, after)}"
    )
    harness.record_measurements(
        "remote_client", {f"internal_ip_from_other_host_{engine.kind}": [outcome, dropped]}
    )

    # No answer at all (not even a refusal): the engine host dropped the SYNs on the way in.
    assert outcome == "timeout", f"{outcome}: {_forwarding_evidence(client_host, after)}"
    assert expected in dropped, f"expected {expected!r} to drop it; counted {dropped}"
