#!/usr/bin/env bash
# Whole-process figures for `muster run` with the JSONL outbox: the first import of a generated
# 1M-row winningtemp-users file into an empty store, then the day-2 file (see bench-diff.sh)
# against the store holding day 1. Wall time and peak RSS from /usr/bin/time. A run changes
# the store, so each first import starts from an empty tenant and each day 2 from a copy of
# the tenant after day 1; the page cache is flushed (`sync`) before each run, so one run's
# writeback does not land in the next. Prints each run and the median.
# Usage: scripts/bench-run.sh [ROWS] [RUNS]   (defaults 1000000 and 5); MUSTER=path measures
# another build of muster with the same script.
source "$(dirname "$0")/bench-data.sh"
runs=${2:-5}
work=$dir/run-tenant
day1_tenant=$dir/run-tenant-day1
sink='type = "jsonl"
path = "outbox.jsonl"'
# The median of the lines on stdin ("SECONDS s MB MB"), by seconds.
median() {
  sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'
}
first=()
for _ in $(seq "$runs"); do
  write_tenant "$work" "$sink"
  cp "$day1" "$work/inbox/users.csv"
  first+=("$(time_run "$work")")
done
echo "first import ($rows rows, empty store): $(printf '%s\n' "${first[@]}" | median)   runs: $(printf '%s, ' "${first[@]% * *}")"
rm -rf "$day1_tenant" && cp -r "$work" "$day1_tenant"
second=()
for _ in $(seq "$runs"); do
  rm -rf "$work" && cp -r "$day1_tenant" "$work"
  cp "$day2" "$work/inbox/users.csv"
  second+=("$(time_run "$work")")
done
echo "day 2 against day 1:                   $(printf '%s\n' "${second[@]}" | median)   runs: $(printf '%s, ' "${second[@]% * *}")"
echo "outbox lines: $(wc -l < "$work/outbox.jsonl"), store: $(du -h "$work/state.redb" | cut -f1), journal: $(du -h "$work/state.redb.journal" | cut -f1)"
