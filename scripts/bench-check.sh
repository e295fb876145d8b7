#!/usr/bin/env bash
# Whole-process figures for `muster check` on a generated 1M-row winningtemp-users file:
# wall time and peak RSS from /usr/bin/time -f "%e %M", median of 5 runs.
# Usage: scripts/bench-check.sh [ROWS]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
command -v /usr/bin/time >/dev/null || apt-get install -y time
cargo build --release --quiet
dir=target/bench-data
mkdir -p "$dir"
file="$dir/winningtemp-users-$rows-seed1.csv"
[ -f "$file" ] || ./target/release/muster gen --profile winningtemp-users --rows "$rows" --seed 1 > "$file"
echo "file: $file ($(stat -L -c %s "$file") bytes)"
runs=$(for i in 1 2 3 4 5; do
  /usr/bin/time -f "%e %M" ./target/release/muster check --profile winningtemp-users --today 2026-11-21 \
    --results /dev/null "$file" 2>&1 >/dev/null | tail -1
done)
wall=$(echo "$runs" | awk '{print $1}' | sort -n | sed -n 3p)
rss=$(echo "$runs" | awk '{print $2}' | sort -n | sed -n 3p)
echo "muster check: median wall ${wall} s, median peak RSS $((rss / 1024)) MB"
