"""Pulumi.yaml and Pulumi.dev.yaml agree with each other and with what the program reads."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from c2c_infra.config import CONFIG_TYPES, load_settings
from tests.unit.infra.infra_harness import REPO_ROOT


def read_yaml(name: str) -> Any:
    return yaml.safe_load((REPO_ROOT / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def project() -> Any:
    return read_yaml("Pulumi.yaml")


@pytest.fixture(scope="module")
def dev_config() -> dict[str, Any]:
    config: dict[str, Any] = read_yaml("Pulumi.dev.yaml")["config"]
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
    yaml_types = {"string": str, "integer": int}
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
        "baseImage": "python:3.11-slim",
        "hostBindAddress": "0.0.0.0",
    }


def test_base_image_default_is_the_dockerfiles_default(project: Any) -> None:
    default = project["config"]["baseImage"]["default"]
    dockerfile = (REPO_ROOT / "services" / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={default}\n" in dockerfile


def test_dev_stack_sets_every_key_to_its_project_default(
    project: Any, dev_config: dict[str, Any]
) -> None:
    assert set(dev_config) == {f"c2c:{key}" for key in CONFIG_TYPES}
    # Pulumi writes stack values as strings ("8090") when it rewrites the file. baseImage is
    # the one key `make up` may set on a machine that cannot pull the default (see README).
    for key, spec in project["config"].items():
        if key != "baseImage":
            assert str(dev_config[f"c2c:{key}"]) == str(spec["default"]), key
    assert dev_config["c2c:baseImage"] in {
        project["config"]["baseImage"]["default"],
        "c2c-base/python:3.11-bookworm",
    }


def test_dev_stack_config_is_valid(dev_config: dict[str, Any]) -> None:
    class StackFile:
        def get(self, key: str) -> str | None:
            value = dev_config.get(f"c2c:{key}")
            return None if value is None else str(value)

    settings = load_settings(StackFile(), "dev")
    assert settings.endpoint == "http://localhost:8090"


def test_readme_tables_document_every_config_key_with_its_default_and_every_export(
    project: Any,
) -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    rows = {
        cells[1].strip("` "): cells[2].strip("` ")
        for line in readme.splitlines()
        if line.startswith("| `c2c:") and len(cells := line.split("|")) > 3
    }
    assert rows == {f"c2c:{key}": str(spec["default"]) for key, spec in project["config"].items()}
    main = (REPO_ROOT / "infra" / "__main__.py").read_text(encoding="utf-8")
    exports = set(re.findall(r'pulumi\.export\("(\w+)"', main))
    assert exports
    for name in exports:
        assert f"`{name}`" in readme, name
