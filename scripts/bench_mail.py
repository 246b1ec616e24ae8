#!/usr/bin/python3
"""Bench (not a test): N queued messages drained by the cron daemon's mail
job through the mailer-smtp plugin to a local SMTP server (Debian's
python3-aiosmtpd, which only counts what it accepts). Prints messages/s
(from the moment the messages are queued to the last one recorded as
sent) and the daemon's peak RSS (VmHWM).

usage: bench_mail.py ROOT N"""
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

from aiosmtpd.controller import Controller


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 2.0.0 Ok: queued"


def sql(db, statement):
    con = sqlite3.connect(db, timeout=30)
    try:
        rows = con.execute(statement).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def main():
    root, n = sys.argv[1], int(sys.argv[2])
    sink = Sink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    var = tempfile.mkdtemp(prefix="dm-bench-mail-")
    port = free_port()
    conf = subprocess.run(["bash", os.path.join(root, "scripts", "gen-conf.sh"), var, str(port),
                           "event", "logs/error.log", "notice"],
                          check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(var, "local.conf"), "w") as f:
        f.write('DeepMinePlugin mailer smtp "%s/build/plugins/mailer-smtp.so"\n' % root)
        f.write("DeepMinePluginSet smtp url smtp://127.0.0.1:%d\n" % smtp.port)
        f.write("DeepMineMailer smtp\n")
    db = os.path.join(var, "deepmine.db")
    ctl = os.path.join(root, "build", "deepminectl")
    subprocess.run([ctl, "--db", db, "seed-demo"], check=True, capture_output=True)
    if os.geteuid() == 0:
        subprocess.run("chown -R www-data: %s" % var, shell=True, check=True)
    apache = subprocess.Popen(["apache2", "-f", conf, "-DFOREGROUND"], start_new_session=True)
    log = os.path.join(var, "logs", "error.log")
    try:
        pid = None
        deadline = time.time() + 30
        while pid is None and time.time() < deadline:
            time.sleep(0.2)
            if os.path.exists(log):
                m = re.search(r"DM00041: cron daemon started \(pid (\d+)", open(log).read())
                pid = int(m.group(1)) if m else None
        if pid is None:
            sys.exit("bench_mail: the cron daemon did not start")
        t0 = time.time()
        sql(db, "INSERT INTO mail_queue (recipient, template, variables, idempotency_key, "
                "status, attempts, next_attempt_at, created_at, updated_at) "
                "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < %d) "
                "SELECT 'bench' || i || '@example.com', 'kyc_approved', '{}', 'bench:' || i, "
                "'queued', 0, 0, 0, 0 FROM k" % n)
        sent = 0
        deadline = time.time() + max(120, n / 10)
        while time.time() < deadline:
            sent = sql(db, "SELECT count(*) FROM mail_queue WHERE status = 'sent'")[0][0]
            if sent >= n:
                break
            time.sleep(0.2)
        secs = time.time() - t0
        with open("/proc/%d/status" % pid) as f:
            hwm = re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)
        failed = sql(db, "SELECT count(*) FROM mail_queue WHERE status != 'sent'")[0][0]
        print("e-mail queue: %d messages queued, drained by the cron daemon through mailer-smtp "
              "to a local aiosmtpd" % n)
        print("  %d sent in %.1f s = %.0f messages/s (target: at least 50/s); %d not sent; "
              "the SMTP server accepted %d" % (sent, secs, sent / secs, failed, sink.count))
        print("  cron daemon peak RSS (VmHWM) %d MB" % (int(hwm) // 1024))
    finally:
        apache.terminate()
        apache.wait(timeout=30)
        smtp.stop()
        if not os.environ.get("KEEP"):
            subprocess.run(["rm", "-rf", var])


if __name__ == "__main__":
    main()
