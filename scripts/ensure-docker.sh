#!/usr/bin/env bash
# Make sure a Docker engine answers, starting one if we can.
#
# 1. An engine already answers (DOCKER_HOST, the CLI's context, or the default socket): use it.
# 2. Else, as root on Debian: install docker.io + iptables if missing, clear state left by a
#    killed daemon, start dockerd in the background (log and pidfile in .state/), wait for it.
# 3. Else: stop with a message saying what to install or start.
#
# Env: C2C_DOCKERD_WAIT (s to wait for a started daemon, default 60), C2C_STATE_DIR (default
#   <repo>/.state). For running a second, isolated daemon (tests): DOCKER_HOST=unix:///path,
#   C2C_DOCKERD_DATA_ROOT, C2C_DOCKERD_EXEC_ROOT, C2C_DOCKERD_EXTRA_ARGS (space-separated).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly DEFAULT_SOCKET=/var/run/docker.sock
readonly WAIT=${C2C_DOCKERD_WAIT:-60}
readonly EXEC_ROOT=${C2C_DOCKERD_EXEC_ROOT:-/var/run/docker}
readonly SYSTEM_CONTAINERD_SOCKET=/run/containerd/containerd.sock
# dockerd needs iptables, runc, containerd and docker-proxy from the sbin directories.
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

# /var/run is a symlink to /run on Debian; compare socket paths without that prefix.
norm_path() {
    local p=$1
    p=${p#unix://}
    printf '%s\n' "${p#/var}"
}

# True if some process listens on unix socket $1 (per /proc/net/unix: flag __SO_ACCEPTCON).
# A socket file left by a killed daemon has no such entry.
socket_listening() {
    local want
    want=$(norm_path "$1")
    awk -v want="$want" '
        $4 == "00010000" && NF >= 8 {
            p = $8; sub(/^\/var/, "", p)
            if (p == want) { found = 1; exit }
        }
        END { exit found ? 0 : 1 }' /proc/net/unix
}

# Process name of pid $1; empty if there is no such process or it is a zombie (a killed
# daemon whose parent has not reaped it still shows its name).
proc_comm() {
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 0
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]] || return 0
    cat "/proc/$1/comm" 2>/dev/null || true
}

# Remove pidfile $1 unless it names a live process called $2. Returns 0 if removed/absent,
# 1 if the process is alive (its pid on stdout).
clear_stale_pidfile() {
    local file=$1 name=$2 pid
    [[ -e $file ]] || return 0
    pid=$(tr -dc '0-9' <"$file" 2>/dev/null || true)
    if [[ -n $pid && $(proc_comm "$pid") == "$name" ]]; then
        printf '%s\n' "$pid"
        return 1
    fi
    c2c_log "removing stale pidfile $file (pid ${pid:-none} is not a running $name)"
    rm -f "$file"
}

