#!/usr/bin/env bash
# `make bench`: a benchmark, not a test. Starts the server on a fresh VAR
# (event MPM, the generated configuration of `make run`), then runs
# `wrk -t2 -c$C -d$DURATION` for each C of CONNECTIONS (64 and 256) against
# each endpoint, against a static file holding exactly the bytes of the
# /api/packages answer served by the same Apache (the old twin), and against
# the tuned static twin: a second, minimal Apache (event MPM, the module not
# loaded, no access log, unlimited keep-alive, 2 x 64 threads) serving the
# bytes of /api/health and /api/packages from files. It prints req/s,
# p50/p99, wrk's socket errors (connect+read+write+timeout) and non-2xx
# answers per run, each endpoint's ratio to the tuned twin with its target,
# and the server's memory: VmHWM summed over the Apache process tree
# (parent, children, cron daemon), sampled every second and read once more
# before the server stops.
#
# Environment: DURATION (default 10s), CONNECTIONS ("64 256"), THREADS (2),
# ROUNDS (default 3: the endpoints with a target are measured in 3 rounds and
# their medians printed; the twin's /api/health is measured again beside the
# member reads, for their ratios),
# WRK_TIMEOUT (wrk --timeout, default 10s: a slower answer counts as a
# socket error "timeout"), TWIN_PORT (default: a free port),
# PORT (default: a free port), KEEP=1 keeps the VAR for inspection,
# MEMBERS (default 1000000; 0 skips the member benchmarks): the population
# build/dm-benchgen generates, of which CHAIN (default 10000) form one deep
# chain,
# ACCRUAL (default 1000000; 0 skips it): active contracts (dm-benchgen
# contracts) whose hour of yield `deepminectl jobs run accrual` credits
# while wrk measures /api/packages (ROUNDS runs, each another hour; the
# median printed), once the cron daemon has sent the e-mails due (at most
# ACCRUAL_WAIT seconds, default 600),
# BENCH_ONLY=accrual: only that part (ACCRUAL=10000 for a quick look),
# HISTORY=H: before the accrual, H earlier yield credits for each wallet
# (the steady state of a wallet's ledger; see accrual_history below),
# MAIL (default 10000; 0 skips it): messages queued and drained by the cron
# daemon through mailer-smtp to a local SMTP server (scripts/bench_mail.py,
# its own server), BENCH_ONLY=mail: only that part,
# JANITOR (default 10000; 0 skips it), STRIPE_WEBHOOKS (20000): Stripe
# webhooks/s and p99, and the payment janitor settling JANITOR stale orders
# against the Stripe stand-in (scripts/bench_payments.py, its own server),
# BENCH_ONLY=payments: only that part,
# STATS: GET /api/admin/stats?days=90 (staff statistics, issue 14) is
# measured on the member population (MEMBERS); BENCH_ONLY=stats: only that,
# on MEMBERS members whose sign-ups are spread over the last 90 days (with
# STATS_CONTRACTS contracts, default 100000), target: server time under
# 200 ms,
# METRICS (default 50; 0 skips it): scrapes of /api/admin/metrics (with the
# bench's DeepMineMetricsToken) on the populated database, reporting the
# server's own gathering time (deepmine_metrics_scrape_duration_seconds; target
# under 10 ms) and the round trip, BENCH_ONLY=metrics: only that part (on
# ACCRUAL contracts and their members, generated as for BENCH_ONLY=accrual),
# BENCH_ONLY=backup: `deepminectl backup create` of MEMBERS generated members
# (storage-local) while a writer commits a row every few ms
# (scripts/bench_backup_writer.py): seconds, sizes, and the longest commit
# the writer saw (target: under 50 ms),
# BENCH_ONLY=webhooks: only the paid-order webhooks (ROUNDS rounds of
# wrk -t2 -c16 for WEBHOOK_SECONDS, each on WEBHOOKS (20000) pending orders
# of the chain's tip of its own; the median round printed), on MEMBERS
# generated members (MEMBERS=100000 for a quick look), with their server
# time from the access log and `ledger verify`,
# BENCH_CONF="directives" appended to the bench's local.conf (to try tunings).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# PostgreSQL (issue 17): scripts/bench_pg.sh, with its own population and
# throwaway cluster; BENCH_ONLY=postgres runs only it, PG=1 after the rest.
if [ "${BENCH_ONLY:-}" = postgres ]; then
  exec bash "$root/scripts/bench_pg.sh"
fi
# The bench's own queries wait for the server's writers (the cron daemon's
# jobs, a group commit) instead of failing at once: the sqlite3 shell has no
# busy timeout of its own ("database is locked" ended a 1M run).
sqlite3() { command sqlite3 -cmd ".timeout 30000" "$@"; }
duration=${DURATION:-10s}
conns_list=${CONNECTIONS:-64 256}
threads=${THREADS:-2}
wrk_timeout=${WRK_TIMEOUT:-10s}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=${PORT:-$(free_port)}
twin_port=${TWIN_PORT:-$(free_port)}
var=$(mktemp -d /tmp/dm-bench-XXXXXX)
base="http://127.0.0.1:$port"

mkdir -p "$var/static"
conf=$(bash "$root/scripts/gen-conf.sh" "$var" "$port" event logs/error.log warn)
cat > "$var/local.conf" <<CONF
# bench: the static twin of /api/packages, served by the same Apache
Alias /bench-static "$var/static"
<Directory "$var/static">
    Require all granted
    EnableMMAP Off
