"""Last of the e2e modules (they run in file order): destroy the default stack."""

from __future__ import annotations

import docker

from tests.e2e import harness
from tests.e2e.harness import DeployedStack


def test_destroy_leaves_no_container_network_or_image(
    deployed_stack: DeployedStack, docker_client: docker.DockerClient
) -> None:
    with harness.timed(f"{deployed_stack.name}: pulumi destroy"):
        deployed_stack.stack.destroy()
    # Checked through the Docker API: the old IPs now route outward and are never probed.
    left = harness.stack_resources(docker_client, deployed_stack.name)
    assert left == {"containers": [], "networks": [], "images": []}
    assert deployed_stack.stack.resource_count() == 0
