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
import time
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
    """This stack's containers on one engine, by "<service>/<role>" (c2c.service, c2c.role):
    each service is a sandbox and an app (docs/zero-downtime.md)."""
    found = engine.containers.list(all=True, filters=stack_filter(stack.name))
    by_key = {f"{c.labels['c2c.service']}/{c.labels['c2c.role']}": c for c in found}
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
    # internal (sandbox and app) runs in mb's engine only, external in ma's only.
    assert set(_stack_containers(engines[INTERNAL_HOST], deployed)) == {
        "internal/sandbox",
        "internal/app",
    }
    assert set(_stack_containers(engines[EXTERNAL_HOST], deployed)) == {
        "external/sandbox",
        "external/app",
    }
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
    # The sandbox's hostname, which its app shares.
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
    # Neither internal's sandbox (which would hold a published port) nor its app binds one.
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


# What Docker 20.10 and moby v2 do when they restore containers at start: they start them all
# at once, and an app whose sandbox is not running yet fails to join its namespace; a restart
# policy takes effect only after a container once started, so nothing retries it.
APP_NOT_RESTORED = "cannot join network of a non running container"


def test_internal_after_its_engine_restarts(
    deployed: Stack, lab: Lab, client: Engine, engines: dict[str, docker.DockerClient]
) -> None:
    """A known limit of the sandbox design across hosts (docs/multihost.md): after b's dockerd
    restarts, internal's sandbox (the IP on the overlay) is back by itself, but its app may not
    be: on the overlay the sandbox comes up late and the app's start fails. Proven here as it
    is: the sandbox back by itself; the app back by itself or refused with exactly that error;
    one `docker start` of the app (the operator's step) then serves again."""
    before = _stack_containers(engines[INTERNAL_HOST], deployed)
    with timed(f"lab {lab.name}: restart dockerd of {INTERNAL_HOST}"):
        lab.restart_engine(INTERNAL_HOST)
    engine = engines[INTERNAL_HOST]
    sandbox = engine.containers.get(before["internal/sandbox"].id)
    deadline = time.monotonic() + ENGINE_BACK_WITHIN
    while time.monotonic() < deadline:
        sandbox.reload()
        if sandbox.attrs["State"]["Running"]:
            break
        time.sleep(0.5)
    # The sandbox, the same container, was started again by its engine (unless-stopped).
    assert sandbox.attrs["State"]["Running"] is True
    assert (
        sandbox.attrs["State"]["StartedAt"] > before["internal/sandbox"].attrs["State"]["StartedAt"]
    )
    app = engine.containers.get(before["internal/app"].id)
    # Settled: running, or refused at start (an error recorded); the engine restores at once.
    while time.monotonic() < deadline and not (
        app.attrs["State"]["Running"] or app.attrs["State"]["Error"]
    ):
        time.sleep(0.5)
        app.reload()
    app_restored_by_engine = bool(app.attrs["State"]["Running"])
    if not app_restored_by_engine:
        assert APP_NOT_RESTORED in app.attrs["State"]["Error"], app.attrs["State"]
        app.start()
    back = client.wait_for_status(deployed.outputs["endpoint"], 200, within=ENGINE_BACK_WITHIN)
    record_measurements(
        "multihost",
        {
            "engine_restart_200_s": round(back, 2),
            "engine_restart_app_restored_by_engine": app_restored_by_engine,
        },
    )
    after = _stack_containers(engine, deployed)
    assert {key: c.id for key, c in after.items()} == {key: c.id for key, c in before.items()}
    status, body, _ = client.get_json(deployed.outputs["endpoint"])
    assert status == 200
    assert body["upstream"]["client_ip"] == deployed.outputs["externalIp"]


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
