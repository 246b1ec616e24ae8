#!/usr/bin/env bash
# Prepares a VAR directory and writes VAR/httpd.conf from conf/httpd.conf.in.
# Used by `make run`, `make bench` and the integration tests, so they all
# run the same configuration.
#
# usage: gen-conf.sh VAR PORT [MPM] [ERROR_LOG] [LOG_LEVEL]
#   MPM        event (default) or prefork
#   ERROR_LOG  default VAR/logs/error.log
#   LOG_LEVEL  default "notice"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
var=$1
port=$2
mpm=${3:-event}
error_log=${4:-$var/logs/error.log}
log_level=${5:-notice}
apache_modules=$(apxs -q LIBEXECDIR 2>/dev/null || echo /usr/lib/apache2/modules)

mkdir -p "$var" "$var/logs" "$var/run" "$var/mail"
# The storage plugin's directory (storage-local): the server's user only.
mkdir -p "$var/storage" && chmod 0700 "$var/storage"
# The pages' document root (`make web` fills it; an empty one still serves
# the API).
mkdir -p "$root/build/web"
var=$(cd "$var" && pwd)
case "$error_log" in /*) ;; *) error_log="$var/${error_log}";; esac

# The secret key: 32 random bytes, never world-readable, never replaced.
if [ ! -f "$var/secret.key" ]; then
  "$root/build/deepminectl" keygen "$var/secret.key" >/dev/null
fi

# The sandbox payment plugin's webhook secret (DeepMinePluginSet sandbox
# webhook_secret file:…): 64 random hex digits, mode 0600, never replaced.
if [ ! -f "$var/sandbox-webhook.secret" ]; then
  (umask 077
   printf 'whsec_sbx_%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
     > "$var/sandbox-webhook.secret.tmp"
   mv "$var/sandbox-webhook.secret.tmp" "$var/sandbox-webhook.secret")
fi

user_block="# not started as root: the server runs as $(id -un)"
if [ "$(id -u)" -eq 0 ]; then
  # Children run as www-data; they must write the database, its WAL files,
  # the logs and the mail spool.
  run_user=${DM_RUN_USER:-www-data}
  run_group=$(id -gn "$run_user")
  user_block="User $run_user
Group $run_group"
  chown -R "$run_user:$run_group" "$var"
  chown root "$var/secret.key"
  chmod 0640 "$var/secret.key"
  # Read by the parent (root) only, when it resolves the file: setting.
  chown root "$var/sandbox-webhook.secret"
  chmod 0600 "$var/sandbox-webhook.secret"
  # The path to VAR must be traversable by the server's user.
  d=$var
  while [ "$d" != "/" ]; do
    chmod o+x "$d" 2>/dev/null || true
    d=$(dirname "$d")
  done
fi

sed -e "s|@VAR@|$var|g" \
    -e "s|@PORT@|$port|g" \
    -e "s|@MPM@|$mpm|g" \
    -e "s|@APACHE_MODULES@|$apache_modules|g" \
    -e "s|@MODULE@|$root/build/mod_deepmine.so|g" \
    -e "s|@PLUGINS@|$root/build/plugins|g" \
    -e "s|@WEB@|$root/build/web|g" \
    -e "s|@ROOT@|$root|g" \
    -e "s|@ERROR_LOG@|$error_log|g" \
    -e "s|@LOG_LEVEL@|$log_level|g" \
    "$root/conf/httpd.conf.in" > "$var/httpd.conf.tmp"
# USER_BLOCK may span lines: substitute it with awk.
awk -v block="$user_block" '{ if ($0 == "@USER_BLOCK@") print block; else print }' \
  "$var/httpd.conf.tmp" > "$var/httpd.conf"
rm -f "$var/httpd.conf.tmp"
echo "$var/httpd.conf"
