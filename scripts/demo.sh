#!/usr/bin/env bash
# `make demo`: `make run` with a demo population (docs/ui.md "Demo data").
# On a fresh VAR (default build/demo), scripts/demo_populate.py first fills
# the database through the API and deepminectl -- the same core paths as
# members and staff use -- on a fake clock eight days back: a referral tree
# of a few hundred members, paid orders and their contracts, commissions
# (held and released), a week of hourly yield, identity checks approved and
# pending, withdrawals pending and paid. Then the server starts as `make
# run` starts it, on the real clock. A VAR that already holds members is
# served as it is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
var=$1
port=$2
mkdir -p "$var"
var=$(cd "$var" && pwd)
conf=$(bash "$root/scripts/gen-conf.sh" "$var" "$port" event /dev/stderr notice)
ctl() { "$root/build/deepminectl" --config "$conf" "$@"; }
ctl seed-demo >/dev/null
db=$(ctl status | sed -n 's/^database: *//p')
members=$(sqlite3 "$db" "SELECT COUNT(*) FROM users")
if [ "$members" -eq 0 ]; then
  /usr/bin/python3 "$root/scripts/demo_populate.py" "$root" "$var" "$conf" "${DEMO_MEMBERS:-300}"
else
  echo "demo: $db already holds $members members: served as it is"
fi
exec bash "$root/scripts/run.sh" "$var" "$port"
