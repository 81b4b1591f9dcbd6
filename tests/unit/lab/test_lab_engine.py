"""lab.engine's command line and lab.core's constants that mirror other files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.core import BASE_IMAGE_SCRIPT, OFFLINE_BASE_IMAGE
from lab.engine import EngineSpec, dockerd_argv, dockerd_env
from lab.naming import LabNames
from lab.system import tool_path


def _flag(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == name]


def test_dockerd_runs_in_the_hosts_netns_and_own_uts_namespace() -> None:
    argv = dockerd_argv(LabNames("lab"), "a", EngineSpec())
    # nsenter --net only: `ip netns exec` would remount /sys and dockerd would fail.
    assert argv[:3] == ["nsenter", "--net=/run/netns/c2c-lab-a", "--"]
    assert argv[3:6] == ["unshare", "--uts", "--"]
    script_at = argv.index("-c") + 1
    assert "hostname" in argv[script_at]
    assert argv[script_at + 2 : script_at + 4] == ["a", "dockerd"]


def test_dockerd_gets_its_own_roots_socket_labels_and_cgroup() -> None:
    argv = dockerd_argv(LabNames("lab"), "b", EngineSpec(extra_args=("--debug",)))
    assert _flag(argv, "--data-root") == ["/var/lib/c2c-lab/lab/b"]
    assert _flag(argv, "--exec-root") == ["/run/c2c-lab/lab/b/exec"]
    assert _flag(argv, "--host") == ["unix:///run/c2c-lab/lab/b/docker.sock"]
    assert _flag(argv, "--pidfile") == ["/run/c2c-lab/lab/b/dockerd.pid"]
    assert _flag(argv, "--label") == ["c2c.lab=lab", "c2c.lab.host=b"]
    assert _flag(argv, "--cgroup-parent") == ["/c2c-lab-lab-b"]
    assert argv[-1] == "--debug"


def test_another_dockerd_binary_and_its_path_come_first() -> None:
    spec = EngineSpec(dockerd="/opt/moby/dockerd", path=("/opt/moby/bin",))
    argv = dockerd_argv(LabNames("lab"), "a", spec)
    assert "/opt/moby/dockerd" in argv
    assert "dockerd" not in argv
    path = dockerd_env(spec)["PATH"].split(":")
    assert path[0] == "/opt/moby/bin"
    assert "/usr/sbin" in path


def test_dockerd_env_drops_the_callers_docker_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert "DOCKER_HOST" not in dockerd_env(EngineSpec())


def test_tool_path_has_no_duplicates() -> None:
    parts = tool_path(("/usr/sbin",)).split(":")
    assert len(parts) == len(set(parts))
    assert parts[0] == "/usr/sbin"


def test_offline_base_image_is_the_one_base_image_sh_builds() -> None:
    script = Path(BASE_IMAGE_SCRIPT).read_text()
    suite = re.search(r"^readonly SUITE=(\S+)", script, re.M)
    ref = re.search(r"^readonly FALLBACK_REF=(\S+)", script, re.M)
    assert suite is not None
    assert ref is not None
    assert ref.group(1).replace("$SUITE", suite.group(1)) == OFFLINE_BASE_IMAGE
