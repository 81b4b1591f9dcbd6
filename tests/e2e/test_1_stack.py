"""The default stack, deployed for real: answer, wiring, idempotence, redeploy, outage."""

from __future__ import annotations

import ipaddress

import docker

from lab.stacks import NO_DOCKER_OBJECTS, Engine, Stack
from tests.e2e import harness
from tests.e2e.harness import ALT_CONFIG


def test_outputs_match_the_default_config(deployed_stack: Stack) -> None:
    out = deployed_stack.outputs
    assert out["endpoint"] == "http://localhost:8090"
    assert out["subnet"] == "172.13.0.0/16"
    assert out["gateway"] == "172.13.0.1"
    assert out["internalIp"] == "172.13.0.2"
    assert out["externalIp"] == "172.13.0.3"
    assert out["internalUrl"] == "http://172.13.0.2:8080"
    assert out["networkName"] == f"c2c-{deployed_stack.name}-net"


def test_endpoint_answers_with_the_chained_json(deployed_stack: Stack) -> None:
    status, body, _ = deployed_stack.get_json()
    assert status == 200
    assert body["service"] == "external"
    assert body["container_ip"] == "172.13.0.3"
    # curl to localhost is accepted by docker-proxy, which opens a new connection to the
    # container from the bridge's gateway address.
    assert body["client_ip"] == "172.13.0.1"
    upstream = body["upstream"]
    assert upstream["service"] == "internal"
    assert upstream["container_ip"] == "172.13.0.2"
    # internal saw external's own address: container to container, straight over the bridge.
    assert upstream["client_ip"] == "172.13.0.3"
    assert isinstance(body["upstream_ms"], float)
    assert body["upstream_ms"] > 0


def test_containers_sit_on_the_bridge_with_the_configured_ips(
    deployed_stack: Stack, docker_client: docker.DockerClient
) -> None:
    network = docker_client.networks.get(deployed_stack.outputs["networkName"])
    assert network.attrs["Driver"] == "bridge"
    ipam = network.attrs["IPAM"]["Config"][0]
    assert (ipam["Subnet"], ipam["Gateway"]) == ("172.13.0.0/16", "172.13.0.1")
    assert network.attrs["Labels"]["c2c.stack"] == deployed_stack.name
    attached = {
        c["Name"]: c["IPv4Address"].split("/")[0] for c in network.attrs["Containers"].values()
    }
    # The sandboxes hold the addresses; the apps share their namespaces and are not attached.
    assert attached == {
        deployed_stack.sandbox_name("internal"): "172.13.0.2",
        deployed_stack.sandbox_name("external"): "172.13.0.3",
    }
    for service in ("internal", "external"):
        app = deployed_stack.container(service)
        sandbox = deployed_stack.sandbox(service)
        assert app.attrs["HostConfig"]["NetworkMode"] == f"container:{sandbox.id}"


def test_only_external_publishes_a_port(deployed_stack: Stack) -> None:
    # The port bindings are the sandboxes' (they own the network identity).
    internal = deployed_stack.sandbox("internal")
    external = deployed_stack.sandbox("external")
    assert not internal.attrs["HostConfig"]["PortBindings"]
    assert not any(internal.attrs["NetworkSettings"]["Ports"].values() or [None])
    bindings = external.attrs["HostConfig"]["PortBindings"]
    assert list(bindings) == ["8081/tcp"]
    assert [b["HostPort"] for b in bindings["8081/tcp"]] == ["8090"]


def _nat_rules(engine: Engine) -> str:
    return engine.run("iptables-save", "-t", "nat").stdout


def test_nat_table_holds_the_dnat_rule(deployed_stack: Stack) -> None:
    harness.require_root("reading the nat table")
    rules = [line for line in _nat_rules(deployed_stack.engine).splitlines() if "DNAT" in line]
    expected = [r for r in rules if "--dport 8090" in r and "172.13.0.3:8081" in r]
    assert expected, "no DNAT 8090 -> 172.13.0.3:8081 in:\n" + "\n".join(rules)
    assert not any("172.13.0.2" in r for r in rules), "internal must have no DNAT rule"


def test_second_up_changes_nothing(deployed_stack: Stack) -> None:
    deployed_stack.preview(expect_no_changes=True)
    up = deployed_stack.up(expect_no_changes=True)
    assert "error" not in up.stderr.lower()


def test_internal_stopped_gives_502_then_recovers(deployed_stack: Stack) -> None:
    # The app stops; its sandbox keeps the address, so the connect is refused at once.
    internal = deployed_stack.container("internal")
    internal.stop(timeout=5)
    try:
        status, body, elapsed = deployed_stack.get_json()
        assert status == 502
        assert body["status"] == 502
        assert elapsed < 1.0
    finally:
        internal.start()
    deployed_stack.wait_for_status(200, within=30)


def test_code_change_replaces_only_internal(deployed_stack: Stack) -> None:
    before = deployed_stack.container_ids()
    marker = "redeployed-by-e2e"
    harness.add_field_to_internal_answer(deployed_stack.workdir, "revision", marker)

    ops = deployed_stack.preview()
    # Exactly internal's image and app container are replaced; the network, internal's
    # sandbox (resource c2c-internal) and external stay.
    assert set(ops) == {
        "docker:index/remoteImage:RemoteImage::c2c-internal-image",
        "docker:index/container:Container::c2c-internal-app",
    }, ops
    assert set().union(*ops.values()) <= {"replace", "create-replacement", "delete-replaced"}, ops

    deployed_stack.up()
    after = deployed_stack.container_ids()
    changed = {key for key in before if after[key] != before[key]}
    assert changed == {"internal/app"}, (before, after)
    deployed_stack.wait_for_status(200, within=30)
    status, body, _ = deployed_stack.get_json()
    assert status == 200
    assert body["upstream"]["revision"] == marker
    assert body["upstream"]["container_ip"] == "172.13.0.2"


def test_second_stack_lives_beside_the_first(deployed_stack: Stack, alt_stack: Stack) -> None:
    out = alt_stack.outputs
    assert out["endpoint"] == f"http://localhost:{ALT_CONFIG['hostPort']}"
    assert out["internalUrl"] == (f"http://{ALT_CONFIG['internalIp']}:{ALT_CONFIG['internalPort']}")
    status, body, _ = alt_stack.get_json()
    assert status == 200
    assert body["container_ip"] == ALT_CONFIG["externalIp"]
    assert body["client_ip"] == ALT_CONFIG["gateway"]
    assert body["upstream"]["container_ip"] == ALT_CONFIG["internalIp"]
    assert body["upstream"]["client_ip"] == ALT_CONFIG["externalIp"]
    assert ipaddress.ip_address(body["upstream"]["client_ip"]) in ipaddress.ip_network(
        ALT_CONFIG["subnet"]
    )
    # The first stack still answers on its own port.
    assert deployed_stack.get_json()[0] == 200
    nat = _nat_rules(alt_stack.engine)
    alt_dnat = f"--dport {ALT_CONFIG['hostPort']} "
    alt_target = f"{ALT_CONFIG['externalIp']}:{ALT_CONFIG['externalPort']}"
    assert any(alt_dnat in r and alt_target in r for r in nat.splitlines()), nat


def test_destroy_of_the_second_stack_leaves_nothing(alt_stack: Stack) -> None:
    alt_stack.destroy()
    assert alt_stack.docker_objects() == NO_DOCKER_OBJECTS
    assert alt_stack.resource_types() == []
