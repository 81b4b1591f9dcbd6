#!/usr/bin/env bash
# Print (stdout, one line) a base image reference the services' Dockerfiles can build FROM.
#
# Order: IMAGE present locally -> pulled within a hard timeout -> the offline fallback
# c2c-base/python:3.11-bookworm (already imported -> re-imported from the per-user tarball
# cache -> built with debootstrap from the Debian mirror apt uses, then imported).
#
# Usage: scripts/base-image.sh [IMAGE]
#   IMAGE defaults to $C2C_BASE_IMAGE, else c2c:baseImage of Pulumi.<stack>.yaml
#   (stack: $C2C_STACK or $PULUMI_STACK, default dev), else c2c-base/python:3.11-bookworm.
# Env: C2C_PULL_TIMEOUT (s, default 20; 0 skips the pull), C2C_DEBIAN_MIRROR (overrides the
#   mirror read from /etc/apt/sources.list*).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly SUITE=bookworm # Debian 12 ships python3 3.11, matching python:3.11-slim
readonly FALLBACK_REF=c2c-base/python:3.11-$SUITE
# The default of c2c:baseImage in Pulumi.yaml: the project's own base.
readonly DEFAULT_IMAGE=$FALLBACK_REF
readonly VARIANT=minbase
# python3-venv brings ensurepip's bundled pip/setuptools wheels, so venvs get pip offline.
# minbase already has `passwd` (useradd/groupadd); ca-certificates is not needed because
# images install from a local wheelhouse only.
readonly PACKAGES=python3,python3-venv
# Bump when the trim or import recipe changes, so caches keyed on it are rebuilt.
readonly RECIPE_VERSION=2
readonly ENV_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
APT_ETC=${C2C_APT_ETC:-/etc/apt} # overridable for tests

usage() {
    sed -n '2,13s/^# \{0,1\}//p' "$0" >&2
}

# c2c:baseImage from the stack's config file; plain `key: value` parsing is enough for the
# scalar string we own, and avoids needing the Pulumi CLI here.
configured_image() {
    local stack=${C2C_STACK:-${PULUMI_STACK:-dev}} file value
    file=$C2C_ROOT/Pulumi.$stack.yaml
    [[ -r $file ]] || return 0
    value=$(sed -nE 's/^[[:space:]]+c2c:baseImage:[[:space:]]*(.*)$/\1/p' "$file" | head -n1)
    value=${value%%[[:space:]]#*}
    value=${value%"${value##*[![:space:]]}"}
    value=${value#\"} value=${value%\"} value=${value#\'} value=${value%\'}
    printf '%s\n' "$value"
}

image_present() {
    docker image inspect --format '{{.Id}}' "$1" >/dev/null 2>&1
}

image_label() {
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

try_pull() {
    local image=$1 wait=${C2C_PULL_TIMEOUT:-20} t0=$EPOCHREALTIME rc=0
    if [[ $wait == 0 ]]; then
        c2c_log "pull skipped (C2C_PULL_TIMEOUT=0)"
        return 1
    fi
    c2c_log "trying docker pull $image (timeout ${wait}s)"
    timeout -k 3 "$wait" docker pull --quiet "$image" >/dev/null 2>"$WORK_ERR" || rc=$?
    if ((rc == 0)); then
        c2c_log "pulled $image in $(c2c_since "$t0")s"
        return 0
    fi
    if ((rc == 124 || rc == 137)); then
        c2c_log "pull of $image timed out after ${wait}s; building offline base"
    else
        c2c_log "pull of $image failed in $(c2c_since "$t0")s: $(tail -n1 "$WORK_ERR")"
    fi
    return 1
}

# First mirror URI that apt uses for $SUITE, from one-line (.list) or deb822 (.sources) files.
debian_mirror() {
    if [[ -n ${C2C_DEBIAN_MIRROR:-} ]]; then
        printf '%s\n' "$C2C_DEBIAN_MIRROR"
        return 0
    fi
    local f uri
    shopt -s nullglob
    for f in "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        uri=$(awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f")
        [[ -n $uri ]] && break
    done
    if [[ -z ${uri:-} ]]; then
        for f in "$APT_ETC"/sources.list.d/*.sources; do
            [[ -r $f ]] || continue
            uri=$(awk -v suite="$SUITE" '
                BEGIN { RS = ""; FS = "\n" }
                {
                    types = ""; uris = ""; suites = ""; enabled = "yes"
                    for (n = 1; n <= NF; n++) {
                        line = $n
                        if (line ~ /^#/) continue
                        key = tolower(line); sub(/:.*/, "", key)
                        val = line; sub(/^[^:]*:[[:space:]]*/, "", val)
                        if (key == "types") types = val
                        else if (key == "uris") uris = val
                        else if (key == "suites") suites = val
                        else if (key == "enabled") enabled = tolower(val)
                    }
                    if (enabled != "no" && (" " types " ") ~ / deb / &&
                        (" " suites " ") ~ (" " suite " ")) {
                        split(uris, u, /[[:space:]]+/); print u[1]; exit
                    }
                }' "$f")
            [[ -n $uri ]] && break
        done
    fi
    shopt -u nullglob
    case ${uri:-} in
        http://* | https://* | file:/*) printf '%s\n' "$uri" ;;
        *) printf '%s\n' http://deb.debian.org/debian ;;
    esac
}

