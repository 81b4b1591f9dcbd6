#!/usr/bin/env bash
# Debian packages the end-to-end tests and the trace use on the host: wrk (load test),
# graphviz (diagram), iproute2 (ss), iptables (nat table), curl. Installs what is missing
# when it can (root with apt); otherwise names what is missing and fails.
set -euo pipefail
declare -A needs=([wrk]=wrk [dot]=graphviz [ss]=iproute2 [iptables-save]=iptables [curl]=curl)
missing=()
for cmd in "${!needs[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${needs[$cmd]}")
done
((${#missing[@]} == 0)) && exit 0
if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "missing host packages: ${missing[*]} (install them with your package manager)" >&2
    exit 1
fi
echo "installing ${missing[*]}" >&2
exec 9>/var/lock/c2c-apt.lock
flock 9
DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
