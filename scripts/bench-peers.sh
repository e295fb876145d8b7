#!/usr/bin/env bash
# The peers table of BENCHMARKS.md, from nothing: builds muster, generates the 1M-row files (see
# bench-data.sh), installs the peers — DuckDB and Polars with pip into target/bench-data/venv,
# xsv with `cargo install` into target/xsv, the `csv` crate's reader as examples/csv_count.rs —
# and runs each task with each tool: one warm-up run each, then five measured runs each, the
# tools taking turns (this shared VM drifts over minutes). Prints a markdown table of median
# wall time and median peak RSS (/usr/bin/time -f "%e %M").
# Tasks:
#   read  — every record of day 1 (muster: `check`, which also maps, validates, plans and
#           writes results; the peers only read and count)
#   diff  — the keyed diff of day 1 and day 2 (full outer join on the key plus a row hash)
# Usage: scripts/bench-peers.sh [ROWS]   (default 1000000)
source "$(dirname "$0")/bench-data.sh"

venv="$dir/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import duckdb, polars' 2>/dev/null || "$venv/bin/pip" install -q duckdb polars
[ -x target/xsv/bin/xsv ] || cargo install --quiet xsv --root target/xsv
cargo build --release --quiet --example csv_count
py="$venv/bin/python"

cat > "$dir/duckdb_peer.py" <<'PY'
import sys, duckdb
task, files = sys.argv[1], sys.argv[2:]
con = duckdb.connect()
read = "read_csv('{}', delim=';', header=true, quote='\"', all_varchar=true)"
if task == "read":
    print(con.execute(f"select count(*) from {read.format(files[0])}").fetchone()[0])
else:
    # The key column by position (names may differ), and a hash of the whole row.
    con.execute(f"create table o as select #1 as k, hash(t) as h from {read.format(files[0])} t")
    con.execute(f"create table n as select #1 as k, hash(t) as h from {read.format(files[1])} t")
    print(con.execute("""select
      count(*) filter (where o.k is null) as creates,
      count(*) filter (where n.k is null) as deletes,
      count(*) filter (where o.k is not null and n.k is not null and o.h <> n.h) as updates
      from o full outer join n on o.k = n.k""").fetchone())
PY
cat > "$dir/polars_peer.py" <<'PY'
import sys, polars as pl
task, files = sys.argv[1], sys.argv[2:]
def scan(path):
    return pl.scan_csv(path, separator=';', quote_char='"', infer_schema=False)
if task == "read":
    print(scan(files[0]).select(pl.len()).collect().item())
else:
    def keyed(path):
        lf = scan(path)
        key = lf.collect_schema().names()[0]
        return lf.select(pl.col(key).alias("k"), pl.struct(pl.all()).hash().alias("h"))
    j = keyed(files[0]).join(keyed(files[1]), on="k", how="full", suffix="_n").collect()
    creates = j.filter(pl.col("k").is_null()).height
    deletes = j.filter(pl.col("k_n").is_null()).height
    updates = j.filter(pl.col("k").is_not_null() & pl.col("k_n").is_not_null()
                       & (pl.col("h") != pl.col("h_n"))).height
    print((creates, deletes, updates))
PY

muster=./target/release/muster
today=(--profile winningtemp-users --today 2026-11-21 --results /dev/null)
declare -A cmd
cmd[read,muster]="$muster check ${today[*]} $day1"
cmd[read,duckdb]="$py $dir/duckdb_peer.py read $day1"
cmd[read,polars]="$py $dir/polars_peer.py read $day1"
cmd[read,csv]="./target/release/examples/csv_count $day1"
cmd[read,xsv]="target/xsv/bin/xsv count -d ; $day1"
cmd[diff,muster]="$muster diff ${today[*]} $day1 $day2"
cmd[diff,duckdb]="$py $dir/duckdb_peer.py diff $day1 $day2"
cmd[diff,polars]="$py $dir/polars_peer.py diff $day1 $day2"
tools=(muster duckdb polars csv xsv)

median() { # "wall rss" lines -> "wall s / rss MB"
  local wall rss
  wall=$(echo "$1" | awk 'NF {print $1}' | sort -n | sed -n 3p)
  rss=$(echo "$1" | awk 'NF {print $2}' | sort -n | sed -n 3p)
  echo "${wall} s / $((rss / 1024)) MB"
}
declare -A runs
for task in read diff; do
  for tool in "${tools[@]}"; do
    [ -n "${cmd[$task,$tool]:-}" ] || continue
    echo "$task $tool: $(${cmd[$task,$tool]} 2>/dev/null | tail -1)" >&2  # warm-up, and what it found
  done
  for i in 1 2 3 4 5; do
    for tool in "${tools[@]}"; do
      [ -n "${cmd[$task,$tool]:-}" ] || continue
      runs[$task,$tool]+="$(/usr/bin/time -f "%e %M" ${cmd[$task,$tool]} 2>&1 >/dev/null | tail -1)"$'\n'
    done
  done
done

echo "files: $day1 ($(stat -L -c %s "$day1") bytes), $day2; $(nproc) cores"
echo "DuckDB $("$py" -c 'import duckdb; print(duckdb.__version__)'), Polars $("$py" -c 'import polars; print(polars.__version__)'), $(target/xsv/bin/xsv --version | head -1 | sed 's/^/xsv /'), csv $(grep -m1 -A1 'name = "csv"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')"
echo
echo "| task | muster | DuckDB | Polars | csv crate | xsv |"
echo "|---|---|---|---|---|---|"
for task in read diff; do
  row="| $task"
  for tool in "${tools[@]}"; do
    if [ -n "${runs[$task,$tool]:-}" ]; then row+=" | $(median "${runs[$task,$tool]}")"; else row+=" | —"; fi
  done
  echo "$row |"
done
