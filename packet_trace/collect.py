"""Collect a Trace from Sources: the five hops in order.

Never raises for a fact it cannot read: it records a Problem (what failed, what to do) and goes on
with whatever else can still be read.
"""

from __future__ import annotations

from dataclasses import dataclass

from packet_trace import analyze, render
from packet_trace.model import (
    BridgeHop,
    HostPortHop,
    NatHop,
    NatRule,
    Problem,
    ServiceHop,
    StackOutputs,
    Trace,
    TracedRequest,
)
from packet_trace.parse import (
    ContainerInfo,
    ParseError,
    classify_command_error,
    parse_container_inspect,
    parse_ip_addr,
    parse_iptables_save,
    parse_iptables_version,
    parse_network_inspect,
    parse_nft_table,
    parse_service_response,
    parse_ss_listeners,
    parse_stack_outputs,
)
from packet_trace.sources import DockerApiError, DockerUnavailable, Sources

REMEDY_ROOT = "run it as root: `sudo make trace` (or `sudo .venv/bin/python -m packet_trace`)"
REMEDY_DOCKER = (
    "start the Docker daemon (`scripts/ensure-docker.sh`), or check DOCKER_HOST and that you "
    "may use /var/run/docker.sock (root or the docker group)"
)


class UsageError(ValueError):
    """A request the trace refuses (e.g. --via an address that is not this host's)."""


@dataclass
class _DockerFacts:
    bridge: BridgeHop | None = None
    external: ContainerInfo | None = None
    internal: ContainerInfo | None = None


@dataclass
class _NatRead:
    rules: list[NatRule] | None
    backend: str | None
    command: str | None


def remedy_deploy(stack: str) -> str:
    return f"deploy the stack: `make up` (or `pulumi up --stack {stack}`)"


def collect(
    sources: Sources,
    stack: str,
    outputs_text: str | None = None,
    via: str = "auto",
    send_request: bool = True,
) -> Trace:
    trace = Trace(stack=stack)
    outputs = _read_outputs(sources, trace, stack, outputs_text)
    docker = _read_docker(sources, trace, stack, outputs)
    if outputs is None and docker.bridge and docker.external and docker.internal:
        outputs = analyze.outputs_from_docker(
            stack, docker.bridge, docker.external, docker.internal
        )
    trace.outputs = outputs
    if outputs is None:
        if not trace.problems:
            trace.problems.append(
                Problem(
                    "outputs",
                    "stack-not-deployed",
                    f"no outputs for stack {stack}",
                    remedy_deploy(stack),
                )
            )
        trace.summary = render.summarize(trace)
        return trace

    listeners_ok = _host_port(sources, trace, outputs, docker.external)
    addresses = parse_ip_addr(sources.ip_addr().stdout)
    before = _read_nat(sources, trace)
    external_port = trace.host_port.container_port if trace.host_port else None
    nat = _nat_hop(trace, before, outputs, external_port)
    trace.nat = nat

    bridge_if = docker.bridge.interface if docker.bridge else "the stack's bridge"
    try:
        choice = analyze.choose_target(
            via,
            outputs.host_port,
            before.rules,
            nat.dnat_rules,
            trace.host_port.listeners if trace.host_port and listeners_ok else [],
            addresses,
            outputs.gateway,
            bridge_if,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc

    # Never knock on the port of a stack Docker says is gone: something else may listen there.
    absent = {"stack-not-deployed", "container-missing", "container-stopped"}
    if send_request and any(p.code in absent for p in trace.problems):
        send_request = False
        trace.notes.append("no request sent: Docker shows the stack is not running")
    if send_request:
        _send(sources, trace, choice, outputs, docker.external)
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
    nat.explanation = render.explain_nat(trace)

    if docker.bridge is not None:
        trace.bridge = _bridge(sources, trace, docker)
    trace.summary = render.summarize(trace)
    return trace


# ---------------------------------------------------------------------------------------------
# outputs and Docker
# ---------------------------------------------------------------------------------------------


def _read_outputs(
    sources: Sources, trace: Trace, stack: str, outputs_text: str | None
) -> StackOutputs | None:
    if outputs_text is not None:
        try:
            return parse_stack_outputs(outputs_text, stack, "file")
        except ParseError as exc:
            trace.problems.append(
                Problem(
                    "outputs",
                    "outputs-invalid",
                    str(exc),
                    "pass the JSON of `pulumi stack output --json`",
                )
            )
            return None
    result = sources.pulumi_outputs(stack)
    if result is None:
        trace.notes.append("pulumi CLI not on PATH: stack facts read from Docker labels")
        return None
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["no message"])[0]
        trace.notes.append(f"`{result.command}` failed ({first}): facts read from Docker labels")
        return None
    try:
        return parse_stack_outputs(result.stdout, stack, "pulumi")
    except ParseError as exc:
        # An empty {} is what Pulumi prints for a stack that exists but was never deployed.
        trace.notes.append(f"pulumi outputs unusable ({exc}): facts read from Docker labels")
        return None


