"""Faults against the deployed default stack: what a client of the endpoint sees, and recovery.

Every request goes to the stack's own endpoint (http://localhost:<hostPort>); the containers
are only acted on through the Docker API (and, for kill -9, a signal to the container's init
process from the host). The numbers are printed and merged into .state/measurements.json.

Each service is a sandbox (its address, its published port) and an app container in the
sandbox's network namespace (docs/zero-downtime.md): every fault here acts on the app, the
server; the sandbox keeps the address throughout.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from c2c_infra.component import DESTROY_GRACE_SECONDS
from lab import Host, Lab
from lab.stacks import Engine, Stack, timed
from tests.e2e import harness

pytestmark = pytest.mark.slow

# The endpoint's answers are local; a request that is not answered within this is a failure.
CLIENT_TIMEOUT = 10.0
# The bound for the answer while internal is down.
FAST_502 = 1.0
# Read timeout + this = the longest an answer may take while internal is frozen: the worker's
# own overhead plus one scheduling hiccup on a busy 2-core CI machine.
READ_TIMEOUT_MARGIN = 0.5
# How long the kill -9 test watches for internal to come back (restart delay + gunicorn boot).
RECOVERY_LIMIT = 30.0
# Recovery bounds are derived from a baseline measured in the same run, right before and right
# after each fault (RestartBaseline, the slower of the two): how long a `docker stop` of internal
# takes, and a `docker start` until the endpoint answers 200. A fault's recovery is that start
# (or stop + start) plus a little, and a busy 2-core machine slows baseline and fault alike; a
# bound of 2.5x the baseline (+ an allowance) still fails a 3x regression of the recovery.
RECOVERY_OVER_BASELINE = 2.5
# Docker noticing the death of PID 1 and its first restart delay (100 ms), under load.
KILL9_RESTART_ALLOWANCE = 0.5
# After an engine restart both containers boot at once, on the same 2 cores: its baseline
# starts both at once.
ENGINE_RESTART_ALLOWANCE = 1.0
BOTH_SERVICES = ("internal", "external")


@dataclass
class Answer:
    sent_at: float  # seconds after the fault was injected
    seconds: float
    status: int | str  # HTTP status, or the name of the client-side exception
    body: dict[str, Any] | None = None


def _ask(stack: Stack, session: requests.Session, origin: float) -> Answer:
    start = time.monotonic()
    try:
        response = stack.engine.get(stack.endpoint, timeout=CLIENT_TIMEOUT, session=session)
    except requests.RequestException as exc:
        return Answer(start - origin, time.monotonic() - start, type(exc).__name__)
    seconds = time.monotonic() - start
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.text
    return Answer(start - origin, seconds, response.status_code, response.json())


@dataclass(frozen=True)
class RestartBaseline:
    """A plain stop and start of internal, measured in this run on this machine."""

    stop_s: float  # `docker stop` (gunicorn's graceful shutdown), as Pulumi deletes it
    start_s: float  # `docker start` until the endpoint answers 200 again

    def slower(self, other: RestartBaseline) -> RestartBaseline:
        return RestartBaseline(max(self.stop_s, other.stop_s), max(self.start_s, other.start_s))

    def bound(self, seconds: float, allowance: float) -> float:
        return RECOVERY_OVER_BASELINE * seconds + allowance


def measure_restart(
    stack: Stack, docker_client: docker.DockerClient, services: tuple[str, ...] = ("internal",)
) -> RestartBaseline:
    """Stop the healthy services' apps, then start them all at once; how long each half took."""
    for service in services:
        harness.wait_for_health(docker_client, stack.container(service).name, within=60)
    stack.wait_for_status(200, within=30)
    containers = [stack.container(service) for service in services]
    start = time.monotonic()
    for container in containers:
        container.stop(timeout=DESTROY_GRACE_SECONDS)
    stopped = time.monotonic()
    for container in containers:
        container.start()
    answered = stopped + stack.wait_for_status(200, within=60)
    baseline = RestartBaseline(stop_s=stopped - start, start_s=answered - stopped)
    print(
        f"baseline ({', '.join(services)}): docker stop {baseline.stop_s:.2f}s, "
        f"start to 200 {baseline.start_s:.2f}s"
    )
    for container in containers:
        harness.wait_for_health(docker_client, container.name, within=60)
    return baseline


