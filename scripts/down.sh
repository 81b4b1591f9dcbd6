#!/usr/bin/env bash
# `make down`: destroy a stack's containers, network and images, keep its config file.
set -euo pipefail
stack="${1:-dev}"
scripts="$(cd "$(dirname "$0")" && pwd)"
"$scripts/ensure-docker.sh"
# shellcheck source=scripts/pulumi-env.sh
source "$scripts/pulumi-env.sh"
cd "$C2C_ROOT"
if ! pulumi stack select "$stack" 2>/dev/null; then
    echo "stack $stack does not exist in $PULUMI_BACKEND_URL: nothing to destroy" >&2
    exit 0
fi
pulumi destroy --yes --skip-preview
