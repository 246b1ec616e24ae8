#!/usr/bin/env bash
# The PostgreSQL part of `make bench` (issue 17): `BENCH_ONLY=postgres make
# bench` runs only this, `PG=1 make bench` runs it after the SQLite bench.
# Wrap it, as every benchmark here, in `flock /work/bench.lock …`.
#
# One population, both engines, in its own temporary directory:
#  1. dm-benchgen makes a SQLite deployment: MEMBERS members (default
#     1000000; CHAIN of them, default 10000, one deep chain under a member of
#     the middle), ACCRUAL active contracts (default MEMBERS), and 3 x WEBHOOKS
#     pending sandbox orders of the chain's tip (a 10-level upline);
#  2. a throwaway PostgreSQL cluster (initdb + pg_ctl, Unix socket only, in
#     the temporary directory; as `nobody` when run as root) and
#     `deepminectl migrate-to-postgres` of that file, timed;
#  3. the same measurements on the SQLite node, then on one PostgreSQL node:
#     GET /api/me, GET /api/referrals/network of the root (the whole
#     population below it) and of the middle member, WEBHOOK_SECONDS of
#     paid-order webhooks (each event a different order), and
#     `deepminectl jobs run accrual` of one hour of ACCRUAL contracts;
#  4. two PostgreSQL nodes (one secret key, one sandbox secret), every
#     paid event delivered to BOTH at once: a contention and correctness
#     figure (two nodes on these same cores, not a scaling claim): orders
#     paid, contracts and commissions per order, ledger verify.
# PostgreSQL runs with synchronous_commit=off (PG_SYNC_COMMIT=on for the
# server's default), the nearest to the SQLite deployment's WAL with
# synchronous=NORMAL (a crash may lose the last commits, never corrupt; see
# docs/scaling.md, "Durability and the writers' lock");
# shared_buffers PG_SHARED_BUFFERS (default 1GB).
# PG_SETTINGS: more server settings for the cluster ("-c name=value …",
# e.g. "-c shared_preload_libraries=pg_stat_statements" to profile).
# Environment as bench.sh: DURATION (10s), CONNECTIONS (64), THREADS (2),
# KEEP=1; DM_PG_BIN (default /usr/lib/postgresql/15/bin).
# PG_ONLY=accrual: only the accrual, on PostgreSQL, ACCRUAL_RUNS times
# (default 3; each run credits an earlier hour of the same population) after
# one warm-up hour — the seconds of each run and their median, then ledger
# verify; PG_ACCRUAL_CTLS="path/deepminectl other/deepminectl" alternates
# builds on the one population (before/after in one sitting).
# PG_VAR=DIR (PG_ONLY=accrual only): keep the population in DIR and reuse
# it. The first run makes it there as usual (generation, cluster, move) and
# leaves it (cluster stopped); a later run with the same DIR finds
# DIR/population.env, only starts the cluster and skips steps 1-2 (and the
# warm-up hour: the rows were met once already). Each run credits hours
# before the earliest one already credited (kept in DIR/accrual.hour), so
# no hour is credited twice; the contracts were sold one day before the
# population was made (ACCRUAL_DAYS, default 1), so a population holds
# 24 x ACCRUAL_DAYS - 1 hours of runs. DIR is never removed: rm -rf it.
set -euo pipefail
trap 'echo "bench_pg: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
set -E
root=$(cd "$(dirname "$0")/.." && pwd)
members=${MEMBERS:-1000000}
chain=${CHAIN:-10000}
accrual=${ACCRUAL:-$members}
webhooks=${WEBHOOKS:-20000}
wh_secs=${WEBHOOK_SECONDS:-10}
duration=${DURATION:-10s}
conns=${CONNECTIONS:-64}
threads=${THREADS:-2}
pg_bin=${DM_PG_BIN:-/usr/lib/postgresql/15/bin}
run_user=${DM_RUN_USER:-www-data}
ctl="$root/build/deepminectl"
gen="$root/build/dm-benchgen"
[ "$chain" -lt "$members" ] || chain=$((members / 10))

reuse=0
if [ -n "${PG_VAR:-}" ]; then
  [ "${PG_ONLY:-}" = accrual ] || { echo "bench_pg: PG_VAR needs PG_ONLY=accrual" >&2; exit 2; }
  var=$PG_VAR
  [ -f "$var/population.env" ] && reuse=1
  mkdir -p "$var"
else
  var=$(mktemp -d /tmp/dm-benchpg-XXXXXX)
