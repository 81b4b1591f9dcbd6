"""The pair across two hosts, for real: a lab of two simulated hosts in one Swarm, internal on
one, external on the other, joined by an attachable overlay that the Pulumi program creates.

Runs as root (the lab makes namespaces, links and engines). The lab's name, hosts and underlay
differ from `make lab`'s (lab, a/b, 198.18.0.0/24) and test_lab's, so they never meet. The
overlay's subnet (the seed's 172.13.0.0/16) exists only inside the lab's namespaces: nothing
here ever sends a packet to it from the host namespace (it would route off the machine); its
unreachability is shown with routes and engine state instead. Tests run in file order on one
deployment; the fixtures' finalizers destroy the stack and remove the lab whatever happens.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from typing import Any

import docker
import pytest

from lab import Host, Lab, system
from lab.stacks import Engine, Stack, stack_filter, timed
from tests.e2e.harness import EXTERNAL_HOST, INTERNAL_HOST, record_measurements

VXLAN_PORT = 4789
# Marks the counting rules (no target: they only count) in each lab host's namespace.
VXLAN_COMMENT = "c2c-e2e-vxlan"
ENGINE_BACK_WITHIN = 120.0
LINK_BACK_WITHIN = 60.0


@pytest.fixture(scope="module")
def lab(multihost_lab: Lab) -> Lab:
    return multihost_lab


@pytest.fixture(scope="module")
def hosts(multihost_hosts: dict[str, Host]) -> dict[str, Host]:
    return multihost_hosts


@pytest.fixture(scope="module")
def engines(multihost_engines: dict[str, docker.DockerClient]) -> dict[str, docker.DockerClient]:
    return multihost_engines


@pytest.fixture(scope="module")
def deployed(multihost_stack: Stack) -> Stack:
    return multihost_stack.ensure_up()


@pytest.fixture(scope="module")
def client(multihost_client: Engine) -> Engine:
    return multihost_client


# --- helpers ------------------------------------------------------------------------------


def _stack_containers(engine: docker.DockerClient, stack: Stack) -> dict[str, Any]:
    """This stack's containers on one engine, by their c2c.service label (and c2c.role, where
    a service is a sandbox and an app; on the overlay it is one container of no role)."""
    found = engine.containers.list(all=True, filters=stack_filter(stack.name))
    by_key = {
        "/".join(filter(None, (c.labels["c2c.service"], c.labels.get("c2c.role")))): c
        for c in found
    }
    assert len(by_key) == len(found), [c.name for c in found]
    return by_key


def _add_vxlan_counters(host: Host) -> None:
    for chain in ("INPUT", "OUTPUT"):
        rule = [
            "-p",
            "udp",
            "--dport",
            str(VXLAN_PORT),
            "-m",
            "comment",
            "--comment",
            VXLAN_COMMENT,
        ]
        if host.run(["iptables", "-w", "-C", chain, *rule]).returncode != 0:
            result = host.run(["iptables", "-w", "-I", chain, "1", *rule])
            assert result.returncode == 0, result.stderr


def _vxlan_packets(host: Host) -> dict[str, int]:
    """Packets counted so far by the VXLAN rules in `host`'s namespace, per chain."""
    dump = host.run(["iptables-save", "-c", "-t", "filter"])
    assert dump.returncode == 0, dump.stderr
    counts = {
        match["chain"]: int(match["packets"])
        for match in re.finditer(
            r"^\[(?P<packets>\d+):\d+\] -A (?P<chain>\w+) .*--comment " + VXLAN_COMMENT,
            dump.stdout,
            re.MULTILINE,
        )
    }
    assert set(counts) == {"INPUT", "OUTPUT"}, dump.stdout
    return counts


def _route_device(destination: str, host: Host | None = None) -> str | None:
    """The device `ip route get` picks for `destination` (None: no route). Sends nothing."""
    argv = ["ip", "-j", "route", "get", destination]
    result = host.run(argv) if host else subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:  # "Network is unreachable"
        return None
    routes: list[dict[str, Any]] = json.loads(result.stdout)
    return str(routes[0].get("dev")) if routes else None


# --- the tests, in order ------------------------------------------------------------------


def test_the_stack_deploys_across_the_two_hosts(
    deployed: Stack, hosts: dict[str, Host], engines: dict[str, docker.DockerClient]
) -> None:
    ma, mb = hosts[EXTERNAL_HOST], hosts[INTERNAL_HOST]
    assert (ma.swarm_role, mb.swarm_role) == ("manager", "worker")
    outputs = deployed.outputs
    assert outputs["endpoint"] == f"http://{ma.address}:8090"
    assert (outputs["externalHost"], outputs["externalHostAddress"]) == ("ma", str(ma.address))
    assert (outputs["internalHost"], outputs["internalHostAddress"]) == ("mb", str(mb.address))
    assert outputs["networkDriver"] == "overlay"
    # internal runs in mb's engine only, external in ma's only, each one container that owns
    # its address (no sandbox on an overlay: see the engine restart below), under its name.
    for host, service in ((INTERNAL_HOST, "internal"), (EXTERNAL_HOST, "external")):
        containers = _stack_containers(engines[host], deployed)
        assert set(containers) == {service}
        assert containers[service].name == deployed.service_name(service)
        assert containers[service].attrs["HostConfig"]["RestartPolicy"]["Name"] == (
            "unless-stopped"
        )
    network = engines[EXTERNAL_HOST].networks.get(outputs["networkName"])
    assert network.attrs["Driver"] == "overlay"
    assert network.attrs["Attachable"] is True
    (pool,) = network.attrs["IPAM"]["Config"]
    assert pool == {
        "Subnet": "172.13.0.0/16",
        "IPRange": "172.13.128.0/17",
        "Gateway": "172.13.0.1",
    }


