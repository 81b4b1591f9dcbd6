#!/usr/bin/env bash
# `make test`: every test. Unit and integration tests need only the venv. The end-to-end
# tests need a Docker engine, a base image, the wheelhouse and the Pulumi toolchain, which
# this prepares first, timing each step. Where they cannot be had, the e2e tests skip with
# the reason; under CI=true that is a failure instead, never a skip.
set -euo pipefail
scripts="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$scripts")"
cd "$root"

# shellcheck source=scripts/lib.sh
source "$scripts/lib.sh"

prepare_e2e() {
    c2c_timed host-packages "$scripts/host-packages.sh" || return 1
    # The two Go builds (the current Docker engine, the Pulumi toolchain: minutes each when
    # cold, then cached per user) start first and run beside the steps below, which wait on
    # the disk and the network rather than the CPU.
    local builds=() labels=() t0=$EPOCHREALTIME rc=0 i
    "$scripts/docker-engine.sh" >/dev/null &
    builds+=($!) labels+=(current-docker-engine)
    "$scripts/toolchain.sh" >/dev/null &
    builds+=($!) labels+=(toolchain-build)
    prepare_rest || rc=1
    for i in "${!builds[@]}"; do
        if wait "${builds[$i]}"; then
            c2c_log "${labels[$i]} (beside the steps above): $(c2c_since "$t0")s"
        else
            rc=1
        fi
    done
    ((rc == 0)) || return 1
    # The same PATH and PULUMI_HOME as `make up` (pulumi-env.sh), with the toolchain built
    # above; the e2e harness gives each run its own backend and passphrase.
    # shellcheck source=scripts/pulumi-env.sh
    c2c_timed toolchain source "$scripts/pulumi-env.sh"
}

prepare_rest() {
    c2c_timed host-docker "$scripts/ensure-docker.sh" || return 1
    # The project's own base (the default c2c:baseImage): every lab engine is loaded with it.
    c2c_timed base-image "$scripts/base-image.sh" >/dev/null || return 1
    c2c_timed wheelhouse "$scripts/wheelhouse.sh"
}

if prepare_e2e; then
    unset C2C_E2E_UNAVAILABLE
elif [[ "${CI:-}" == "true" ]]; then
    echo "CI=true: the end-to-end prerequisites (see the messages above) failed; not skipping" >&2
    exit 1
else
    export C2C_E2E_UNAVAILABLE="Docker engine, base image or Pulumi toolchain unavailable (see the [test] messages above)"
    echo "e2e tests will be skipped: $C2C_E2E_UNAVAILABLE" >&2
fi

if [[ "${CI:-}" != "true" ]]; then
    exec "$root/.venv/bin/python" -m pytest "$@"
fi
# Under CI the run must not pass hollow: after pytest, every e2e test the suite defines must
# have run, none skipped (scripts/check_e2e_ran.py reads pytest's JUnit report).
mkdir -p "$root/.state"
junit="$root/.state/pytest-junit.xml"
"$root/.venv/bin/python" -m pytest --junitxml="$junit" "$@"
"$root/.venv/bin/python" "$scripts/check_e2e_ran.py" "$junit"