fi
chmod 755 "$var"
pgdir="$var/pg"
as_pg=()
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill -WINCH "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  [ -d "$pgdir/data" ] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pgdir/data" -m fast -w stop \
    >/dev/null 2>&1 || true
  if [ -n "${PG_VAR:-}" ]; then
    :
  elif [ "${KEEP:-0}" = 1 ]; then echo "VAR kept: $var"; else rm -rf "$var"; fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
secs_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- 1. the SQLite deployment ----
# node NAME PORT [DeepMineDatabase]: a server directory (gen-conf.sh) with the
# bench's limits; every node shares the SQLite node's secret key and sandbox
# webhook secret (as every node of a deployment must).
node() {
  local dir="$var/$1" port=$2 db=${3:-}
  mkdir -p "$dir"
  bash "$root/scripts/gen-conf.sh" "$dir" "$port" event logs/error.log warn > "$dir/conf.path"
  if [ "$1" != sqlite ]; then
    cat "$var/sqlite/secret.key" > "$dir/secret.key"
    cat "$var/sqlite/sandbox-webhook.secret" > "$dir/sandbox-webhook.secret"
  fi
  cat > "$dir/local.conf" <<CONF
DeepMineRateLimit api 1000000/1s member
DeepMineRateLimit login 1000000/1s ip
DeepMineRateLimit webhook 1000000/1s ip
DeepMinePasswordHash 1 8
DeepMineCron off
${db:+DeepMineDatabase "$db"}
${BENCH_CONF:-}
CONF
  [ "$(id -u)" -eq 0 ] && chown -R "$run_user" "$dir"
  true
}
start_node() { # name port -> pid in pids, waits for health
  local dir="$var/$1" i
  setsid apache2 -f "$(cat "$dir/conf.path")" -DFOREGROUND > "$dir/apache.out" 2>&1 &
  pids+=($!)
  for i in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$2/api/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench_pg: node $1 did not start:"; cat "$dir/logs/error.log"; exit 1
}
stop_nodes() {
  local p
  for p in "${pids[@]}"; do kill -WINCH "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

sq_port=$(free_port)
sdb="$var/sqlite/deepmine.db"
pg_url="postgresql://dm@/deepmine?host=$pgdir"
psql_() { "$pg_bin/psql" -h "$pgdir" -U dm -X -q -t -A "$@"; }
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u nobody --); fi
pg_start() {
  (cd "$pgdir" && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w -o \
    "-c listen_addresses='' -c unix_socket_directories=$pgdir -c synchronous_commit=${PG_SYNC_COMMIT:-off} \
     -c shared_buffers=${PG_SHARED_BUFFERS:-1GB} -c max_connections=400 ${PG_SETTINGS:-}" start >/dev/null)
}
if [ "$reuse" = 1 ]; then
  # shellcheck disable=SC1091
  . "$var/population.env"
  pg_start
  echo "DeepMine PostgreSQL bench: the population kept in $var ($members members, $accrual contracts),"
  echo "  $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start;" \
    "PostgreSQL synchronous_commit=${PG_SYNC_COMMIT:-off}"
else
node sqlite "$sq_port"
"$ctl" --db "$sdb" seed-demo >/dev/null
"$ctl" --db "$sdb" capacity ensure --ghs 1000000000000 >/dev/null
t0=$(date +%s.%N)
random=$((members - chain))
mid=$((random / 2))
"$gen" --db "$sdb" members --count "$random" --shape random --seed 1 >/dev/null
"$gen" --db "$sdb" members --count "$chain" --shape chain --under "$mid" --seed 2 >/dev/null
[ "$accrual" -gt 0 ] && "$gen" --db "$sdb" contracts --count "$accrual" \
  --started $(( $(date +%s) - 86400 * ${ACCRUAL_DAYS:-1} )) >/dev/null
tip=$(sqlite3 "$sdb" "SELECT MAX(id) FROM users")
price=$(sqlite3 "$sdb" "SELECT price_micros FROM packages WHERE id = 1")
now=$(date +%s)
sqlite3 "$sdb" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3 * $webhooks)
  INSERT INTO orders (user_id, package_id, amount_micros, currency, status, gateway, provider_ref,
                      created_at, updated_at)
  SELECT $tip, 1, $price, 'USD', 'pending', 'sandbox', 'cs_benchpg_' || i, $now, $now FROM n;"
first_order=$(sqlite3 "$sdb" "SELECT MIN(id) FROM orders WHERE provider_ref LIKE 'cs_benchpg_%'")
gen_secs=$(secs_since "$t0")
[ "$(id -u)" -eq 0 ] && chown "$run_user" "$sdb"*

