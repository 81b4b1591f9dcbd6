"""Redeploys without a failed request (issue 9, docs/zero-downtime.md).

A stack of its own is redeployed REDEPLOYS times for a code change of internal and as many for
one of external, each under steady traffic from several clients in the engine's namespace that
never retry anything. Every request must succeed and take under a second. After each redeploy:
the same sandboxes (so the same IPs and published port), only the changed service's app
container replaced; after the last one of each service, a preview has nothing to do. Then the
faults of a dead internal keep their answers (502 fast, 504 at the read timeout), and destroy
leaves nothing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from requests.adapters import HTTPAdapter

from lab.netns import run_in_netns
from lab.stacks import NO_DOCKER_OBJECTS, Project, Stack
from tests.e2e import harness

pytestmark = pytest.mark.slow

# Its own subnet, addresses and ports, distinct from every other stack of the suite.
ZDT_CONFIG = {
    "subnet": "10.79.0.0/24",
    "gateway": "10.79.0.1",
    "internalIp": "10.79.0.20",
    "externalIp": "10.79.0.30",
    "hostPort": "18093",
    "externalPort": "8181",
    "internalPort": "8180",
}
SERVICES = ("internal", "external")
# Redeploys per service and engine: each is ~17 s of CI time (an image build and a handover).
REDEPLOYS = 3
# Clients that keep their connection alive, and clients that open a new one per request.
KEEP_ALIVE_CLIENTS = 3
FRESH_CLIENTS = 2
SLOWEST_ALLOWED = 1.0  # seconds, for any one request (the bound)
CLIENT_TIMEOUT = 10.0
FAST_502 = 1.0
READ_TIMEOUT_MARGIN = 0.5  # as test_3_faults: worker overhead plus a scheduling hiccup
SLOW_KEPT = 3
# What the engine did to the app containers during a redeploy, for the timeline.
APP_EVENTS = {"create", "start", "health_status: healthy", "kill", "die", "destroy"}


@pytest.fixture(scope="module")
def zdt_stack(project: Project) -> Iterator[Stack]:
    stack = project.stack("zdt", **ZDT_CONFIG)
    stack.up()
    yield stack
    stack.tear_down()


# --- the stack's containers, by label --------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """What must stay put across a redeploy, and the app container of each service."""

    sandboxes: dict[str, str]  # service -> container ID
    addresses: dict[str, str]  # service -> IP on the stack's network
    published: list[dict[str, str]]  # external's port bindings
    apps: dict[str, str]  # service -> app container ID


def _layout(stack: Stack) -> Layout:
    network = stack.outputs["networkName"]
    sandboxes = {service: stack.sandbox(service) for service in SERVICES}
    apps = {service: stack.container(service) for service in SERVICES}
    for service in SERVICES:
        mode = apps[service].attrs["HostConfig"]["NetworkMode"]
        assert mode == f"container:{sandboxes[service].id}", (service, mode)
    return Layout(
        sandboxes={service: sandbox.id for service, sandbox in sandboxes.items()},
        addresses={
            service: sandbox.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
            for service, sandbox in sandboxes.items()
        },
        published=sandboxes["external"].attrs["NetworkSettings"]["Ports"][
            f"{ZDT_CONFIG['externalPort']}/tcp"
        ],
        apps={service: app.id for service, app in apps.items()},
    )


# --- traffic without retries -----------------------------------------------------------------


@dataclass
class Traffic:
    requests: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    slowest: float = 0.0
    # (wall-clock start, seconds, outcome) of the slowest requests, to place them on the
    # redeploy's timeline when one is too slow.
    slow: list[tuple[float, float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, started: float, elapsed: float, outcome: str | None) -> None:
        with self.lock:
            self.requests += 1
            self.slowest = max(self.slowest, elapsed)
            if outcome is not None:
                self.failed[outcome] += 1
            entry = (started, elapsed, outcome or "200")
            self.slow = sorted([*self.slow, entry], key=lambda e: e[1])[-SLOW_KEPT:]


def _client(url: str, fresh: bool, stop: threading.Event, traffic: Traffic) -> None:
    """Requests back to back until told to stop. No retry anywhere: the adapter's is off."""
    headers = {"Connection": "close"} if fresh else {}
    with requests.Session() as session:
        session.trust_env = False
        session.mount("http://", HTTPAdapter(max_retries=0))
        while not stop.is_set():
            wall, started = time.time(), time.monotonic()
            try:
                response = session.get(url, timeout=CLIENT_TIMEOUT, headers=headers)
                outcome = None if response.status_code == 200 else str(response.status_code)
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            traffic.record(wall, time.monotonic() - started, outcome)
            time.sleep(0.01)


