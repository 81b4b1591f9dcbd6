#!/usr/bin/env bash
# `make up`: bring a stack up on this machine and show its answer.
# Uses what is there (a running engine, the configured base image, pulumi on PATH) and
# builds or starts only what is missing, offline.
set -euo pipefail
stack="${1:-dev}"
scripts="$(cd "$(dirname "$0")" && pwd)"
step() { printf '\n==> %s\n' "$*" >&2; }

step "Docker engine"
"$scripts/ensure-docker.sh"

step "Pulumi toolchain"
# shellcheck source=scripts/pulumi-env.sh
source "$scripts/pulumi-env.sh"
cd "$C2C_ROOT"
pulumi version >&2

step "Stack $stack (state in $PULUMI_BACKEND_URL)"
pulumi stack select --create "$stack" >&2

step "Base image"
configured="$(pulumi config get c2c:baseImage 2>/dev/null || true)"
configured="${configured:-python:3.11-slim}"
base="$("$scripts/base-image.sh" "$configured")"
if [[ "$base" != "$configured" ]]; then
    echo "$configured is not available offline; stack $stack will use the local $base" >&2
    pulumi config set c2c:baseImage "$base"
fi
"$scripts/wheelhouse.sh"

step "pulumi up"
pulumi up --yes --skip-preview

endpoint="$(pulumi stack output endpoint)"
step "curl $endpoint"
curl --silent --show-error --fail-with-body --max-time 10 \
    --retry 10 --retry-connrefused --retry-delay 1 "$endpoint" | python3 -m json.tool
