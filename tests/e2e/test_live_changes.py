"""Config changed on a running stack, and `pulumi up` failing on the Docker side after the config
passed validation.

Live changes: hostPort, then subnet and IPs, each on the deployed stack. The plan replaces
exactly what must change, and the endpoint answers from the new place afterwards. A service is a
sandbox (its address, its published port) and an app in the sandbox's network namespace
(docs/zero-downtime.md); an app is made of its sandbox's ID (network_mode container:<id>, and
its name's digest), so replacing a sandbox replaces its app too. A new port mapping: external's
sandbox and app; a new subnet: the network, both sandboxes and both apps.

Docker-side failures: a host port something else holds, a subnet another Docker network holds,
an image whose healthcheck never passes. Each fails `pulumi up` with a message that names the
cause, within a bounded time, and leaves nothing that the next `pulumi up` (after fixing the
cause) or `pulumi destroy` cannot clean. Each runs on a fresh stack of its own.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from lab import run_in_netns
from lab.stacks import NO_DOCKER_OBJECTS, Project, Stack, timed
from tests.e2e import harness
from tests.e2e.harness import tcp_connect

pytestmark = pytest.mark.slow

NETWORK = "docker:index/network:Network::c2c-network"
# The sandboxes keep the resource names the services' one container had.
INTERNAL_SANDBOX = "docker:index/container:Container::c2c-internal"
EXTERNAL_SANDBOX = "docker:index/container:Container::c2c-external"
INTERNAL_APP = "docker:index/container:Container::c2c-internal-app"
EXTERNAL_APP = "docker:index/container:Container::c2c-external-app"
REPLACE_OPS = {"replace", "create-replacement", "delete-replaced"}

# Subnets and host ports no other stack of the session uses.
LIVE_CONFIG = {
    "subnet": "10.80.0.0/24",
    "gateway": "10.80.0.1",
    "internalIp": "10.80.0.20",
    "externalIp": "10.80.0.30",
    "hostPort": "18094",
}
MOVED_PORT = "18095"
MOVED_ADDRESSES = {
    "subnet": "10.81.0.0/24",
    "gateway": "10.81.0.1",
    "internalIp": "10.81.0.20",
    "externalIp": "10.81.0.30",
}
FAILING_CONFIG = {
    "subnet": "10.82.0.0/24",
    "gateway": "10.82.0.1",
    "internalIp": "10.82.0.20",
    "externalIp": "10.82.0.30",
    "hostPort": "18096",
    # Short, so the never-healthy test below waits 20 s, not the default 90 s (a healthy start
    # takes 2-4 s: the first check runs 2 s after the start).
    "healthyWithinSeconds": "20",
}
HEALTHY_WITHIN_SECONDS = int(FAILING_CONFIG["healthyWithinSeconds"])
# A failure Docker reports at once (port, subnet) must stop `pulumi up` within this: the images'
# builds (cached layers) and internal's wait for healthy (first check 2 s after start) come first.
PROMPT_FAILURE_WITHIN = 60.0
# An image that never turns healthy: `pulumi up` gives up after the provider's wait timeout,
# plus the builds before it and the healthcheck rounds after it, on a busy machine.
NEVER_HEALTHY_MARGIN = 45.0
# The probe module every image runs as its HEALTHCHECK, and the request it makes.
PROBE = Path("services") / "common" / "c2c_http" / "probe.py"
PROBE_REQUEST = '"GET", "/healthz"'


def _answers_from(stack: Stack) -> dict[str, str]:
    status, body, _ = stack.get_json()
    assert status == 200, body
    return {"external": body["container_ip"], "internal": body["upstream"]["container_ip"]}


def _networks_of(stack: Stack) -> dict[str, list[str]]:
    """The subnets of each Docker network labelled with the stack."""
    return {
        network.name: [pool["Subnet"] for pool in network.attrs["IPAM"]["Config"]]
        for network in stack.project.docker.networks.list(
            filters={"label": f"c2c.stack={stack.name}"}
        )
    }


# --- live changes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_stack(project: Project) -> Iterator[Stack]:
    stack = project.stack("live", **LIVE_CONFIG)
    try:
        stack.up()
        yield stack
    finally:
        stack.tear_down()


def test_new_host_port_replaces_only_external(live_stack: Stack) -> None:
    old_port = int(live_stack.config["hostPort"])
    before = live_stack.container_ids()
    live_stack.set_config(hostPort=MOVED_PORT)

    plan = live_stack.preview()
    print(f"plan for hostPort {old_port} -> {MOVED_PORT}: {plan}")
    # The port mapping is the sandbox's; its app follows it (the app is made of its ID).
    assert set(plan) == {EXTERNAL_SANDBOX, EXTERNAL_APP}, plan
    assert set().union(*plan.values()) <= REPLACE_OPS, plan

    live_stack.up()
    after = live_stack.container_ids()
    changed = {key for key in before if after[key] != before[key]}
    assert changed == {"external/sandbox", "external/app"}, (before, after)
    assert live_stack.outputs["endpoint"] == f"http://localhost:{MOVED_PORT}"
    assert _answers_from(live_stack) == {
        "external": LIVE_CONFIG["externalIp"],
        "internal": LIVE_CONFIG["internalIp"],
    }
    # The old port is let go: nothing accepts it on the engine host any more.
    assert tcp_connect("127.0.0.1", old_port, live_stack.engine.netns) == "refused"


def test_new_subnet_and_ips_replace_the_network_and_every_container(live_stack: Stack) -> None:
    old_network = live_stack.outputs["networkName"]
    before = live_stack.container_ids()
    live_stack.set_config(**MOVED_ADDRESSES)

    plan = live_stack.preview()
    print(f"plan for subnet {LIVE_CONFIG['subnet']} -> {MOVED_ADDRESSES['subnet']}: {plan}")
    # The addresses are the sandboxes'; each app follows its sandbox. The images (the
    # services' and the sandboxes' base image) do not depend on addresses: they stay.
    every_container = {INTERNAL_SANDBOX, EXTERNAL_SANDBOX, INTERNAL_APP, EXTERNAL_APP}
    assert set(plan) == {NETWORK, *every_container}, plan
    assert set().union(*plan.values()) <= REPLACE_OPS, plan

    live_stack.up()
    after = live_stack.container_ids()
    assert not set(after.values()) & set(before.values())
    assert live_stack.outputs["subnet"] == MOVED_ADDRESSES["subnet"]
    assert live_stack.outputs["internalUrl"].startswith(f"http://{MOVED_ADDRESSES['internalIp']}:")
    # One network, the same name, the new subnet only.
    assert _networks_of(live_stack) == {old_network: [MOVED_ADDRESSES["subnet"]]}
    assert _answers_from(live_stack) == {
        "external": MOVED_ADDRESSES["externalIp"],
        "internal": MOVED_ADDRESSES["internalIp"],
    }
    live_stack.preview(expect_no_changes=True)


# --- Docker-side failures -----------------------------------------------------------------------


@pytest.fixture
def failing_stack(project: Project, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A fresh, undeployed stack for one failure; destroyed and removed after the test, which
    asserts that nothing labelled with it is left."""
    # test_<first word>_...: "f-taken", "f-overlapping", "f-never".
    stack = project.stack(f"f-{request.node.originalname.split('_')[1]}", **FAILING_CONFIG)
    try:
        yield stack
    finally:
        stack.tear_down()


