#!/usr/bin/python3
"""Bench (not a test): the Stripe plugin under load, through the real
Apache and the Stripe stand-in (tests/standins/stripe_standin.py).

1. webhooks: WEBHOOKS pending Stripe orders of a member with a 10-level
   upline, each paid by its checkout.session.completed event, signed as
   Stripe signs (Stripe-Signature, HMAC-SHA256 with the whole whsec_
   secret), posted by wrk for SECONDS: paid orders/s end to end (signature
   verified, contract, 10 commissions) and wrk's p50/p99.
2. janitor: JANITOR stale pending orders whose sessions were paid at the
   stand-in but whose webhooks were dropped; the cron daemon's
   payment-janitor asks the stand-in about each (GET
   /v1/checkout/sessions/{id}) and settles it: seconds from its first
   answer to the last order paid, orders/s, and the duplicates (orders
   with more than one purchase transfer or contract: must be 0).

usage: bench_payments.py ROOT [WEBHOOKS [SECONDS [JANITOR]]]"""
import hashlib
import hmac
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = sys.argv[1]
sys.path.insert(0, os.path.join(ROOT, "tests", "standins"))
from stripe_standin import StripeStandin  # noqa: E402

SECRET_KEY = "sk_test_bench_0123456789"
WEBHOOK_SECRET = "whsec_bench_0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sql(db, statement):
    con = sqlite3.connect(db, timeout=60)
    try:
        rows = con.execute(statement).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def signed(body, t):
    sig = hmac.new(WEBHOOK_SECRET.encode(), ("%d.%s" % (t, body)).encode(),
                   hashlib.sha256).hexdigest()
    return "t=%d,v1=%s" % (t, sig)


def session_for(standin, oid, unit_amount, public_url):
    """A paid Checkout Session at the stand-in for order oid, made as the
    plugin asks for one (the form it posts, parsed)."""
    form = {"mode": "payment",
            "line_items": {"0": {"price_data": {"currency": "usd",
                                                "unit_amount": str(unit_amount),
                                                "product_data": {"name": "Order %d" % oid}},
                                 "quantity": "1"}},
            "client_reference_id": str(oid), "metadata": {"order_id": str(oid)},
            "payment_intent_data": {"metadata": {"order_id": str(oid)}},
            "success_url": public_url + "/", "cancel_url": public_url + "/"}
    status, body = standin.create_session(form)
    if status != 200:
        sys.exit("bench_payments: the stand-in refused a session: %s" % body)
    return body


def pending_orders(db, user, n, price, created, refs):
    con = sqlite3.connect(db, timeout=60)
    try:
        first = None
        for ref in refs:
            cur = con.execute(
                "INSERT INTO orders (user_id, package_id, amount_micros, currency, status, "
                "gateway, provider_ref, created_at, updated_at) VALUES (?, 1, ?, 'USD', "
                "'pending', 'stripe', ?, ?, ?)", (user, price, ref, created, created))
            first = first or cur.lastrowid
        con.commit()
        return first
    finally:
        con.close()


