"""scripts/check_e2e_ran.py: a CI run fails when an e2e test was skipped or did not run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "scripts" / "check_e2e_ran.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_e2e_ran", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load()


def _junit(tmp_path: Path, cases: list[tuple[str, str, bool]]) -> Path:
    rows = []
    for classname, name, skipped in cases:
        inner = '<skipped type="pytest.skip" message="no docker"/>' if skipped else ""
        rows.append(f'<testcase classname="{classname}" name="{name}">{inner}</testcase>')
    path = tmp_path / "junit.xml"
    suite = f'<testsuite name="pytest">{"".join(rows)}</testsuite>'
    path.write_text(f"<testsuites>{suite}</testsuites>")
    return path


def test_counts_only_e2e_cases_and_names_the_skipped(tmp_path: Path) -> None:
    report = _junit(
        tmp_path,
        [
            ("tests.e2e.test_1_stack", "test_chain", False),
            ("tests.e2e.test_3_faults", "test_kill", True),
            ("tests.unit.infra.test_infra_config", "test_defaults", True),
        ],
    )
    ran, skipped = check.run_e2e_tests(report)
    assert ran == 2
    assert skipped == ["tests.e2e.test_3_faults::test_kill"]


def test_the_suite_defines_e2e_tests() -> None:
    defined = check.defined_e2e_tests(sys.executable)
    assert defined
    assert all(node.startswith("tests/e2e/") for node in defined)


def _run(report: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(report)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("skip_one", [False, True])
def test_fails_when_fewer_ran_or_one_skipped(tmp_path: Path, skip_one: bool) -> None:
    # One e2e case only: the suite defines many, so this is "fewer ran" either way; with a
    # skip, the skipped test is named too.
    report = _junit(tmp_path, [("tests.e2e.test_1_stack", "test_chain", skip_one)])
    proc = _run(report)
    assert proc.returncode == 1
    assert "e2e tests ran, the suite defines" in proc.stderr
    assert ("skipped under CI: tests.e2e.test_1_stack::test_chain" in proc.stderr) is skip_one


def test_passes_when_every_defined_test_ran(tmp_path: Path) -> None:
    defined = sorted(check.defined_e2e_tests(sys.executable))
    cases = []
    for node in defined:
        path, _, name = node.partition("::")
        classname = path.removesuffix(".py").replace("/", ".")
        cases.append((classname, name, False))
    proc = _run(_junit(tmp_path, cases))
    assert proc.returncode == 0, proc.stderr
    assert f"all {len(defined)} e2e tests ran, none skipped" in proc.stderr
