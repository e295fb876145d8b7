#!/usr/bin/env bash
# Day 2 of `muster run` (JSONL outbox) with two or more builds of muster, taking turns: each
# build first imports day 1 into a tenant of its own (a store it can read), then each run
# starts from a copy of that tenant (`sync` first). Prints, per run, the wall time, peak RSS
# and the phases `RUST_LOG=debug` reports (milliseconds since the file's start: prior
# loaded, file read, compared, written, results written), then per build the sorted walls
# and their median. This VM drifts by tens of percent over minutes; taking turns puts the
# builds in the same minutes.
# Usage: scripts/bench-day2-ab.sh RUNS NAME=BINARY NAME=BINARY ...   (ROWS: 1000000)
set -euo pipefail
runs=$1
shift
source "$(dirname "$0")/bench-data.sh" 1000000
sink=$jsonl_sink
for spec in "$@"; do
  name=${spec%%=*} bin=${spec#*=}
  write_tenant "$dir/ab-$name-day1" "$sink"
  cp "$day1" "$dir/ab-$name-day1/inbox/users.csv"
  (cd "$dir/ab-$name-day1" && "$bin" run --config muster.toml --today 2026-11-21 >/dev/null 2>&1) || true
  rm -rf "$dir/ab-$name-day1/inbox/processed" "$dir/ab-$name-day1/outbox.jsonl"
done
# The number after `name=` in a debug line of `text` holding `what`.
field() { grep "$2" <<< "$1" | grep -o "$3=[0-9]*" | head -1 | cut -d= -f2; }
declare -A walls
for _ in $(seq "$runs"); do
  for spec in "$@"; do
    name=${spec%%=*} bin=${spec#*=}
    work="$dir/ab-$name"
    rm -rf "$work" && cp -a "$dir/ab-$name-day1" "$work"
    cp "$day2" "$work/inbox/users.csv"
    sync
    out=$(cd "$work" && RUST_LOG=debug NO_COLOR=1 /usr/bin/time -f "TIME %e %M" "$bin" run \
      --config muster.toml --today 2026-11-21 2>&1 | sed 's/\x1b\[[0-9;]*m//g' || true)
    read -r _ wall rss <<< "$(grep '^TIME' <<< "$out")"
    walls[$name]="${walls[$name]:-} $wall"
    echo "$name: $wall s $((rss / 1024)) MB; prior loaded $(field "$out" 'prior loaded' ms)," \
      "file read $(field "$out" 'run: file read' ms), compared $(field "$out" 'run: compared' ms)," \
      "written $(field "$out" 'run: written' ms), results $(field "$out" 'results written' ms) ms"
  done
done
for spec in "$@"; do
  name=${spec%%=*}
  echo "$name walls: $(walls_and_median "${walls[$name]}") s"
done