def _read_docker(
    sources: Sources, trace: Trace, stack: str, outputs: StackOutputs | None
) -> _DockerFacts:
    facts = _DockerFacts()
    try:
        if outputs is not None:
            net = sources.network(outputs.network_name)
        else:
            nets = sources.networks_by_label(stack)
            wanted = f"c2c-{stack}-net"
            net = next((n for n in nets if n.get("Name") == wanted), nets[0] if nets else None)
        if net is None:
            others = sorted(
                {
                    (n.get("Labels") or {}).get("c2c.stack", "?")
                    for n in sources.networks_by_label(None)
                }
            )
            where = outputs.network_name if outputs else f"labelled c2c.stack={stack}"
            seen = f" (stacks found on this Docker: {', '.join(others)})" if others else ""
            trace.problems.append(
                Problem(
                    "bridge",
                    "stack-not-deployed",
                    f"Docker has no network {where}{seen}",
                    remedy_deploy(stack),
                )
            )
            return facts
        facts.bridge = parse_network_inspect(net)
        for role in ("external", "internal"):
            name = f"c2c-{stack}-{role}"
            doc = sources.container(name)
            if doc is None:
                trace.problems.append(
                    Problem(
                        "bridge", "container-missing", f"no container {name}", remedy_deploy(stack)
                    )
                )
                continue
            info = parse_container_inspect(doc)
            if not info.running:
                trace.problems.append(
                    Problem(
                        "bridge",
                        "container-stopped",
                        f"container {name} is not running",
                        f"`docker start {name}` or {remedy_deploy(stack)}",
                    )
                )
            setattr(facts, role, info)
    except DockerUnavailable as exc:
        trace.problems.append(
            Problem("bridge", "docker-unreachable", f"cannot reach Docker: {exc}", REMEDY_DOCKER)
        )
    except DockerApiError as exc:
        trace.problems.append(Problem("bridge", "docker-error", str(exc), REMEDY_DOCKER))
    return facts


# ---------------------------------------------------------------------------------------------
# hop 1: host port
# ---------------------------------------------------------------------------------------------


def _host_port(
    sources: Sources, trace: Trace, outputs: StackOutputs, external: ContainerInfo | None
) -> bool:
    port = outputs.host_port
    binding = None
    if external is not None:
        binding = next((b for b in external.port_bindings if b.host_port == port), None)
        if binding is None:
            trace.problems.append(
                Problem(
                    "host-port",
                    "port-not-published",
                    f"{external.name} does not publish host port {port}",
                    remedy_deploy(outputs.stack),
                )
            )
    hop = HostPortHop(
        port=port,
        bind_ip=binding.host_ip if binding else None,
        container_port=binding.container_port if binding else None,
    )
    trace.host_port = hop
    result = sources.ss()
    if result.returncode != 0:
        trace.problems.append(
            Problem(
                "host-port",
                "ss-failed",
                f"`{result.command}`: {result.stderr.strip()}",
                "install iproute2 (ss)",
            )
        )
        return False
    hop.listeners = [x for x in parse_ss_listeners(result.stdout) if x.port == port]
    # Without privilege ss omits the users:(...) column for sockets of other users.
    hop.process_visible = all(x.process is not None for x in hop.listeners)
    if not hop.process_visible:
        trace.problems.append(
            Problem(
                "host-port",
                "ss-no-process",
                f"ss shows who listens on port {port} only to root",
                REMEDY_ROOT,
            )
        )
    return True


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
        trace.problems.append(
            Problem(
                "nat",
                "nat-permission",
                f"cannot read the nat table without privilege: `{result.command}` says: {stderr}",
                REMEDY_ROOT,
            )
        )
    else:
        trace.problems.append(
            Problem(
                "nat",
                "nat-unreadable",
                f"`{result.command}` failed: {stderr}",
                "install iptables (or nftables) and run as root",
            )
        )
    return _NatRead(None, backend, result.command)


