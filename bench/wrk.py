"""wrk 4.x: the command line the bench runs and a parser of its `--latency` report (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# An answer slower than this counts as a timeout error (wrk's own default, spelled out).
REQUEST_TIMEOUT = "2s"
PERCENTILES = (50, 75, 90, 99)
_MS_PER_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


class WrkParseError(ValueError):
    """The text is not a wrk report with a latency distribution."""


@dataclass(frozen=True)
class WrkReport:
    requests: int
    seconds: float
    requests_per_second: float
    latency_ms: dict[int, float]  # percentile -> milliseconds
    socket_errors: int  # connect + read + write + timeout
    non_2xx_3xx: int

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx_3xx


def wrk_argv(url: str, *, connections: int, seconds: float, wrk: str = "wrk") -> list[str]:
    """wrk with `connections` connections for `seconds` (whole seconds, at least 1) against url;
    one thread per connection up to two (the machines this runs on have two cores)."""
    threads = min(2, connections)
    return [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={REQUEST_TIMEOUT}",
        "--latency",
        url,
    ]


def _ms(number: str, unit: str) -> float:
    return float(number) * _MS_PER_UNIT[unit]


def parse_wrk(output: str) -> WrkReport:
    """Read a report of `wrk --latency`; the error lines are there only when errors happened."""
    total = re.search(rf"^\s*(\d+) requests in {_DURATION},", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)\s*$", output, re.MULTILINE)
    latency = {
        int(match[1]): _ms(match[2], match[3])
        for match in re.finditer(rf"^\s+(\d+)%\s+{_DURATION}\s*$", output, re.MULTILINE)
    }
    if total is None or rate is None:
        raise WrkParseError(f"not a wrk report:\n{output}")
    missing = [p for p in PERCENTILES if p not in latency]
    if missing:
        raise WrkParseError(f"no latency percentiles {missing} (was --latency given?):\n{output}")
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkReport(
        requests=int(total[1]),
        seconds=_ms(total[2], total[3]) / 1000,
        requests_per_second=float(rate[1]),
        latency_ms=latency,
        socket_errors=sum(map(int, socket.groups())) if socket else 0,
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
    )


def wrk_version(output: str) -> str:
    """`wrk -v` prints e.g. "wrk debian/4.1.0-3+b2 [epoll] Copyright ..." then its usage."""
    first = output.strip().splitlines()
    return " ".join(first[0].split()[:2]) if first else "wrk (unknown version)"
