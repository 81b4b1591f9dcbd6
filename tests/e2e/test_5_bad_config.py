"""A real `pulumi up` of a new stack with an invalid value: one clear line, nothing on Docker.

The stack's config would be accepted by Docker up to the network: its subnet is valid and free,
only internalIp lies outside it. Without the program's validation, `pulumi up` would create the
network (and build images) before Docker refused the container, and leave them behind; with
it, the program stops before it declares a single resource.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import docker
import pytest

from lab.stacks import NO_DOCKER_OBJECTS, Project, Stack

BAD_CONFIG = {
    "subnet": "10.78.0.0/24",
    "gateway": "10.78.0.1",
    "internalIp": "10.79.0.2",  # the invalid value: outside the subnet
    "externalIp": "10.78.0.3",
    "hostPort": "18092",
}
EXPECTED_LINE = "c2c:internalIp: 10.79.0.2 is outside c2c:subnet 10.78.0.0/24"


@pytest.fixture
def bad_stack(project: Project) -> Iterator[Stack]:
    stack = project.stack("badcfg", **BAD_CONFIG)
    yield stack
    # Clean up even if the test failed: whatever Docker holds, then the stack itself.
    stack.tear_down()


def test_invalid_value_fails_up_with_one_line_and_touches_no_docker_object(
    bad_stack: Stack, docker_client: docker.DockerClient
) -> None:
    outcome = bad_stack.try_up()
    output = outcome.output
    print(f"pulumi up {'succeeded' if outcome.succeeded else 'failed'}:\n{output}")

    assert not outcome.succeeded
    # Every mention of a bad key ("c2c:<key>: <why>"), from the key to the end of its line:
    # one message, naming the key and why, and no other key. (The progress view, the program's
    # stderr and the diagnostics summary may each repeat it.)
    problems = re.findall(r"(c2c:[A-Za-z]+: .*?)\s*$", output, re.MULTILINE)
    assert set(problems) == {EXPECTED_LINE}, problems
    # The diagnostics hold it as one line of its own: `error: c2c:<key>: <why>`.
    assert f"error: {EXPECTED_LINE}" in [line.strip() for line in output.splitlines()], output
    assert "Traceback" not in output

    # Checked through the Docker API: nothing of this stack exists.
    assert bad_stack.docker_objects() == NO_DOCKER_OBJECTS
    assert not docker_client.networks.list(names=[f"c2c-{bad_stack.name}-net"])
    # The state holds no resource of the program, at most Pulumi's own stack root.
    types = bad_stack.resource_types()
    print(f"resources in the state after the failed up: {types}")
    assert all(t.startswith("pulumi:") for t in types), types