def main():
    sys.stdout.reconfigure(line_buffering=True)
    webhooks = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    janitor = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
    standin = StripeStandin(SECRET_KEY, WEBHOOK_SECRET).start()
    standin.delivery = {"mode": "drop"}  # the janitor part: webhooks never come
    var = tempfile.mkdtemp(prefix="dm-bench-pay-")
    port = free_port()
    base = "http://127.0.0.1:%d" % port
    conf = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen-conf.sh"), var, str(port),
                           "event", "logs/error.log", "warn"],
                          check=True, capture_output=True, text=True).stdout.strip()
    for name, value in (("sk", SECRET_KEY), ("whsec", WEBHOOK_SECRET)):
        with open(os.path.join(var, name), "w") as f:
            f.write(value + "\n")
        os.chmod(os.path.join(var, name), 0o600)
    with open(os.path.join(var, "local.conf"), "w") as f:
        f.write('DeepMinePlugin payment stripe "%s/build/plugins/payment-stripe.so"\n' % ROOT)
        f.write("DeepMinePluginSet stripe secret_key file:%s/sk\n" % var)
        f.write("DeepMinePluginSet stripe webhook_secret file:%s/whsec\n" % var)
        f.write("DeepMinePluginSet stripe api_base %s\n" % standin.url)
        f.write("DeepMineRateLimit webhook 1000000/1s ip\n")
        f.write("DeepMineRateLimit api 1000000/1s member\n")
        f.write("DeepMinePaymentSettle 60\n")
    db = os.path.join(var, "deepmine.db")
    ctl = os.path.join(ROOT, "build", "deepminectl")
    gen = os.path.join(ROOT, "build", "dm-benchgen")
    subprocess.run([ctl, "--db", db, "seed-demo"], check=True, capture_output=True)
    # a chain of 12: the tip has a 10-level upline
    subprocess.run([gen, "--db", db, "members", "--count", "12", "--shape", "chain",
                    "--seed", "7"], check=True, capture_output=True)
    tip = sql(db, "SELECT MAX(id) FROM users")[0][0]
    sql(db, "UPDATE users SET email_verified_at = 1")
    price = sql(db, "SELECT price_micros FROM packages WHERE id = 1")[0][0]
    unit = price // 10000
    # ample capacity: the bench measures payments, not a sold-out package
    sql(db, "INSERT INTO capacity (hashrate_ghs, note, created_at) VALUES "
            "(1000000000000, 'bench', %d)" % int(time.time()))
    now = int(time.time())
    # (1) the webhook orders: pending, fresh (the janitor leaves them alone)
    wh_first = pending_orders(db, tip, webhooks, price, now,
                              ["cs_bench_%d" % k for k in range(webhooks)])
    events = os.path.join(var, "events.tsv")
    with open(events, "w") as f:
        for k in range(webhooks):
            oid = wh_first + k
            body = json.dumps({
                "id": "evt_bench_%d" % oid, "object": "event", "api_version": "2024-06-20",
                "created": now, "livemode": False, "type": "checkout.session.completed",
                "data": {"object": {
                    "id": "cs_bench_%d" % k, "object": "checkout.session",
                    "client_reference_id": str(oid), "metadata": {"order_id": str(oid)},
                    "mode": "payment", "status": "complete", "payment_status": "paid",
                    "amount_total": unit, "currency": "usd",
                    "payment_intent": "pi_bench_%d" % k}}}, separators=(",", ":"))
            f.write("%s\t%s\n" % (signed(body, now), body))
    # the janitor's orders: paid at the stand-in before the server starts
    # (the webhook part must not wait for it: Stripe's signatures are good
    # for 300 s), their webhooks dropped
    jan_first = wh_first + webhooks
    refs = []
    for k in range(janitor):
        s = session_for(standin, jan_first + k, unit, base)
        standin.pay(s["id"])
        refs.append(s["id"])
    if os.geteuid() == 0:
        subprocess.run("chown -R www-data: %s" % var, shell=True, check=True)
    apache = subprocess.Popen(["apache2", "-f", conf, "-DFOREGROUND"], start_new_session=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        env = dict(os.environ, BENCH_EVENTS=events, BENCH_THREADS="2",
                   BENCH_WEBHOOK_PATH="/api/webhooks/stripe",
                   BENCH_SIG_HEADER="Stripe-Signature")
        out = subprocess.run(["wrk", "-t2", "-c16", "-d%ds" % seconds, "--latency", "-s",
                              os.path.join(ROOT, "scripts", "bench_webhooks.lua"), base],
                             env=env, check=True, capture_output=True, text=True).stdout
        paid = sql(db, "SELECT COUNT(*) FROM orders WHERE provider_ref LIKE 'cs_bench_%' "
                       "AND status = 'paid'")[0][0]
        comms = sql(db, "SELECT COUNT(*) FROM commissions c JOIN orders o ON o.id = c.order_id "
                        "WHERE o.provider_ref LIKE 'cs_bench_%'")[0][0]
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
        p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
        print("Stripe webhooks (checkout.session.completed, signature verified, 10-level "
              "upline), wrk -t2 -c16 -d%ds:" % seconds)
        print("  %d orders paid end to end = %.0f webhooks/s; %d commission credits "
              "(%.1f per order); latency p50 %s, p99 %s%s"
              % (paid, paid / seconds, comms, comms / paid if paid else 0, p50, p99,
                 "; %s non-2xx answers" % non2xx.group(1) if non2xx else ""))
        if paid >= webhooks:
            print("  (all %d events were used: raise WEBHOOKS for a longer run)" % webhooks)

        # (2) the janitor: stale orders whose sessions were paid quietly.
        # The webhook orders wrk did not reach are closed first: the
        # stand-in has no session for them, and asking would only add 404s.
        sql(db, "UPDATE orders SET status = 'expired' WHERE status = 'pending'")
        first = pending_orders(db, tip, janitor, price, now - 3600, refs)
        if first != jan_first:
            sys.exit("bench_payments: orders were made meanwhile (%d, not %d)" % (first, jan_first))
        t0 = None
        deadline = time.time() + 180 + janitor / 20
        done = 0
        while time.time() < deadline:
            asked = sql(db, "SELECT COUNT(*) FROM payment_events WHERE source = 'janitor'")[0][0]
            if asked and t0 is None:
                t0 = time.time()
            done = sql(db, "SELECT COUNT(*) FROM orders WHERE id >= %d AND status = 'paid'"
                       % first)[0][0]
            if done >= janitor:
                break
            time.sleep(0.1)
        t1 = time.time()
        runs = sql(db, "SELECT items, finished_at - started_at FROM job_runs WHERE "
                       "job = 'payment-janitor' AND items > 0 ORDER BY id")
        # every order of the bench, webhook or janitor: one purchase each
        dups = sql(db, "SELECT COUNT(*) FROM (SELECT reference FROM transfers WHERE "
                       "kind = 'purchase' GROUP BY reference HAVING COUNT(*) > 1)")[0][0]
        dupc = sql(db, "SELECT COUNT(*) FROM (SELECT order_id FROM contracts WHERE order_id >= %d "
                       "GROUP BY order_id HAVING COUNT(*) > 1)" % first)[0][0]
        secs = (t1 - t0) if t0 else float("nan")
        print("payment janitor: %d stale pending Stripe orders, paid at the stand-in, webhooks "
              "dropped; the cron daemon's payment-janitor asks and settles each:" % janitor)
        print("  %d settled as paid in %.1f s = %.0f orders/s; duplicates: %d purchase, "
              "%d contract; job runs (orders, seconds): %s"
              % (done, secs, done / secs if t0 else 0, dups, dupc, runs))
        r = subprocess.run([ctl, "--db", db, "ledger", "verify"], capture_output=True, text=True)
        print("  " + (r.stdout.strip() or r.stderr.strip()).replace("\n", "\n  "))
    finally:
        apache.terminate()
        apache.wait(timeout=60)
        standin.stop()
        if not os.environ.get("KEEP"):
            subprocess.run(["rm", "-rf", var])
        else:
            print("VAR kept: " + var)


if __name__ == "__main__":
    main()
