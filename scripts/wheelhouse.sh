#!/usr/bin/env bash
# Fill each service's wheelhouse (<dir>/wheels/) with linux x86_64 CPython 3.11 wheels for its
# requirements.txt, so image builds install with `pip install --no-index` and no network.
#
# Usage: scripts/wheelhouse.sh [DIR...]   (default: every services/*/ with a requirements.txt)
# A wheelhouse is left alone when its stamp matches requirements.txt and every pinned
# requirement (name==version) has a wheel; otherwise it is downloaded afresh into a temporary
# directory that then replaces it (so stale wheels disappear and readers never see half a set).
# Env: C2C_PYTHON (interpreter with pip; default .venv/bin/python, python3.11, python3).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Target: the services' images (Debian bookworm, glibc 2.36, CPython 3.11, x86_64).
readonly TARGET_ARGS=(
    --only-binary=:all:
    --platform manylinux_2_28_x86_64
    --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64
    --python-version 3.11
    --implementation cp
    --abi cp311 --abi abi3 --abi none
)
readonly STAMP=.c2c-wheelhouse

usage() {
    sed -n '2,9s/^# \{0,1\}//p' "$0" >&2
}

find_python() {
    local c
    for c in ${C2C_PYTHON:-} "$C2C_ROOT/.venv/bin/python" python3.11 python3; do
        [[ -n $c ]] || continue
        if "$c" -m pip --version >/dev/null 2>&1; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    c2c_die "no Python with pip found (tried ${C2C_PYTHON:-} .venv/bin/python python3.11 python3); run 'make venv' or set C2C_PYTHON"
}

# "name version" (name normalised per PEP 503, lower-case) for each name==version line;
# "UNPINNED <line>" for any other requirement line. Comments, options and markers are dropped.
pinned_requirements() {
    awk '
        { sub(/[[:space:]]+#.*$/, ""); sub(/^#.*$/, "") }
        /\\$/ { sub(/\\$/, ""); buf = buf $0 " "; next }
        { line = buf $0; buf = "" }
        {
            sub(/;.*$/, "", line)
            n = split(line, tok, /[[:space:]]+/)
            req = ""
            for (i = 1; i <= n; i++) if (tok[i] != "") { req = tok[i]; break }
            if (req == "" || req ~ /^-/) next
            if (match(req, /^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^]]*\])?==[^=<>!~*]+$/)) {
                split(req, nv, /==/)
                name = tolower(nv[1]); sub(/\[.*$/, "", name); gsub(/[-_.]+/, "-", name)
                print name, tolower(nv[2])
            } else {
                print "UNPINNED", req
            }
        }' "$1"
}

# "name version" for each wheel file in directory $1 (same normalisation).
present_wheels() {
    local f base
    shopt -s nullglob
    for f in "$1"/*.whl; do
        base=${f##*/}
        awk -v b="$base" 'BEGIN {
            split(b, p, "-"); name = tolower(p[1]); gsub(/[-_.]+/, "-", name)
            print name, tolower(p[2]) }'
    done
    shopt -u nullglob
}

stamp_of() {
    { cat "$1"; printf '%s\n' "${TARGET_ARGS[*]}"; } | sha256sum | cut -c1-16
}

# 0 if wheels dir $2 already satisfies requirements file $1.
up_to_date() {
    local req=$1 wheels=$2 have missing
    [[ -d $wheels && -r $wheels/$STAMP ]] || return 1
    [[ $(cat "$wheels/$STAMP") == "$(stamp_of "$req")" ]] || return 1
    have=$(present_wheels "$wheels" | sort -u)
    missing=$(pinned_requirements "$req" | sort -u | comm -23 - <(printf '%s\n' "$have"))
    if [[ -n $missing ]]; then
        c2c_log "$wheels lacks: $(printf '%s' "$missing" | tr '\n' ',' | cut -c1-200)"
        return 1
    fi
    return 0
}

fill_one() {
    local dir=$1 python=$2 req wheels tmp old t0=$EPOCHREALTIME unpinned count
    req=$dir/requirements.txt
    wheels=$dir/wheels
    [[ -r $req ]] || c2c_die "$req not found"
    c2c_lock "$(c2c_state_dir)/locks/wheelhouse-$(printf '%s' "$dir" | sha256sum | cut -c1-12).lock" 900
    unpinned=$(pinned_requirements "$req" | awk '$1 == "UNPINNED" { print $2 }' | tr '\n' ' ')
    [[ -z $unpinned ]] || c2c_log "warning: $req has requirements not pinned with ==: $unpinned"
    if [[ -z $unpinned ]] && up_to_date "$req" "$wheels"; then
        c2c_log "$wheels up to date ($(find "$wheels" -name '*.whl' | wc -l) wheels)"
        return 0
    fi
    tmp=$(mktemp -d "$dir/.wheels.new.XXXXXX")
    c2c_add_cleanup "rm -rf '$tmp'"
    c2c_log "downloading wheels for $req"
    if ! "$python" -m pip download --disable-pip-version-check --no-input --progress-bar off \
        "${TARGET_ARGS[@]}" -d "$tmp" -r "$req" >"$tmp/.pip.log" 2>&1; then
        grep -E '^ERROR' "$tmp/.pip.log" | head -n 3 >&2 || tail -n 3 "$tmp/.pip.log" >&2
        c2c_die "pip download failed for $req"
    fi
    rm -f "$tmp/.pip.log"
    stamp_of "$req" >"$tmp/$STAMP"
    # Swap in the complete set; the old one is removed only after the new one is in place.
    old=
    if [[ -e $wheels ]]; then
        old=$dir/.wheels.old.$$
        mv "$wheels" "$old"
    fi
    chmod 755 "$tmp"
    mv "$tmp" "$wheels"
    [[ -z $old ]] || rm -rf "$old"
    count=$(find "$wheels" -name '*.whl' | wc -l)
    c2c_log "$wheels: $count wheels, $(du -sh "$wheels" | cut -f1), in $(c2c_since "$t0")s"
    up_to_date "$req" "$wheels" || c2c_die "$wheels still lacks pinned wheels after download"
}

main() {
    local dirs=() d python
    case ${1:-} in
        -h | --help) usage; exit 0 ;;
    esac
    if (($#)); then
        for d in "$@"; do
            [[ -d $d ]] || c2c_die "not a directory: $d"
            dirs+=("$(cd "$d" && pwd)")
        done
    else
        shopt -s nullglob
        for d in "$C2C_ROOT"/services/*/requirements.txt; do
            dirs+=("$(dirname "$d")")
        done
        shopt -u nullglob
        ((${#dirs[@]})) || c2c_die "no services/*/requirements.txt under $C2C_ROOT"
    fi
    python=$(find_python)
    for d in "${dirs[@]}"; do
        fill_one "$d" "$python"
    done
}

# Sourcing (tests) only defines the functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
