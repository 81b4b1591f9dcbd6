"""c2c:internalReplicas: internal as a Swarm service of several replicas across the hosts, and
nothing of it while the key is 1 (the default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.infra.infra_harness import (
    CONTAINER,
    NETWORK,
    REMOTE_IMAGE,
    SERVICE,
    Run,
    run_main,
)
from tests.unit.infra.test_infra_config import assert_one_line_naming, load, rejected
from tests.unit.infra.test_infra_config import on_hosts as hosts_config
from tests.unit.infra.test_infra_program import env_of, host_of, labels_of, on_hosts

STACK_LABELS = {"c2c.project": "c2c", "c2c.stack": "multihost", "c2c.service": "internal"}
# What a stack with one internal container exported before replicas existed.
ONE_CONTAINER_OUTPUTS = {
    "endpoint",
    "internalHost",
    "internalHostAddress",
    "externalHost",
    "externalHostAddress",
    "networkDriver",
    "internalIp",
    "externalIp",
    "subnet",
    "gateway",
    "networkName",
    "internalUrl",
    "internalImage",
    "externalImage",
}


@pytest.fixture
def replicated(services_dir: Path, defaults: dict[str, str]) -> Run:
    return on_hosts(defaults, internal="b", external="a", internalReplicas="3")


def the_service(run: Run) -> Any:
    (service,) = run.of_type(SERVICE)
    return service


# --- config -------------------------------------------------------------------------------


def test_one_replica_is_the_default_and_keeps_the_static_ip(defaults: dict[str, str]) -> None:
    settings = load(defaults, **hosts_config())
    assert settings.internal_replicas == 1
    assert not settings.replicated
    assert settings.internal_url == "http://172.13.0.2:8080"
    assert [host.name for host in settings.replica_hosts] == ["b"]


def test_replicas_are_reached_by_the_service_name(defaults: dict[str, str]) -> None:
    settings = load(defaults, "e2e-rep", **hosts_config(internalReplicas="3"))
    assert settings.replicated
    assert settings.internal_url == "http://c2c-e2e-rep-internal:8080"
    assert [host.name for host in settings.replica_hosts] == ["a", "b"]


INVALID_REPLICAS = [
    ({"internalReplicas": "0"}, "c2c:internalReplicas", "is outside 1-16"),
    ({"internalReplicas": "17"}, "c2c:internalReplicas", "is outside 1-16"),
    ({"internalReplicas": "two"}, "c2c:internalReplicas", "is not an integer"),
    ({"internalReplicas": "2"}, "c2c:internalReplicas", "needs a multi-host stack"),
    (
        hosts_config(internalHost="a", internalReplicas="2"),
        "c2c:internalReplicas",
        "needs a multi-host stack",
    ),
    (
        hosts_config(internalReplicas="16", nprocLimit="300"),
        "c2c:internalReplicas",
        "16 replicas need c2c:nprocLimit 458 or more (c2c:nprocLimit is 300)",
    ),
    (
        {"upstreamMaxRequestsPerConnection": "0"},
        "c2c:upstreamMaxRequestsPerConnection",
        "is outside 1-1000",
    ),
]


@pytest.mark.parametrize(("overrides", "key", "phrase"), INVALID_REPLICAS)
def test_invalid_replicas_are_one_line_naming_the_key(
    defaults: dict[str, str], overrides: dict[str, str], key: str, phrase: str
) -> None:
    assert_one_line_naming(defaults, overrides, key, phrase)


def test_a_bad_placement_key_is_not_blamed_on_the_replicas(defaults: dict[str, str]) -> None:
    error = rejected(defaults, **hosts_config(internalHost="z", internalReplicas="3"))
    assert error.keys == ["c2c:internalHost"]


# --- one replica: exactly the program as it was -------------------------------------------


def test_with_one_replica_nothing_of_swarm_is_declared(
    services_dir: Path, defaults: dict[str, str]
) -> None:
    run = on_hosts(defaults, internal="b", external="a")
    assert run.of_type(SERVICE) == []
    # Each service's image (no sandboxes on an overlay, so no base image).
    assert len(run.of_type(REMOTE_IMAGE)) == 2
    assert run.single("internal").inputs["networksAdvanced"] == [
        {"name": "c2c-multihost-net", "ipv4Address": "172.13.0.2"}
    ]
    assert "UPSTREAM_MAX_REQUESTS_PER_CONNECTION" not in env_of(run.single("external"))
    assert set(run.outputs) == ONE_CONTAINER_OUTPUTS


@pytest.mark.parametrize("host_setup", ["default engine", "two hosts"])
def test_with_one_replica_the_new_keys_change_no_input(
    services_dir: Path, defaults: dict[str, str], host_setup: str
) -> None:
    # The keys' defaults against other values: an existing stack sees the same program.
    def run(**extra: str) -> Run:
        if host_setup == "two hosts":
            return on_hosts(defaults, internal="b", external="a", **extra)
        return run_main({**defaults, **extra})

    baseline = run()
    other = run(internalReplicas="1", upstreamMaxRequestsPerConnection="999")
    assert baseline.inputs_by_name() == other.inputs_by_name()
    assert baseline.outputs == other.outputs


# --- several replicas ---------------------------------------------------------------------


def test_internal_is_a_service_through_the_manager_not_a_container(replicated: Run) -> None:
    # External's one container only.
    assert [c.name for c in replicated.of_type(CONTAINER)] == ["c2c-external"]
    service = the_service(replicated)
    assert host_of(replicated, service) == "a"  # the Swarm manager (externalHost here)
    assert service.inputs["name"] == "c2c-multihost-internal"
    assert service.inputs["mode"] == {"replicated": {"replicas": 3}}
    assert service.inputs["endpointSpec"] == {"mode": "dnsrr"}
    assert service.delete_before_replace


def test_replicas_join_the_overlay_by_its_id(replicated: Run) -> None:
    (network,) = replicated.of_type(NETWORK)
    task = the_service(replicated).inputs["taskSpec"]
    assert task["networksAdvanceds"] == [{"id": "c2c-network-id"}]
    assert network.urn in the_service(replicated).dependencies


def test_every_host_builds_the_image_under_one_tag(replicated: Run) -> None:
    images = [e for e in replicated.of_type(REMOTE_IMAGE) if "-internal-image" in e.name]
    assert {host_of(replicated, image): image.name for image in images} == {
        "b": "c2c-internal-image",  # internal's host keeps its resource
        "a": "c2c-internal-image-on-a",
    }
    (tag,) = {image.inputs["name"] for image in images}
    assert {image.inputs["build"]["context"] for image in images} == {
        replicated.image("internal").inputs["build"]["context"]
    }
    service = the_service(replicated)
    # The tag, not an image ID: each host's build has its own ID.
    assert service.inputs["taskSpec"]["containerSpec"]["image"] == tag
    assert {image.urn for image in images} <= set(service.dependencies)


def test_turning_replicas_on_keeps_internal_s_image_as_it_was(
    services_dir: Path, defaults: dict[str, str], replicated: Run
) -> None:
    single = on_hosts(defaults, internal="b", external="a")
    assert (
        single.inputs_by_name()["c2c-internal-image"]
        == replicated.inputs_by_name()["c2c-internal-image"]
    )


def test_replicas_are_hardened_like_the_containers(replicated: Run) -> None:
    task = the_service(replicated).inputs["taskSpec"]
    spec = task["containerSpec"]
    assert spec["user"] == "10001:10001"
    assert spec["readOnly"] is True
    assert spec["capDrops"] == ["ALL"]
    assert spec["mounts"] == [
        {"type": "tmpfs", "target": "/tmp", "tmpfsOptions": {"sizeBytes": 16 << 20, "mode": 0o1777}}
    ]
    assert "healthcheck" not in spec  # the image's HEALTHCHECK
    assert spec["stopGracePeriod"] == "10s"
    assert spec["env"] == {"PORT": "8080", "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4"}
    assert spec["hostname"] == "{{.Service.Name}}-{{.Task.Slot}}"
    assert task["resources"] == {"limits": {"memoryBytes": 256 << 20}}
    assert task["logDriver"] == {
        "name": "json-file",
        "options": {"max-size": "10m", "max-file": "3"},
    }


def test_service_and_replicas_carry_the_stack_labels(replicated: Run) -> None:
    service = the_service(replicated)
    assert labels_of(service) == STACK_LABELS
    spec = service.inputs["taskSpec"]["containerSpec"]
    assert {label["label"]: label["value"] for label in spec["labels"]} == STACK_LABELS


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("no", {"condition": "none", "maxAttempts": 0}),
        ("on-failure", {"condition": "on-failure", "maxAttempts": 5}),
        ("always", {"condition": "any", "maxAttempts": 0}),
        ("unless-stopped", {"condition": "any", "maxAttempts": 0}),
    ],
)
def test_the_restart_policy_maps_to_swarm_s(
    services_dir: Path, defaults: dict[str, str], policy: str, expected: dict[str, Any]
) -> None:
    run = on_hosts(defaults, internal="b", external="a", internalReplicas="2", restartPolicy=policy)
    restart = the_service(run).inputs["taskSpec"]["restartPolicy"]
    assert restart == {**expected, "delay": "2s", "window": "0s"}


def test_external_calls_the_service_name_and_spreads_its_connections(replicated: Run) -> None:
    external = replicated.single("external")
    env = env_of(external)
    assert env["INTERNAL_URL"] == "http://c2c-multihost-internal:8080"
    assert env["UPSTREAM_MAX_REQUESTS_PER_CONNECTION"] == "4"
    assert the_service(replicated).urn in external.dependencies


def test_exports_name_the_service_instead_of_a_static_ip(replicated: Run) -> None:
    outputs = replicated.outputs
    assert set(outputs) == ONE_CONTAINER_OUTPUTS - {
        "internalHost",
        "internalHostAddress",
        "internalIp",
    } | {"internalService", "internalReplicas", "internalHosts"}
    assert outputs["internalService"] == "c2c-multihost-internal"
    assert outputs["internalReplicas"] == 3
    assert outputs["internalHosts"] == ["a", "b"]
    assert outputs["internalUrl"] == "http://c2c-multihost-internal:8080"
    assert outputs["networkDriver"] == "overlay"
