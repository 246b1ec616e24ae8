/*
 * routes/auth.c — the /api/auth endpoints: registration, login, refresh, logout, e-mail
 * verification and password reset. Each handler: rate limit, parse and type
 * check the body, one core call, map the answer.
 *
 * Browsers get the session in cookies. A client that sends
 * "return_tokens": true also gets the tokens in the body (for
 * Authorization: Bearer and body-borne refresh).
 */
#include "dm_http.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "base/json.h"
#include "base/metrics.h"
#include "members/twofa.h"

/* Fields are capped well above any valid value, so a 10 KB string is a
 * clean 400 before any work. */
#define MAX_EMAIL_FIELD 320
#define MAX_PASSWORD_FIELD 1024
#define MAX_TOKEN_FIELD 256

static int answer_session(request_rec *r, int status, const dm_member *m, const dm_session *s,
                          int return_tokens)
{
    json_t *o = dm_json_own(r->pool, json_object());
    size_t len;
    const char *body;

    json_object_set_new(o, "user", dm_member_json(r->pool, &dm_g.svc, m));
    if (return_tokens) {
        json_object_set_new(o, "tokens",
                            json_pack("{s:s,s:s,s:I,s:s,s:s}", "access_token", s->access_token,
                                      "token_type", "Bearer", "expires_in",
                                      (json_int_t)DM_ACCESS_TTL, "refresh_token", s->refresh_token,
                                      "csrf_token", s->csrf_token));
    }
    dm_http_set_session_cookies(r, s);
    body = dm_json_dump(r->pool, o, &len);
    return dm_http_json(r, status, body, len);
}

/* Common start of every /api/auth handler: origin check, rate limit, body. */
static dm_err *begin(request_rec *r, const char *rule, json_t **body, dm_db **db)
{
    dm_err *e = dm_http_check_origin(r);

    if (!e && rule) {
        e = dm_http_rate_limit(r, rule, r->useragent_ip);
    }
    if (!e) {
        e = dm_http_read_json(r, body);
    }
    if (!e) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, db);
    }
    return e;
}

/* Where a login comes from, recorded with its refresh tokens. */
static void session_origin(request_rec *r, dm_session *s)
{
    memset(s, 0, sizeof(*s));
    s->ip = r->useragent_ip;
    s->user_agent = apr_table_get(r->headers_in, "User-Agent");
}

static int auth_register(request_rec *r, const dm_route_match *m)
{
    json_t *b;
    dm_db *db;
    dm_register_req req;
    dm_member mem = {0};
    dm_session s;
    int return_tokens = 0;
    dm_err *e = begin(r, "register", &b, &db);

    memset(&req, 0, sizeof(req));
    req.ip = r->useragent_ip;
    session_origin(r, &s);
    if (!e) {
        e = dm_json_get_string(r->pool, b, "email", 1, MAX_EMAIL_FIELD, &req.email, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "password", 1, MAX_PASSWORD_FIELD, &req.password, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "referral_code", 0, 64, &req.referral_code, NULL);
    }
    if (!e) {
        e = dm_json_get_bool(r->pool, b, "accept_terms", 1, &req.accept_terms, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "terms_version", 1, 64, &req.terms_version, NULL);
    }
    if (!e) {
        e = dm_json_get_bool(r->pool, b, "return_tokens", 0, &return_tokens, NULL);
    }
    if (!e) {
        e = dm_member_register(db, r->pool, &dm_g.svc, &req, &mem, &s);
    }
    return e ? dm_http_error(r, e) : answer_session(r, HTTP_CREATED, &mem, &s, return_tokens);
}

static int auth_login(request_rec *r, const dm_route_match *m)
{
    json_t *b;
    dm_db *db;
    const char *email = NULL, *password = NULL;
    dm_member mem = {0};
    dm_session s;
    int return_tokens = 0;
    dm_err *e = begin(r, "login", &b, &db);

    session_origin(r, &s);
    if (!e) {
        e = dm_json_get_string(r->pool, b, "email", 1, MAX_EMAIL_FIELD, &email, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "password", 1, MAX_PASSWORD_FIELD, &password, NULL);
    }
    if (!e) {
        e = dm_json_get_bool(r->pool, b, "return_tokens", 0, &return_tokens, NULL);
    }
    if (!e) {
        e = dm_member_login(db, r->pool, &dm_g.svc, email, password, r->useragent_ip, &mem, &s);
        if (e && (e->code == DM_E_UNAUTHORIZED || e->code == DM_E_FORBIDDEN)) {
            dm_metrics_inc(DM_M_LOGIN_FAILURES, "realm", "member", DM_ML_END);
        }
    }
    if (!e && s.challenge) {
        /* 2FA is on: no session yet (docs/api.md, docs/security.md) */
        return dm_http_send_json(r, HTTP_OK,
                                 json_pack("{s:b,s:s,s:I}", "two_factor_required", 1, "challenge",
                                           s.challenge, "expires_in",
                                           (json_int_t)DM_2FA_CHALLENGE_TTL));
    }
    return e ? dm_http_error(r, e) : answer_session(r, HTTP_OK, &mem, &s, return_tokens);
}

