"""scripts/docker-engine.sh with a fake `go`, `dpkg-query` and runc (cache key, pins, atomic
builds), and lab.modern's pure parts (pins, what an engine reports).

The script runs from a copy of the repository's pieces it reads (scripts/, the pins), so a test
can change a pin without touching the real files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.engine import dockerd_env
from lab.modern import (
    CONTAINERD_SNAPSHOTTER,
    PINS_FILE,
    api_version_tuple,
    modern_engine_spec,
    parse_pins,
    parse_server_version,
    pinned_versions,
)
from lab.naming import LabError

REPO_ROOT = Path(__file__).resolve().parents[3]
ENGINE_SRC = REPO_ROOT / "toolchain" / "docker-engine"
SCRIPT = "scripts/docker-engine.sh"
GO_VERSION = "go1.26.8"

# Stands in for the go command: `env`, `version -m` (reports $FAKE_MOBY as the moby module of
# any binary) and `build` (fails when FAKE_BUILD=fail, else writes stand-in binaries).
FAKE_GO = r"""#!/bin/bash
echo "$*" >>"$FAKE_STATE/go-calls"
case $1 in
    env) [[ $2 == GOVERSION ]] && echo "$FAKE_GO_VERSION" || echo /nonexistent ;;
    version) printf '%s: %s\n\tpath\tx\n\tmod\tgithub.com/moby/moby/v2\t%s\th1:x=\n' \
        "$3" "$FAKE_GO_VERSION" "$FAKE_MOBY" ;;
    build)
        [[ ${FAKE_BUILD:-ok} == fail ]] && { echo 'build failed' >&2; exit 1; }
        while (($#)); do [[ $1 == -o ]] && out=$2; shift; done
        if [[ $out == */ ]]; then
            for bin in dockerd docker-proxy; do printf '#!/bin/sh\n' >"$out$bin"; done
            chmod +x "$out"dockerd "$out"docker-proxy
        else
            cp "$FAKE_STATE/runc" "$out"
        fi ;;
esac
"""
FAKE_RUNC = r"""#!/bin/bash
case $1 in
    --version) printf 'runc version %s\nspec: 1.3.0\n' "$FAKE_RUNC_VERSION" ;;
    features) echo '{"linux": {"seccomp": {"enabled": true}}}' ;;
