#!/usr/bin/env bash
# Schemathesis against our own /openapi.json (issue: whole-contract CI): a served API on a fresh
# SQLite database with its worker running and limits raised, a fixed seed, every phase including
# the stateful one, and every check that fits an asynchronous API (see docs/decisions.md for the
# checks left out and why). Three runs, one per kind of caller: a region key, an admin key, and a
# candidate's session token.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
SEED=${SCHEMATHESIS_SEED:-20261127}
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-25}
WORK=$(mktemp -d)
PORT=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
export ONDERWIJSREGIO_DATABASE_URL="sqlite+aiosqlite:///$WORK/schemathesis.db"
export ONDERWIJSREGIO_ALLOW_HTTP_URLS=true ONDERWIJSREGIO_URL_ALLOWLIST=127.0.0.1
unset ONDERWIJSREGIO_STORAGE_URL ONDERWIJSREGIO_REDIS_URL ONDERWIJSREGIO_RATE_LIMIT_STORAGE
cd "$WORK"
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/onderwijsregio" migrate >/dev/null 2>&1
mapfile -t REGION < <("$BIN/onderwijsregio" admin create-region --name "Schemathesis")
REGION_ID=${REGION[0]} KEY=${REGION[1]}
ADMIN=$("$BIN/onderwijsregio" admin create-key --name schemathesis | tail -1)
"$BIN/onderwijsregio" serve --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
"$BIN/python" "$ROOT/scripts/schemathesis_setup.py" "$BASE" "$ADMIN" "$REGION_ID" "$KEY" >"$WORK/session.txt"
SESSION=$(cat "$WORK/session.txt")

# Left out, and why (docs/decisions.md, "Schemathesis"):
# - positive_data_acceptance: candidate bodies are typed per region (GET /schema) and several rules
#   need the world outside the schema (URL safety needs DNS, a candidate must exist); the two-way
#   agreement of schema and validation is proved by tests/test_schema_agreement.py instead.
# - use_after_free, ensure_resource_availability: writes are accepted (202) and applied later, so a
#   resource is not there at once after a create, and still there at once after a delete.
EXCLUDED=positive_data_acceptance,use_after_free,ensure_resource_availability
run() {
    local name=$1
    shift
    echo "== schemathesis: $name"
    "$BIN/schemathesis" run "$BASE/openapi.json" --checks all --exclude-checks "$EXCLUDED" \
        --seed "$SEED" --max-examples "$EXAMPLES" --phases examples,coverage,fuzzing,stateful \
        --workers 1 --request-timeout 30 --suppress-health-check all --no-color "$@"
}
STATUS=0
# The session runs go first: the region run's sandbox reset ends every sandbox session, and logging
# out ends it too, so the deletes come last of the two.
SESSION_HEADERS=(-H "Authorization: Bearer $SESSION" -H "x-api-sandbox: true")
run "session token" "${SESSION_HEADERS[@]}" --include-path-regex '^/api/v2/auth/candidates/session(/|$)' \
    --exclude-method DELETE || STATUS=1
run "session deletes" "${SESSION_HEADERS[@]}" \
    --include-path-regex '^/api/v2/auth/candidates/session(/candidates/\{candidateId\})?$' \
    --exclude-method GET --exclude-method PATCH || STATUS=1
run "region key" -H "x-api-key: $KEY" -H "x-region-id: $REGION_ID" \
    --exclude-path-regex '^/api/v2/(admin/|regions$|regions/\{regionId\}|auth/candidates/session$|auth/candidates/session/)' \
    || STATUS=1
# Admin keys have the default key limits (20/s); the run keeps under them.
run "admin key" -H "x-api-key: $ADMIN" -H "x-region-id: $REGION_ID" --rate-limit 15/s \
    --include-path-regex '^/api/v2/(admin/|regions$|regions/\{regionId\})' || STATUS=1
if [ "$STATUS" != 0 ]; then
    echo "schemathesis found failures; the server's log:" >&2
    grep -v '"level":"info"' "$WORK/server.log" | tail -50 >&2
fi
# Thousands of generated requests, and no key, token or secret of the run in the server's log.
"$BIN/python" "$ROOT/scripts/scan_logs.py" "$WORK/server.log" \
    --secret "$KEY" --secret "$ADMIN" --secret "$SESSION" || STATUS=1
exit "$STATUS"
