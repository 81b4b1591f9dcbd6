"""services/Dockerfile and services/.dockerignore agree with the services they build.

One Dockerfile builds every service (build argument SERVICE); these checks catch a service
added or renamed on one side only, and a port or probe defined in the image besides the
service's settings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from c2c_http.probe import PROBE_BUDGET
from c2c_http.settings import service_settings

SERVICES_DIR = Path(__file__).resolve().parents[3] / "services"
DOCKERFILE = (SERVICES_DIR / "Dockerfile").read_text(encoding="utf-8")
INSTRUCTIONS = "\n".join(line for line in DOCKERFILE.splitlines() if not line.startswith("#"))
IGNORE = (SERVICES_DIR / ".dockerignore").read_text(encoding="utf-8").splitlines()
# Every services/*/requirements.txt is a service (as for scripts/wheelhouse.sh).
SERVICES = sorted(path.parent.name for path in SERVICES_DIR.glob("*/requirements.txt"))
FINAL_STAGE = INSTRUCTIONS[INSTRUCTIONS.rindex("\nFROM ") :]


def test_the_services_are_internal_and_external() -> None:
    assert SERVICES == ["external", "internal"]


def test_the_image_leaves_the_port_to_the_service_settings() -> None:
    # gunicorn_conf binds, and the probe asks, the port the settings give (PORT overrides).
    assert not re.search(r"\bPORT\b|^EXPOSE", INSTRUCTIONS, re.M)
    healthcheck = re.findall(r"^HEALTHCHECK .*?\n\s*CMD (.*)$", INSTRUCTIONS, re.M)
    assert healthcheck == ['["python3", "-m", "c2c_http.probe"]']


def test_the_healthcheck_gives_the_probe_its_whole_budget() -> None:
    # Docker kills a probe at the HEALTHCHECK's timeout: it must outlast the probe's own budget,
    # or a slow start would read as a killed probe instead of the probe's one-line reason.
    flags = dict(re.findall(r"--([a-z-]+)=([0-9]+)s?\b", INSTRUCTIONS.split("HEALTHCHECK", 1)[1]))
    assert set(flags) == {"interval", "timeout", "start-period", "retries"}
    assert int(flags["timeout"]) > PROBE_BUDGET
    # The first probe runs one interval after the start: a shorter start period than that
    # would never forgive a probe.
    assert int(flags["interval"]) <= int(flags["start-period"])


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_settings_give_the_image_its_default_port(service: str) -> None:
    env = {"C2C_SERVICE": f"{service}_service", "INTERNAL_URL": "http://127.0.0.1:1"}
    _, settings = service_settings(env)
    assert 1 <= settings.port <= 65535


@pytest.mark.parametrize("service", SERVICES)
def test_the_context_lets_in_exactly_the_parts_the_image_copies(service: str) -> None:
    for part in ("requirements.txt", "wheels/", f"{service}_service/"):
        assert f"!{service}/{part}" in IGNORE


def test_the_final_stage_shares_its_first_layers_and_runs_the_shared_config() -> None:
    assert FINAL_STAGE.startswith("\nFROM ${BASE_IMAGE}\n")
    # Everything above the ARG is the same in both images (one cached layer each).
    shared, _, own = FINAL_STAGE.partition("\nARG SERVICE\n")
    assert "RUN groupadd" in shared
    assert "SERVICE" not in shared
    assert "ENV C2C_SERVICE=${SERVICE}_service" in own
    assert 'CMD ["gunicorn", "--config", "python:c2c_http.gunicorn_conf"]' in own
    copied = re.findall(r"^COPY (?!--from)(\S+) ", DOCKERFILE, re.M)
    # Only the shared code and the chosen service's own parts: never another service's.
    assert copied == [
        "${SERVICE}/requirements.txt",
        "${SERVICE}/wheels/",
        "common/c2c_http/",
        "${SERVICE}/${SERVICE}_service/",
    ]
