#!/usr/bin/env bash
# `make bench`: a benchmark, not a test. Starts the server on a fresh VAR
# (event MPM, the generated configuration of `make run`), then runs
# `wrk -t2 -c64 -d$DURATION` against each endpoint and against a static
# file holding exactly the bytes of the /api/packages answer, served by the
# same Apache, and prints req/s, p50/p99 and the packages/static ratio.
#
# Environment: DURATION (default 10s), CONNECTIONS (64), THREADS (2),
# PORT (default: a free port), KEEP=1 keeps the VAR for inspection.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
duration=${DURATION:-10s}
conns=${CONNECTIONS:-64}
threads=${THREADS:-2}
port=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
var=$(mktemp -d /tmp/dm-bench-XXXXXX)
base="http://127.0.0.1:$port"

mkdir -p "$var/static"
conf=$(bash "$root/scripts/gen-conf.sh" "$var" "$port" event logs/error.log warn)
cat > "$var/local.conf" <<CONF
# bench: the static twin of /api/packages, served by the same Apache
Alias /bench-static "$var/static"
<Directory "$var/static">
    Require all granted
</Directory>
CONF
"$root/build/deepminectl" --db "$var/deepmine.db" seed-demo >/dev/null
[ "$(id -u)" -eq 0 ] && chown -R "${DM_RUN_USER:-www-data}" "$var"

setsid apache2 -f "$conf" -DFOREGROUND &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] && echo "VAR kept: $var" || rm -rf "$var"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  curl -sf "$base/api/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "$base/api/packages" -o "$var/static/packages.json"
[ "$(id -u)" -eq 0 ] && chown -R "${DM_RUN_USER:-www-data}" "$var/static"
cmp -s <(curl -sf "$base/api/packages") <(curl -sf "$base/bench-static/packages.json") \
  || { echo "bench: static twin differs from /api/packages"; exit 1; }

# Returns "req/s p50 p99" for one URL.
measure() {
  local url=$1 out rps p50 p99
  wrk -t"$threads" -c"$conns" -d2s "$url" >/dev/null 2>&1 || true   # warm-up
  out=$(wrk -t"$threads" -c"$conns" -d"$duration" --latency "$url")
  if echo "$out" | grep -q 'Non-2xx'; then
    echo "bench: non-2xx answers from $url" >&2
    echo "$out" >&2
    exit 1
  fi
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  echo "$rps $p50 $p99"
}

echo "DeepMine bench: wrk -t$threads -c$conns -d$duration, $(nproc) cores, $(apache2 -v | head -1 | sed 's/Server version: //')"
printf '%-34s %12s %10s %10s\n' endpoint req/s p50 p99
declare -A rps
for ep in /api/health /api/packages /bench-static/packages.json; do
  read -r r p50 p99 < <(measure "$base$ep")
  rps[$ep]=$r
  printf '%-34s %12s %10s %10s\n' "$ep" "$r" "$p50" "$p99"
done
ratio=$(awk -v a="${rps[/api/packages]}" -v b="${rps[/bench-static/packages.json]}" \
  'BEGIN { printf "%.2f", a / b }')
echo "ratio /api/packages : static file = $ratio (target >= 1.00)"
