"""internal scaled out, the Swarm way: three replicas of a Swarm service over the lab's two
hosts, endpoint mode dnsrr on the attachable overlay, called by external by service name.

Runs as root on the session's two-host lab (the multihost_* fixtures, shared with
test_multihost). Like test_multihost, nothing here ever sends a packet to the overlay's subnet
from the host namespace: requests go to external's published port on host ma's underlay
address, and the replicas' addresses are read from the engines.

`make trace` on the same deployment must name the DNS name instead of a static IP, list every
replica as the engines report it, and follow the one replica internal's answer names. Tests run
in file order on one deployment; the fixtures' finalizers destroy the stack whatever happens. The
last test takes the lab down.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import pytest

from lab import Host, Lab, system
from lab.stacks import Engine, Project, Stack, stack_filter, timed
from tests.e2e.harness import (
    EXTERNAL_HOST,
    INTERNAL_HOST,
    record_measurements,
    require_root,
    trace_stack,
    two_host_stack,
)

REPLICAS = 3
REQUESTS = 30
REPLACED_WITHIN = 60.0
NEW_REPLICA_SERVES_WITHIN = 20.0
GONE_WITHIN = 30.0


@pytest.fixture(scope="module")
def replicas_stack(project: Project, multihost_hosts: dict[str, Host]) -> Iterator[Stack]:
    """internal as REPLICAS replicas over the lab's hosts, external on ma. Not yet deployed."""
    with two_host_stack(project, multihost_hosts, "rep", internalReplicas=str(REPLICAS)) as stack:
        yield stack


@pytest.fixture(scope="module")
def deployed(replicas_stack: Stack) -> Stack:
    return replicas_stack.ensure_up()


@pytest.fixture(scope="module")
def engines(multihost_engines: dict[str, docker.DockerClient]) -> dict[str, docker.DockerClient]:
    return multihost_engines


@pytest.fixture(scope="module")
def manager(engines: dict[str, docker.DockerClient]) -> docker.DockerClient:
    """The Swarm manager's engine (ma, externalHost, which the overlay and service go through)."""
    return engines[EXTERNAL_HOST]


@pytest.fixture(scope="module")
def lab(multihost_lab: Lab) -> Lab:
    return multihost_lab


@pytest.fixture(scope="module")
def client(multihost_client: Engine) -> Engine:
    return multihost_client


@pytest.fixture(autouse=True)
def _root_only() -> None:
    require_root("the lab and the trace need root")


