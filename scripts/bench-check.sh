#!/usr/bin/env bash
# Whole-process figures for `muster check` on a generated 1M-row winningtemp-users file:
# wall time and peak RSS from /usr/bin/time -f "%e %M", median of 5 runs.
# Usage: scripts/bench-check.sh [ROWS]   (default 1000000)
source "$(dirname "$0")/bench-data.sh"
file=$day1
echo "file: $file ($(stat -L -c %s "$file") bytes)"
runs=$(for i in 1 2 3 4 5; do
  /usr/bin/time -f "%e %M" ./target/release/muster check --profile winningtemp-users --today 2026-11-21 \
    --results /dev/null "$file" 2>&1 >/dev/null | tail -1
done)
wall=$(echo "$runs" | awk '{print $1}' | sort -n | sed -n 3p)
rss=$(echo "$runs" | awk '{print $2}' | sort -n | sed -n 3p)
echo "muster check: median wall ${wall} s, median peak RSS $((rss / 1024)) MB"
