/*
 * kyc_events.c — see kyc_events.h.
 *
 * The order of work for one event: (1) seen before? then nothing (a fast
 * answer to a replay); then, in one transaction: (2) the member and their
 * provider state are read; (3) the decision (apply, stale, recorded) is
 * made; (4) the event row is inserted (UNIQUE plugin, event id: a
 * concurrent delivery of the same event finds it there and changes
 * nothing); (5) an applied status goes through the one status function,
 * dm_kyc_apply_status (audit row, e-mail), inside the same transaction;
 * (6) the member's provider state is written. All of it commits together.
 */
#include "kyc/kyc_events.h"

#include <apr_strings.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "kyc/kyc.h"
#include "members/members.h"
#include "plugins/kyc.h"

#define POLL_BATCH 200

static int64_t poll_after = DM_KYC_POLL_AFTER_DEFAULT_S;

void dm_kyc_poll_set_after(int64_t seconds)
{
    poll_after = seconds > 0 ? seconds : DM_KYC_POLL_AFTER_DEFAULT_S;
}

int64_t dm_kyc_poll_after(void)
{
    return poll_after;
}

static const char *status_name(dm_kyc_status s)
{
    switch (s) {
    case DM_KYC_APPROVED:
        return "approved";
    case DM_KYC_REJECTED:
        return "rejected";
    case DM_KYC_NEEDS_REVIEW:
        return "needs_review";
    case DM_KYC_PENDING:
        return "pending";
    case DM_KYC_RESUBMISSION:
        return "resubmission";
    case DM_KYC_EXPIRED:
        return "expired";
    case DM_KYC_IGNORED:
        break;
    }
    return "ignored";
}

/* users.kyc_status for a provider's verdict (kyc.h): needs review is the
 * staff queue's "review", expired is "none" (the member may start again). */
static const char *member_status(dm_kyc_status s)
{
    switch (s) {
    case DM_KYC_APPROVED:
        return DM_KYC_S_APPROVED;
    case DM_KYC_REJECTED:
        return DM_KYC_S_REJECTED;
    case DM_KYC_RESUBMISSION:
        return DM_KYC_S_RESUBMISSION;
    case DM_KYC_NEEDS_REVIEW:
        return DM_KYC_S_REVIEW;
    case DM_KYC_PENDING:
        return DM_KYC_S_PENDING;
    case DM_KYC_EXPIRED:
        return DM_KYC_S_NONE;
    case DM_KYC_IGNORED:
        break;
    }
    return NULL;
}

/* The one place a provider's verdict changes a member: inside the caller's
 * transaction. */
static dm_err *change_status(dm_db *db, apr_pool_t *p, const char *plugin, int64_t user_id,
                             dm_kyc_status s, const char *reason, dm_member *out)
{
    dm_kyc_actor who = {0, apr_pstrcat(p, "provider:", plugin, NULL), NULL};

    return dm_kyc_apply_status(db, p, &who, user_id, member_status(s), reason, out, NULL);
}

typedef struct pstate {
    int found;
    const char *plugin;
    const char *provider_ref;
    const char *verdict;
    int64_t newest_ms;
    int pending; /* pending_since is set */
    int64_t pending_since;
} pstate;

static dm_err *read_state(dm_db *db, apr_pool_t *p, int64_t user_id, pstate *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT plugin, provider_ref, verdict, newest_ms, pending_since "
                              "FROM kyc_provider_state WHERE user_id = ?",
                              &st);

    memset(out, 0, sizeof(*out));
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, user_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        out->found = 1;
        out->plugin = dm_stmt_dup_text(st, p, 0);
        out->provider_ref = dm_stmt_dup_text(st, p, 1);
        out->verdict = dm_stmt_dup_text(st, p, 2);
        out->newest_ms = dm_stmt_int64(st, 3);
        out->pending = !dm_stmt_is_null(st, 4);
        out->pending_since = dm_stmt_int64(st, 4);
    }
    dm_stmt_done(st);
    return e;
}

