"""The front door, as a user types it: `make up`, `make trace`, `make diagram`, `make down`.

The commands run in a throwaway copy of the working tree (uncommitted changes and .git
included, so `git status` can be compared; .venv is the real one, linked), with a throwaway
Pulumi backend, inside the suite's engine's network namespace with DOCKER_HOST naming that
engine: the machine's own engine and the user's stacks are never touched. The stack is the
Makefile's default, `dev`, so the tracked Pulumi.dev.yaml, its salt and the dev passphrase
(scripts/pulumi-env.sh) are what `make up` uses. The trace and the diagram find the stack by
its Docker labels, the only way they find a stack.

The tests share one deployment in file order; the last one takes it down.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import docker
import pytest
import yaml

from lab import stacks
from lab.stacks import (
    REPO_ROOT,
    ROLE_LABEL,
    SERVICE_LABEL,
    STACK_LABEL,
    Engine,
    Stack,
    remove_labelled,
)
from tests.e2e import harness

pytestmark = pytest.mark.e2e

# The Makefile's default STACK: the stack whose file (Pulumi.dev.yaml) is tracked.
DEV_STACK = "dev"
# Everything of the dev stack, whatever its project label says (users may find any of it).
DEV_LABELLED = {"label": f"{STACK_LABEL}={DEV_STACK}"}
DIAGRAM_FILES = ("docs/topology.svg", "docs/topology.png")
TRACE_PARTS = ("1. Client", "2. NAT table", "3. Bridge", "4. External", "5. Summary")
SERVICES = ("external", "internal")
SVG_ROOT = "{http://www.w3.org/2000/svg}svg"

# Generous but finite: a cold `make up` builds both images on a busy 2-core machine.
UP_TIMEOUT_S = 1200
DOWN_TIMEOUT_S = 600
TRACE_TIMEOUT_S = 240

# What the user's shell may hold that would make these runs something other than the defaults
# under test (another passphrase or stack, a parent make's flags).
SCRUBBED_ENV = (
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_CONFIG_PASSPHRASE_FILE",
    "PULUMI_BACKEND_URL",
    "PULUMI_STACK",
    "STACK",
    "C2C_STACK",
    "C2C_BASE_IMAGE",
    "DOCKER_CONTEXT",
    "MAKEFLAGS",
    "MAKELEVEL",
    "MFLAGS",
)


@dataclass
class Ran:
    """One front-door command's outcome."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def explain(self) -> str:
        return (
            f"`{' '.join(self.argv)}` exited {self.returncode} after {self.seconds:.0f}s\n"
            f"--- stdout (tail)\n{self.stdout[-4000:]}\n--- stderr (tail)\n{self.stderr[-4000:]}"
        )


class Checkout:
    """A throwaway copy of the working tree whose make targets run on the suite's engine."""

    def __init__(self, workdir: Path, state: Path, engine: Engine) -> None:
        self.workdir = workdir
        self.engine = engine
        shutil.copytree(
            REPO_ROOT,
            workdir,
            ignore=shutil.ignore_patterns(
                ".venv", ".pulumi-state", ".state", "__pycache__", ".*_cache", ".hypothesis"
            ),
            symlinks=True,
        )
        (workdir / ".venv").symlink_to(REPO_ROOT / ".venv")
        state.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        self.env = {**env, **engine.env(), "PULUMI_BACKEND_URL": f"file://{state}"}

    def make(self, target: str, timeout: float) -> Ran:
        """`make <target>` in the copy, in the engine's namespace; its process group is killed
        if it outlives `timeout`."""
        argv = self.engine.command("make", target)
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(
                f"`make {target}` did not finish within {timeout}s\n{stdout[-3000:]}\n"
                f"{stderr[-3000:]}"
            ) from None
        finally:
            stacks.TIMINGS.append((f"front door: make {target}", time.monotonic() - start))
        return Ran(argv, proc.returncode, stdout, stderr, time.monotonic() - start)

    def git_status(self) -> list[str]:
        proc = subprocess.run(
            ["git", "status", "--porcelain=v1", "--untracked-files=all"],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return proc.stdout.splitlines()

    def stack_file(self) -> bytes:
        return (self.workdir / f"Pulumi.{DEV_STACK}.yaml").read_bytes()

    def dev_settings(self) -> dict[str, str]:
        """The dev stack's effective `c2c:*` values: Pulumi.yaml's defaults, then its own file."""
        declared = yaml.safe_load((self.workdir / "Pulumi.yaml").read_text())["config"]
        values = {key: str(spec["default"]) for key, spec in declared.items() if "default" in spec}
        own = yaml.safe_load(self.stack_file()).get("config") or {}
        return {**values, **{key.removeprefix("c2c:"): str(v) for key, v in own.items()}}


def labelled(client: docker.DockerClient) -> dict[str, list[str]]:
    """The names of what DEV_LABELLED selects on the engine."""
    filters = DEV_LABELLED
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=filters)],
        "networks": [n.name for n in client.networks.list(filters=filters)],
        "images": [i.short_id for i in client.images.list(filters=filters)],
        "volumes": [v.name for v in client.volumes.list(filters=filters)],
    }