esac
"""
# Every package is installed, except those named in $FAKE_MISSING.
FAKE_DPKG_QUERY = r"""#!/bin/bash
pkg=${@: -1}
[[ " ${FAKE_MISSING:-} " == *" $pkg "* ]] && exit 1
printf 'install ok installed'
"""


@dataclass
class Sandbox:
    root: Path  # copy of scripts/ and toolchain/docker-engine/
    cache: Path  # what the script uses as ~/.cache/c2c/docker-engine
    state: Path
    env: dict[str, str]

    @property
    def pins(self) -> Path:
        return self.root / "toolchain" / "docker-engine" / "versions.env"

    def set_pin(self, key: str, value: str) -> None:
        lines = self.pins.read_text().splitlines()
        self.pins.write_text(
            "\n".join(f"{key}={value}" if line.startswith(f"{key}=") else line for line in lines)
            + "\n"
        )

    def run(self, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.root / SCRIPT)],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def call(self, snippet: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Source the script and run a bash snippet with its functions."""
        return subprocess.run(
            ["bash", "-c", f'set -euo pipefail; source "$1"; {snippet}', "bash",
             str(self.root / SCRIPT)],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip

    def cache_key(self) -> str:
        result = self.call("cache_key")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    for name in ("docker-engine.sh", "lib.sh"):
        shutil.copy2(REPO_ROOT / "scripts" / name, root / "scripts" / name)
    shutil.copytree(ENGINE_SRC, root / "toolchain" / "docker-engine")
    fake_bin, state = tmp_path / "bin", tmp_path / "state"
    fake_bin.mkdir()
    state.mkdir()
    _executable(fake_bin / "go", FAKE_GO)
    _executable(fake_bin / "dpkg-query", FAKE_DPKG_QUERY)
    _executable(state / "runc", FAKE_RUNC)
    pins = pinned_versions()
    env = {
        **os.environ,
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "FAKE_STATE": str(state),
        "FAKE_GO_VERSION": GO_VERSION,
        "FAKE_MOBY": pins["MOBY_VERSION"],
        "FAKE_RUNC_VERSION": pins["RUNC_VERSION"].removeprefix("v"),
    }
    return Sandbox(root, tmp_path / "cache" / "c2c" / "docker-engine", state, env)


# --- pins --------------------------------------------------------------------------------------


def test_pins_agree_with_the_wrapper_modules(sandbox: Sandbox) -> None:
    result = sandbox.call("check_pins")
    assert result.returncode == 0, result.stderr
    go_lines = [
        line.split()[1]
        for mod in ENGINE_SRC.glob("*/go.mod")
        for line in mod.read_text().splitlines()
        if line.startswith("go ")
    ]
    newest = max(go_lines, key=lambda v: tuple(int(p) for p in v.split(".")))
    assert pinned_versions()["GO_MIN_VERSION"] == newest


def test_a_pin_that_go_mod_does_not_have_stops_the_build(sandbox: Sandbox) -> None:
    sandbox.set_pin("RUNC_VERSION", "v1.4.3")
    result = sandbox.run()
    assert result.returncode != 0
    assert "does not pin github.com/opencontainers/runc v1.4.3" in result.stderr
    assert "build" not in (sandbox.state / "go-calls").read_text()


def test_cache_key_names_the_pins_and_changes_with_them(sandbox: Sandbox) -> None:
    pins = pinned_versions()
    key = sandbox.cache_key()
    assert key.startswith(f"moby-{pins['MOBY_VERSION']}_runc-{pins['RUNC_VERSION']}_{GO_VERSION}_")
    assert sandbox.call("cache_key", FAKE_GO_VERSION="go1.27.0").stdout.strip() != key
    sandbox.set_pin("MOBY_BUILDTAGS", '"netgo osusergo"')
    tags_changed = sandbox.cache_key()
    assert tags_changed != key
    go_sum = sandbox.root / "toolchain" / "docker-engine" / "runc" / "go.sum"
    go_sum.write_text(go_sum.read_text() + "example.com/x v1.0.0 h1:x=\n")
    assert sandbox.cache_key() not in (key, tags_changed)


def test_cache_key_ignores_readmes(sandbox: Sandbox) -> None:
    key = sandbox.cache_key()
    (sandbox.root / "toolchain" / "docker-engine" / "README.md").write_text("notes\n")
    assert sandbox.cache_key() == key


# --- build and cache ---------------------------------------------------------------------------


def test_cold_build_lands_under_the_key_and_a_warm_run_reuses_it(sandbox: Sandbox) -> None:
    stale = sandbox.cache / ".partial.old.abc123"
    stale.mkdir(parents=True)
    cold = sandbox.run()
    assert cold.returncode == 0, cold.stderr
    bin_dir = Path(cold.stdout.strip())
    assert bin_dir == sandbox.cache / sandbox.cache_key() / "bin"
    assert sorted(p.name for p in bin_dir.iterdir()) == ["docker-proxy", "dockerd", "runc"]
    assert not stale.exists()
    builds = (sandbox.state / "go-calls").read_text().count("build ")
    assert builds == 2  # moby's two commands in one go build, runc in another

    warm = sandbox.run()
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout == cold.stdout
    assert "warm: reusing" in warm.stderr
    assert (sandbox.state / "go-calls").read_text().count("build ") == builds


def test_failed_build_leaves_no_build_behind(sandbox: Sandbox) -> None:
    result = sandbox.run(FAKE_BUILD="fail")
    assert result.returncode != 0
    assert result.stdout == ""
    assert [p.name for p in sandbox.cache.iterdir()] == ["build.lock"]


def test_binary_of_another_version_is_refused(sandbox: Sandbox) -> None:
    result = sandbox.run(FAKE_MOBY="v2.0.0-beta.23")
    assert result.returncode != 0
    assert "built dockerd links github.com/moby/moby/v2 'v2.0.0-beta.23'" in result.stderr
    assert [p.name for p in sandbox.cache.iterdir()] == ["build.lock"]
    result = sandbox.run(FAKE_RUNC_VERSION="1.1.5")
    assert "built runc reports '1.1.5'" in result.stderr


def test_missing_packages_lists_only_those_not_installed(sandbox: Sandbox) -> None:
    result = sandbox.call(
        "missing_packages libseccomp-dev pkg-config containerd", FAKE_MISSING="pkg-config x"
    )
    assert result.stdout.split() == ["pkg-config"]


# --- lab.modern --------------------------------------------------------------------------------


def test_parse_pins_reads_the_bash_file() -> None:
    pins = parse_pins(PINS_FILE.read_text())
    assert pins["MOBY_VERSION"].startswith("v2.")
    assert pins["RUNC_BUILDTAGS"].split() == ["seccomp", "urfave_cli_no_docs"]
    assert parse_pins('# c\n\nA="x y"\nB=1\n') == {"A": "x y", "B": "1"}
    with pytest.raises(LabError, match="not a KEY=value line"):
        parse_pins("export A\n")


def test_spec_runs_the_built_dockerd_with_its_directory_first_on_path(tmp_path: Path) -> None:
    spec = modern_engine_spec(tmp_path)
    assert spec.dockerd == str(tmp_path / "dockerd")
    assert dockerd_env(spec)["PATH"].split(":")[0] == str(tmp_path)


def test_api_versions_compare_as_numbers() -> None:
    assert api_version_tuple("1.9") < api_version_tuple("1.10") < api_version_tuple("1.56")


# `docker version --format '{{json .Server}}'` and `docker info` excerpts of both engines (the
# Debian CLI 20.10 against each), trimmed to the fields read.
CURRENT_SERVER = {
    "Components": [
        {"Name": "Engine", "Version": "2.0.0-beta.24", "Details": {"ApiVersion": "1.56"}},
        {"Name": "containerd", "Version": "1.6.20~ds1", "Details": {}},
        {"Name": "runc", "Version": "1.4.4", "Details": {}},
    ],
    "Version": "2.0.0-beta.24",
    "ApiVersion": "1.56",
    "MinAPIVersion": "1.40",
}
CURRENT_INFO = {"Driver": "overlayfs", "DriverStatus": [["driver-type", CONTAINERD_SNAPSHOTTER]]}
DEBIAN_SERVER = {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}
DEBIAN_INFO = {
    "Driver": "overlay2",
    "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
}


def test_server_version_of_the_current_engine() -> None:
    reported = parse_server_version(json.dumps(CURRENT_SERVER), json.dumps(CURRENT_INFO))
    assert (reported.version, reported.api_version, reported.min_api_version) == (
        "2.0.0-beta.24",
        "1.56",
        "1.40",
    )
    assert reported.components == {
        "Engine": "2.0.0-beta.24",
        "containerd": "1.6.20~ds1",
        "runc": "1.4.4",
    }
    assert reported.containerd_image_store


def test_server_version_of_debian_20_10_has_no_containerd_image_store() -> None:
    reported = parse_server_version(json.dumps(DEBIAN_SERVER), json.dumps(DEBIAN_INFO))
    assert reported.storage_driver == "overlay2"
    assert reported.components == {}
    assert not reported.containerd_image_store
