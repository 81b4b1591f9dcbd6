"""A replicated internal (c2c:internalReplicas 3, a Swarm service in endpoint mode dnsrr): the DNS
answer external's resolver gives, the replicas the engines list, and the one replica the traced
request reached, replayed from two runs on a lab (Debian's docker.io 20.10, underlay
198.18.14.0/24): one answered by the replica beside external on host a, one by a replica on b."""

from __future__ import annotations

import json
from typing import Any

import pytest

from packet_trace import analyze, cli, dns
from packet_trace.model import Replica
from packet_trace.parse import ParseError, parse_container_inspect, parse_dns_response
from packet_trace.sources import CommandResult
from tests.unit.trace.multihost_fixtures import Replay, _Calls

SAME_HOST = "real-replicas-same-host-docker-20.10"  # replica c2c-ntr-internal-2, on a
OTHER_HOST = "real-replicas-other-host-docker-20.10"  # replica c2c-ntr-internal-1, on b
A, B = "198.18.14.1", "198.18.14.2"
SERVICE = "c2c-ntr-internal"
SCENARIOS = pytest.mark.parametrize("scenario", [SAME_HOST, OTHER_HOST])


def _dns_stdout(calls: _Calls) -> str:
    return calls.stdout("a", dns.query_argv(SERVICE))


def _replicas_of(calls: _Calls) -> list[tuple[str, str, str, str]]:
    """(host, container, hostname, overlay ip) of every running internal task, per engine."""
    found = []
    for host in ("a", "b"):
        (docs, *_) = calls.answers(host, "containers", ["ntr"])
        for info in map(parse_container_inspect, docs):
            if info.labels.get("com.docker.swarm.service.name") == SERVICE and info.running:
                ip = info.networks["c2c-ntr-net"][0]
                found.append((host, info.name, info.hostname, ip))
    return found


def _main(capsys: pytest.CaptureFixture[str], replay: Replay, *extra: str) -> tuple[int, str, str]:
    argv = ["--stack", "ntr", "--stack-file", str(replay.stack_file), *extra]
    code = cli.main(argv, sources=replay.client, connect=replay.connect)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _answered(calls: _Calls) -> tuple[str, str]:
    """(hostname, address) internal reported in the recorded answer of the request."""
    (answer, *_) = calls.answers("client", "http_get", [A, 8090])
    upstream = json.loads(answer.body)["upstream"]
    return upstream["hostname"], upstream["container_ip"]


# -- the parsers ----------------------------------------------------------------------------------


@SCENARIOS
def test_the_embedded_dns_answers_every_replicas_own_address(scenario: str) -> None:
    calls = _Calls(scenario)
    answer = parse_dns_response(_dns_stdout(calls))
    assert sorted(answer) == sorted(ip for *_, ip in _replicas_of(calls))
    assert len(answer) == 3


def test_a_name_that_does_not_exist_has_no_address() -> None:
    answer = _dns_stdout(_Calls(SAME_HOST)).strip()
    # Same answer with the rcode set to NXDOMAIN (3), as the server flags a missing name.
    flags = int(answer[4:8], 16) | 3
    assert parse_dns_response(answer[:4] + f"{flags:04x}" + answer[8:]) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [("zz", "not hex"), ("0c2c8180", "shorter than its header"), ("", "shorter")],
)
def test_a_broken_dns_answer_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_dns_response(text)


def test_a_dns_answer_cut_short_is_a_parse_error() -> None:
    answer = _dns_stdout(_Calls(SAME_HOST)).strip()
    with pytest.raises(ParseError, match="cut short"):
        parse_dns_response(answer[:-6])


def test_task_containers_carry_the_stack_labels_and_a_slot_hostname() -> None:
    calls = _Calls(SAME_HOST)
    replicas = _replicas_of(calls)
    assert sorted(hostname for _, _, hostname, _ in replicas) == [
        f"{SERVICE}-{n}" for n in (1, 2, 3)
    ]
    assert {host for host, *_ in replicas} == {"a", "b"}
    (docs, *_) = calls.answers("b", "containers", ["ntr"])
    labels = parse_container_inspect(docs[0]).labels
    assert (labels["c2c.project"], labels["c2c.stack"], labels["c2c.service"]) == (
        "c2c",
        "ntr",
        "internal",
    )


def test_the_answering_replica_needs_both_hostname_and_address() -> None:
    one = Replica("c.1.x", "c-1", "a", "172.13.128.0", "02:42:ac:0d:80:00", True)
    two = Replica("c.2.y", "c-2", "b", "172.13.128.1", "02:42:ac:0d:80:01", True)
    assert analyze.answering_replica([one, two], "c-2", "172.13.128.1") == two
    # A replaced replica keeps its slot's hostname but may take another address.
    assert analyze.answering_replica([one, two], "c-2", "172.13.128.0") is None
    assert analyze.answering_replica([one, two], None, None) is None


# -- whole traces ---------------------------------------------------------------------------------


