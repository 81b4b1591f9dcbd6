"""Real c2c stacks for the e2e tests and the bench: a throwaway copy of the project driven by
Pulumi's Automation API.

`Engine` says which Docker engine the stacks run on and how a client reaches what they publish;
everything that talks to the engine or a stack (the Pulumi docker provider, docker-py, HTTP
requests, host commands such as iptables-save) goes through it, so moving the suite to another
engine changes one object. `Project` is a copy of the repository with its own file backend and
passphrase, so tests never touch the user's stacks, state or working tree; `Stack` is one stack
of it, deployed, inspected, destroyed and removed through `pulumi.automation`, which runs the
`pulumi` CLI found on PATH.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import docker
import requests
import yaml
from pulumi import automation as auto

from lab import EngineSpec, Host, nsenter_argv, run_in_netns

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_LABEL = "c2c.project"
STACK_LABEL = "c2c.stack"
SERVICE_LABEL = "c2c.service"
# Which of a service's two containers (docs/zero-downtime.md): "sandbox" or "app".
ROLE_LABEL = "c2c.role"
ROLES = ("sandbox", "app")
SERVICES = ("internal", "external")
E2E_STACK_PREFIX = "e2e-"
# What Docker holds for a stack that is gone: see Stack.docker_objects.
NO_DOCKER_OBJECTS: dict[str, list[str]] = {"containers": [], "networks": [], "images": []}

# (label, seconds) of every timed step, printed at the end of the session by the e2e conftest.
TIMINGS: list[tuple[str, float]] = []


@contextmanager
def timed(label: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        TIMINGS.append((label, time.monotonic() - start))


# --- which engine ------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """The Docker engine stacks are deployed to, and where its clients stand.

    kind: which engine build it is (ENGINE_KINDS), for tests whose expectations differ by engine.
    docker_host: DOCKER_HOST for the Pulumi docker provider and docker-py (None: the default).
    published_host: the address a client connects to for a port the stack publishes.
    netns: a named network namespace (`ip netns`) that clients and host commands must run in,
    None for this process's own.
    spec: how a lab starts this kind of engine, for tests that make a lab of their own.
    """

    kind: str = "host"
    docker_host: str | None = None
    published_host: str = "localhost"
    netns: str | None = None
    spec: EngineSpec = field(default_factory=EngineSpec)

    @classmethod
    def host(cls) -> Engine:
        """This machine's own engine, as the environment (DOCKER_HOST or the socket) names it."""
        return cls(docker_host=os.environ.get("DOCKER_HOST") or None)

    def env(self) -> dict[str, str]:
        """Environment variables that point a Docker client (Pulumi's provider) at the engine."""
        return {"DOCKER_HOST": self.docker_host} if self.docker_host else {}

    def docker_client(self, timeout: int = 60) -> docker.DockerClient:
        return docker.from_env(timeout=timeout, environment={**os.environ, **self.env()})

    def url(self, endpoint: str, path: str = "/") -> str:
        """A stack's `endpoint` output as this engine's clients reach it (same port)."""
        parts = urlsplit(endpoint)
        return urlunsplit(parts._replace(netloc=f"{self.published_host}:{parts.port}", path=path))

    def command(self, *argv: str) -> list[str]:
        """argv run where the engine's network is (its namespace, if it has one)."""
        return nsenter_argv(self.netns, argv) if self.netns else list(argv)

    def run(
        self, *argv: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        cmd = self.command(*argv)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # straight to the stack, never through a proxy from the env
        return session

    def get(
        self, url: str, *, timeout: float, session: requests.Session | None = None
    ) -> requests.Response:
        http = session or self.session()
        if self.netns is None:
            return http.get(url, timeout=timeout)
        # The connection is opened in a thread inside the namespace (lab.run_in_netns).
        return run_in_netns(self.netns, lambda: http.get(url, timeout=timeout), timeout + 10)

    def get_json(self, url: str, timeout: float = 10) -> tuple[int, dict[str, Any], float]:
        """GET url; (status, JSON body, seconds). Only a stack's own endpoint is ever asked."""
        start = time.monotonic()
        response = self.get(url, timeout=timeout)
        elapsed = time.monotonic() - start
        content_type = response.headers.get("Content-Type", "")
        assert content_type.startswith("application/json"), response.text
        body: dict[str, Any] = response.json()
        return response.status_code, body, elapsed

    def wait_for_status(self, url: str, status: int, within: float) -> float:
        """Poll url until it answers `status`; seconds it took. Bounded in time."""
        start = time.monotonic()
        last: object = None
        session = self.session()
        while time.monotonic() - start < within:
            try:
                last = self.get(url, timeout=2, session=session).status_code
            except requests.RequestException as exc:
                last = exc
            if last == status:
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(f"{url} did not answer {status} within {within}s (last: {last})")


# --- Docker objects by label ---------------------------------------------------------------


def stack_filter(stack: str) -> dict[str, list[str]]:
    return {"label": [f"{PROJECT_LABEL}=c2c", f"{STACK_LABEL}={stack}"]}


def docker_objects(client: docker.DockerClient, stack: str) -> dict[str, list[str]]:
    """Names of the containers, networks and image tags Docker holds for a stack."""
    filters = stack_filter(stack)
    images = client.images.list(filters=filters)
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=filters)],
        "networks": [n.name for n in client.networks.list(filters=filters)],
        "images": [tag for image in images for tag in image.tags]
        + [image.id for image in images if not image.tags],
    }


