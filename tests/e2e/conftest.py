"""Fixtures for the end-to-end tests: real Docker engines of the suite's own, real stacks.

The suite never uses the machine's own engine: every stack runs on a Docker engine in a network
namespace of the suite's own (a one-host lab, see lab/), so a user's `dev` stack on the
default subnet stays up beside it (`make up`, then `make test`). The whole suite runs once per
engine kind (ENGINE_KINDS): Debian's docker.io 20.10 and the current engine built from pinned
Go modules (scripts/docker-engine.sh).

They run when scripts/test.sh could prepare the toolchain and base image. Outside CI they skip
with the reason; with CI=true a missing prerequisite fails the session instead. Every stack
fixture owns its teardown (destroy, then remove the stack), and a stack a test destroyed is
deployed again for the next module that needs it, so any test file runs alone and in any order.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from lab import OFFLINE_BASE_IMAGE, EngineSpec, Host, Lab, stacks
from lab.modern import modern_engine_spec
from lab.stacks import Engine, Project, Stack
from tests.e2e.harness import (
    ALT_CONFIG,
    ENGINE_KINDS,
    ENGINE_LABS,
    EXTERNAL_HOST,
    IN_CI,
    INTERNAL_HOST,
    MULTIHOST_LABS,
    require_root,
    two_host_stack,
)

DEFAULT_SUBNET = ipaddress.IPv4Network("172.13.0.0/16")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


def _engine_spec(kind: str) -> EngineSpec:
    # Debian's dockerd from PATH, or the current one (built on first use, then cached).
    return modern_engine_spec() if kind == "docker-current" else EngineSpec()


@pytest.fixture(scope="session", params=ENGINE_KINDS)
def engine_lab(request: pytest.FixtureRequest) -> Iterator[tuple[str, Lab, Host]]:
    """The one-host lab of the suite's own that runs the session's engine: (engine kind, lab,
    its host). Tests act on the engine itself through the lab (Lab.restart_engine)."""
    kind: str = request.param
    require_root("the suite's engines run in network namespaces of its own")
    name, underlay = ENGINE_LABS[kind]
    lab = Lab(
        name,
        hosts=("e2e",),
        underlay=underlay,
        base_image=OFFLINE_BASE_IMAGE,
        engine=_engine_spec(kind),
    )
    with stacks.timed(f"lab {name} ({kind}): up"):
        (host,) = lab.up()
    yield kind, lab, host
    with stacks.timed(f"lab {name} ({kind}): down"):
        lab.down()


@pytest.fixture(scope="session")
def engine(engine_lab: tuple[str, Lab, Host]) -> Engine:
    """The engine every stack of the session runs on, whose clients stand inside its lab
    host's namespace (so `localhost:<hostPort>` is docker-proxy's, as on a real host)."""
    kind, lab, host = engine_lab
    return Engine(kind=kind, docker_host=host.docker_host, netns=host.netns, spec=lab.engine)


def _unavailable_reason(engine: Engine) -> str | None:
    reason = os.environ.get("C2C_E2E_UNAVAILABLE")
    if reason:
        return reason
    if shutil.which("pulumi") is None:
        return "the pulumi CLI is not on PATH (run the tests through `make test`)"
    try:
        engine.docker_client(timeout=10).ping()
    except docker.errors.DockerException as exc:
        return f"no Docker engine answers: {exc}"
    return None


@pytest.fixture(scope="session")
def docker_client(engine: Engine) -> Iterator[docker.DockerClient]:
    reason = _unavailable_reason(engine)
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true and the e2e prerequisites are missing: {reason}", pytrace=False)
        pytest.skip(reason)
    client = engine.docker_client()
    removed = stacks.remove_e2e_leftovers(client)
    if removed:
        print(f"removed leftovers of an earlier e2e run: {', '.join(removed)}")
    yield client
    client.close()


def _subnet_holder(client: docker.DockerClient, subnet: ipaddress.IPv4Network) -> str | None:
    for network in client.networks.list():
        for pool in (network.attrs.get("IPAM") or {}).get("Config") or []:
            if "Subnet" in pool and ipaddress.ip_network(pool["Subnet"]).overlaps(subnet):
                return str(network.name)
    return None


@pytest.fixture(scope="session")
def project(
    engine: Engine, docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Project:
    # The suite's own engine: only an earlier run's leftovers could hold the default subnet,
    # and those were removed above; anything else is a bug worth stopping for.
    holder = _subnet_holder(docker_client, DEFAULT_SUBNET)
    if holder:
        pytest.fail(
            f"Docker network {holder} already uses {DEFAULT_SUBNET} on the suite's own engine "
            f"({engine.docker_host})",
            pytrace=False,
        )
    return Project(
        tmp_path_factory.mktemp(f"c2c-e2e-{engine.kind}") / "project",
        engine=engine,
        docker_client=docker_client,
        base_image=OFFLINE_BASE_IMAGE,  # the image every lab engine is loaded with
    )


@pytest.fixture(scope="session")
def default_stack(project: Project) -> Iterator[Stack]:
    """The stack with the default config (172.13.0.0/16, 8090 -> 8081), not yet deployed."""
    stack = project.stack("default")
    yield stack
    stack.tear_down()


@pytest.fixture(scope="session")
def second_stack(project: Project) -> Iterator[Stack]:
    """A second stack, non-default subnet, IPs and ports (ALT_CONFIG), not yet deployed."""
    stack = project.stack("alt", **ALT_CONFIG)
    yield stack
    stack.tear_down()


@pytest.fixture(scope="module")
def deployed_stack(default_stack: Stack) -> Stack:
    """The default stack, deployed (again, if a test of an earlier module destroyed it)."""
    return default_stack.ensure_up()


@pytest.fixture(scope="module")
def alt_stack(second_stack: Stack) -> Stack:
    """The second stack, deployed (again, if an earlier module destroyed it)."""
    return second_stack.ensure_up()


@pytest.fixture(scope="module")
def config(deployed_stack: Stack) -> dict[str, str]:
    """The default stack's effective `c2c:*` config."""
    return deployed_stack.settings()