@SCENARIOS
def test_the_trace_names_the_dns_name_and_lists_every_replica(
    capsys: pytest.CaptureFixture[str], scenario: str
) -> None:
    replay = Replay(scenario)
    code, out, _ = _main(capsys, replay)
    flat = " ".join(out.split())
    assert code == cli.EXIT_OK
    assert "Problems" not in out
    assert f"external reaches them by the DNS name {SERVICE}" in flat
    answer = parse_dns_response(_dns_stdout(replay.calls))
    assert f"Docker's embedded DNS 127.0.0.11 answers {SERVICE} with {', '.join(answer)}" in flat
    for host, container, hostname, ip in _replicas_of(replay.calls):
        row = next(line for line in out.splitlines() if line.strip().startswith(container))
        assert row.split()[1:3] == [host, ip]
        assert f"hostname {hostname}" in row
    # The DNS question was asked in external's own namespace, the request went to a's address.
    asked = [args for h, m, args in replay.log if m == "in_netns" and args[1][0] == "python3"]
    assert [args[1] for args in asked] == [dns.query_argv(SERVICE)]
    assert asked[0][0].startswith("/run/c2c-lab/ntr/a/exec/netns/")
    assert replay.requests() == [[A, 8090]]


@SCENARIOS
def test_the_followed_replica_is_the_one_internal_named(
    capsys: pytest.CaptureFixture[str], scenario: str
) -> None:
    replay = Replay(scenario)
    code, out, _ = _main(capsys, replay, "--json")
    data = json.loads(out)
    assert code == cli.EXIT_OK
    hostname, ip = _answered(replay.calls)
    replicas = data["overlay"]["replicas"]
    followed = next(r for r in replicas["replicas"] if r["container"] == replicas["followed"])
    assert (followed["hostname"], followed["ipv4"]) == (hostname, ip)
    assert replicas["dns_name"] == SERVICE
    assert sorted(replicas["dns_answer"]) == sorted(r["ipv4"] for r in replicas["replicas"])
    # A replicated stack has no static internal IP.
    assert data["outputs"]["internal_ip"] == ""
    assert [(h["name"], h["services"]) for h in data["hosts"]] == [
        ("a", ["external", "internal"]),
        ("b", ["internal"]),
    ]
    overlay = data["overlay"]
    if followed["host"] == "b":  # across the hosts: vxlan0's fdb sends its MAC to b
        assert (overlay["forward"]["mac"], overlay["forward"]["vtep"]) == (followed["mac"], B)
        assert (overlay["reply"]["vtep"], overlay["reply"]["vtep_host"]) == (A, "a")
        assert all(c["delta"] > 0 for v in overlay["hosts"] for c in v["counts"])
    else:  # beside external: no host forwards anything over vxlan0
        assert (overlay["forward"], overlay["reply"]) == (None, None)


def test_a_replica_beside_external_is_reached_through_br0_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _main(capsys, Replay(SAME_HOST))
    flat = " ".join(out.split())
    assert code == cli.EXIT_OK
    assert (
        f"to internal: replica {SERVICE}-2 (172.13.128.1) is on this host too: br0 carries" in flat
    )
    assert "host b: overlay namespace" in out
    assert f"not on the traced request's path: replica {SERVICE}-2 runs on host a" in flat
    assert "needed no VXLAN" in flat


def test_a_replica_on_the_other_host_is_reached_through_vxlan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _main(capsys, Replay(OTHER_HOST))
    flat = " ".join(out.split())
    assert code == cli.EXIT_OK
    assert f"fdb 02:42:ac:0d:80:00 dst {B} (host b)" in flat
    assert f"that is replica {SERVICE}.1." in flat
    assert "so the frame left a in UDP to port 4789 and host b unwrapped it to the replica" in flat


def test_an_unreadable_dns_answer_is_a_problem_and_the_rest_still_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    failed = CommandResult(["python3"], 1, "", "TimeoutError: timed out")
    replay = Replay(OTHER_HOST, overrides={"a": {("in_netns", "python3"): failed}})
    code, out, _ = _main(capsys, replay)
    assert code == cli.EXIT_PARTIAL
    assert "the name's DNS answer: not read" in out
    assert "dns-unreadable" in out
    assert "TimeoutError: timed out" in " ".join(out.split())
    assert replay.requests() == [[A, 8090]]


def test_a_reply_from_no_known_replica_is_a_problem(
    capsys: pytest.CaptureFixture[str],
) -> None:
    replay = Replay(OTHER_HOST)
    (answer, *_) = replay.calls.answers("client", "http_get", [A, 8090])
    body: dict[str, Any] = json.loads(answer.body)
    body["upstream"]["hostname"] = f"{SERVICE}-9"
    stranger = type(answer)(answer.status, json.dumps(body), answer.ms, answer.error)
    replay.client._overrides[("http_get", "")] = stranger
    code, out, _ = _main(capsys, replay)
    assert code == cli.EXIT_PARTIAL
    assert f"internal answered as {SERVICE}-9" in " ".join(out.split())
