from __future__ import annotations

from pathlib import Path

import pytest

from c2c_infra import component
from tests.unit.infra.infra_harness import project_defaults, write_services


@pytest.fixture
def services_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake shared build context, used by the program instead of the repo's services/."""
    root = write_services(tmp_path / "services")
    monkeypatch.setattr(component, "SERVICES_DIR", root)
    return root


@pytest.fixture
def defaults() -> dict[str, str]:
    return project_defaults()
