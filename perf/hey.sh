#!/usr/bin/env bash
# The KServe docs' load test: hey POSTing one fixed body for a while, many connections.
#
#   perf/hey.sh                      # legacy /predict on http://127.0.0.1:8080, 30 s, 20 conns
#   ROUTE=v2 DURATION=1m CONCURRENCY=50 BASE_URL=http://127.0.0.1:8080 perf/hey.sh
#
# The body is one row, from tests/data/sample.json (harness/payloads.py), so every request
# after the first is a cache hit. hey is the Debian package: apt-get install -y hey
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_URL=${BASE_URL:-http://127.0.0.1:8080}
ROUTE=${ROUTE:-legacy}
DURATION=${DURATION:-30s}
CONCURRENCY=${CONCURRENCY:-20}
MODEL_NAME=${MODEL_NAME:-housing}
PYTHON=${PYTHON:-.venv/bin/python}

case "$ROUTE" in
  legacy) path=/predict ;;
  v1) path="/v1/models/$MODEL_NAME:predict" ;;
  v2) path="/v2/models/$MODEL_NAME/infer" ;;
  *) echo "ROUTE must be legacy, v1 or v2" >&2; exit 2 ;;
esac

body=$(mktemp)
trap 'rm -f "$body"' EXIT
"$PYTHON" -m harness.payloads "$ROUTE" >"$body"

hey -z "$DURATION" -c "$CONCURRENCY" -m POST -T application/json -D "$body" "$BASE_URL$path"
