#!/usr/bin/env bash
# Static checks of the synthesized CloudFormation templates: cfn-lint and checkov, offline.
# Usage: scripts/lint-templates.sh [cloud-assembly-dir]   (default: infra/cdk.out)
#        scripts/lint-templates.sh --install               (only install the checkers)
# Installs the pinned checkers (requirements-lint.txt) into infra/.venv with uv (scripts/uv.sh)
# the first time, and again whenever that file changes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
infra="$(dirname "$here")"
assembly="${1:-$infra/cdk.out}"
venv="${CURFEW_LINT_VENV:-$infra/.venv}"
requirements="$here/requirements-lint.txt"
stamp="$venv/.requirements.sha256"

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "lint-templates: installing cfn-lint and checkov into $venv"
  uv="$("$infra/../scripts/uv.sh")"
  UV_PYTHON_DOWNLOADS=never "$uv" venv --quiet --clear --python "$(command -v python3)" "$venv"
  "$uv" pip install --quiet --python "$venv/bin/python" -r "$requirements"
  echo "$want" >"$stamp"
fi
if [[ "${1:-}" == "--install" ]]; then
  exit 0
fi

shopt -s nullglob
templates=("$assembly"/*.template.json)
if ((${#templates[@]} < 2)); then
  echo "lint-templates: expected the hub and spoke templates in $assembly, found ${#templates[@]}" >&2
  exit 1
fi

# --- cfn-lint ------------------------------------------------------------------------------
# Skipped, each for a reason:
cfn_lint_skips=(
  # W3005: aws-cdk-lib adds an explicit DependsOn on a Lambda's role policy next to the GetAtt
  # of the role; the duplicate dependency is harmless and generated, not written by us.
  W3005
)
echo "lint-templates: cfn-lint $("$venv/bin/cfn-lint" --version | cut -d' ' -f2) on ${templates[*]##*/}"
"$venv/bin/cfn-lint" --ignore-checks "${cfn_lint_skips[@]}" -- "${templates[@]}"
echo "lint-templates: cfn-lint found nothing"

# --- checkov -------------------------------------------------------------------------------
# Skipped, each for a reason (docs/IAM.md and docs/DEPLOY.md say more):
checkov_skips=(
  # DynamoDB encrypted with a customer managed key: the table is encrypted at rest with an AWS
  # owned key; a CMK adds a KMS call per request and key upkeep without changing who can read
  # the table, which IAM decides.
  CKV_AWS_119
  # SQS encryption: every queue has SqsManagedSseEnabled (SSE-SQS, encrypted at rest); this
  # check only accepts a KMS key.
  CKV_AWS_27
  # Log groups encrypted with KMS: the logs carry operation IDs and group names, no secrets, and
  # CloudWatch Logs encrypts at rest already.
  CKV_AWS_158
  # Lambda DLQ: that setting covers asynchronous invocations only. The router and worker are fed
  # by SQS queues that have their own DLQs; a failed poller tick is caught up by the next one.
  CKV_AWS_116
  # Lambda in a VPC: the functions call only AWS APIs (DynamoDB, SQS, STS, SNS, Auto Scaling,
  # EKS); a VPC would need a NAT gateway or endpoints and isolates nothing.
  CKV_AWS_117
  # Reserved concurrency: the worker is capped by its SQS event source's maximum concurrency
  # (WorkerMaxConcurrency); reserving would take capacity from the account pool and fails in
  # accounts still at the default concurrency quota.
  CKV_AWS_115
  # The audit key's secret encrypted with a CMK: Secrets Manager encrypts it with the account's
  # AWS managed key; who may read it is IAM's decision (only the worker's role may), and a CMK
  # would add a key to keep and pay for without changing that.
  CKV_AWS_149
  # Environment variables encrypted with a CMK: they hold resource names and URLs, no secrets
  # (Lambda encrypts them at rest with an AWS managed key anyway).
  CKV_AWS_173
)
checkov_args=(--framework cloudformation --skip-download --compact --quiet
  --skip-check "$(IFS=,; echo "${checkov_skips[*]}")")
for t in "${templates[@]}"; do checkov_args+=(-f "$t"); done
echo "lint-templates: checkov $("$venv/bin/checkov" --version) (skipping ${#checkov_skips[@]} checks, see the comments above)"
# BC_SKIP_MAPPING: no download of check metadata; the run stays offline.
BC_SKIP_MAPPING=TRUE "$venv/bin/checkov" "${checkov_args[@]}"
echo "lint-templates: checkov found nothing"
