"""bench.wrk: wrk's command line and its --latency report."""

from __future__ import annotations

import pytest

from bench.wrk import WrkParseError, parse_wrk, wrk_argv, wrk_version

# A real `wrk --latency` report (wrk 4.1.0), with the error lines wrk adds only when needed.
REPORT = """Running 5s test @ http://172.13.0.2:8080/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    27.36ms   12.41ms 186.08ms   81.08%
    Req/Sec     0.93k   159.01     1.26k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.50ms
     90%    2.10s
     99%    1.00m
  9271 requests in 5.01s, 2.18MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:   1850.45
Transfer/sec:    445.97KB
"""


def test_parse_reads_counts_rate_and_percentiles_in_milliseconds() -> None:
    report = parse_wrk(REPORT)
    assert (report.requests, report.seconds, report.requests_per_second) == (9271, 5.01, 1850.45)
    assert report.latency_ms == {50: 0.812, 75: 1.5, 90: 2100.0, 99: 60_000.0}


def test_parse_adds_socket_errors_and_bad_statuses() -> None:
    report = parse_wrk(REPORT)
    assert (report.socket_errors, report.non_2xx_3xx, report.errors) == (10, 5, 15)


def test_parse_counts_no_errors_when_wrk_prints_none() -> None:
    clean = "\n".join(
        line for line in REPORT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    assert parse_wrk(clean).errors == 0


def test_parse_refuses_a_report_without_latency_distribution() -> None:
    without = REPORT.replace("     99%    1.00m\n", "")
    with pytest.raises(WrkParseError, match=r"\[99\]"):
        parse_wrk(without)


def test_parse_refuses_what_is_not_a_report() -> None:
    with pytest.raises(WrkParseError):
        parse_wrk("unable to connect to 172.13.0.2:8080 Connection refused\n")


@pytest.mark.parametrize(("connections", "threads"), [(1, 1), (2, 2), (50, 2)])
def test_argv_uses_at_most_two_threads_and_never_more_than_connections(
    connections: int, threads: int
) -> None:
    argv = wrk_argv("http://127.0.0.1:8090/", connections=connections, seconds=5)
    assert argv[:4] == ["wrk", f"-t{threads}", f"-c{connections}", "-d5s"]
    assert "--latency" in argv
    assert argv[-1] == "http://127.0.0.1:8090/"


def test_argv_runs_at_least_one_second() -> None:
    assert "-d1s" in wrk_argv("http://x/", connections=1, seconds=0.2)


def test_version_is_the_first_two_words() -> None:
    assert wrk_version(
        "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer\nUsage: ..."
    ) == ("wrk debian/4.1.0-3+b2")
