"""A stack of sandboxes (docs/zero-downtime.md): each service is a sandbox container that owns the
network namespace (IP, MAC, published port) and an app container inside it; two apps during a
redeploy. Replayed from three runs on a lab engine (Debian's docker.io 20.10, stack `ptr`,
10.215.0.0/24, host port 18095): steady, in the middle of a redeploy of internal, and with
internal's app container stopped."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from packet_trace import cli, diagram, render, sandbox
from packet_trace.collect import collect
from packet_trace.model import Trace
from packet_trace.parse import ParseError, parse_container_inspect, parse_container_top
from packet_trace.sources import CommandResult
from tests.unit.trace.multihost_fixtures import CLIENT, Replay, ReplaySources, _Calls

STEADY = "real-sandbox-docker-20.10"
REDEPLOY = "real-sandbox-redeploy-docker-20.10"
APP_STOPPED = "real-sandbox-internal-app-stopped-docker-20.10"
STACK = "ptr"
SERVICES = ("external", "internal")


def _containers(scenario: str) -> list[dict[str, Any]]:
    (docs, *_) = _Calls(scenario).answers(CLIENT, "containers", [STACK])
    found: list[dict[str, Any]] = docs
    return found


def _named(scenario: str, service: str, role: str) -> list[str]:
    """Names of a service's containers in a role, straight from the recorded inspect documents."""
    return sorted(
        d["Name"].lstrip("/")
        for d in _containers(scenario)
        if d["Config"]["Labels"].get("c2c.service") == service
        and d["Config"]["Labels"].get("c2c.role") == role
    )


def _trace(scenario: str, sources: Any = None) -> Trace:
    return collect(sources or Replay(scenario).client, STACK)


def _main(capsys: pytest.CaptureFixture[str], scenario: str, *extra: str) -> tuple[int, str]:
    replay = Replay(scenario)
    argv = ["--stack", STACK, "--stack-file", str(replay.stack_file), *extra]
    code = cli.main(argv, sources=replay.client, connect=replay.connect)
    return code, capsys.readouterr().out


# -- grouping: which container is the sandbox, which the app -------------------------------------


def test_each_service_is_its_sandbox_and_its_app() -> None:
    infos = [parse_container_inspect(d) for d in _containers(STEADY)]
    groups = sandbox.group(infos)
    assert sorted(groups) == list(SERVICES)
    for service, found in groups.items():
        assert found.split
        assert found.sandbox is not None
        assert [found.sandbox.name] == _named(STEADY, service, "sandbox")
        assert [a.name for a in found.apps] == _named(STEADY, service, "app")
        view = found.view()
        assert view is not None
        # The network facts are the sandbox's, the environment the app's.
        assert (view.name, view.networks) == (found.sandbox.name, found.sandbox.networks)
        assert view.env == found.apps[0].env != found.sandbox.env


def test_a_container_of_no_role_is_both_sandbox_and_app() -> None:
    doc = copy.deepcopy(_containers(STEADY)[0])
    del doc["Config"]["Labels"]["c2c.role"]
    info = parse_container_inspect(doc)
    found = sandbox.group([info])[info.labels["c2c.service"]]
    assert (found.sandbox, found.apps, found.split) == (info, (info,), False)
    assert found.view() == info


def test_a_running_app_is_the_one_read_before_a_stopped_one() -> None:
    docs = _containers(REDEPLOY)
    internal = [parse_container_inspect(d) for d in docs]
    stopped = next(a for a in internal if a.name == _named(REDEPLOY, "internal", "app")[0])
    infos = [
        parse_container_inspect(
            {**d, "State": {**d["State"], "Running": False}}
            if d["Name"].lstrip("/") == stopped.name
            else d
        )
        for d in docs
    ]
    found = sandbox.group(infos)["internal"]
    assert [a.running for a in found.apps] == [True, False]
    assert found.app is not None
    assert found.app.name != stopped.name


def test_top_gives_the_pids_of_the_pid_column() -> None:
    (top, *_) = _Calls(STEADY).answers(
        CLIENT, "container_top", [_named(STEADY, "internal", "app")[0]]
    )
    column = top["Titles"].index("PID")
    assert parse_container_top(top) == [int(row[column]) for row in top["Processes"]]
    with pytest.raises(ParseError, match="no PID column"):
        parse_container_top({"Titles": ["UID", "CMD"], "Processes": [["0", "sleep"]]})


