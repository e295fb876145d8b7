#!/usr/bin/env bash
# Whole-process figures for `muster run` with the SCIM sink: the first import of the generated
# winningtemp-users file (see bench-data.sh) into an empty store, written to
# examples/scim_null.rs (a loopback endpoint that accepts everything, so muster is measured,
# not an LMS), then the same import against an endpoint that takes DELAY_MS per write (a slow
# LMS: memory must stay flat). Prints wall time, CPU (user + sys), peak RSS, and the write
# operations the endpoint took (user creates, groups created on demand, memberships, links).
# Usage: scripts/bench-scim.sh [ROWS] [DELAY_MS]   (defaults 100000 and 20)
source "$(dirname "$0")/bench-data.sh"
delay=${2:-20}
cargo build --release --quiet --example scim_null
muster=$PWD/target/release/muster
null=$PWD/target/release/examples/scim_null
work=$dir/scim-tenant
port=18199
run() { # $1: label, $2: delay
  port=$((port + 1))
  "$null" "$port" "$2" 2>/dev/null &
  local pid=$!
  trap 'kill $pid 2>/dev/null' RETURN
  for _ in $(seq 50); do curl -s "http://127.0.0.1:$port/_ops" >/dev/null && break; sleep 0.1; done
  write_tenant "$work" "type = \"scim\"
url = \"http://127.0.0.1:$port/v2\"
token_env = \"BENCH_SCIM_TOKEN\"
user_name = \"username\""
  cp "$day1" "$work/inbox/users.csv"
  local t
  t=$(BENCH_SCIM_TOKEN=bench /usr/bin/time -f "%e %U %S %M" "$muster" run --config "$work/muster.toml" \
      --today 2026-11-21 2>&1 >/dev/null | tail -1) || true
  local ops
  ops=$(curl -s "http://127.0.0.1:$port/_ops")
  echo "$t $ops" | awk -v label="$1" '{
    printf "%-34s %6.2f s wall  %6.2f s CPU  %5d MB peak  %8d ops  %7.0f ops/s  %5.1f us CPU/op\n",
      label, $1, $2 + $3, $4 / 1024, $5, $5 / $1, ($2 + $3) * 1e6 / $5 }'
}
run "first import, $rows rows, fast endpoint" 0
run "first import, $rows rows, ${delay} ms/write" "$delay"
