"""`python -m bench --smoke`: the bench end to end, short, so it cannot rot.

It runs on a lab engine of its own (name and underlay apart from `make bench`'s and every other
lab's), and the test checks the JSON it writes: every HTTP path, deploy step and image with
positive numbers. No performance thresholds: the numbers belong in the bench's table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import report
from lab.stacks import REPO_ROOT
from tests.e2e import harness
from tests.e2e.harness import IN_CI, require_root

LAB = harness.lab_name("bsmk")
UNDERLAY = harness.lab_underlay(4)
BUDGET_S = 900


def _require_prerequisites() -> None:
    require_root("the bench runs a Docker engine in a network namespace of its own")
    reason = os.environ.get("C2C_E2E_UNAVAILABLE") or (
        "the pulumi CLI is not on PATH (run the tests through `make test`)"
        if shutil.which("pulumi") is None
        else None
    )
    if reason:
        if IN_CI:
            pytest.fail(
                f"CI=true and the bench's prerequisites are missing: {reason}", pytrace=False
            )
        pytest.skip(reason)


@pytest.fixture(scope="module")
def smoke_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _require_prerequisites()
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    argv = [sys.executable, "-m", "bench", "--smoke", "--lab", LAB, "--underlay", str(UNDERLAY)]
    proc = subprocess.run(
        [*argv, "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BUDGET_S,
        check=False,
    )
    print(proc.stdout[-6000:], proc.stderr[-6000:])
    assert proc.returncode == 0, (
        f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    )
    doc: dict[str, Any] = json.loads(Path(out).read_text())
    return doc


def test_every_http_path_has_positive_latency_throughput_and_ratios(
    smoke_doc: dict[str, Any],
) -> None:
    rows = {row["path"]: row for row in smoke_doc["http"]}
    assert list(rows) == list(report.HTTP_PATHS)
    for path, row in rows.items():
        for metric in report.HTTP_METRICS:
            assert row[metric] > 0, (path, metric, row)
            assert row["ratio_to_internal"][metric] > 0, (path, metric, row)
        assert row["errors"] == 0, row  # a number measured over failing requests is no number


def test_every_deploy_step_has_positive_times_under_both_tools(smoke_doc: dict[str, Any]) -> None:
    rows = {row["step"]: row for row in smoke_doc["deploy"]}
    assert list(rows) == list(report.DEPLOY_STEPS)
    for step, row in rows.items():
        assert row["pulumi_s"] > 0, row
        if step == "preview":  # compose has no preview
            assert row["compose_s"] is None, row
        else:
            assert row["compose_s"] > 0, row
            assert row["pulumi_over_compose"] > 0, row
    # Both deployed the same topology: as many containers, counted by their c2c labels.
    containers = smoke_doc["containers"]
    assert containers["pulumi"] == containers["compose"] > 0


def test_images_of_both_services_are_measured_against_the_base(smoke_doc: dict[str, Any]) -> None:
    images = smoke_doc["images"]
    assert images["base_mb"] > 0
    assert {row["image"] for row in images["services"]} == {"internal", "external"}
    for row in images["services"]:
        assert row["pulumi_mb"] > images["base_mb"], row
        assert row["compose_mb"] > images["base_mb"], row


def test_the_machine_and_the_load_are_recorded(smoke_doc: dict[str, Any]) -> None:
    machine = smoke_doc["machine"]
    assert machine["cores"] > 0
    for key in ("cpu_model", "kernel", "pulumi", "docker_compose", "wrk"):
        assert machine[key], key
    assert machine["engine"]["version"]
    assert len(smoke_doc["load_average"]["start"]) == len(smoke_doc["load_average"]["end"]) == 3
    assert "HTTP" in report.render_table(smoke_doc)
