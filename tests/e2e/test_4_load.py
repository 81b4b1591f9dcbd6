"""Load: N concurrent clients against the stack's endpoint with Debian's `wrk`, bounded in time.

Every request goes the whole way: host port -> external -> internal over the bridge -> back.
N (C2C_LOAD_CONNECTIONS, default 50) and the duration (C2C_LOAD_SECONDS, default 10) are
parameters; the numbers are printed and merged into .state/measurements.json.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.e2e import harness
from tests.support.stacks import Stack, timed

pytestmark = pytest.mark.slow

CONNECTIONS = int(os.environ.get("C2C_LOAD_CONNECTIONS", "50"))
SECONDS = int(os.environ.get("C2C_LOAD_SECONDS", "10"))
# wrk's own default, spelled out: an answer slower than this counts as a (timeout) error.
REQUEST_TIMEOUT = "2s"

# The chain does internal's work and external's (an HTTP client call on top of its own answer)
# on the same 2 cores. Measured on a busy machine: internal alone answered 2.2-4.0x the chain's
# rate, at 1.3-3.4x lower p50 (both engines). A 3x regression of the chain's rate or latency
# puts either ratio at 6.6 or more; the bounds sit below that and 1.5x above the worst seen.
MAX_RATE_RATIO = 6.0
MAX_P50_RATIO = 6.0

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    requests_per_second: float
    latency_ms: dict[str, float]  # percentile ("50", "75", "90", "99") -> milliseconds
    socket_errors: dict[str, int]  # connect, read, write, timeout
    non_2xx_3xx: int

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx


def _milliseconds(number: str, unit: str) -> float:
    return float(number) * _UNIT_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Read wrk 4.x's `--latency` report; the error lines appear only when there were errors."""
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if total is None or rate is None:
        raise ValueError(f"not a wrk report:\n{output}")
    latency = {
        match[1]: _milliseconds(match[2], match[3])
        for match in re.finditer(
            r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.MULTILINE
        )
    }
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if errors:
        socket_errors = dict(zip(socket_errors, map(int, errors.groups()), strict=True))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(total[1]),
        seconds=_milliseconds(total[2], total[3]) / 1000,
        requests_per_second=float(rate[1]),
        latency_ms=latency,
        socket_errors=socket_errors,
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
    )


def _wrk_version(wrk: str) -> str:
    # `wrk --version` prints "wrk debian/4.1.0-3+b2 [epoll] ..." and the usage, then exits 1.
    proc = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    first = (proc.stdout or proc.stderr).splitlines()
    return " ".join(first[0].split()[:2]) if first else "wrk"


def _loopback_url(endpoint: str) -> str:
    # The port is published on IPv4 (0.0.0.0); "localhost" may resolve to ::1 first for wrk.
    parts = urlsplit(endpoint)
    if parts.hostname == "localhost":
        parts = parts._replace(netloc=f"127.0.0.1:{parts.port}")
    return urlunsplit(parts._replace(path="/"))


def test_parse_wrk_reads_a_report_with_errors() -> None:
    report = """Running 1s test @ http://127.0.0.1:8090/
  2 threads and 50 connections
  Latency Distribution
     50%  812.00us
     75%    1.50ms
     90%    2.10s
     99%    1.00m
  100 requests in 1.01s, 20.00KB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:     99.01
"""
    result = parse_wrk(report)
    assert (result.requests, result.seconds, result.requests_per_second) == (100, 1.01, 99.01)
    assert result.latency_ms == {"50": 0.812, "75": 1.5, "90": 2100.0, "99": 60_000.0}
    assert result.socket_errors == {"connect": 1, "read": 2, "write": 3, "timeout": 4}
    assert result.errors == 15


def _wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.fail("wrk is missing: scripts/host-packages.sh installs it", pytrace=False)
    return wrk


def _run_wrk(stack: Stack, url: str, seconds: int) -> WrkResult:
    """wrk with CONNECTIONS connections for `seconds` against url, from inside the engine host."""
    wrk = _wrk()
    threads = min(2, CONNECTIONS)  # wrk needs connections >= threads; 2 cores on CI
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        f"--timeout={REQUEST_TIMEOUT}",
        "--latency",
        url,
    ]
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


def _summary(result: WrkResult) -> str:
    return (
        f"{result.requests} requests in {result.seconds:.1f}s, "
        f"{result.requests_per_second:.0f} req/s, p50 {result.latency_ms['50']:.1f} ms, "
        f"p99 {result.latency_ms['99']:.1f} ms, errors {result.socket_errors} "
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
    baseline_p50 = (alone_before.latency_ms["50"] + alone_after.latency_ms["50"]) / 2
    rate_ratio = baseline_rate / chain.requests_per_second
    p50_ratio = chain.latency_ms["50"] / baseline_p50

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
            "p50_ms": round(chain.latency_ms["50"], 2),
            "p90_ms": round(chain.latency_ms["90"], 2),
            "p99_ms": round(chain.latency_ms["99"], 2),
            "errors": chain.errors,
            "internal_alone_requests_per_second": [
                alone_before.requests_per_second,
                alone_after.requests_per_second,
            ],
            "internal_alone_p50_ms": [
                round(alone_before.latency_ms["50"], 2),
                round(alone_after.latency_ms["50"], 2),
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