# Pids of running dockerd processes serving socket $1 (no -H means the default socket).
dockerd_pids_for_socket() {
    local want comm pid hosts args i a
    want=$(norm_path "$1")
    for comm in /proc/[0-9]*/comm; do
        [[ $(cat "$comm" 2>/dev/null) == dockerd ]] || continue
        pid=${comm#/proc/}
        pid=${pid%/comm}
        [[ $(proc_comm "$pid") == dockerd ]] || continue
        mapfile -d '' -t args <"/proc/$pid/cmdline" 2>/dev/null || continue
        hosts=()
        for ((i = 1; i < ${#args[@]}; i++)); do
            a=${args[i]}
            case $a in
                -H | --host) hosts+=("${args[i + 1]:-}") ;;
                -H=* | --host=*) hosts+=("${a#*=}") ;;
                -H?*) hosts+=("${a#-H}") ;;
            esac
        done
        ((${#hosts[@]})) || hosts=("unix://$DEFAULT_SOCKET")
        for a in "${hosts[@]}"; do
            case $a in
                fd://*) a=$DEFAULT_SOCKET ;; # socket-activated: systemd's default socket
            esac
            if [[ $(norm_path "$a") == "$want" ]]; then
                printf '%s\n' "$pid"
                break
            fi
        done
    done
}

# Wait until the engine answers (0), the started process is gone (2) or WAIT expires (1).
# $1: pid we launched (nohup/setsid exec into dockerd); $2: dockerd's pidfile, which covers
# setsid having forked. Empty $1: only wait.
wait_for_engine() {
    local pid=$1 pidfile=${2:-} deadline=$((SECONDS + WAIT)) other
    while ((SECONDS < deadline)); do
        if c2c_docker_answers 5; then
            return 0
        fi
        if [[ -n $pid && -z $(proc_comm "$pid") ]]; then
            other=
            [[ -r $pidfile ]] && other=$(tr -dc '0-9' <"$pidfile")
            [[ -n $other && $(proc_comm "$other") == dockerd ]] || return 2
        fi
        sleep 0.5
    done
    return 1
}

install_if_missing() {
    if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
        return 0
    fi
    if ! c2c_is_root || ! c2c_is_debian; then
        c2c_die "no Docker engine answers and Docker is not installed; install Docker (Debian, as root: apt-get install docker.io iptables; elsewhere: Docker Engine from your OS vendor) and start it, or set DOCKER_HOST"
    fi
    c2c_log "Docker not installed: installing Debian's docker.io"
    c2c_apt_install docker.io iptables
    command -v dockerd >/dev/null 2>&1 || c2c_die "docker.io installed but dockerd not on PATH"
    command -v docker >/dev/null 2>&1 || c2c_die "docker.io installed but the docker CLI is not on PATH"
}

# Remove what a killed daemon leaves behind that would stop or confuse a new one.
clear_leftovers() {
    local pidfile=$1 socket=$2 pid
    clear_stale_pidfile "$pidfile" dockerd >/dev/null || true
    if [[ $(norm_path "$socket") == "$(norm_path "$DEFAULT_SOCKET")" ]]; then
        # The pidfile of a dockerd started by other means (init script, by hand).
        clear_stale_pidfile /var/run/docker.pid dockerd >/dev/null || true
    fi
    # dockerd re-adopts the containerd named here if that pid is alive; a reused pid would
    # make it wait on (and later signal) an unrelated process.
    clear_stale_pidfile "$EXEC_ROOT/containerd/containerd.pid" containerd >/dev/null || true
    # dockerd uses a system containerd whenever this socket file exists; a dead one's socket
    # would make it fail instead of starting its own.
    if [[ -S $SYSTEM_CONTAINERD_SOCKET ]] && ! socket_listening "$SYSTEM_CONTAINERD_SOCKET"; then
        c2c_log "removing stale $SYSTEM_CONTAINERD_SOCKET (no containerd listening)"
        rm -f "$SYSTEM_CONTAINERD_SOCKET"
    fi
    if [[ -S $socket ]] && ! socket_listening "$socket"; then
        c2c_log "removing stale socket $socket"
        rm -f "$socket"
    fi
}

# The line that best explains a failed start, from the part of log $1 after byte $2.
startup_error() {
    tail -c +"$2" "$1" | grep -v '^====' | awk '
        /level=fatal|failed to start|unknown flag|^Error|^error/ { best = $0 }
        NF { last = $0 }
        END { print (best != "" ? best : last) }' | cut -c1-300
}

start_dockerd() {
    local socket=$1 state log pidfile args extra pid offset t0=$EPOCHREALTIME rc=0
    state=$(c2c_state_dir)
    log=$state/dockerd.log
    pidfile=$state/dockerd.pid
    clear_leftovers "$pidfile" "$socket"
    args=(--pidfile "$pidfile" -H "unix://$socket")
    [[ -n ${C2C_DOCKERD_DATA_ROOT:-} ]] && args+=(--data-root "$C2C_DOCKERD_DATA_ROOT")
    [[ -n ${C2C_DOCKERD_EXEC_ROOT:-} ]] && args+=(--exec-root "$C2C_DOCKERD_EXEC_ROOT")
    if [[ -n ${C2C_DOCKERD_EXTRA_ARGS:-} ]]; then
        read -r -a extra <<<"$C2C_DOCKERD_EXTRA_ARGS"
        args+=("${extra[@]}")
    fi
    touch "$log"
    offset=$(($(stat -c %s "$log") + 1))
    printf '==== %s c2c ensure-docker: dockerd %s\n' "$(date -u +%FT%TZ)" "${args[*]}" >>"$log"
    c2c_log "starting dockerd ${args[*]} (log: $log)"
    # setsid: own session, so a Ctrl-C in the calling terminal does not stop the daemon.
    (
        c2c_close_lock_fds
        exec nohup setsid dockerd "${args[@]}" >>"$log" 2>&1 </dev/null
    ) &
    pid=$!
    wait_for_engine "$pid" "$pidfile" || rc=$?
    # dockerd's own pidfile is authoritative (setsid may have forked).
    [[ -s $pidfile ]] && pid=$(tr -dc '0-9' <"$pidfile")
    case $rc in
        0) c2c_log "dockerd (pid $pid) answers on $socket after $(c2c_since "$t0")s: engine $(docker version --format '{{.Server.Version}}' 2>/dev/null)" ;;
        2) c2c_die "dockerd exited during startup: $(startup_error "$log" "$offset"); full log: $log" ;;
        *) c2c_die "dockerd (pid $pid) did not answer on $socket within ${WAIT}s; log: $log" ;;
    esac
}

main() {
    local socket pids
    if c2c_docker_answers 10; then
        c2c_log "Docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null) answers (DOCKER_HOST=${DOCKER_HOST:-default})"
        return 0
    fi
    case ${DOCKER_HOST:-} in
        "") socket=$DEFAULT_SOCKET ;;
        unix://*) socket=${DOCKER_HOST#unix://} ;;
        *) c2c_die "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine or unset DOCKER_HOST" ;;
    esac
    # Serialise starters machine-wide, then re-check: a concurrent run may have started it.
    c2c_lock "$(c2c_machine_lock_dir)/ensure-docker.lock" $((WAIT * 3 + 600))
    if c2c_docker_answers 10; then
        c2c_log "Docker engine answers (started by a concurrent run)"
        return 0
    fi
    install_if_missing
    if ! c2c_is_root; then
        c2c_die "Docker is installed but no engine answers on $socket and this is not root: start it (e.g. sudo systemctl start docker, or sudo dockerd) or set DOCKER_HOST"
    fi
    pids=$(dockerd_pids_for_socket "$socket" | tr '\n' ' ')
    if [[ -n ${pids// /} ]]; then
        # Never start a second daemon on the same socket/state: give the running one time.
        c2c_log "dockerd already running (pid ${pids% }) for $socket; waiting up to ${WAIT}s"
        wait_for_engine "" ||
            c2c_die "dockerd (pid ${pids% }) runs but does not answer on $socket after ${WAIT}s; check its log or stop it"
        c2c_log "Docker engine answers"
        return 0
    fi
    start_dockerd "$socket"
}

# Sourcing (tests) only defines the functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
