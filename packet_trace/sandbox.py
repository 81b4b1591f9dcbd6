"""A service's containers: the sandbox that owns its network namespace and the app(s) inside it.

Since the zero-downtime design (docs/zero-downtime.md) each service is a sandbox container
(labelled c2c.role=sandbox: the IP, the MAC, the published port, the namespace's sysctl) and one
app container (c2c.role=app, NetworkMode container:<sandbox>), two during a redeploy. The network
facts are the sandbox's, the app facts (its env, whether it runs, its processes) the apps'. A
container without c2c.role (a service on an overlay across hosts, a stack deployed before the
sandbox, a Swarm task of a replicated internal) is both at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from packet_trace.model import AppContainer, NamespaceListener, ServiceNamespace, Trace
from packet_trace.parse import (
    ContainerInfo,
    ParseError,
    parse_container_top,
    parse_ss_listeners,
)
from packet_trace.sources import (
    ROLE_LABEL,
    SERVICE_LABEL,
    DockerApiError,
    DockerUnavailable,
    Sources,
)

SANDBOX, APP = "sandbox", "app"


@dataclass(frozen=True)
class ServiceContainers:
    service: str
    sandbox: ContainerInfo | None  # None: apps without their sandbox (a broken deployment)
    apps: tuple[ContainerInfo, ...]  # running ones first; (sandbox,) for a container of no role

    @property
    def split(self) -> bool:
        """Does the service run as a sandbox and separate app container(s)?"""
        return self.sandbox is None or ROLE_LABEL in self.sandbox.labels

    @property
    def app(self) -> ContainerInfo | None:
        """The app whose env the trace reads: a running one if any."""
        return self.apps[0] if self.apps else None

    def view(self) -> ContainerInfo | None:
        """One ContainerInfo for the hops: the sandbox's network facts (name, networks, port
        bindings, namespace) and running state, the app's environment."""
        if self.sandbox is None:
            return None
        app = self.app
        return replace(self.sandbox, env=app.env if app is not None else {})


def group(containers: list[ContainerInfo]) -> dict[str, ServiceContainers]:
    """The containers of a stack by their c2c.service label, each service's in its roles."""
    sandboxes: dict[str, ContainerInfo] = {}
    apps: dict[str, list[ContainerInfo]] = {}
    for info in containers:
        service = info.labels.get(SERVICE_LABEL)
        if service is None:
            continue
        role = info.labels.get(ROLE_LABEL)
        if role == APP:
            apps.setdefault(service, []).append(info)
        elif role == SANDBOX or service not in sandboxes:
            sandboxes[service] = info
    found: dict[str, ServiceContainers] = {}
    for service in sorted({*sandboxes, *apps}):
        sandbox = sandboxes.get(service)
        own = apps.get(service, [])
        if sandbox is not None and ROLE_LABEL not in sandbox.labels:
            own = [sandbox]
        own.sort(key=lambda c: (not c.running, c.name))
        found[service] = ServiceContainers(service, sandbox, tuple(own))
    return found


def check(
    trace: Trace, found: ServiceContainers | None, service: str, deploy: str, where: str = ""
) -> None:
    """Problems of one service's containers. deploy: how to deploy the stack (a remedy);
    where: " on host NAME" on several hosts.

    A stopped sandbox (or a container of no role) is `container-stopped`: the service's address
    is gone and the trace sends no request. A stopped app is `app-stopped`: the sandbox keeps the
    address and the port, nothing listens there, and the request is sent to show what a client
    gets (a 502 from external when internal's app is down)."""
    stack = trace.stack
    if found is None or found.sandbox is None:
        role = f", {ROLE_LABEL}={SANDBOX}" if found is not None else ""
        trace.add_problem(
            "bridge",
            "container-missing",
            f"no container labelled {SERVICE_LABEL}={service}{role} in stack {stack}{where}",
            deploy,
        )
        return
    if not found.sandbox.running:
        name = found.sandbox.name
        trace.add_problem(
            "bridge",
            "container-stopped",
            f"container {name}{where} is not running",
            f"`docker start {name}` or {deploy}",
        )
        return
    check_apps(trace, found, deploy, where)


def check_apps(trace: Trace, found: ServiceContainers, deploy: str, where: str = "") -> None:
    """Problems of a running sandbox's apps: none there (`app-missing`), none running
    (`app-stopped`)."""
    if found.sandbox is None or not found.split:
        return
    service = found.service
    app = found.app
    if app is None:
        trace.add_problem(
            "services",
            "app-missing",
            f"{service} has no app container in its sandbox {found.sandbox.name}{where}",
            deploy,
        )
    elif not app.running:
        trace.add_problem(
            "services",
            "app-stopped",
            f"{service}'s app container {app.name}{where} is not running: its sandbox "
            f"{found.sandbox.name} keeps the address, but nothing listens there",
            f"`docker start {app.name}` or {deploy}",
        )


def namespace(
    sources: Sources, trace: Trace, found: ServiceContainers, host: str | None = None
) -> ServiceNamespace | None:
    """The sandbox's namespace with its apps and who listens in it: `ss` run in the namespace
    (its file is the sandbox's SandboxKey), each socket's PID matched to an app's processes
    (`docker top`). None for a service without a sandbox. What cannot be read becomes a note."""
    sandbox = found.sandbox
    if sandbox is None or not found.split:
        return None
    space = ServiceNamespace(
        service=found.service,
        sandbox=sandbox.name,
        hostname=sandbox.hostname,
        apps=[AppContainer(a.name, a.running, a.pid or None) for a in found.apps],
        host=host,
    )
    if not sandbox.running or not sandbox.sandbox_key:
        return space
    result = sources.in_netns(sandbox.sandbox_key, ["ss", "-Hltnp"])
    if result.returncode != 0:
        trace.notes.append(
            f"could not read the listeners in {sandbox.name}'s namespace: `{result.command}`: "
            f"{result.stderr.strip() or f'exit code {result.returncode}'}"
        )
        return space
    owner: dict[int, str] = {}
    for app in found.apps:
        if not app.running:
            continue
        try:
            top = sources.container_top(app.name)
            pids = parse_container_top(top) if top is not None else []
        except (DockerUnavailable, DockerApiError, ParseError) as exc:
            trace.notes.append(f"could not list the processes of {app.name}: {exc}")
            continue
        owner.update(dict.fromkeys(pids, app.name))
    space.listeners = [
        NamespaceListener(
            x.local_address, x.port, x.process, x.pid, owner.get(x.pid) if x.pid else None
        )
        for x in sorted(parse_ss_listeners(result.stdout), key=lambda x: (x.port, x.pid or 0))
    ]
    return space
