#!/usr/bin/env bash
# The cluster as a fleet (SPEC §9): TENANTS small tenants (default 500), each with one generated
# winningtemp-users file of ROWS rows (default 1000), JSONL outboxes, their state in a throwaway
# PostgreSQL (scripts/bench-pg.sh), all due at the daemons' first second, WORKERS workers per
# daemon (default 4). Run by one daemon, then by DAEMONS daemons on this machine (default 3)
# sharing the work through their leases, each on a fresh database: the wall time from the
# daemons' start until every tenant's file is in processed/, and how many runs each daemon made.
# Usage: scripts/bench-cluster-fleet.sh [TENANTS] [ROWS] [DAEMONS] [WORKERS]. Each phase is
# bounded by a 15-minute timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
tenants=${1:-500}
rows=${2:-1000}
daemons=${3:-3}
workers=${4:-4}
cargo build --release --quiet
muster=$PWD/target/release/muster
source scripts/bench-pg.sh
data=$PWD/target/bench-data/cluster-fleet
mkdir -p "$data"
file=$data/users-$rows.csv
[ -f "$file" ] || "$muster" gen --profile winningtemp-users --rows "$rows" --seed "$rows" > "$file"

# make_fleet DIR DB: a fresh fleet in DIR, its state in database DB.
make_fleet() {
  local dir=$1 i
  rm -rf "$dir" && mkdir -p "$dir"
  psql -d postgres -c "DROP DATABASE IF EXISTS $2" -c "CREATE DATABASE $2"
  echo "postgres://muster@127.0.0.1:$pg_port/$2" > "$dir/pg-url"
  printf '[cluster]\npostgres_file = "pg-url"\n[daemon]\nworkers = %s\n' "$workers" > "$dir/muster.toml"
  for i in $(seq -w 1 "$tenants"); do
    mkdir -p "$dir/t$i/inbox"
    ln "$file" "$dir/t$i/inbox/wt_users.csv" 2>/dev/null || cp "$file" "$dir/t$i/inbox/wt_users.csv"
    cat >> "$dir/muster.toml" <<TOML
[[tenant]]
name = "t$i"
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

# fleet DIR N: N daemons until every tenant's file is done; prints the wall time and the
# runs that applied a file, per daemon.
fleet() {
  local dir=$1 n=$2 start end k pids=()
  sync
  start=$(date +%s.%N)
  for k in $(seq "$n"); do
    (cd "$dir" && NO_COLOR=1 RUST_LOG=info exec "$muster" daemon --config muster.toml 2> "daemon-$k.log") &
    pids+=($!)
  done
  local deadline=$(( $(date +%s) + 900 ))
  while [ "$(find "$dir" -path '*/inbox/processed/*.results.csv' | wc -l)" -lt "$tenants" ]; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "bench-cluster-fleet: the fleet did not finish in 15 minutes" >&2
      kill -TERM "${pids[@]}" || true
      exit 1
    fi
    sleep 0.2
  done
  end=$(date +%s.%N)
  kill -TERM "${pids[@]}" || true
  wait "${pids[@]}" || true
  local per=""
  for k in $(seq "$n"); do
    per="$per $(grep -c 'run done tenant=[^ ]* files=1' "$dir/daemon-$k.log" || true)"
  done
  echo "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s; files applied per daemon:$per"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB; $tenants tenants of $rows rows, $workers workers a daemon"
work=$PWD/target/bench-data/cluster-fleet-run
make_fleet "$work" fleet1
echo "1 daemon:  $(fleet "$work" 1)"
make_fleet "$work" fleet$daemons
echo "$daemons daemons: $(fleet "$work" "$daemons")"
rm -rf "$work"
