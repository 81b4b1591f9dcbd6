"""The command line on replayed captures of the real dev stack: exit codes, text and --json output,
--help (no traffic: the replay records where a request would have gone)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from packet_trace import cli
from tests.unit.trace.trace_fixtures import REAL, FixtureSources

REPO = Path(__file__).resolve().parents[3]


def _run(
    capsys: pytest.CaptureFixture[str], argv: list[str], sources: FixtureSources
) -> tuple[int, str, str]:
    code = cli.main(argv, sources=sources)
    out, err = capsys.readouterr()
    return code, out, err


def test_complete_trace_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    sources = FixtureSources(REAL)
    code, out, _ = _run(capsys, ["--stack", "dev"], sources)
    assert code == cli.EXIT_OK == 0
    assert out.startswith("Packet trace of stack 'dev' (facts from docker-labels)")
    assert "   DNAT packet counter: 1 before, 2 after (+1)" in out.splitlines()
    assert "5. Summary" in out
    assert sources.requests == [("172.13.0.1", 8090)]


def test_stack_defaults_to_c2c_stack_env(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("C2C_STACK", "dev")
    code, out, _ = _run(capsys, [], FixtureSources(REAL))
    assert code == cli.EXIT_OK
    assert out.startswith("Packet trace of stack 'dev' (facts from docker-labels)")


def test_json_flag_prints_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    sources = FixtureSources(REAL)
    code, out, err = _run(capsys, ["--stack", "dev", "--json"], sources)
    assert code == cli.EXIT_OK
    assert err == ""
    data = json.loads(out)
    assert data["stack"] == "dev"
    assert data["outputs"]["endpoint"] == "http://localhost:8090"
    assert data["host_port"]["bind_ip"] == "0.0.0.0"
    assert data["nat"]["dnat_rules"][0]["to_destination"] == "172.13.0.3:8081"
    assert data["nat"]["dnat_moved_by"] == 1
    assert data["bridge"]["subnet"] == "172.13.0.0/16"
    assert data["services"]["external_client_ip"] == "172.13.0.1"
    assert data["problems"] == []


def test_json_of_a_partial_trace_lists_the_problems(capsys: pytest.CaptureFixture[str]) -> None:
    sources = FixtureSources(REAL, root=False)
    code, out, _ = _run(capsys, ["--stack", "dev", "--json"], sources)
    assert code == cli.EXIT_PARTIAL == 1
    data = json.loads(out)
    assert {p["code"] for p in data["problems"]} == {"nat-permission", "ss-no-process"}
    assert data["nat"]["readable"] is False
    assert data["nat"]["dnat_moved_by"] is None
    assert all(p["remedy"] for p in data["problems"])


def test_json_with_no_request(capsys: pytest.CaptureFixture[str]) -> None:
    sources = FixtureSources(REAL)
    code, out, _ = _run(capsys, ["--stack", "dev", "--json", "--no-request"], sources)
    assert code == cli.EXIT_OK
    assert sources.requests == []
    data = json.loads(out)
    assert data["request"]["error"] == "not sent"
    assert data["services"] is None


@pytest.mark.parametrize(
    ("root", "no_rule", "refuse"),
    [(False, False, False), (True, True, False), (True, False, True)],
    ids=["no-privilege", "no-rule", "refused"],
)
def test_partial_traces_exit_1(
    capsys: pytest.CaptureFixture[str], root: bool, no_rule: bool, refuse: bool
) -> None:
    sources = FixtureSources(REAL, root=root, no_rule=no_rule, refuse=refuse)
    code, out, _ = _run(capsys, ["--stack", "dev"], sources)
    assert code == cli.EXIT_PARTIAL
    assert "Problems (what could not be read, and what to do):" in out
    assert "5. Summary" in out


def test_not_deployed_exits_3_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, ["--stack", "nosuch"], FixtureSources(REAL))
    assert code == cli.EXIT_NOT_DEPLOYED == 3
    (line,) = out.splitlines()
    assert line.startswith("stack nosuch is not deployed: ")
    assert "c2c.stack=nosuch" in line
    assert "`make up STACK=nosuch`" in line


def test_a_destroyed_stack_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    sources = FixtureSources(REAL)
    code, out, _ = _run(capsys, ["--stack", "gone"], sources)
    assert code == cli.EXIT_NOT_DEPLOYED
    assert "Docker has no network labelled c2c.stack=gone" in out
    assert sources.requests == []


def test_docker_unreachable_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, ["--stack", "dev"], FixtureSources(REAL, docker_up=False))
    assert code == cli.EXIT_DOCKER == 4
    assert "cannot reach Docker" in out


@pytest.mark.parametrize("via", ["198.51.100.7", "172.13.0.3"])
def test_foreign_address_is_a_usage_error(capsys: pytest.CaptureFixture[str], via: str) -> None:
    sources = FixtureSources(REAL)
    code, out, err = _run(capsys, ["--stack", "dev", "--via", via], sources)
    assert code == cli.EXIT_USAGE == 2
    assert sources.requests == []
    assert out == ""
    assert f"error: {via} is not an address of this host" in err


def test_there_is_no_outputs_option(capsys: pytest.CaptureFixture[str]) -> None:
    # The stack is found through its Docker labels alone.
    with pytest.raises(SystemExit) as exited:
        cli.main(["--stack", "dev", "--outputs", "-"], sources=FixtureSources(REAL))
    assert exited.value.code == cli.EXIT_USAGE
    assert "unrecognized arguments: --outputs" in capsys.readouterr().err


# -- --help and the documented exit codes ---------------------------------------------------------


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--outputs" not in help_text
    for fragment in (
        "--stack STACK",
        "--json",
        "--via auto|loopback|gateway|IP",
        "--no-request",
        "diagram",
        "root",
        "exit codes: 0 complete, 1 partial, 2 usage, 3 stack not deployed, 4 Docker "
        "unreachable, 5 Graphviz dot missing (diagram)",
    ):
        assert fragment in help_text, fragment


def test_diagram_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["diagram", "--help"])
    assert exited.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--out OUT" in help_text
    assert "default: docs/topology" in help_text
    assert "exit codes:" in help_text


def test_bad_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--bogus"])
    assert exited.value.code == cli.EXIT_USAGE
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_module_entry_point_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "packet_trace", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m packet_trace")


def test_docs_table_lists_every_exit_code() -> None:
    doc = (REPO / "docs" / "packet-trace.md").read_text()
    table = dict(re.findall(r"^\| (\d) \| (.+) \|$", doc, flags=re.MULTILINE))
    constants = {
        cli.EXIT_OK: "complete",
        cli.EXIT_PARTIAL: "partial",
        cli.EXIT_USAGE: "usage error",
        cli.EXIT_NOT_DEPLOYED: "not deployed",
        cli.EXIT_DOCKER: "Docker is unreachable",
        cli.EXIT_NO_DOT: "`dot` is missing",
    }
    assert sorted(int(k) for k in table) == sorted(constants)
    for code, words in constants.items():
        assert words in table[str(code)], (code, table[str(code)])


# -- diagram -------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot not installed")
def test_diagram_subcommand_anywhere(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("graphviz")
    out = tmp_path / "topo"
    sources = FixtureSources(REAL)
    code, stdout, _ = _run(capsys, ["--stack", "dev", "diagram", "--out", str(out)], sources)
    assert code == cli.EXIT_OK
    assert stdout.splitlines() == [f"wrote {out}.svg", f"wrote {out}.png"]
    assert "172.13.0.3:8081" in out.with_suffix(".svg").read_text()
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_diagram_of_an_undeployed_stack_prints_the_report_to_stderr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("graphviz")
    out = tmp_path / "topo"
    code, stdout, err = _run(
        capsys, ["diagram", "--stack", "nosuch", "--out", str(out)], FixtureSources(REAL)
    )
    assert code == cli.EXIT_NOT_DEPLOYED
    assert stdout == ""
    assert "Nothing to trace" in err
    assert not out.with_suffix(".svg").exists()
