#!/usr/bin/env bash
# Run a command with the project's Pulumi environment (see pulumi-env.sh). Used by the trace and
# the diagram, which fall back to Docker labels when the toolchain cannot be had.
set -euo pipefail
export C2C_TOOLCHAIN_OPTIONAL=1
# shellcheck source=scripts/pulumi-env.sh
source "$(dirname "$0")/pulumi-env.sh"
exec "$@"
