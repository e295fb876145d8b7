#!/usr/bin/env bash
# A JSON API pull of RECORDS users in pages of PAGE (default 1,000,000 in pages of 1,000),
# linked by next links, from tests/it/http_server.py on loopback (bearer token), into a
# tenant whose JSON profile reads them, with a JSONL outbox. Measures `muster run --dry-run`
# (the pull and the plan, nothing written) and then `muster run` (pull, plan, write), each
# with /usr/bin/time -v: wall time and peak RSS; the pull's own time (its log line), and the
# largest RSS seen (sampled every 50 ms) while pages were still coming: the pull's memory,
# before the plan's. The pages are generated once in target/bench-data/api-RECORDS-PAGE/
# (not committed).
# Usage: scripts/bench-http-pull.sh [RECORDS] [PAGE]
set -euo pipefail
records=${1:-1000000}
page=${2:-1000}
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || apt-get install -y time
cargo build --release --quiet
muster=${MUSTER:-$PWD/target/release/muster}
api="target/bench-data/api-$records-$page"
if [ ! -f "$api/done" ]; then
  rm -rf "$api" && mkdir -p "$api/api"
  python3 - "$api" "$records" "$page" <<'PY'
import json, sys
root, records, page = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pages = (records + page - 1) // page
for p in range(pages):
    start = p * page
    data = [{
        "id": f"E{i:07d}",
        "name": {"first": f"First{i % 9973}", "last": f"Last{i % 7919}"},
        "contact": {"email": f"user{i}@acme.example", "phone": None},
        "job": {"title": ["Nurse", "Engineer", "Clerk", "Manager"][i % 4], "department": f"D{i % 97}"},
        "manager": {"id": f"E{i // 10:07d}"} if i >= 10 else None,
        "teams": ["All", f"Team{i % 50}"],
        "active": i % 97 != 0,
    } for i in range(start, min(start + page, records))]
    nxt = f"/api/people?page={p + 2}" if p + 1 < pages else None
    name = "api/people" if p == 0 else f"api/people@page={p + 1}"
    with open(f"{root}/{name}", "w") as f:
        json.dump({"data": data, "links": {"next": nxt}}, f, separators=(",", ":"))
open(f"{root}/done", "w").close()
PY
fi
log=$(mktemp)
python3 tests/it/http_server.py --root "$api" --bearer bench-token > "$log" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 50); do grep -q '^port' "$log" && break; sleep 0.1; done
port=$(awk '/^port/ { print $2 }' "$log")
work=target/bench-data/http-pull
rm -rf "$work" && mkdir -p "$work"
echo -n bench-token > "$work/token"
cat > "$work/people.toml" <<'TOML'
object = "user"
format = "json"
columns = [
  { field = "external_id", name = "id" },
  { field = "first_name", name = "name.first" },
  { field = "last_name", name = "name.last" },
  { field = "email", name = "contact.email" },
  { field = "title", name = "job.title" },
  { field = "custom.department", name = "job.department" },
  { field = "manager_id", name = "manager.id" },
  { field = "groups", name = "teams" },
  { field = "status", name = "active" },
]
[status]
active = ["true"]
inactive = ["false"]
TOML
cat > "$work/muster.toml" <<TOML
[[tenant]]
name = "bench"
state = "state.redb"
[tenant.source]
type = "http"
base_url = "http://127.0.0.1:$port"
archive = "archive"
auth = { type = "bearer", token_file = "token" }
[[tenant.files]]
name = "users"
path = "api/people"
format = "json"
records = "data"
paging = { type = "next_link", next = "links.next" }
profile = "people.toml"
[tenant.sink]
type = "jsonl"
path = "outbox.jsonl"
TOML
for mode in --dry-run ""; do
  rm -rf "$work/archive"
  (cd "$work" && RUST_LOG=info NO_COLOR=1 /usr/bin/time -v "$muster" run --config muster.toml \
    --today 2026-11-21 $mode > /dev/null 2> run.log || true) &
  job=$!
  sleep 0.05
  pid=$(pgrep -n -f "$muster run --config muster.toml" || true)
  pull_rss=0
  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
    if ! grep -q "all pages pulled" "$work/run.log"; then
      rss=$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ' || true)
      [ -n "$rss" ] && [ "$rss" -gt "$pull_rss" ] && pull_rss=$rss
    fi
    sleep 0.05
  done
  wait $job
  out=$(cat "$work/run.log")
  wall=$(grep 'Elapsed (wall' <<< "$out" | awk '{ print $NF }')
  rss=$(grep 'Maximum resident' <<< "$out" | awk '{ print $NF }')
  pulled=$(grep -o "pages=[0-9]* records=[0-9]* bytes=[0-9]* elapsed_ms=[0-9]*" <<< "$out" | tail -1 || true)
  echo "run ${mode:-(applied)}: wall $wall, peak RSS $((rss / 1024)) MB; pull: $pulled, RSS while pulling up to $((pull_rss / 1024)) MB"
done
