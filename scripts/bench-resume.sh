#!/usr/bin/env bash
# What a crash costs: a first import of ROWS generated users (JSONL outbox) run whole, then the
# same import killed with SIGKILL once half its operations are in the outbox and run again.
# Prints the clean run's wall, the wall of the run that resumes, and both runs' results
# compared (the resumed run's results must tell every row as the clean run's: decision 67).
# Usage: scripts/bench-resume.sh RUNS [ROWS]   (ROWS: 200000)
set -euo pipefail
runs=$1
source "$(dirname "$0")/bench-data.sh" "${2:-200000}"
declare -A walls
for _ in $(seq "$runs"); do
  clean="$dir/resume-clean" killed="$dir/resume-killed"
  for work in "$clean" "$killed"; do
    write_tenant "$work" "$jsonl_sink"
    cp "$day1" "$work/inbox/users.csv"
  done
  read -r wall _ rss _ <<< "$(time_run "$clean")"
  walls[clean]="${walls[clean]:-} $wall"
  echo "clean run: $wall s $rss MB"
  (cd "$killed" && exec "$muster" run --config muster.toml --today 2026-11-21 2>/dev/null) &
  pid=$!
  lines() { if [ -f "$killed/outbox.jsonl" ]; then wc -l < "$killed/outbox.jsonl"; else echo 0; fi; }
  while [ "$(lines)" -lt $((rows / 2)) ]; do
    sleep 0.05
  done
  kill -9 "$pid" && wait "$pid" 2>/dev/null || true
  echo "killed at $(wc -l < "$killed/outbox.jsonl") outbox lines"
  read -r wall _ rss _ <<< "$(time_run "$killed")"
  walls[resumed]="${walls[resumed]:-} $wall"
  echo "resumed run: $wall s $rss MB"
  if cmp -s "$clean"/inbox/processed/*.results.csv "$killed"/inbox/processed/*.results.csv; then
    echo "results: the same"
  else
    echo "results: DIFFERENT"
  fi
done
echo "clean walls: $(walls_and_median "${walls[clean]}")"
echo "resumed walls: $(walls_and_median "${walls[resumed]}")"