# Unmount anything debootstrap may have left mounted below $1, then delete it without
# crossing into other filesystems (protects the host's /dev and /proc).
remove_rootfs() {
    local dir=$1
    [[ -d $dir ]] || return 0
    remove_rootfs_mounts_only "$dir"
    rm -rf --one-file-system "$dir"
}

# Delete what a container never needs: package indexes, caches, docs, man pages, locales.
# Python's bytecode stays: containers run with a read-only root filesystem, where Python cannot
# write it back, so without it every start (and every health probe, a new interpreter each
# time) compiled its standard library modules again: ~0.3 s of CPU per probe instead of ~0.03 s.
trim_rootfs() {
    local r=$1
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
        "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
        "$r"/usr/share/lintian "$r"/usr/share/linda "$r"/var/cache/man \
        "$r"/var/log/* "$r"/tmp/* "$r"/var/tmp/* "$r"/debootstrap
    find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' \
        -exec rm -rf {} + 2>/dev/null || true
    # Docker supplies these per container.
    : >"$r"/etc/hostname
    rm -f "$r"/etc/resolv.conf
}

build_tarball() {
    local tarball=$1 key=$2 mirror rootfs arch keyring=() t0=$EPOCHREALTIME
    c2c_is_root || c2c_die "no usable base image and not root: cannot debootstrap; run as root, or make $IMAGE available locally (docker load) and re-run"
    command -v debootstrap >/dev/null 2>&1 || c2c_apt_install debootstrap
    mirror=$(debian_mirror)
    arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
    if [[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
        keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
    fi
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    c2c_add_cleanup "remove_rootfs '$rootfs'"
    c2c_log "debootstrap --variant=$VARIANT --include=$PACKAGES $SUITE from $mirror ($arch)"
    if ! nice -n 10 debootstrap --variant="$VARIANT" --arch="$arch" --components=main \
        --include="$PACKAGES" "${keyring[@]}" "$SUITE" "$rootfs" "$mirror" \
        >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 5 "$CACHE/debootstrap.log" >&2 || true
        c2c_die "debootstrap failed; full log: $CACHE/debootstrap.log"
    fi
    c2c_log "debootstrap done in $(c2c_since "$t0")s ($(du -sh --one-file-system "$rootfs" | cut -f1) untrimmed)"
    remove_rootfs_mounts_only "$rootfs"
    trim_rootfs "$rootfs"
    "$rootfs"/usr/bin/python3 --version >/dev/null 2>&1 ||
        c2c_die "python3 missing from the debootstrapped rootfs"
    t0=$EPOCHREALTIME
    # Device nodes, /proc and /sys contents are provided by the container runtime.
    nice -n 10 tar --numeric-owner --one-file-system -C "$rootfs" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . |
        nice -n 10 gzip -6 >"$tarball.tmp.$$"
    mv -f "$tarball.tmp.$$" "$tarball"
    printf 'suite=%s variant=%s packages=%s recipe=%s mirror=%s key=%s\n' \
        "$SUITE" "$VARIANT" "$PACKAGES" "$RECIPE_VERSION" "$mirror" "$key" >"$tarball.meta"
    c2c_log "cached $tarball ($(du -h "$tarball" | cut -f1)) in $(c2c_since "$t0")s"
    remove_rootfs "$rootfs"
}

remove_rootfs_mounts_only() {
    local mnt
    while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
}

import_tarball() {
    local tarball=$1 key=$2 t0=$EPOCHREALTIME
    c2c_log "docker import $tarball as $FALLBACK_REF"
    docker import \
        --change 'CMD ["python3"]' \
        --change 'ENV LANG=C.UTF-8' \
        --change "ENV PATH=$ENV_PATH" \
        --change 'LABEL c2c.project=c2c' \
        --change "LABEL c2c.base.key=$key" \
        --change "LABEL c2c.base.source=debootstrap-$VARIANT-$SUITE" \
        --message "c2c offline base: debootstrap $VARIANT $SUITE +$PACKAGES" \
        "$tarball" "$FALLBACK_REF" >/dev/null
    c2c_log "imported $FALLBACK_REF in $(c2c_since "$t0")s ($(docker image inspect --format '{{.Size}}' "$FALLBACK_REF" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
}

# Cache key of the offline base: everything that changes its content except the mirror's
# package versions (a cached tarball stays valid across Debian point releases).
base_key() {
    printf '%s|%s|%s|%s|%s\n' "$SUITE" "$VARIANT" "$PACKAGES" "$RECIPE_VERSION" \
        "$(dpkg --print-architecture 2>/dev/null || uname -m)" | sha256sum | cut -c1-12
}

main() {
    case ${1:-} in
        -h | --help) usage; exit 0 ;;
    esac
    (($# <= 1)) || { usage; c2c_die "expected at most one argument (IMAGE), got $#"; }
    IMAGE=${1:-${C2C_BASE_IMAGE:-$(configured_image)}}
    IMAGE=${IMAGE:-$DEFAULT_IMAGE}
    c2c_require_docker
    WORK_ERR=$(mktemp)
    c2c_add_cleanup "rm -f '$WORK_ERR'"

    # Our own base is checked against its recipe below; it exists in no registry.
    if [[ $IMAGE != "$FALLBACK_REF" ]]; then
        if image_present "$IMAGE"; then
            c2c_log "using local image $IMAGE"
            printf '%s\n' "$IMAGE"
            return 0
        fi
        if try_pull "$IMAGE"; then
            printf '%s\n' "$IMAGE"
            return 0
        fi
    fi

    local key
    key=$(base_key)
    CACHE=$(c2c_cache_dir)/base
    mkdir -p "$CACHE"
    # One builder at a time per user; a concurrent run waits, then finds the image.
    c2c_lock "$CACHE/.lock" 1800

    if image_present "$FALLBACK_REF" && [[ $(image_label "$FALLBACK_REF" c2c.base.key) == "$key" ]]; then
        c2c_log "using local offline base $FALLBACK_REF (key $key)"
        printf '%s\n' "$FALLBACK_REF"
        return 0
    fi
    local tarball=$CACHE/$SUITE-$VARIANT-$key.tar.gz
    if [[ -s $tarball ]] && gzip -t "$tarball" 2>/dev/null; then
        c2c_log "re-importing cached rootfs $tarball"
    else
        build_tarball "$tarball" "$key"
    fi
    import_tarball "$tarball" "$key"
    printf '%s\n' "$FALLBACK_REF"
}

# Sourcing (tests) only defines the functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
