#!/usr/bin/env bash
# CI's smoke test of the release binary on a generated 100k-row file: correctness, not timing.
# `muster check` of day 1 gives one results line per record; `muster diff` of day 1 and a
# shuffled day 2 (`gen --from --change-ratio 0.02`) plans exactly the creates `gen` says it
# made, some of each other change and no more than it made (a row inactive or rejected on
# day 1 is not in the state: its update, deactivation or deletion has nothing to do), and one
# line per day-2 record plus one per inferred deletion.
# Usage: scripts/smoke.sh [ROWS]   (default 100000; expects target/release/muster built)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
muster=${CARGO_TARGET_DIR:-target}/release/muster
[ -x "$muster" ] || cargo build --release --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "smoke: $*" >&2; exit 1; }
"$muster" gen --profile winningtemp-users --rows "$rows" --seed 1 > "$tmp/day1.csv"
"$muster" gen --profile winningtemp-users --from "$tmp/day1.csv" --change-ratio 0.02 --seed 2 \
  --shuffle > "$tmp/day2.csv" 2> "$tmp/gen.log"
# "derived from …: K kept, U updated, D deactivated, C cosmetic, X deleted, N created"
made() { grep -oE "[0-9]+ $1" "$tmp/gen.log" | cut -d' ' -f1; }
check_exit=0
"$muster" check --profile winningtemp-users --today 2026-11-21 --results "$tmp/check.csv" \
  "$tmp/day1.csv" 2>/dev/null || check_exit=$?
[ "$check_exit" = 0 ] || [ "$check_exit" = 3 ] || fail "check exited $check_exit"
lines=$(($(wc -l < "$tmp/check.csv") - 1))
[ "$lines" = "$rows" ] || fail "check wrote $lines results lines for $rows records"
diff_exit=0
"$muster" diff --profile winningtemp-users --today 2026-11-21 --results "$tmp/diff.csv" \
  "$tmp/day1.csv" "$tmp/day2.csv" 2> "$tmp/diff.log" || diff_exit=$?
[ "$diff_exit" = 0 ] || [ "$diff_exit" = 3 ] || fail "diff exited $diff_exit"
planned() { awk -F, -v a="$1" 'NR > 1 && $3 == a' "$tmp/diff.csv" | wc -l; }
[ "$(awk -F, 'NR > 1 && $4 != "planned"' "$tmp/diff.csv" | wc -l)" = 0 ] || fail "a diff line is not planned"
[ "$(planned create)" = "$(made created)" ] || fail "diff plans $(planned create) creates, gen made $(made created)"
for what in update:updated deactivate:deactivated delete:deleted; do
  n=$(planned "${what%%:*}"); m=$(made "${what##*:}")
  { [ "$n" -gt 0 ] && [ "$n" -le "$m" ]; } || fail "diff plans $n ${what%%:*}, gen made $m"
done
# Records, as the reader counts them (quoted fields may hold line breaks).
records=$(grep -oE "[0-9]+ records" "$tmp/diff.log" | head -1 | cut -d' ' -f1)
inferred=$(awk -F, 'NR > 1 && $1 == ""' "$tmp/diff.csv" | wc -l)
[ $(($(wc -l < "$tmp/diff.csv") - 1)) = $((records + inferred)) ] || fail "diff lines are not one per record plus inferred deletions"
echo "smoke: $rows rows: check $lines lines; diff $(planned create) create, $(planned update) update," \
  "$(planned deactivate) deactivate, $(planned delete) delete (gen: $(tail -1 "$tmp/gen.log" | cut -d: -f2-))"