/* The event seen before: its outcome, or NULL. */
static dm_err *seen(dm_db *db, apr_pool_t *p, const char *plugin, const char *event_id,
                    const char **outcome)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p, "SELECT outcome FROM kyc_events WHERE plugin = ? AND event_id = ?", &st);

    *outcome = NULL;
    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, plugin);
    dm_stmt_bind_str(st, 2, event_id);
    e = dm_stmt_step(st, p, &row);
    if (!e && row) {
        *outcome = dm_stmt_dup_text(st, p, 0);
    }
    dm_stmt_done(st);
    return e;
}

typedef struct record {
    const char *plugin;
    const char *event_id;
    int64_t user_id; /* 0: none */
    const char *status;
    const char *provider_ref; /* NULL: none */
    int64_t occurred_ms;
    const char *source;
    const char *outcome;
    int64_t now;
    /* the member's provider state to write (user_id != 0 and write_state) */
    int write_state;
    const char *verdict;
    int64_t newest_ms;
    int pending; /* set pending_since (kept when already pending) */
    int timed;   /* occurred_ms is the provider's time (not ours, not unknown) */
} record;

static dm_err *insert_event(dm_db *db, apr_pool_t *p, const record *r, int *inserted)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "INSERT INTO kyc_events (plugin, event_id, user_id, status, "
                              "provider_ref, occurred_at_ms, source, outcome, received_at) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                              "ON CONFLICT (plugin, event_id) DO NOTHING",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_str(st, 1, r->plugin);
    dm_stmt_bind_str(st, 2, r->event_id);
    if (r->user_id) {
        dm_stmt_bind_int64(st, 3, r->user_id);
    } else {
        dm_stmt_bind_null(st, 3);
    }
    dm_stmt_bind_str(st, 4, r->status);
    dm_stmt_bind_str(st, 5, r->provider_ref);
    dm_stmt_bind_int64(st, 6, r->occurred_ms);
    dm_stmt_bind_str(st, 7, r->source);
    dm_stmt_bind_str(st, 8, r->outcome);
    dm_stmt_bind_int64(st, 9, r->now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    *inserted = !e && dm_db_changes(db) > 0;
    return e;
}

static dm_err *write_state(dm_db *db, apr_pool_t *p, const record *r)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(
        db, p,
        "INSERT INTO kyc_provider_state (user_id, plugin, provider_ref, verdict, newest_ms, "
        "pending_since, polled_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, "
        "CASE WHEN ?6 <> 0 THEN ?7 END, NULL, ?7) "
        "ON CONFLICT (user_id) DO UPDATE SET "
        "provider_ref = COALESCE(?3, CASE WHEN kyc_provider_state.plugin = ?2 "
        "THEN kyc_provider_state.provider_ref END), "
        "plugin = ?2, verdict = ?4, newest_ms = MAX(kyc_provider_state.newest_ms, ?5), "
        "pending_since = CASE WHEN ?6 <> 0 THEN COALESCE(kyc_provider_state.pending_since, ?7) "
        "END, polled_at = CASE WHEN ?6 <> 0 THEN kyc_provider_state.polled_at END, "
        "updated_at = ?7",
        &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, r->user_id);
    dm_stmt_bind_str(st, 2, r->plugin);
    dm_stmt_bind_str(st, 3, r->provider_ref);
    dm_stmt_bind_str(st, 4, r->verdict);
    dm_stmt_bind_int64(st, 5, r->newest_ms);
    dm_stmt_bind_int64(st, 6, r->pending);
    dm_stmt_bind_int64(st, 7, r->now);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* Writes the event and (when asked) the member's state in one
 * transaction. *inserted 0: a concurrent delivery recorded it first. */
static dm_err *record_event(dm_db *db, apr_pool_t *p, const record *r, int *inserted)
{
    dm_err *e = dm_db_begin(db, p);

    if (!e) {
        e = insert_event(db, p, r, inserted);
    }
    if (!e && *inserted && r->write_state) {
        e = write_state(db, p, r);
    }
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
    }
    return e;
}

