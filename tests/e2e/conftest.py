"""Fixtures for the end-to-end tests: real Docker engine, real `pulumi up`.

They run when scripts/test.sh could prepare the engine, base image and toolchain. Outside CI
they skip with the reason; with CI=true a missing prerequisite fails the session instead.
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

from tests.e2e import harness
from tests.e2e.harness import ALT_CONFIG, IN_CI, RUN_ID, DeployedStack

DEFAULT_SUBNET = ipaddress.IPv4Network("172.13.0.0/16")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


def _unavailable_reason() -> str | None:
    reason = os.environ.get("C2C_E2E_UNAVAILABLE")
    if reason:
        return reason
    if shutil.which("pulumi") is None:
        return "the pulumi CLI is not on PATH (run the tests through `make test`)"
    try:
        docker.from_env(timeout=10).ping()
    except docker.errors.DockerException as exc:
        return f"no Docker engine answers: {exc}"
    return None


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    reason = _unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true and the e2e prerequisites are missing: {reason}", pytrace=False)
        pytest.skip(reason)
    client = harness.docker_client()
    removed = harness.remove_e2e_leftovers(client)
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
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> harness.Project:
    holder = _subnet_holder(docker_client, DEFAULT_SUBNET)
    if holder:
        pytest.fail(
            f"Docker network {holder} already uses {DEFAULT_SUBNET}, which the e2e tests deploy "
            "with the default config: run `make down` (or remove it) first",
            pytrace=False,
        )
    base_image = os.environ.get("C2C_BASE_IMAGE", "python:3.11-slim")
    return harness.Project(tmp_path_factory.mktemp("c2c-e2e") / "project", base_image)


def _deploy(project: harness.Project, suffix: str, **config: str) -> DeployedStack:
    stack = project.stack(f"{harness.E2E_STACK_PREFIX}{RUN_ID}-{suffix}", **config)
    with harness.timed(f"{stack.name}: first pulumi up (build, create)"):
        stack.up()
    return DeployedStack(stack, stack.outputs())


def _teardown(deployed: DeployedStack, client: docker.DockerClient) -> None:
    """Destroy unless a test already did; remove the stack. Never leaves resources behind."""
    left = harness.stack_resources(client, deployed.name)
    if any(left.values()):
        deployed.stack.destroy()
    deployed.stack.remove()


@pytest.fixture(scope="session")
def deployed_stack(
    project: harness.Project, docker_client: docker.DockerClient
) -> Iterator[DeployedStack]:
    """The stack with the default config (172.13.0.0/16, 8090 -> 8081)."""
    deployed = _deploy(project, "default")
    yield deployed
    _teardown(deployed, docker_client)


@pytest.fixture(scope="session")
def alt_stack(
    project: harness.Project, docker_client: docker.DockerClient
) -> Iterator[DeployedStack]:
    """A second stack, non-default subnet, IPs and ports, beside the default one."""
    deployed = _deploy(project, "alt", **ALT_CONFIG)
    yield deployed
    _teardown(deployed, docker_client)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not harness.TIMINGS:
        return
    terminalreporter.section("e2e step timings")
    for label, seconds in harness.TIMINGS:
        terminalreporter.write_line(f"{seconds:8.1f}s  {label}")
