"""The pair across two hosts, for real: a lab of two simulated hosts in one Swarm, internal on
one, external on the other, joined by an attachable overlay that the Pulumi program creates.

Runs as root (the lab makes namespaces, links and engines). The lab's name, hosts and underlay
differ from `make lab`'s (lab, a/b, 198.18.0.0/24) and test_lab's, so they never meet. The
overlay's subnet (the seed's 172.13.0.0/16) exists only inside the lab's namespaces: nothing
here ever sends a packet to it from the host namespace (it would route off the machine); its
unreachability is shown with routes and engine state instead.

`make trace` across the hosts runs on the same deployment (`python -m packet_trace
--stack-file <its stack file>`, from the host namespace; its one request goes to ma's underlay
address), and each fact it reports is read again here, independently, from the engines and from
the overlay's namespaces. Then the faults. Tests run in file order on one deployment; the
fixtures' finalizers destroy the stack whatever happens. The lab is the session's, shared with
test_replicas, whose last test takes it down.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import docker
import pytest

from lab import Host, Lab
from lab.stacks import Engine, Stack, stack_filter, timed
from tests.e2e.harness import (
    EXTERNAL_HOST,
    INTERNAL_HOST,
    record_measurements,
    require_root,
    trace_stack,
)

VXLAN_PORT = 4789
# Marks the counting rules (no target: they only count) in each lab host's namespace.
VXLAN_COMMENT = "c2c-e2e-vxlan"
ENGINE_BACK_WITHIN = 120.0
LINK_BACK_WITHIN = 60.0
# One trace run's JSON, and the VXLAN packets counted on each host while it ran.
Traced = tuple[dict[str, Any], dict[str, int]]


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


@pytest.fixture(autouse=True)
def _root_only() -> None:
    require_root("the lab and the trace need root")


@pytest.fixture(scope="module")
def traced(deployed: Stack, hosts: dict[str, Host]) -> Traced:
    """One trace run (--json), and how many VXLAN packets the counting rules saw on each host
    while it ran."""
    for host in hosts.values():
        _add_vxlan_counters(host)
    before = {name: sum(_vxlan_packets(host).values()) for name, host in hosts.items()}
    proc = trace_stack(deployed, "--json")
    moved = {name: sum(_vxlan_packets(h).values()) - before[name] for name, h in hosts.items()}
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return data, moved


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


def _container(engine: docker.DockerClient, stack: Stack, service: str) -> Any:
    """The service's one container (no sandboxes on an overlay): its addresses, its namespace."""
    return stack.container(service, None, engine)


def _overlay_netns(container: Any, network_id: str) -> Path:
    """The overlay's namespace file on the container's engine: beside the container's own
    namespace, under the engine's exec root, named <n>-<network id prefix>."""
    netns_dir = Path(container.attrs["NetworkSettings"]["SandboxKey"]).parent
    (found,) = [
        p
        for p in netns_dir.iterdir()
        if re.fullmatch(r"\d+-\w+", p.name) and network_id.startswith(p.name.split("-", 1)[1])
    ]
    return found


