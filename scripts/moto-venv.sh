#!/usr/bin/env bash
# Installs the AWS emulator (moto server) into the project-local virtualenv .venv-moto if missing,
# then prints the path of its python. Idempotent; needs only PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-moto"
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==${MOTO_VERSION}" >&2
fi
echo "$venv/bin/python"