@pytest.fixture(scope="module")
def traced(deployed: Stack) -> dict[str, Any]:
    """One trace run (--json) on the replicated deployment."""
    result = trace_stack(deployed, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# --- helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replica:
    host: str
    container_id: str
    name: str
    address: str  # on the overlay; read from the engine, never contacted from here
    hostname: str
    mac: str


def _replicas(engines: dict[str, docker.DockerClient], stack: Stack) -> list[Replica]:
    """The running internal replicas on every engine (a replicated internal has no sandbox:
    every container labelled c2c.service=internal is a replica)."""
    filters = stack_filter(stack.name)
    filters["label"].append("c2c.service=internal")
    network = stack.outputs["networkName"]
    found = []
    for host, engine in engines.items():
        for c in engine.containers.list(filters=filters):
            endpoint = c.attrs["NetworkSettings"]["Networks"][network]
            address, mac = endpoint["IPAddress"], endpoint["MacAddress"].lower()
            found.append(Replica(host, c.id, c.name, address, c.attrs["Config"]["Hostname"], mac))
    return found


def _running_tasks(manager: docker.DockerClient, service: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = manager.api.tasks(
        filters={"service": service, "desired-state": "running"}
    )
    return [task for task in tasks if task["Status"]["State"] == "running"]


def _node_hostname(manager: docker.DockerClient, node_id: str) -> str:
    return str(manager.api.inspect_node(node_id)["Description"]["Hostname"])


class Load:
    """Requests to the endpoint, one after the other, in a thread, until stopped."""

    def __init__(self, client: Engine, url: str) -> None:
        self.client, self.url = client, url
        # (seconds since start, status or the exception, seconds taken, replica's address)
        self.results: list[tuple[float, object, float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def _run(self) -> None:
        session = self.client.session()
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                response = self.client.get(self.url, timeout=10, session=session)
                outcome: object = response.status_code
                replica = response.json().get("upstream", {}).get("container_ip")
            except Exception as exc:  # every failure is a lost request
                outcome, replica = exc, None
            self.results.append((sent - self.started, outcome, time.monotonic() - sent, replica))
            time.sleep(0.02)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def served_by(self, address: str) -> bool:
        return any(result[3] == address for result in self.results)


# --- the tests, in order ------------------------------------------------------------------


def test_the_replicas_run_on_both_hosts(
    deployed: Stack,
    engines: dict[str, docker.DockerClient],
    manager: docker.DockerClient,
    multihost_hosts: dict[str, Host],
) -> None:
    outputs = deployed.outputs
    service = deployed.service_name("internal")
    assert outputs["internalService"] == service
    assert outputs["internalReplicas"] == REPLICAS
    assert sorted(outputs["internalHosts"]) == sorted(multihost_hosts)
    assert outputs["internalUrl"] == f"http://{service}:{deployed.settings()['internalPort']}"
    assert "internalIp" not in outputs
    spec = manager.api.inspect_service(service)["Spec"]
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"
    assert spec["Mode"] == {"Replicated": {"Replicas": REPLICAS}}
    # The tag each host built, never resolved to a registry digest.
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == outputs["internalImage"]
    tasks = _running_tasks(manager, service)
    assert len(tasks) == REPLICAS
    nodes = sorted(_node_hostname(manager, task["NodeID"]) for task in tasks)
    # Swarm spreads them: both hosts run at least one (the lab names each node after its host).
    assert set(nodes) == set(multihost_hosts), nodes
    replicas = _replicas(engines, deployed)
    assert sorted(r.host for r in replicas) == nodes
    record_measurements("replicas", {"tasks_per_node": {n: nodes.count(n) for n in set(nodes)}})


def test_each_replica_is_hardened(deployed: Stack, engines: dict[str, docker.DockerClient]) -> None:
    memory = int(deployed.settings()["memoryLimitMb"]) * 1024 * 1024
    for replica in _replicas(engines, deployed):
        attrs = engines[replica.host].containers.get(replica.container_id).attrs
        assert attrs["Config"]["User"] == "10001:10001"
        assert attrs["HostConfig"]["ReadonlyRootfs"] is True
        assert attrs["HostConfig"]["CapDrop"] == ["ALL"]
        assert attrs["HostConfig"]["Memory"] == memory
        assert attrs["HostConfig"]["PortBindings"] in (None, {})
        assert attrs["Config"]["Healthcheck"]["Test"] == ["CMD", "python3", "-m", "c2c_http.probe"]
        assert attrs["State"]["Health"]["Status"] == "healthy"
        assert attrs["Config"]["Labels"]["c2c.service"] == "internal"


def test_the_service_name_resolves_to_every_replica(
    deployed: Stack, engines: dict[str, docker.DockerClient]
) -> None:
    # Asked inside external's container (where its server resolves the name), from Docker's
    # embedded DNS (127.0.0.11).
    external = deployed.container("external", None, engines[EXTERNAL_HOST])
    lookup = (
        "import socket; print(' '.join(sorted({a[4][0] for a in socket.getaddrinfo("
        f"{deployed.outputs['internalService']!r}, 80, socket.AF_INET, socket.SOCK_STREAM)}})))"
    )
    code, out = external.exec_run(["python3", "-c", lookup])
    assert code == 0, out
    answered = out.decode().split()
    assert sorted(answered) == sorted(r.address for r in _replicas(engines, deployed))
    record_measurements("replicas", {"dns_answer": answered})


def test_requests_through_the_endpoint_reach_several_replicas(
    deployed: Stack, engines: dict[str, docker.DockerClient], client: Engine
) -> None:
    addresses = {r.address for r in _replicas(engines, deployed)}
    reached: list[str] = []
    for _ in range(REQUESTS):
        status, body, _ = client.get_json(deployed.outputs["endpoint"])
        assert status == 200, body
        upstream = body["upstream"]
        assert upstream["container_ip"] in addresses
        # Every replica sees external's static IP: no NAT on the overlay.
        assert upstream["client_ip"] == deployed.outputs["externalIp"]
        reached.append(upstream["container_ip"])
    assert len(set(reached)) >= 2, reached
    record_measurements(
        "replicas",
        {"requests": REQUESTS, "replies_per_replica": {a: reached.count(a) for a in set(reached)}},
    )


def test_the_trace_names_the_service_instead_of_a_static_ip(
    deployed: Stack, traced: dict[str, Any]
) -> None:
    replicas = traced["overlay"]["replicas"]
    assert replicas["dns_name"] == deployed.outputs["internalService"]
    assert replicas["service"] == deployed.outputs["internalService"]
    assert traced["services"]["internal_url"] == deployed.outputs["internalUrl"]
    assert traced["outputs"]["internal_ip"] == ""
    assert replicas["resolver"] == "127.0.0.11"
    assert sorted(replicas["dns_answer"]) == sorted(r["ipv4"] for r in replicas["replicas"])
    assert traced["problems"] == []
    # No sandboxes on an overlay: external is one container, the replicas Swarm's tasks, each
    # in its own namespace.
    assert traced.get("namespaces", []) == []


def test_the_trace_lists_the_replicas_the_engines_report(
    deployed: Stack,
    traced: dict[str, Any],
    engines: dict[str, docker.DockerClient],
) -> None:
    listed = {
        r["container"]: (r["host"], r["hostname"], r["ipv4"], r["mac"])
        for r in traced["overlay"]["replicas"]["replicas"]
    }
    assert listed == {
        r.name: (r.host, r.hostname, r.address, r.mac) for r in _replicas(engines, deployed)
    }
    assert len(listed) == REPLICAS


def test_the_followed_replica_is_the_one_that_answered(
    traced: dict[str, Any], multihost_hosts: dict[str, Host]
) -> None:
    replicas = traced["overlay"]["replicas"]
    followed = next(r for r in replicas["replicas"] if r["container"] == replicas["followed"])
    services = traced["services"]
    assert (followed["hostname"], followed["ipv4"]) == (
        services["internal_hostname"],
        services["internal_container_ip"],
    )
    overlay = traced["overlay"]
    if followed["host"] == EXTERNAL_HOST:
        assert (overlay["forward"], overlay["reply"]) == (None, None)
    else:  # across the hosts: ma's vxlan0 sends the replica's MAC to its host's underlay address
        assert overlay["forward"]["mac"] == followed["mac"]
        assert overlay["forward"]["vtep"] == str(multihost_hosts[followed["host"]].address)
        assert overlay["reply"]["vtep"] == str(multihost_hosts[EXTERNAL_HOST].address)


def test_the_text_report_shows_name_replicas_and_path(deployed: Stack) -> None:
    result = trace_stack(deployed)
    assert result.returncode == 0, result.stdout + result.stderr
    flat = " ".join(result.stdout.split())
    service = deployed.outputs["internalService"]
    assert f"external reaches them by the DNS name {service}" in flat
    assert f"Docker's embedded DNS 127.0.0.11 answers {service} with" in flat
    assert "answered the traced request" in flat
    assert f"{REPLICAS} running replicas" in flat


def test_a_killed_replica_costs_no_request(
    deployed: Stack,
    engines: dict[str, docker.DockerClient],
    manager: docker.DockerClient,
    client: Engine,
) -> None:
    settings = deployed.settings()
    connect = int(settings["upstreamConnectTimeoutMs"]) / 1000
    retries = int(settings["upstreamRetries"])
    service = deployed.outputs["internalService"]
    before = _replicas(engines, deployed)
    known = {r.container_id for r in before}
    # One on the host external does not run on: its requests cross the underlay.
    victim = next(r for r in before if r.host == INTERNAL_HOST)
    with Load(client, deployed.outputs["endpoint"]) as load:
        time.sleep(1)
        killed_at = time.monotonic()
        engines[victim.host].containers.get(victim.container_id).kill()
        deadline = killed_at + REPLACED_WITHIN
        newcomer: Replica | None = None
        while newcomer is None and time.monotonic() < deadline:
            time.sleep(0.5)
            current = _replicas(engines, deployed)
            if len(_running_tasks(manager, service)) == REPLICAS and len(current) == REPLICAS:
                fresh = [r for r in current if r.container_id not in known]
                newcomer = fresh[0] if fresh else None
        assert newcomer is not None, f"Swarm did not replace {victim.name} in {REPLACED_WITHIN}s"
        replaced_s = time.monotonic() - killed_at
        # Requests go on until the new replica has answered some (a fresh DNS answer).
        serves_by = time.monotonic() + NEW_REPLICA_SERVES_WITHIN
        while not load.served_by(newcomer.address) and time.monotonic() < serves_by:
            time.sleep(0.2)
    results = load.results
    lost = [r for r in results if r[1] != 200]
    assert not lost, lost[:5]
    after_kill = [r for r in results if r[0] >= killed_at - load.started]
    assert len(after_kill) > 20
    slowest = max(r[2] for r in after_kill)
    # At worst a connect to the gone address times out before the next one answers.
    assert slowest < (1 + retries) * connect + 1.0, slowest
    assert load.served_by(newcomer.address), "the new replica never answered"
    record_measurements(
        "replicas",
        {
            "kill_requests": len(results),
            "kill_lost": len(lost),
            "kill_slowest_s": round(slowest, 3),
            "replaced_s": round(replaced_s, 1),
            "replacement_node": newcomer.host,
        },
    )


def test_a_second_pulumi_up_changes_nothing(deployed: Stack) -> None:
    result = deployed.up(expect_no_changes=True)
    assert result.summary.result == "succeeded"
    assert set(result.summary.resource_changes or {}) == {"same"}


def test_destroy_leaves_nothing_on_either_engine(
    deployed: Stack, engines: dict[str, docker.DockerClient], manager: docker.DockerClient
) -> None:
    service = deployed.outputs["internalService"]
    deployed.destroy()
    destroyed_at = time.monotonic()
    assert manager.services.list(filters={"name": service}) == []
    filters = stack_filter(deployed.name)
    # Each node removes its tasks' containers (the killed one too) once the service is gone.
    deadline = destroyed_at + GONE_WITHIN
    left: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        left = {
            name: [c.name for c in engine.containers.list(all=True, filters=filters)]
            + [n.name for n in engine.networks.list(filters=filters)]
            + [tag for image in engine.images.list(filters=filters) for tag in image.tags]
            for name, engine in engines.items()
        }
        if not any(left.values()):
            break
        time.sleep(0.5)
    assert not any(left.values()), left
    record_measurements(
        "replicas", {"gone_after_destroy_s": round(time.monotonic() - destroyed_at, 1)}
    )


def test_lab_down_leaves_nothing(lab: Lab, multihost_hosts: dict[str, Host]) -> None:
    """The session's two-host lab (test_multihost ran on it too) goes, and leaves nothing."""
    with timed(f"lab {lab.name}: down"):
        lab.down()
    status = lab.status()
    assert status["hosts"] == []
    assert status["bridge"] is None
    assert status["iptables_rules"] == []
    assert not [n for n in system.netns_names() if n.startswith(lab.names.netns_prefix)]
    assert not [n for n in system.links() if n.startswith(f"c2c{lab.name}")]
    assert not lab.names.run_dir.exists()
    assert not lab.names.state_dir.exists()
    assert not system.pids_mentioning([lab.names.run_dir, lab.names.state_dir])
    assert not system.pids_in_cgroup(lab.names.cgroup_parent(INTERNAL_HOST))
    engines = [h.pid for h in multihost_hosts.values() if h.pid is not None]
    assert not [pid for pid in engines if system.is_running(pid)]