def _in_netns(netns: Path, *argv: str) -> Any:
    result = subprocess.run(
        ["nsenter", f"--net={netns}", "--", *argv], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


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


def test_the_trace_reports_every_hop(deployed: Stack) -> None:
    proc = trace_stack(deployed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for heading in (
        "0. Hosts",
        f"1. Client -> host {EXTERNAL_HOST}'s port",
        f"2. NAT table of host {EXTERNAL_HOST}",
        "3. Overlay",
        "4. External -> internal",
        "5. Summary",
    ):
        assert heading in text, heading
    assert "Problems" not in text
    print(text)  # the real output, for the README's "Across two hosts"


def test_the_request_went_to_external_hosts_address_through_gwbridge(
    traced: Traced,
    deployed: Stack,
    hosts: dict[str, Host],
    engines: dict[str, docker.DockerClient],
) -> None:
    data, _ = traced
    ma = hosts[EXTERNAL_HOST]
    out = deployed.outputs
    assert data["problems"] == []
    assert data["outputs"]["endpoint"] == out["endpoint"]
    assert data["request"]["target_ip"] == str(ma.address)
    assert (data["request"]["status"], data["request"]["path_kind"]) == (200, "dnat")
    # The DNAT rule leads to external's docker_gwbridge address, not its overlay IP.
    engine = engines[EXTERNAL_HOST]
    external = _container(engine, deployed, "external")
    gwbridge = engine.networks.get("docker_gwbridge").attrs["Containers"][external.id]
    gw_ip = gwbridge["IPv4Address"].split("/")[0]
    assert data["overlay"]["published_via"] == gw_ip != out["externalIp"]
    (rule,) = data["nat"]["dnat_rules"]
    assert rule["to_destination"].startswith(f"{gw_ip}:")
    assert data["nat"]["dnat_moved_by"] >= 1
    services = data["services"]
    assert services["internal_client_ip"] == out["externalIp"]
    assert services["internal_container_ip"] == out["internalIp"]
    traced_hosts = {h["name"]: h for h in data["hosts"]}
    assert traced_hosts[EXTERNAL_HOST]["services"] == ["external"]
    assert traced_hosts[INTERNAL_HOST]["services"] == ["internal"]
    # No sandboxes on the overlay: each service is one container, so no shared namespace.
    assert data.get("namespaces", []) == []


def test_vni_and_mtu_are_the_overlay_namespaces(
    traced: Traced,
    deployed: Stack,
    engines: dict[str, docker.DockerClient],
) -> None:
    data, _ = traced
    overlay = data["overlay"]
    views = {v["host"]: v for v in overlay["hosts"]}
    assert set(views) == {EXTERNAL_HOST, INTERNAL_HOST}
    for name, service in ((EXTERNAL_HOST, "external"), (INTERNAL_HOST, "internal")):
        container = _container(engines[name], deployed, service)
        netns = _overlay_netns(container, overlay["network_id"])
        (link,) = _in_netns(
            netns, "ip", "-j", "-d", "link", "show", "dev", views[name]["vxlan"]["name"]
        )
        info = link["linkinfo"]
        assert info["info_kind"] == "vxlan"
        assert views[name]["netns"] == str(netns)
        assert views[name]["vxlan"]["vni"] == info["info_data"]["id"]
        assert views[name]["vxlan"]["dstport"] == info["info_data"]["port"] == VXLAN_PORT
        assert views[name]["vxlan"]["mtu"] == link["mtu"]


def test_the_fdb_entry_for_internals_mac_names_host_b(
    traced: Traced,
    deployed: Stack,
    hosts: dict[str, Host],
    engines: dict[str, docker.DockerClient],
) -> None:
    data, _ = traced
    mb = hosts[INTERNAL_HOST]
    internal = _container(engines[INTERNAL_HOST], deployed, "internal")
    mac = internal.attrs["NetworkSettings"]["Networks"][deployed.outputs["networkName"]][
        "MacAddress"
    ].lower()
    forward = data["overlay"]["forward"]
    assert (forward["host"], forward["mac"]) == (EXTERNAL_HOST, mac)
    assert (forward["vtep"], forward["vtep_host"]) == (str(mb.address), INTERNAL_HOST)
    # The same entry, read here from host a's overlay namespace.
    external = _container(engines[EXTERNAL_HOST], deployed, "external")
    netns = _overlay_netns(external, data["overlay"]["network_id"])
    fdb = _in_netns(netns, "bridge", "-j", "fdb", "show", "dev", "vxlan0")
    assert {e.get("dst") for e in fdb if e["mac"] == mac and e.get("dst")} == {str(mb.address)}


def test_vxlan_packets_were_counted_on_both_hosts_during_the_request(
    traced: Traced, hosts: dict[str, Host]
) -> None:
    data, moved = traced
    for view in data["overlay"]["hosts"]:
        counts = {c["chain"]: c["delta"] for c in view["counts"]}
        assert set(counts) == {"INPUT", "OUTPUT"}, view
        assert all(delta > 0 for delta in counts.values()), view
    # The counting rules saw packets on both hosts while the trace ran...
    assert all(moved[name] > 0 for name in hosts), moved
    # ...and the trace's own rules are gone again.
    for host in hosts.values():
        dump = host.run(["iptables-save", "-t", "filter"]).stdout
        assert "c2c-trace-vxlan" not in dump


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


def test_destroy_leaves_nothing_on_either_engine(
    deployed: Stack, engines: dict[str, docker.DockerClient]
) -> None:
    deployed.destroy()
    for name, engine in engines.items():
        filters = stack_filter(deployed.name)
        assert engine.containers.list(all=True, filters=filters) == [], name
        assert engine.networks.list(filters=filters) == [], name
        assert engine.images.list(filters=filters) == [], name
