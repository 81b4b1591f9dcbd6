# shellcheck shell=bash
# Shared helpers for scripts/*.sh. Sourced, never executed.
#
# Conventions: logs and errors go to stderr (one line each, prefixed with the script name),
# stdout is reserved for a script's result. Every script logs its total time on exit.

if [[ -n ${C2C_LIB_LOADED:-} ]]; then
    return 0
fi
C2C_LIB_LOADED=1

C2C_SCRIPT_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
C2C_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
C2C_T0=$EPOCHREALTIME

c2c_log() {
    printf '%s [%s] %s\n' "$(date -u +%H:%M:%S)" "$C2C_SCRIPT_NAME" "$*" >&2
}

c2c_die() {
    printf '%s: error: %s\n' "$C2C_SCRIPT_NAME" "$*" >&2
    exit 1
}

# Seconds (one decimal) since the EPOCHREALTIME value $1.
c2c_since() {
    local start=$1 now=$EPOCHREALTIME
    awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f", b - a }'
}

# Wall-clock timing of one step: `c2c_timed LABEL cmd...` runs cmd in the current shell (so
# `source` works too) and logs "LABEL: Ns". No `||` around cmd: that would switch errexit off
# inside it; a failure still exits under set -e, or is returned where the caller tests it.
c2c_timed() {
    local label=$1 t0=$EPOCHREALTIME rc
    shift
    "$@"
    rc=$?
    ((rc == 0)) || return "$rc"
    c2c_log "$label: $(c2c_since "$t0")s"
}

c2c_on_exit_report() {
    local rc=$?
    if ((rc == 0)); then
        c2c_log "done in $(c2c_since "$C2C_T0")s"
    else
        c2c_log "failed (exit $rc) after $(c2c_since "$C2C_T0")s"
    fi
}
trap c2c_on_exit_report EXIT

# Extra cleanup steps run on exit, newest first (before the timing line).
C2C_CLEANUPS=()
c2c_add_cleanup() {
    C2C_CLEANUPS=("$1" "${C2C_CLEANUPS[@]}")
    trap 'c2c_run_cleanups; c2c_on_exit_report' EXIT
}
c2c_run_cleanups() {
    local rc=$? step
    for step in "${C2C_CLEANUPS[@]}"; do
        eval "$step" || true
    done
    return "$rc"
}

# Per-clone state directory (gitignored): dockerd log and pidfile live here.
c2c_state_dir() {
    local dir=${C2C_STATE_DIR:-$C2C_ROOT/.state}
    mkdir -p "$dir"
    printf '%s\n' "$dir"
}

# Per-user cache shared by all clones on the machine.
c2c_cache_dir() {
    local dir=${XDG_CACHE_HOME:-$HOME/.cache}/c2c
    mkdir -p "$dir"
    printf '%s\n' "$dir"
}

# Take an exclusive flock on file $1, held until the calling script exits. Waits at most
# $2 seconds (default 900) so a stuck peer produces an error instead of a silent hang.
# The locks this script holds: lock file -> its fd (global, wherever lib.sh is sourced).
declare -gA C2C_LOCK_FD_OF=()
c2c_lock() {
    local file=$1 wait=${2:-900} fd
    if ! mkdir -p "$(dirname "$file")" 2>/dev/null || ! touch "$file" 2>/dev/null; then
        c2c_die "cannot create lock file $file"
    fi
    exec {fd}>>"$file"
    C2C_LOCK_FD_OF[$file]=$fd
    if ! flock -n "$fd"; then
        c2c_log "waiting for lock $file (another run holds it)"
        flock -w "$wait" "$fd" || c2c_die "timed out after ${wait}s waiting for lock $file"
    fi
}

# Release the lock c2c_lock took on file $1 before the script ends (a no-op if none is held).
c2c_unlock() {
    local fd=${C2C_LOCK_FD_OF[$1]:-}
    [[ -n $fd ]] || return 0
    unset "C2C_LOCK_FD_OF[$1]"
    eval "exec $fd>&-"
}

# Close the lock fds in the current (sub)shell. Call in a subshell before starting a
# long-lived process: an inherited fd would keep the flock held after this script exits.
c2c_close_lock_fds() {
    local fd
    for fd in "${C2C_LOCK_FD_OF[@]}"; do
        eval "exec $fd>&-"
    done
}

# Machine-wide lock directory: these locks guard machine-wide things (apt, dockerd).
c2c_machine_lock_dir() {
    printf '%s\n' "${C2C_LOCK_DIR:-${TMPDIR:-/tmp}/c2c-locks-$(id -u)}"
}

c2c_is_root() { [[ $(id -u) == 0 ]]; }

c2c_is_debian() { [[ -r /etc/debian_version ]] && command -v apt-get >/dev/null 2>&1; }