def _under_traffic(stack: Stack, action: Callable[[], object]) -> Traffic:
    """Run `action` while clients in the engine's namespace send requests to the endpoint."""
    traffic, stop = Traffic(), threading.Event()
    netns = stack.engine.netns
    threads = []
    for index in range(KEEP_ALIVE_CLIENTS + FRESH_CLIENTS):
        loop = partial(_client, stack.endpoint, index >= KEEP_ALIVE_CLIENTS, stop, traffic)
        target = loop if netns is None else partial(run_in_netns, netns, loop, None)
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        threads.append(thread)
    try:
        time.sleep(1.0)  # the clients are in their stride before the redeploy
        action()
        time.sleep(1.0)  # and the new container serves them alone for a while
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)
    assert not any(thread.is_alive() for thread in threads)
    return traffic


# --- code changes -----------------------------------------------------------------------------


def _add_field_to_external_answer(project_dir: Path, name: str, value: str) -> None:
    """As harness.add_field_to_internal_answer, for external's own fields."""
    views = project_dir / "services" / "external" / "external_service" / "views.py"
    source = views.read_text()
    anchor = '"service": "external",'
    assert anchor in source, "the external view's answer moved; update this test"
    views.write_text(source.replace(anchor, f'{anchor} "{name}": "{value}",', 1))


def _change_code(stack: Stack, service: str, marker: str) -> None:
    if service == "internal":
        harness.add_field_to_internal_answer(stack.workdir, marker, marker)
    else:
        _add_field_to_external_answer(stack.workdir, marker, marker)


def _answer_has(body: dict[str, Any], service: str, marker: str) -> bool:
    answer = body["upstream"] if service == "internal" else body
    return answer.get(marker) == marker


# --- the test ---------------------------------------------------------------------------------


def test_redeploys_under_traffic_fail_no_request(zdt_stack: Stack) -> None:
    stack = zdt_stack
    before = _layout(stack)
    assert before.addresses == {
        "internal": ZDT_CONFIG["internalIp"],
        "external": ZDT_CONFIG["externalIp"],
    }
    assert [binding["HostPort"] for binding in before.published] == [ZDT_CONFIG["hostPort"]]
    rounds: list[dict[str, Any]] = []
    for number in range(1, REDEPLOYS + 1):
        for service in SERVICES:
            marker = f"zdt_{service}_{number}"
            _change_code(stack, service, marker)
            timing: dict[str, float] = {}

            def redeploy(timing: dict[str, float] = timing) -> None:
                timing["wall"], started = time.time(), time.monotonic()
                stack.up()
                timing["up"] = time.monotonic() - started

            traffic = _under_traffic(stack, redeploy)
            after = _layout(stack)
            print(
                f"redeploy {number} of {service}: {traffic.requests} requests, failed "
                f"{dict(traffic.failed)}, slowest {traffic.slowest:.3f}s, "
                f"pulumi up {timing['up']:.1f}s"
            )
            if traffic.slowest >= SLOWEST_ALLOWED / 2 or traffic.failed:
                print("  " + _timeline(stack, service, timing["wall"], traffic))
            rounds.append(
                {
                    "service": service,
                    "requests": traffic.requests,
                    "failed": sum(traffic.failed.values()),
                    "slowest_s": round(traffic.slowest, 3),
                    "up_s": round(timing["up"], 1),
                }
            )
            assert traffic.failed == Counter(), (service, number)
            assert traffic.slowest < SLOWEST_ALLOWED, (service, number)
            # Same network identity; only the changed service's app container is new.
            assert after.sandboxes == before.sandboxes
            assert after.addresses == before.addresses
            assert after.published == before.published
            other = next(s for s in SERVICES if s != service)
            assert after.apps[service] != before.apps[service]
            assert after.apps[other] == before.apps[other]
            # The old app container is gone, not just stopped.
            assert len(stack.containers(service, "app", stopped_too=True)) == 1
            status, body, _ = stack.get_json()
            assert status == 200
            assert _answer_has(body, service, marker)
            if number == REDEPLOYS:  # the last redeploy of each service left nothing to do
                stack.preview(expect_no_changes=True)
            before = after

    requests_total = sum(r["requests"] for r in rounds)
    print(
        f"{len(rounds)} redeploys: {requests_total} requests, "
        f"{sum(r['failed'] for r in rounds)} failed, slowest "
        f"{max(r['slowest_s'] for r in rounds):.3f}s; pulumi up "
        + ", ".join(f"{r['service'][:3]} {r['up_s']}s" for r in rounds)
    )
    harness.record_measurements(
        f"zero_downtime_{stack.engine.kind}",
        {
            "redeploys": len(rounds),
            "requests": requests_total,
            "failed": sum(r["failed"] for r in rounds),
            "slowest_s": max(r["slowest_s"] for r in rounds),
            "up_internal_s": [r["up_s"] for r in rounds if r["service"] == "internal"],
            "up_external_s": [r["up_s"] for r in rounds if r["service"] == "external"],
        },
    )


