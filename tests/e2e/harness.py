"""Drive real stacks with the Pulumi CLI and inspect them through the Docker API.

Each test session works in a throwaway copy of the project (its own file backend and stack
files), so e2e runs never touch the user's `dev` stack, its state or the working tree, and
a test may edit the copy's service code to prove a redeploy.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_LABEL = "c2c.project"
STACK_LABEL = "c2c.stack"
E2E_STACK_PREFIX = "e2e-"
IN_CI = os.environ.get("CI") == "true"
# One id per test session, in every stack name of the run. Shared state lives here, not in
# conftest.py, which pytest imports under another module name than the tests do.
RUN_ID = secrets.token_hex(3)

# (label, seconds) of every timed step, printed at the end of the session by conftest.
TIMINGS: list[tuple[str, float]] = []


@contextmanager
def timed(label: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        TIMINGS.append((label, time.monotonic() - start))


class PulumiError(AssertionError):
    """A pulumi command failed; the message carries its output."""


@dataclass
class Stack:
    name: str
    workdir: Path
    env: dict[str, str]
    config: dict[str, str] = field(default_factory=dict)

    def pulumi(
        self, *args: str, check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["pulumi", *args, "--stack", self.name, "--non-interactive"]
        with timed(f"{self.name}: pulumi {' '.join(args[:2])}"):
            proc = subprocess.run(
                cmd,
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        if check and proc.returncode != 0:
            raise PulumiError(
                f"{' '.join(cmd)} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    def init(self) -> None:
        self.pulumi("stack", "init")
        for key, value in self.config.items():
            self.pulumi("config", "set", f"c2c:{key}", value)

    def up(self) -> subprocess.CompletedProcess[str]:
        return self.pulumi("up", "--yes", "--skip-preview")

    def preview(self) -> dict[str, Any]:
        """The plan as JSON: {"steps": [{"op": ..., "urn": ...}], "changeSummary": {...}}."""
        proc = self.pulumi("preview", "--json")
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def outputs(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.pulumi("stack", "output", "--json").stdout)
        return result

    def resource_count(self) -> int:
        exported = json.loads(self.pulumi("stack", "export").stdout)
        return len(exported.get("deployment", {}).get("resources") or [])

    def destroy(self) -> None:
        self.pulumi("destroy", "--yes", "--skip-preview")

    def remove(self) -> None:
        self.pulumi("stack", "rm", "--yes", "--force", check=False)


class Project:
    """A copy of the project with its own Pulumi state, for one test session."""

    def __init__(self, workdir: Path, base_image: str) -> None:
        self.workdir = workdir
        self.base_image = base_image
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
        self.env = {
            **os.environ,
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_CONFIG_PASSPHRASE": "c2c-e2e-no-secrets",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
        }

    def stack(self, name: str, **config: str) -> Stack:
        stack = Stack(name, self.workdir, self.env, {"baseImage": self.base_image, **config})
        stack.init()
        return stack


# --- Docker API -------------------------------------------------------------------------


def docker_client() -> docker.DockerClient:
    return docker.from_env(timeout=60)


def stack_filter(stack: str) -> dict[str, list[str]]:
    return {"label": [f"{PROJECT_LABEL}=c2c", f"{STACK_LABEL}={stack}"]}


def stack_resources(client: docker.DockerClient, stack: str) -> dict[str, list[str]]:
    """Names of the containers, networks and image tags Docker holds for a stack."""
    filters = stack_filter(stack)
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=filters)],
        "networks": [n.name for n in client.networks.list(filters=filters)],
        "images": [tag for image in client.images.list(filters=filters) for tag in image.tags]
        + [image.id for image in client.images.list(filters=filters) if not image.tags],
    }


def remove_e2e_leftovers(client: docker.DockerClient) -> list[str]:
    """Remove what an earlier, interrupted e2e run left: only e2e stacks' resources."""
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


def get_json(url: str, timeout: float = 10) -> tuple[int, dict[str, Any], float]:
    """GET url; (status, JSON body, seconds). Only the stack's own endpoint is ever asked."""
    start = time.monotonic()
    response = requests.get(url, timeout=timeout)
    elapsed = time.monotonic() - start
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    return response.status_code, body, elapsed


def wait_for_status(url: str, status: int, within: float) -> float:
    """Poll url until it answers `status`; seconds it took. Bounded in time."""
    start = time.monotonic()
    last: object = None
    while time.monotonic() - start < within:
        try:
            last = requests.get(url, timeout=2).status_code
        except requests.RequestException as exc:
            last = exc
        if last == status:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {within}s (last: {last})")


# --- Added for the fault, load and bad-config tests (issue 5) ----------------------------

MEASUREMENTS = REPO_ROOT / ".state" / "measurements.json"


def stack_config(stack: Stack) -> dict[str, str]:
    """The stack's effective `c2c:*` values: Pulumi.yaml's defaults, then the stack's own."""
    declared = yaml.safe_load((stack.workdir / "Pulumi.yaml").read_text())["config"]
    values = {key: str(spec["default"]) for key, spec in declared.items() if "default" in spec}
    return {**values, **stack.config}


def wait_for_health(
    client: docker.DockerClient, name: str, status: str = "healthy", within: float = 60
) -> float:
    """Poll a container's Docker health status until it is `status`; seconds it took."""
    start = time.monotonic()
    last: object = None
    while time.monotonic() - start < within:
        try:
            state = client.containers.get(name).attrs["State"]
            last = (state.get("Status"), (state.get("Health") or {}).get("Status"))
        except docker.errors.NotFound:
            last = "no such container"
        if isinstance(last, tuple) and last == ("running", status):
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"{name} did not become {status} within {within}s (last: {last})")


def record_measurements(section: str, values: dict[str, Any]) -> None:
    """Merge measured numbers into .state/measurements.json under `section` (for the README)."""
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        data: dict[str, Any] = json.loads(MEASUREMENTS.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {}
    merged = {**data.get(section, {}), **values}
    merged["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data[section] = merged
    partial = MEASUREMENTS.with_suffix(".json.tmp")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    partial.replace(MEASUREMENTS)  # atomic: a reader never sees half a file
    print(f"measurements[{section}] += {json.dumps(values, sort_keys=True)}")


def require_root(why: str) -> None:
    """Skip a test that needs root outside CI; under CI=true (which runs as root) fail instead."""
    if os.geteuid() == 0:
        return
    if IN_CI:
        pytest.fail(f"CI=true but not root: {why}", pytrace=False)
    pytest.skip(f"needs root: {why}")


# --- the session's stacks ---------------------------------------------------------------


@dataclass
class DeployedStack:
    stack: Stack
    outputs: dict[str, Any]

    @property
    def name(self) -> str:
        return self.stack.name


# The second stack of the session: non-default subnet, IPs and ports.
ALT_CONFIG = {
    "subnet": "10.77.0.0/24",
    "gateway": "10.77.0.1",
    "internalIp": "10.77.0.20",
    "externalIp": "10.77.0.30",
    "hostPort": "18091",
    "externalPort": "9081",
    "internalPort": "9080",
}
