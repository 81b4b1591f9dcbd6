#!/usr/bin/env bash
# Locate or build the current Docker engine under test; print ONLY its bin directory.
#
#   bin=$(scripts/docker-engine.sh)   # holds dockerd, docker-proxy and runc
#
# The pins are toolchain/docker-engine/versions.env (checked against the wrapper modules' go.mod;
# their go.sum pins every module): dockerd and docker-proxy from github.com/moby/moby/v2, runc
# from github.com/opencontainers/runc, built from the Go module proxy into a per-user cache
# shared by every clone on the machine, ${XDG_CACHE_HOME:-~/.cache}/c2c/docker-engine/<key>/bin
# (key = pinned versions + Go version + a hash of toolchain/docker-engine/**). containerd is
# Debian's: dockerd starts the one it finds on PATH. Put the bin directory first on dockerd's PATH
# (lab.modern does) so it runs this runc and docker-proxy.
#
# Builds run in a temp dir renamed into place (an interrupted build is never taken for a good one)
# under a flock (concurrent callers wait, then reuse). Debian packages the build and the engine
# need (libseccomp-dev, pkg-config, containerd) are installed when missing (root only).
#
# Environment: C2C_DOCKER_ENGINE_WAIT (s, default 3600) bounds the wait for another caller's
# build. Logs and timings go to stderr.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENGINE_SRC=$C2C_ROOT/toolchain/docker-engine
# shellcheck source=toolchain/docker-engine/versions.env
source "$ENGINE_SRC/versions.env"

# libseccomp-dev and pkg-config: runc's seccomp support (cgo). containerd: run by dockerd.
DEBIAN_PACKAGES=(libseccomp-dev pkg-config containerd)
MOBY_MODULE=github.com/moby/moby/v2
RUNC_MODULE=github.com/opencontainers/runc

# Names of the packages in $@ that dpkg does not list as installed.
missing_packages() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null) || status=
        [[ $status == "install ok installed" ]] || printf '%s\n' "$pkg"
    done
}

ensure_packages() {
    local missing
    c2c_is_debian || return 0 # elsewhere the build says what it lacks
    mapfile -t missing < <(missing_packages "${DEBIAN_PACKAGES[@]}")
    ((${#missing[@]} == 0)) || c2c_apt_install "${missing[@]}"
}

# versions.env is what people read; go.mod is what Go builds. Refuse to build if they disagree.
check_pins() {
    local mod
    mod=$ENGINE_SRC/moby/go.mod
    grep -q "^[[:space:]]*$MOBY_MODULE $MOBY_VERSION\b" "$mod" ||
        c2c_die "$mod does not pin $MOBY_MODULE $MOBY_VERSION (versions.env)"
    mod=$ENGINE_SRC/runc/go.mod
    grep -q "^[[:space:]]*$RUNC_MODULE $RUNC_VERSION\b" "$mod" ||
        c2c_die "$mod does not pin $RUNC_MODULE $RUNC_VERSION (versions.env)"
}

# Cache key: pinned versions, Go version and the content of toolchain/docker-engine/ (go.sum and
# the build tags in versions.env change the binaries too; READMEs do not).
cache_key() {
    printf 'moby-%s_runc-%s_%s_%s\n' "$MOBY_VERSION" "$RUNC_VERSION" "$(go env GOVERSION)" \
        "$(c2c_tree_hash "$ENGINE_SRC")"
}

go_build() {
    local dir=$1 cgo=$2 tags=$3 ldflags=$4 out=$5
    shift 5
    # GOTOOLCHAIN=local: never fetch another Go behind our back; go.sum pins every module.
    (cd "$dir" && CGO_ENABLED=$cgo GOTOOLCHAIN=local nice -n 10 \
        go build -trimpath -mod=readonly -buildvcs=false -tags "$tags" -ldflags "-s -w $ldflags" \
        -o "$out" "$@")
}

# The version of module $2 in binary $1, from its build info (a tool is recorded as "mod").
linked_version() {
    go version -m "$1" | awk -v mod="$2" '($1 == "mod" || $1 == "dep") && $2 == mod { print $3 }'
}

build_into() {
    local out=$1/bin bin got
    mkdir -p "$out"
    # CGO off, as upstream's docker-proxy; for dockerd it only drops the btrfs graph driver and
    # xfs project quotas, which this engine (containerd snapshotter, overlayfs) does not use.
    c2c_timed "dockerd and docker-proxy $MOBY_VERSION built" go_build "$ENGINE_SRC/moby" 0 \
        "$MOBY_BUILDTAGS" "-X $MOBY_MODULE/dockerversion.Version=${MOBY_VERSION#v}" "$out/" \
        "$MOBY_MODULE/cmd/dockerd" "$MOBY_MODULE/cmd/docker-proxy"
    # runc needs cgo (its nsenter part is C) and links Debian's libseccomp.
    c2c_timed "runc $RUNC_VERSION built" go_build "$ENGINE_SRC/runc" 1 "$RUNC_BUILDTAGS" "" \
        "$out/runc" "$RUNC_MODULE"

    for bin in dockerd docker-proxy; do
        got=$(linked_version "$out/$bin" "$MOBY_MODULE")
        [[ $got == "$MOBY_VERSION" ]] || c2c_die "built $bin links $MOBY_MODULE '$got', want $MOBY_VERSION"
    done
    got=$("$out/runc" --version | awk 'NR == 1 { print $3 }')
    [[ $got == "${RUNC_VERSION#v}" ]] || c2c_die "built runc reports '$got', want ${RUNC_VERSION#v}"
    "$out/runc" features | python3 -c 'import json, sys
sys.exit(0 if json.load(sys.stdin)["linux"]["seccomp"]["enabled"] else 1)' ||
        c2c_die "built runc has no seccomp support (runc features)"
}

main() {
    local cache key
    ensure_packages
    c2c_require_go "$GO_MIN_VERSION" "the Docker engine (toolchain/docker-engine/*/go.mod)"
    check_pins
    cache=$(c2c_cache_dir)/docker-engine
    key=$(cache_key)
    c2c_cached_build "$cache" "$key" bin/dockerd "${C2C_DOCKER_ENGINE_WAIT:-3600}" \
        "docker engine" build_into
    printf '%s\n' "$cache/$key/bin"
}

# Sourcing (tests) only defines the functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
