#!/usr/bin/env bash
# System packages the test suite needs beyond Python's: PostgreSQL, for the
# conversation store's PostgreSQL tests (the suite starts its own cluster on
# loopback), and Debian's chromium, for the chat page's browser tests (Playwright
# drives /usr/bin/chromium; it never downloads a browser of its own). Installed
# with apt-get when missing (as root, or through sudo).
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

missing=()
have_postgres || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "The tests need ${missing[*]} (PostgreSQL's initdb and pg_ctl; /usr/bin/chromium); install them." >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
echo "==> installing ${missing[*]} (the store's PostgreSQL tests, the chat page's browser tests)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  # The Debian package starts its own cluster; the tests run their own instead.
  $sudo service postgresql stop >/dev/null 2>&1 || true
fi
