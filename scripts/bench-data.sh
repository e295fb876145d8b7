# Sourced by the bench scripts: builds the release binary and makes the generated input
# files they share, in target/bench-data/ (not committed). Sets rows (from $1, default
# 1000000), dir, day1 (`muster gen --seed 1`) and day2 (day 1 with 2 % of rows changed, 0.5 %
# deleted and created, shuffled: `gen --from --change-ratio 0.02 --seed 2 --shuffle`), and
# muster: the binary measured, `$MUSTER` when set (an older build, to compare), else this one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rows=${1:-1000000}
command -v /usr/bin/time >/dev/null || apt-get install -y time
cargo build --release --quiet
dir=target/bench-data
mkdir -p "$dir"
day1="$dir/winningtemp-users-$rows-seed1.csv"
day2="$dir/winningtemp-users-$rows-seed1-day2.csv"
[ -f "$day1" ] || ./target/release/muster gen --profile winningtemp-users --rows "$rows" --seed 1 > "$day1"
muster=${MUSTER:-$PWD/target/release/muster}
[ -f "$day2" ] || ./target/release/muster gen --profile winningtemp-users --from "$day1" \
  --change-ratio 0.02 --seed 2 --shuffle > "$day2"

# The `[tenant.sink]` table of a JSONL outbox, for write_tenant.
jsonl_sink='type = "jsonl"
path = "outbox.jsonl"'

# Walls given as words (seconds) -> "sorted walls  median: M" (the A/B scripts' last lines).
walls_and_median() {
  local sorted
  sorted=$(tr ' ' '\n' <<< "$1" | grep . | sort -n | tr '\n' ' ')
  echo "$sorted median: $(tr ' ' '\n' <<< "$sorted" | grep . | awk '{ l[NR] = $0 } END { print (NR % 2) ? l[(NR + 1) / 2] : (l[NR / 2] + l[NR / 2 + 1]) / 2 }')"
}

# Writes $1/muster.toml: one tenant reading $1/inbox with the winningtemp-users profile, its
# state in $1/state.redb, and the `[tenant.sink]` table given in $2.
write_tenant() {
  rm -rf "$1" && mkdir -p "$1/inbox"
  cat > "$1/muster.toml" <<TOML
[[tenant]]
name = "bench"
state = "state.redb"
[tenant.source]
type = "dir"
path = "inbox"
settle_ms = 0
[[tenant.files]]
pattern = "*.csv"
profile = "winningtemp-users"
[tenant.sink]
$2
TOML
}

# Times one `muster run --config muster.toml` in $1 (the page cache flushed first, so one
# run's writeback does not land in the next): prints "SECONDS s MB MB". Exit 3 (rows
# rejected) counts as a run: a derived day has a few duplicate e-mails.
time_run() {
  sync
  (cd "$1" && { /usr/bin/time -f "%e %M" "$muster" run --config muster.toml --today 2026-11-21 \
    2>&1 >/dev/null || [ $? = 3 ]; } | tail -1 | awk '{ printf "%s s %d MB\n", $1, $2 / 1024 }')
}