def _timeline(stack: Stack, service: str, origin: float, traffic: Traffic) -> str:
    """The slowest requests and the engine's events for the service's app containers, in
    seconds after `pulumi up` started (the engine keeps its recent events)."""
    events = stack.project.docker.events(
        since=int(origin) - 1,
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "container", "label": [f"c2c.stack={stack.name}"]},
    )
    points = [
        (event["timeNano"] / 1e9, f"{event['Actor']['Attributes']['name'][-12:]} {event['Action']}")
        for event in events
        if event["Action"] in APP_EVENTS
        and event["Actor"]["Attributes"].get("c2c.service") == service
        and event["Actor"]["Attributes"].get("c2c.role") == "app"
    ]
    points += [
        (start, f"request of {elapsed:.3f}s: {outcome}") for start, elapsed, outcome in traffic.slow
    ]
    return "; ".join(f"+{at - origin:.2f}s {what}" for at, what in sorted(points))


def _ask(stack: Stack) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    response = stack.engine.get(stack.endpoint, timeout=CLIENT_TIMEOUT)
    elapsed = time.monotonic() - started
    assert response.headers.get("Content-Type", "").startswith("application/json")
    body: dict[str, Any] = response.json()
    return response.status_code, body, elapsed


def test_a_stopped_internal_app_is_a_fast_502_and_a_frozen_one_a_504(
    zdt_stack: Stack, docker_client: docker.DockerClient
) -> None:
    stack = zdt_stack
    app = stack.container("internal")
    app.stop()
    try:
        # The sandbox still holds the address: nothing listens there, so a connect is refused.
        for _ in range(2):
            status, body, elapsed = _ask(stack)
            print(f"internal's app stopped: {status} {body} after {elapsed:.3f}s")
            assert status == 502
            assert body == {
                "error": "upstream_unreachable",
                "message": "internal refused or is unreachable",
                "status": 502,
            }
            assert elapsed < FAST_502
    finally:
        app.start()
    harness.wait_for_health(docker_client, app.name, within=60)
    stack.wait_for_status(200, within=30)

    read_timeout = int(stack.settings()["upstreamReadTimeoutMs"]) / 1000
    app.pause()
    try:
        status, body, elapsed = _ask(stack)
    finally:
        app.unpause()
    print(f"internal's app frozen: {status} after {elapsed:.3f}s (read timeout {read_timeout}s)")
    assert status == 504
    assert body == {
        "error": "upstream_timeout",
        "message": f"internal did not answer within {read_timeout} s",
        "status": 504,
    }
    assert read_timeout <= elapsed < read_timeout + READ_TIMEOUT_MARGIN
    stack.wait_for_status(200, within=30)


def test_destroy_leaves_nothing_sandboxes_included(zdt_stack: Stack) -> None:
    stack = zdt_stack
    assert len(stack.docker_objects()["containers"]) == 4  # two sandboxes, two apps
    stack.destroy()
    assert stack.docker_objects() == NO_DOCKER_OBJECTS
    assert stack.resource_types() == []
