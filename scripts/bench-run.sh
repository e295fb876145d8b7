#!/usr/bin/env bash
# Whole-process figures for `muster run` with the JSONL outbox: the first import of a generated
# 1M-row winningtemp-users file into an empty store, then the day-2 file (see bench-diff.sh)
# against the store holding day 1. Wall time and peak RSS from /usr/bin/time; one run each
# (a run changes the store, so each measurement starts from a fresh copy of the tenant).
# Usage: scripts/bench-run.sh [ROWS]   (default 1000000)
source "$(dirname "$0")/bench-data.sh"
muster=$PWD/target/release/muster
data=$dir
work=$data/run-tenant
write_tenant "$work" 'type = "jsonl"
path = "outbox.jsonl"'
measure() {
  /usr/bin/time -f "%e %M" "$muster" run --config "$work/muster.toml" --today 2026-11-21 2>&1 >/dev/null |
    tail -1 | awk '{ printf "%s s  %d MB\n", $1, $2 / 1024 }'
}
cp "$day1" "$work/inbox/users.csv"
echo "first import ($rows rows, empty store): $(measure)"
cp "$day2" "$work/inbox/users.csv"
echo "day 2 against day 1:                   $(measure)"
echo "outbox lines: $(wc -l < "$work/outbox.jsonl"), store: $(du -h "$work/state.redb" | cut -f1)"
