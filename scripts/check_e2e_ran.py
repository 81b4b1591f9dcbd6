"""Fail a CI run whose end-to-end tests did not all run: `check_e2e_ran.py JUNIT_XML`.

Under CI=true an e2e test must never be skipped, and every e2e test the suite defines must
have run; otherwise a green run could be hollow (a deselected file, an early exit, a skip).
The definition count comes from pytest's own collection of tests/e2e, the run's from the
JUnit XML that pytest wrote for the run.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

E2E_DIR = "tests/e2e"
E2E_CLASS_PREFIX = "tests.e2e."


def defined_e2e_tests(python: str) -> set[str]:
    """Node ids of every e2e test, as `pytest --collect-only -q` lists them."""
    listing = subprocess.run(
        [python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", E2E_DIR],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.strip() for line in listing.splitlines() if "::" in line}


def run_e2e_tests(junit_xml: Path) -> tuple[int, list[str]]:
    """(e2e test cases in the report, names of the skipped ones)."""
    ran = 0
    skipped: list[str] = []
    # The report is the one pytest just wrote for this run, not untrusted input.
    report = ET.parse(junit_xml)  # noqa: S314
    for case in report.getroot().iter("testcase"):
        if not case.get("classname", "").startswith(E2E_CLASS_PREFIX):
            continue
        ran += 1
        if case.find("skipped") is not None:
            skipped.append(f"{case.get('classname')}::{case.get('name')}")
    return ran, skipped


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_e2e_ran.py JUNIT_XML", file=sys.stderr)
        return 2
    defined = defined_e2e_tests(sys.executable)
    ran, skipped = run_e2e_tests(Path(argv[1]))
    problems = [f"skipped under CI: {name}" for name in skipped]
    if ran < len(defined):
        problems.append(f"{ran} e2e tests ran, the suite defines {len(defined)}")
    if not defined:
        problems.append(f"no e2e tests collected from {E2E_DIR}")
    for problem in problems:
        print(f"check_e2e_ran: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_e2e_ran: all {len(defined)} e2e tests ran, none skipped", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