# ---- 2. the PostgreSQL cluster and the move ----
mkdir -p "$pgdir"
chmod 1777 "$pgdir"
[ "$(id -u)" -eq 0 ] && chown nobody:nogroup "$pgdir"
(cd "$pgdir" && "${as_pg[@]}" "$pg_bin/initdb" -D "$pgdir/data" -U dm --auth=trust -E UTF8 \
  --locale=C.UTF-8 -N >/dev/null)
pg_start
psql_ -d postgres -c "CREATE DATABASE deepmine"
t0=$(date +%s.%N)
"$ctl" migrate-to-postgres --from "$sdb" --to "$pg_url" > "$var/migrate.out" 2>&1 ||
  { cat "$var/migrate.out"; echo "bench_pg: migrate-to-postgres failed"; exit 1; }
mig_secs=$(secs_since "$t0")
# every table's "name  rows -> rows" line of its report, summed
rows=$(awk '$3 == "->" { n += $2 } END { print n + 0 }' "$var/migrate.out")
psql_ -d deepmine -c "VACUUM ANALYZE" 2>/dev/null
# and write out what the copy and the vacuum dirtied, so the measurements
# below do not share the disk with a checkpoint of gigabytes
psql_ -d deepmine -c "CHECKPOINT" 2>/dev/null

echo "DeepMine PostgreSQL bench: $members members ($chain-deep chain under member $mid, tip $tip),"
echo "  $accrual contracts, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
echo "  population generated in ${gen_secs}s (SQLite); PostgreSQL synchronous_commit=${PG_SYNC_COMMIT:-off}"
echo "migrate-to-postgres: ${mig_secs}s for $rows rows ($(tail -1 "$var/migrate.out"))"
if [ -n "${PG_VAR:-}" ]; then
  printf 'members=%s\nchain=%s\naccrual=%s\n' "$members" "$chain" "$accrual" > "$var/population.env"
fi
fi