def last_json_document(text: str) -> dict[str, Any]:
    """The pretty-printed JSON object that ends `text` (`python3 -m json.tool` output)."""
    lines = text.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line == "{"]
    assert starts, f"no JSON object at the end of:\n{text[-3000:]}"
    body: dict[str, Any] = json.loads("\n".join(lines[starts[-1] :]))
    return body


@dataclass
class FrontDoor:
    checkout: Checkout
    docker: docker.DockerClient
    status_before: list[str]
    stack_file_before: bytes
    up: Ran
    status_after_up: list[str]


@pytest.fixture(scope="module")
def front_door(
    engine: Engine,
    docker_client: docker.DockerClient,
    default_stack: Stack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FrontDoor]:
    """`make up` run once in a fresh copy; destroyed and removed afterwards, even on failure."""
    harness.require_root("the commands run in the engine's network namespace")
    # dev has the default subnet and host port: the session's default stack must make room
    # (it is deployed again for the next module that needs it).
    if any(default_stack.docker_objects().values()):
        default_stack.destroy()
    remove_labelled(docker_client, DEV_LABELLED)  # an interrupted earlier run's
    base = tmp_path_factory.mktemp(f"c2c-front-door-{engine.kind}")
    checkout = Checkout(base / "repo", base / "pulumi-state", engine)
    try:
        # `make up` would otherwise rebuild the venv it shares with the real repository.
        stale = subprocess.run(
            ["make", "-q", "venv"], cwd=checkout.workdir, env=checkout.env, check=False
        )
        assert stale.returncode == 0, ".venv is older than the requirements: run `make venv`"
        status_before = checkout.git_status()
        stack_file_before = checkout.stack_file()
        up = checkout.make("up", UP_TIMEOUT_S)
        yield FrontDoor(
            checkout, docker_client, status_before, stack_file_before, up, checkout.git_status()
        )
    finally:
        if any(labelled(docker_client).values()):
            try:
                checkout.make("down", DOWN_TIMEOUT_S)
            finally:
                remove_labelled(docker_client, DEV_LABELLED)
        shutil.rmtree(base, ignore_errors=True)


def test_make_up_prints_externals_answer_with_internals_inside(front_door: FrontDoor) -> None:
    up = front_door.up
    assert up.returncode == 0, up.explain()
    settings = front_door.checkout.dev_settings()
    answer = last_json_document(up.stdout)
    assert answer["service"] == "external", answer
    assert answer["container_ip"] == settings["externalIp"]
    inner = answer["upstream"]
    assert inner["service"] == "internal", answer
    assert inner["container_ip"] == settings["internalIp"]
    # On the bridge there is no NAT: internal saw external's own address.
    assert inner["client_ip"] == settings["externalIp"]
    assert answer["upstream_ms"] > 0
    running = front_door.docker.containers.list(filters=DEV_LABELLED)
    # Each service runs as its sandbox (fixed name) and its app (the name ends in a digest).
    by_role = {(c.labels[SERVICE_LABEL], c.labels[ROLE_LABEL]): c.name for c in running}
    assert len(by_role) == len(running) == 2 * len(SERVICES), [c.name for c in running]
    for service in SERVICES:
        assert by_role[(service, "sandbox")] == f"c2c-{DEV_STACK}-{service}-sandbox"
        assert re.fullmatch(f"c2c-{DEV_STACK}-{service}-[0-9a-f]{{12}}", by_role[(service, "app")])


