#!/usr/bin/env bash
# Locate or build the offline Pulumi toolchain; print ONLY the directory to put first on PATH.
#
#   PATH="$(scripts/toolchain.sh):$PATH"
#
# 1. If `pulumi`, a python language host and a docker resource plugin of the pinned version
#    (toolchain/versions.env) are already usable, print the directory holding `pulumi`.
# 2. Else build the pinned pieces from the Go module proxy into a per-user cache shared by every
#    clone on the machine, ${XDG_CACHE_HOME:-~/.cache}/c2c/toolchain/<key>/ (key = pinned
#    versions + Go version + a hash of toolchain/**): bin/ holds pulumi, pulumi-language-python
#    (our own host) and pulumi-language-python-exec; plugins/ holds pulumi-resource-docker, which
#    is installed with `pulumi plugin install --file` into the build's own pulumi-home/, so the
#    CLI finds it with no download. Callers set PULUMI_HOME to <bin>/../pulumi-home when it
#    exists (scripts/pulumi-env.sh does): our provider, built from another upstream commit than
#    Pulumi's release, never lands in the user's ~/.pulumi as "docker 5.1.0". Builds run in a temp dir renamed into place (an interrupted
#    build is never taken for a good one) under a flock (concurrent callers wait, then reuse).
#
# Environment: C2C_TOOLCHAIN=build skips step 1 (CI uses it to exercise the cold path);
# C2C_TOOLCHAIN_WAIT (s, default 3600) bounds the wait for another caller's build.
# Logs and timings go to stderr.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TC_DIR=$C2C_ROOT/toolchain
# shellcheck source=toolchain/versions.env
source "$TC_DIR/versions.env"

export PULUMI_SKIP_UPDATE_CHECK=true

# True when `pulumi plugin ls` (run with the pulumi given as $1) lists docker at the pinned version.
has_docker_plugin() {
    "$1" plugin ls --json 2>/dev/null | python3 -c '
import json, sys
want = sys.argv[1]
plugins = json.load(sys.stdin) or []
ok = any(p.get("kind") == "resource" and p.get("name") == "docker" and p.get("version") == want
         for p in plugins)
sys.exit(0 if ok else 1)
' "$PULUMI_DOCKER_VERSION"
}

# Step 1: a toolchain that is already installed (a workstation with Pulumi, or PATH set up by a
# previous call). Prints its bin directory.
find_installed() {
    local pulumi dir
    pulumi=$(command -v pulumi 2>/dev/null) || return 1
    dir=$(dirname "$(readlink -f "$pulumi")")
    # One of our own cached builds (e.g. PATH set by an earlier call): go through the cache key
    # instead, so a changed toolchain/ never runs stale binaries.
    [[ $dir != "$(c2c_cache_dir)/toolchain/"* ]] || return 1
    "$pulumi" version >/dev/null 2>&1 || return 1
    # Pulumi's releases ship the python host (and its -exec helper) next to the CLI; a host found
    # elsewhere on PATH is used by the CLI as well.
    if [[ ! -x $dir/pulumi-language-python ]] && ! command -v pulumi-language-python >/dev/null; then
        return 1
    fi
    if ! has_docker_plugin "$pulumi"; then
        # A workstation with Pulumi but without this plugin version: the normal install, bounded
        # in time (fails at once where no registry is reachable, as on CI's machines).
        timeout 120 "$pulumi" plugin install resource docker "$PULUMI_DOCKER_VERSION" >&2 ||
            return 1
        has_docker_plugin "$pulumi" || return 1
    fi
    printf '%s\n' "$dir"
}

# versions.env is what people read; go.mod is what Go builds. Refuse to build if they disagree.
check_pins() {
    local mod
    mod=$TC_DIR/pulumi-cli/go.mod
    grep -q "github.com/pulumi/pulumi/pkg/v3 v$PULUMI_VERSION\b" "$mod" ||
        c2c_die "$mod does not pin pulumi pkg/v3 v$PULUMI_VERSION (versions.env)"
    mod=$TC_DIR/pulumi-language-python/go.mod
    grep -q "github.com/pulumi/pulumi/sdk/v3 v$PULUMI_VERSION\b" "$mod" ||
        c2c_die "$mod does not pin pulumi sdk/v3 v$PULUMI_VERSION (versions.env)"
    mod=$TC_DIR/docker-provider/go.mod
    grep -q "github.com/pulumi/pulumi-terraform-bridge/v3 $TF_BRIDGE_VERSION\b" "$mod" ||
        c2c_die "$mod does not pin the bridge at $TF_BRIDGE_VERSION (versions.env)"
    grep -q "github.com/pulumi/pulumi/sdk/v3 $PROVIDER_PULUMI_SDK_VERSION\b" "$mod" ||
        c2c_die "$mod does not pin pulumi sdk/v3 $PROVIDER_PULUMI_SDK_VERSION (versions.env)"
    grep -q "github.com/kreuzwerker/terraform-provider-docker $KREUZWERKER_PSEUDO_VERSION\b" "$mod" ||
        c2c_die "$mod does not pin kreuzwerker at $KREUZWERKER_PSEUDO_VERSION (versions.env)"
}