# -- the steady stack -----------------------------------------------------------------------------


def test_the_addresses_are_the_sandboxes_and_the_env_is_the_apps() -> None:
    trace = _trace(STEADY)
    assert trace.problems == []
    assert trace.bridge is not None
    assert {e.container for e in trace.bridge.endpoints} == {
        _named(STEADY, s, "sandbox")[0] for s in SERVICES
    }
    assert all(e.host_veth for e in trace.bridge.endpoints)
    assert trace.outputs is not None
    (ext_app,) = [
        d
        for d in _containers(STEADY)
        if d["Name"].lstrip("/") == _named(STEADY, "external", "app")[0]
    ]
    assert f"INTERNAL_URL={trace.outputs.internal_url}" in ext_app["Config"]["Env"]
    assert trace.nat is not None
    (rule,) = trace.nat.dnat_rules
    assert rule.to_destination == f"{trace.outputs.external_ip}:8081"


def test_listeners_in_each_namespace_are_attributed_to_the_app_by_pid() -> None:
    trace = _trace(STEADY)
    calls = _Calls(STEADY)
    assert trace.namespaces is not None
    assert [n.service for n in trace.namespaces] == list(SERVICES)
    for space in trace.namespaces:
        (app,) = _named(STEADY, space.service, "app")
        assert space.sandbox == _named(STEADY, space.service, "sandbox")[0]
        assert space.hostname == f"c2c-{STACK}-{space.service}"
        assert [(a.name, a.running) for a in space.apps] == [(app, True)]
        (top, *_) = calls.answers(CLIENT, "container_top", [app])
        app_pids = set(parse_container_top(top))
        assert space.listeners is not None
        gunicorn = [x for x in space.listeners if x.process == "gunicorn"]
        assert len(gunicorn) == 2  # one SO_REUSEPORT listener per worker (c2c:workers 2)
        assert all(x.pid in app_pids and x.container == app for x in gunicorn)
        # The engine's embedded DNS listens there too: a process of no app.
        others = [x for x in space.listeners if x.process != "gunicorn"]
        assert [(x.process, x.container) for x in others] == [("dockerd", None)]


