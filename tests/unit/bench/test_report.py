"""bench.report and bench.stats: medians, ratios, rows and the table rendered from the JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench import report
from bench.compose import compose_env
from bench.machine import cpu_model
from bench.stats import median, ratio
from bench.wrk import WrkReport


def _wrk(rps: float, p50: float, p99: float, errors: int = 0) -> WrkReport:
    return WrkReport(
        requests=int(rps),
        seconds=1.0,
        requests_per_second=rps,
        latency_ms={50: p50, 75: p50, 90: p99, 99: p99},
        socket_errors=errors,
        non_2xx_3xx=0,
    )


def _runs(url: str, scale: float) -> report.PathRuns:
    # Three rounds; the middle value of each metric is the one the median must pick.
    return report.PathRuns(
        url,
        one_connection=[
            _wrk(0, 1 * scale, 3 * scale),
            _wrk(0, 9 * scale, 9 * scale),
            _wrk(0, 2 * scale, 4 * scale),
        ],
        fifty_connections=[_wrk(1000 / scale, 10 * scale, 30 * scale)] * 3,
    )


def _http() -> list[dict[str, Any]]:
    return report.http_rows(
        {
            path: _runs(f"http://{path}/", scale)
            for path, scale in zip(report.HTTP_PATHS, (1, 2, 4, 4), strict=True)
        }
    )


def test_median_and_ratio() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0]) == 1.5
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0.0) is None
    with pytest.raises(ValueError, match="no values"):
        median([])


def test_http_rows_are_medians_in_table_order_with_ratios_to_internal() -> None:
    rows = _http()
    assert [row["path"] for row in rows] == list(report.HTTP_PATHS)
    internal, external = rows[0], rows[1]
    assert (internal["c1_p50_ms"], internal["c1_p99_ms"], internal["c50_rps"]) == (2.0, 4.0, 1000.0)
    assert external["ratio_to_internal"]["c1_p50_ms"] == 2.0
    assert external["ratio_to_internal"]["c50_rps"] == 0.5
    assert internal["ratio_to_internal"]["c50_p99_ms"] == 1.0


def test_http_row_sums_errors_of_every_run() -> None:
    runs = report.PathRuns("http://x/", [_wrk(1, 1, 1, errors=2)], [_wrk(1, 1, 1, errors=3)])
    assert report.http_row("dnat", runs)["errors"] == 5


def test_deploy_rows_take_medians_and_leave_compose_preview_empty() -> None:
    rows = report.deploy_rows(
        {
            "pulumi": {"up": [18.0, 20.0, 19.0], "noop_up": [2.0], "preview": [2.5], "down": [5.0]},
            "compose": {"up": [13.0, 12.0, 14.0], "noop_up": [1.0], "down": [2.0]},
        }
    )
    by_step = {row["step"]: row for row in rows}
    assert list(by_step) == list(report.DEPLOY_STEPS)
    assert (by_step["up"]["pulumi_s"], by_step["up"]["compose_s"]) == (19.0, 13.0)
    assert by_step["down"]["pulumi_over_compose"] == 2.5
    assert by_step["preview"]["compose_s"] is None
    assert by_step["preview"]["pulumi_over_compose"] is None


def test_image_rows_measure_each_service_against_the_base() -> None:
    rows = report.image_rows(
        {
            "pulumi": {"internal": 138_000_000, "external": 142_000_000},
            "compose": {"internal": 138_000_000},
        },
        base_bytes=110_000_000,
    )
    assert [row["image"] for row in rows] == ["external", "internal"]
    assert rows[0]["over_base_mb"] == 32.0
    assert rows[0]["compose_mb"] is None
    assert rows[1]["compose_mb"] == 138.0


def _doc() -> dict[str, Any]:
    return {
        "schema": report.SCHEMA,
        "mode": "smoke",
        "started_at": "2030-01-01T00:00:00Z",
        "duration_s": 100.0,
        "load_average": {"start": [1.0, 2.0, 3.0], "end": [1.5, 2.0, 3.0]},
        "settings": {"wrk_seconds": 1, "wrk_rounds": 3, "deploy_runs": 3},
        "machine": {
            "cpu_model": "Test CPU",
            "cores": 2,
            "kernel": "6.1.0",
            "engine": {"kind": "debian", "version": "20.10.24", "api_version": "1.41"},
            "pulumi": "pulumi v3",
            "docker_compose": "1.29.2",
            "wrk": "wrk 4.1.0",
        },
        "containers": {"pulumi": 4, "compose": 4},
        "http": _http(),
        "deploy": report.deploy_rows({"pulumi": {"up": [18.0]}, "compose": {"up": [12.0]}}),
        "images": {
            "base": "base:1",
            "base_mb": 110.0,
            "services": report.image_rows({"pulumi": {"internal": 138_000_000}}, 110_000_000),
        },
    }


def test_table_renders_from_the_json_alone() -> None:
    doc = json.loads(json.dumps(_doc()))  # what a stored .state/bench.json holds
    table = report.render_table(doc)
    assert "Test CPU, 2 cores, kernel 6.1.0" in table
    assert "debian 20.10.24 (API 1.41)" in table
    assert "start 1.00 2.00 3.00; end 1.50 2.00 3.00" in table
    chain = next(line for line in table.splitlines() if line.startswith("chain via loopback"))
    assert "8.00 x4.00" in chain  # p50 at 1 connection and its ratio to internal
    assert "250 x0.25" in chain  # req/s at 50 connections
    up = next(line for line in table.splitlines() if line.startswith("up from nothing"))
    assert up.split()[-3:] == ["18.00", "12.00", "1.50"]
    assert "pulumi 4, compose 4" in table
    assert "+28.0" in table


def test_compose_env_follows_the_stack_config() -> None:
    settings = {
        "baseImage": "base:1",
        "subnet": "10.1.0.0/24",
        "gateway": "10.1.0.1",
        "internalIp": "10.1.0.2",
        "externalIp": "10.1.0.3",
        "internalPort": "8080",
        "externalPort": "8081",
        "hostPort": "8090",
        "hostBindAddress": "0.0.0.0",
        "upstreamConnectTimeoutMs": "200",
        "upstreamReadTimeoutMs": "3000",
        "upstreamRetries": "2",
        "workers": "2",
        "threads": "4",
        "memoryLimitMb": "256",
        "nprocLimit": "512",
        "restartPolicy": "on-failure",
        "restartMaxRetries": "5",
    }
    env = compose_env(settings, "bench-compose")
    assert env["INTERNAL_URL"] == "http://10.1.0.2:8080"
    assert (env["UPSTREAM_CONNECT_TIMEOUT"], env["UPSTREAM_READ_TIMEOUT"]) == ("0.2", "3.0")
    assert env["RESTART_POLICY"] == "on-failure:5"
    assert compose_env({**settings, "restartPolicy": "always"}, "s")["RESTART_POLICY"] == "always"
    assert (
        compose_env({**settings, "restartMaxRetries": "0"}, "s")["RESTART_POLICY"] == "on-failure"
    )


def test_cpu_model_is_the_first_model_name() -> None:
    cpuinfo = (
        "processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\nprocessor\t: 1\nmodel name\t: Other\n"
    )
    assert cpu_model(cpuinfo) == "Example CPU @ 2.0GHz"