</Directory>
# bench: limits raised so the limiter never answers 429 here, and cheap
# password hashing (registration is measured for the tree work, not argon2)
DeepMineRateLimit api 1000000/1s member
DeepMineRateLimit login 1000000/1s ip
DeepMineRateLimit register 1000000/1s ip
DeepMineRateLimit webhook 1000000/1s ip
DeepMinePasswordHash 1 8
# bench: the owner whose session measures /api/admin/stats signs in without
# enrolling a second factor
DeepMineStaff2FA optional
# bench: the scrape token of the metrics part
DeepMineMetricsToken bench-metrics-token-0123456789
# bench: the cron daemon runs (its memory is part of the server's), but the
# accrual is timed by hand (deepminectl jobs run): the daemon's hourly jobs
# wait 50 minutes past the hour (its cursor starts at the server's start, so
# it never reaches the hour the bench times before the bench ends), and the
# payment janitor leaves the bench's pending orders alone for a day
DeepMineCron on
DeepMineAccrualDelay 3000
DeepMinePaymentSettle 86400
${BENCH_CONF:-}
CONF
"$root/build/deepminectl" --db "$var/deepmine.db" seed-demo >/dev/null
[ "$(id -u)" -eq 0 ] && chown -R "${DM_RUN_USER:-www-data}" "$var"

# SERVER_ENV: variables for the measured server only, not wrk nor the twin;
# by default the environment docs/configuration.md advises (glibc without
# its per-thread caches); SERVER_ENV= measures without it.
env ${SERVER_ENV-GLIBC_TUNABLES=glibc.malloc.tcache_count=0} setsid apache2 -f "$conf" -DFOREGROUND &
pid=$!
twin_pid=
sampler_pid=
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -n "$twin_pid" ]; then
    kill -TERM "$twin_pid" 2>/dev/null || true
    wait "$twin_pid" 2>/dev/null || true
  fi
  [ "${KEEP:-0}" = 1 ] && echo "VAR kept: $var" || rm -rf "$var"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  curl -sf "$base/api/health" >/dev/null 2>&1 && break
  sleep 0.1
done

# ---- memory: VmHWM (peak RSS) of every process of the server's tree ----
# Sampled every second into VAR/hwm.log ("pid threads VmHWM-kB phase"; children
# may exit and be replaced), read once more before the server stops.
tree_pids() { # pid -> it and its descendants
  local c
  echo "$1"
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree_pids "$c"; done
}
phase() { echo "$*" | tr ' ' '_' > "$var/phase"; }   # what runs now, for the memory report
phase start
hwm_sample() {
  local q ph
  ph=$(cat "$var/phase" 2>/dev/null)
  for q in $(tree_pids "$pid"); do
    awk -v q="$q" -v ph="$ph" '/^Threads:/ { t = $2 } /^VmHWM:/ { h = $2 }
      END { if (h) print q, t, h, ph }' "/proc/$q/status" 2>/dev/null
  done >> "$var/hwm.log"
}
( while kill -0 "$pid" 2>/dev/null; do hwm_sample; sleep 1; done ) &
sampler_pid=$!
# Prints the summed peak and its parts (call before stopping the server).
memory_report() {
  hwm_sample
  kill "$sampler_pid" 2>/dev/null; sampler_pid=
  echo
  awk -v parent="$pid" '{ if ($3 > h[$1]) h[$1] = $3; if ($2 > t[$1]) t[$1] = $2 }
    END { for (q in h) { sum += h[q]; n++
            if (q == parent) par = h[q]
            else if (t[q] > 1) { kids += h[q]; nk++ } else { cron += h[q]; nc++ } }
          printf "memory: peak RSS of the whole server = %.1f MiB (VmHWM summed over %d processes; target: at most 48 MiB)\n", sum / 1024, n
          printf "  parent %.1f MiB, %d worker child(ren) %.1f MiB, cron daemon (%d) %.1f MiB\n",
            par / 1024, nk, kids / 1024, nc, cron / 1024 }' "$var/hwm.log"
  # Where each process's peak was first reached (the part running then).
  awk '{ if ($3 > h[$1]) { h[$1] = $3; ph[$1] = $4 } }
    END { printf "  peaks reached during:"; for (q in h) printf " %s %.1f MiB (%s);", q, h[q] / 1024, ph[q]; print "" }' \
    "$var/hwm.log"
}

# ---- the tuned static twin: a minimal Apache serving the same bytes ----
# No module, no access log, unlimited keep-alive, event MPM with 2 x 64
# threads, no mmap of the files: what this Apache does at best with these
# answers on this machine. Apache maps a file to send it by default
# (EnableMMAP On); a map and an unmap per request cost more than a read on
# virtual machines whose page-table changes are slow (2.4x fewer answers
# from the same twin on the machines of 2026-12), and for files this small a
# read and one writev is what a tuned static server does.
start_twin() {
tw="$var/twin"
mkdir -p "$tw/www/api"
curl -sf "$base/api/health" -o "$tw/www/api/health"
curl -sf "$base/api/packages" -o "$tw/www/api/packages"
twin_user="# not started as root"
[ "$(id -u)" -eq 0 ] && twin_user="User ${DM_RUN_USER:-www-data}
Group $(id -gn "${DM_RUN_USER:-www-data}")"
apache_modules=$(apxs -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)
cat > "$tw/httpd.conf" <<TWIN
ServerRoot "$tw"
ServerName 127.0.0.1
Listen 127.0.0.1:$twin_port
PidFile "$tw/httpd.pid"
DefaultRuntimeDir "$tw"
LoadModule mpm_event_module $apache_modules/mod_mpm_event.so
LoadModule authz_core_module $apache_modules/mod_authz_core.so
LoadModule mime_module $apache_modules/mod_mime.so
$twin_user
ErrorLog "$tw/error.log"
LogLevel warn
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
StartServers 2
ServerLimit 2
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 128
MinSpareThreads 64
MaxSpareThreads 128
TypesConfig /dev/null
EnableMMAP Off
EnableSendfile Off
DocumentRoot "$tw/www"
<Directory />
    AllowOverride None
    Require all granted
</Directory>
<Directory "$tw/www/api">
    ForceType "application/json; charset=utf-8"
</Directory>
TWIN
[ "$(id -u)" -eq 0 ] && chown -R "${DM_RUN_USER:-www-data}" "$tw"
setsid apache2 -f "$tw/httpd.conf" -DFOREGROUND &
twin_pid=$!
twin="http://127.0.0.1:$twin_port"
for _ in $(seq 1 100); do
  curl -sf "$twin/api/health" >/dev/null 2>&1 && break
  sleep 0.1
done
cmp -s "$tw/www/api/packages" <(curl -sf "$twin/api/packages") \
  || { echo "bench: the tuned twin's /api/packages differs"; exit 1; }
}
curl -sf "$base/api/packages" -o "$var/static/packages.json"
[ "$(id -u)" -eq 0 ] && chown -R "${DM_RUN_USER:-www-data}" "$var/static"
cmp -s <(curl -sf "$base/api/packages") <(curl -sf "$base/bench-static/packages.json") \
  || { echo "bench: static twin differs from /api/packages"; exit 1; }

