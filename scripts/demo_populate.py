"""make demo's population (scripts/demo.sh): a throwaway Apache on the
demo VAR with the fake clock eight days back, then members, orders,
contracts, commissions, yield, identity checks and withdrawals made
through the API and deepminectl, the clock moved day by day. Prints the
demo member and staff credentials. Usage: demo_populate.py ROOT VAR CONF N"""
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import requests

root, var, conf, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
CTL = os.path.join(root, "build", "deepminectl")
PASSWORD = "Glacier-Pumpkin-Orbit-42"
DAY, HOUR = 86400, 3600
rng = random.Random(14)
clock_file = os.path.join(var, "demo-clock")
local_conf = os.path.join(var, "local.conf")


def set_clock(t):
    tmp = clock_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) + "\n")
    os.replace(tmp, clock_file)


def ctl(*args):
    r = subprocess.run([CTL, "--config", conf, "--clock-file", clock_file, "--test-mode"] +
                       list(args), capture_output=True, text=True)
    if r.returncode:
        raise SystemExit("demo: deepminectl %s failed: %s" % (" ".join(args), r.stderr))
    return r.stdout


def trc20_address(n):
    """A well-formed TRC-20 address of its own for member n (T + 33 base58)."""
    b58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    tail = ""
    while n:
        n, d = divmod(n, 58)
        tail = b58[d] + tail
    return "TDemo" + tail.rjust(29, "x")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


now = int(time.time())
start = (now - 8 * DAY) // DAY * DAY + 9 * HOUR
set_clock(start)
saved = open(local_conf).read() if os.path.exists(local_conf) else None
with open(local_conf, "w") as f:
    f.write("# make demo: the population's settings (restored afterwards)\n"
            "DeepMineTestMode on\nDeepMineClockFile %s\nDeepMineCron off\n"
            "DeepMineCommissionHold 3\n"
            "DeepMinePasswordHash 1 8\nDeepMineRateLimit register 100000/1m ip\n"
            "DeepMineRateLimit login 100000/1m ip\nDeepMineRateLimit api 1000000/1m member\n"
            % clock_file)
# the generated configuration with another port, for this run only
port = free_port()
text = open(conf).read()
text = re.sub(r"(?m)^Listen .*$", "Listen 127.0.0.1:%d" % port, text)
demo_conf = os.path.join(var, "demo-populate.conf")
with open(demo_conf, "w") as f:
    f.write(text)