def test_make_up_leaves_the_working_tree_as_it_found_it(front_door: FrontDoor) -> None:
    assert front_door.up.returncode == 0, front_door.up.explain()
    assert front_door.status_after_up == front_door.status_before
    # Also when Pulumi.dev.yaml already had uncommitted changes: not a byte rewritten.
    assert front_door.checkout.stack_file() == front_door.stack_file_before


def test_make_trace_reports_every_part(front_door: FrontDoor) -> None:
    trace = front_door.checkout.make("trace", TRACE_TIMEOUT_S)
    assert trace.returncode == 0, trace.explain()
    report = trace.stdout
    assert f"Packet trace of stack '{DEV_STACK}' (facts from docker-labels)" in report
    positions = [report.find(part) for part in TRACE_PARTS]
    assert -1 not in positions, report
    assert positions == sorted(positions), "the parts are out of order"
    assert "Problems" not in report
    settings = front_door.checkout.dev_settings()
    summary = report.split("5. Summary", 1)[1]
    for fact in (settings["externalIp"], settings["internalIp"], settings["hostPort"]):
        assert fact in summary, summary
    # Each service's namespace: its sandbox and the app whose workers listen in it.
    for service in SERVICES:
        assert f"{service}: sandbox c2c-{DEV_STACK}-{service}-sandbox" in report, report
        assert re.search(f"of app c2c-{DEV_STACK}-{service}-[0-9a-f]{{12}}", report), report
    assert front_door.checkout.git_status() == front_door.status_before


def test_make_diagram_writes_a_valid_svg(front_door: FrontDoor) -> None:
    checkout = front_door.checkout
    started = time.time()
    diagram = checkout.make("diagram", TRACE_TIMEOUT_S)
    assert diagram.returncode == 0, diagram.explain()
    for name in DIAGRAM_FILES:
        assert f"wrote {name}" in diagram.stdout.splitlines(), diagram.explain()
        assert (checkout.workdir / name).stat().st_mtime >= started - 1, f"{name} not rewritten"
    assert (checkout.workdir / DIAGRAM_FILES[1]).read_bytes()[:4] == b"\x89PNG"
    # Graphviz's own output in our throwaway copy: nothing untrusted to defuse.
    root = ElementTree.parse(checkout.workdir / DIAGRAM_FILES[0]).getroot()  # noqa: S314
    assert root.tag == SVG_ROOT
    text = " ".join(root.itertext())
    for service in SERVICES:
        assert f"c2c-{DEV_STACK}-{service}-sandbox" in text
        assert re.search(f"app c2c-{DEV_STACK}-{service}-[0-9a-f]{{12}}", text), text
    # The diagram writes its two files and nothing else of the tree.
    changed = set(checkout.git_status()) - set(front_door.status_before)
    assert {line[3:] for line in changed} <= set(DIAGRAM_FILES), changed


def test_make_down_leaves_nothing_labelled(front_door: FrontDoor) -> None:
    checkout = front_door.checkout
    before = set(checkout.git_status())
    down = checkout.make("down", DOWN_TIMEOUT_S)
    assert down.returncode == 0, down.explain()
    assert labelled(front_door.docker) == {
        "containers": [],
        "networks": [],
        "images": [],
        "volumes": [],
    }
    assert set(checkout.git_status()) == before
    assert checkout.stack_file() == front_door.stack_file_before