# Returns "req/s p50 p99 socket-errors non-2xx" for one URL at -c$conns
# (socket errors: wrk's connect + read + write + timeout).
conns=${conns_list%% *}
measure() { # url [wrk options…]
  local url=$1 out rps p50 p99 errs non2xx
  shift
  wrk -t"$threads" -c"$conns" -d2s "$@" "$url" >/dev/null 2>&1 || true   # warm-up
  out=$(wrk -t"$threads" -c"$conns" -d"$duration" --timeout "$wrk_timeout" --latency "$@" "$url")
  rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  errs=$(echo "$out" | awk -F'[ ,]+' '/Socket errors:/ { print $4 + $6 + $8 + $10; f = 1 } END { if (!f) print 0 }')
  non2xx=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ { print $NF; f = 1 } END { if (!f) print 0 }')
  echo "$rps $p50 $p99 $errs $non2xx"
}
# Endpoints are queued (`row`), then measured by `run_rows` in ROUNDS
# rounds (default 3): each round measures every queued endpoint once at each
# concurrency, in queue order, so a slow minute of the machine lands on one
# sample of each endpoint rather than on all of one. One line per endpoint
# and concurrency: the median req/s of its rounds, with the p50/p99 of that
# median run, and the socket errors and non-2xx summed over all rounds.
# req/s kept in rps[label@connections] for the ratios, dropped connections
# in $dropped. `row1` queues an endpoint with no target measured once.
rounds=${ROUNDS:-3}
declare -A rps samples bad
declare -a q_label q_args q_rounds
dropped=
hdr() { printf '%-44s %5s %10s %9s %9s %7s %7s\n' "$1" conns req/s p50 p99 sockerr non2xx; }
row() { # label url [wrk options…]
  local IFS=$'\x1f'
  q_label+=("$1"); shift
  q_args+=("$*"); q_rounds+=("$rounds")
}
row1() { row "$@"; q_rounds[${#q_rounds[@]} - 1]=1; }
run_rows() {
  local r i args n line r_ p50 p99 errs non2xx label
  for ((r = 1; r <= rounds; r++)); do
    for i in "${!q_label[@]}"; do
      [ "$r" -le "${q_rounds[$i]}" ] || continue
      IFS=$'\x1f' read -r -a args <<< "${q_args[$i]}"
      for conns in $conns_list; do
        label=${q_label[$i]}
        phase "$label -c$conns"
        read -r r_ p50 p99 errs non2xx < <(measure "${args[@]}")
        samples[$label@$conns]="${samples[$label@$conns]:-}$r_ $p50 $p99"$'\n'
        n=${bad[$label@$conns]:-0/0}
        bad[$label@$conns]="$(( ${n%/*} + errs ))/$(( ${n#*/} + non2xx ))"
      done
    done
  done
  for i in "${!q_label[@]}"; do
    label=${q_label[$i]}
    for conns in $conns_list; do
      n=${q_rounds[$i]}
      line=$(printf '%s' "${samples[$label@$conns]}" | sort -n -k1,1 | sed -n "$(( (n + 1) / 2 ))p")
      read -r r_ p50 p99 <<< "$line"
      errs=${bad[$label@$conns]%/*}; non2xx=${bad[$label@$conns]#*/}
      rps[$label@$conns]=$r_
      printf '%-44s %5s %10s %9s %9s %7s %7s\n' "$label" "$conns" "$r_" "$p50" "$p99" "$errs" "$non2xx"
      [ "$errs" = 0 ] && [ "$non2xx" = 0 ] || dropped="$dropped $label@c$conns($errs/$non2xx)"
      samples[$label@$conns]=; bad[$label@$conns]=
    done
  done
  q_label=(); q_args=(); q_rounds=()
}
ratio() { # label twin-label target
  local c
  for c in $conns_list; do
    awk -v a="${rps[$1@$c]:-0}" -v b="${rps[$2@$c]:-0}" -v l="$1" -v t="$2" -v c="$c" -v g="$3" \
      'BEGIN { printf "  %-30s : %-26s -c%-4s %5.2f (target >= %s)\n", l, t, c, b ? a / b : 0, g }'
  done
}

# ---- yield accrual: one hour of ACCRUAL contracts, /api/packages meanwhile ----
accrual=${ACCRUAL:-1000000}
accrual_populate() {
  local n=$accrual have
  have=$(sqlite3 "$var/deepmine.db" "SELECT COUNT(*) FROM users")
  if [ "$have" -lt 1000 ]; then   # BENCH_ONLY=accrual or MEMBERS=0: members to own them
    "$root/build/dm-benchgen" --db "$var/deepmine.db" members \
      --count $(( n / 10 > 1000 ? n / 10 : 1000 )) --shape random --seed 3 --password-mib 8 >/dev/null
  fi
  "$root/build/dm-benchgen" --db "$var/deepmine.db" contracts --count "$n" \
    --started $(( $(date +%s) - 86400 )) >/dev/null
  [ "${HISTORY:-0}" -gt 0 ] && accrual_history "$HISTORY"
  [ "$(id -u)" -eq 0 ] && chown "${DM_RUN_USER:-www-data}" "$var"/deepmine.db*
}
# HISTORY=H: every wallet that owns an active contract is given H earlier
# yield credits of 1,000 micros each (debiting the yield account, so the
# ledger still balances), as after H hours of accrual: each wallet's range
# of transfers_credit (credit_account_id, id) then holds H entries. From
# about 300 (a 4 KiB page of that index) each wallet's next credit lands on
# a page of its own, as in production after two weeks of hourly credits;
# the bench's fresh population is a wallet's first hours. Written in one
# transaction, wallet by wallet (HISTORY=320 on 100,000 wallets: 32,000,000
# transfers, 4.7 GB, ~2 minutes): for BENCH_ONLY=accrual and a small ACCRUAL.
accrual_history() {
  local h=$1 now t0=$SECONDS wallets
  now=$(date +%s)
  wallets=$(sqlite3 "$var/deepmine.db" <<SQL | tail -1
PRAGMA cache_size=-262144;
BEGIN;
INSERT OR IGNORE INTO accounts (kind, code, currency, balance_micros, created_at)
  SELECT DISTINCT 'system', 'yield', currency, 0, $now FROM contracts WHERE status = 'active';
CREATE TEMP TABLE w AS
  SELECT DISTINCT a.id AS id, y.id AS y, a.currency AS currency FROM contracts c
  JOIN accounts a ON a.user_id = c.user_id AND a.kind = 'wallet' AND a.currency = c.currency
  JOIN accounts y ON y.code = 'yield' AND y.currency = c.currency
  WHERE c.status = 'active';
INSERT INTO transfers (idempotency_key, debit_account_id, credit_account_id, amount_micros,
                       currency, kind, reference, created_at)
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $h)
  SELECT printf('bench-history:%09d:%06d', w.id, n.i), w.y, w.id, 1000, w.currency, 'yield',
         NULL, $now - 86400
  FROM w, n ORDER BY w.id, n.i;
UPDATE accounts SET balance_micros = balance_micros + $h * 1000 WHERE id IN (SELECT id FROM w);
UPDATE accounts SET balance_micros = balance_micros -
  $h * 1000 * (SELECT COUNT(*) FROM w WHERE w.y = accounts.id)
  WHERE id IN (SELECT y FROM w);
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SELECT COUNT(*) FROM w;
SQL
)
  sync
  echo "history: $h earlier yield credits for each of $wallets wallet(s) in $((SECONDS - t0)) s"
}
# The cron daemon runs its jobs one at a time, so on a node the hourly
# accrual never runs beside that daemon's mail job. The bench times the
# accrual with deepminectl beside the bench server's daemon, which may still
# be sending the e-mails the webhook rounds queued (two a paid order, tens
# of thousands): wait until it has sent what is due (at most ACCRUAL_WAIT
# seconds, default 600), as the daemon would have before its own hourly run.
accrual_quiet() {
  local t0=$SECONDS due q="SELECT COUNT(*) FROM mail_queue WHERE status = 'sending' OR
    (status = 'queued' AND next_attempt_at <= CAST(strftime('%s', 'now') AS INTEGER))"
  due=$(sqlite3 "$var/deepmine.db" "$q")
  [ "${due:-0}" -gt 0 ] || return 0
  local first=$due
  while [ "${due:-0}" -gt 0 ] && [ $((SECONDS - t0)) -lt "${ACCRUAL_WAIT:-600}" ]; do
    sleep 2
    due=$(sqlite3 "$var/deepmine.db" "$q")
  done
  echo "  (first waited $((SECONDS - t0)) s for the cron daemon to send the $first e-mails due;" \
       "${due:-?} still due)"
}
# The machine around one accrual run, for reading a slow run: the state of
# /proc/stat's cpu line and /proc/vmstat's pages read in and refaulted, once
# before the run ("machine_at") and compared after it ("machine_since": idle
# and iowait as shares of both cores, MiB read from disk, file pages that
# were evicted and read again). The bench database is 2 GB at 1,000,000
# members: a run that must read it back from disk is a run of another
# machine, not of another build.
machine_at() {
  { head -1 /proc/stat; grep -E '^(pgpgin|workingset_refault_file) ' /proc/vmstat; } | tr '\n' ' '
}
machine_since() {
  echo "$1 $(machine_at)" | awk '{
    n = 0; for (i = 1; i <= NF; i++) if ($i == "cpu") at[++n] = i
    for (k = 1; k <= 2; k++) { t[k] = 0; for (i = at[k] + 1; i <= at[k] + 8; i++) t[k] += $i
      idle[k] = $(at[k] + 4); io[k] = $(at[k] + 5) }
    for (i = 1; i <= NF; i++) { if ($i == "pgpgin") pg[++np] = $(i + 1)
      if ($i == "workingset_refault_file") rf[++nr] = $(i + 1) }
    d = t[2] - t[1]; if (d <= 0) d = 1
    printf "machine meanwhile: %.0f%% idle, %.0f%% iowait, %.1f MiB read from disk, %d pages refaulted",
      100 * (idle[2] - idle[1]) / d, 100 * (io[2] - io[1]) / d, (pg[2] - pg[1]) / 1024, rf[2] - rf[1] }'
}
accrual_bench() {
  # ROUNDS runs, each crediting another hour that every contract ran through
  # (the hour just over, then the one before, ...), each beside its own wrk;
  # the median run is the figure. A later run writes into tables the
  # earlier ones grew (1,000,000 more transfers each).
  local n=$accrual hour out line secs rate rss r p50 p99 wrps runs=() med m0 mach
  phase accrual
  accrual_populate
  hour=$(( $(date +%s) / 3600 * 3600 - 3600 ))   # over, and every contract ran through it
  echo
  echo "yield accrual: one hour of $n active contracts (deepminectl jobs run accrual, batches of 5000), $rounds run(s):"
  accrual_quiet
  for ((r = 1; r <= rounds; r++)); do
    wrk -t1 -c16 -d600s --latency "$base/api/packages" > "$var/wrk-accrual-$r.txt" 2>&1 &
    local wrk_pid=$!
    sleep 1
    m0=$(machine_at)
    "$root/build/deepminectl" --db "$var/deepmine.db" jobs run accrual \
      --period "$(( hour - (r - 1) * 3600 ))" > "$var/accrual-$r.out" 2>&1 ||
      { cat "$var/accrual-$r.out"; kill -INT "$wrk_pid"; exit 1; }
    mach=$(machine_since "$m0")
    kill -INT "$wrk_pid"; wait "$wrk_pid" 2>/dev/null || true
    [ "$(id -u)" -eq 0 ] && chown "${DM_RUN_USER:-www-data}" "$var"/deepmine.db*
    line=$(grep -o 'DM00950: .*' "$var/accrual-$r.out" || true)
    secs=$(echo "$line" | sed -n 's/.* in \([0-9.]*\) s .*/\1/p')
    rate=$(echo "$line" | sed -n 's/.*(\([0-9]*\) contracts\/s).*/\1/p')
    rss=$(echo "$line" | sed -n 's/.*peak RSS \([0-9]*\) MB.*/\1/p')
    wrps=$(awk '/^Requests\/sec:/ {print $2}' "$var/wrk-accrual-$r.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$var/wrk-accrual-$r.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$var/wrk-accrual-$r.txt")
    runs+=("${secs:-999999} $r")
    echo "  run $r: ${secs:-?} s = ${rate:-?} contracts/s, peak RSS ${rss:-?} MB;" \
         "/api/packages meanwhile (wrk -t1 -c16) $wrps req/s, p50 $p50, p99 $p99"
    echo "         $mach"
    grep -q 'Non-2xx' "$var/wrk-accrual-$r.txt" && echo "  (non-2xx answers: see $var/wrk-accrual-$r.txt)"
  done
  line=$(printf '%s\n' "${runs[@]}" | sort -n -k1,1 | sed -n "$(( (rounds + 1) / 2 ))p")
  med=${line##* }
  echo "  median of $rounds: ${line%% *} s (target for 1,000,000: under 10 s), /api/packages p99 meanwhile" \
       "$(awk '$1 == "99%" {print $2}' "$var/wrk-accrual-$med.txt") (target: p99 under 50 ms)"
  "$root/build/deepminectl" --db "$var/deepmine.db" ledger verify | sed 's/^/  /'
}
# ---- the metrics scrape on the populated database ----
metrics=${METRICS:-50}
metrics_bench() {
  local n=$metrics i gather=() trip=() out
  phase metrics
  for i in $(seq 1 "$n"); do
    out=$(curl -sf -w '\n@trip %{time_total}\n' "$base/api/admin/metrics" \
      -H 'Authorization: Bearer bench-metrics-token-0123456789') ||
      { echo "bench: /api/admin/metrics failed"; exit 1; }
    gather+=("$(echo "$out" | awk '$1 == "deepmine_metrics_scrape_duration_seconds" {print $2 * 1000}')")
    trip+=("$(echo "$out" | awk '$1 == "@trip" {print $2 * 1000}')")
  done
  echo
  echo "metrics scrape: $n scrapes of /api/admin/metrics on $(sqlite3 "$var/deepmine.db" \
    'SELECT COUNT(*) FROM users') members, $(sqlite3 "$var/deepmine.db" 'SELECT COUNT(*) FROM contracts') contracts"
  printf '%s\n' "${gather[@]}" | sort -n | awk '{ v[NR] = $1 } END {
    printf "  gathering (server): p50 %.2f ms, max %.2f ms (target: under 10 ms)\n", v[int((NR + 1) / 2)], v[NR] }'
  printf '%s\n' "${trip[@]}" | sort -n | awk '{ v[NR] = $1 } END {
    printf "  round trip (curl):  p50 %.2f ms, max %.2f ms\n", v[int((NR + 1) / 2)], v[NR] }'
}
if [ "${BENCH_ONLY:-}" = metrics ]; then
  accrual_populate
  metrics_bench
  exit 0
