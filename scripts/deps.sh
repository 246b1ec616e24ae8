#!/usr/bin/env bash
# Installs, idempotently, every Debian package the build, the run and the
# tests need, then the pages' npm packages (package-lock.json, `npm ci`).
# Called by `make deps` (and so by `make run`, `make test` and .ci/run).
# Only what is missing is installed; with everything present it prints one
# line per step.
set -euo pipefail

PKGS=(
  build-essential pkg-config
  apache2 apache2-dev libapr1-dev libaprutil1-dev
  libsqlite3-dev sqlite3 libpq-dev postgresql libjansson-dev libsodium-dev libzstd-dev libcurl4-openssl-dev libssl-dev openssl
  libpwquality-dev cracklib-runtime libcrypt-dev
  libcmocka-dev
  python3 python3-pytest python3-requests python3-aiosmtpd python3-psycopg2
  wrk curl lintian
  prometheus
  memcached  # the rate-limit store tests start their own; the service is not used
  clang clang-tidy clang-format cppcheck libclang-rt-14-dev
  nodejs chromium fonts-dejavu-core
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
else
  echo "deps: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian's nodejs ships npm separately; some builds of nodejs bring it.
  if ! command -v npm >/dev/null; then
    $SUDO apt-get install -y -qq --no-install-recommends npm
  fi
fi

# The pages' packages (docs/ui.md): exactly the lock file's versions,
# installed again only when the lock file changed since the last install.
root=$(cd "$(dirname "$0")/.." && pwd)
stamp="$root/node_modules/.deps-lock.sha256"
want=$(sha256sum "$root/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$root/node_modules/.bin/esbuild" ]; then
  echo "deps: npm packages present"
else
  echo "deps: npm ci"
  (cd "$root" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi

# The providers' own SDKs the payment tests use as independent clients
# (tests/sdk/package-lock.json), likewise.
stamp="$root/tests/sdk/node_modules/.deps-lock.sha256"
want=$(sha256sum "$root/tests/sdk/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "deps: provider SDKs present"
else
  echo "deps: npm ci (provider SDKs)"
  (cd "$root/tests/sdk" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
