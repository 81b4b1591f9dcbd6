#!/usr/bin/env bash
# `make down`: destroy a stack's containers, network and images, keep its config file.
# A lab stack (STACK=multihost) is destroyed through the lab's engines; the lab itself stays
# (`make lab-down` removes it). With the lab already gone, so is everything the stack had in
# it: only the stack's stale state is removed.
set -euo pipefail
stack="${1:-dev}"
scripts="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/lab-stack.sh
source "$scripts/lab-stack.sh"
lab_args=""
if ! lab_args="$(c2c_lab_of_stack "$stack")"; then
    "$scripts/ensure-docker.sh"
fi
# shellcheck source=scripts/pulumi-env.sh
source "$scripts/pulumi-env.sh"
cd "$C2C_ROOT"
if ! pulumi stack select "$stack" 2>/dev/null; then
    echo "stack $stack does not exist in $PULUMI_BACKEND_URL: nothing to destroy" >&2
    exit 0
fi
if [[ -n "$lab_args" ]]; then
    # 0: every engine of the lab answers; 1: no lab at all; 2: some of it.
    lab_state=0
    python3 -m lab status | python3 -c '
import json, sys
hosts = json.load(sys.stdin)["hosts"]
sys.exit(0 if hosts and all(h["engine_up"] for h in hosts) else 2 if hosts else 1)' ||
        lab_state=$?
    if ((lab_state == 1)); then
        echo "the lab is gone, and with it everything stack $stack had: removing its stale" \
            "state (Pulumi.$stack.yaml stays)" >&2
        pulumi stack rm --yes --force --preserve-config "$stack"
        exit 0
    elif ((lab_state == 2)); then
        echo "down.sh: error: some engines of the lab do not answer; run \`make lab\` and retry" >&2
        exit 1
    fi
fi
pulumi destroy --yes --skip-preview