fi

mail=${MAIL:-10000}
mail_bench() {
  echo
  /usr/bin/python3 "$root/scripts/bench_mail.py" "$root" "$mail"
}
if [ "${BENCH_ONLY:-}" = mail ]; then
  mail_bench
  exit 0
fi
# Stripe webhooks/s (p99) and the janitor over JANITOR stale orders, on a
# server and a Stripe stand-in of their own (scripts/bench_payments.py).
janitor=${JANITOR:-10000}
payments_bench() {
  echo
  /usr/bin/python3 "$root/scripts/bench_payments.py" "$root" "${STRIPE_WEBHOOKS:-20000}" \
    "${WEBHOOK_SECONDS:-10}" "$janitor"
}
if [ "${BENCH_ONLY:-}" = payments ]; then
  payments_bench
  exit 0
fi
# ---- a backup of the member population, a writer committing meanwhile ----
backup_bench() {
  local n=${MEMBERS:-1000000} t0 t1 out stall
  "$root/build/dm-benchgen" --db "$var/deepmine.db" members --count "$n" --shape random \
    --seed 5 --password-mib 8 >/dev/null
  [ "$(id -u)" -eq 0 ] && chown "${DM_RUN_USER:-www-data}" "$var"/deepmine.db*
  # the generated file on the disk first: left in the page cache, its first
  # checkpoint by the writer below fsyncs all of it (350-440 ms measured: a
  # stall the generator's, not the backup's)
  sync "$var/deepmine.db"
  rm -f "$var/writer.stop"
  /usr/bin/python3 "$root/scripts/bench_backup_writer.py" "$var/deepmine.db" "$var/writer.stop" \
    > "$var/writer.out" &
  local wpid=$!
  sleep 1
  t0=$(date +%s.%N)
  out=$("$root/build/deepminectl" --config "$conf" --db "$var/deepmine.db" backup create 2>/dev/null) \
    || { touch "$var/writer.stop"; wait "$wpid"; echo "bench: backup create failed"; exit 1; }
  t1=$(date +%s.%N)
  touch "$var/writer.stop"; wait "$wpid"
  stall=$(cat "$var/writer.out")
  echo
  echo "backup: $n members ($(stat -c %s "$var/deepmine.db") bytes of database)"
  echo "$out" | sed 's/^/  /'
  echo "  $(echo "$t1 - $t0" | bc) s; a writer committing meanwhile: longest commit ${stall%% *} ms" \
       "over ${stall##* } commits (target: under 50 ms)"
}
if [ "${BENCH_ONLY:-}" = backup ]; then
  backup_bench
  exit 0
