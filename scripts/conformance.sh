#!/usr/bin/env bash
# Runs the shared conformance suite's files for what is built so far, on SQLite, then on PostgreSQL
# with Redis-backed rate limits. Usage: scripts/conformance.sh <conformance dir>
set -euo pipefail
suite="${1:-}"
if [[ -z "$suite" || ! -x "$suite/run" ]]; then
  echo "conformance: suite not found (looked for ../shared/conformance); skipped" >&2
  exit 0
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
files=(test_regions.py test_auth_and_keys.py test_envelope_and_errors.py test_sandbox.py test_schema.py
  test_candidates.py test_interactions.py test_mutations_and_idempotency.py test_callbacks.py)
deselect=()
while read -r line; do
  [[ -z "$line" || "$line" == \#* ]] || deselect+=(--deselect "$line")
done <"$root/.ci/conformance-pending"

export CONFORMANCE_ROOT="$root"
echo "conformance: SQLite" >&2
"$suite/run" "${files[@]}" "${deselect[@]}" -q
echo "conformance: PostgreSQL + Redis" >&2
CONFORMANCE_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:5432/test" \
  ONDERWIJSREGIO_RATE_LIMIT_STORAGE="redis://127.0.0.1:6379/0" \
  "$suite/run" "${files[@]}" "${deselect[@]}" -q