def test_a_second_preview_changes_nothing(deployed: Stack) -> None:
    assert deployed.preview(expect_no_changes=True) == {}


def test_the_request_crosses_hosts_over_vxlan(
    deployed: Stack, hosts: dict[str, Host], client: Engine
) -> None:
    for host in hosts.values():
        _add_vxlan_counters(host)
    before = {name: _vxlan_packets(host) for name, host in hosts.items()}
    status, body, _ = client.get_json(deployed.outputs["endpoint"])
    after = {name: _vxlan_packets(host) for name, host in hosts.items()}
    assert status == 200, body
    assert body["service"] == "external"
    assert body["upstream"]["service"] == "internal"
    # The container's hostname: the service's name.
    assert body["upstream"]["hostname"] == deployed.service_name("internal")
    # internal saw external's static IP on the overlay: no NAT between the two hosts.
    assert body["upstream"]["client_ip"] == deployed.outputs["externalIp"]
    assert body["upstream"]["container_ip"] == deployed.outputs["internalIp"]
    # Encapsulated frames left and reached both hosts' underlay while it ran.
    for name in hosts:
        for chain in ("INPUT", "OUTPUT"):
            assert after[name][chain] > before[name][chain], (name, chain, before, after)


def test_internal_publishes_nothing(
    deployed: Stack, hosts: dict[str, Host], engines: dict[str, docker.DockerClient], lab: Lab
) -> None:
    # internal's container binds no port on its host.
    for internal in _stack_containers(engines[INTERNAL_HOST], deployed).values():
        assert not internal.attrs["HostConfig"]["PortBindings"], internal.name
    mb = hosts[INTERNAL_HOST]
    port = int(deployed.settings()["internalPort"])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((str(mb.address), port), timeout=5).close()
    # The overlay's subnet is routed nowhere near the lab: not through its underlay bridge
    # from here, not at all inside a lab host's own namespace (it lives in the overlay's).
    assert _route_device(deployed.outputs["internalIp"]) != lab.names.bridge
    for host in hosts.values():
        assert _route_device(deployed.outputs["internalIp"], host) is None, host.name


def test_cut_off_internal_host_gives_a_bounded_error_then_recovers(
    deployed: Stack, lab: Lab, client: Engine
) -> None:
    settings = deployed.settings()
    connect = int(settings["upstreamConnectTimeoutMs"]) / 1000
    read = int(settings["upstreamReadTimeoutMs"]) / 1000
    retries = int(settings["upstreamRetries"])
    # Either every connect attempt times out (502), or a pooled connection waits out the read
    # timeout (504); plus the retries' backoff and slack for the machine.
    bound = read + (1 + retries) * connect + 2.0
    endpoint = deployed.outputs["endpoint"]
    lab.set_link(INTERNAL_HOST, up=False)
    try:
        status, body, elapsed = client.get_json(endpoint, timeout=bound + 10)
    finally:
        lab.set_link(INTERNAL_HOST, up=True)
    assert status in (502, 504), body
    assert body["status"] == status
    assert elapsed < bound, f"{elapsed:.1f}s, bound {bound:.1f}s"
    # Back without a `pulumi up`: the overlay's peers find each other again.
    back = client.wait_for_status(endpoint, 200, within=LINK_BACK_WITHIN)
    record_measurements(
        "multihost",
        {
            "link_down_status": status,
            "link_down_s": round(elapsed, 2),
            "link_up_200_s": round(back, 2),
        },
    )


def test_internal_comes_back_by_itself_after_its_engine_restarts(
    deployed: Stack, lab: Lab, client: Engine, engines: dict[str, docker.DockerClient]
) -> None:
    """Restart b's dockerd: internal, the same container, is started again by its engine once
    b is back in the Swarm (a container with an overlay endpoint is restored then, by its
    restart policy unless-stopped), and the chain answers 200 with no step by anyone."""
    (before,) = _stack_containers(engines[INTERNAL_HOST], deployed).values()
    with timed(f"lab {lab.name}: restart dockerd of {INTERNAL_HOST}"):
        lab.restart_engine(INTERNAL_HOST)
    back = client.wait_for_status(deployed.outputs["endpoint"], 200, within=ENGINE_BACK_WITHIN)
    record_measurements("multihost", {"engine_restart_200_s": round(back, 2)})
    (after,) = _stack_containers(engines[INTERNAL_HOST], deployed).values()
    assert after.id == before.id
    assert after.attrs["State"]["Running"] is True
    assert after.attrs["State"]["StartedAt"] > before.attrs["State"]["StartedAt"]
    status, body, _ = client.get_json(deployed.outputs["endpoint"])
    assert status == 200, body
    assert body["upstream"]["client_ip"] == deployed.outputs["externalIp"]
    assert body["upstream"]["container_ip"] == deployed.outputs["internalIp"]


def test_after_the_faults_pulumi_up_changes_nothing(deployed: Stack) -> None:
    result = deployed.up(expect_no_changes=True)
    assert result.summary.result == "succeeded"
    assert set(result.summary.resource_changes or {}) == {"same"}


def test_destroy_and_lab_down_leave_nothing(
    deployed: Stack, lab: Lab, hosts: dict[str, Host], engines: dict[str, docker.DockerClient]
) -> None:
    deployed.destroy()
    for name, engine in engines.items():
        filters = stack_filter(deployed.name)
        assert engine.containers.list(all=True, filters=filters) == [], name
        assert engine.networks.list(filters=filters) == [], name
        assert engine.images.list(filters=filters) == [], name
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
    # The engines that ran at the start (pids from before the restart may be gone already).
    assert not [h.pid for h in hosts.values() if h.pid is not None and system.is_running(h.pid)]
