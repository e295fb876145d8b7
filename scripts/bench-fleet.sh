#!/usr/bin/env bash
# The daemon as a fleet (SPEC §8): TENANTS tenants (default 500), each with one generated
# winningtemp-users file of 1,000 to 20,000 rows (sizes spread evenly: 1000 + i·997 mod 19001),
# JSONL outboxes, all due at the daemon's first second, WORKERS workers (default 4).
#   - fleet: wall time from the daemon's start until every tenant's results are in processed/,
#     the daemon's peak RSS (/usr/bin/time), the sum of the runs' own durations (their history,
#     read with `muster status --json`), and the wall time one `muster run` takes for the same
#     tenants one after another, for comparison;
#   - overhead: the same with a 10-row file per tenant, where a run is almost all fixed cost
#     (open the store, list the inbox, plan, record the history, move the file): the daemon's
#     wall time per tenant run.
# Usage: scripts/bench-fleet.sh [TENANTS] [WORKERS]. A few minutes; each phase is bounded by
# a 15-minute timeout. Generated files are kept in target/bench-data/fleet/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
tenants=${1:-500}
workers=${2:-4}
command -v /usr/bin/time >/dev/null || apt-get install -y time
cargo build --release --quiet
muster=$PWD/target/release/muster
data=$PWD/target/bench-data/fleet
mkdir -p "$data"
today=2026-11-21

# rows_of I: the size of tenant I's file.
rows_of() { echo $((1000 + ($1 * 997) % 19001)); }

# make_fleet DIR SIZE: a fresh fleet in DIR, each tenant's inbox holding its file (SIZE
# "mixed": rows_of; else that many rows), linked from the generated copy.
make_fleet() {
  local dir=$1 size=$2 i rows file
  rm -rf "$dir" && mkdir -p "$dir"
  printf '[daemon]\nworkers = %s\n' "$workers" > "$dir/muster.toml"
  for i in $(seq -w 1 "$tenants"); do
    rows=$size
    [ "$size" = mixed ] && rows=$(rows_of $((10#$i)))
    file=$data/users-$rows.csv
    [ -f "$file" ] || "$muster" gen --profile winningtemp-users --rows "$rows" --seed "$rows" > "$file"
    mkdir -p "$dir/t$i/inbox"
    ln "$file" "$dir/t$i/inbox/wt_users.csv" 2>/dev/null || cp "$file" "$dir/t$i/inbox/wt_users.csv"
    cat >> "$dir/muster.toml" <<TOML
[[tenant]]
name = "t$i"
state = "t$i/state.redb"
schedule = "* * * * * *"
[tenant.source]
type = "dir"
path = "t$i/inbox"
settle_ms = 0
[[tenant.files]]
pattern = "wt_users*.csv"
profile = "winningtemp-users"
[tenant.sink]
type = "jsonl"
path = "t$i/outbox.jsonl"
TOML
  done
}

# results DIR: how many tenants have their results in processed/.
results() {
  find "$1" -path '*/inbox/processed/*.results.csv' | wc -l
}

# daemon DIR: runs the daemon until every tenant's file is done; prints "WALL PEAK_MB".
daemon() {
  local dir=$1 start end pid
  sync
  start=$(date +%s.%N)
  (cd "$dir" && exec /usr/bin/time -f "%M" -o time.txt "$muster" daemon --config muster.toml 2> daemon.log) &
  pid=$!
  local deadline=$(( $(date +%s) + 900 ))
  while [ "$(results "$dir")" -lt "$tenants" ]; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "bench-fleet: the fleet did not finish in 15 minutes" >&2
      pkill -TERM -P "$pid" || true
      exit 1
    fi
    sleep 0.2
  done
  end=$(date +%s.%N)
  pkill -TERM -P "$pid" || true
  wait "$pid" || true
  echo "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') $(( $(cat "$dir/time.txt") / 1024 ))"
}

# durations DIR: the sum of the last runs' durations, in seconds, from their history.
durations() {
  (cd "$1" && "$muster" status --config muster.toml --json) | python3 -c '
import json, sys
from datetime import datetime
def t(s): return datetime.fromisoformat(s.replace("Z", "+00:00"))
runs = [x["last_run"] for x in json.load(sys.stdin) if x["last_run"]]
print("%.1f %d" % (sum((t(r["ended"]) - t(r["started"])).total_seconds() for r in runs), len(runs)))'
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB; $tenants tenants, $workers workers"
work=$PWD/target/bench-data/fleet-run
make_fleet "$work" mixed
echo "rows in all: $(cat "$work"/t*/inbox/wt_users.csv | wc -l)"
read -r wall rss < <(daemon "$work")
read -r busy runs < <(durations "$work")
echo "fleet, daemon:        wall $wall s, peak RSS $rss MB; $runs runs, their own durations sum to $busy s"
make_fleet "$work" mixed
sync
seq_wall=$( (cd "$work" && /usr/bin/time -f "%e %M" timeout 900 "$muster" run --config muster.toml --today "$today" 2>&1 >/dev/null | tail -1) )
echo "fleet, one muster run: wall ${seq_wall% *} s, peak RSS $(( ${seq_wall#* } / 1024 )) MB (the tenants one after another)"

make_fleet "$work" 10
read -r wall rss < <(daemon "$work")
echo "overhead, 10-row files: wall $wall s, peak RSS $rss MB: $(awk -v w="$wall" -v n="$tenants" 'BEGIN { printf "%.1f", w * 1000 / n }') ms of wall per tenant run"
rm -rf "$work"