def _baseline_measurements(
    name: str, before: RestartBaseline, after: RestartBaseline
) -> dict[str, Any]:
    return {
        f"{name}_baseline_stop_s": [round(before.stop_s, 2), round(after.stop_s, 2)],
        f"{name}_baseline_start_s": [round(before.start_s, 2), round(after.start_s, 2)],
    }


@pytest.fixture(autouse=True)
def _stack_is_healthy(deployed_stack: Stack, docker_client: docker.DockerClient) -> None:
    """Each fault starts from a healthy pair, whatever the test before it left."""
    for service in ("internal", "external"):
        harness.wait_for_health(docker_client, deployed_stack.container(service).name, within=60)
    deployed_stack.wait_for_status(200, within=30)


def _wait_gone(pid: int, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"pid {pid} still exists {within}s after SIGKILL"
        time.sleep(0.01)


@dataclass
class Restart:
    """When (seconds after the kill) Docker started internal again and it listened again."""

    pid: int = 0
    started: float | None = None
    listening: float | None = None


def _listening(pid: int, port: int) -> bool:
    # The process's network namespace as the host sees it; LISTEN is state 0A. No packet sent.
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(
        f[1].endswith(f":{port:04X}") and f[3] == "0A" for f in (line.split() for line in lines)
    )


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}s"


def _watch_restart(
    engine: Engine, name: str, old_pid: int, port: int, origin: float, seen: Restart
) -> None:
    client = engine.docker_client()  # its own connection: this runs beside the prober
    try:
        while time.monotonic() - origin < RECOVERY_LIMIT:
            if not seen.pid:
                pid = client.api.inspect_container(name)["State"]["Pid"]
                if pid and pid != old_pid:
                    seen.pid, seen.started = pid, time.monotonic() - origin
            if seen.pid and _listening(seen.pid, port):
                seen.listening = time.monotonic() - origin
                return
            time.sleep(0.01)
    finally:
        client.close()


