"""The command line: exit codes and output formats, on replayed captures (no traffic)."""

from __future__ import annotations

import json

import pytest

from packet_trace import cli
from tests.unit.trace.trace_fixtures import FixtureSources


def test_complete_trace_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--stack", "tracefixture"], sources=FixtureSources("standin-allif"))
    assert code == cli.EXIT_OK
    assert "5. Summary" in capsys.readouterr().out


def test_json_flag_prints_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--stack", "tracefixture", "--json"], sources=FixtureSources("standin-allif"))
    assert code == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["stack"] == "tracefixture"


def test_partial_without_privilege_exits_1() -> None:
    sources = FixtureSources("standin-loopback", mode="noperm")
    assert cli.main(["--stack", "tracefixture"], sources=sources) == cli.EXIT_PARTIAL


def test_not_deployed_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--stack", "nosuch"], sources=FixtureSources("standin-loopback")) == 3
    assert "make up" in capsys.readouterr().out


def test_docker_unreachable_exits_4() -> None:
    sources = FixtureSources("standin-loopback", docker_up=False)
    assert cli.main(["--stack", "tracefixture"], sources=sources) == cli.EXIT_DOCKER


def test_foreign_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    sources = FixtureSources("standin-allif")
    code = cli.main(["--stack", "tracefixture", "--via", "198.51.100.7"], sources=sources)
    assert code == cli.EXIT_USAGE
    assert sources.requests == []
    assert "not an address of this host" in capsys.readouterr().err


def test_outputs_file(tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"  # type: ignore[operator]
    path.write_text(
        json.dumps(
            {
                "endpoint": "http://localhost:18090",
                "internalIp": "10.213.0.2",
                "externalIp": "10.213.0.3",
                "subnet": "10.213.0.0/24",
                "gateway": "10.213.0.1",
                "networkName": "c2c-tracefixture-net",
                "internalUrl": "http://10.213.0.2:8080",
            }
        )
    )
    code = cli.main(
        ["--stack", "tracefixture", "--outputs", str(path), "--json"],
        sources=FixtureSources("standin-allif"),
    )
    assert code == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["outputs"]["source"] == "file"


def test_diagram_subcommand_anywhere(tmp_path: pytest.TempPathFactory) -> None:
    pytest.importorskip("graphviz")
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("Graphviz dot not installed")
    out = tmp_path / "topo"  # type: ignore[operator]
    code = cli.main(
        ["--stack", "tracefixture", "diagram", "--out", str(out)],
        sources=FixtureSources("standin-allif"),
    )
    assert code == cli.EXIT_OK
    assert out.with_suffix(".svg").exists()
    assert out.with_suffix(".png").exists()