/* {challenge, code, return_tokens?}: the second step of a login with 2FA
 * on. Limited per address (login-2fa) and per member (login-2fa-member),
 * wrong codes included. */
static int auth_login_2fa(request_rec *r, const dm_route_match *m)
{
    json_t *b;
    dm_db *db;
    const char *challenge = NULL, *code = NULL;
    dm_member mem = {0};
    dm_session s;
    int64_t owner = 0;
    int return_tokens = 0;
    dm_err *e = begin(r, "login-2fa", &b, &db);

    session_origin(r, &s);
    if (!e) {
        e = dm_json_get_string(r->pool, b, "challenge", 1, MAX_TOKEN_FIELD, &challenge, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "code", 1, 64, &code, NULL);
    }
    if (!e) {
        e = dm_json_get_bool(r->pool, b, "return_tokens", 0, &return_tokens, NULL);
    }
    if (!e) {
        e = dm_2fa_challenge_owner(db, r->pool, dm_g.svc.keys, DM_2FA_MEMBER, challenge, &owner);
    }
    if (!e) {
        e = dm_http_rate_limit(
            r, "login-2fa-member",
            apr_psprintf(r->pool, "member:%" APR_INT64_T_FMT, (apr_int64_t)owner));
    }
    if (!e) {
        e = dm_member_login_2fa(db, r->pool, &dm_g.svc, challenge, code, &mem, &s);
    }
    return e ? dm_http_error(r, e) : answer_session(r, HTTP_OK, &mem, &s, return_tokens);
}

/* The refresh token: the dm_refresh cookie (then the request must pass the
 * CSRF check like any cookie-authenticated write), else the body's
 * "refresh_token". An empty body is fine with the cookie. */
static dm_err *refresh_token_of(request_rec *r, int *return_tokens, const char **token)
{
    json_t *b = NULL;
    const char *cookie = dm_http_cookie(r, "dm_refresh");
    dm_err *e = dm_http_check_origin(r);
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    int has_body =
        apr_table_get(r->headers_in, "Transfer-Encoding") || (cl && strcmp(cl, "0") != 0);

    *token = NULL;
    if (!e && has_body) {
        e = dm_http_read_json(r, &b);
        if (!e) {
            e = dm_json_get_string(r->pool, b, "refresh_token", 0, MAX_TOKEN_FIELD, token, NULL);
        }
        if (!e) {
            e = dm_json_get_bool(r->pool, b, "return_tokens", 0, return_tokens, NULL);
        }
    }
    if (!e && !*token && cookie) {
        e = dm_http_check_csrf(r);
        *token = cookie;
    }
    if (!e && !*token) {
        e = dm_err_make(r->pool, DM_E_UNAUTHORIZED, NULL, "no refresh token");
    }
    return e;
}

static int auth_refresh(request_rec *r, const dm_route_match *m)
{
    const char *token;
    dm_db *db;
    dm_member mem = {0};
    dm_session s;
    int return_tokens = 0;
    dm_err *e = refresh_token_of(r, &return_tokens, &token);

    session_origin(r, &s);
    if (!e) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
    }
    if (!e) {
        e = dm_member_refresh(db, r->pool, &dm_g.svc, token, &mem, &s);
    }
    if (e) {
        if (e->code == DM_E_UNAUTHORIZED || e->code == DM_E_FORBIDDEN) {
            dm_http_clear_session_cookies(r);
        }
        return dm_http_error(r, e);
    }
    return answer_session(r, HTTP_OK, &mem, &s, return_tokens);
}

static int auth_logout(request_rec *r, const dm_route_match *m)
{
    const char *token;
    dm_db *db;
    int return_tokens = 0;
    dm_err *e = refresh_token_of(r, &return_tokens, &token);
    static const char body[] = "{\"logged_out\":true}";

    if (!e) {
        e = dm_db_pool_acquire(dm_g.db, r->pool, &db);
    }
    if (!e) {
        e = dm_member_logout(db, r->pool, &dm_g.svc, token);
    }
    if (e && e->code != DM_E_UNAUTHORIZED) {
        return dm_http_error(r, e);
    }
    dm_http_clear_session_cookies(r);
    return dm_http_json(r, HTTP_OK, body, sizeof(body) - 1);
}