def test_kill_9_of_internal_gives_fast_502_then_restarts_by_itself(
    deployed_stack: Stack,
    docker_client: docker.DockerClient,
    config: dict[str, str],
) -> None:
    harness.require_root("kill -9 of a container's process (uid 10001) from the host")
    baseline_before = measure_restart(deployed_stack, docker_client)
    internal = deployed_stack.container("internal")
    before = internal.attrs
    pid = before["State"]["Pid"]
    assert pid > 0
    restart = Restart()
    # PID 1 of the app container is gunicorn's master; SIGKILL from the host, as `kill -9`
    # would. Its sandbox keeps the address: nothing listens there until the restart.
    # `docker kill` is no substitute: Docker counts it as a manual stop and does not restart.
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    watcher = threading.Thread(
        target=_watch_restart,
        args=(
            deployed_stack.engine,
            internal.name,
            pid,
            int(config["internalPort"]),
            killed_at,
            restart,
        ),
        daemon=True,
    )
    watcher.start()
    _wait_gone(pid)

    answers: list[Answer] = []
    session = deployed_stack.engine.session()
    while time.monotonic() - killed_at < RECOVERY_LIMIT:
        answer = _ask(deployed_stack, session, killed_at)
        answers.append(answer)
        if answer.status == 200:
            break
    watcher.join(timeout=RECOVERY_LIMIT)
    recovered = answers[-1].sent_at + answers[-1].seconds
    down = [a for a in answers if a.status != 200]
    print(
        f"kill -9: {len(answers)} requests, {len(down)} not 200, 200 again at +{recovered:.2f}s; "
        f"Docker restarted internal at +{_seconds(restart.started)}, "
        f"listening at +{_seconds(restart.listening)}"
    )
    for answer in answers:
        error = (answer.body or {}).get("error")
        print(f"  +{answer.sent_at:6.3f}s  {answer.status}  {answer.seconds:.3f}s  {error}")

    assert answers[-1].status == 200, f"no 200 within {RECOVERY_LIMIT}s of the kill"
    for answer in down:
        assert answer.status == 502, answer
        assert answer.body == {
            "error": "upstream_unreachable",
            "message": "internal refused or is unreachable",
            "status": 502,
        }
        assert answer.seconds < FAST_502, f"502 took {answer.seconds:.3f}s"
    assert restart.listening is not None, "internal's server never listened again"
    if not down:
        # No client saw the outage: only possible if it was shorter than external's retries
        # (connect timeout x attempts + backoff) bridge, all well under a second.
        assert restart.listening < FAST_502, restart

    # The same app container came back through its restart policy, in the same sandbox's
    # namespace (the address below): no `pulumi up` ran.
    internal.reload()
    assert internal.id == before["Id"]
    assert internal.attrs["State"]["Running"] is True
    assert internal.attrs["RestartCount"] == before["RestartCount"] + 1
    assert internal.attrs["State"]["Pid"] == restart.pid != pid
    assert answers[-1].body is not None
    assert answers[-1].body["upstream"]["container_ip"] == config["internalIp"]
    # Docker runs the first healthcheck after a restart one interval (5 s) later.
    harness.wait_for_health(docker_client, internal.name, within=60)
    healthy_after = time.monotonic() - killed_at
    baseline_after = measure_restart(deployed_stack, docker_client)
    baseline = baseline_before.slower(baseline_after)
    bound = baseline.bound(baseline.start_s, KILL9_RESTART_ALLOWANCE)
    harness.record_measurements(
        f"faults_{deployed_stack.engine.kind}",
        {
            **_baseline_measurements("kill9", baseline_before, baseline_after),
            "kill9_bound_s": round(bound, 2),
            "kill9_502_max_s": round(max((a.seconds for a in down), default=0.0), 3),
            "kill9_502_count": len(down),
            "kill9_restarted_s": round(restart.started or -1, 2),
            "kill9_listening_s": round(restart.listening, 2),
            "kill9_recovery_s": round(recovered, 2),
            "kill9_healthy_s": round(healthy_after, 2),
        },
    )
    assert recovered <= bound, f"200 again after {recovered:.2f}s; bound {bound:.2f}s"


def test_frozen_internal_gives_504_within_the_read_timeout(
    deployed_stack: Stack, config: dict[str, str]
) -> None:
    read_timeout = int(config["upstreamReadTimeoutMs"]) / 1000
    # The app is frozen; its listening socket stays, so connects succeed and answers never come.
    internal = deployed_stack.container("internal")
    internal.pause()
    try:
        paused_at = time.monotonic()
        answer = _ask(deployed_stack, deployed_stack.engine.session(), paused_at)
    finally:
        internal.unpause()
    back = deployed_stack.wait_for_status(200, within=30)
    print(f"paused: {answer.status} after {answer.seconds:.3f}s (read timeout {read_timeout}s)")
    print(f"after unpause: 200 again within {back:.2f}s")

    assert answer.status == 504
    assert answer.body == {
        "error": "upstream_timeout",
        "message": f"internal did not answer within {read_timeout} s",
        "status": 504,
    }
    # Not before the read timeout (no early give-up), and not much later (no retry of it).
    assert read_timeout <= answer.seconds < read_timeout + READ_TIMEOUT_MARGIN
    harness.record_measurements(
        f"faults_{deployed_stack.engine.kind}",
        {
            "pause_504_s": round(answer.seconds, 3),
            "pause_read_timeout_s": read_timeout,
            "unpause_recovery_s": round(back, 2),
        },
    )


# --- redeploy under traffic ----------------------------------------------------------------

