#!/usr/bin/env bash
# Runs the shared conformance suite's files for what is built so far: on SQLite with local file
# storage, then on PostgreSQL with Redis-backed rate limits and S3 storage (moto's S3 emulator on
# 127.0.0.1), and the attachment tests on the two other pairings too.
# Usage: scripts/conformance.sh <conformance dir>
set -euo pipefail
suite="${1:-}"
if [[ -z "$suite" || ! -x "$suite/run" ]]; then
  echo "conformance: suite not found (looked for ../shared/conformance); skipped" >&2
  exit 0
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
files=(test_regions.py test_auth_and_keys.py test_envelope_and_errors.py test_sandbox.py test_schema.py
  test_candidates.py test_interactions.py test_attachments.py test_mutations_and_idempotency.py test_limits.py
  test_callbacks.py test_candidate_sessions.py test_tenancy.py test_webhooks.py test_helpers_selfcheck.py)
deselect=()
while read -r line; do
  [[ -z "$line" || "$line" == \#* ]] || deselect+=(--deselect "$line")
done <"$root/.ci/conformance-pending"

export CONFORMANCE_ROOT="$root"
# Every run keeps its temporary directory here, so that all the servers' logs are scanned at the end.
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
export TMPDIR="$logs" CONFORMANCE_KEEP_TMP=1
echo "conformance: SQLite, local files" >&2
"$suite/run" "${files[@]}" "${deselect[@]}" -q

s3_port="$("$root/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >/dev/null 2>&1 &
s3_pid=$!
trap 'kill "$s3_pid" 2>/dev/null || true; rm -rf "$logs"' EXIT
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_DEFAULT_REGION=eu-west-1
"$root/.venv/bin/python" - <<'PY'
import time

import boto3

for _ in range(100):
    try:
        boto3.client("s3").create_bucket(
            Bucket="conformance", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        break
    except Exception:  # the emulator is still starting
        time.sleep(0.2)
else:
    raise SystemExit("the S3 emulator did not start")
PY

postgresql="postgresql+asyncpg://postgres@127.0.0.1:5432/test"
echo "conformance: PostgreSQL + Redis, S3 files" >&2
CONFORMANCE_DATABASE_URL="$postgresql" CONFORMANCE_STORAGE_URL="s3://conformance/files" \
  ONDERWIJSREGIO_RATE_LIMIT_STORAGE="redis://127.0.0.1:6379/0" \
  "$suite/run" "${files[@]}" "${deselect[@]}" -q

# The attachments on the other two pairings of database and storage.
echo "conformance: attachments on SQLite with S3 files, and on PostgreSQL with local files" >&2
CONFORMANCE_STORAGE_URL="s3://conformance/sqlite" "$suite/run" test_attachments.py -q
CONFORMANCE_DATABASE_URL="$postgresql" "$suite/run" test_attachments.py -q

# No key, token or secret of the suite's runs in any server log (found by their shape: the suite
# makes its own credentials, which tests/log_scan.py never learns).
"$root/.venv/bin/python" "$root/scripts/scan_logs.py" "$logs"/onderwijsregio-conformance.*/server.log