static char *str_dup(apr_pool_t *p, dm_str s)
{
    return s.len ? apr_pstrmemdup(p, s.ptr, s.len) : NULL;
}

/* What an event does to a member whose status is `now_status` and whose
 * provider verdict so far is `verdict` (NULL: none): 1 apply, 0 record. */
static int applies(dm_kyc_status s, const char *now_status, const char *verdict)
{
    switch (s) {
    case DM_KYC_APPROVED:
    case DM_KYC_REJECTED:
    case DM_KYC_RESUBMISSION:
    case DM_KYC_EXPIRED:
        return 1;
    case DM_KYC_NEEDS_REVIEW:
        /* a person decides, but a needs-review never undoes an approval */
        return strcmp(now_status, DM_KYC_S_APPROVED) != 0;
    case DM_KYC_PENDING:
        /* opens a case; never reopens a decision, except a resubmission */
        return strcmp(now_status, "none") == 0 || strcmp(now_status, "pending") == 0 ||
               (verdict &&
                (strcmp(verdict, "resubmission") == 0 || strcmp(verdict, "expired") == 0));
    case DM_KYC_IGNORED:
        break;
    }
    return 0;
}

/* Steps 2 to 6 (the header comment), in the caller's transaction.
 * DM_E_NOT_FOUND: no such member. */
static dm_err *decide_and_record(dm_db *db, apr_pool_t *p, const dm_kyc_event *ev, record *r,
                                 dm_kyc_applied *out)
{
    pstate ps;
    dm_member m;
    const char *reason = str_dup(p, ev->reason);
    int inserted = 0, apply = 0;
    dm_err *e = dm_member_get(db, p, r->user_id, &m);

    if (!e) {
        e = read_state(db, p, r->user_id, &ps);
    }
    if (e) {
        return e;
    }
    out->kyc_status = m.kyc_status;
    r->write_state = 1;
    r->verdict = ps.found ? ps.verdict : "none";
    r->newest_ms = ps.found ? ps.newest_ms : 0;
    if (r->timed && ps.found && strcmp(ps.plugin, r->plugin) == 0 &&
        r->occurred_ms < ps.newest_ms) {
        /* older than what the member's status already reflects */
        r->outcome = "stale";
        r->write_state = 0;
    } else if (applies(ev->status, m.kyc_status, ps.found ? ps.verdict : NULL)) {
        apply = 1;
        r->outcome = "applied";
        r->verdict = r->status;
        if (r->timed && r->occurred_ms > r->newest_ms) {
            r->newest_ms = r->occurred_ms;
        }
        r->pending = ev->status == DM_KYC_PENDING;
    } else {
        /* kept, with the reference the polling job may need, no change */
        r->outcome = "recorded";
        r->pending = ps.found && ps.pending;
    }
    out->outcome = r->outcome;
    e = insert_event(db, p, r, &inserted);
    if (!e && !inserted) {
        /* a concurrent delivery of this event was first */
        out->duplicate = 1;
        return seen(db, p, r->plugin, r->event_id, &out->outcome);
    }
    if (!e && apply) {
        e = change_status(db, p, r->plugin, r->user_id, ev->status, reason, &m);
        if (!e) {
            out->kyc_status = m.kyc_status;
        }
    }
    if (!e && r->write_state) {
        e = write_state(db, p, r);
    }
    return e;
}

