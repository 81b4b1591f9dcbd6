# Sourced, not run: the environment every c2c script gives the Pulumi CLI.
# - state in a local file backend under the project (no Pulumi Cloud login),
# - a passphrase that is fine for a dev stack with no secrets (override it for anything else),
# - the toolchain (CLI, python language host, docker provider) on PATH, built if missing.
C2C_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export C2C_ROOT
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$C2C_ROOT/.pulumi-state}"
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-c2c-dev-stack-no-secrets}"
export PULUMI_SKIP_UPDATE_CHECK=true
mkdir -p "$C2C_ROOT/.pulumi-state"

# The Pulumi program runs in the project's venv.
export PATH="$C2C_ROOT/.venv/bin:$PATH"
c2c_toolchain_bin="$("$C2C_ROOT/scripts/toolchain.sh")"
export PATH="$c2c_toolchain_bin:$PATH"