# 2,000 TH/s: enough for the population, small enough that the sold part shows
ctl("capacity", "ensure", "--ghs", "2000000", "--note", "make demo capacity")
owner = ctl("staff", "ensure-owner", "--email", "owner@deepmine.local")
apache = subprocess.Popen(["apache2", "-f", demo_conf, "-DFOREGROUND"], start_new_session=True)
base = "http://127.0.0.1:%d" % port
try:
    for _ in range(200):
        try:
            requests.get(base + "/api/health", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.05)
    terms = requests.get(base + "/api/legal/terms").json()["version"]
    packages = requests.get(base + "/api/packages").json()["packages"]
    staff_email = "demo-staff@example.com"
    out = ctl("staff", "create", "--email", staff_email, "--role", "owner")
    staff_pw = re.search(r"^\s+password:\s+(\S+)$", out, re.M).group(1)
    st = requests.Session()
    # the configured public URL is the allowed origin (the served port)
    public = re.search(r"(?m)^\s*DeepMinePublicURL\s+(\S+)", text)
    st.headers["Origin"] = public.group(1).strip("\"") if public else base
    r = st.post(base + "/api/admin/auth/login", json={"email": staff_email, "password": staff_pw})
    r.raise_for_status()
    st.headers["X-CSRF-Token"] = r.json()["csrf_token"]

    members = []  # (id, code, email)

    def auth(m):
        """Bearer headers of member m, logged in now (on the moving clock)."""
        r = requests.post(base + "/api/auth/login",
                          json={"email": m[2], "password": PASSWORD, "return_tokens": True})
        r.raise_for_status()
        return {"Authorization": "Bearer " + r.json()["tokens"]["access_token"]}

    def staff_login():
        r = st.post(base + "/api/admin/auth/login", json={"email": staff_email, "password": staff_pw})
        r.raise_for_status()
        st.headers["X-CSRF-Token"] = r.json()["csrf_token"]

    def register(email, ref=None):
        body = {"email": email, "password": PASSWORD, "accept_terms": True,
                "terms_version": terms, "return_tokens": True}
        if ref:
            body["referral_code"] = ref
        r = requests.post(base + "/api/auth/register", json=body)
        if r.status_code != 201:
            raise SystemExit("demo: registering %s failed: %s" % (email, r.text))
        u = r.json()
        members.append((u["user"]["id"], u["user"]["referral_code"], email))
        return members[-1]

    register("demo@example.com")
    buyers = []
    for day in range(8):
        set_clock(start + day * DAY)
        for i in range(count // 8):
            set_clock(start + day * DAY + i * 97)
            # a tree: most under a recent member, some under the demo member
            parent = members[0] if rng.random() < 0.1 else rng.choice(members[-40:])
            m = register("member%d@example.com" % len(members), parent[1])
            if rng.random() < 0.45:
                buyers.append(m)
        for m in buyers[:]:
            if rng.random() < 0.7:
                continue
            buyers.remove(m)
            pkg = rng.choice(packages[:3])
            ctl("ledger", "adjust", "--user", str(m[0]), "--amount",
                str(pkg["price_micros"] + rng.choice([0, 20, 50, 120]) * 1000000),
                "--reason", "demo deposit")
            r = requests.post(base + "/api/orders", headers=auth(m),
                              json={"package_id": pkg["id"], "pay_from_balance": True})
            if r.status_code != 201:
                print("demo: an order was refused: %s" % r.text)
        # the day's hours of yield, then the due commission releases
        for h in range(24):
            ctl("jobs", "run", "accrual", "--period", str(start - 9 * HOUR + day * DAY + h * HOUR))
        ctl("jobs", "run", "commission-release")
    # identity checks: most buyers approved, a few pending; withdrawals
    set_clock(now - HOUR)
    rows = subprocess.run(["sqlite3", os.path.join(var, "deepmine.db"),
                           "SELECT user_id FROM contracts GROUP BY user_id ORDER BY user_id"],
                          capture_output=True, text=True).stdout.split()
    owners = [int(x) for x in rows]
    by_id = {m[0]: m for m in members}
    staff_login()
    for n, uid in enumerate(owners[:40]):
        status = "pending" if n % 5 == 4 else "approved"
        st.patch(base + "/api/admin/users/%d/kyc" % uid, json={"status": status}).raise_for_status()
    # e-mail confirmed for the members that withdraw (the demo skips the link)
    subprocess.run(["sqlite3", os.path.join(var, "deepmine.db"),
                    "UPDATE users SET email_verified_at = %d WHERE email_verified_at IS NULL" % (now - DAY)],
                   check=True)
    wds = []
    for n, uid in enumerate(owners[:40]):
        if n % 5 == 4:
            continue
        h = auth(by_id[uid])
        me = requests.get(base + "/api/me", headers=h).json()["user"]
        amount = min(me["balance_micros"], 20000000) // 1000000 * 1000000
        if amount < 10000000:
            continue
        r = requests.post(base + "/api/withdrawals", headers=h,
                          json={"amount_micros": amount, "network": "trc20",
                                "destination": trc20_address(uid)})
        if r.status_code == 201:
            wds.append(r.json()["withdrawal"]["id"])
        else:
            print("demo: a withdrawal was refused: %s" % r.text)
    for wid in wds[: len(wds) // 3]:
        st.post(base + "/api/admin/withdrawals/%d/approve" % wid,
                json={"txid": "demo-tx-%d" % wid})
    print(ctl("ledger", "verify").strip())
finally:
    apache.send_signal(signal.SIGWINCH)
    try:
        apache.wait(timeout=30)
    except subprocess.TimeoutExpired:
        apache.kill()
    if saved is None:
        os.remove(local_conf)
    else:
        with open(local_conf, "w") as f:
            f.write(saved)
    os.remove(demo_conf)
    os.remove(clock_file)

print()
orders = subprocess.run(["sqlite3", os.path.join(var, "deepmine.db"),
                         "SELECT COUNT(*) FROM orders WHERE status = 'paid'"],
                        capture_output=True, text=True).stdout.strip()
print("  demo population: %d members, %s paid orders with their contracts, %d withdrawals" % (
    len(members), orders, len(wds)))
print("  demo member:     demo@example.com / %s  (the root of the referral tree)" % PASSWORD)
print("                   memberN@example.com / %s  (every other member)" % PASSWORD)
print("  demo staff:      %s / %s  (role owner, /admin/)" % (staff_email, staff_pw))
print(owner.strip())
