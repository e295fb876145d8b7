#!/usr/bin/env bash
# The whole test suite, as on a fresh machine. What it installs when missing, and what it
# leaves:
#   - OpenSSH's server (Debian package openssh-server), for the SFTP tests: each starts its
#     own sshd on 127.0.0.1 and a free port, and stops it. They log in as the system user
#     `muster-sftp`, which they create (run as root, as CI does); this script removes it, with
#     its home, when the tests end, unless it was there before.
#   - scim2-server from PyPI into target/scim-venv, for the SCIM tests: each starts its own on
#     127.0.0.1 and a free port, and stops it. The Prometheus project's Python client joins it
#     there: its parser reads the daemon's /metrics in the endpoint's test. So do aiosmtpd, the
#     SMTP server each e-mail test starts on loopback (tests/it/smtp_server.py), and trustme,
#     which makes that server's throwaway certificate for STARTTLS.
#   - pyftpdlib with pyOpenSSL, beside them: each FTP test starts its own FTP server on
#     loopback (tests/it/ftp_server.py), plain, explicit or implicit FTPS.
#   - PostgreSQL's server (Debian package postgresql), for the cluster's tests: each starts
#     its own throwaway cluster (initdb into a folder of /tmp, owned by the `postgres` user
#     the package makes; a free port on 127.0.0.1; a password login) and stops it.
#   - Chromium and its WebDriver (Debian packages chromium and chromium-driver), for the
#     console's test: it starts chromedriver on a free port and drives a headless Chromium
#     through it; screenshots land in target/console/.
# Then `cargo test --release`, with the features and profile of the demo's build (nothing is
# compiled twice). Extra arguments go to cargo test (e.g. `scripts/test.sh sftp::`).
set -euo pipefail
cd "$(dirname "$0")/.."
sftp_user=muster-sftp
if ! id "$sftp_user" >/dev/null 2>&1; then
  trap 'if id "$sftp_user" >/dev/null 2>&1; then echo "removing the test user $sftp_user" >&2; userdel -r "$sftp_user" 2>/dev/null || userdel "$sftp_user"; fi' EXIT
fi
if [ ! -x /usr/sbin/sshd ]; then
  echo "installing openssh-server (for the SFTP tests)..." >&2
  # This image's policy keeps the package from starting a server on port 22.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; }
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing postgresql (for the cluster's tests)..." >&2
  # This image's policy keeps the package from starting its own cluster on port 5432.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
fi
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  echo "installing chromium and chromium-driver (the console's browser test)..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
fi
# The real SCIM server the SCIM sink's tests write to (pinned: the tests know its behaviour).
venv=target/scim-venv
if [ ! -x "$venv/bin/scim2-server" ]; then
  echo "installing scim2-server (for the SCIM tests)..." >&2
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "scim2-server==0.8.3"
fi
if ! "$venv/bin/python" -c "import prometheus_client" 2>/dev/null; then
  echo "installing prometheus-client (its parser reads /metrics in a test)..." >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "prometheus-client==0.21.1"
fi
if ! "$venv/bin/python" -c "import aiosmtpd, trustme" 2>/dev/null; then
  echo "installing aiosmtpd and trustme (a real SMTP server for the e-mail tests)..." >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==1.4.6" "trustme==1.2.1"
fi
if ! "$venv/bin/python" -c "import pyftpdlib, OpenSSL" 2>/dev/null; then
  echo "installing pyftpdlib and pyOpenSSL (a real FTP server for the FTP source's tests)..." >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "pyftpdlib==2.0.1" "pyOpenSSL==25.1.0"
fi
cargo test --release "$@"