def remove_labelled(client: docker.DockerClient, filters: Mapping[str, Any]) -> None:
    """Remove the containers, networks and images Docker lists for `filters` (containers
    first: they hold the others)."""
    for container in client.containers.list(all=True, filters=filters):
        container.remove(force=True)
    for network in client.networks.list(filters=filters):
        network.remove()
    for image in client.images.list(filters=filters):
        client.images.remove(image.id, force=True)


def remove_e2e_leftovers(client: docker.DockerClient) -> list[str]:
    """Remove what an earlier, interrupted e2e run left: only e2e stacks' objects."""
    removed: list[str] = []
    project = {"label": f"{PROJECT_LABEL}=c2c"}

    def is_e2e(labels: dict[str, str] | None) -> bool:
        return (labels or {}).get(STACK_LABEL, "").startswith(E2E_STACK_PREFIX)

    for container in client.containers.list(all=True, filters=project):
        if is_e2e(container.labels):
            container.remove(force=True)
            removed.append(f"container {container.name}")
    for network in client.networks.list(filters=project):
        if is_e2e(network.attrs.get("Labels")):
            network.remove()
            removed.append(f"network {network.name}")
    for image in client.images.list(filters=project):
        if is_e2e(image.labels):
            client.images.remove(image.id, force=True)
            removed.append(f"image {image.tags or image.id}")
    return removed


# --- the project and its stacks ------------------------------------------------------------


class Project:
    """A copy of the project with its own Pulumi state and stack names, for one test session."""

    def __init__(
        self,
        workdir: Path,
        *,
        engine: Engine,
        docker_client: docker.DockerClient,
        base_image: str,
    ) -> None:
        self.workdir = workdir
        self.engine = engine
        self.docker = docker_client
        self.base_image = base_image
        # One id per session, in every stack name of the run (e2e-<run>-<suffix>).
        self.run_id = secrets.token_hex(3)
        shutil.copytree(
            REPO_ROOT,
            workdir,
            ignore=shutil.ignore_patterns(
                ".git",
                ".venv",
                ".pulumi-state",
                ".state",
                "__pycache__",
                ".*_cache",
                "Pulumi.*.yaml",
            ),
            symlinks=True,
        )
        # The program runs in the project's venv (Pulumi.yaml: virtualenv .venv).
        (workdir / ".venv").symlink_to(REPO_ROOT / ".venv")
        state = workdir / ".pulumi-state"
        state.mkdir()
        self.workspace = auto.LocalWorkspace(
            work_dir=str(workdir),
            env_vars={
                "PULUMI_BACKEND_URL": f"file://{state}",
                # Its own passphrase, not the dev stack's: these stacks hold no secrets.
                "PULUMI_CONFIG_PASSPHRASE": "c2c-e2e-no-secrets",
                "PULUMI_SKIP_UPDATE_CHECK": "true",
                **engine.env(),
            },
        )

    def stack_name(self, suffix: str) -> str:
        return f"{E2E_STACK_PREFIX}{self.run_id}-{suffix}"

    def stack(self, suffix: str, **config: str) -> Stack:
        """A new, empty stack with `c2c:<key>` config (the session's base image added)."""
        return Stack(self, self.stack_name(suffix), {"baseImage": self.base_image, **config})