fi
if [ "${BENCH_ONLY:-}" = accrual ]; then
  accrual_bench
  exit 0
fi

# ---- staff statistics (issue 14): GET /api/admin/stats?days=90 ----
# An owner's dm_admin session for wrk; then wrk, then the server time of
# each answer from the access log (%D).
staff_cookie() {
  local out pw
  out=$("$root/build/deepminectl" --db "$var/deepmine.db" staff create \
    --email "bench-owner-$RANDOM@example.test" --role owner)
  pw=$(echo "$out" | sed -n 's/^ *password: *//p')
  # The owner logs in with the generated members' password and its cheap
  # hash (dm-benchgen --password-mib 8): a default one (64 MiB of argon2)
  # would put 64 MiB into the memory figure for this one login.
  if [ "$(sqlite3 "$var/deepmine.db" "SELECT COUNT(*) FROM users WHERE password_hash LIKE '%m=8192,%'")" -gt 0 ]; then
    sqlite3 "$var/deepmine.db" "UPDATE staff SET password_hash = (SELECT password_hash FROM users
      WHERE password_hash LIKE '%m=8192,%' LIMIT 1) WHERE email = '$(echo "$out" | sed -n 's/^ *email: *//p')'"
    pw=generated-member-password
  fi
  [ "$(id -u)" -eq 0 ] && chown "${DM_RUN_USER:-www-data}" "$var"/deepmine.db*
  curl -sf -o /dev/null -c "$var/staff.jar" "$base/api/admin/auth/login" -H "Origin: $base" \
    -H 'Content-Type: application/json' \
    -d "{\"email\":\"$(echo "$out" | sed -n 's/^ *email: *//p')\",\"password\":\"$pw\"}"
  awk '$6 == "dm_admin" { print "dm_admin=" $7 }' "$var/staff.jar"
}
stats_bench() {
  local cookie r p50 p99
  phase staff_login
  cookie=$(staff_cookie)
  [ -n "$cookie" ] || { echo "bench: staff login failed"; exit 1; }
  curl -sf -H "Cookie: $cookie" "$base/api/admin/stats?days=90" -o "$var/stats.json" \
    || { echo "bench: /api/admin/stats failed"; exit 1; }
  row1 "/api/admin/stats?days=90" "$base/api/admin/stats?days=90" -H "Cookie: $cookie"
  run_rows
  python3 - "$var/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("  (90 days: %d sign-ups, %d active contracts at the end, %d GH/s sold)" % (
    sum(s["signups"]), s["contracts_active"][-1], s["hashrate_sold_ghs"][-1]))