# Install Debian packages (root only). `apt-get update` runs at most once per script run;
# services are kept from auto-starting during the install (we start dockerd ourselves, with
# our own log and pidfile).
C2C_APT_UPDATED=
C2C_APT_LOCK=/var/lock/c2c-apt.lock
c2c_apt_install() {
    c2c_is_root || c2c_die "need root to apt-get install: $*"
    c2c_is_debian || c2c_die "not a Debian system (no apt-get); install manually: $*"
    # Same lock file as scripts/host-packages.sh, so the two never run apt at once; released
    # when the install is done, not when the script ends (the engine's build goes on for
    # minutes after its packages, and the Docker install waits for this lock).
    c2c_lock "$C2C_APT_LOCK" 1200
    local t0=$EPOCHREALTIME policy=/usr/sbin/policy-rc.d added_policy=
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z $C2C_APT_UPDATED ]]; then
        c2c_log "apt-get update"
        apt-get -o DPkg::Lock::Timeout=300 -qq update >&2 ||
            c2c_die "apt-get update failed (see output above)"
        C2C_APT_UPDATED=1
    fi
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\n# temporary, from c2c scripts/lib.sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added_policy=1
        c2c_add_cleanup "rm -f '$policy'" # also if we are interrupted mid-install
    fi
    c2c_log "apt-get install $*"
    local rc=0
    apt-get -o DPkg::Lock::Timeout=300 -qq -y --no-install-recommends install "$@" >&2 || rc=$?
    if [[ -n $added_policy ]]; then
        rm -f "$policy"
    fi
    c2c_unlock "$C2C_APT_LOCK"
    ((rc == 0)) || c2c_die "apt-get install $* failed (exit $rc)"
    hash -r
    c2c_log "installed $* in $(c2c_since "$t0")s"
}

# True when a Docker engine answers within $1 seconds (default 10).
c2c_docker_answers() {
    local wait=${1:-10}
    command -v docker >/dev/null 2>&1 || return 1
    timeout -k 2 "$wait" docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

c2c_require_docker() {
    command -v docker >/dev/null 2>&1 ||
        c2c_die "no docker CLI on PATH; run scripts/ensure-docker.sh first"
    c2c_docker_answers 15 ||
        c2c_die "Docker engine not answering (DOCKER_HOST=${DOCKER_HOST:-default}); run scripts/ensure-docker.sh"
}

# --- Go builds cached per user (scripts/toolchain.sh, scripts/docker-engine.sh) -----------

# Die unless `go` is on PATH and at least version $1; $2 says what the build is for.
c2c_require_go() {
    local min=$1 what=$2 have
    command -v go >/dev/null 2>&1 || c2c_die "no Go toolchain on PATH: install Go >= $min (it builds $what)"
    have=$(go env GOVERSION)
    have=${have#go}
    if [[ $(printf '%s\n%s\n' "$min" "$have" | sort -V | head -n1) != "$min" ]]; then
        c2c_die "Go $have is older than $min, which $what needs"
    fi
}

# First 12 hex digits of a hash over the files under $1 that change a build (READMEs do
# not); further arguments are extra `find` tests, e.g. `-path ./sub -prune -o`.
c2c_tree_hash() {
    local dir=$1 sum
    shift
    sum=$(cd "$dir" && find . "$@" -type f ! -name '*.md' -print0 | LC_ALL=C sort -z |
        xargs -0 sha256sum | sha256sum)
    printf '%s\n' "${sum:0:12}"
}

# c2c_cached_build CACHE KEY MARKER WAIT LABEL BUILD_FN: make CACHE/KEY with `BUILD_FN DIR`
# unless CACHE/KEY/MARKER exists. One builder at a time (a caller that waited finds the
# result); the build happens in a partial directory renamed into place when complete, so a
# killed build never leaves a half-made KEY.
c2c_cached_build() {
    local cache=$1 key=$2 marker=$3 wait=$4 label=$5 build=$6 t0=$EPOCHREALTIME tmp
    mkdir -p "$cache"
    if [[ -e $cache/$key/$marker ]]; then
        c2c_log "warm: reusing $cache/$key ($(c2c_since "$t0")s)"
        return 0
    fi
    c2c_lock "$cache/build.lock" "$wait"
    if [[ -e $cache/$key/$marker ]]; then
        c2c_log "another caller built $key while we waited"
        return 0
    fi
    c2c_log "cold build of $key (GOMODCACHE=$(go env GOMODCACHE), GOCACHE=$(go env GOCACHE))"
    # Builds run only under this lock, so every partial directory left is a dead one.
    find "$cache" -mindepth 1 -maxdepth 1 -name '.partial.*' -exec rm -rf {} +
    tmp=$(mktemp -d "$cache/.partial.$key.XXXXXX")
    chmod 755 "$tmp"
    c2c_add_cleanup "rm -rf '$tmp'"
    c2c_timed "$label built (cold)" "$build" "$tmp"
    mv -T "$tmp" "$cache/$key"
}
