#!/usr/bin/env bash
# Installs, idempotently, every Debian package the build, the run and the
# tests need. Called by `make deps` (and so by `make run`, `make test` and
# .ci/run). Only packages that are missing are installed.
set -euo pipefail

PKGS=(
  build-essential pkg-config
  apache2 apache2-dev libapr1-dev libaprutil1-dev
  libsqlite3-dev sqlite3 libjansson-dev libsodium-dev libcurl4-openssl-dev
  libpwquality-dev cracklib-runtime libcrypt-dev
  libcmocka-dev
  python3 python3-pytest python3-requests python3-aiosmtpd
  wrk curl
  clang clang-tidy clang-format cppcheck libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