PY
}
if [ "${BENCH_ONLY:-}" = stats ]; then
  n=${MEMBERS:-1000000}
  per=$(( n / 90 ))
  t0=$(date +%s.%N)
  for d in $(seq 89 -1 0); do   # a day's sign-ups at a time, on that day's clock
    date -u -d "@$(( $(date +%s) - d * 86400 ))" +%Y-%m-%dT%H:%M:%SZ > "$var/bench-clock"
    "$root/build/dm-benchgen" --db "$var/deepmine.db" --clock-file "$var/bench-clock" members \
      --count "$per" --shape random --seed "$((d + 1))" --password-mib 8 >/dev/null
  done
  "$root/build/dm-benchgen" --db "$var/deepmine.db" contracts --count "${STATS_CONTRACTS:-100000}" \
    --started $(( $(date +%s) - 30 * 86400 )) >/dev/null
  [ "$(id -u)" -eq 0 ] && chown "${DM_RUN_USER:-www-data}" "$var"/deepmine.db*
  echo "staff statistics: $(( per * 90 )) members over 90 days generated in" \
    "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s, ${STATS_CONTRACTS:-100000} contracts"
  hdr endpoint
  stats_bench
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  awk -F'"' '$4 == "/api/admin/stats" { split($3, f, " "); print f[3] }' "$var/logs/access.log" |
    sort -n | awk '{ v[NR] = $1 } END { printf "server time of /api/admin/stats?days=90 (access log %%D): p50 %.3f ms, p99 %.3f ms (target: under 200 ms)\n",
      v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000 }'
  exit 0
fi