dm_err *dm_kyc_event_apply(dm_db *db, apr_pool_t *p, const char *plugin, const dm_kyc_event *ev,
                           const char *source, int64_t now, dm_kyc_applied *out)
{
    record r;
    char *end = NULL;
    int inserted = 0;
    dm_err *e;

    memset(out, 0, sizeof(*out));
    memset(&r, 0, sizeof(r));
    r.plugin = plugin;
    r.status = status_name(ev->status);
    r.provider_ref = str_dup(p, ev->provider_ref);
    r.occurred_ms = ev->occurred_at_ms > 0 ? ev->occurred_at_ms : now * 1000;
    /* Only the provider's own clock orders its events: an event without a
     * time, and the start of a flow (our clock), are applied in arrival
     * order and never make a provider's event stale. */
    r.timed = ev->occurred_at_ms > 0 && strcmp(source, "start") != 0;
    r.source = source;
    r.now = now;
    r.event_id = str_dup(p, ev->event_id);
    if (!r.event_id) {
        r.event_id = apr_psprintf(p, "%s/%s/%s/%" APR_INT64_T_FMT, source,
                                  r.provider_ref ? r.provider_ref : "-", r.status,
                                  (apr_int64_t)ev->occurred_at_ms);
    }
    if (strlen(r.event_id) > 255) {
        return dm_err_make(p, DM_E_INVALID, "event_id", "the provider's event id is too long");
    }
    e = seen(db, p, plugin, r.event_id, &out->outcome);
    if (e || out->outcome) {
        out->duplicate = out->outcome != NULL;
        return e;
    }
    if (ev->status == DM_KYC_IGNORED) {
        r.outcome = "ignored";
        out->outcome = r.outcome;
        e = record_event(db, p, &r, &inserted);
        out->duplicate = !e && !inserted;
        return e;
    }
    if (ev->member_id.len == 0 || ev->member_id.len > 19 || ev->member_id.ptr[0] < '1' ||
        ev->member_id.ptr[0] > '9') {
        return dm_err_make(p, DM_E_INVALID, "member_id",
                           "the provider's event names no member id of ours");
    }
    r.user_id = strtoll(apr_pstrmemdup(p, ev->member_id.ptr, ev->member_id.len), &end, 10);
    if (!end || *end != '\0' || r.user_id <= 0) {
        return dm_err_make(p, DM_E_INVALID, "member_id",
                           "the provider's event names no member id of ours");
    }
    e = dm_db_begin(db, p);
    if (e) {
        return e;
    }
    e = decide_and_record(db, p, ev, &r, out);
    if (!e) {
        e = dm_db_commit(db, p);
    }
    if (e) {
        dm_db_rollback(db);
        if (e->code == DM_E_NOT_FOUND) {
            /* no member of ours: recorded, answered, nothing else */
            r.user_id = 0;
            r.write_state = 0;
            r.outcome = "unknown_member";
            out->outcome = r.outcome;
            out->kyc_status = NULL;
            e = record_event(db, p, &r, &inserted);
            out->duplicate = !e && !inserted;
        }
        return e;
    }
    if (!out->duplicate) {
        dm_log(DM_L_INFO,
               "KYC %s event %s (%s, %s) for member %" APR_INT64_T_FMT ": %s, status -> %s", plugin,
               r.event_id, r.status, source, (apr_int64_t)r.user_id, r.outcome, out->kyc_status);
    }
    return NULL;
}

dm_err *dm_kyc_provider_started(dm_db *db, apr_pool_t *p, const char *plugin, int64_t user_id,
                                const char *provider_ref, int64_t now)
{
    dm_kyc_event ev;
    dm_kyc_applied res;
    const char *member = apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)user_id);

    memset(&ev, 0, sizeof(ev));
    ev.size = sizeof(ev);
    ev.status = DM_KYC_PENDING;
    ev.member_id.ptr = member;
    ev.member_id.len = strlen(member);
    ev.reason.ptr = "";
    ev.provider_ref.ptr = provider_ref ? provider_ref : "";
    ev.provider_ref.len = provider_ref ? strlen(provider_ref) : 0;
    ev.occurred_at_ms = now * 1000;
    ev.event_id.ptr =
        apr_psprintf(p, "start/%s/%" APR_INT64_T_FMT, ev.provider_ref.ptr, (apr_int64_t)now);
    ev.event_id.len = strlen(ev.event_id.ptr);
    return dm_kyc_event_apply(db, p, plugin, &ev, "start", now, &res);
}

/* ---- the polling job ---- */

typedef struct due_case {
    int64_t user_id;
    const char *plugin;
    const char *provider_ref;
    int64_t polled_at; /* 0: never */
} due_case;

