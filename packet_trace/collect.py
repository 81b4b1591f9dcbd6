"""Collect a Trace: read each fact from Sources, parse it, analyze it, hop by hop.

The stack is found through Docker labels alone (c2c.stack, c2c.service); every fact after that is
read from the live objects and the host. Never raises for a fact it cannot read: it records a
Problem (what failed, what to do) and goes on with whatever else can still be read. The words
are packet_trace.render's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from packet_trace import analyze, sandbox
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
from packet_trace.parse import (
    ContainerInfo,
    ContainerLink,
    Link,
    ParseError,
    PortBinding,
    classify_command_error,
    parse_container_inspect,
    parse_ip_addr,
    parse_iptables_save,
    parse_iptables_version,
    parse_network_inspect,
    parse_nft_table,
    parse_service_response,
    parse_ss_listeners,
    parse_sysfs_link,
)
from packet_trace.sources import (
    STACK_LABEL,
    DockerApiError,
    DockerUnavailable,
    Sources,
)

REMEDY_ROOT = "run it as root: `sudo make trace` (or `sudo .venv/bin/python -m packet_trace`)"
REMEDY_DOCKER = (
    "start the Docker daemon (`scripts/ensure-docker.sh`), or check DOCKER_HOST and that you "
    "may use /var/run/docker.sock (root or the docker group)"
)


class UsageError(ValueError):
    """A request the trace refuses (e.g. --via an address that is not this host's)."""


@dataclass(frozen=True)
class _Stack:
    """The stack's Docker objects: its network and its two containers."""

    bridge: BridgeHop
    external: ContainerInfo
    internal: ContainerInfo
    published: PortBinding  # external's host port
    external_app: str  # the container external's gunicorn runs in (its logs)


@dataclass(frozen=True)
class _NatRead:
    rules: list[NatRule] | None
    backend: str | None
    command: str | None


def remedy_deploy(stack: str) -> str:
    make_up = "make up" if stack == "dev" else f"make up STACK={stack}"
    return f"deploy the stack: `{make_up}` (or `pulumi up --stack {stack}`)"


def collect(sources: Sources, stack: str, via: str = "auto", send_request: bool = True) -> Trace:
    trace = Trace(stack=stack)
    found = _read_docker(sources, trace, stack)
    if found is None:
        return trace
    outputs = analyze.stack_outputs(
        stack, found.bridge, found.external, found.internal, found.published
    )
    trace.outputs = outputs
    trace.host_port = _host_port(sources, trace, found.published)
    links = _read_links(sources, trace)
    before = _read_nat(sources, trace)
    nat = _nat_hop(trace, before, outputs, found.published.container_port)
    trace.nat = nat
    try:
        choice = analyze.choose_target(
            via,
            outputs.host_port,
            before.rules,
            nat.dnat_rules,
            trace.host_port.listeners,
            links or [],
            outputs.gateway,
            found.bridge.interface,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc

    # Never knock on the port of a stack Docker says is stopped: something else may listen there.
    # (A stopped app is not that: its sandbox keeps the address and the port.)
    if send_request and any(p.code == "container-stopped" for p in trace.problems):
        send_request = False
        trace.notes.append("no request sent: Docker shows the stack is not running")
    if send_request:
        _send(sources, trace, choice, outputs, found.external, found.external_app)
        if before.rules is not None:
            after = _read_nat(sources, Trace(stack=stack))
            if after.rules is not None:
                nat.moves = analyze.diff_counters(before.rules, after.rules)
                dnat_specs = {(r.chain, r.spec) for r in nat.dnat_rules}
                nat.dnat_moved_by = sum(
                    m.delta for m in nat.moves if (m.chain, m.spec) in dnat_specs
                )
    else:
        trace.request = TracedRequest(
            choice.ip, outputs.host_port, choice.reason, choice.path_kind, error="not sent"
        )
    trace.bridge = _bridge(sources, trace, found, links)
    return trace


def _read_docker(sources: Sources, trace: Trace, stack: str) -> _Stack | None:
    """The stack's network and containers, found by their labels."""
    try:
        networks = sources.networks(stack)
        if not networks:
            others = sorted(
                {(n.get("Labels") or {}).get(STACK_LABEL, "?") for n in sources.networks(None)}
            )
            seen = f" (stacks found on this Docker: {', '.join(others)})" if others else ""
            trace.add_problem(
                "bridge",
                "stack-not-deployed",
                f"Docker has no network labelled {STACK_LABEL}={stack}{seen}",
                remedy_deploy(stack),
            )
            return None
        bridge = parse_network_inspect(networks[0])
        containers = [parse_container_inspect(doc) for doc in sources.containers(stack)]
    except DockerUnavailable as exc:
        trace.add_problem(
            "bridge", "docker-unreachable", f"cannot reach Docker: {exc}", REMEDY_DOCKER
        )
        return None
    except DockerApiError as exc:
        trace.add_problem("bridge", "docker-error", str(exc), REMEDY_DOCKER)
        return None
    groups = sandbox.group(containers)
    for service in ("external", "internal"):
        sandbox.check(trace, groups.get(service), service, remedy_deploy(stack))
    ext_group, int_group = groups.get("external"), groups.get("internal")
    if ext_group is None or int_group is None:
        return None
    external, internal = ext_group.view(), int_group.view()
    if external is None or internal is None:
        return None
    if not external.port_bindings:
        trace.add_problem(
            "host-port",
            "port-not-published",
            f"{external.name} publishes no host port",
            remedy_deploy(stack),
        )
        return None
    spaces = [sandbox.namespace(sources, trace, g) for g in (ext_group, int_group)]
    if any(spaces):
        trace.namespaces = [n for n in spaces if n is not None]
    ext_app = ext_group.app.name if ext_group.app is not None else external.name
    return _Stack(bridge, external, internal, external.port_bindings[0], ext_app)


def _read_links(sources: Sources, trace: Trace) -> list[Link] | None:
    """This network namespace's interfaces and addresses, through netlink."""
    result = sources.ip_addr()
    try:
        if result.returncode == 0:
            return parse_ip_addr(result.stdout)
        why = result.stderr.strip()
    except ParseError as exc:
        why = str(exc)
    trace.add_problem(
        "bridge", "ip-failed", f"`{result.command}`: {why}", "install iproute2 (`ip -j`)"
    )
    return None


# ---------------------------------------------------------------------------------------------
# hop 1: host port
# ---------------------------------------------------------------------------------------------


def _host_port(sources: Sources, trace: Trace, published: PortBinding) -> HostPortHop:
    port = published.host_port
    hop = HostPortHop(port=port, bind_ip=published.host_ip, container_port=published.container_port)
    result = sources.ss()
    if result.returncode != 0:
        trace.add_problem(
            "host-port",
            "ss-failed",
            f"`{result.command}`: {result.stderr.strip()}",
            "install iproute2 (ss)",
        )
        return hop
    hop.listeners = [x for x in parse_ss_listeners(result.stdout) if x.port == port]
    # Without privilege ss omits the users:(...) column for sockets of other users.
    hop.process_visible = all(x.process is not None for x in hop.listeners)
    if not hop.process_visible:
        trace.add_problem(
            "host-port",
            "ss-no-process",
            f"ss shows who listens on port {port} only to root",
            REMEDY_ROOT,
        )
    return hop


# ---------------------------------------------------------------------------------------------
# hop 2: the nat table
# ---------------------------------------------------------------------------------------------


def _read_nat(sources: Sources, trace: Trace) -> _NatRead:
    backend = parse_iptables_version(sources.iptables_version().stdout)
    result = sources.nat_table()
    kind = classify_command_error(result.returncode, result.stderr)
    if kind == "ok":
        return _NatRead(parse_iptables_save(result.stdout), backend, result.command)
    if kind == "missing":
        # No iptables-save: the host may manage its firewall with nft alone.
        nft = sources.nft_nat()
        nft_kind = classify_command_error(nft.returncode, nft.stderr)
        if nft_kind == "ok":
            return _NatRead(parse_nft_table(nft.stdout), "nft", nft.command)
        result, kind = nft, nft_kind
    stderr = result.stderr.strip() or f"exit code {result.returncode}"
    if kind == "permission":
        trace.add_problem(
            "nat",
            "nat-permission",
            f"cannot read the nat table without privilege: `{result.command}` says: {stderr}",
            REMEDY_ROOT,
        )
    else:
        trace.add_problem(
            "nat",
            "nat-unreadable",
            f"`{result.command}` failed: {stderr}",
            "install iptables (or nftables) and run as root",
        )
    return _NatRead(None, backend, result.command)


def _nat_hop(
    trace: Trace,
    read: _NatRead,
    outputs: StackOutputs,
    external_port: int,
    dnat_ip: str | None = None,
) -> NatHop:
    """dnat_ip: the address the DNAT rule should lead to; external's own IP on the stack's
    network unless given (an overlay container publishes through docker_gwbridge)."""
    hop = NatHop(backend=read.backend, command=read.command, readable=read.rules is not None)
    if read.rules is None:
        return hop
    port = outputs.host_port
    to_ip = dnat_ip or outputs.external_ip
    hop.dnat_rules = analyze.dnat_rules_for(read.rules, port, to_ip, external_port)
    if hop.dnat_rules:
        hop.jump_rules = analyze.jump_rules(read.rules, hop.dnat_rules[0].chain)
    else:
        trace.add_problem(
            "nat",
            "no-dnat-rule",
            f"the nat table has no DNAT rule for port {port} -> {to_ip}"
            f":{external_port} (Docker removes it when external's sandbox, "
            "the container publishing the port, stops)",
            f"check `docker ps`; {remedy_deploy(outputs.stack)}",
        )
    return hop


# ---------------------------------------------------------------------------------------------
# the one request, and hop 4
# ---------------------------------------------------------------------------------------------


def _send(
    sources: Sources,
    trace: Trace,
    choice: analyze.TargetChoice,
    outputs: StackOutputs,
    external: ContainerInfo,
    external_app: str,
) -> None:
    result = sources.http_get(choice.ip, outputs.host_port)
    trace.request = TracedRequest(
        target_ip=choice.ip,
        port=outputs.host_port,
        reason=choice.reason,
        path_kind=choice.path_kind,
        status=result.status,
        total_ms=result.ms,
        error=result.error,
    )
    hop = ServiceHop(internal_url=external.env.get("INTERNAL_URL") or None, total_ms=result.ms)
    trace.services = hop
    if result.error is not None or result.status != 200:
        trace.add_problem(
            "services",
            "request-failed",
            f"GET http://{choice.ip}:{outputs.host_port}/ -> {result.error or result.status}"
            + (f": {result.body[:200]}" if result.body else ""),
            f"check the containers: `docker ps`, `docker logs {external_app}`",
        )
        return
    try:
        data = parse_service_response(result.body)
    except ParseError as exc:
        trace.add_problem(
            "services", "bad-response", str(exc), "check `docker logs` of external and internal"
        )
        return
    upstream = data["upstream"]
    hop.external_client_ip = str(data["client_ip"])
    hop.external_container_ip = str(data["container_ip"])
    hop.external_hostname = str(data.get("hostname", ""))
    hop.internal_client_ip = str(upstream["client_ip"])
    hop.internal_container_ip = str(upstream.get("container_ip", ""))
    hop.internal_hostname = str(upstream.get("hostname", ""))
    hop.upstream_ms = float(data["upstream_ms"])


# ---------------------------------------------------------------------------------------------
# hop 3: the bridge
# ---------------------------------------------------------------------------------------------


def _bridge(sources: Sources, trace: Trace, found: _Stack, links: list[Link] | None) -> BridgeHop:
    container_links = []
    for info in (found.internal, found.external):
        # A stopped container has no veth. Its interfaces are read from inside it, where /sys is
        # its own network namespace's: a read-only, cap-less container may read it.
        for n in range(len(info.networks) if info.running else 0):
            base = f"/sys/class/net/eth{n}"
            try:
                result = sources.container_exec(
                    info.name, ["cat", f"{base}/iflink", f"{base}/address"]
                )
            except (DockerUnavailable, DockerApiError) as exc:
                trace.notes.append(f"could not read the interfaces of {info.name}: {exc}")
                break
            read = parse_sysfs_link(result.stdout) if result.returncode == 0 else None
            if read is not None:
                container_links.append(ContainerLink(info.name, f"eth{n}", *read))
    bridge = analyze.attach_veths(found.bridge, links or [], container_links)
    if links is not None and not bridge.interface_present:
        trace.add_problem(
            "bridge",
            "bridge-missing",
            f"no interface {bridge.interface} in this network namespace (does dockerd run in "
            "another one?)",
            "run the trace in dockerd's network namespace, e.g. "
            "`nsenter --net=/run/netns/NAME make trace`",
        )
    missing = [e.container for e in bridge.endpoints if e.host_veth is None]
    if missing:
        trace.notes.append("no host veth found for: " + ", ".join(missing))
    return bridge
