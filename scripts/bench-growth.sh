#!/usr/bin/env bash
# How time and memory grow with the rows: `muster check` of day 1 and `muster diff` of day 1
# and day 2 (see bench-data.sh) at 100k, 1M and 5M rows; median wall and peak RSS of 5 runs
# each (/usr/bin/time -f "%e %M"), and the ratio of each size's time to the size before.
# Usage: scripts/bench-growth.sh [SIZES...]   (default 100000 1000000 5000000)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-100000 1000000 5000000}")
[ $# -gt 0 ] || sizes=(100000 1000000 5000000)
for rows in "${sizes[@]}"; do
  # Builds the binary and makes the files of this size.
  (source scripts/bench-data.sh "$rows")
done
dir=target/bench-data
muster=(./target/release/muster)
opts=(--profile winningtemp-users --today 2026-11-21 --results /dev/null)
median() { # "wall rss" lines -> "wall rss_kb"
  echo "$1" | awk 'NF {print $1}' | sort -n | sed -n 3p | tr '\n' ' '
  echo "$1" | awk 'NF {print $2}' | sort -n | sed -n 3p
}
echo "| rows | check wall | check RSS | ×time | diff wall | diff RSS | ×time |"
echo "|---|---|---|---|---|---|---|"
prev_c="" prev_d=""
for rows in "${sizes[@]}"; do
  day1="$dir/winningtemp-users-$rows-seed1.csv"
  day2="$dir/winningtemp-users-$rows-seed1-day2.csv"
  "${muster[@]}" check "${opts[@]}" "$day1" >/dev/null 2>&1  # warm-up
  c="" d=""
  for i in 1 2 3 4 5; do
    c+="$(/usr/bin/time -f "%e %M" "${muster[@]}" check "${opts[@]}" "$day1" 2>&1 >/dev/null | tail -1)"$'\n'
    d+="$(/usr/bin/time -f "%e %M" "${muster[@]}" diff "${opts[@]}" "$day1" "$day2" 2>&1 >/dev/null | tail -1)"$'\n'
  done
  read -r cw cr <<<"$(median "$c")"
  read -r dw dr <<<"$(median "$d")"
  rc=${prev_c:+$(awk "BEGIN {printf \"%.1f\", $cw / $prev_c}")}
  rd=${prev_d:+$(awk "BEGIN {printf \"%.1f\", $dw / $prev_d}")}
  echo "| $rows | $cw s | $((cr / 1024)) MB | ${rc:-—} | $dw s | $((dr / 1024)) MB | ${rd:-—} |"
  prev_c=$cw prev_d=$dw
done