def _failed_up(stack: Stack, within: float) -> tuple[str, float]:
    start = time.monotonic()
    outcome = stack.try_up()
    seconds = time.monotonic() - start
    print(f"failed up of {stack.name} after {seconds:.1f}s:\n{outcome.output}")
    assert not outcome.succeeded, "pulumi up succeeded despite the fault"
    assert seconds < within, f"pulumi up took {seconds:.1f}s to fail (bound {within}s)"
    return outcome.output, seconds


def _up_after_fixing(stack: Stack) -> None:
    stack.up()
    assert _answers_from(stack) == {
        "external": FAILING_CONFIG["externalIp"],
        "internal": FAILING_CONFIG["internalIp"],
    }
    stack.preview(expect_no_changes=True)


def test_taken_host_port_fails_up_naming_the_port(failing_stack: Stack) -> None:
    port = int(FAILING_CONFIG["hostPort"])

    def listen() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))  # what the stack binds: every address
        sock.listen()
        return sock

    netns = failing_stack.engine.netns
    holder = listen() if netns is None else run_in_netns(netns, listen, 10)
    try:
        output, seconds = _failed_up(failing_stack, PROMPT_FAILURE_WITHIN)
    finally:
        holder.close()
    assert str(port) in output
    assert "address already in use" in output, output
    harness.record_measurements(
        f"docker_failures_{failing_stack.engine.kind}", {"taken_port_fail_s": round(seconds, 1)}
    )
    # external's sandbox (which binds the port) was created but could not start: the next up
    # replaces it.
    _up_after_fixing(failing_stack)


def test_overlapping_subnet_fails_up_naming_the_overlap(
    failing_stack: Stack, docker_client: docker.DockerClient
) -> None:
    subnet = ipaddress.IPv4Network(FAILING_CONFIG["subnet"])
    # Another network on the engine holds part of the stack's subnet.
    holder = docker_client.networks.create(
        f"{failing_stack.name}-squatter",
        driver="bridge",
        ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=str(next(subnet.subnets(new_prefix=26))))]
        ),
    )
    try:
        output, seconds = _failed_up(failing_stack, PROMPT_FAILURE_WITHIN)
        assert "overlaps" in output, output
        # Nothing half-made: destroy right after the failure leaves nothing labelled.
        failing_stack.destroy()
        assert failing_stack.docker_objects() == NO_DOCKER_OBJECTS
    finally:
        holder.remove()
    harness.record_measurements(
        f"docker_failures_{failing_stack.engine.kind}", {"overlap_fail_s": round(seconds, 1)}
    )
    _up_after_fixing(failing_stack)


def test_never_healthy_image_fails_up_after_the_wait_timeout(failing_stack: Stack) -> None:
    probe = failing_stack.workdir / PROBE
    original = probe.read_text()
    assert PROBE_REQUEST in original, "the probe's request moved; update this test"
    # A probe that asks for a path the services do not serve: 404, never healthy.
    probe.write_text(original.replace(PROBE_REQUEST, PROBE_REQUEST.replace("/healthz", "/nope")))
    try:
        with timed(f"{failing_stack.name}: never healthy"):
            output, seconds = _failed_up(
                failing_stack, HEALTHY_WITHIN_SECONDS + NEVER_HEALTHY_MARGIN
            )
    finally:
        probe.write_text(original)  # the session's other stacks build from this copy too
    # The provider's words, on internal's app container (created first; external waits for
    # it). The app, not the sandbox: only the app has a healthcheck and `wait`.
    assert "container failed to be in healthy state" in output, output
    assert "c2c-internal-app" in output, output
    # It waited the whole timeout: no early give-up while the container was still starting.
    assert seconds >= HEALTHY_WITHIN_SECONDS
    harness.record_measurements(
        f"docker_failures_{failing_stack.engine.kind}", {"never_healthy_fail_s": round(seconds, 1)}
    )
    _up_after_fixing(failing_stack)
