"""Debian packages the bench runs: wrk and docker-compose, installed when missing (root, apt),
under the same lock as scripts/host-packages.sh so concurrent installs wait for each other."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess

# command -> Debian package
NEEDED = {"wrk": "wrk", "docker-compose": "docker-compose"}
APT_LOCK = "/var/lock/c2c-apt.lock"


def ensure_packages() -> None:
    missing = [package for command, package in NEEDED.items() if shutil.which(command) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"missing packages: {' '.join(missing)} (install them as root)")
    print(f"installing {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(APT_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env,
            check=True,
        )