@dataclass(frozen=True)
class UpOutcome:
    """How a `pulumi up` that may fail ended: its CLI output, line by line."""

    succeeded: bool
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.stdout + self.stderr)


def _short_urn(urn: str) -> str:
    """`type::name` of urn:pulumi:<stack>::<project>::<parent types, $-joined>$<type>::<name>."""
    qualified_type, name = urn.split("::")[2:4]
    return f"{qualified_type.split('$')[-1]}::{name}"


class Stack:
    """One stack of a Project, created empty with its config; deployed by `up`."""

    def __init__(self, project: Project, name: str, config: dict[str, str]) -> None:
        self.project = project
        self.name = name
        self.config = config
        with timed(f"{name}: stack init"):
            self._auto = auto.Stack.create(name, project.workspace)
            self._auto.set_all_config(
                {f"c2c:{key}": auto.ConfigValue(value=value) for key, value in config.items()}
            )
        # The outputs of the last successful up; None while nothing is deployed.
        self._outputs: dict[str, Any] | None = None

    @property
    def engine(self) -> Engine:
        return self.project.engine

    @property
    def workdir(self) -> Path:
        return self.project.workdir

    def set_config(self, **changes: str) -> None:
        """Change `c2c:<key>` values (what `pulumi config set` does); the next `up` applies them."""
        self._auto.set_all_config(
            {f"c2c:{key}": auto.ConfigValue(value=value) for key, value in changes.items()}
        )
        self.config.update(changes)

    def set_hosts(self, hosts: Mapping[str, Host]) -> None:
        """`c2c:hosts` from lab hosts: each one's Docker URL and underlay address. An object, so
        its leaves are set by path (`pulumi config set --path`)."""
        self._auto.set_all_config(
            {
                f"c2c:hosts.{name}.{key}": auto.ConfigValue(value=value)
                for name, host in hosts.items()
                for key, value in (("url", host.docker_host), ("address", str(host.address)))
            },
            path=True,
        )

    # --- Pulumi operations

    def up(self, *, refresh: bool = False, expect_no_changes: bool = False) -> auto.UpResult:
        label = (
            "pulumi up"
            + (" --refresh" if refresh else "")
            + (" --expect-no-changes" if expect_no_changes else "")
        )
        with timed(f"{self.name}: {label}"):
            result = self._auto.up(refresh=refresh, expect_no_changes=expect_no_changes)
        self._outputs = {key: output.value for key, output in result.outputs.items()}
        return result

    def ensure_up(self) -> Stack:
        """Deploy unless deployed: a test that destroyed the stack leaves it for the next one."""
        if self._outputs is None:
            self.up()
        return self

    def try_up(self) -> UpOutcome:
        """`pulumi up` that is expected to fail: its outcome and output, never an exception."""
        stdout: list[str] = []
        stderr: list[str] = []
        with timed(f"{self.name}: pulumi up (may fail)"):
            try:
                self._auto.up(on_output=stdout.append, on_error=stderr.append)
            except auto.errors.CommandError:
                return UpOutcome(False, stdout, stderr)
        return UpOutcome(True, stdout, stderr)

    def preview(self, *, expect_no_changes: bool = False) -> dict[str, set[str]]:
        """The plan: `type::name` -> the ops of its steps, for every resource that would change."""
        ops: dict[str, set[str]] = {}

        def on_event(event: auto.EngineEvent) -> None:
            step = event.resource_pre_event
            if step is not None and step.metadata.op != auto.OpType.SAME:
                ops.setdefault(_short_urn(step.metadata.urn), set()).add(step.metadata.op.value)

        with timed(f"{self.name}: pulumi preview"):
            self._auto.preview(expect_no_changes=expect_no_changes, on_event=on_event)
        return ops

    def destroy(self) -> None:
        self._outputs = None  # whatever happens next, the old outputs no longer hold
        with timed(f"{self.name}: pulumi destroy"):
            self._auto.destroy()

    def remove(self) -> None:
        with timed(f"{self.name}: pulumi stack rm"):
            self.project.workspace.remove_stack(self.name, force=True)

    def tear_down(self) -> None:
        """Destroy what is left (a test may have destroyed it already), then remove the stack."""
        if any(self.docker_objects().values()):
            self.destroy()
        self.remove()
        assert self.docker_objects() == NO_DOCKER_OBJECTS, f"{self.name} left Docker objects"

    def resource_types(self) -> list[str]:
        """The type of every resource the stack's state holds."""
        deployment = self._auto.export_stack().deployment or {}
        return [resource["type"] for resource in deployment.get("resources") or []]

    # --- what the stack is

    @property
    def outputs(self) -> dict[str, Any]:
        assert self._outputs is not None, f"{self.name} is not deployed"
        return self._outputs

    def settings(self) -> dict[str, str]:
        """The stack's effective `c2c:*` values: Pulumi.yaml's defaults, then the stack's own."""
        declared = yaml.safe_load((self.workdir / "Pulumi.yaml").read_text())["config"]
        values = {key: str(spec["default"]) for key, spec in declared.items() if "default" in spec}
        return {**values, **self.config}

    def service_name(self, service: str) -> str:
        """The service's name: its sandbox's hostname (what the service reports as `hostname`),
        the replicated internal's Swarm service name, and on an overlay (no sandboxes) its one
        container's name. On one host no container has it: a service is a sandbox and an app
        container (docs/zero-downtime.md), found by labels."""
        return f"c2c-{self.name}-{service}"

    def sandbox_name(self, service: str) -> str:
        return f"{self.service_name(service)}-sandbox"

    def containers(
        self,
        service: str,
        role: str | None,
        client: docker.DockerClient | None = None,
        *,
        stopped_too: bool = False,
    ) -> list[Any]:
        """The running (or, with stopped_too, all) containers of a service in a role (sandbox or
        app; None: the one container of a service without a sandbox, which has no role label),
        by their labels, on `client`'s engine (the project's by default; a multi-host stack
        spans engines)."""
        filters = stack_filter(self.name)
        filters["label"] += [f"{SERVICE_LABEL}={service}"]
        engine = client or self.project.docker
        found = engine.containers.list(all=stopped_too, filters=filters)
        return [c for c in found if c.labels.get(ROLE_LABEL) == role]

    def container(
        self, service: str, role: str | None = "app", client: docker.DockerClient | None = None
    ) -> Any:
        """The one running container of a service in a role: the app by default. Outside a
        redeploy there is exactly one (during one, the old and the new app both run)."""
        found = self.containers(service, role, client)
        assert len(found) == 1, (
            f"{self.name}: expected one running {role or 'container'} of {service}, found "
            f"{[c.name for c in found]}"
        )
        return found[0]

    def sandbox(self, service: str, client: docker.DockerClient | None = None) -> Any:
        """The service's sandbox: the container that owns its IP, published port and sysctl."""
        return self.container(service, "sandbox", client)

    def container_ids(self) -> dict[str, str]:
        """The ID of each service's running sandbox and app, by "<service>/<role>" (one engine):
        what a test compares before and after a change to see exactly what was replaced."""
        return {
            f"{service}/{role}": self.container(service, role).id
            for service in SERVICES
            for role in ROLES
        }

    def docker_objects(self) -> dict[str, list[str]]:
        return docker_objects(self.project.docker, self.name)

    # --- its endpoint, as the engine's clients reach it

    @property
    def endpoint(self) -> str:
        return self.engine.url(self.outputs["endpoint"])

    def get_json(self, timeout: float = 10) -> tuple[int, dict[str, Any], float]:
        return self.engine.get_json(self.endpoint, timeout=timeout)

    def wait_for_status(self, status: int, within: float) -> float:
        return self.engine.wait_for_status(self.endpoint, status, within)
