"""infra/__main__.py under Pulumi mocks: every resource, input, option and export."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from c2c_infra import ConfigError
from c2c_infra.context_hash import context_tag
from tests.unit.infra.infra_harness import (
    COMPONENT,
    CONTAINER,
    NETWORK,
    PROVIDER,
    REMOTE_IMAGE,
    REPO_ROOT,
    RecordingMocks,
    Registration,
    Run,
    fake_image_id,
    run_main,
)

STAGING = {
    "subnet": "10.213.0.0/24",
    "gateway": "10.213.0.254",
    "internalIp": "10.213.0.10",
    "externalIp": "10.213.0.11",
    "hostPort": "9090",
    "externalPort": "9081",
    "internalPort": "9080",
    "hostBindAddress": "127.0.0.1",
    "baseImage": "c2c-base/python:3.11-bookworm",
    "upstreamConnectTimeoutMs": "250",
    "upstreamReadTimeoutMs": "1500",
    "upstreamRetries": "0",
    "restartPolicy": "on-failure",
    "restartMaxRetries": "7",
    "memoryLimitMb": "128",
}


@pytest.fixture
def dev(services_dir: Path, defaults: dict[str, str]) -> Run:
    return run_main(defaults)


def env_of(container: Registration) -> dict[str, str]:
    pairs = (entry.split("=", 1) for entry in container.inputs["envs"])
    return {key: value for key, value in pairs}


def labels_of(entry: Registration) -> dict[str, str]:
    return {label["label"]: label["value"] for label in entry.inputs["labels"]}


# --- network ----------------------------------------------------------------------------


def test_one_user_defined_bridge_with_the_configured_ipam(dev: Run) -> None:
    (network,) = dev.of_type(NETWORK)
    assert network.inputs["name"] == "c2c-dev-net"
    assert network.inputs["driver"] == "bridge"
    assert network.inputs["ipamConfigs"] == [{"subnet": "172.13.0.0/16", "gateway": "172.13.0.1"}]
    assert labels_of(network) == {"c2c.project": "c2c", "c2c.stack": "dev"}
    # Fixed name: a replacement must remove the old network first.
    assert network.delete_before_replace


# --- containers: a sandbox and an app per service ----------------------------------------

SERVICES = ("internal", "external")
APP_NAME = re.compile(r"c2c-dev-(internal|external)-[0-9a-f]{12}")


def test_each_sandbox_has_its_static_ip_on_the_bridge_and_the_service_name(dev: Run) -> None:
    for service, address in (("internal", "172.13.0.2"), ("external", "172.13.0.3")):
        sandbox = dev.sandbox(service)
        assert sandbox.inputs["name"] == f"c2c-dev-{service}-sandbox"
        assert sandbox.inputs["networksAdvanced"] == [
            {"name": "c2c-dev-net", "ipv4Address": address}
        ]
        # The app reports it (Docker gives a container on another's network its hostname).
        assert sandbox.inputs["hostname"] == f"c2c-dev-{service}"


def test_each_app_joins_its_sandbox_network_namespace_and_nothing_else(dev: Run) -> None:
    for service in SERVICES:
        app = dev.app(service)
        # The mocks' ID of the sandbox resource.
        assert app.inputs["networkMode"] == f"container:c2c-{service}-id"
        for key in ("networksAdvanced", "ports", "hostname", "sysctls"):
            assert key not in app.inputs, key
        assert APP_NAME.fullmatch(app.inputs["name"])
        assert app.inputs["name"].startswith(f"c2c-dev-{service}-")


def test_only_the_external_sandbox_publishes_exactly_host_port_to_external_port(dev: Run) -> None:
    assert "ports" not in dev.sandbox("internal").inputs
    assert dev.sandbox("external").inputs["ports"] == [
        {"internal": 8081, "external": 8090, "ip": "0.0.0.0", "protocol": "tcp"}
    ]
    assert len([c for c in dev.of_type(CONTAINER) if c.inputs.get("ports")]) == 1
    assert len(dev.of_type(CONTAINER)) == 4


def test_external_reaches_internal_by_its_static_ip(dev: Run) -> None:
    env = env_of(dev.app("external"))
    assert env["INTERNAL_URL"] == "http://172.13.0.2:8080"
    assert env["PORT"] == "8081"
    assert env["UPSTREAM_CONNECT_TIMEOUT"] == "0.2"
    assert env["UPSTREAM_READ_TIMEOUT"] == "3.0"
    assert env["UPSTREAM_RETRIES"] == "2"


def test_internal_listens_on_its_port_and_knows_no_upstream(dev: Run) -> None:
    env = env_of(dev.app("internal"))
    assert env == {"PORT": "8080", "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4"}


@pytest.mark.parametrize(("service", "port"), [("internal", 8080), ("external", 8081)])
def test_app_hardening(dev: Run, service: str, port: int) -> None:
    inputs = dev.app(service).inputs
    assert inputs["user"] == "10001:10001"
    assert inputs["readOnly"] is True
    assert inputs["tmpfs"] == {"/tmp": "rw,noexec,nosuid,nodev,size=16m"}
    assert inputs["capabilities"] == {"drops": ["ALL"]}
    assert "adds" not in inputs["capabilities"]
    assert inputs["securityOpts"] == ["no-new-privileges:true"]
    assert inputs["memory"] == inputs["memorySwap"] == 256
    assert inputs["ulimits"] == [{"name": "nproc", "soft": 512, "hard": 512}]
    # Back by itself after a crash and after an engine restart (see Pulumi.yaml).
    assert inputs["restart"] == "unless-stopped"
    assert "maxRetryCount" not in inputs  # Docker refuses it outside on-failure
    assert inputs["mustRun"] is True
    assert inputs["wait"] is True
    assert inputs["waitTimeout"] == 90
    assert inputs["destroyGraceSeconds"] == 10
    assert inputs["logDriver"] == "json-file"
    assert inputs["logOpts"] == {"max-size": "10m", "max-file": "3"}
    assert "privileged" not in inputs
    # The image's HEALTHCHECK is the one probe (tests/unit/services/test_service_dockerfile.py);
    # it reads PORT.
    assert "healthcheck" not in inputs
    assert env_of(dev.app(service))["PORT"] == str(port)


@pytest.mark.parametrize("service", SERVICES)
def test_sandbox_hardening_and_its_one_sysctl(dev: Run, service: str) -> None:
    inputs = dev.sandbox(service).inputs
    base = dev.only_named(REMOTE_IMAGE, "c2c-base-image")
    assert inputs["image"] == fake_image_id(base.inputs["name"])
    assert inputs["command"] == ["sleep", "infinity"]
    assert inputs["user"] == "10001:10001"
    assert inputs["readOnly"] is True
    assert "tmpfs" not in inputs  # it writes nothing
    assert inputs["capabilities"] == {"drops": ["ALL"]}
    assert inputs["securityOpts"] == ["no-new-privileges:true"]
    assert inputs["memory"] == inputs["memorySwap"] == 16
    # Queued connections of a closing listener go to the next container's, not reset.
    assert inputs["sysctls"] == {"net.ipv4.tcp_migrate_req": "1"}
    assert inputs["restart"] == "unless-stopped"
    assert inputs["stopSignal"] == "SIGKILL"  # nothing to drain
    assert inputs["mustRun"] is True
    for key in ("wait", "destroyGraceSeconds", "envs", "privileged"):
        assert key not in inputs, key


def test_the_sandboxes_run_the_base_image_found_locally_and_kept(dev: Run) -> None:
    base = dev.only_named(REMOTE_IMAGE, "c2c-base-image")
    assert base.inputs == {"name": "c2c-base/python:3.11-bookworm", "keepLocally": True}


def test_container_labels_name_project_stack_service_and_role(dev: Run) -> None:
    for service in SERVICES:
        for role, container in (("sandbox", dev.sandbox(service)), ("app", dev.app(service))):
            assert labels_of(container) == {
                "c2c.project": "c2c",
                "c2c.stack": "dev",
                "c2c.service": service,
                "c2c.role": role,
            }


def test_replacement_and_ordering_options(dev: Run) -> None:
    (network,) = dev.of_type(NETWORK)
    for service in SERVICES:
        sandbox, app = dev.sandbox(service), dev.app(service)
        # Fixed name and static IP: the old sandbox must go before the new one starts.
        assert sandbox.delete_before_replace
        assert network.urn in sandbox.dependencies
        # The app is replaced create-first, against the provider's delete-first default.
        assert app.delete_before_replace_defined
        assert not app.delete_before_replace
        assert sandbox.urn in app.dependencies
        assert dev.image(service).urn in app.dependencies
    assert dev.app("internal").urn in dev.app("external").dependencies
    assert dev.app("external").urn not in dev.app("internal").dependencies


def test_everything_is_a_child_of_the_service_pair(dev: Run) -> None:
    (pair,) = dev.of_type(COMPONENT)
    assert pair.name == "c2c"
    children = [entry for entry in dev.registered if entry.type != COMPONENT]
    assert len(children) == 8  # network, 3 images (2 built, the base), 2 sandboxes, 2 apps
    for child in children:
        assert child.parent == pair.urn, child.name


# --- images -----------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["internal", "external"])
def test_images_are_built_locally_from_the_shared_context(
    dev: Run, services_dir: Path, service: str
) -> None:
    image = dev.image(service)
    args = {
        "BASE_IMAGE": "c2c-base/python:3.11-bookworm",
        "C2C_STACK": "dev",
        "SERVICE": service,
    }
    # The tag covers the Dockerfile, .dockerignore, common/ and this service's directory.
    tag = context_tag(services_dir, args, only=("common", service))
    assert image.inputs["name"] == f"c2c-dev-{service}:{tag}"
    assert image.inputs["build"] == {
        "context": str(services_dir),
        "dockerfile": "Dockerfile",
        "buildArgs": args,
        "useLegacyBuilder": True,
        "networkMode": "none",
        "remove": True,
        "forceRemove": True,
    }
    # The provider does not diff a build context: the content hash must force the rebuild.
    assert image.inputs["triggers"] == {"context": tag}
    assert image.inputs["keepLocally"] is False


def test_the_two_images_have_different_tags(dev: Run) -> None:
    internal = dev.image("internal").inputs["name"].split(":")[1]
    external = dev.image("external").inputs["name"].split(":")[1]
    assert internal != external


@pytest.mark.parametrize("service", ["internal", "external"])
def test_each_app_runs_its_own_image_by_id(dev: Run, service: str) -> None:
    image_name = dev.image(service).inputs["name"]
    assert dev.app(service).inputs["image"] == fake_image_id(image_name)


def test_default_services_dir_is_the_repo_services_folder() -> None:
    from c2c_infra import component

    assert component.default_services_dir() == REPO_ROOT / "services"


# --- exports ----------------------------------------------------------------------------


def test_exports(dev: Run) -> None:
    internal = dev.image("internal").inputs["name"]
    external = dev.image("external").inputs["name"]
    assert dev.outputs == {
        "endpoint": "http://localhost:8090",
        "internalHost": "default",
        "internalHostAddress": "localhost",
        "externalHost": "default",
        "externalHostAddress": "localhost",
        "networkDriver": "bridge",
        "internalIp": "172.13.0.2",
        "externalIp": "172.13.0.3",
        "subnet": "172.13.0.0/16",
        "gateway": "172.13.0.1",
        "networkName": "c2c-dev-net",
        "internalUrl": "http://172.13.0.2:8080",
        "internalImage": internal,
        "externalImage": external,
    }


def test_the_component_registers_the_same_outputs(dev: Run) -> None:
    (pair,) = dev.of_type(COMPONENT)
    assert dev.resource_outputs[pair.urn] == dev.outputs


# --- another stack ----------------------------------------------------------------------


def test_a_non_default_config_and_stack_flow_through(
    services_dir: Path, defaults: dict[str, str]
) -> None:
    run = run_main({**defaults, **STAGING}, stack="staging")
    (network,) = run.of_type(NETWORK)
    assert network.inputs["name"] == "c2c-staging-net"
    assert network.inputs["ipamConfigs"] == [{"subnet": "10.213.0.0/24", "gateway": "10.213.0.254"}]
    internal, external = run.app("internal"), run.app("external")
    assert run.sandbox("internal").inputs["name"] == "c2c-staging-internal-sandbox"
    assert run.sandbox("internal").inputs["networksAdvanced"][0]["ipv4Address"] == "10.213.0.10"
    assert run.sandbox("external").inputs["networksAdvanced"][0]["name"] == "c2c-staging-net"
    assert run.sandbox("external").inputs["networksAdvanced"][0]["ipv4Address"] == "10.213.0.11"
    assert run.sandbox("external").inputs["ports"] == [
        {"internal": 9081, "external": 9090, "ip": "127.0.0.1", "protocol": "tcp"}
    ]
    assert internal.inputs["name"].startswith("c2c-staging-internal-")
    env = env_of(external)
    assert env["INTERNAL_URL"] == "http://10.213.0.10:9080"
    assert env["PORT"] == "9081"
    assert (env["UPSTREAM_CONNECT_TIMEOUT"], env["UPSTREAM_READ_TIMEOUT"]) == ("0.25", "1.5")
    assert env["UPSTREAM_RETRIES"] == "0"
    assert env_of(internal)["PORT"] == "9080"
    assert internal.inputs["memory"] == 128
    assert internal.inputs["restart"] == "on-failure"
    assert internal.inputs["maxRetryCount"] == 7
    assert run.sandbox("internal").inputs["restart"] == "on-failure"
    assert run.sandbox("internal").inputs["maxRetryCount"] == 7
    assert labels_of(internal)["c2c.stack"] == "staging"
    image = run.image("internal")
    assert image.inputs["name"].startswith("c2c-staging-internal:")
    assert image.inputs["build"]["buildArgs"] == {
        "BASE_IMAGE": "c2c-base/python:3.11-bookworm",
        "C2C_STACK": "staging",
        "SERVICE": "internal",
    }
    assert run.outputs["endpoint"] == "http://127.0.0.1:9090"
    assert run.outputs["internalUrl"] == "http://10.213.0.10:9080"
    assert run.outputs["networkName"] == "c2c-staging-net"
    assert run.outputs["subnet"] == "10.213.0.0/24"


# --- what a change does -----------------------------------------------------------------


def test_an_unchanged_program_declares_identical_inputs(
    services_dir: Path, defaults: dict[str, str]
) -> None:
    first, second = run_main(defaults), run_main(defaults)
    assert first.inputs_by_name() == second.inputs_by_name()
    # component, network, 3 images, 2 sandboxes, 2 apps
    assert len(first.inputs_by_name()) == 9


def _changed_by(
    services_dir: Path, defaults: dict[str, str], change: Callable[[Path], object]
) -> set[str]:
    """Logical names whose inputs differ after `change(services_dir)`."""
    before = run_main(defaults)
    change(services_dir)
    after = run_main(defaults)
    old, new = before.inputs_by_name(), after.inputs_by_name()
    assert set(old) == set(new)
    return {name for name in old if old[name] != new[name]}


def test_a_change_to_internal_code_changes_only_internal_image_and_container(
    services_dir: Path, defaults: dict[str, str]
) -> None:
    before = run_main(defaults)
    (services_dir / "internal" / "app" / "main.py").write_text("SERVICE = 'internal v2'\n")
    after = run_main(defaults)
    old, new = before.inputs_by_name(), after.inputs_by_name()
    assert set(old) == set(new)
    changed = {name for name in old if old[name] != new[name]}
    # The app gets a new image and so a new name (create-first); the sandbox stays.
    assert changed == {"c2c-internal-image", "c2c-internal-app"}
    old_app, new_app = before.app("internal").inputs, after.app("internal").inputs
    assert new_app["image"] != old_app["image"]
    assert new_app["name"] != old_app["name"]
    assert {key for key in old_app if old_app[key] != new_app.get(key)} == {"image", "name"}


def test_a_change_to_external_code_changes_only_external_image_and_container(
    services_dir: Path, defaults: dict[str, str]
) -> None:
    def change(root: Path) -> None:
        (root / "external" / "app" / "new.py").write_text("X = 1\n")

    assert _changed_by(services_dir, defaults, change) == {
        "c2c-external-image",
        "c2c-external-app",
    }


@pytest.mark.parametrize("shared", ["common/shared.py", "Dockerfile", ".dockerignore"])
def test_a_change_to_what_both_images_use_changes_both(
    services_dir: Path, defaults: dict[str, str], shared: str
) -> None:
    def change(root: Path) -> None:
        with (root / shared).open("a") as handle:
            handle.write("\n# changed\n")

    assert _changed_by(services_dir, defaults, change) == {
        "c2c-internal-image",
        "c2c-internal-app",
        "c2c-external-image",
        "c2c-external-app",
    }


def test_a_setting_of_the_apps_gives_them_new_names_and_leaves_the_sandboxes(
    services_dir: Path, defaults: dict[str, str]
) -> None:
    # A replacement for a reason other than the image must be create-first too.
    before, after = run_main(defaults), run_main({**defaults, "workers": "3"})
    old, new = before.inputs_by_name(), after.inputs_by_name()
    assert {name for name in old if old[name] != new[name]} == {
        "c2c-internal-app",
        "c2c-external-app",
    }
    for service in SERVICES:
        assert before.app(service).inputs["name"] != after.app(service).inputs["name"]


@pytest.mark.parametrize(
    "ignored",
    [
        "internal/app/__pycache__/main.cpython-311.pyc",  # excluded inside the allow-list
        "external/app/stale.pyc",
        "internal/tests/test_app.py",  # outside the allow-list, in a service directory
        "README.md",  # outside the allow-list, next to the Dockerfile
    ],
)
def test_an_ignored_file_changes_nothing(
    services_dir: Path, defaults: dict[str, str], ignored: str
) -> None:
    def change(root: Path) -> None:
        (root / ignored).parent.mkdir(parents=True, exist_ok=True)
        (root / ignored).write_bytes(b"\x00")

    assert _changed_by(services_dir, defaults, change) == set()


# --- invalid config ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"subnet": "172.13.0.0/33"}, "c2c:subnet"),
        ({"gateway": "172.14.0.1"}, "c2c:gateway"),
        ({"internalIp": "172.13.255.255"}, "c2c:internalIp"),
        ({"externalIp": "172.13.0.1"}, "c2c:externalIp"),
        ({"externalIp": "172.13.0.2"}, "c2c:externalIp"),
        ({"hostPort": "65536"}, "c2c:hostPort"),
        ({"internalPort": "0"}, "c2c:internalPort"),
        ({"baseImage": ""}, "c2c:baseImage"),
    ],
)
def test_invalid_config_stops_the_program_before_any_resource(
    services_dir: Path, defaults: dict[str, str], overrides: dict[str, str], key: str
) -> None:
    mocks = RecordingMocks()
    with pytest.raises(ConfigError) as caught:
        run_main({**defaults, **overrides}, mocks=mocks)
    assert str(caught.value).startswith(f"{key}: ")
    assert mocks.registered == []


def test_a_missing_key_stops_the_program_before_any_resource(
    services_dir: Path, defaults: dict[str, str]
) -> None:
    config = {key: value for key, value in defaults.items() if key != "internalIp"}
    mocks = RecordingMocks()
    with pytest.raises(ConfigError, match=r"^c2c:internalIp: is required"):
        run_main(config, mocks=mocks)
    assert mocks.registered == []


def test_the_same_mocks_do_record_a_valid_run(services_dir: Path, defaults: dict[str, str]) -> None:
    # Guards the two tests above: an empty record must mean "nothing declared".
    mocks = RecordingMocks()
    run_main(defaults, mocks=mocks)
    assert len(mocks.registered) == 9


# --- hosts: one provider each, every resource on the host it lives on ---------------------

LAB_HOSTS = {
    "a": {"url": "unix:///run/c2c-lab/lab/a/docker.sock", "address": "198.18.0.1"},
    "b": {"url": "unix:///run/c2c-lab/lab/b/docker.sock", "address": "198.18.0.2"},
}


def on_hosts(defaults: dict[str, str], internal: str, external: str, **extra: str) -> Run:
    hosts = json.dumps(LAB_HOSTS)
    config = {**defaults, "hosts": hosts, "internalHost": internal, "externalHost": external}
    return run_main({**config, **extra}, stack="multihost")


@pytest.fixture
def across(services_dir: Path, defaults: dict[str, str]) -> Run:
    return on_hosts(defaults, internal="b", external="a")


def host_of(run: Run, entry: Registration) -> str:
    """The c2c:hosts name of the explicit provider `entry` was registered with."""
    providers = {provider.urn: provider.inputs["host"] for provider in run.of_type(PROVIDER)}
    by_url = {spec["url"]: name for name, spec in LAB_HOSTS.items()}
    return by_url[providers[run.provider_urn(entry)]]


def test_the_default_program_declares_no_provider(dev: Run) -> None:
    # Existing stacks keep the default provider: an explicit one would replace everything.
    assert dev.of_type(PROVIDER) == []
    assert all(entry.provider == "" for entry in dev.registered)


def test_one_provider_per_host_each_a_child_of_the_pair(across: Run) -> None:
    (pair,) = across.of_type(COMPONENT)
    providers = across.of_type(PROVIDER)
    assert {p.name: p.inputs["host"] for p in providers} == {
        "c2c-host-a": "unix:///run/c2c-lab/lab/a/docker.sock",
        "c2c-host-b": "unix:///run/c2c-lab/lab/b/docker.sock",
    }
    assert all(p.parent == pair.urn for p in providers)


def test_each_image_and_container_lives_on_the_host_that_runs_it(across: Run) -> None:
    for service, host in (("internal", "b"), ("external", "a")):
        assert host_of(across, across.image(service)) == host
        assert host_of(across, across.single(service)) == host


def test_on_an_overlay_each_service_is_one_container_that_owns_its_address(across: Run) -> None:
    # No sandboxes there (StackSettings.sandboxed): no app joins another's namespace, and no
    # base image is needed for a sandbox.
    assert sorted(c.name for c in across.of_type(CONTAINER)) == ["c2c-external", "c2c-internal"]
    assert not [image for image in across.of_type(REMOTE_IMAGE) if "base" in image.name]
    for service in ("internal", "external"):
        container = across.single(service)
        assert (
            container.inputs["name"] == container.inputs["hostname"] == f"c2c-multihost-{service}"
        )
        assert "networkMode" not in container.inputs
        assert "c2c.role" not in labels_of(container)
        assert container.inputs["restart"] == "unless-stopped"
        # A fixed name and address: replaced delete-first.
        assert container.delete_before_replace is True
    (port,) = across.single("external").inputs["ports"]
    assert port["external"] == 8090
    assert "ports" not in across.single("internal").inputs


def test_services_on_two_hosts_share_an_attachable_overlay_made_by_the_manager(
    across: Run,
) -> None:
    (network,) = across.of_type(NETWORK)
    assert host_of(across, network) == "a"
    assert network.inputs["driver"] == "overlay"
    assert network.inputs["attachable"] is True
    assert network.inputs["ipamConfigs"] == [
        {"subnet": "172.13.0.0/16", "gateway": "172.13.0.1", "ipRange": "172.13.128.0/17"}
    ]
    for service, address in (("internal", "172.13.0.2"), ("external", "172.13.0.3")):
        container = across.single(service)
        assert container.inputs["networksAdvanced"] == [
            {"name": "c2c-multihost-net", "ipv4Address": address}
        ]
        assert network.urn in container.dependencies


def test_a_named_swarm_manager_creates_the_overlay(
    services_dir: Path, defaults: dict[str, str]
) -> None:
    run = on_hosts(defaults, internal="b", external="a", swarmManager="b")
    (network,) = run.of_type(NETWORK)
    assert host_of(run, network) == "b"


def test_services_on_one_host_keep_the_bridge_there(
    services_dir: Path, defaults: dict[str, str]
) -> None:
    run = on_hosts(defaults, internal="b", external="b")
    (network,) = run.of_type(NETWORK)
    assert host_of(run, network) == "b"
    assert network.inputs["driver"] == "bridge"
    assert "attachable" not in network.inputs
    assert network.inputs["ipamConfigs"] == [{"subnet": "172.13.0.0/16", "gateway": "172.13.0.1"}]
    assert run.outputs["networkDriver"] == "bridge"
    assert run.outputs["endpoint"] == "http://198.18.0.2:8090"


def test_exports_say_where_each_service_runs(across: Run) -> None:
    assert {key: across.outputs[key] for key in across.outputs if "Host" in key} == {
        "internalHost": "b",
        "internalHostAddress": "198.18.0.2",
        "externalHost": "a",
        "externalHostAddress": "198.18.0.1",
    }
    assert across.outputs["networkDriver"] == "overlay"
    assert across.outputs["endpoint"] == "http://198.18.0.1:8090"
    (pair,) = across.of_type(COMPONENT)
    assert across.resource_outputs[pair.urn] == across.outputs


def test_a_specific_bind_address_is_the_endpoint_on_any_host(
    services_dir: Path, defaults: dict[str, str]
) -> None:
    run = on_hosts(defaults, internal="b", external="a", hostBindAddress="198.18.0.1")
    assert run.outputs["endpoint"] == "http://198.18.0.1:8090"
    assert run.sandbox("external").inputs["ports"][0]["ip"] == "198.18.0.1"
