"""The lab's contact with the machine: commands (ip, iptables, docker), /proc scans, mounts,
signals and deletion. Kept thin: the decisions are in lab.core, the parsing in lab.parse."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from lab import parse
from lab.naming import LabError, is_removable_dir

# dockerd, iptables, runc and docker-proxy live in the sbin directories.
SBIN_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin")
REQUIRED_TOOLS = ("ip", "iptables", "nsenter", "unshare", "hostname", "docker", "umount", "rm")


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only a command's result."""
    print(f"lab: {message}", file=sys.stderr, flush=True)


def tool_path(extra: Sequence[str] = ()) -> str:
    """PATH with `extra` first, then ours, then the sbin directories (deduplicated)."""
    parts = [*extra, *os.environ.get("PATH", "").split(os.pathsep), *SBIN_PATH]
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output; with check, a failure raises LabError quoting the
    command and the last line of its error output."""
    full_env = {**os.environ, "PATH": tool_path(), **(env or {})}
    try:
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)}: no answer within {timeout:.0f}s") from exc
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]}: not found on PATH") from exc
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise LabError(
            f"{' '.join(argv)} failed (exit {result.returncode}): "
            f"{detail[-1] if detail else 'no output'}"
        )
    return result


def missing_tools(extra_path: Sequence[str] = ()) -> list[str]:
    dirs = tool_path(extra_path).split(os.pathsep)
    return [t for t in REQUIRED_TOOLS if not any(os.access(Path(d) / t, os.X_OK) for d in dirs)]


# --- ip -j -------------------------------------------------------------------------------------


def ip_argv(netns: str | None) -> list[str]:
    return ["ip", "-n", netns] if netns else ["ip"]


def netns_names() -> list[str]:
    return parse.parse_netns_list(run(["ip", "-j", "netns", "list"]).stdout)


def links(netns: str | None = None) -> dict[str, parse.Link]:
    return parse.parse_links(run([*ip_argv(netns), "-j", "-d", "link", "show"]).stdout)


def ipv4_addresses(netns: str | None, ifname: str) -> list[ipaddress.IPv4Interface]:
    out = run([*ip_argv(netns), "-j", "addr", "show", "dev", ifname]).stdout
    return parse.parse_ipv4_addresses(out).get(ifname, [])


def routes(netns: str | None = None) -> list[parse.Route]:
    return parse.parse_routes(run([*ip_argv(netns), "-j", "route", "show"]).stdout)


# --- iptables (host namespace) -----------------------------------------------------------------


def ensure_rule(table: str, chain: str, rule: Sequence[str]) -> bool:
    """Insert `rule` at the top of `chain` unless it is there. True if it was added."""
    if run(["iptables", "-w", "-t", table, "-C", chain, *rule], check=False).returncode == 0:
        return False
    run(["iptables", "-w", "-t", table, "-I", chain, "1", *rule])
    return True


def delete_rules_with_comment(table: str, comment: str) -> int:
    listing = run(["iptables", "-w", "-t", table, "-S"]).stdout
    rules = parse.rules_with_comment(listing, comment)
    for rule in rules:
        run(["iptables", "-w", "-t", table, "-D", *rule])
    return len(rules)


def rules_with_comment(table: str, comment: str) -> list[list[str]]:
    return parse.rules_with_comment(run(["iptables", "-w", "-t", table, "-S"]).stdout, comment)


# --- processes ---------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def is_running(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    stat = _read(f"/proc/{pid}/stat")
    return stat is not None and parse.proc_state(stat) not in ("Z", "X", "")


def process_name(pid: int) -> str:
    return (_read(f"/proc/{pid}/comm") or "").strip()


def pid_from_file(path: Path) -> int | None:
    text = _read(str(path))
    return parse.parse_pidfile(text) if text is not None else None


def netns_inode(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def pids_in_netns(netns_file: Path) -> set[int]:
    """Processes whose network namespace is the one `netns_file` holds."""
    wanted = netns_inode(netns_file)
    if wanted is None:
        return set()
    return {pid for pid in all_pids() if netns_inode(f"/proc/{pid}/ns/net") == wanted}


def pids_in_cgroup(parent: str) -> set[int]:
    found = set()
    for pid in all_pids():
        text = _read(f"/proc/{pid}/cgroup")
        if text and parse.in_cgroup(parse.cgroup_paths(text), parent):
            found.add(pid)
    return found


def pids_mentioning(paths: Iterable[Path]) -> set[int]:
    """Processes whose command line names one of `paths` (or a path below it): an engine's
    dockerd, containerd and shims all carry its exec root or data root."""
    needles = [str(p) for p in paths]
    found = set()
    for pid in all_pids():
        cmdline = _read(f"/proc/{pid}/cmdline")
        if cmdline and any(n in arg for arg in cmdline.split("\0") for n in needles):
            found.add(pid)
    return found


def reap(pid: int) -> None:
    # A child of ours (an engine started by this process) stays a zombie until waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait until none of `pids` runs; returns those still running after `timeout` seconds."""
    remaining = set(pids)
    deadline = time.monotonic() + timeout
    while True:
        for pid in list(remaining):
            reap(pid)
            if not is_running(pid):
                remaining.discard(pid)
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.1)


def signal_pids(pids: Iterable[int], sig: signal.Signals) -> None:
    me = {os.getpid(), os.getppid()}
    for pid in pids:
        if pid in me:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def terminate(pids: set[int], grace: float) -> None:
    """SIGTERM, then SIGKILL whatever is left after `grace` seconds; waits until all are gone."""
    pids = pids - {os.getpid(), os.getppid()}
    if not pids:
        return
    signal_pids(pids, signal.SIGTERM)
    left = wait_gone(pids, grace)
    if left:
        signal_pids(left, signal.SIGKILL)
        left = wait_gone(left, 10)
    if left:
        raise LabError(f"processes still running after SIGKILL: {sorted(left)}")


# --- mounts, cgroups and directories -------------------------------------------------------------


def unmount_below(roots: Sequence[Path]) -> int:
    """Unmount everything mounted at or below `roots`, deepest first. Returns how many."""
    count = 0
    for _ in range(5):  # a lazy unmount can reveal mounts that were under the first one
        mountinfo = _read("/proc/self/mountinfo") or ""
        points = parse.mounts_below(mountinfo, [PurePosixPath(r) for r in roots])
        if not points:
            return count
        for point in points:
            if run(["umount", point], check=False).returncode != 0:
                run(["umount", "-l", point], check=False)
            count += 1
    return count


def remove_dir(path: Path) -> bool:
    """Delete a lab directory tree without leaving its filesystem; refuses anything outside the
    lab's state and run roots. True if something was deleted."""
    if not is_removable_dir(path):
        raise LabError(f"refusing to delete {path}: not below the lab's state or run root")
    if not path.exists():
        return False
    run(["rm", "-rf", "--one-file-system", "--", str(path)])
    return True


def rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def remove_cgroups(name: str) -> int:
    """rmdir the cgroup `name` (absolute, e.g. /c2c-lab-lab-a) and its children in every mounted
    hierarchy; cgroup directories go away with rmdir once no process is left in them."""
    removed = 0
    root = Path("/sys/fs/cgroup")
    candidates = [root / name.lstrip("/")]
    if root.is_dir():
        candidates += [d / name.lstrip("/") for d in root.iterdir() if d.is_dir()]
    for top in candidates:
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(dirpath)
                removed += 1
            except OSError:
                pass
    return removed