# ---- 3. the same measurements on each engine ----
measure() { # url [wrk options…] -> "req/s p50 p99"
  local url=$1 out
  shift
  wrk -t"$threads" -c"$conns" -d2s "$@" "$url" >/dev/null 2>&1 || true
  out=$(wrk -t"$threads" -c"$conns" -d"$duration" --latency "$@" "$url")
  if echo "$out" | grep -q 'Non-2xx'; then
    echo "bench_pg: non-2xx answers from $url" >&2; echo "$out" >&2; exit 1
  fi
  echo "$(echo "$out" | awk '/^Requests\/sec:/ {print $2}') $(echo "$out" |
    awk '$1 == "50%" {print $2}') $(echo "$out" | awk '$1 == "99%" {print $2}')"
}
login() { # base email -> access token
  curl -sf "$1/api/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$2\",\"password\":\"generated-member-password\",\"return_tokens\":true}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"]["access_token"])'
}
email_of() { sqlite3 "$sdb" "SELECT email FROM users WHERE id = $1"; }
webhook_run() { # set db-query-fn base… -> "paid/s paid contracts commissions p50 p99"
  local set=$1 q=$2 w paid contracts comms events lo hi
  shift 2
  lo=$((first_order + set * webhooks)); hi=$((lo + webhooks - 1))
  local outs=()
  sign_events "$set"
  for b in "$@"; do
    BENCH_EVENTS="$var/events.$set.tsv" BENCH_THREADS=2 wrk -t2 -c16 -d"${wh_secs}s" --latency \
      -s "$root/scripts/bench_webhooks.lua" "$b" > "$var/wrk-wh.$set.${#outs[@]}.txt" &
    outs+=($!)
  done
  for w in "${outs[@]}"; do wait "$w"; done
  if grep -q 'Non-2xx' "$var"/wrk-wh."$set".*.txt; then
    echo "bench_pg: non-2xx webhook answers:" >&2; cat "$var"/wrk-wh."$set".*.txt >&2; exit 1
  fi
  # requests wrk left in flight finish after it stops: read the counts (one
  # statement, one snapshot) until they stand still
  local counts="" before=x
  while [ "$counts" != "$before" ]; do
    before=$counts
    sleep 1
    counts=$($q "SELECT (SELECT COUNT(*) FROM orders WHERE id BETWEEN $lo AND $hi AND status = 'paid'),
      (SELECT COUNT(*) FROM contracts WHERE order_id BETWEEN $lo AND $hi),
      (SELECT COUNT(*) FROM commissions WHERE order_id BETWEEN $lo AND $hi),
      (SELECT COUNT(*) FROM payment_events WHERE event_id LIKE 'evt_benchpg_%'
         AND CAST(order_ref AS BIGINT) BETWEEN $lo AND $hi)" | tr '|' ' ')
  done
  read -r paid contracts comms events <<< "$counts"
  echo "$(awk -v n="$paid" -v s="$wh_secs" 'BEGIN { printf "%.0f", n / s }') $paid $contracts $comms $events" \
    "$(awk '$1 == "50%" {print $2}' "$var/wrk-wh.$set.0.txt")" \
    "$(awk '$1 == "99%" {print $2}' "$var/wrk-wh.$set.0.txt")"
}
sq() { sqlite3 "$sdb" "$1"; }
pq() { psql_ -d deepmine -c "$1"; }
accrual_run() { # db -> seconds (the DM00950 line of the accrual job)
  local hour line
  hour=$(( $(date +%s) / 3600 * 3600 - 3600 ))
  "$ctl" --db "$1" jobs run accrual --period "$hour" > "$var/accrual.out" 2>&1 ||
    { cat "$var/accrual.out" >&2; exit 1; }
  line=$(grep -o 'DM00950: .*' "$var/accrual.out" || true)
  echo "$line" | sed -n 's/.* in \([0-9.]*\) s .*/\1/p'
}
# events.N.tsv: the paid events of the Nth third of the orders, signed now
# (the gateway's signature is only good for a few minutes)
sign_events() { # set
  local set=$1
  python3 - "$var/sqlite/sandbox-webhook.secret" "$((first_order + set * webhooks))" "$webhooks" \
    "$price" "$((set * webhooks))" > "$var/events.$set.tsv" <<'PY'
import hashlib, hmac, json, sys, time
secret = open(sys.argv[1], "rb").read().strip()
first, n, price, ref0 = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t = int(time.time())
for k in range(n):
    oid = first + k
    body = json.dumps({"id": "evt_benchpg_%d" % oid, "type": "checkout.paid", "created": t,
                       "livemode": False,
                       "data": {"object": {"id": "cs_benchpg_%d" % (ref0 + k + 1),
                                           "order_id": str(oid), "amount_micros": price,
                                           "currency": "USD"}}}, separators=(",", ":"))
    sig = hmac.new(secret, ("%d.%s" % (t, body)).encode(), hashlib.sha256).hexdigest()
    print("t=%d,v1=%s\t%s" % (t, sig, body))
PY
}
declare -A fig
check_orders() { # rate paid contracts commissions events: one of each per paid order
  [ "$2" -gt 0 ] && [ "$2" = "$3" ] && [ "$4" = $(( 10 * $2 )) ] && [ "$5" = "$2" ] ||
    { echo "bench_pg: $2 orders paid, $3 contracts, $4 commissions, $5 events"; exit 1; }
}
engine_figures() { # engine base db query-fn set
  local e=$1 base=$2 db=$3 q=$4 set=$5 tok_root tok_mid
  tok_root=$(login "$base" "$(email_of 1)")
  tok_mid=$(login "$base" "$(email_of "$mid")")
  fig[$e.me]=$(measure "$base/api/me" -H "Authorization: Bearer $tok_mid")
  fig[$e.root]=$(measure "$base/api/referrals/network" -H "Authorization: Bearer $tok_root")
  fig[$e.mid]=$(measure "$base/api/referrals/network" -H "Authorization: Bearer $tok_mid")
  fig[$e.wh]=$(webhook_run "$set" "$q" "$base")
  if [ "$accrual" -gt 0 ]; then
    fig[$e.accrual]=$(accrual_run "$db")
    if [ "$(id -u)" -eq 0 ] && [ "$e" = sqlite ]; then chown "$run_user" "$sdb"*; fi
  fi
}

if [ "${PG_ONLY:-}" = accrual ]; then
  # one warm-up hour first (the first pass over freshly copied rows sets
  # their hint bits: much slower, the same for any build), then the runs;
  # PG_ACCRUAL_CTLS="ctl ctl2": builds to compare, alternated on this one
  # population (each run credits another earlier hour of the same contracts)
  ctls=(${PG_ACCRUAL_CTLS:-$ctl})
  # hour: the last one credited; each run takes the one before
  if [ -f "$var/accrual.hour" ]; then
    hour=$(cat "$var/accrual.hour")
  else
    hour=$(( $(date +%s) / 3600 * 3600 - 3600 ))
    "${ctls[0]}" --db "$pg_url" jobs run accrual --period "$hour" \
      > "$var/accrual.out" 2>&1 || { cat "$var/accrual.out" >&2; exit 1; }
    [ -n "${PG_VAR:-}" ] && echo "$hour" > "$var/accrual.hour"
    echo "warm-up hour: $(grep -o 'DM00950: .*' "$var/accrual.out" | sed -n 's/.* in \([0-9.]*\) s .*/\1/p') s"
  fi
  declare -A secs
  for k in $(seq 1 "${ACCRUAL_RUNS:-3}"); do
    for c in "${!ctls[@]}"; do
      hour=$((hour - 3600))
      [ -n "${PG_VAR:-}" ] && echo "$hour" > "$var/accrual.hour"
      "${ctls[$c]}" --db "$pg_url" jobs run accrual --period "$hour" \
        > "$var/accrual.out" 2>&1 || { cat "$var/accrual.out" >&2; exit 1; }
      t=$(grep -o 'DM00950: .*' "$var/accrual.out" | sed -n 's/.* in \([0-9.]*\) s .*/\1/p')
      secs[$c]="${secs[$c]:-} $t"
      echo "accrual of $accrual contracts on PostgreSQL, ${ctls[$c]}, run $k: $t s (load $(cut -d' ' -f1-3 /proc/loadavg))"
    done
  done
  for c in "${!secs[@]}"; do
    echo "median ${ctls[$c]}: $(printf '%s\n' ${secs[$c]} | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }') s"
  done
  echo "ledger verify: PostgreSQL $("$ctl" --db "$pg_url" ledger verify >/dev/null 2>&1 && echo ok || echo FAILED)"
  exit 0
fi
start_node sqlite "$sq_port"
engine_figures sqlite "http://127.0.0.1:$sq_port" "$sdb" sq 0
stop_nodes
pa_port=$(free_port)
pb_port=$(free_port)
node pga "$pa_port" "$pg_url"
node pgb "$pb_port" "$pg_url"
start_node pga "$pa_port"
engine_figures pg "http://127.0.0.1:$pa_port" "$pg_url" pq 1

# ---- 4. two nodes, every event to both ----
start_node pgb "$pb_port"
two=$(webhook_run 2 pq "http://127.0.0.1:$pa_port" "http://127.0.0.1:$pb_port")
stop_nodes

printf '\n%-40s %26s %26s\n' "one node" "SQLite" "PostgreSQL"
row() { # label key -> req/s p50 p99 of both
  local s p
  read -r -a s <<< "${fig[sqlite.$2]}"; read -r -a p <<< "${fig[pg.$2]}"
  printf '%-40s %10s %7s %7s %10s %7s %7s\n' "$1" "${s[0]}" "${s[1]}" "${s[2]}" "${p[0]}" "${p[1]}" "${p[2]}"
}
printf '%-40s %10s %7s %7s %10s %7s %7s\n' "" req/s p50 p99 req/s p50 p99
row "GET /api/me" me
row "GET /api/referrals/network (root)" root
row "GET /api/referrals/network (middle)" mid
for e in sqlite pg; do
  read -r -a w <<< "${fig[$e.wh]}"
  printf '%-40s %s paid orders/s (%s paid, %s contracts, %s commissions; p50 %s, p99 %s)\n' \
    "webhooks, 10-level upline ($e)" "${w[0]}" "${w[1]}" "${w[2]}" "${w[3]}" "${w[5]}" "${w[6]}"
  check_orders "${w[@]}"
  [ "${w[1]}" -lt "$webhooks" ] || echo "  (all $webhooks events were used: raise WEBHOOKS)"
done
if [ "$accrual" -gt 0 ]; then
  echo "one hour of accrual of $accrual contracts: SQLite ${fig[sqlite.accrual]:-?} s," \
    "PostgreSQL ${fig[pg.accrual]:-?} s (target: under 60 s)"
fi
read -r -a w <<< "$two"
echo "two PostgreSQL nodes, each of $webhooks paid events delivered to both at once (wrk -t2 -c16 each):"
echo "  ${w[0]} paid orders/s; ${w[1]} orders paid, ${w[2]} contracts, ${w[3]} commissions" \
  "($(awk -v c="${w[3]}" -v n="${w[1]}" 'BEGIN { printf "%.1f", n ? c / n : 0 }') per order)," \
  "payment events recorded: ${w[4]}; node A p50 ${w[5]}, p99 ${w[6]}"
check_orders "${w[@]}"
echo "ledger verify: SQLite $("$ctl" --db "$sdb" ledger verify >/dev/null 2>&1 && echo ok || echo FAILED)," \
  "PostgreSQL $("$ctl" --db "$pg_url" ledger verify >/dev/null 2>&1 && echo ok || echo FAILED)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