def test_the_report_names_the_sandbox_and_its_app(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _main(capsys, STEADY)
    assert code == cli.EXIT_OK
    hop3 = out.split("3. Bridge", 1)[1].split("4. External", 1)[0]
    hop4 = out.split("4. External -> internal", 1)[1].split("5. Summary", 1)[0]
    for service in SERVICES:
        (app,) = _named(STEADY, service, "app")
        assert f"c2c-{STACK}-{service}-sandbox" in hop3
        assert (
            f"{service}: sandbox c2c-{STACK}-{service}-sandbox (hostname c2c-{STACK}-{service})"
            in hop4
        )
        assert f"app {app}  (running, pid " in hop4
        assert hop4.count(f"of app {app}") == 2  # its two workers' listeners
    assert "(from its app container's env)" in hop4


def test_json_carries_the_namespaces(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _main(capsys, STEADY, "--json")
    assert code == cli.EXIT_OK
    spaces = json.loads(out)["namespaces"]
    assert [(n["service"], n["sandbox"]) for n in spaces] == [
        (s, f"c2c-{STACK}-{s}-sandbox") for s in SERVICES
    ]


def test_a_stack_of_no_sandboxes_has_no_namespaces_in_its_json() -> None:
    from tests.unit.trace.trace_fixtures import FixtureSources

    assert "namespaces" not in collect(FixtureSources(), "dev").to_dict()


def test_the_diagram_puts_the_apps_in_their_sandboxes_box() -> None:
    source = diagram.build(_trace(STEADY)).source
    for service in SERVICES:
        assert f"c2c-{STACK}-{service}-sandbox" in source
        assert f"app {_named(STEADY, service, 'app')[0]}" in source


# -- a redeploy: two apps in one namespace --------------------------------------------------------


def test_during_a_redeploy_both_apps_listen_in_internals_namespace() -> None:
    trace = _trace(REDEPLOY)
    assert trace.problems == []
    assert trace.namespaces is not None
    internal = next(n for n in trace.namespaces if n.service == "internal")
    apps = _named(REDEPLOY, "internal", "app")
    assert len(apps) == 2
    assert sorted(a.name for a in internal.apps) == apps
    assert all(a.running for a in internal.apps)
    assert internal.listeners is not None
    by_app = {
        app: [x.pid for x in internal.listeners if x.container == app and x.port == 8080]
        for app in apps
    }
    assert all(len(pids) == 2 for pids in by_app.values()), by_app
    assert len({p for pids in by_app.values() for p in pids}) == 4


# -- failures -------------------------------------------------------------------------------------


def test_a_stopped_app_is_named_and_the_request_shows_the_502(
    capsys: pytest.CaptureFixture[str],
) -> None:
    trace = _trace(APP_STOPPED)
    (app,) = _named(APP_STOPPED, "internal", "app")
    assert [(p.hop, p.code) for p in trace.problems] == [
        ("services", "app-stopped"),
        ("services", "request-failed"),
    ]
    stopped, failed = trace.problems
    assert app in stopped.message
    assert f"c2c-{STACK}-internal-sandbox" in stopped.message
    assert f"`docker start {app}`" in stopped.remedy
    # The sandbox keeps the address: the request is sent, and external answers 502.
    assert trace.request is not None
    assert trace.request.status == 502
    assert "-> 502" in failed.message
    assert f"docker logs {_named(APP_STOPPED, 'external', 'app')[0]}" in failed.remedy
    assert trace.namespaces is not None
    internal = next(n for n in trace.namespaces if n.service == "internal")
    assert [(a.name, a.running, a.pid) for a in internal.apps] == [(app, False, None)]
    assert internal.listeners is not None
    assert [x for x in internal.listeners if x.port == 8080] == []
    assert cli.exit_code(trace) == cli.EXIT_PARTIAL
    assert f"app {app}  (NOT running)" in render.render_text(trace)


class _StoppedSandbox(ReplaySources):
    """The steady stack's recording, with Docker showing internal's sandbox stopped."""

    def containers(self, stack: str) -> list[dict[str, Any]]:
        docs = copy.deepcopy(super().containers(stack))
        for doc in docs:
            if doc["Name"] == f"/c2c-{STACK}-internal-sandbox":
                doc["State"].update(Running=False, Pid=0)
        return docs


def test_a_stopped_sandbox_is_a_stopped_stack_and_no_request_is_sent() -> None:
    replay = Replay(STEADY)
    sources = _StoppedSandbox(replay.calls, CLIENT, replay.log)
    trace = _trace(STEADY, sources)
    assert [(p.hop, p.code) for p in trace.problems] == [("bridge", "container-stopped")]
    assert f"c2c-{STACK}-internal-sandbox is not running" in trace.problems[0].message
    assert trace.request is not None
    assert trace.request.error == "not sent"
    assert replay.requests() == []


def test_an_unreadable_namespace_is_a_note_not_a_problem() -> None:
    class NoNsenter(ReplaySources):
        def in_netns(self, netns_file: str, argv: list[str]) -> CommandResult:
            return CommandResult(argv, 1, "", "nsenter: cannot open: Permission denied")

    replay = Replay(STEADY)
    trace = _trace(STEADY, NoNsenter(replay.calls, CLIENT, replay.log))
    assert trace.problems == []
    assert trace.namespaces is not None
    assert all(n.listeners is None for n in trace.namespaces)
    assert any("Permission denied" in n for n in trace.notes)
    assert "listening sockets: not read (see the notes)" in render.render_text(trace)


def test_apps_without_their_sandbox_are_a_missing_container() -> None:
    replay = Replay(STEADY)

    class NoSandbox(ReplaySources):
        def containers(self, stack: str) -> list[dict[str, Any]]:
            return [
                d
                for d in super().containers(stack)
                if d["Name"] != f"/c2c-{STACK}-internal-sandbox"
            ]

    trace = _trace(STEADY, NoSandbox(replay.calls, CLIENT, replay.log))
    assert [(p.hop, p.code) for p in trace.problems] == [("bridge", "container-missing")]
    assert "c2c.service=internal, c2c.role=sandbox" in trace.problems[0].message
    assert trace.outputs is None
