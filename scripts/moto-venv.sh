#!/usr/bin/env bash
# Installs the AWS emulator (moto server) into the project-local virtualenv .venv-moto if missing,
# then prints the path of its python. Installs with uv (scripts/uv.sh). Idempotent and safe to
# run concurrently; needs only PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-moto"
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
if [ ! -x "$venv/bin/moto_server" ]; then
  uv="$("$root/scripts/uv.sh")"
  exec 9>"$root/.venv-moto.lock"
  flock 9
  if [ ! -x "$venv/bin/moto_server" ]; then
    # Never fetch a Python: the machine's python3 runs moto.
    export UV_PYTHON_DOWNLOADS=never
    "$uv" venv --quiet --clear --python "$(command -v python3)" "$venv" >&2
    "$uv" pip install --quiet --python "$venv/bin/python" "moto[server]==${MOTO_VERSION}" >&2
  fi
fi
echo "$venv/bin/python"
