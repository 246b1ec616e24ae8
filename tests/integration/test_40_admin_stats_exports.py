"""Staff statistics (GET /api/admin/stats from the daily rollup), the CSV
exports (streamed, RFC 4180, formula cells prefixed, attachment, audited),
the contract list's user_id/status filters, every list endpoint refusing an
unknown query parameter, and the member detail's contracts and orders.
Money scenarios end with `deepminectl ledger verify`."""
import csv
import io

import pytest

from conftest import Server, assert_clean_log, bearer, error_of, register_member, staff

FAST = ("DeepMinePasswordHash 1 8\n"
        "DeepMineRateLimit register 10000/1m ip\n"
        "DeepMineRateLimit login 10000/1m ip\n"
        "DeepMineRateLimit api 100000/1m member\n")
DAY = 86400
T0 = 1790208000  # 2026-09-24T00:00:00Z, a Thursday
HYPERLINK = '=HYPERLINK("http://evil.example/?x=1","click, here")'


@pytest.fixture(scope="module")
def srv():
    s = Server(mpm="event", local_conf=FAST, clock=T0 + 3600)
    s.start()
    s.terms = s.get("/api/legal/terms").json()["version"]
    s.packages = s.get("/api/packages").json()["packages"]
    # day 0: two members, one buys the first package from its balance
    a = register_member(s, "st")
    b = register_member(s, "st")
    s.a, s.b = a["user"]["id"], b["user"]["id"]
    s.ctl("ledger", "adjust", "--user", str(s.a), "--amount", "100000000", "--reason", "test")
    r = s.request("POST", "/api/orders", headers=bearer(a),
                  json={"package_id": s.packages[0]["id"], "pay_from_balance": True})
    assert r.status_code == 201, r.text
    s.order = r.json()["order"]
    # day 2: a third member
    s.set_clock(T0 + 2 * DAY + 60)
    s.c = register_member(s, "st")["user"]["id"]
    s.sql("UPDATE users SET name = '%s' WHERE id = %d" % (HYPERLINK.replace("'", "''"), s.b))
    yield s
    s.stop()
    try:
        assert_clean_log(s)
    finally:
        s.cleanup()


def test_stats_are_the_days_sums_and_levels(srv):
    b = staff(srv, "finance")
    r = b.get(srv.url + "/api/admin/stats?from=2026-09-23T00:00:00Z&to=2026-09-26T12:00:00Z")
    assert r.status_code == 200, r.text
    st = r.json()
    price = srv.packages[0]["price_micros"]
    ghs = round(srv.packages[0]["hashrate_ths"] * 1000)
    assert st["buckets"] == ["2026-09-23", "2026-09-24", "2026-09-25", "2026-09-26"]
    assert st["bucket"] == "day"
    assert st["signups"] == [0, 2, 0, 1]
    assert st["orders_paid"] == [0, 1, 0, 0]
    assert st["contracts_active"] == [0, 1, 1, 1]
    assert st["hashrate_sold_ghs"] == [0, ghs, ghs, ghs]
    assert st["capacity_ghs"] == [0] + [1000000000] * 3  # set on 09-24
    assert st["withdrawals_requested"] == [0, 0, 0, 0]
    usd = st["currencies"]["USD"]
    assert usd["revenue_micros"] == [0, price, 0, 0]
    assert usd["withdrawals_paid_micros"] == [0, 0, 0, 0]
    srv_verify(srv)


def test_stats_by_week_sums_flows_and_keeps_levels_at_the_week_end(srv):
    b = staff(srv, "owner")
    r = b.get(srv.url + "/api/admin/stats?from=2026-09-20T00:00:00Z&to=2026-09-29T00:00:00Z&bucket=week")
    assert r.status_code == 200, r.text
    st = r.json()
    # 09-20 is a Sunday: its own week, then Mon 09-21 .. Sun 09-27, then Mon 09-28
    assert st["buckets"] == ["2026-09-20", "2026-09-21", "2026-09-28"]
    assert st["signups"] == [0, 3, 0]
    assert st["contracts_active"] == [0, 1, 1]


