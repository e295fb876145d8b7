#!/usr/bin/env bash
# A week of `muster run` (JSONL outbox) at 1M rows: the first import, then days 2..7, each
# derived from the day before (`gen --from --change-ratio 0.02 --shuffle`, seed = the day),
# run in turn against the same store. Day 2's writes and the next days' wait in the journal
# until it names 2^16 keys or reaches 64 MiB (decision 43); the day that crosses it folds
# them into redb. Prints each day's wall time, peak RSS and the journal's size after it.
# Usage: scripts/bench-week.sh [ROWS] [SERIES]   (defaults 1000000 and 3); MUSTER=path as in
# bench-run.sh.
source "$(dirname "$0")/bench-data.sh"
series=${2:-3}
work=$dir/week-tenant
prev=$day2
for d in 3 4 5 6 7; do
  f="$dir/winningtemp-users-$rows-seed1-day$d.csv"
  [ -f "$f" ] || ./target/release/muster gen --profile winningtemp-users --from "$prev" \
    --change-ratio 0.02 --seed "$d" --shuffle > "$f" 2>/dev/null
  prev=$f
done
for s in $(seq "$series"); do
  write_tenant "$work" 'type = "jsonl"
path = "outbox.jsonl"'
  line="series $s:"
  for d in 1 2 3 4 5 6 7; do
    case $d in 1) f=$day1 ;; 2) f=$day2 ;; *) f="$dir/winningtemp-users-$rows-seed1-day$d.csv" ;; esac
    cp "$f" "$work/inbox/users.csv"
    t=$(time_run "$work")
    line="$line  day $d: $t, journal $(du -h "$work/state.redb.journal" | cut -f1);"
  done
  echo "$line"
done
