"""GET /api/packages and /api/packages/{id}: contract shape, caching with
ETag/304, invalidation when the catalogue changes, bad ids."""
import time

from conftest import error_of

FIELDS = {"id", "name", "hashrate_ths", "price_micros", "daily_yield_micros",
          "duration_days", "currency", "sold_out", "yield_mode", "fee_bp"}


def test_catalogue_lists_demo_packages_with_contract_fields(server):
    r = server.get("/api/packages")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    pk = r.json()["packages"]
    assert len(pk) == 6
    for p in pk:
        assert set(p) == FIELDS
        assert isinstance(p["id"], int)
        assert isinstance(p["price_micros"], int) and p["price_micros"] > 0
        assert isinstance(p["daily_yield_micros"], int)
        assert isinstance(p["duration_days"], int)
        assert p["currency"] == "USD"
    assert pk[0]["hashrate_ths"] == 0.5
    assert [p["name"] for p in pk][:2] == ["Trial 0.5 TH/s", "Starter 5 TH/s"]
    rows = server.sql("SELECT price_micros FROM packages WHERE active = 1 ORDER BY sort_order")
    assert [p["price_micros"] for p in pk] == [row[0] for row in rows]


def test_catalogue_has_etag_and_answers_304(server):
    r = server.get("/api/packages")
    etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    r2 = server.get("/api/packages", headers={"If-None-Match": etag})
    assert r2.status_code == 304
    assert r2.content == b""
    assert r2.headers["ETag"] == etag
    r3 = server.get("/api/packages", headers={"If-None-Match": '"other"'})
    assert r3.status_code == 200
    assert r3.content == r.content


def test_head_has_headers_and_no_body(server):
    r = server.request("HEAD", "/api/packages")
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["Content-Length"]) == len(server.get("/api/packages").content)


def test_one_package(server):
    r = server.get("/api/packages/2")
    assert r.status_code == 200
    p = r.json()["package"]
    assert set(p) == FIELDS
    assert p["id"] == 2
    assert p["name"] == "Starter 5 TH/s"
    assert p["hashrate_ths"] == 5
    assert "ETag" in r.headers


def test_bad_package_ids_are_400_invalid_id(server):
    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999", "1e3", "%20", "+1"]:
        r = server.get("/api/packages/" + bad)
        assert r.status_code == 400, bad
        err = error_of(r)
        assert err["code"] == "invalid" and err["field"] == "id", (bad, err)


def test_unknown_package_is_404(server):
    r = server.get("/api/packages/999")
    assert r.status_code == 404
    assert error_of(r)["code"] == "not_found"


def wait_for(predicate, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_catalogue_change_is_served_by_every_child_within_seconds(new_server):
    s = new_server(mpm="prefork").start()
    before = s.get("/api/packages")
    etag = before.headers["ETag"]
    # A change made outside the server (as deepminectl or an operator would).
    s.sql("UPDATE packages SET active = 0 WHERE id = 3")
    s.sql("UPDATE packages SET name = 'Basic Plus' WHERE id = 4")
    # Each child looks at the catalogue's generation at most once a second
    # (DM_CATALOGUE_REVALIDATE): a child that looked just before the change
    # serves the old catalogue until its second is up, whichever requests
    # the other children answered meanwhile. Past that second every child
    # must answer the new one, on its next request.
    time.sleep(1.2)

    def all_fresh():
        # several requests: with prefork they land on different children
        for _ in range(8):
            r = s.get("/api/packages", headers={"Connection": "close"})
            names = [p["name"] for p in r.json()["packages"]]
            if len(names) != 5 or "Basic Plus" not in names or r.headers["ETag"] == etag:
                return False
        return True
    assert wait_for(all_fresh), "catalogue change not served within 5 s"
    r = s.get("/api/packages/3")
    assert r.status_code == 404
    r = s.get("/api/packages", headers={"If-None-Match": etag})
    assert r.status_code == 200
