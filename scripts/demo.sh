#!/usr/bin/env bash
# The demo run: copies examples/demo/ to target/demo/ (fresh each time), runs
# `muster run` on it, and shows what landed in processed/ and the outboxes.
# `scripts/demo.sh day2` then derives changed files from day 1 and runs again.
set -euo pipefail
cd "$(dirname "$0")/.."
# The first build takes a few minutes (OpenSSL is built from source): cargo shows its progress.
cargo build --release
muster=$PWD/target/release/muster
demo=target/demo
if [ "${1:-}" != "day2" ]; then
  rm -rf "$demo"
  mkdir -p "$demo"
  cp -r examples/demo/. "$demo/"
else
  # Day 2: a changed users file for acme, derived from day 1's.
  day1=$(ls "$demo"/inbox/acme/processed/wt_users.*Z.csv | head -1)
  "$muster" gen --profile winningtemp-users --from "$day1" --change-ratio 0.1 --seed 2 \
    > "$demo/inbox/acme/wt_users.csv"
fi
cd "$demo"
set +e
"$muster" run --config muster.toml
code=$?
set -e
echo "exit code: $code"
echo "--- processed/ of acme"; ls inbox/acme/processed
echo "--- last lines of the acme outbox"; tail -n 3 outbox/acme.jsonl
