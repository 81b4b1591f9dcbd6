"""Destroy the default stack: nothing of it is left, on Docker or in the state.

Independent of order: the fixture deploys the stack if it is not up, and a module that runs
after this one gets it deployed again.
"""

from __future__ import annotations

from lab.stacks import NO_DOCKER_OBJECTS, Stack


def test_destroy_leaves_no_container_network_or_image(deployed_stack: Stack) -> None:
    deployed_stack.destroy()
    # Checked through the Docker API: the old IPs now route outward and are never probed.
    assert deployed_stack.docker_objects() == NO_DOCKER_OBJECTS
    assert deployed_stack.resource_types() == []