# ---- money (issue 4): paid-order webhooks with a 10-level upline ----
# Setup: WEBHOOKS x ROUNDS pending sandbox orders of the chain's tip (its upline is 10
# deep), inserted with SQL as bench data; then each
# order's paid event, signed as the sandbox signs it, is posted by wrk.
# (a function: BENCH_ONLY=webhooks runs it alone, on MEMBERS generated members)
webhooks_bench() {
  # WEBHOOKS events per round (default 20,000: 2,000/s for 10 s), one
  # round of WEBHOOK_SECONDS per ROUNDS, each on orders of its own; the
  # median round's rate is the figure
  local per=${WEBHOOKS:-20000} wr=$rounds r lo rates=() line med paid contracts comms
  webhooks=$(( per * wr ))
  price=$(sqlite3 "$var/deepmine.db" "SELECT price_micros FROM packages WHERE id = 1")
  now=$(date +%s)
  sqlite3 "$var/deepmine.db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $webhooks)
    INSERT INTO orders (user_id, package_id, amount_micros, currency, status, gateway, provider_ref,
                        created_at, updated_at)
    SELECT $tip, 1, $price, 'USD', 'pending', 'sandbox', 'cs_bench_' || i, $now, $now FROM n;"
  first_order=$(sqlite3 "$var/deepmine.db" "SELECT MIN(id) FROM orders WHERE provider_ref LIKE 'cs_bench_%'")
  python3 - "$var/sandbox-webhook.secret" "$first_order" "$webhooks" "$price" > "$var/events.tsv" <<'PY'
import hashlib, hmac, json, sys, time
secret = open(sys.argv[1], "rb").read().strip()
first, n, price = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = int(time.time())
for k in range(n):
    oid = first + k
    body = json.dumps({"id": "evt_bench_%d" % oid, "type": "checkout.paid", "created": t,
                       "livemode": False,
                       "data": {"object": {"id": "cs_bench_%d" % (k + 1), "order_id": str(oid),
                                           "amount_micros": price, "currency": "USD"}}},
                      separators=(",", ":"))
    sig = hmac.new(secret, ("%d.%s" % (t, body)).encode(), hashlib.sha256).hexdigest()
    print("t=%d,v1=%s\t%s" % (t, sig, body))
PY
  [ "$(id -u)" -eq 0 ] && chown "${DM_RUN_USER:-www-data}" "$var"/deepmine.db*
  wh_secs=${WEBHOOK_SECONDS:-10}
  phase webhooks
  echo
  echo "paid-order webhooks (tip of the chain, 10-level upline), wrk -t2 -c16 -d${wh_secs}s, $wr round(s) of $per events:"
  for ((r = 1; r <= wr; r++)); do
    lo=$(( first_order + (r - 1) * per ))
    sed -n "$(( (r - 1) * per + 1 )),$(( r * per ))p" "$var/events.tsv" > "$var/events-$r.tsv"
    BENCH_EVENTS="$var/events-$r.tsv" BENCH_THREADS=2 wrk -t2 -c16 -d"${wh_secs}s" --latency \
      -s "$root/scripts/bench_webhooks.lua" "$base" > "$var/wrk-webhooks-$r.txt"
    # the round's own orders paid, counted once wrk stops (the few still in
    # flight finish meanwhile)
    paid=$(sqlite3 "$var/deepmine.db" "SELECT COUNT(*) FROM orders
      WHERE id BETWEEN $lo AND $(( lo + per - 1 )) AND status = 'paid'")
    rates+=("$(awk -v n="$paid" -v s="$wh_secs" 'BEGIN { printf "%.0f", n / s }') $r")
    echo "  round $r: $paid orders paid = $(awk -v n="$paid" -v s="$wh_secs" 'BEGIN { printf "%.0f", n / s }')/s," \
         "$(grep -E '^ +(50|99)%' "$var/wrk-webhooks-$r.txt" | awk '{ printf "%s %s ", $1, $2 }')"
    [ "$paid" -lt "$per" ] || echo "  (round $r used all its $per events: raise WEBHOOKS for a longer run)"
  done
  line=$(printf '%s\n' "${rates[@]}" | sort -n -k1,1 | sed -n "$(( (wr + 1) / 2 ))p")
  med=${line##* }
  # one statement, one snapshot of all rounds' orders
  read -r paid contracts comms <<< "$(sqlite3 -separator ' ' "$var/deepmine.db" "SELECT
    (SELECT COUNT(*) FROM orders WHERE provider_ref LIKE 'cs_bench_%' AND status = 'paid'),
    (SELECT COUNT(*) FROM contracts c JOIN orders o ON o.id = c.order_id WHERE o.provider_ref LIKE 'cs_bench_%'),
    (SELECT COUNT(*) FROM commissions c JOIN orders o ON o.id = c.order_id WHERE o.provider_ref LIKE 'cs_bench_%')")"
  echo "  median of $wr round(s): ${line%% *}/s (target >= 1,500/s), its latency:" \
       "$(grep -E '^ +(50|99)%' "$var/wrk-webhooks-$med.txt" | awk '{ printf "%s %s ", $1, $2 }')(target: p99 under 100 ms)"
  echo "  all rounds: $paid orders paid; $contracts contracts, $comms commission credits ($(awk -v c="$comms" -v n="$paid" 'BEGIN { printf "%.1f", n ? c / n : 0 }') per order)"
}

members=${MEMBERS:-1000000}
chain=${CHAIN:-10000}
if [ "$members" -gt 0 ]; then
  [ "$chain" -lt "$members" ] || chain=$((members / 10))
  random=$((members - chain))
  t0=$(date +%s.%N)
  "$root/build/dm-benchgen" --db "$var/deepmine.db" members --count "$random" --shape random --seed 1 --password-mib 8 >/dev/null
  mid=$((random / 2))
  "$root/build/dm-benchgen" --db "$var/deepmine.db" members --count "$chain" --shape chain --under "$mid" --seed 2 --password-mib 8 >/dev/null
  t1=$(date +%s.%N)
  [ "$(id -u)" -eq 0 ] && chown "${DM_RUN_USER:-www-data}" "$var"/deepmine.db*
  gen_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
fi

if [ "${BENCH_ONLY:-}" = webhooks ]; then   # the write path alone (MEMBERS=100000 for a quick look)
  tip=$(sqlite3 "$var/deepmine.db" "SELECT MAX(id) FROM users")
  webhooks_bench
  "$root/build/deepminectl" --db "$var/deepmine.db" ledger verify | sed 's/^/  /'
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true   # flushes BufferedLogs
  awk -F'"' '$4 == "/api/webhooks/{name}" { split($3, f, " "); print f[3] }' "$var/logs/access.log" |
    sort -n | awk '{ v[NR] = $1 } END { printf "  server time (access log %%D): p50 %.3f ms, p99 %.3f ms\n",
      v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000 }'
  exit 0
fi

echo "DeepMine bench: wrk -t$threads -c{${conns_list// /,}} -d$duration --timeout $wrk_timeout, $(nproc) cores, $(apache2 -v | head -1 | sed 's/Server version: //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
start_twin
hdr endpoint
row /api/health "$base/api/health"
row /api/packages "$base/api/packages"
row1 /bench-static/packages.json "$base/bench-static/packages.json"
row "twin /api/health" "$twin/api/health"
row "twin /api/packages" "$twin/api/packages"
run_rows
for c in $conns_list; do
  awk -v a="${rps[/api/packages@$c]}" -v b="${rps[/bench-static/packages.json@$c]}" -v c="$c" \
    'BEGIN { printf "ratio /api/packages : static file (same Apache) -c%s = %.2f (target >= 1.00)\n", c, a / b }'
done
# The ratios to the tuned static twin (all of them once the members ran):
# the member reads against the twin's /api/health measured again in the
# same rounds as they are, so both sides of their ratio saw the same
# minutes of the machine.
twin_ratios() {
  echo "ratios to the tuned static twin (2 x 64 threads, no module, no access log), medians of $rounds rounds:"
  ratio /api/packages "twin /api/packages" 0.9
  ratio /api/health "twin /api/health" 0.9
  [ "$members" -gt 0 ] || return 0
  ratio /api/me "twin /api/health (again)" 0.7
  ratio "/api/referrals/network (root)" "twin /api/health (again)" 0.7
}
# The twin stays up, idle, until the member reads are measured; then it
# stops, so its processes never share the cores with the later parts.
stop_twin() {
  kill -TERM "$twin_pid" 2>/dev/null || true
  wait "$twin_pid" 2>/dev/null || true
  twin_pid=
}
dropped_report() {
  if [ -z "$dropped" ]; then
    echo "dropped connections: none (0 socket errors, 0 non-2xx at -c${conns_list// /, -c} on every endpoint)"
  else
    echo "dropped connections (label@conns(socket errors/non-2xx)):$dropped"
  fi
}

if [ "$members" -eq 0 ]; then
  stop_twin
  twin_ratios
  dropped_report
  [ "$accrual" -gt 0 ] && accrual_bench
  [ "$metrics" -gt 0 ] && metrics_bench
  memory_report
  exit 0
fi

# ---- members (issue 3) ----
login() { # email -> access token
  curl -sf "$base/api/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"generated-member-password\",\"return_tokens\":true}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"]["access_token"])'
}
id_of() { # member id -> e-mail of a generated member
  sqlite3 "$var/deepmine.db" "SELECT email FROM users WHERE id = $1"
}
tip=$(sqlite3 "$var/deepmine.db" "SELECT MAX(id) FROM users")
phase logins
root_tok=$(login "$(id_of 1)")
mid_tok=$(login "$(id_of "$mid")")
tip_tok=$(login "$(id_of "$tip")")
tip_depth=$(sqlite3 "$var/deepmine.db" "SELECT depth FROM users WHERE id = $tip")