# A logical client request retries with exponential backoff for up to this long. The new app
# listens beside the old one before the old one stops (docs/zero-downtime.md), so no attempt
# should fail: the retries remain only to count what would have failed.
RETRY_BUDGET = 30.0
# The longest any one attempt may take during the redeploy (docs/zero-downtime.md's bound).
SLOWEST_ATTEMPT = 1.0
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 2.0
PAUSE_BETWEEN_REQUESTS = 0.02
MAX_REQUESTS = 20_000  # bounds the client even if `pulumi up` hangs until its timeout


@dataclass
class TrafficLog:
    requests: int = 0  # logical requests, each retried within RETRY_BUDGET
    attempts: int = 0
    failed_attempts: Counter[str] = field(default_factory=Counter)
    failed_requests: int = 0
    longest_request: float = 0.0
    longest_attempt: float = 0.0
    # When the client last saw the old code and first saw the new one (monotonic seconds).
    last_old: float = 0.0
    first_new: float | None = None


def _attempt(stack: Stack, session: requests.Session) -> tuple[str, dict[str, Any] | None]:
    try:
        response = stack.engine.get(stack.endpoint, timeout=CLIENT_TIMEOUT, session=session)
    except requests.RequestException as exc:
        return type(exc).__name__, None
    if response.status_code != 200:
        return str(response.status_code), None
    body: dict[str, Any] = response.json()
    return "200", body


def _client(stack: Stack, marker: str, stop: threading.Event, log: TrafficLog) -> None:
    """Send requests back to back until told to stop; each retried with backoff on failure."""
    session = stack.engine.session()
    while not stop.is_set() and log.requests < MAX_REQUESTS:
        started = time.monotonic()
        backoff = FIRST_BACKOFF
        while True:
            attempt_start = time.monotonic()
            outcome, body = _attempt(stack, session)
            now = time.monotonic()
            log.attempts += 1
            log.longest_attempt = max(log.longest_attempt, now - attempt_start)
            if body is not None:
                break
            log.failed_attempts[outcome] += 1
            if now - started + backoff > RETRY_BUDGET:
                log.failed_requests += 1
                break
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        log.requests += 1
        log.longest_request = max(log.longest_request, time.monotonic() - started)
        if body is not None:
            if body["upstream"].get("fault_revision") == marker:
                log.first_new = log.first_new or now
            else:
                log.last_old = now
        time.sleep(PAUSE_BETWEEN_REQUESTS)


def test_redeploy_of_internal_under_continuous_traffic(deployed_stack: Stack) -> None:
    before = deployed_stack.container_ids()
    marker = f"under-traffic-{time.monotonic_ns()}"
    harness.add_field_to_internal_answer(deployed_stack.workdir, "fault_revision", marker)

    log = TrafficLog()
    stop = threading.Event()
    client = threading.Thread(target=_client, args=(deployed_stack, marker, stop, log), daemon=True)
    client.start()
    try:
        time.sleep(1.0)  # the client is in its stride before the deployment starts
        deployed_stack.up()
        time.sleep(1.0)  # and a little after, to see the new code settle
    finally:
        stop.set()
        client.join(timeout=RETRY_BUDGET + CLIENT_TIMEOUT)
    assert not client.is_alive()

    gap = (log.first_new - log.last_old) if log.first_new else None
    print(
        f"redeploy under traffic: {log.requests} requests ({log.attempts} attempts), "
        f"{log.failed_requests} failed after retries, failed attempts {dict(log.failed_attempts)}, "
        f"longest request {log.longest_request:.2f}s, longest attempt {log.longest_attempt:.2f}s, "
        f"old->new gap seen by the client {gap if gap is None else round(gap, 2)}s"
    )
    harness.record_measurements(
        f"faults_{deployed_stack.engine.kind}",
        {
            "redeploy_gap_s": gap if gap is None else round(gap, 2),
            "redeploy_requests": log.requests,
            "redeploy_failed_requests": log.failed_requests,
            "redeploy_failed_attempts": sum(log.failed_attempts.values()),
            "redeploy_longest_request_s": round(log.longest_request, 2),
            "redeploy_longest_attempt_s": round(log.longest_attempt, 2),
        },
    )

    after = deployed_stack.container_ids()
    # Only internal's app was replaced: its sandbox (the address) and external stayed.
    changed = {key for key in before if after[key] != before[key]}
    assert changed == {"internal/app"}, (before, after)
    status, body, _ = deployed_stack.get_json()
    assert status == 200
    assert body["upstream"]["fault_revision"] == marker
    assert log.first_new is not None, "the client never saw the new code"
    assert log.failed_requests == 0
    # The sandbox design: the new app answers before the old one stops, so no attempt failed
    # (it used to be a few 502s bridged by the retries) and none was slow.
    assert not log.failed_attempts, log.failed_attempts
    assert log.longest_attempt < SLOWEST_ATTEMPT, f"longest attempt {log.longest_attempt:.2f}s"
    # Old and new code may answer side by side; the switch never paused the client longer
    # than one attempt may take.
    assert gap is not None
    assert gap < SLOWEST_ATTEMPT, f"old->new gap {gap:.2f}s"


