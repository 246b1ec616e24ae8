#!/usr/bin/env bash
# Every module log line at notice or above carries a number DMnnnnn, and no
# number is used twice (STYLE.md habit 5). Fails listing the duplicates, and
# any ap_log_* call at notice or above without a number.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(find mod_deepmine/core mod_deepmine/http -name "*.c" | sort)

dups=$(grep -ohE '"DM[0-9]{5}:' $files | sort | uniq -d || true)
if [ -n "$dups" ]; then
  echo "check-log-numbers: these DM numbers are used more than once:"
  echo "$dups"
  exit 1
fi

# Calls at notice or above: the number must be in the same statement.
missing=$(awk '
  FNR == 1 { stmt = ""; collecting = 0 }
  /ap_log_(r|c|p)?error\(|dm_log\(/ { collecting = 1; stmt = ""; start = FNR }
  collecting { stmt = stmt $0 }
  collecting && /;[[:space:]]*$/ {
    collecting = 0
    if (stmt ~ /APLOG_(EMERG|ALERT|CRIT|ERR|WARNING|NOTICE)|DM_L_(ERR|WARN|NOTICE)/ &&
        stmt !~ /"DM[0-9][0-9][0-9][0-9][0-9]:/ && stmt !~ /dm_log\(dm_level level/ &&
        stmt !~ /\(int\)level/)
      print FILENAME ":" start
  }' $files)
if [ -n "$missing" ]; then
  echo "check-log-numbers: log lines at notice or above without a DMnnnnn number:"
  echo "$missing"
  exit 1
fi
n=$(grep -ohE '"DM[0-9]{5}:' $files | wc -l)
echo "check-log-numbers: $n numbered log lines, all unique"
