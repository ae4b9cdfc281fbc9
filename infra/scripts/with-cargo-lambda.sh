#!/usr/bin/env bash
# Runs a command with `cargo lambda` (and the zig it uses) on PATH.
# Usage: infra/scripts/with-cargo-lambda.sh cargo lambda build --release --arm64 ...
#        infra/scripts/with-cargo-lambda.sh npx cdk synth
# Uses an installed cargo-lambda if there is one; otherwise installs the pinned one from PyPI
# (requirements-build.txt) into infra/.venv-cargo-lambda. Never falls back to Docker.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${CURFEW_BUILD_VENV:-$(dirname "$here")/.venv-cargo-lambda}"
requirements="$here/requirements-build.txt"
stamp="$venv/.requirements.sha256"

if ! cargo lambda --version >/dev/null 2>&1; then
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [[ ! -x "$venv/bin/cargo-lambda" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "with-cargo-lambda: installing cargo-lambda into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
  fi
  # The venv's bin first: cargo finds the `cargo-lambda` subcommand there, and cargo-lambda finds
  # zig through that venv's `python3 -m ziglang`.
  export PATH="$venv/bin:$PATH"
fi

exec "$@"
