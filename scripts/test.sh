#!/usr/bin/env bash
# The whole test suite, as on a fresh machine: installs what the tests need that is not Rust
# (OpenSSH's server, for the SFTP tests: they start their own sshd on 127.0.0.1 and a high
# port, and create the test user `muster-sftp`; run as root, as CI does; and scim2-server
# from PyPI into target/scim-venv, for the SCIM tests: each starts its own on 127.0.0.1 and
# a free port, and stops it when done), then runs `cargo test --release`. Extra arguments go to cargo test (e.g. `scripts/test.sh sftp::`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/sbin/sshd ]; then
  echo "installing openssh-server (for the SFTP tests)..." >&2
  # This image's policy keeps the package from starting a server on port 22.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; }
fi
# The real SCIM server the SCIM sink's tests write to (pinned: the tests know its behaviour).
venv=target/scim-venv
if [ ! -x "$venv/bin/scim2-server" ]; then
  echo "installing scim2-server (for the SCIM tests)..." >&2
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "scim2-server==0.8.3"
fi
cargo test --release "$@"