def test_stats_days_counts_back_from_today(srv):
    r = staff(srv, "owner").get(srv.url + "/api/admin/stats?days=3")
    assert r.status_code == 200, r.text
    assert r.json()["buckets"] == ["2026-09-24", "2026-09-25", "2026-09-26"]
    assert r.json()["signups"] == [2, 0, 1]


@pytest.mark.parametrize("query,field", [
    ("?days=0", "days"), ("?days=3661", "days"), ("?bucket=year", "bucket"),
    ("?days=3&from=2026-09-01T00:00:00Z", "days"), ("?from=2026-09-10T00:00:00Z&to=2026-09-01T00:00:00Z", "to"),
    ("?range=90", "range")])
def test_stats_refuses_bad_parameters_naming_them(srv, query, field):
    r = staff(srv, "owner").get(srv.url + "/api/admin/stats" + query)
    assert r.status_code == 400
    assert error_of(r)["code"] == "invalid"
    assert error_of(r)["field"] == field


def test_stats_are_for_owner_and_finance_only(srv):
    for role in ("support", "kyc"):
        assert staff(srv, role).get(srv.url + "/api/admin/stats").status_code == 403


def parse_csv(text):
    return list(csv.reader(io.StringIO(text, newline="")))


def test_users_export_is_an_audited_attachment_with_formulas_defused(srv):
    b = staff(srv, "support")
    r = b.get(srv.url + "/api/admin/export/users.csv")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/csv; charset=utf-8")
    assert r.headers["Content-Disposition"] == 'attachment; filename="users-2026-09-26.csv"'
    assert r.headers["Cache-Control"] == "no-store"
    assert r.text.endswith("\r\n")
    rows = parse_csv(r.text)
    assert rows[0] == ["id", "email", "name", "referral_code", "referrer_id", "status",
                       "vip_level", "kyc_status", "created_at"]
    assert [row[0] for row in rows[1:]] == [str(srv.c), str(srv.b), str(srv.a)]
    named = rows[2]
    # the formula is text for a spreadsheet: a leading quote, then as it was
    assert named[2] == "'" + HYPERLINK
    # RFC 4180 on the wire: quoted (a comma and quotes inside), quotes doubled
    assert '"\'=HYPERLINK(""http://evil.example/?x=1"",""click, here"")"' in r.text
    audit = staff(srv, "owner").get(srv.url + "/api/admin/audit?action=export.users").json()["entries"]
    assert len(audit) >= 1 and audit[0]["action"] == "export.users"


def test_orders_export_takes_the_list_filters(srv):
    b = staff(srv, "finance")
    r = b.get(srv.url + "/api/admin/export/orders.csv?user_id=%d&status=paid" % srv.a)
    assert r.status_code == 200, r.text
    rows = parse_csv(r.text)
    head = rows[0]
    assert rows[1][head.index("id")] == str(srv.order["id"])
    assert rows[1][head.index("amount_micros")] == str(srv.packages[0]["price_micros"])
    assert len(rows) == 2
    none = b.get(srv.url + "/api/admin/export/orders.csv?user_id=%d" % srv.b)
    assert none.status_code == 200 and none.text == ""


def test_export_refuses_an_unknown_filter_before_any_byte(srv):
    r = staff(srv, "finance").get(srv.url + "/api/admin/export/withdrawals.csv?state=pending")
    assert r.status_code == 400
    assert error_of(r)["field"] == "state"


def test_exports_follow_the_role_table(srv):
    assert staff(srv, "support").get(srv.url + "/api/admin/export/transfers.csv").status_code == 403
    assert staff(srv, "kyc").get(srv.url + "/api/admin/export/users.csv").status_code == 403
    assert staff(srv, "finance").get(srv.url + "/api/admin/export/transfers.csv").status_code == 200


