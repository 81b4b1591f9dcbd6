"""A handover at process level: a second gunicorn master of internal listens on the port of the
first (reuse_port), then the first stops gracefully, under clients without any retry.

It runs in a network namespace of its own, as a container's sandbox is one
(docs/zero-downtime.md): loopback up, net.ipv4.tcp_migrate_req=1 there only. Both masters run
in the test's PID namespace, so their answers differ by worker pid only (C2C-Instance).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import requests

from lab.netns import nsenter_argv, run_in_netns
from tests.integration.conftest import Service
from tests.support.http_stub import free_port

# Clients that keep their connection alive, and clients that open a new one per request.
KEEP_ALIVE_CLIENTS = FRESH_CLIENTS = 2
CLIENTS = KEEP_ALIVE_CLIENTS + FRESH_CLIENTS
# Kept-alive connections that stay idle, as external's pooled ones may: a stopping gthread
# worker keeps them up to 2 s, which must not hold its listener open that long.
IDLE_CONNECTIONS = 4
# The bound for any one request during a redeploy.
SLOWEST_ALLOWED = 1.0
WITHIN = 15.0  # for the new master's workers to answer, and the old master to exit


def _require_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but not root: a network namespace of the test's own", pytrace=False)
    pytest.skip("needs root: a network namespace of the test's own")


@pytest.fixture
def netns() -> Iterator[str]:
    """A new network namespace with loopback up and tcp_migrate_req=1, removed afterwards."""
    _require_root()
    name = f"c2c-it-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        sysctl = ["sysctl", "-q", "-w", "net.ipv4.tcp_migrate_req=1"]
        subprocess.run(nsenter_argv(name, sysctl), check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@dataclass
class Traffic:
    requests: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    slowest: float = 0.0
    answered_by: Counter[int] = field(default_factory=Counter)  # worker pid -> answers
    last_by: dict[int, int] = field(default_factory=dict)  # client -> pid of its last answer
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(url: str, index: int, stop: threading.Event, traffic: Traffic) -> None:
    """Requests back to back, on one kept-alive connection or a new one each; requests'
    default adapter retries nothing."""
    headers = {} if index < KEEP_ALIVE_CLIENTS else {"Connection": "close"}
    with requests.Session() as session:
        session.trust_env = False
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = session.get(url, timeout=10, headers=headers)
                outcome = None if response.status_code == 200 else str(response.status_code)
                pid = int(response.headers["C2C-Instance"].partition("/")[2])
            except requests.RequestException as exc:
                outcome, pid = type(exc).__name__, 0
            elapsed = time.monotonic() - started
            with traffic.lock:
                traffic.requests += 1
                traffic.slowest = max(traffic.slowest, elapsed)
                if outcome is not None:
                    traffic.failed[outcome] += 1
                else:
                    traffic.answered_by[pid] += 1
                    traffic.last_by[index] = pid
            time.sleep(0.005)


def _workers(master: Service) -> set[int]:
    assert master.process is not None
    # nsenter execs the command: its pid is the gunicorn master's.
    children = Path(f"/proc/{master.process.pid}/task/{master.process.pid}/children")
    return {int(pid) for pid in children.read_text().split()}


def _wait_every_worker_answers(master: Service, workers: int) -> set[int]:
    """Until each of the master's workers answered a new connection (what the image's probe
    waits for); the old master's answers meanwhile are just skipped."""
    deadline = time.monotonic() + WITHIN
    answered: set[int] = set()
    while time.monotonic() < deadline:
        own = _workers(master)
        if len(own) == workers and own <= answered:
            return own
        response = master.get("/healthz", timeout=2)
        answered.add(int(response.headers["C2C-Instance"].partition("/")[2]))
    raise AssertionError(f"the new master's workers did not all answer within {WITHIN}s")


def test_a_second_master_takes_over_the_port_without_a_failed_request(
    netns: str, tmp_path: Path
) -> None:
    port, workers = free_port(), 2
    env = {"WEB_CONCURRENCY": str(workers)}
    old = Service("internal", port, env, tmp_path / "old", netns=netns)
    new = Service("internal", port, env, tmp_path / "new", netns=netns)
    for service in (old, new):
        service.logs.mkdir()
    traffic, stop = Traffic(), threading.Event()
    clients: list[threading.Thread] = []
    idle = [requests.Session() for _ in range(IDLE_CONNECTIONS)]
    try:
        old.start()
        old_workers = _workers(old)
        for session in idle:
            run_in_netns(netns, partial(session.get, old.url + "/", timeout=5))
        for index in range(CLIENTS):
            client = partial(_client, old.url + "/", index, stop, traffic)
            thread = threading.Thread(target=run_in_netns, args=(netns, client, None))
            thread.start()
            clients.append(thread)
        time.sleep(0.5)
        new.start()
        new_workers = _wait_every_worker_answers(new, workers)
        time.sleep(0.5)  # both serve
        assert old.process is not None
        stopped_at = time.monotonic()
        old.process.send_signal(signal.SIGTERM)
        old.process.wait(timeout=WITHIN)
        old_gone = time.monotonic() - stopped_at
        time.sleep(1.0)  # the new one alone
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=20)
        old.stop()
        new.stop()
        for session in idle:
            session.close()

    print(
        f"handover: {traffic.requests} requests from {CLIENTS} clients, failed "
        f"{dict(traffic.failed)}, slowest {traffic.slowest:.3f}s, old master gone after "
        f"{old_gone:.2f}s; answers by old workers "
        f"{sum(traffic.answered_by[p] for p in old_workers)}, by new "
        f"{sum(traffic.answered_by[p] for p in new_workers)}"
    )
    assert traffic.failed == Counter()
    assert traffic.slowest < SLOWEST_ALLOWED
    # Both served, and in the end every client was answered by the new master.
    assert all(traffic.answered_by[pid] for pid in old_workers | new_workers)
    assert set(traffic.last_by.values()) <= new_workers
    assert len(traffic.last_by) == CLIENTS
    # Its kept-alive connections were handed over ("Connection: close" on their next request),
    # not waited out: the old master did not need gunicorn's graceful timeout (5 s).
    assert old_gone < 4.0