# --- drift ----------------------------------------------------------------------------------


def test_removed_internal_is_put_back_by_up_with_refresh(
    deployed_stack: Stack, config: dict[str, str]
) -> None:
    network = deployed_stack.outputs["networkName"]
    # internal's app container is removed by hand; its sandbox stays, with the address.
    internal = deployed_stack.container("internal")
    others = deployed_stack.container_ids()
    del others["internal/app"]
    internal.remove(force=True)
    # internal is gone for good until `pulumi up`: no retry can bridge this, the answer is the
    # fast 502 of an unreachable internal (the sandbox holds the address, nothing listens: each
    # connect is refused at once).
    gone = _ask(deployed_stack, deployed_stack.engine.session(), time.monotonic())
    print(f"internal removed by hand: {gone.status} {gone.body} after {gone.seconds:.3f}s")
    assert gone.status == 502
    assert gone.body is not None
    assert gone.body["error"] == "upstream_unreachable"
    assert gone.seconds < FAST_502

    start = time.monotonic()
    deployed_stack.up(refresh=True)
    repaired = time.monotonic() - start

    back = deployed_stack.container("internal")
    assert back.id != internal.id
    # The new app joined the same sandbox, which still has the address (the sandbox holds it
    # now, not the app); nothing else was touched.
    sandbox = deployed_stack.sandbox("internal")
    assert back.attrs["HostConfig"]["NetworkMode"] == f"container:{sandbox.id}"
    address = sandbox.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    assert address == config["internalIp"]
    after = deployed_stack.container_ids()
    del after["internal/app"]
    assert after == others
    status, body, _ = deployed_stack.get_json()
    assert status == 200
    assert body["upstream"]["container_ip"] == config["internalIp"]
    # Nothing is left for a plain `pulumi up` to do: the state matches Docker again.
    deployed_stack.preview(expect_no_changes=True)
    print(f"drift repaired by `pulumi up --refresh` in {repaired:.1f}s")
    harness.record_measurements(
        f"faults_{deployed_stack.engine.kind}",
        {"gone_502_s": round(gone.seconds, 3), "drift_repair_s": round(repaired, 1)},
    )


# --- engine restart -------------------------------------------------------------------------


# Whether the engine, as it restores containers at start, starts an app only after the sandbox
# whose namespace it joins. moby v2 (the current engine) waits for that dependency; Debian's
# 20.10 (and Docker up to 28, whose restore waits for legacy links only) starts them in any
# order, and an app started first is refused and never retried (docs/failure-behaviour.md).
RESTORE_WAITS_FOR_SANDBOX = {"docker-20.10": False, "docker-current": True}
# The refusal, in 20.10's words.
APP_REFUSED_AT_RESTORE = "cannot join network of a non running container"


