#!/usr/bin/env bash
# The 1M-row day 2 of `muster run` (JSONL outbox) with the tenant's state in PostgreSQL
# (`[cluster]`) and in the embedded store, taking turns. A throwaway PostgreSQL cluster of
# Debian's postgresql (fsync on, as in production) is started on a free port in /tmp and
# stopped after. Each side first imports day 1 (the cluster's import timed too); each day-2
# run starts from that state (the cluster's database copied from a template, the embedded
# store's folder copied). Prints wall and peak RSS per run (for the cluster, the phases
# `RUST_LOG=muster=debug` reports, in ms since the file's start) and, per side, the median.
# Usage: scripts/bench-cluster-day2.sh RUNS   (ROWS=… for another size; default 1000000)
set -euo pipefail
runs=${1:-3}
source "$(dirname "$0")/bench-data.sh" "${ROWS:-1000000}"
source "$(dirname "$0")/bench-pg.sh"
psql -d postgres -c "CREATE DATABASE day1"
write_cluster_tenant() {
  write_tenant "$1" "$jsonl_sink"
  sed -i '/^state = /d' "$1/muster.toml"
  printf '[cluster]\npostgres_file = "pg-url"\n%s\n' "$(cat "$1/muster.toml")" > "$1/muster.toml"
  echo "postgres://muster@127.0.0.1:$pg_port/$2" > "$1/pg-url"
}
# Day 1 into each.
write_cluster_tenant "$dir/cl-day1" day1
cp "$day1" "$dir/cl-day1/inbox/users.csv"
out=$(cd "$dir/cl-day1" && /usr/bin/time -f "TIME %e %M" "$muster" run --config muster.toml --today 2026-11-21 2>&1 >/dev/null | grep '^TIME' || true)
echo "cluster day 1 ($rows creates): ${out#TIME } (s, KB)"
write_tenant "$dir/em-day1" "$jsonl_sink"
cp "$day1" "$dir/em-day1/inbox/users.csv"
(cd "$dir/em-day1" && "$muster" run --config muster.toml --today 2026-11-21 >/dev/null 2>&1) || true
rm -rf "$dir/em-day1/inbox/processed" "$dir/em-day1/outbox.jsonl"
# The number after `name=` in a debug line of `text` holding `what`.
field() { grep "$2" <<< "$1" | grep -o "$3=[0-9]*" | head -1 | cut -d= -f2; }
declare -A walls
for i in $(seq "$runs"); do
  # The cluster: day 2 from a copy of day 1's database.
  # A checkpoint after the copy, as a daily run has had since the day before: its first
  # write to each page after one logs the whole page.
  psql -d postgres -c "DROP DATABASE IF EXISTS day2" -c "CREATE DATABASE day2 TEMPLATE day1" -c CHECKPOINT
  write_cluster_tenant "$dir/cl-day2" day2
  cp "$day2" "$dir/cl-day2/inbox/users.csv"
  sync
  out=$(cd "$dir/cl-day2" && RUST_LOG=muster=debug NO_COLOR=1 /usr/bin/time -f "TIME %e %M" "$muster" run \
    --config muster.toml --today 2026-11-21 2>&1 >/dev/null || true)
  read -r _ wall rss <<< "$(grep '^TIME' <<< "$out")"
  walls[cluster]="${walls[cluster]:-} $wall"
  echo "cluster: $wall s $((rss / 1024)) MB; prior loaded $(field "$out" 'prior loaded' ms)," \
    "file read $(field "$out" 'run: file read' ms), compared $(field "$out" 'run: compared' ms)," \
    "written $(field "$out" 'run: written' ms), results $(field "$out" 'results written' ms) ms"
  rm -rf "$dir/em-day2" && cp -a "$dir/em-day1" "$dir/em-day2"
  cp "$day2" "$dir/em-day2/inbox/users.csv"
  sync
  read -r _ wall rss <<< "$(cd "$dir/em-day2" && /usr/bin/time -f "TIME %e %M" "$muster" run --config muster.toml --today 2026-11-21 2>&1 >/dev/null | grep '^TIME' || true)"
  walls[embedded]="${walls[embedded]:-} $wall"
  echo "embedded: $wall s $((rss / 1024)) MB"
done
for side in cluster embedded; do
  echo "$side walls: $(walls_and_median "${walls[$side]}") s"
done
