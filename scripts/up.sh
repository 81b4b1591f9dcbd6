#!/usr/bin/env bash
# `make up`: bring a stack up on this machine and show its answer.
# Uses what is there (a running engine, the configured base image, pulumi on PATH) and
# builds or starts only what is missing, offline. It never writes the stack's config file.
# STACK=multihost runs on the simulated hosts of `make lab` (brought up here if needed, as
# root): Pulumi.multihost.yaml names their engines, and the endpoint is host a's address.
set -euo pipefail
stack="${1:-dev}"
scripts="$(cd "$(dirname "$0")" && pwd)"
step() { printf '\n==> %s\n' "$*" >&2; }
# shellcheck source=scripts/lab-stack.sh
source "$scripts/lab-stack.sh"

step "Docker engine"
"$scripts/ensure-docker.sh"

step "Pulumi toolchain"
# shellcheck source=scripts/pulumi-env.sh
source "$scripts/pulumi-env.sh"
cd "$C2C_ROOT"
pulumi version >&2

if lab_args="$(c2c_lab_of_stack "$stack")"; then
    step "Lab: python3 -m lab up $lab_args"
    # Idempotent: creates what is missing, and loads the base image into every engine.
    # shellcheck disable=SC2086 # lab_args is a list of words
    python3 -m lab up $lab_args >&2
fi

step "Stack $stack (state in $PULUMI_BACKEND_URL)"
pulumi stack select --create "$stack" >&2

if [[ -z "$lab_args" ]]; then
    step "Base image"
    # The stack's own c2c:baseImage, else Pulumi.yaml's default (the project's offline base).
    configured="$(pulumi config get c2c:baseImage 2>/dev/null || true)"
    base="$("$scripts/base-image.sh" ${configured:+"$configured"})"
    if [[ -n "$configured" && "$base" != "$configured" ]]; then
        echo "up.sh: error: c2c:baseImage $configured is neither local nor pullable here;" \
            "run \`pulumi config rm c2c:baseImage --stack $stack\` to use the project's own" \
            "base $base" >&2
        exit 1
    fi
fi
"$scripts/wheelhouse.sh"

step "pulumi up"
pulumi up --yes --skip-preview

endpoint="$(pulumi stack output endpoint)"
step "curl $endpoint"
curl --silent --show-error --fail-with-body --max-time 10 \
    --retry 10 --retry-connrefused --retry-delay 1 "$endpoint" | python3 -m json.tool
