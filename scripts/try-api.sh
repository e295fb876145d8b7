#!/usr/bin/env bash
# Runs an example API tenant (examples/tenants/SHAPE.toml) against the sample API in
# examples/api/SHAPE/, served on loopback by tests/it/http_server.py with the example's
# credentials: the tenant's https hosts become the local server, its SCIM sink a JSONL
# outbox, everything else is the example as written. Prints the run's summary and the
# outbox's operations; leaves the tenant (archive, state, outbox) in $TRY_API_DIR
# (default target/try-api/SHAPE).
# Usage: scripts/try-api.sh workday-report | bamboohr-report | personio-api
#        (MUSTER=path/to/muster to run a given build; else this one, built first)
set -euo pipefail
shape=${1:?usage: scripts/try-api.sh workday-report|bamboohr-report|personio-api}
cd "$(dirname "$0")/.."
repo=$PWD
case "$shape" in
  workday-report) auth=(--basic ISU_Muster:sample-password); export WD_PASSWORD=sample-password ;;
  bamboohr-report) auth=(--basic sample-api-key:x); export BAMBOO_API_KEY=sample-api-key ;;
  personio-api) auth=(--oauth muster-client:sample-secret); export PERSONIO_CLIENT_SECRET=sample-secret ;;
  *) echo "unknown shape $shape" >&2; exit 2 ;;
esac
if [ -z "${MUSTER:-}" ]; then
  cargo build --release --quiet
  MUSTER=$repo/target/release/muster
fi
python=python3
[ -x "$repo/target/scim-venv/bin/python" ] && python=$repo/target/scim-venv/bin/python
work=${TRY_API_DIR:-$repo/target/try-api/$shape}
rm -rf "$work" && mkdir -p "$work/tenants"
cp -r examples/profiles "$work/profiles"
log=$work/server.log
"$python" tests/it/http_server.py --root examples/api/"$shape" --log "$work/requests.log" \
  "${auth[@]}" > "$log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^port' "$log" && break; sleep 0.05; done
port=$(awk '/^port/ { print $2 }' "$log")
# The example up to its sink, its https hosts made the local server; then a JSONL outbox.
sed -e '/^\[tenant.sink\]/,$d' \
    -e "/^base_url\|token_url/s#https://[^/\"]*#http://127.0.0.1:$port#g" \
    "examples/tenants/$shape.toml" > "$work/tenants/$shape.toml"
printf '[tenant.sink]\ntype = "jsonl"\npath = "../outbox.jsonl"\n' >> "$work/tenants/$shape.toml"
status=0
(cd "$work" && "$MUSTER" run --config "tenants/$shape.toml" --today 2026-12-07) || status=$?
echo "outbox: $(grep -c . "$work/outbox.jsonl" 2>/dev/null || echo 0) operations" \
  "($(grep -c '"action":"create"' "$work/outbox.jsonl" 2>/dev/null || echo 0) creates) in $work/outbox.jsonl"
exit $status