# Cache key: pinned versions, Go version and the content of everything under toolchain/ (our
# own host, exec script and provider main change the binaries too) but the Docker engine's
# pins, which scripts/docker-engine.sh builds.
cache_key() {
    printf 'pulumi-%s_docker-%s_%s_%s\n' "$PULUMI_VERSION" "$PULUMI_DOCKER_VERSION" \
        "$(go env GOVERSION)" "$(c2c_tree_hash "$TC_DIR" -path ./docker-engine -prune -o)"
}

go_build() {
    local dir=$1 out=$2 ldflags=$3 pkg=$4
    # CGO off: static binaries that need no C compiler on a fresh machine (as Pulumi releases).
    # GOTOOLCHAIN=local: never fetch another Go behind our back; go.sum pins every module.
    (cd "$dir" && CGO_ENABLED=0 GOTOOLCHAIN=local nice -n 10 \
        go build -trimpath -mod=readonly -buildvcs=false -ldflags "-s -w $ldflags" -o "$out" "$pkg")
}

build_into() {
    local out=$1 got
    mkdir -p "$out/bin" "$out/plugins"
    c2c_timed "pulumi CLI v$PULUMI_VERSION built" go_build "$TC_DIR/pulumi-cli" "$out/bin/pulumi" \
        "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
        github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
    c2c_timed "python language host built" go_build "$TC_DIR/pulumi-language-python" \
        "$out/bin/pulumi-language-python" "-X main.version=$PULUMI_VERSION" .
    install -m 0755 "$TC_DIR/pulumi-language-python-exec" "$out/bin/pulumi-language-python-exec"
    c2c_timed "docker provider v$PULUMI_DOCKER_VERSION built" go_build "$TC_DIR/docker-provider" \
        "$out/plugins/pulumi-resource-docker" "-X main.version=$PULUMI_DOCKER_VERSION" .

    got=$("$out/bin/pulumi" version)
    [[ $got == "v$PULUMI_VERSION" ]] || c2c_die "built pulumi reports '$got', want v$PULUMI_VERSION"
    got=$("$out/plugins/pulumi-resource-docker" -version)
    [[ $got == "$PULUMI_DOCKER_VERSION" ]] ||
        c2c_die "built provider reports '$got', want $PULUMI_DOCKER_VERSION"
}

# Make the CLI find our provider as the installed docker plugin of the pinned version (no
# download): install it, or replace an installed copy that differs from this build.
install_plugin() {
    local dest=$1 home installed
    home=$dest/pulumi-home
    export PULUMI_HOME=$home
    installed=$home/plugins/resource-docker-v$PULUMI_DOCKER_VERSION/pulumi-resource-docker
    if [[ -f $installed ]] && cmp -s "$installed" "$dest/plugins/pulumi-resource-docker"; then
        c2c_log "docker plugin $PULUMI_DOCKER_VERSION already installed in $home"
        return 0
    fi
    "$dest/bin/pulumi" plugin install resource docker "$PULUMI_DOCKER_VERSION" \
        --file "$dest/plugins/pulumi-resource-docker" --reinstall >&2
    has_docker_plugin "$dest/bin/pulumi" ||
        c2c_die "docker plugin $PULUMI_DOCKER_VERSION not listed by pulumi after installing it"
}

main() {
    local t0=$EPOCHREALTIME found cache key dest
    if [[ ${C2C_TOOLCHAIN:-auto} != build ]] && found=$(find_installed); then
        c2c_log "using the installed toolchain in $found ($(c2c_since "$t0")s)"
        printf '%s\n' "$found"
        return 0
    fi

    c2c_require_go "$GO_MIN_VERSION" "the Pulumi toolchain (toolchain/*/go.mod)"
    check_pins
    cache=$(c2c_cache_dir)/toolchain
    key=$(cache_key)
    dest=$cache/$key
    c2c_cached_build "$cache" "$key" bin/pulumi "${C2C_TOOLCHAIN_WAIT:-3600}" toolchain build_into

    c2c_lock "$cache/plugin-install.lock" 300
    c2c_timed "docker plugin checked" install_plugin "$dest"
    printf '%s\n' "$dest/bin"
}

main "$@"
