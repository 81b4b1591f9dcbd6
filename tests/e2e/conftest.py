"""Fixtures for the end-to-end tests: a real Docker engine, real stacks.

They run when scripts/test.sh could prepare the engine, base image and toolchain. Outside CI
they skip with the reason; with CI=true a missing prerequisite fails the session instead.
Every stack fixture owns its teardown (destroy, then remove the stack), and a stack a test
destroyed is deployed again for the next module that needs it, so any test file runs alone
and in any order.
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

from tests.e2e.harness import ALT_CONFIG, IN_CI
from tests.support import stacks
from tests.support.stacks import Engine, Project, Stack

DEFAULT_SUBNET = ipaddress.IPv4Network("172.13.0.0/16")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The engine every stack of the session runs on, and where its clients stand."""
    return Engine.host()


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
    holder = _subnet_holder(docker_client, DEFAULT_SUBNET)
    if holder:
        pytest.fail(
            f"Docker network {holder} already uses {DEFAULT_SUBNET}, which the e2e tests deploy "
            "with the default config: run `make down` (or remove it) first",
            pytrace=False,
        )
    return Project(
        tmp_path_factory.mktemp("c2c-e2e") / "project",
        engine=engine,
        docker_client=docker_client,
        base_image=os.environ.get("C2C_BASE_IMAGE", "python:3.11-slim"),
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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not stacks.TIMINGS:
        return
    terminalreporter.section("e2e step timings")
    for label, seconds in stacks.TIMINGS:
        terminalreporter.write_line(f"{seconds:8.1f}s  {label}")
