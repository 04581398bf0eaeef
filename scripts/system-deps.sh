#!/usr/bin/env bash
# System packages the test suite needs beyond Python's: PostgreSQL, for the
# conversation store's PostgreSQL tests (the suite starts its own cluster on
# loopback). Installed with apt-get when missing (as root, or through sudo).
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

if have_postgres; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "The tests need PostgreSQL's server binaries (initdb, pg_ctl); install them." >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "==> installing PostgreSQL (for the store's PostgreSQL tests)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
# The Debian package starts its own cluster; the tests run their own instead.
$sudo service postgresql stop >/dev/null 2>&1 || true