def _nat_hop(
    trace: Trace, read: _NatRead, outputs: StackOutputs, external_port: int | None
) -> NatHop:
    hop = NatHop(backend=read.backend, command=read.command, readable=read.rules is not None)
    if read.rules is None:
        return hop
    port = outputs.host_port
    if external_port is not None:
        hop.dnat_rules = analyze.dnat_rules_for(
            read.rules, port, outputs.external_ip, external_port
        )
    else:
        # Without Docker the container port is unknown: any DNAT of hostPort to externalIp.
        hop.dnat_rules = [
            r
            for r in read.rules
            if r.target == "DNAT"
            and r.dport == port
            and (r.to_destination or "").startswith(outputs.external_ip + ":")
        ]
    if hop.dnat_rules:
        chains = {r.chain for r in hop.dnat_rules}
        hop.jump_rules = [r for r in read.rules if r.target in chains]
    else:
        trace.problems.append(
            Problem(
                "nat",
                "no-dnat-rule",
                f"the nat table has no DNAT rule for port {port} -> {outputs.external_ip}"
                f":{external_port or '?'} (Docker removes it when external stops)",
                f"check `docker ps`; {remedy_deploy(outputs.stack)}",
            )
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
    external: ContainerInfo | None,
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
    internal_url = external.env.get("INTERNAL_URL") if external else None
    hop = ServiceHop(internal_url=internal_url or None, total_ms=result.ms)
    trace.services = hop
    if result.error is not None or result.status != 200:
        trace.problems.append(
            Problem(
                "services",
                "request-failed",
                f"GET http://{choice.ip}:{outputs.host_port}/ -> {result.error or result.status}"
                + (f": {result.body[:200]}" if result.body else ""),
                "check the containers: `docker ps`, `docker logs c2c-<stack>-external`",
            )
        )
        return
    try:
        data = parse_service_response(result.body)
    except ParseError as exc:
        trace.problems.append(
            Problem(
                "services", "bad-response", str(exc), "check `docker logs` of external and internal"
            )
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


def _bridge(sources: Sources, trace: Trace, docker: _DockerFacts) -> BridgeHop:
    assert docker.bridge is not None
    bridge = docker.bridge
    links = []
    try:
        for info in (docker.internal, docker.external):
            if info is None or not info.running:
                continue
            ifnames = [f"eth{i}" for i in range(max(1, len(info.networks)))]
            links.extend(sources.container_links(info.name, ifnames))
    except (DockerUnavailable, DockerApiError) as exc:
        trace.notes.append(f"could not read the containers' interfaces: {exc}")
    bridge = analyze.attach_veths(bridge, sources.host_links(), links)
    if not bridge.interface_present:
        trace.problems.append(
            Problem(
                "bridge",
                "bridge-missing",
                f"no interface {bridge.interface} on this host (is the trace running in "
                "another network namespace than dockerd?)",
                "run the trace on the Docker host itself",
            )
        )
    missing = [e.container for e in bridge.endpoints if e.host_veth is None]
    if missing:
        trace.notes.append("no host veth found for: " + ", ".join(missing))
    return bridge