echo
echo "members: $members generated in ${gen_secs}s ($random random + a $chain-deep chain under member $mid; tip $tip at depth $tip_depth)"
hdr endpoint
row "/api/referrals/network (root)" "$base/api/referrals/network" -H "Authorization: Bearer $root_tok"
row1 "/api/referrals/network (mid)" "$base/api/referrals/network" -H "Authorization: Bearer $mid_tok"
row1 "/api/referrals/network (tip)" "$base/api/referrals/network" -H "Authorization: Bearer $tip_tok"
row /api/me "$base/api/me" -H "Authorization: Bearer $mid_tok"
row "twin /api/health (again)" "$twin/api/health"
run_rows
stop_twin
twin_ratios

# Registration under the chain's tip (depth $tip_depth): 20 sign-ups.
phase registrations
tip_code=$(sqlite3 "$var/deepmine.db" "SELECT referral_code FROM users WHERE id = $tip")
terms=$(curl -sf "$base/api/legal/terms" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
for i in $(seq 1 20); do
  curl -sf -o /dev/null "$base/api/auth/register" -H 'Content-Type: application/json' \
    -d "{\"email\":\"bench$i@example.test\",\"password\":\"Glacier-Pumpkin-Orbit-42\",\"accept_terms\":true,\"terms_version\":\"$terms\",\"referral_code\":\"$tip_code\"}" \
    || { echo "bench: registration failed"; exit 1; }
done

webhooks_bench

# GET /api/ledger: the referrer of the tip now has a statement of credits.
ref=$(sqlite3 "$var/deepmine.db" "SELECT ancestor_id FROM user_ancestors WHERE user_id = $tip AND depth = 1")
ref_tok=$(login "$(id_of "$ref")")
echo
hdr endpoint
row1 "/api/ledger (50 per page)" "$base/api/ledger" -H "Authorization: Bearer $ref_tok"
run_rows
stats_bench
dropped_report
"$root/build/deepminectl" --db "$var/deepmine.db" ledger verify

[ "$accrual" -gt 0 ] && accrual_bench
[ "$metrics" -gt 0 ] && metrics_bench
memory_report

# Server time from the access log (%D, microseconds), per route and member.
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true   # flushes BufferedLogs
server_time() { # route member -> "p50 p99" in ms
  awk -F'"' -v route="$1" -v who="$2" '$4 == route && (who == "" || $5 == " " who) {
      split($3, f, " "); print f[3] }' "$var/logs/access.log" | sort -n |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
      printf "%.3fms %.3fms\n", v[int(NR * 0.5) + (NR * 0.5 > int(NR * 0.5))] / 1000,
        v[int(NR * 0.99) + (NR * 0.99 > int(NR * 0.99))] / 1000 }'
}
echo
echo "server time (access log %D)                          p50        p99"
for who in root:1 mid:$mid tip:$tip; do
  printf '%-44s %10s %10s\n' "/api/referrals/network (${who%%:*})" $(server_time /api/referrals/network "${who#*:}")
done
printf '%-44s %10s %10s\n' "/api/me" $(server_time /api/me "$mid")
printf '%-44s %10s %10s\n' "/api/auth/register under depth $tip_depth" $(server_time /api/auth/register "")
printf '%-44s %10s %10s\n' "/api/webhooks/{plugin} (paid order)" $(server_time "/api/webhooks/{name}" "")
printf '%-44s %10s %10s\n' "/api/admin/stats?days=90 (target < 200 ms)" $(server_time /api/admin/stats "")
echo "(register includes argon2id at the bench's cheap setting, DeepMinePasswordHash 1 8)"

[ "$mail" -gt 0 ] && mail_bench
[ "$janitor" -gt 0 ] && payments_bench
# PostgreSQL (issue 17): BENCH_ONLY=postgres or PG=1
[ "${PG:-0}" = 1 ] && bash "$root/scripts/bench_pg.sh"
true
