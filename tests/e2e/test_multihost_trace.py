"""`make trace` across two hosts, on a live deployment: the multi-host stack of the conftest (a
two-host lab in one Swarm, internal on mb, external on ma), traced from the host namespace as
`python -m packet_trace --stack-file <its stack file>`. Each fact the trace reports is read
again here, independently, from the engines and from the overlay's namespaces.

Runs as root (the lab, the nat table, nsenter). The trace's one request goes to ma's underlay
address; nothing here sends to an overlay address (172.13.0.0/16 is not routed to the lab from
the host namespace)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from lab import Host
from lab.stacks import REPO_ROOT, Engine, Stack, timed
from tests.e2e.harness import EXTERNAL_HOST, INTERNAL_HOST, require_root

VXLAN_PORT = 4789
# This test's own counting rules (no target), beside the ones the trace adds for its request.
COMMENT = "c2c-e2e-trace-vxlan"
TRACE_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def _root_only() -> None:
    require_root("the lab and the trace need root")


@pytest.fixture(scope="module")
def deployed(multihost_stack: Stack) -> Stack:
    return multihost_stack.ensure_up()


@pytest.fixture(scope="module")
def counting(multihost_hosts: dict[str, Host]) -> Iterator[dict[str, Host]]:
    """Rules counting UDP to the VXLAN port in and out of each lab host, removed afterwards."""
    rules = [
        (chain, ["-p", "udp", "--dport", str(VXLAN_PORT), "-m", "comment", "--comment", COMMENT])
        for chain in ("INPUT", "OUTPUT")
    ]
    for host in multihost_hosts.values():
        for chain, rule in rules:
            result = host.run(["iptables", "-w", "-I", chain, "1", *rule])
            assert result.returncode == 0, result.stderr
    yield multihost_hosts
    for host in multihost_hosts.values():
        for chain, rule in rules:
            host.run(["iptables", "-w", "-D", chain, *rule])


def _counted(host: Host) -> int:
    """Packets this test's rules counted so far in `host`'s namespace, both ways."""
    dump = host.run(["iptables-save", "-c", "-t", "filter"])
    assert dump.returncode == 0, dump.stderr
    found = re.findall(rf"^\[(\d+):\d+\] -A \w+ .*--comment {COMMENT}", dump.stdout, re.M)
    assert len(found) == 2, dump.stdout
    return sum(int(n) for n in found)


def _trace(stack: Stack, *extra: str) -> subprocess.CompletedProcess[str]:
    stack_file = stack.workdir / f"Pulumi.{stack.name}.yaml"
    argv = [sys.executable, "-m", "packet_trace", "--stack", stack.name]
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}  # the file names the engines
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


@pytest.fixture(scope="module")
def traced(deployed: Stack, counting: dict[str, Host]) -> tuple[dict[str, Any], dict[str, int]]:
    """One trace run (--json) and how many VXLAN packets this test counted on each host
    while it ran."""
    before = {name: _counted(host) for name, host in counting.items()}
    proc = _trace(deployed, "--json")
    moved = {name: _counted(host) - before[name] for name, host in counting.items()}
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return data, moved


def test_the_trace_reports_every_hop(deployed: Stack, multihost_client: Engine) -> None:
    proc = _trace(deployed)
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
    traced: tuple[dict[str, Any], dict[str, int]],
    deployed: Stack,
    multihost_hosts: dict[str, Host],
    multihost_engines: dict[str, docker.DockerClient],
) -> None:
    data, _ = traced
    ma = multihost_hosts[EXTERNAL_HOST]
    out = deployed.outputs
    assert data["problems"] == []
    assert data["outputs"]["endpoint"] == out["endpoint"]
    assert data["request"]["target_ip"] == str(ma.address)
    assert (data["request"]["status"], data["request"]["path_kind"]) == (200, "dnat")
    # The DNAT rule leads to external's docker_gwbridge address, not its overlay IP.
    engine = multihost_engines[EXTERNAL_HOST]
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
    hosts = {h["name"]: h for h in data["hosts"]}
    assert hosts[EXTERNAL_HOST]["services"] == ["external"]
    assert hosts[INTERNAL_HOST]["services"] == ["internal"]
    # No sandboxes on the overlay: each service is one container, so no shared namespace.
    assert data.get("namespaces", []) == []


def test_vni_and_mtu_are_the_overlay_namespaces(
    traced: tuple[dict[str, Any], dict[str, int]],
    deployed: Stack,
    multihost_engines: dict[str, docker.DockerClient],
) -> None:
    data, _ = traced
    overlay = data["overlay"]
    views = {v["host"]: v for v in overlay["hosts"]}
    assert set(views) == {EXTERNAL_HOST, INTERNAL_HOST}
    for name, service in ((EXTERNAL_HOST, "external"), (INTERNAL_HOST, "internal")):
        container = _container(multihost_engines[name], deployed, service)
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
    traced: tuple[dict[str, Any], dict[str, int]],
    deployed: Stack,
    multihost_hosts: dict[str, Host],
    multihost_engines: dict[str, docker.DockerClient],
) -> None:
    data, _ = traced
    mb = multihost_hosts[INTERNAL_HOST]
    internal = _container(multihost_engines[INTERNAL_HOST], deployed, "internal")
    mac = internal.attrs["NetworkSettings"]["Networks"][deployed.outputs["networkName"]][
        "MacAddress"
    ].lower()
    forward = data["overlay"]["forward"]
    assert (forward["host"], forward["mac"]) == (EXTERNAL_HOST, mac)
    assert (forward["vtep"], forward["vtep_host"]) == (str(mb.address), INTERNAL_HOST)
    # The same entry, read here from host a's overlay namespace.
    external = _container(multihost_engines[EXTERNAL_HOST], deployed, "external")
    netns = _overlay_netns(external, data["overlay"]["network_id"])
    fdb = _in_netns(netns, "bridge", "-j", "fdb", "show", "dev", "vxlan0")
    assert {e.get("dst") for e in fdb if e["mac"] == mac and e.get("dst")} == {str(mb.address)}


def test_vxlan_packets_were_counted_on_both_hosts_during_the_request(
    traced: tuple[dict[str, Any], dict[str, int]], multihost_hosts: dict[str, Host]
) -> None:
    data, moved = traced
    for view in data["overlay"]["hosts"]:
        counts = {c["chain"]: c["delta"] for c in view["counts"]}
        assert set(counts) == {"INPUT", "OUTPUT"}, view
        assert all(delta > 0 for delta in counts.values()), view
    # This test's own rules saw packets on both hosts while the trace ran...
    assert all(moved[name] > 0 for name in multihost_hosts), moved
    # ...and the trace's own rules are gone again.
    for host in multihost_hosts.values():
        dump = host.run(["iptables-save", "-t", "filter"]).stdout
        assert "c2c-trace-vxlan" not in dump