static int auth_verify_email(request_rec *r, const dm_route_match *m)
{
    json_t *b;
    dm_db *db;
    const char *token = NULL;
    static const char body[] = "{\"email_verified\":true}";
    dm_err *e = begin(r, "verify-email", &b, &db);

    if (!e) {
        e = dm_json_get_string(r->pool, b, "token", 1, MAX_TOKEN_FIELD, &token, NULL);
    }
    if (!e) {
        e = dm_member_verify_email(db, r->pool, &dm_g.svc, token);
    }
    return e ? dm_http_error(r, e) : dm_http_json(r, HTTP_OK, body, sizeof(body) - 1);
}

static int auth_reset(request_rec *r, const dm_route_match *m)
{
    json_t *b;
    dm_db *db;
    const char *email = NULL;
    static const char body[] = "{\"accepted\":true}";
    dm_err *e = begin(r, "password-reset", &b, &db);

    if (!e) {
        e = dm_json_get_string(r->pool, b, "email", 1, MAX_EMAIL_FIELD, &email, NULL);
    }
    if (!e) {
        e = dm_member_reset_request(db, r->pool, &dm_g.svc, email, r->useragent_ip);
    }
    return e ? dm_http_error(r, e) : dm_http_json(r, HTTP_ACCEPTED, body, sizeof(body) - 1);
}

static int auth_reset_confirm(request_rec *r, const dm_route_match *m)
{
    json_t *b;
    dm_db *db;
    const char *token = NULL, *password = NULL;
    static const char body[] = "{\"password_changed\":true}";
    dm_err *e = begin(r, "verify-email", &b, &db);

    if (!e) {
        e = dm_json_get_string(r->pool, b, "token", 1, MAX_TOKEN_FIELD, &token, NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "password", 1, MAX_PASSWORD_FIELD, &password, NULL);
    }
    if (!e) {
        e = dm_member_reset_confirm(db, r->pool, &dm_g.svc, token, password);
    }
    return e ? dm_http_error(r, e) : dm_http_json(r, HTTP_OK, body, sizeof(body) - 1);
}

/* {current_password, new_password, return_tokens?}: every login of the
 * member ends; the caller gets a fresh session (cookies, and tokens when
 * asked) in the answer. Counted against "login" per address. */
static int me_password(request_rec *r, const dm_route_match *m)
{
    json_t *b;
    dm_db *db;
    const char *current = NULL, *password = NULL;
    dm_member mem = {0};
    dm_session s;
    int return_tokens = 0;
    dm_err *e = dm_http_member_db(r, &db, &mem);

    session_origin(r, &s);
    if (!e) {
        e = dm_http_rate_limit(r, "login", r->useragent_ip);
    }
    if (!e) {
        e = dm_http_read_json(r, &b);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "current_password", 1, MAX_PASSWORD_FIELD, &current,
                               NULL);
    }
    if (!e) {
        e = dm_json_get_string(r->pool, b, "new_password", 1, MAX_PASSWORD_FIELD, &password, NULL);
    }
    if (!e) {
        e = dm_json_get_bool(r->pool, b, "return_tokens", 0, &return_tokens, NULL);
    }
    if (!e) {
        e = dm_member_change_password(db, r->pool, &dm_g.svc, mem.id, current, password, &mem, &s);
    }
    /* the policy names the field "password"; this endpoint calls it
     * new_password */
    if (e && e->field && strcmp(e->field, "password") == 0) {
        e = dm_err_make(r->pool, e->code, "new_password", "%s", e->message);
    }
    return e ? dm_http_error(r, e) : answer_session(r, HTTP_OK, &mem, &s, return_tokens);
}

const dm_route_def dm_routes_auth[] = {
    {"POST", "/api/auth/register", auth_register},
    {"POST", "/api/auth/login", auth_login},
    {"POST", "/api/auth/login/2fa", auth_login_2fa},
    {"POST", "/api/auth/refresh", auth_refresh},
    {"POST", "/api/auth/logout", auth_logout},
    {"POST", "/api/auth/verify-email", auth_verify_email},
    {"POST", "/api/auth/password-reset", auth_reset},
    {"POST", "/api/auth/password-reset/confirm", auth_reset_confirm},
    {"POST", "/api/me/password", me_password},
    {NULL, NULL, NULL},
};