def test_engine_restart_brings_the_stack_back_by_itself(
    deployed_stack: Stack,
    engine_lab: tuple[str, Lab, Host],
    docker_client: docker.DockerClient,
) -> None:
    """A restart of dockerd (a reboot, an upgrade) stops every container; restart policy
    unless-stopped has the engine start them again, so the stack serves with no `pulumi up`.
    On the current engine every container, each sandbox before the app in its namespace. On
    20.10 the sandboxes, and each app either by itself or, when the engine tried it before its
    sandbox, refused with exactly that error: then one `docker start` (the operator's step)."""
    harness.require_root("the test restarts the lab host's dockerd")
    _, lab, host = engine_lab
    ordered = RESTORE_WAITS_FOR_SANDBOX[deployed_stack.engine.kind]
    baseline_before = measure_restart(deployed_stack, docker_client, BOTH_SERVICES)
    # Apps and sandboxes alike, by "<service>/<role>".
    before = {
        f"{service}/{role}": deployed_stack.container(service, role).attrs
        for service in BOTH_SERVICES
        for role in ("app", "sandbox")
    }
    start = time.monotonic()
    with timed(f"lab {lab.name}: restart dockerd of {host.name}"):
        lab.restart_engine(host.name)
    engine_back = time.monotonic() - start
    refused = [] if ordered else _apps_refused_at_restore(docker_client, before)
    # From the engine answering: it starts the containers as it comes up, then they boot.
    serving = deployed_stack.wait_for_status(200, within=RECOVERY_LIMIT)
    print(f"engine restart: engine answers after {engine_back:.2f}s, 200 {serving:.2f}s later")

    for key, old in before.items():
        service, role = key.split("/")
        container = deployed_stack.container(service, role)
        # The same containers, started again: nothing was recreated.
        assert container.id == old["Id"]
        assert container.attrs["State"]["Running"] is True
        assert container.attrs["State"]["StartedAt"] > old["State"]["StartedAt"]
        if role == "app":  # the sandbox has no healthcheck: it only sleeps
            harness.wait_for_health(docker_client, container.name, within=60)
    status, body, _ = deployed_stack.get_json()
    assert status == 200
    assert body["upstream"]["container_ip"] == deployed_stack.outputs["internalIp"]
    # Pulumi's state still matches what runs: nothing for `pulumi up` to do.
    assert deployed_stack.preview(expect_no_changes=True) == {}

    baseline_after = measure_restart(deployed_stack, docker_client, BOTH_SERVICES)
    baseline = baseline_before.slower(baseline_after)
    bound = baseline.bound(baseline.start_s, ENGINE_RESTART_ALLOWANCE)
    harness.record_measurements(
        f"faults_{deployed_stack.engine.kind}",
        {
            **_baseline_measurements("engine_restart", baseline_before, baseline_after),
            "engine_restart_engine_back_s": round(engine_back, 2),
            "engine_restart_serving_s": round(serving, 2),
            "engine_restart_bound_s": round(bound, 2),
            "engine_restart_apps_started_by_hand": refused,
        },
    )
    assert serving <= bound, f"200 {serving:.2f}s after the engine answered; bound {bound:.2f}s"


def _apps_refused_at_restore(
    client: docker.DockerClient, before: dict[str, dict[str, Any]]
) -> list[str]:
    """On an engine that restores in any order: wait until each sandbox runs again and each app
    has settled (running, or refused at start), assert that a refusal is the known one, start
    those apps by hand and return their services."""
    deadline = time.monotonic() + RECOVERY_LIMIT
    settled: dict[str, Any] = {}
    while time.monotonic() < deadline and len(settled) < len(before):
        for key, old in before.items():
            container = client.containers.get(old["Id"])
            state = container.attrs["State"]
            restarted = state["StartedAt"] > old["State"]["StartedAt"]
            if (state["Running"] and restarted) or (key.endswith("/app") and state["Error"]):
                settled[key] = container
        time.sleep(0.5)
    assert len(settled) == len(before), sorted(set(before) - set(settled))
    refused = []
    for key, container in settled.items():
        state = container.attrs["State"]
        if not state["Running"]:
            assert APP_REFUSED_AT_RESTORE in state["Error"], (key, state)
            container.start()
            refused.append(key.split("/")[0])
    return sorted(refused)
