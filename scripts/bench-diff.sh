#!/usr/bin/env bash
# Whole-process figures for `muster diff` of two generated 1M-row winningtemp-users files, side
# by side with DuckDB doing the same keyed diff (full outer join on the key plus a row hash).
# Day 2 = `muster gen --from day1 --change-ratio 0.02 --shuffle`: 0.5 % deleted, 0.5 % created,
# 1 % touched (70 % real updates, 15 % deactivations, 15 % changes that normalise away).
# Wall time and peak RSS from /usr/bin/time -f "%e %M"; median of 5 runs each, the tools taking turns.
# Usage: scripts/bench-diff.sh [ROWS]   (default 1000000)
source "$(dirname "$0")/bench-data.sh"

venv="$dir/venv"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q duckdb; }
cat > "$dir/duckdb_diff.py" <<'PY'
import sys, duckdb
old, new = sys.argv[1], sys.argv[2]
con = duckdb.connect()
read = "read_csv('{}', delim=';', header=true, quote='\"', all_varchar=true)"
# The key column by position (names may differ), and a hash of the whole row.
con.execute(f"create table o as select #1 as k, hash(t) as h from {read.format(old)} t")
con.execute(f"create table n as select #1 as k, hash(t) as h from {read.format(new)} t")
r = con.execute("""select
  count(*) filter (where o.k is null) as creates,
  count(*) filter (where n.k is null) as deletes,
  count(*) filter (where o.k is not null and n.k is not null and o.h <> n.h) as updates
  from o full outer join n on o.k = n.k""").fetchone()
print(r)
PY
muster=(./target/release/muster diff --profile winningtemp-users --today 2026-11-21 \
  --results /dev/null "$day1" "$day2")
duck=("$venv/bin/python" "$dir/duckdb_diff.py" "$day1" "$day2")
# The two tools take turns (on this shared VM speed drifts by tens of percent over minutes;
# turns give both the same conditions), after two warm-up runs each (the first runs after
# another memory-hungry process pay for the kernel reclaiming and zeroing memory).
for i in 1 2; do "${muster[@]}" >/dev/null 2>&1; "${duck[@]}" >/dev/null 2>&1; done
m_runs=""; d_runs=""
for i in 1 2 3 4 5; do
  m_runs+="$(/usr/bin/time -f "%e %M" "${muster[@]}" 2>&1 >/dev/null | tail -1)"$'\n'
  d_runs+="$(/usr/bin/time -f "%e %M" "${duck[@]}" 2>&1 >/dev/null | tail -1)"$'\n'
done
median() { # runs ("wall rss" lines) -> "median wall, median peak RSS; all walls"
  local wall rss all
  wall=$(echo "$1" | awk 'NF {print $1}' | sort -n | sed -n 3p)
  rss=$(echo "$1" | awk 'NF {print $2}' | sort -n | sed -n 3p)
  all=$(echo "$1" | awk 'NF {printf "%s ", $1}')
  echo "${wall} s  $((rss / 1024)) MB   (runs: ${all% })"
}
echo "muster diff:  $(median "$m_runs")"
echo "duckdb $("$venv/bin/python" -c 'import duckdb; print(duckdb.__version__)'): $(median "$d_runs")"
