# shellcheck shell=bash
# Sourced, not run: the environment every c2c script gives the Pulumi CLI.
# - state in a local file backend under the project (no Pulumi Cloud login),
# - a passphrase that is fine for a dev stack with no secrets (override it for anything else),
# - the toolchain (CLI, python language host, docker provider) on PATH, built if missing.
# With C2C_TOOLCHAIN_OPTIONAL=1 a toolchain that cannot be had is a warning, not an error
# (the trace can still read Docker without it).
C2C_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export C2C_ROOT
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$C2C_ROOT/.pulumi-state}"
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE-c2c-dev-stack-no-secrets}"
export PULUMI_SKIP_UPDATE_CHECK=true
mkdir -p "$C2C_ROOT/.pulumi-state"

# The Pulumi program runs in the project's venv.
export PATH="$C2C_ROOT/.venv/bin:$PATH"

# c2c_use_toolchain BIN: put BIN first on PATH; a toolchain built by scripts/toolchain.sh keeps
# its plugins in its own PULUMI_HOME, never in the user's ~/.pulumi.
c2c_use_toolchain() {
    export PATH="$1:$PATH"
    if [[ -d "$1/../pulumi-home" ]]; then
        PULUMI_HOME="$(cd "$1/../pulumi-home" && pwd)"
        export PULUMI_HOME
    fi
}

if c2c_toolchain_bin="$("$C2C_ROOT/scripts/toolchain.sh")"; then
    c2c_use_toolchain "$c2c_toolchain_bin"
elif [[ "${C2C_TOOLCHAIN_OPTIONAL:-}" == 1 ]]; then
    echo "warning: no Pulumi toolchain (see above); going on without it" >&2
else
    return 1
fi
