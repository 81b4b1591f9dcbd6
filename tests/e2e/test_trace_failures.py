"""The packet trace's failure paths on a live stack: internal's app container stopped, internal
frozen, and a stack that does not exist. Each test leaves the session's default stack serving again.

The trace runs as `make trace` runs it: in the engine's network namespace, DOCKER_HOST naming
the engine, the stack found by its Docker labels.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from lab.stacks import E2E_STACK_PREFIX, REPO_ROOT, Engine, Stack
from packet_trace.cli import EXIT_NOT_DEPLOYED, EXIT_OK, EXIT_PARTIAL
from tests.e2e import harness

pytestmark = pytest.mark.e2e

# internal back: running, healthy and external answering 200 through it.
RECOVERY_S = 90


@pytest.fixture(autouse=True)
def _root_only() -> None:
    harness.require_root("the trace reads the nat table in the engine's namespace")


def run_trace(engine: Engine, stack: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = (sys.executable, "-m", "packet_trace", "--stack", stack, *extra)
    return subprocess.run(
        engine.command(*argv),
        env={**os.environ, **engine.env()},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )


def trace_json(stack: Stack, expected_code: int) -> dict[str, Any]:
    proc = run_trace(stack.engine, stack.name, "--json")
    assert proc.returncode == expected_code, proc.stdout[-3000:] + proc.stderr[-2000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def wait_until_serving(stack: Stack, app: Any) -> None:
    harness.wait_for_health(stack.project.docker, app.name, within=60)
    stack.wait_for_status(200, within=RECOVERY_S)


@pytest.fixture
def internal(deployed_stack: Stack) -> Iterator[Any]:
    """internal's app container (its sandbox is left alone); running and answering again after
    the test, whatever it did."""
    container = deployed_stack.container("internal")
    yield container
    container.reload()
    if container.attrs["State"].get("Paused"):
        container.unpause()
    if container.status != "running":
        container.start()
    wait_until_serving(deployed_stack, container)


def test_stopped_internal_app_is_named_the_request_gets_a_quick_502_then_0_once_back(
    deployed_stack: Stack, internal: Any
) -> None:
    assert trace_json(deployed_stack, EXIT_OK)["problems"] == []  # the baseline is clean
    internal.stop(timeout=10)

    data = trace_json(deployed_stack, EXIT_PARTIAL)
    problems = [(p["hop"], p["code"]) for p in data["problems"]]
    assert problems == [("services", "app-stopped"), ("services", "request-failed")], problems
    stopped, failed = data["problems"]
    assert internal.name in stopped["message"]
    assert deployed_stack.sandbox_name("internal") in stopped["message"]
    assert f"docker start {internal.name}" in stopped["remedy"]
    # The sandbox keeps the address and nothing listens there: the request is sent, external's
    # connect is refused at once and it answers 502 without waiting for a timeout.
    assert data["request"]["status"] == 502, data["request"]
    assert "-> 502" in failed["message"]
    assert data["request"]["total_ms"] < int(deployed_stack.settings()["upstreamReadTimeoutMs"])
    (space,) = [n for n in data["namespaces"] if n["service"] == "internal"]
    assert space["sandbox"] == deployed_stack.sandbox_name("internal")
    assert [(a["name"], a["running"]) for a in space["apps"]] == [(internal.name, False)]
    port = int(deployed_stack.settings()["internalPort"])
    assert [x for x in space["listeners"] if x["port"] == port] == []
    text = run_trace(deployed_stack.engine, deployed_stack.name)
    assert text.returncode == EXIT_PARTIAL, text.stdout + text.stderr
    words = " ".join(text.stdout.split())  # the report wraps its lines
    assert f"[services] internal's app container {internal.name} is not running" in words

    internal.start()
    wait_until_serving(deployed_stack, internal)
    assert trace_json(deployed_stack, EXIT_OK)["problems"] == []


def test_frozen_internal_fails_the_request_hop_with_504(
    deployed_stack: Stack, internal: Any
) -> None:
    # Paused: Docker still says running and the kernel still accepts the connection, but
    # internal never answers, so external gives up after its read timeout.
    internal.pause()
    data = trace_json(deployed_stack, EXIT_PARTIAL)
    assert [(p["hop"], p["code"]) for p in data["problems"]] == [("services", "request-failed")]
    assert "-> 504" in data["problems"][0]["message"], data["problems"]
    assert data["request"]["status"] == 504
    read_timeout_ms = int(deployed_stack.settings()["upstreamReadTimeoutMs"])
    assert data["request"]["total_ms"] >= read_timeout_ms


def test_a_stack_that_does_not_exist_gets_one_line_and_exit_3(
    engine: Engine, docker_client: docker.DockerClient
) -> None:
    name = f"{E2E_STACK_PREFIX}nosuch-{secrets.token_hex(3)}"
    proc = run_trace(engine, name)
    assert proc.returncode == EXIT_NOT_DEPLOYED == 3, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"c2c.stack={name}" in lines[0]
    assert "make up" in lines[0]
