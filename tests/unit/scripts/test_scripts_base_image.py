"""scripts/base-image.sh: choice of base image (with a fake docker CLI), mirror and trimming."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from tests.unit.scripts.scripts_harness import error_lines, run_script, source_and_run

FALLBACK = "c2c-base/python:3.11-bookworm"

# Stands in for the docker CLI: images "present" are listed in $FAKE_STATE/present, every
# call is appended to $FAKE_STATE/calls, and `pull` behaves as $FAKE_PULL says.
FAKE_DOCKER = r"""#!/bin/bash
state=$FAKE_STATE
echo "$*" >>"$state/calls"
case $1 in
    version) [[ ${FAKE_ENGINE:-up} == up ]] && echo 20.10.24 && exit 0; exit 1 ;;
    pull)
        case ${FAKE_PULL:-fail} in
            hang) exec sleep 60 ;;
            ok) echo "${@: -1}" >>"$state/present"; exit 0 ;;
            *) echo 'Error response from daemon: dial tcp: lookup registry: no such host' >&2
               exit 1 ;;
        esac ;;
    import) echo "${@: -1}" >>"$state/present"; echo sha256:feed; exit 0 ;;
    image)
        ref=${@: -1}
        grep -qxF -- "$ref" "$state/present" 2>/dev/null || exit 1
        case $* in
            *c2c.base.key*) cat "$state/key" 2>/dev/null ;;
            *.Size*) echo 110000000 ;;
            *) echo sha256:cafe ;;
        esac
        exit 0 ;;
esac
exit 0
"""


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, str]:
    """Environment that puts the fake docker first on PATH and isolates caches."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    (state / "present").write_text("")
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_STATE": str(state),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "C2C_STACK": "no-such-stack",
        "C2C_BASE_IMAGE": "",
    }


def _calls(env: dict[str, str]) -> list[str]:
    return (Path(env["FAKE_STATE"]) / "calls").read_text().splitlines()


def _present(env: dict[str, str], *refs: str) -> None:
    with (Path(env["FAKE_STATE"]) / "present").open("a") as f:
        f.writelines(f"{ref}\n" for ref in refs)


def _key() -> str:
    result = source_and_run("base-image.sh", "base_key")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _cached_tarball(env: dict[str, str]) -> Path:
    """A small valid rootfs tarball where the script looks for its cache."""
    cache = Path(env["XDG_CACHE_HOME"]) / "c2c" / "base"
    cache.mkdir(parents=True)
    tarball = cache / f"bookworm-minbase-{_key()}.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("./etc/debian_version")
        data = b"12.0\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tarball.write_bytes(gzip.compress(buf.getvalue()))
    return tarball


def test_local_image_is_used_without_pulling(fake: dict[str, str]) -> None:
    _present(fake, "python:3.11-slim")
    result = run_script("base-image.sh", "python:3.11-slim", env=fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "python:3.11-slim\n"
    assert not [c for c in _calls(fake) if c.startswith(("pull", "import"))]


def test_pullable_image_is_pulled_and_printed(fake: dict[str, str]) -> None:
    result = run_script("base-image.sh", "example/base:1", env={**fake, "FAKE_PULL": "ok"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "example/base:1\n"
    assert any(c.startswith("pull") and c.endswith("example/base:1") for c in _calls(fake))


def test_hanging_registry_is_abandoned_at_the_timeout(fake: dict[str, str]) -> None:
    (Path(fake["FAKE_STATE"]) / "key").write_text(_key() + "\n")
    _present(fake, FALLBACK)
    started = time.monotonic()
    result = run_script(
        "base-image.sh",
        "python:3.11-slim",
        env={**fake, "FAKE_PULL": "hang", "C2C_PULL_TIMEOUT": "1"},
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{FALLBACK}\n"
    assert elapsed < 15, f"waited {elapsed:.1f}s on a hanging pull"
    assert "timed out" in result.stderr


def test_stale_fallback_is_reimported_from_the_cached_tarball(fake: dict[str, str]) -> None:
    (Path(fake["FAKE_STATE"]) / "key").write_text("oldkey\n")
    _present(fake, FALLBACK)
    tarball = _cached_tarball(fake)
    result = run_script("base-image.sh", env=fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{FALLBACK}\n"
    imports = [c for c in _calls(fake) if c.startswith("import")]
    assert len(imports) == 1
    call = imports[0]
    assert call.endswith(f"{tarball} {FALLBACK}")
    for change in (
        'CMD ["python3"]',
        "ENV LANG=C.UTF-8",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LABEL c2c.project=c2c",
        f"LABEL c2c.base.key={_key()}",
    ):
        assert f"--change {change}" in call


def test_fallback_name_is_never_pulled(fake: dict[str, str]) -> None:
    _cached_tarball(fake)
    result = run_script("base-image.sh", FALLBACK, env=fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{FALLBACK}\n"
    assert not [c for c in _calls(fake) if c.startswith("pull")]


def test_no_engine_is_a_one_line_error(fake: dict[str, str]) -> None:
    result = run_script("base-image.sh", env={**fake, "FAKE_ENGINE": "down"})
    assert result.returncode == 1
    assert result.stdout == ""
    errors = error_lines(result.stderr, "base-image.sh")
    assert len(errors) == 1
    assert "ensure-docker.sh" in errors[0]


def test_config_file_supplies_the_default_image(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.teststack.yaml").write_text(
        'config:\n  c2c:hostPort: "8090"\n  c2c:baseImage: "local/base:7"  # offline\n'
    )
    result = source_and_run(
        "base-image.sh",
        "C2C_ROOT=$ROOT C2C_STACK=teststack configured_image",
        env={"ROOT": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "local/base:7\n"


def _mirror(apt_etc: Path) -> str:
    result = source_and_run(
        "base-image.sh", "debian_mirror", env={"C2C_APT_ETC": str(apt_etc), "C2C_DEBIAN_MIRROR": ""}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.invalid/debian bookworm main\n"
        "deb http://security.invalid/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main\n"
    )
    assert _mirror(tmp_path) == "http://mirror.invalid/debian"


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.invalid/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://disabled.invalid/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb deb-src\n# a comment\nURIs: http://mirror.invalid/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert _mirror(tmp_path) == "http://mirror.invalid/debian"


def test_mirror_defaults_when_apt_names_none(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    assert _mirror(tmp_path) == "http://deb.debian.org/debian"


def test_trim_keeps_python_and_its_bytecode_and_drops_docs_and_caches(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    # The bytecode stays: a read-only root filesystem cannot take it back, and without it every
    # interpreter (each health probe) compiles the standard library again.
    keep = [
        "usr/bin/python3",
        "usr/lib/python3.11/os.py",
        "usr/lib/python3.11/__pycache__/os.cpython-311.pyc",
        "usr/share/locale/locale.alias",
    ]
    drop = [
        "usr/share/doc/python3/copyright",
        "usr/share/man/man1/python3.1.gz",
        "usr/share/locale/de/LC_MESSAGES/apt.mo",
        "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease",
        "var/cache/apt/pkgcache.bin",
        "var/log/dpkg.log",
        "etc/resolv.conf",
    ]
    for rel in keep + drop:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / "tmp").mkdir()
    (root / "var" / "tmp").mkdir()
    result = source_and_run("base-image.sh", 'trim_rootfs "$R"', env={"R": str(root)})
    assert result.returncode == 0, result.stderr
    assert [rel for rel in keep if not (root / rel).exists()] == []
    assert [rel for rel in drop if (root / rel).exists()] == []
    assert (root / "etc" / "hostname").read_text() == ""