# --- two hosts: a lab of two engines in one Swarm, and the stack across them ------------------


@pytest.fixture(scope="session")
def multihost_lab(engine: Engine) -> Iterator[Lab]:
    """Two lab hosts of the session's engine kind in one Swarm (manager ma, worker mb): one lab
    per engine for the session (each up costs 10-20 s), brought up by multihost_hosts."""
    name, underlay = MULTIHOST_LABS[engine.kind]
    lab = Lab(
        name,
        hosts=(EXTERNAL_HOST, INTERNAL_HOST),
        underlay=underlay,
        swarm=True,
        base_image=OFFLINE_BASE_IMAGE,
        engine=engine.spec,
    )
    lab.down()  # what an interrupted earlier run left
    yield lab
    lab.down()


@pytest.fixture(scope="module")
def multihost_hosts(multihost_lab: Lab) -> dict[str, Host]:
    """The lab's hosts, up: created if missing (first use, or a test took the lab down),
    reused as they are otherwise."""
    with stacks.timed(f"lab {multihost_lab.name}: up"):
        found = multihost_lab.up()
    return {host.name: host for host in found}


@pytest.fixture(scope="module")
def multihost_engines(
    multihost_hosts: dict[str, Host],
) -> Iterator[dict[str, docker.DockerClient]]:
    clients = {
        name: docker.DockerClient(base_url=host.docker_host, timeout=60)
        for name, host in multihost_hosts.items()
    }
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="module")
def multihost_stack(project: Project, multihost_hosts: dict[str, Host]) -> Iterator[Stack]:
    """The stack on the two-host lab, as Pulumi.multihost.yaml configures `make lab`'s: internal
    on mb, external on ma. Not yet deployed."""
    with two_host_stack(project, multihost_hosts, "mh") as stack:
        yield stack


@pytest.fixture(scope="module")
def multihost_client(multihost_hosts: dict[str, Host]) -> Engine:
    """A client in the host namespace, on the underlay, of what external's host publishes."""
    return Engine(published_host=str(multihost_hosts[EXTERNAL_HOST].address))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not stacks.TIMINGS:
        return
    terminalreporter.section("e2e step timings")
    for label, seconds in stacks.TIMINGS:
        terminalreporter.write_line(f"{seconds:8.1f}s  {label}")
