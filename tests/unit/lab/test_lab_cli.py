"""lab.cli: arguments and the printed host list."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from lab.cli import build_parser, format_hosts
from lab.core import Host, Lab


def test_up_defaults_are_the_two_host_lab() -> None:
    args = build_parser().parse_args(["up"])
    assert args.name == "lab"
    assert args.hosts == ("a", "b")
    assert args.underlay == ipaddress.IPv4Network("198.18.0.0/24")
    assert not args.swarm


def test_up_takes_hosts_underlay_and_another_dockerd() -> None:
    args = build_parser().parse_args(
        ["--name", "e2e", "up", "--hosts", "e2e", "--underlay", "198.18.5.0/24",
         "--dockerd", "/opt/d/dockerd", "--path", "/opt/d", "--swarm"]
    )  # fmt: skip
    assert (args.name, args.hosts, args.dockerd, args.path) == (
        "e2e",
        ("e2e",),
        "/opt/d/dockerd",
        ["/opt/d"],
    )
    assert args.swarm


def test_bad_host_list_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["up", "--hosts", "a,A"])
    assert exc.value.code == 2
    assert "host name 'A'" in capsys.readouterr().err


def _host(lab: Lab, name: str, address: str, role: str | None) -> Host:
    return Host(
        lab=lab.name,
        name=name,
        netns=lab.names.netns(name),
        address=ipaddress.IPv4Address(address),
        docker_host=lab.names.docker_host(name),
        pid=123,
        data_root=Path("/x"),
        run_dir=Path("/y"),
        log_file=Path("/y/l"),
        veth=lab.names.veth(name),
        engine_up=True,
        swarm_role=role,
    )


def test_format_hosts_prints_address_socket_and_role_per_host() -> None:
    lab = Lab()
    text = format_hosts(
        lab, [_host(lab, "a", "198.18.0.1", "manager"), _host(lab, "b", "198.18.0.2", None)]
    )
    lines = text.splitlines()
    assert lines[0] == "lab lab: bridge c2clab0 198.18.0.254/24"
    assert "198.18.0.1" in lines[1]
    assert "DOCKER_HOST=unix:///run/c2c-lab/lab/a/docker.sock" in lines[1]
    assert lines[1].endswith("swarm manager")
    assert "swarm" not in lines[2]
    assert "123" not in text  # pids change across restarts; a repeated `up` prints the same
