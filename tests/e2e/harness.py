"""Helpers of the e2e tests beyond driving stacks (lab/stacks.py does that).

Under CI=true a missing prerequisite fails a test instead of skipping it.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import pytest

from lab import Host, run_in_netns
from lab.stacks import REPO_ROOT, Project, Stack, timed

IN_CI = os.environ.get("CI") == "true"
MEASUREMENTS = REPO_ROOT / ".state" / "measurements.json"

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


def require_root(why: str) -> None:
    """Skip a test that needs root outside CI; under CI=true (which runs as root) fail instead."""
    if os.geteuid() == 0:
        return
    if IN_CI:
        pytest.fail(f"CI=true but not root: {why}", pytrace=False)
    pytest.skip(f"needs root: {why}")


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


def add_field_to_internal_answer(project_dir: Path, name: str, value: str) -> None:
    """Edit the session copy's internal service so its answer carries one more field.

    Each caller adds its own field, so the edits of different tests add up in any order.
    """
    views = project_dir / "services" / "internal" / "internal_service" / "views.py"
    source = views.read_text()
    anchor = '"service": "internal"'
    assert anchor in source, "the internal view's answer moved; update this test"
    views.write_text(source.replace(anchor, f'{anchor}, "{name}": "{value}"', 1))


# --- the suite's engines and labs (fixtures in conftest.py) --------------------------------

# Which set of lab names and underlays this session uses: 0 (the default) or, for two suites
# on one machine at once (e.g. a developer's run beside CI's), another digit in C2C_E2E_LAB_ID.
LAB_ID = int(os.environ.get("C2C_E2E_LAB_ID", "0"))
if not 0 <= LAB_ID <= 9:
    raise ValueError(f"C2C_E2E_LAB_ID={LAB_ID}: expected a digit 0-9")


def lab_name(base: str) -> str:
    """A lab name of this session's set (at most 6 characters with the id)."""
    return f"{base}{LAB_ID}" if LAB_ID else base


def lab_underlay(third_octet: int) -> ipaddress.IPv4Network:
    """An underlay of this session's set: 198.18.<third_octet + 20 * id>.0/24."""
    return ipaddress.IPv4Network(f"198.18.{third_octet + 20 * LAB_ID}.0/24")


# Engine kind -> (its lab's name, underlay), distinct from `make lab`'s and every other test's.
ENGINE_LABS = {
    "docker-20.10": (lab_name("e2ed"), lab_underlay(1)),
    "docker-current": (lab_name("e2ec"), lab_underlay(2)),
}
ENGINE_KINDS = tuple(ENGINE_LABS)

# Engine kind -> the two-host lab's name and underlay; hosts in address order (.1, .2).
MULTIHOST_LABS = {
    "docker-20.10": (lab_name("mhd"), lab_underlay(5)),
    "docker-current": (lab_name("mhc"), lab_underlay(6)),
}
EXTERNAL_HOST, INTERNAL_HOST = "ma", "mb"


# --- plain HTTP to a lab host's published port (no stack involved) ----------------------------


def get_text(url: str) -> tuple[int, str]:
    """GET url with the standard library; (status, body)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode(errors="replace")


def get_text_when_ready(url: str, within: float = 20) -> tuple[int, str]:
    """get_text, retried until url answers (a container just started); bounded in time."""
    deadline = time.monotonic() + within
    while True:
        try:
            return get_text(url)
        except (urllib.error.URLError, ConnectionError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer in {within}s: {exc}") from exc
            time.sleep(0.3)


CONNECT_TIMEOUT = 3.0


def tcp_connect(address: str, port: int, netns: str | None = None) -> str:
    """Open (and close) one TCP connection: "connected", "refused", "timeout", or the errno's
    name. In `netns` if given, else from this process's own namespace."""

    def attempt() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect((address, port))
            except ConnectionRefusedError:
                return "refused"
            except TimeoutError:
                return "timeout"
            except OSError as exc:
                return errno.errorcode.get(exc.errno or 0, str(exc))
            return "connected"

    return attempt() if netns is None else run_in_netns(netns, attempt, CONNECT_TIMEOUT + 10)


@contextmanager
def two_host_stack(
    project: Project, hosts: Mapping[str, Host], suffix: str, **config: str
) -> Iterator[Stack]:
    """A stack on a two-host lab: internal on INTERNAL_HOST, external on EXTERNAL_HOST, c2c:hosts
    from the lab. Not yet deployed; destroyed (a no-op if a test did) and removed afterwards."""
    stack = project.stack(suffix, internalHost=INTERNAL_HOST, externalHost=EXTERNAL_HOST, **config)
    stack.set_hosts(hosts)
    try:
        yield stack
    finally:
        stack.destroy()
        stack.remove()


TRACE_TIMEOUT_S = 120


def trace_stack(stack: Stack, *extra: str) -> subprocess.CompletedProcess[str]:
    """`python -m packet_trace` on a lab stack, from the host namespace, as `make trace` runs it:
    the stack file names the engines (DOCKER_HOST is left out)."""
    stack_file = stack.workdir / f"Pulumi.{stack.name}.yaml"
    argv = [sys.executable, "-m", "packet_trace", "--stack", stack.name]
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    with timed(f"{stack.name}: trace across hosts {' '.join(extra)}".rstrip()):
        return subprocess.run(
            [*argv, "--stack-file", str(stack_file), *extra],
            env=env,
            capture_output=True,
            text=True,
            timeout=TRACE_TIMEOUT_S,
            cwd=REPO_ROOT,
            check=False,
        )
