"""The current Docker engine under test: dockerd, docker-proxy and runc built from pinned Go
modules by scripts/docker-engine.sh (pins: toolchain/docker-engine/versions.env), with Debian's
containerd, which dockerd starts itself from PATH.

    lab = Lab("tmod", hosts=("m",), engine=modern_engine_spec())
    server_version(lab.up()[0])   # ServerVersion(version="2.0.0-beta.24", api_version="1.56", ...)

Debian's docker CLI 20.10 (API 1.41) drives it as it is: this dockerd accepts API 1.40 and up
by default (DOCKER_MIN_API_VERSION would lower that; it is not needed).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.core import REPO_ROOT, Host
from lab.engine import EngineSpec
from lab.naming import LabError

BUILD_SCRIPT = REPO_ROOT / "scripts" / "docker-engine.sh"
PINS_FILE = REPO_ROOT / "toolchain" / "docker-engine" / "versions.env"
BINARIES = ("dockerd", "docker-proxy", "runc")
# The driver `docker info` reports when images live in containerd (the containerd image store).
CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"


def parse_pins(text: str) -> dict[str, str]:
    """KEY=value lines of a versions.env (bash-sourced: comments, blank lines, optional double
    quotes around a value)."""
    pins = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise LabError(f"not a KEY=value line: {line!r}")
        pins[key] = value.removeprefix('"').removesuffix('"')
    return pins


def pinned_versions() -> dict[str, str]:
    """The pins scripts/docker-engine.sh builds, e.g. {"MOBY_VERSION": "v2.0.0-beta.24", ...}."""
    return parse_pins(PINS_FILE.read_text())


def engine_bin_dir(timeout: float = 3600) -> Path:
    """The directory holding the built dockerd, docker-proxy and runc: built on first use (minutes),
    then found in the per-user cache (a tenth of a second). The script's log goes to our stderr."""
    try:
        result = subprocess.run(
            [str(BUILD_SCRIPT)],
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{BUILD_SCRIPT.name} did not finish within {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise LabError(f"{BUILD_SCRIPT.name} failed (exit {result.returncode}); see its log above")
    bin_dir = Path(result.stdout.strip())
    missing = [name for name in BINARIES if not (bin_dir / name).is_file()]
    if missing:
        raise LabError(f"{BUILD_SCRIPT.name} printed {bin_dir}, which lacks {', '.join(missing)}")
    return bin_dir


def modern_engine_spec(bin_dir: Path | None = None) -> EngineSpec:
    """EngineSpec of the current engine: its dockerd, with its bin directory first on PATH so
    dockerd runs this docker-proxy, and containerd (Debian's, found after it) this runc."""
    directory = bin_dir if bin_dir is not None else engine_bin_dir()
    return EngineSpec(dockerd=str(directory / "dockerd"), path=(str(directory),))


def binary_versions(bin_dir: Path) -> dict[str, str]:
    """The first line of `<binary> --version` of each built binary, e.g.
    {"dockerd": "Docker version 2.0.0-beta.24, build library-import", ...}."""
    versions = {}
    for name in BINARIES:
        result = subprocess.run(
            [str(bin_dir / name), "--version"], capture_output=True, text=True, check=False
        )
        output = (result.stdout or result.stderr).strip()
        if result.returncode != 0 or not output:
            raise LabError(f"{bin_dir / name} --version failed (exit {result.returncode})")
        versions[name] = output.splitlines()[0]
    return versions


def api_version_tuple(version: str) -> tuple[int, ...]:
    """ "1.56" -> (1, 56), so API versions compare as numbers ("1.9" < "1.10")."""
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class ServerVersion:
    """What a running engine reports about itself (`docker version` and `docker info`)."""

    version: str
    api_version: str
    min_api_version: str
    components: dict[str, str]  # name -> version: "Engine", "containerd", "runc", ...
    storage_driver: str
    driver_type: str  # CONTAINERD_SNAPSHOTTER when the containerd image store is on, else ""

    @property
    def containerd_image_store(self) -> bool:
        return self.driver_type == CONTAINERD_SNAPSHOTTER


def parse_server_version(version_json: str, info_json: str) -> ServerVersion:
    """From `docker version --format '{{json .Server}}'` and `docker info --format '{{json .}}'`
    (either engine, through the docker CLI 20.10)."""
    server = json.loads(version_json)
    info = json.loads(info_json)
    # DriverStatus is a list of [name, value] pairs; the containerd store reports its snapshotter
    # as ["driver-type", "io.containerd.snapshotter.v1"], the graph drivers report none.
    status = dict(tuple(pair) for pair in info.get("DriverStatus") or [] if len(pair) == 2)
    return ServerVersion(
        version=server["Version"],
        api_version=server["ApiVersion"],
        min_api_version=server["MinAPIVersion"],
        components={c["Name"]: c["Version"] for c in server.get("Components") or []},
        storage_driver=info["Driver"],
        driver_type=status.get("driver-type", ""),
    )


def server_version(host: Host) -> ServerVersion:
    """The version, API versions and image store of the engine of lab host `host`."""
    version = host.docker(["version", "--format", "{{json .Server}}"]).stdout
    info = host.docker(["info", "--format", "{{json .}}"]).stdout
    return parse_server_version(version, info)
