"""The packet trace against a really deployed stack (default config: 0.0.0.0:8090 -> 8081).

The trace sends its one request to the stack's gateway (the host's own address on the stack's
bridge): a connection the host opens to a local, non-loopback address passes the nat table's
OUTPUT chain into DOCKER and so through the DNAT rule. A request to 127.0.0.1 would not: the
OUTPUT jump excludes 127.0.0.0/8 while the userland proxy is on, and docker-proxy serves it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest

from lab.stacks import REPO_ROOT, Engine, Stack
from packet_trace.analyze import dnat_rules_for
from packet_trace.parse import parse_iptables_save
from tests.e2e import harness

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _root_only() -> None:
    # Reading the nat table needs root; CI and `make test` run as root.
    harness.require_root("the trace reads the nat table")


def _trace(stack: Stack, *extra: str) -> subprocess.CompletedProcess[str]:
    trace = (sys.executable, "-m", "packet_trace", "--stack", stack.name)
    return subprocess.run(
        stack.engine.command(*trace, *extra),
        env={**os.environ, **stack.engine.env()},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )


def _trace_json(stack: Stack, *extra: str) -> dict[str, Any]:
    proc = _trace(stack, "--json", *extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _dnat_packets(engine: Engine, host_port: int, external_ip: str, external_port: int) -> int:
    text = engine.run("iptables-save", "-t", "nat", "-c").stdout
    rules = dnat_rules_for(parse_iptables_save(text), host_port, external_ip, external_port)
    assert len(rules) == 1, text
    return rules[0].packets


def test_trace_facts_match_the_stack_outputs(deployed_stack: Stack) -> None:
    out = deployed_stack.outputs
    data = _trace_json(deployed_stack)
    assert data["problems"] == []
    assert data["outputs"] == {
        "stack": deployed_stack.name,
        "endpoint": out["endpoint"],
        "internal_ip": out["internalIp"],
        "external_ip": out["externalIp"],
        "subnet": out["subnet"],
        "gateway": out["gateway"],
        "network_name": out["networkName"],
        "internal_url": out["internalUrl"],
        "host_port": urlsplit(out["endpoint"]).port,
    }
    bridge = data["bridge"]
    assert (bridge["network_name"], bridge["subnet"], bridge["gateway"]) == (
        out["networkName"],
        out["subnet"],
        out["gateway"],
    )
    assert bridge["interface_present"]
    assert bridge["interface"].startswith("br-")
    assert {e["ipv4"] for e in bridge["endpoints"]} == {out["internalIp"], out["externalIp"]}
    # The addresses are the sandboxes': the apps have no network of their own.
    assert {e["container"] for e in bridge["endpoints"]} == {
        deployed_stack.sandbox_name(s) for s in ("internal", "external")
    }
    for endpoint in bridge["endpoints"]:
        assert endpoint["host_veth"], endpoint
        assert endpoint["veth_master"] == bridge["interface"]

    host_port = data["host_port"]
    assert host_port["port"] == data["outputs"]["host_port"]
    for listener in host_port["listeners"]:
        assert listener["process"], "run as root, ss names the process"
    rule = data["nat"]["dnat_rules"][0]
    assert rule["dport"] == host_port["port"]
    assert rule["to_destination"] == f"{out['externalIp']}:{host_port['container_port']}"

    services = data["services"]
    assert services["internal_url"] == out["internalUrl"]
    assert services["external_container_ip"] == out["externalIp"]
    assert services["internal_container_ip"] == out["internalIp"]
    # On the bridge there is no NAT: internal sees external's own address.
    assert services["internal_client_ip"] == out["externalIp"]
    assert services["total_ms"] > 0
    assert services["upstream_ms"] > 0
    # Each service reports its sandbox's hostname, the service's name.
    assert services["internal_hostname"] == deployed_stack.service_name("internal")
    assert services["external_hostname"] == deployed_stack.service_name("external")


def test_listeners_in_each_namespace_belong_to_the_app(deployed_stack: Stack) -> None:
    data = _trace_json(deployed_stack, "--no-request")
    settings = deployed_stack.settings()
    spaces = {n["service"]: n for n in data["namespaces"]}
    assert sorted(spaces) == ["external", "internal"]
    for service, space in spaces.items():
        app = deployed_stack.container(service)
        sandbox = deployed_stack.container(service, "sandbox")
        assert (space["sandbox"], space["hostname"]) == (
            sandbox.name,
            deployed_stack.service_name(service),
        )
        assert space["apps"] == [
            {"name": app.name, "running": True, "pid": app.attrs["State"]["Pid"]}
        ]
        port = int(settings[f"{service}Port"])
        workers = [x for x in space["listeners"] if x["port"] == port]
        # gunicorn's reuse_port: every worker holds its own listener, all of them the app's.
        assert len(workers) == int(settings["workers"]), space["listeners"]
        assert {(x["process"], x["container"]) for x in workers} == {("gunicorn", app.name)}
        assert len({x["pid"] for x in workers}) == len(workers)


def test_dnat_counter_moves_by_at_least_one(deployed_stack: Stack) -> None:
    out = deployed_stack.outputs
    host_port = urlsplit(out["endpoint"]).port
    # Read the counter ourselves too, so the trace's own before/after is checked independently.
    probe = _trace_json(deployed_stack, "--no-request")
    container_port = probe["host_port"]["container_port"]
    before = _dnat_packets(deployed_stack.engine, host_port, out["externalIp"], container_port)

    data = _trace_json(deployed_stack)
    after = _dnat_packets(deployed_stack.engine, host_port, out["externalIp"], container_port)

    request = data["request"]
    assert request["path_kind"] == "dnat", request
    # The gateway while the userland proxy is on; 127.0.0.1 itself when dockerd runs without it.
    assert request["target_ip"] in (out["gateway"], "127.0.0.1")
    assert data["nat"]["dnat_moved_by"] >= 1
    assert after - before >= 1
    moved_chains = {m["chain"] for m in data["nat"]["moves"]}
    assert {"OUTPUT", "DOCKER"} <= moved_chains
    if request["target_ip"] == out["gateway"]:
        # A host connecting to one of its own addresses uses that address as the source.
        assert data["services"]["external_client_ip"] == out["gateway"]


def test_loopback_request_goes_through_docker_proxy(deployed_stack: Stack) -> None:
    data = _trace_json(deployed_stack, "--via", "loopback")
    out = deployed_stack.outputs
    # The suite's engines run with dockerd's default userland proxy, so docker-proxy listens.
    assert data["host_port"]["listeners"], "no docker-proxy: is the userland proxy off?"
    assert data["request"]["path_kind"] == "docker-proxy"
    assert data["nat"]["dnat_moved_by"] == 0
    # docker-proxy connects to external from the host's address on the bridge.
    assert data["services"]["external_client_ip"] == out["gateway"]


def test_text_report_has_five_parts(deployed_stack: Stack) -> None:
    proc = _trace(deployed_stack)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for heading in ("1. Client", "2. NAT table", "3. Bridge", "4. External", "5. Summary"):
        assert heading in text
    summary = text.split("5. Summary", 1)[1]
    for fact in (deployed_stack.outputs["externalIp"], deployed_stack.outputs["internalUrl"]):
        assert fact in summary
