#!/usr/bin/env bash
# Runs a command (the test suite) beside a moto zygote: one python that has imported moto and
# the services curfew calls once, and forks a ready server for each test process that starts an
# emulator (CURFEW_MOTO_ZYGOTE names its socket; crates/aws/src/local/emulator.rs). A moto
# started afresh spends about three seconds of CPU importing itself and its services before it
# answers a first Auto Scaling call, in each of the suite's test processes; a forked one does not.
# A test finds moto as before if the zygote is missing or does not answer.
# The zygote is stopped by its process id when the command ends, whatever its exit status.
# Usage: scripts/with-moto-zygote.sh COMMAND [ARG...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="$("$root/scripts/moto-venv.sh")"
dir="$(mktemp -d)"
socket="$dir/zygote.sock"
# Never MOTO_ACCOUNT_ID: it would override the accounts of assumed-role credentials, which is
# how spoke accounts are told apart.
env -u MOTO_ACCOUNT_ID "$python" "$root/scripts/moto_server.py" --zygote "$socket" \
  >"$dir/zygote.log" 2>&1 &
zygote=$!
trap 'kill "$zygote" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 600); do
  [[ -S "$socket" ]] && break
  kill -0 "$zygote" 2>/dev/null || break
  sleep 0.1
done
if [[ -S "$socket" ]]; then
  export CURFEW_MOTO_ZYGOTE="$socket"
else
  echo "with-moto-zygote: the zygote did not start; each test starts moto afresh" >&2
  cat "$dir/zygote.log" >&2
fi
"$@"
