"""Load: N concurrent clients against the stack's endpoint with Debian's `wrk`, bounded in time.

Every request goes the whole way: host port -> external -> internal over the bridge -> back.
N (C2C_LOAD_CONNECTIONS, default 50) and the duration (C2C_LOAD_SECONDS, default 10) are
parameters; the numbers are printed and merged into .state/measurements.json.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from urllib.parse import urlsplit, urlunsplit

import pytest

from bench.wrk import WrkReport, parse_wrk, wrk_argv, wrk_version
from lab.stacks import Stack, timed
from tests.e2e import harness

pytestmark = pytest.mark.slow

CONNECTIONS = int(os.environ.get("C2C_LOAD_CONNECTIONS", "50"))
SECONDS = int(os.environ.get("C2C_LOAD_SECONDS", "10"))
# The chain does internal's work and external's (an HTTP client call on top of its own answer)
# on the same 2 cores, so the ratios depend on the CPU. Measured: on a busy Intel VM internal
# alone answered 2.2-4.0x the chain's rate at 1.3-3.4x lower p50; on a 2-core AMD EPYC VM
# (2026-12-02, CI runs, both engines) 5.0-5.7x the rate at 5.4-6.6x lower p50 (6.0 was exceeded
# there with no change to the services). The bounds sit about 1.4x above the worst seen: a
# 2x regression of the chain on the AMD VM exceeds them.
MAX_RATE_RATIO = 9.0
MAX_P50_RATIO = 9.0


def _wrk_version(wrk: str) -> str:
    # `wrk --version` prints its version and the usage, then exits 1.
    proc = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return wrk_version(proc.stdout or proc.stderr)


def _loopback_url(endpoint: str) -> str:
    # The port is published on IPv4 (0.0.0.0); "localhost" may resolve to ::1 first for wrk.
    parts = urlsplit(endpoint)
    if parts.hostname == "localhost":
        parts = parts._replace(netloc=f"127.0.0.1:{parts.port}")
    return urlunsplit(parts._replace(path="/"))


def _wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.fail("wrk is missing: scripts/host-packages.sh installs it", pytrace=False)
    return wrk


def _run_wrk(stack: Stack, url: str, seconds: int) -> WrkReport:
    """wrk with CONNECTIONS connections for `seconds` against url, from inside the engine host."""
    wrk = _wrk()
    cmd = wrk_argv(url, connections=CONNECTIONS, seconds=seconds, wrk=wrk)
    with timed(f"{stack.name}: wrk {CONNECTIONS} connections {seconds}s {url}"):
        proc = subprocess.run(
            stack.engine.command(*cmd),
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    print(" ".join(cmd))
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    return parse_wrk(proc.stdout)


def _summary(result: WrkReport) -> str:
    return (
        f"{result.requests} requests in {result.seconds:.1f}s, "
        f"{result.requests_per_second:.0f} req/s, p50 {result.latency_ms[50]:.1f} ms, "
        f"p99 {result.latency_ms[99]:.1f} ms, errors {result.socket_errors} "
        f"non-2xx/3xx {result.non_2xx_3xx}"
    )


def test_concurrent_clients_get_no_errors_at_a_rate_near_internal_alone(
    deployed_stack: Stack,
) -> None:
    """The whole chain against internal alone, measured in the same run on the same machine:
    internal's answer is the chain's cheapest part, so its rate is the ceiling of the chain's,
    and the ratio of the two stays put whatever else loads the machine."""
    assert CONNECTIONS >= 1
    assert 1 <= SECONDS <= 120, "C2C_LOAD_SECONDS: the load test is bounded in time"
    chain_url = _loopback_url(deployed_stack.endpoint)
    # internal's own address, from inside the engine host (where the bridge is): no hop before.
    internal_url = deployed_stack.outputs["internalUrl"] + "/"
    baseline_seconds = max(1, SECONDS // 2)
    # internal alone before and after the chain: a change in the machine's load in between
    # shows as a difference of the two, and their mean is the baseline.
    alone_before = _run_wrk(deployed_stack, internal_url, baseline_seconds)
    chain = _run_wrk(deployed_stack, chain_url, SECONDS)
    alone_after = _run_wrk(deployed_stack, internal_url, baseline_seconds)
    baseline_rate = (alone_before.requests_per_second + alone_after.requests_per_second) / 2
    baseline_p50 = (alone_before.latency_ms[50] + alone_after.latency_ms[50]) / 2
    rate_ratio = baseline_rate / chain.requests_per_second
    p50_ratio = chain.latency_ms[50] / baseline_p50

    print(f"internal alone, before: {_summary(alone_before)}")
    print(f"chain ({CONNECTIONS} connections): {_summary(chain)}")
    print(f"internal alone, after: {_summary(alone_after)}")
    print(f"internal alone / chain: rate x{rate_ratio:.2f}, chain / alone p50 x{p50_ratio:.2f}")
    harness.record_measurements(
        f"load_{deployed_stack.engine.kind}",
        {
            "tool": _wrk_version(_wrk()),
            "connections": CONNECTIONS,
            "seconds": chain.seconds,
            "requests": chain.requests,
            "requests_per_second": chain.requests_per_second,
            "p50_ms": round(chain.latency_ms[50], 2),
            "p90_ms": round(chain.latency_ms[90], 2),
            "p99_ms": round(chain.latency_ms[99], 2),
            "errors": chain.errors,
            "internal_alone_requests_per_second": [
                alone_before.requests_per_second,
                alone_after.requests_per_second,
            ],
            "internal_alone_p50_ms": [
                round(alone_before.latency_ms[50], 2),
                round(alone_after.latency_ms[50], 2),
            ],
            "rate_ratio": round(rate_ratio, 2),
            "p50_ratio": round(p50_ratio, 2),
        },
    )
    assert chain.errors == 0, f"socket errors {chain.socket_errors}, non-2xx {chain.non_2xx_3xx}"
    assert alone_before.errors == alone_after.errors == 0
    # Every connection was served, not just a lucky few.
    assert chain.requests >= CONNECTIONS
    assert rate_ratio <= MAX_RATE_RATIO, f"chain {rate_ratio:.2f}x slower than internal alone"
    assert p50_ratio <= MAX_P50_RATIO, f"chain p50 {p50_ratio:.2f}x internal alone's"
    # The pair is still answering normally afterwards.
    status, body, _ = deployed_stack.get_json()
    assert status == 200
    assert body["upstream"]["service"] == "internal"
