#!/usr/bin/env bash
# `make run`: a fresh or existing VAR, migrations and the demo catalogue,
# then Apache in the foreground until Ctrl-C (SIGINT) or SIGTERM.
set -euo pipefail
# Whatever Apache and the console create in VAR (database, logs, mail) is
# readable by the server's user only.
umask 077
root=$(cd "$(dirname "$0")/.." && pwd)
var=$1
port=$2

conf=$(bash "$root/scripts/gen-conf.sh" "$var" "$port" event /dev/stderr notice)
var=$(dirname "$conf")
# The console on the database this configuration serves (local.conf
# included: a DeepMineDatabase there wins, as it does for Apache).
ctl() { "$root/build/deepminectl" --config "$conf" "$@"; }
ctl seed-demo
# A generous demo capacity (1,000,000 TH/s), only when none is recorded:
# without one nothing can be sold (docs/operations.md).
ctl capacity ensure --ghs 1000000000 --note "make run demo capacity"
# The first staff owner, on a database without one: its one-time password
# is printed here, once (nothing is printed when an owner exists).
ctl staff ensure-owner --email owner@deepmine.local
if [ "$(id -u)" -eq 0 ]; then
  db=$(ctl status | sed -n 's/^database: *//p')
  chown "${DM_RUN_USER:-www-data}" "$db"*
fi

echo
echo "  DeepMine is starting on http://127.0.0.1:$port/"
echo "  API:       http://127.0.0.1:$port/api/packages"
echo "  Config:    $conf   (add your own directives to $var/local.conf)"
echo "  Logs:      errors here, requests in $var/logs/access.log"
echo "  Console:   $root/build/deepminectl --config $conf jobs list"
echo "             (or export DEEPMINE_CONFIG=$conf; \`deepminectl help\` lists the commands)"
echo "  Stop:      Ctrl-C"
echo

# glibc without its per-thread caches of freed blocks (docs/configuration.md
# "Sizing Apache for DeepMine"), unless the caller set the tunables.
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.tcache_count=0}
# A session of its own: on shutdown Apache signals its whole process group.
setsid apache2 -f "$conf" -DFOREGROUND &
pid=$!
stop() {
  kill -TERM "$pid" 2>/dev/null || true
}
trap stop INT TERM
# wait returns early when a trapped signal arrives; wait again for Apache.
wait "$pid" || true
wait "$pid" 2>/dev/null || true
echo "DeepMine stopped."
