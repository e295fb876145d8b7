#!/usr/bin/env bash
# Two or more builds of muster taking turns on the three figures the redesign had to hold
# (issue 25): the first import of the generated 1M-row winningtemp-users file into an empty
# store (`muster run`, JSONL outbox), and `muster diff` of day 1 and day 2. Each run starts
# after `sync`. Prints each run's wall time and peak RSS, then per build and figure the
# sorted walls and their median. (Day 2 of `muster run`: scripts/bench-day2-ab.sh.)
# Usage: scripts/bench-ab.sh RUNS NAME=BINARY NAME=BINARY ...   (ROWS: 1000000)
set -euo pipefail
runs=$1
shift
source "$(dirname "$0")/bench-data.sh" 1000000
sink=$jsonl_sink
declare -A walls
for _ in $(seq "$runs"); do
  for spec in "$@"; do
    name=${spec%%=*} muster=${spec#*=}
    work="$dir/ab-first-$name"
    write_tenant "$work" "$sink"
    cp "$day1" "$work/inbox/users.csv"
    read -r wall _ rss _ <<< "$(time_run "$work")"
    walls[$name-first]="${walls[$name-first]:-} $wall"
    echo "$name first import: $wall s $rss MB"
    sync
    out=$( { /usr/bin/time -f "TIME %e %M" "$muster" diff --profile winningtemp-users \
      --today 2026-11-21 --results /dev/null "$day1" "$day2" >/dev/null; } 2>&1 || true)
    read -r _ wall rss <<< "$(grep '^TIME' <<< "$out")"
    walls[$name-diff]="${walls[$name-diff]:-} $wall"
    echo "$name diff: $wall s $((rss / 1024)) MB"
  done
done
for spec in "$@"; do
  name=${spec%%=*}
  for figure in first diff; do
    echo "$name $figure walls: $(walls_and_median "${walls[$name-$figure]}") s"
  done
done
