"""services/Dockerfile and services/.dockerignore agree with the services they build.

One Dockerfile builds every service (build argument SERVICE); these checks catch a service
added or renamed on one side only, and a default port that drifts from the service's own.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from c2c_http.settings import ServerSettings

SERVICES_DIR = Path(__file__).resolve().parents[3] / "services"
DOCKERFILE = (SERVICES_DIR / "Dockerfile").read_text(encoding="utf-8")
IGNORE = (SERVICES_DIR / ".dockerignore").read_text(encoding="utf-8").splitlines()
# Every services/*/requirements.txt is a service (as for scripts/wheelhouse.sh).
SERVICES = sorted(path.parent.name for path in SERVICES_DIR.glob("*/requirements.txt"))


def _stage(name: str) -> str:
    """The instructions of stage `name`, up to the next FROM."""
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
    assert match, f"no stage {name} in services/Dockerfile"
    return match.group(1)


def test_the_services_are_internal_and_external() -> None:
    assert SERVICES == ["external", "internal"]


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_default_port_is_the_service_default_port(service: str) -> None:
    settings = importlib.import_module(f"{service}_service.settings").Settings
    assert issubclass(settings, ServerSettings)
    port = settings.from_env({"INTERNAL_URL": "http://127.0.0.1:1"}).port
    stage = _stage(f"port-{service}")
    assert re.findall(r"^ENV PORT=(\d+)$", stage, re.M) == [str(port)]
    assert re.findall(r"^EXPOSE (\d+)$", stage, re.M) == [str(port)]


@pytest.mark.parametrize("service", SERVICES)
def test_the_context_lets_in_exactly_the_parts_the_image_copies(service: str) -> None:
    for part in ("requirements.txt", "wheels/", f"{service}_service/"):
        assert f"!{service}/{part}" in IGNORE


def test_the_final_stage_starts_from_the_chosen_service_and_runs_the_shared_config() -> None:
    assert "\nFROM port-${SERVICE}\n" in DOCKERFILE
    assert "ENV C2C_SERVICE=${SERVICE}_service" in DOCKERFILE
    assert 'CMD ["gunicorn", "--config", "python:c2c_http.gunicorn_conf"]' in DOCKERFILE
    copied = re.findall(r"^COPY (?!--from)(\S+) ", DOCKERFILE, re.M)
    # Only the shared code and the chosen service's own parts: never another service's.
    assert copied == [
        "${SERVICE}/requirements.txt",
        "${SERVICE}/wheels/",
        "common/c2c_http/",
        "${SERVICE}/${SERVICE}_service/",
    ]