def test_a_large_export_is_streamed_in_batches_whole(new_server):
    s = new_server(local_conf=FAST).start()
    s.benchgen("members", "--count", "650", "--shape", "random", "--seed", "4")
    r = staff(s, "owner").get(s.url + "/api/admin/export/users.csv", stream=True)
    assert r.status_code == 200
    assert "Content-Length" not in r.headers  # sent as it is made, chunked
    assert r.headers.get("Transfer-Encoding") == "chunked"
    rows = parse_csv(r.content.decode())
    ids = [int(x[0]) for x in rows[1:]]
    assert len(ids) == 650 and ids == sorted(ids, reverse=True) and len(set(ids)) == 650


def test_admin_contracts_filter_by_member_and_status(srv):
    b = staff(srv, "support")
    mine = b.get(srv.url + "/api/admin/contracts?user_id=%d" % srv.a).json()["contracts"]
    assert [c["user_id"] for c in mine] == [srv.a]
    assert b.get(srv.url + "/api/admin/contracts?user_id=%d" % srv.b).json()["contracts"] == []
    assert len(b.get(srv.url + "/api/admin/contracts?status=active&user_id=%d" % srv.a).json()["contracts"]) == 1
    assert b.get(srv.url + "/api/admin/contracts?status=refunded").json()["contracts"] == []
    r = b.get(srv.url + "/api/admin/contracts?status=paused")
    assert r.status_code == 400 and error_of(r)["field"] == "status"
    r = b.get(srv.url + "/api/admin/contracts?user_id=x")
    assert r.status_code == 400 and error_of(r)["field"] == "user_id"


STAFF_LISTS = ["/api/admin/users", "/api/admin/audit", "/api/admin/transfers",
               "/api/admin/withdrawals", "/api/admin/orders", "/api/admin/contracts",
               "/api/admin/commissions", "/api/admin/flags", "/api/admin/pool-payouts",
               "/api/admin/email", "/api/admin/email-suppressions", "/api/admin/jobs"]
MEMBER_LISTS = ["/api/orders", "/api/contracts", "/api/withdrawals", "/api/ledger",
                "/api/referrals", "/api/referrals/commissions", "/api/earnings"]


@pytest.mark.parametrize("path", STAFF_LISTS)
def test_every_staff_list_refuses_an_unknown_query_parameter(srv, path):
    b = staff(srv, "owner")
    assert b.get(srv.url + path + "?limit=5").status_code == 200
    r = b.get(srv.url + path + "?limit=5&sort=id")
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "invalid" and err["field"] == "sort"


@pytest.mark.parametrize("path", MEMBER_LISTS)
def test_every_member_list_refuses_an_unknown_query_parameter(srv, path):
    h = bearer(register_member(srv, "lq"))
    assert srv.get(path, headers=h).status_code == 200
    r = srv.get(path + "?pagesize=10", headers=h)
    assert r.status_code == 400, r.text
    assert error_of(r)["field"] == "pagesize"


def test_member_detail_shows_contracts_and_orders(srv):
    d = staff(srv, "kyc").get(srv.url + "/api/admin/users/%d" % srv.a).json()
    assert [c["order_id"] for c in d["contracts"]] == [srv.order["id"]]
    assert [o["id"] for o in d["orders"]] == [srv.order["id"]]
    assert d["contracts_next_cursor"] is None and d["orders_next_cursor"] is None
    e = staff(srv, "kyc").get(srv.url + "/api/admin/users/%d" % srv.b).json()
    assert e["contracts"] == [] and e["orders"] == []


def srv_verify(s):
    r = s.ctl("ledger", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_stats_by_month_cut_by_the_range(srv):
    # (to 09-25: the tests above register members on 09-26)
    r = staff(srv, "finance").get(
        srv.url + "/api/admin/stats?from=2026-08-30T00:00:00Z&to=2026-09-25T00:00:00Z&bucket=month")
    assert r.status_code == 200, r.text
    st = r.json()
    assert st["buckets"] == ["2026-08-30", "2026-09-01"]
    assert st["signups"] == [0, 2]
    assert st["orders_paid"] == [0, 1]
    assert st["contracts_active"] == [0, 1]
