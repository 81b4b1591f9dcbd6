"""Pulumi.yaml and Pulumi.dev.yaml agree with each other and with what the program reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from c2c_infra.config import CONFIG_TYPES, load_settings
from tests.unit.infra.infra_harness import REPO_ROOT, config_text, run_main


def read_yaml(name: str) -> Any:
    return yaml.safe_load((REPO_ROOT / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def project() -> Any:
    return read_yaml("Pulumi.yaml")


@pytest.fixture(scope="module")
def dev_config() -> dict[str, Any]:
    # Only what differs from Pulumi.yaml's defaults: possibly nothing at all.
    config: dict[str, Any] = read_yaml("Pulumi.dev.yaml").get("config") or {}
    return config


def test_project_runs_the_python_program_in_infra_from_the_repo_venv(project: Any) -> None:
    assert project["name"] == "c2c"
    assert project["runtime"] == {"name": "python", "options": {"virtualenv": ".venv"}}
    assert project["main"] == "infra/"
    assert (REPO_ROOT / project["main"] / "__main__.py").is_file()


def test_state_lives_in_a_local_file_backend(project: Any) -> None:
    assert project["backend"] == {"url": "file://.pulumi-state"}


def test_every_key_the_program_reads_is_declared_with_type_default_and_description(
    project: Any,
) -> None:
    declared = project["config"]
    assert set(declared) == set(CONFIG_TYPES)
    yaml_types = {"string": str, "integer": int, "object": dict}
    for key, spec in declared.items():
        assert spec["type"] == CONFIG_TYPES[key], key
        assert isinstance(spec["default"], yaml_types[spec["type"]]), key
        assert len(spec["description"]) > 20, key


def test_issue_table_defaults(project: Any) -> None:
    defaults = {key: spec["default"] for key, spec in project["config"].items()}
    assert {
        key: defaults[key]
        for key in (
            "subnet",
            "gateway",
            "internalIp",
            "externalIp",
            "hostPort",
            "externalPort",
            "internalPort",
            "baseImage",
            "hostBindAddress",
        )
    } == {
        "subnet": "172.13.0.0/16",
        "gateway": "172.13.0.1",
        "internalIp": "172.13.0.2",
        "externalIp": "172.13.0.3",
        "hostPort": 8090,
        "externalPort": 8081,
        "internalPort": 8080,
        "baseImage": "c2c-base/python:3.11-bookworm",
        "hostBindAddress": "0.0.0.0",
    }


def test_base_image_default_is_the_dockerfiles_default(project: Any) -> None:
    default = project["config"]["baseImage"]["default"]
    dockerfile = (REPO_ROOT / "services" / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={default}\n" in dockerfile


def test_dev_stack_sets_no_key(dev_config: dict[str, Any]) -> None:
    # The dev stack is the project's defaults, which live in Pulumi.yaml alone; and `make up`
    # writes nothing here, so no machine-local setting ends up in a commit.
    assert dev_config == {}


def test_dev_stack_keeps_the_salt_of_its_documented_passphrase() -> None:
    # The salt pairs with the dev passphrase (scripts/pulumi-env.sh); a new one would only be
    # needed with a new passphrase, so the file keeps exactly this line.
    text = (REPO_ROOT / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    assert (
        "encryptionsalt: v1:W01JzVJilyQ=:v1:q1SDvQjn2HP2Oay9:As5nohJ2JNnhi9g87+i3ZN23ZaZT+w==\n"
        in text
    )


def test_dev_stack_config_is_valid(defaults: dict[str, str], dev_config: dict[str, Any]) -> None:
    # As the CLI hands it to the program: the project defaults, then the stack's own values.
    values = {**defaults, **{key.removeprefix("c2c:"): str(v) for key, v in dev_config.items()}}
    settings = load_settings(values, "dev")
    assert settings.endpoint == "http://localhost:8090"


def test_readme_tables_document_every_config_key_with_its_default_and_every_export(
    project: Any, services_dir: Path, defaults: dict[str, str]
) -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    rows = {
        cells[1].strip("` "): cells[2].strip("` ")
        for line in readme.splitlines()
        if line.startswith("| `c2c:") and len(cells := line.split("|")) > 3
    }
    assert rows == {
        f"c2c:{key}": config_text(spec["default"]) for key, spec in project["config"].items()
    }
    exports = run_main(defaults).outputs
    assert exports
    for name in exports:
        assert f"`{name}`" in readme, name


# --- the lab stack ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multihost_config() -> dict[str, Any]:
    config: dict[str, Any] = read_yaml("Pulumi.multihost.yaml")["config"]
    return config


def test_multihost_stack_runs_internal_on_b_and_external_on_a_of_the_lab(
    defaults: dict[str, str], multihost_config: dict[str, Any]
) -> None:
    values = {
        **defaults,
        **{key.removeprefix("c2c:"): config_text(v) for key, v in multihost_config.items()},
    }
    settings = load_settings(values, "multihost")
    assert settings.network_driver == "overlay"
    assert settings.network_host.name == "a"  # the lab's Swarm manager
    for service, host, address in (
        ("internal", "b", "198.18.0.2"),
        ("external", "a", "198.18.0.1"),
    ):
        placed = settings.host_of(service)
        assert (placed.name, placed.address) == (host, address)
        # The socket `python -m lab up --hosts a,b` makes for that host (lab.naming).
        assert placed.url == f"unix:///run/c2c-lab/lab/{host}/docker.sock"
    assert str(settings.subnet) == "172.13.0.0/16"
    assert (str(settings.gateway), str(settings.internal_ip), str(settings.external_ip)) == (
        "172.13.0.1",
        "172.13.0.2",
        "172.13.0.3",
    )
    assert settings.endpoint == "http://198.18.0.1:8090"


def test_multihost_stack_matches_the_lab_s_names_and_addresses(
    multihost_config: dict[str, Any],
) -> None:
    from lab.naming import DEFAULT_HOSTS, DEFAULT_LAB, DEFAULT_UNDERLAY, AddressPlan, LabNames

    names, plan = LabNames(DEFAULT_LAB), AddressPlan(DEFAULT_UNDERLAY)
    assert multihost_config["c2c:hosts"] == {
        host: {"url": names.docker_host(host), "address": str(plan.host(i).ip)}
        for i, host in enumerate(DEFAULT_HOSTS)
    }


def test_multihost_stack_salt_was_made_for_the_dev_passphrase() -> None:
    # Made by `pulumi stack init` with PULUMI_CONFIG_PASSPHRASE=c2c-dev-stack-no-secrets.
    salt = read_yaml("Pulumi.multihost.yaml")["encryptionsalt"]
    assert salt == "v1:fC6SFNqa2PE=:v1:jkOH1+wUH+Qr96Q1:5JLjBJWrTn6CCFH3DmU9PwvjoYKXzQ=="
