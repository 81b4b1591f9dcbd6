"""`make trace` on a replicated internal: three replicas of a Swarm service (endpoint mode dnsrr)
over the lab's two hosts, external on ma calling them by service name. The trace must name the
DNS name instead of a static IP, list every replica as the engines report it, and follow the one
replica internal's answer names.

Runs as root on the two-host lab of the conftest (one per module). The trace's one request goes
to ma's underlay address; nothing here sends to an overlay address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from lab import Host
from lab.stacks import Project, Stack, stack_filter
from tests.e2e.harness import EXTERNAL_HOST, require_root, two_host_stack
from tests.e2e.test_multihost_trace import _trace

REPLICAS = 3


@pytest.fixture(autouse=True)
def _root_only() -> None:
    require_root("the lab and the trace need root")


@pytest.fixture(scope="module")
def replicated(project: Project, multihost_hosts: dict[str, Host]) -> Iterator[Stack]:
    """internal as REPLICAS replicas over the lab's hosts, external on ma; deployed."""
    with two_host_stack(project, multihost_hosts, "rtr", internalReplicas=str(REPLICAS)) as stack:
        yield stack.ensure_up()


@pytest.fixture(scope="module")
def traced(replicated: Stack) -> dict[str, Any]:
    result = _trace(replicated, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _engine_replicas(
    engines: dict[str, docker.DockerClient], stack: Stack
) -> dict[str, tuple[str, str, str, str]]:
    """container name -> (host, hostname, overlay ip, mac) of every running replica, per engine."""
    filters = stack_filter(stack.name)
    filters["label"].append("c2c.service=internal")
    network = stack.outputs["networkName"]
    found = {}
    for host, engine in engines.items():
        for c in engine.containers.list(filters=filters):
            net = c.attrs["NetworkSettings"]["Networks"][network]
            found[c.name] = (
                host,
                c.attrs["Config"]["Hostname"],
                net["IPAddress"],
                net["MacAddress"].lower(),
            )
    return found


def test_the_trace_names_the_service_instead_of_a_static_ip(
    replicated: Stack, traced: dict[str, Any]
) -> None:
    replicas = traced["overlay"]["replicas"]
    assert replicas["dns_name"] == replicated.outputs["internalService"]
    assert replicas["service"] == replicated.outputs["internalService"]
    assert traced["services"]["internal_url"] == replicated.outputs["internalUrl"]
    assert traced["outputs"]["internal_ip"] == ""
    assert replicas["resolver"] == "127.0.0.11"
    assert sorted(replicas["dns_answer"]) == sorted(r["ipv4"] for r in replicas["replicas"])
    assert traced["problems"] == []
    # No sandboxes on an overlay: external is one container, the replicas Swarm's tasks, each
    # in its own namespace.
    assert traced.get("namespaces", []) == []


def test_the_trace_lists_the_replicas_the_engines_report(
    replicated: Stack,
    traced: dict[str, Any],
    multihost_engines: dict[str, docker.DockerClient],
) -> None:
    listed = {
        r["container"]: (r["host"], r["hostname"], r["ipv4"], r["mac"])
        for r in traced["overlay"]["replicas"]["replicas"]
    }
    assert listed == _engine_replicas(multihost_engines, replicated)
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


def test_the_text_report_shows_name_replicas_and_path(replicated: Stack) -> None:
    result = _trace(replicated)
    assert result.returncode == 0, result.stdout + result.stderr
    flat = " ".join(result.stdout.split())
    service = replicated.outputs["internalService"]
    assert f"external reaches them by the DNS name {service}" in flat
    assert f"Docker's embedded DNS 127.0.0.11 answers {service} with" in flat
    assert "answered the traced request" in flat
    assert f"{REPLICAS} running replicas" in flat