static dm_err *due_cases(dm_db *db, apr_pool_t *p, int64_t now, apr_array_header_t *out)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(db, p,
                              "SELECT user_id, plugin, provider_ref, COALESCE(polled_at, 0) "
                              "FROM kyc_provider_state WHERE pending_since IS NOT NULL AND "
                              "pending_since <= ? AND provider_ref IS NOT NULL AND "
                              "COALESCE(polled_at, 0) <= ? ORDER BY pending_since, user_id "
                              "LIMIT ?",
                              &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, now - poll_after);
    dm_stmt_bind_int64(st, 2, now - poll_after);
    dm_stmt_bind_int64(st, 3, POLL_BATCH);
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        due_case *d = apr_array_push(out);
        d->user_id = dm_stmt_int64(st, 0);
        d->plugin = dm_stmt_dup_text(st, p, 1);
        d->provider_ref = dm_stmt_dup_text(st, p, 2);
        d->polled_at = dm_stmt_int64(st, 3);
    }
    dm_stmt_done(st);
    return e;
}

static dm_err *mark_polled(dm_db *db, apr_pool_t *p, int64_t user_id, int64_t now)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e =
        dm_db_prepare(db, p, "UPDATE kyc_provider_state SET polled_at = ? WHERE user_id = ?", &st);

    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, now);
    dm_stmt_bind_int64(st, 2, user_id);
    e = dm_stmt_step(st, p, &row);
    dm_stmt_done(st);
    return e;
}

/* The least seconds between two questions about one case of plugin pl. */
static int64_t every_of(const dm_loaded_plugin *pl)
{
    const char *v = dm_plugins_setting(pl, "poll_every_s");
    char *end = NULL;
    long long s = v ? strtoll(v, &end, 10) : 0;

    if (!v || !end || *end || s < poll_after) {
        return poll_after;
    }
    return (int64_t)s;
}

dm_err *dm_kyc_poll_run(dm_db *db, apr_pool_t *p, const dm_plugin_host *h, int64_t now,
                        dm_kyc_poll_stats *out)
{
    apr_array_header_t *due = apr_array_make(p, 16, sizeof(due_case));
    dm_err *e;

    memset(out, 0, sizeof(*out));
    e = due_cases(db, p, now, due);
    for (int i = 0; !e && i < due->nelts; i++) {
        const due_case *d = &APR_ARRAY_IDX(due, i, due_case);
        const dm_loaded_plugin *pl = h ? dm_plugins_get(h, d->plugin) : NULL;
        const char *member = apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)d->user_id);
        dm_kyc_event ev;
        dm_kyc_applied res;
        dm_message msg;
        dm_status st;

        if (!pl || !pl->initialised || !dm_kyc_can_query(pl) ||
            (d->polled_at && now - d->polled_at < every_of(pl))) {
            continue;
        }
        /* asked once per period whatever the answer: a failing provider is
         * not hammered */
        e = mark_polled(db, p, d->user_id, now);
        if (e) {
            break;
        }
        out->queried++;
        st = dm_kyc_query(h, pl, p, member, d->provider_ref, &ev, &msg);
        if (st != DM_OK) {
            out->failures++;
            dm_log(DM_L_WARN,
                   "DM01300: kyc-poll: plugin %s could not say how the verification %s of "
                   "member %s stands (status %d): %s",
                   d->plugin, d->provider_ref, member, (int)st, msg.text);
            continue;
        }
        if (ev.status == DM_KYC_PENDING || ev.status == DM_KYC_IGNORED) {
            continue;
        }
        e = dm_kyc_event_apply(db, p, d->plugin, &ev, "poll", now, &res);
        if (e && e->code == DM_E_INVALID) {
            out->failures++;
            dm_log(DM_L_WARN, "DM01301: kyc-poll: plugin %s answered an unusable event: %s",
                   d->plugin, e->message);
            e = NULL;
            continue;
        }
        if (!e && !res.duplicate && strcmp(res.outcome, "applied") == 0) {
            out->applied++;
        }
    }
    return e;
}
