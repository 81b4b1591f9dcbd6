#!/usr/bin/env bash
# Run a command with the project's Pulumi environment (see pulumi-env.sh).
set -euo pipefail
# shellcheck source=scripts/pulumi-env.sh
source "$(dirname "$0")/pulumi-env.sh"
exec "$@"
