/* The rate limiter's store shared by several nodes: the key, the GCRA
 * check-and-set over a store with versions (a fake one here, racing
 * threads included), the memcached text protocol, the client against a
 * scripted server, and the PostgreSQL test of DeepMineDatabase. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/mcproto.h"
#include "base/memcache.h"
#include "base/ratelimit.h"

#define S(n) ((int64_t)(n)*1000000)
#define HOUR(n) S((n)*3600)
#define NOW S(1800000000) /* a wall-clock time */

/* ---- a fake store: one key, a version that moves on every write ---- */

typedef struct fake {
    pthread_mutex_t lock;
    int found;
    int64_t tat;
    uint64_t version;
    int64_t last_ttl;
    int gets, puts;
    int fail_get;   /* return an error from get */
    int never_wins; /* put always loses */
    /* called once after the next get, before its put: another node */
    void (*between)(struct fake *);
} fake;

static apr_status_t fake_get(void *baton, const char *key, int *found, int64_t *tat,
                             uint64_t *version)
{
    fake *f = baton;
    void (*between)(fake *);

    (void)key;
    if (f->fail_get) {
        return APR_ECONNREFUSED;
    }
    pthread_mutex_lock(&f->lock);
    f->gets++;
    *found = f->found;
    *tat = f->found ? f->tat : 0;
    *version = f->found ? f->version : 0;
    between = f->between;
    f->between = NULL;
    pthread_mutex_unlock(&f->lock);
    if (between) {
        between(f);
    }
    return APR_SUCCESS;
}

static apr_status_t fake_put(void *baton, const char *key, int found, uint64_t version, int64_t tat,
                             int64_t ttl_s, int *stored)
{
    fake *f = baton;

    (void)key;
    pthread_mutex_lock(&f->lock);
    f->puts++;
    *stored = !f->never_wins && (found ? f->found && f->version == version : !f->found);
    if (*stored) {
        f->found = 1;
        f->tat = tat;
        f->version++;
        f->last_ttl = ttl_s;
    }
    pthread_mutex_unlock(&f->lock);
    return APR_SUCCESS;
}

static fake *fake_new(void)
{
    fake *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    f->version = 1;
    return f;
}

static dm_rl_cas_store store_of(fake *f)
{
    dm_rl_cas_store st = {fake_get, fake_put, f};
    return st;
}

static void test_shared_key_names_rule_and_plain_subject(void **state)
{
    char key[DM_RL_SHARED_KEY_MAX];
    (void)state;

    dm_rl_shared_key(key, "login", "127.0.0.1");
    assert_string_equal(key, "dmrl:login:127.0.0.1");
    dm_rl_shared_key(key, "api", "42");
    assert_string_equal(key, "dmrl:api:42");
    dm_rl_shared_key(key, "login", "2001:db8::1");
    assert_string_equal(key, "dmrl:login:2001:db8::1");
    assert_true(dm_mc_key_ok(key));
}

static void test_shared_key_hashes_long_or_odd_subjects_the_same_on_every_call(void **state)
{
    char a[DM_RL_SHARED_KEY_MAX], b[DM_RL_SHARED_KEY_MAX], c[DM_RL_SHARED_KEY_MAX];
    char longer[300];
    (void)state;

    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    dm_rl_shared_key(a, "login", longer);
    dm_rl_shared_key(b, "login", longer);
    assert_string_equal(a, b); /* no per-process random key: nodes agree */
    assert_int_equal(strlen(a), strlen("dmrl:login#") + 32);
    assert_memory_equal(a, "dmrl:login#", 11);
    assert_true(dm_mc_key_ok(a));
    /* a space or a control character cannot go into a memcached key */
    dm_rl_shared_key(c, "login", "a b");
    assert_memory_equal(c, "dmrl:login#", 11);
    assert_true(dm_mc_key_ok(c));
    dm_rl_shared_key(c, "login", "a\r\nb");
    assert_true(dm_mc_key_ok(c));
    /* 64 plain characters stay plain, 65 are hashed */
    longer[64] = '\0';
    dm_rl_shared_key(c, "r", longer);
    assert_int_equal(strlen(c), strlen("dmrl:r:") + 64);
    longer[64] = 'x';
    longer[65] = '\0';
    dm_rl_shared_key(c, "r", longer);
    assert_int_equal(strlen(c), strlen("dmrl:r#") + 32);
}

static void test_cas_hit_counts_a_burst_then_refuses_with_the_shm_arithmetic(void **state)
{
    fake *f = fake_new();
    dm_rl_cas_store st = store_of(f);
    dm_rl_result r, want;
    int64_t tat = 0;
    (void)state;

    for (int i = 1; i <= 5; i++) {
        assert_int_equal(dm_rl_cas_hit(&st, "login", "1.2.3.4", 5, S(60), NOW, &r), APR_SUCCESS);
        want = dm_rl_gcra(&tat, 5, S(60), NOW);
        assert_int_equal(r.allowed, want.allowed);
        assert_int_equal(r.remaining, want.remaining);
        assert_int_equal(r.reset_after_us, want.reset_after_us);
        assert_int_equal(r.retry_after_us, want.retry_after_us);
        assert_int_equal(r.allowed, 1);
        assert_int_equal(r.remaining, 5 - i);
        assert_true(f->tat == tat);
        /* kept while it carries information: the TAT's distance, plus 1 s */
        assert_int_equal(f->last_ttl, 12 * i + 1);
    }
    assert_int_equal(dm_rl_cas_hit(&st, "login", "1.2.3.4", 5, S(60), NOW, &r), APR_SUCCESS);
    assert_int_equal(r.allowed, 0);
    assert_int_equal(r.retry_after_us, S(12));
    assert_int_equal(f->puts, 5); /* a refusal writes nothing */
    assert_int_equal(f->gets, 6);
    free(f);
}

static dm_rl_result racer_result;

/* Another node takes the last hit between this node's get and put. */
static void other_node_hits(fake *f)
{
    dm_rl_cas_store st = store_of(f);
    assert_int_equal(dm_rl_cas_hit(&st, "login", "ip", 1, HOUR(1), NOW, &racer_result),
                     APR_SUCCESS);
}

static void test_two_nodes_never_both_admit_the_last_hit(void **state)
{
    fake *f = fake_new();
    dm_rl_cas_store st = store_of(f);
    dm_rl_result r;
    (void)state;

    /* the key is absent: both try to create it, the other node first */
    f->between = other_node_hits;
    assert_int_equal(dm_rl_cas_hit(&st, "login", "ip", 1, HOUR(1), NOW, &r), APR_SUCCESS);
    assert_int_equal(racer_result.allowed, 1);
    assert_int_equal(r.allowed, 0);
    assert_int_equal(f->puts, 2); /* ours lost, then we read again and refused */
    assert_int_equal(f->gets, 3);

    /* the key exists: same race through cas */
    f->found = 1;
    f->tat = 0;
    f->puts = f->gets = 0;
    f->between = other_node_hits;
    assert_int_equal(dm_rl_cas_hit(&st, "login", "ip", 1, HOUR(1), NOW, &r), APR_SUCCESS);
    assert_int_equal(racer_result.allowed, 1);
    assert_int_equal(r.allowed, 0);
    free(f);
}

static void test_cas_hit_gives_up_refusing_after_every_race_lost(void **state)
{
    fake *f = fake_new();
    dm_rl_cas_store st = store_of(f);
    dm_rl_result r;
    (void)state;

    f->never_wins = 1;
    assert_int_equal(dm_rl_cas_hit(&st, "api", "7", 100, S(60), NOW, &r), APR_SUCCESS);
    assert_int_equal(r.allowed, 0);
    assert_int_equal(r.retry_after_us, S(60) / 100);
    assert_int_equal(f->gets, DM_RL_CAS_TRIES);
    assert_int_equal(f->puts, DM_RL_CAS_TRIES);
    free(f);
}

static void test_cas_hit_passes_a_store_error_on_and_leaves_the_result(void **state)
{
    fake *f = fake_new();
    dm_rl_cas_store st = store_of(f);
    dm_rl_result r = {7, 7, 7, 7, 7};
    (void)state;

    f->fail_get = 1;
    assert_int_equal(dm_rl_cas_hit(&st, "api", "7", 100, S(60), NOW, &r), APR_ECONNREFUSED);
    assert_int_equal(r.allowed, 7);
    free(f);
}

static void test_cas_hit_with_bad_parameters_allows_and_writes_nothing(void **state)
{
    fake *f = fake_new();
    dm_rl_cas_store st = store_of(f);
    dm_rl_result r;
    (void)state;

    assert_int_equal(dm_rl_cas_hit(&st, "api", "7", 0, S(60), NOW, &r), APR_SUCCESS);
    assert_int_equal(r.allowed, 1);
    assert_int_equal(f->puts, 0);
    free(f);
}

#define THREADS 8
#define HITS_EACH 100
#define LIMIT 50

static fake *shared_fake;
static int admitted[THREADS];

static void *hammer(void *arg)
{
    int t = (int)(intptr_t)arg;
    dm_rl_cas_store st = store_of(shared_fake);

    for (int i = 0; i < HITS_EACH; i++) {
        dm_rl_result r;
        if (dm_rl_cas_hit(&st, "webhook", "ip", LIMIT, HOUR(1), NOW, &r) == APR_SUCCESS &&
            r.allowed) {
            admitted[t]++;
        }
    }
    return NULL;
}

static void test_racing_threads_admit_exactly_the_limit(void **state)
{
    pthread_t th[THREADS];
    int total = 0;
    (void)state;

    shared_fake = fake_new();
    for (int t = 0; t < THREADS; t++) {
        admitted[t] = 0;
        assert_int_equal(pthread_create(&th[t], NULL, hammer, (void *)(intptr_t)t), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        total += admitted[t];
    }
    assert_int_equal(total, LIMIT);
    assert_int_equal(shared_fake->puts >= LIMIT, 1);
    free(shared_fake);
}

/* ---- the text protocol ---- */

static void test_format_writes_the_three_commands(void **state)
{
    char buf[512];
    (void)state;

    assert_int_equal(dm_mc_format_gets(buf, sizeof(buf), "dmrl:a:1"), 15);
    assert_string_equal(buf, "gets dmrl:a:1\r\n");
    assert_true(dm_mc_format_store(buf, sizeof(buf), "k", 13, "123", 3, 0) > 0);
    assert_string_equal(buf, "add k 0 13 3\r\n123\r\n");
    assert_true(dm_mc_format_store(buf, sizeof(buf), "k", 13, "123", 3, 99) > 0);
    assert_string_equal(buf, "cas k 0 13 3 99\r\n123\r\n");
    /* refused: bad keys, values that would break the framing, no room */
    assert_int_equal(dm_mc_format_gets(buf, sizeof(buf), "a b"), 0);
    assert_int_equal(dm_mc_format_gets(buf, sizeof(buf), ""), 0);
    assert_int_equal(dm_mc_format_store(buf, sizeof(buf), "k", 1, "1\r\n2", 4, 0), 0);
    assert_int_equal(dm_mc_format_gets(buf, 8, "dmrl:a:1"), 0);
}

static void test_key_ok_follows_memcached(void **state)
{
    char k[DM_MC_KEY_MAX + 2];
    (void)state;

    memset(k, 'k', sizeof(k));
    k[DM_MC_KEY_MAX] = '\0';
    assert_true(dm_mc_key_ok(k));
    k[DM_MC_KEY_MAX] = 'k';
    k[DM_MC_KEY_MAX + 1] = '\0';
    assert_false(dm_mc_key_ok(k));
    assert_false(dm_mc_key_ok("a\tb"));
    assert_false(dm_mc_key_ok("a\x7f"));
    assert_false(dm_mc_key_ok(NULL));
}

static void test_parse_gets_reads_a_value_and_a_miss(void **state)
{
    static const char hit[] = "VALUE dmrl:a:1 0 3 77\r\n123\r\nEND\r\n";
    dm_mc_item it;
    (void)state;

    assert_int_equal(dm_mc_parse_gets(hit, strlen(hit), "dmrl:a:1", &it), DM_MC_DONE);
    assert_int_equal(it.found, 1);
    assert_int_equal(it.cas, 77);
    assert_int_equal(it.len, 3);
    assert_string_equal(it.value, "123");
    /* every proper prefix asks for more */
    for (size_t n = 0; n < strlen(hit); n++) {
        assert_int_equal(dm_mc_parse_gets(hit, n, "dmrl:a:1", &it), DM_MC_MORE);
    }
    assert_int_equal(dm_mc_parse_gets("END\r\n", 5, "k", &it), DM_MC_DONE);
    assert_int_equal(it.found, 0);
    assert_int_equal(dm_mc_parse_gets("EN", 2, "k", &it), DM_MC_MORE);
}

static void test_parse_gets_refuses_what_is_not_the_reply_asked_for(void **state)
{
    static const char *bad[] = {
        "VALUE other 0 3 77\r\n123\r\nEND\r\n",    /* another key */
        "VALUE k 0 3 77\r\n123\r\nEND\r\nEND\r\n", /* more after the reply */
        "VALUE k 0 3 77\r\n1234\r\nEND\r\n",       /* data longer than announced */
        "VALUE k 0 65 77\r\n",                     /* longer than our values */
        "VALUE k 0 3 0\r\n123\r\nEND\r\n",         /* no cas unique */
        "VALUE k 0 3\r\n123\r\nEND\r\n",           /* `get`, not `gets` */
        "VALUE k 0 3 77 9\r\n",                    /* one field too many */
        "VALUE k  0 3 77\r\n",                     /* an empty field */
        "VALUE k 4294967296 3 77\r\n",             /* flags past 32 bits */
        "VALUE k 0 3 18446744073709551616\r\n",    /* cas past 64 bits */
        "VALUE k 0 -3 77\r\n",
        "END\r\nEND\r\n",
        "END\n",
        "ERROR\r\n",
        "SERVER_ERROR out of memory\r\n",
        "CLIENT_ERROR bad command line format\r\n",
        "STORED\r\n",
        "X",
    };
    dm_mc_item it;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (dm_mc_parse_gets(bad[i], strlen(bad[i]), "k", &it) != DM_MC_BAD) {
            fail_msg("accepted: %s", bad[i]);
        }
    }
}

static void test_parse_store_reads_the_four_answers(void **state)
{
    dm_mc_stored st;
    (void)state;

    assert_int_equal(dm_mc_parse_store("STORED\r\n", 8, &st), DM_MC_DONE);
    assert_int_equal(st, DM_MC_STORED);
    assert_int_equal(dm_mc_parse_store("NOT_STORED\r\n", 12, &st), DM_MC_DONE);
    assert_int_equal(st, DM_MC_NOT_STORED);
    assert_int_equal(dm_mc_parse_store("EXISTS\r\n", 8, &st), DM_MC_DONE);
    assert_int_equal(st, DM_MC_EXISTS);
    assert_int_equal(dm_mc_parse_store("NOT_FOUND\r\n", 11, &st), DM_MC_DONE);
    assert_int_equal(st, DM_MC_NOT_FOUND);
    assert_int_equal(dm_mc_parse_store("NOT_", 4, &st), DM_MC_MORE);
    assert_int_equal(dm_mc_parse_store("", 0, &st), DM_MC_MORE);
    assert_int_equal(dm_mc_parse_store("STORED\r\nX", 9, &st), DM_MC_BAD);
    assert_int_equal(dm_mc_parse_store("SERVER_ERROR x\r\n", 16, &st), DM_MC_BAD);
    assert_int_equal(dm_mc_parse_store("ERROR\r\n", 7, &st), DM_MC_BAD);
}

static void test_parse_address_takes_host_port_and_bracketed_v6(void **state)
{
    apr_pool_t *p;
    const char *host = NULL;
    apr_port_t port = 0;
    (void)state;

    apr_pool_create(&p, NULL);
    assert_null(dm_mc_parse_address(p, "127.0.0.1:11211", &host, &port));
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 11211);
    assert_null(dm_mc_parse_address(p, "[::1]:1", &host, &port));
    assert_string_equal(host, "::1");
    assert_int_equal(port, 1);
    assert_null(dm_mc_parse_address(p, "cache.internal:65535", &host, &port));
    assert_string_equal(dm_mc_parse_address(p, "cache", &host, &port), "'cache' is not host:port");
    assert_string_equal(dm_mc_parse_address(p, ":11211", &host, &port),
                        "':11211' is not host:port");
    assert_string_equal(dm_mc_parse_address(p, "h:65536", &host, &port),
                        "the port in 'h:65536' must be a number from 1 to 65535");
    assert_string_equal(dm_mc_parse_address(p, "h:1x", &host, &port),
                        "the port in 'h:1x' must be a number from 1 to 65535");
    assert_string_equal(dm_mc_parse_address(p, "h:", &host, &port),
                        "the port in 'h:' must be a number from 1 to 65535");
    assert_string_equal(dm_mc_parse_address(p, "[]:1", &host, &port),
                        "'[]:1' is not [address]:port");
    apr_pool_destroy(p);
}

/* ---- the client against a scripted server ---- */

typedef struct script {
    int fd;                 /* listening */
    const char *replies[4]; /* one per command received; NULL: say nothing */
    int n;
} script;

static void *serve(void *arg)
{
    script *sc = arg;
    int c = accept(sc->fd, NULL, NULL);
    char buf[1024];

    for (int i = 0; i < sc->n && c >= 0; i++) {
        ssize_t got = recv(c, buf, sizeof(buf), 0);
        if (got <= 0) {
            break;
        }
        if (sc->replies[i]) {
            /* in two pieces, apart in time: the client must read on */
            size_t len = strlen(sc->replies[i]), half = len / 2;
            (void)!send(c, sc->replies[i], half, 0);
            usleep(10000);
            (void)!send(c, sc->replies[i] + half, len - half, 0);
        } else {
            usleep(300000); /* silence, past the client's timeout */
        }
    }
    if (c >= 0) {
        usleep(50000);
        close(c);
    }
    return NULL;
}

static int listen_on_loopback(int *port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 4), 0);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A client connected to a scripted server run by `server` on a thread:
 * the pool, the address and the client every client test starts with. */
typedef struct scripted {
    script *sc;
    apr_pool_t *p;
    pthread_t th;
    const char *addr;
    dm_mc *mc;
} scripted;

static void start_scripted(scripted *t, script *sc, void *(*server)(void *))
{
    int port;

    t->sc = sc;
    t->mc = NULL;
    apr_pool_create(&t->p, NULL);
    sc->fd = listen_on_loopback(&port);
    t->addr = apr_psprintf(t->p, "127.0.0.1:%d", port);
    assert_int_equal(pthread_create(&t->th, NULL, server, sc), 0);
    assert_int_equal(dm_mc_create(t->p, &t->addr, 1, 50000, 2, &t->mc), APR_SUCCESS);
}

/* The server has had its say: wait for it and stop listening. */
static void stop_server(scripted *t)
{
    pthread_join(t->th, NULL);
    close(t->sc->fd);
}

static void test_client_reads_replies_split_over_the_wire(void **state)
{
    script sc = {-1, {"VALUE k 0 2 5\r\n42\r\nEND\r\n", "EXISTS\r\n"}, 2};
    scripted t;
    dm_mc_item it;
    dm_mc_stored st;
    (void)state;

    start_scripted(&t, &sc, serve);
    assert_string_equal(dm_mc_server_of(t.mc, "any"), t.addr);
    assert_int_equal(dm_mc_gets(t.mc, "k", &it), APR_SUCCESS);
    assert_int_equal(it.found, 1);
    assert_string_equal(it.value, "42");
    assert_int_equal(it.cas, 5);
    /* the same (pooled) connection carries the second command */
    assert_int_equal(dm_mc_store(t.mc, "k", 10, "43", 2, it.cas, &st), APR_SUCCESS);
    assert_int_equal(st, DM_MC_EXISTS);
    stop_server(&t);
    apr_pool_destroy(t.p);
}

/* Answers one command on a first connection and closes it, then one on a
 * second connection. */
static void *serve_then_hang_up(void *arg)
{
    script *sc = arg;
    char buf[1024];

    for (int i = 0; i < 2; i++) {
        int c = accept(sc->fd, NULL, NULL);
        if (c < 0) {
            break;
        }
        if (recv(c, buf, sizeof(buf), 0) > 0) {
            (void)!send(c, sc->replies[i], strlen(sc->replies[i]), 0);
        }
        usleep(20000);
        close(c);
    }
    return NULL;
}

static void test_client_reconnects_once_when_a_pooled_connection_was_closed(void **state)
{
    script sc = {-1, {"VALUE k 0 2 5\r\n42\r\nEND\r\n", "STORED\r\n"}, 2};
    scripted t;
    dm_mc_item it;
    dm_mc_stored st;
    (void)state;

    start_scripted(&t, &sc, serve_then_hang_up);
    assert_int_equal(dm_mc_gets(t.mc, "k", &it), APR_SUCCESS);
    usleep(100000); /* the server has closed that connection */
    assert_int_equal(dm_mc_store(t.mc, "k", 10, "43", 2, it.cas, &st), APR_SUCCESS);
    assert_int_equal(st, DM_MC_STORED);
    stop_server(&t);
    apr_pool_destroy(t.p);
}

static void test_client_times_out_on_a_silent_server(void **state)
{
    script sc = {-1, {NULL}, 1};
    apr_status_t rv;
    scripted t;
    dm_mc_item it;
    (void)state;

    start_scripted(&t, &sc, serve);
    /* a timeout, not the end of stream the server sends after 300 ms */
    rv = dm_mc_gets(t.mc, "k", &it);
    assert_true(APR_STATUS_IS_TIMEUP(rv) || APR_STATUS_IS_EAGAIN(rv));
    assert_int_equal(dm_mc_gets(t.mc, "k", &it), APR_ECONNREFUSED); /* left alone */
    stop_server(&t);
    apr_pool_destroy(t.p);
}

static void test_client_drops_a_connection_after_a_bad_reply(void **state)
{
    script sc = {-1, {"SERVER_ERROR out of memory\r\n"}, 1};
    scripted t;
    dm_mc_item it;
    (void)state;

    start_scripted(&t, &sc, serve);
    /* an error reply is an error, but not the server being down */
    assert_int_equal(dm_mc_gets(t.mc, "k", &it), APR_EGENERAL);
    stop_server(&t);
    /* the connection was closed, not pooled: the next call connects anew,
     * and finds nobody listening */
    assert_int_not_equal(dm_mc_gets(t.mc, "k", &it), APR_SUCCESS);
    apr_pool_destroy(t.p);
}

static void test_client_refuses_a_closed_port(void **state)
{
    apr_pool_t *p;
    dm_mc *mc = NULL;
    dm_mc_item it;
    int port;
    int fd;
    const char *addr;
    (void)state;

    apr_pool_create(&p, NULL);
    fd = listen_on_loopback(&port);
    close(fd); /* nobody listens there now */
    addr = apr_psprintf(p, "127.0.0.1:%d", port);
    assert_int_equal(dm_mc_create(p, &addr, 1, 50000, 2, &mc), APR_SUCCESS);
    assert_int_not_equal(dm_mc_gets(mc, "k", &it), APR_SUCCESS);
    apr_pool_destroy(p);
}

/* ---- DeepMineDatabase: PostgreSQL or a SQLite file ---- */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_key_names_rule_and_plain_subject),
        cmocka_unit_test(test_shared_key_hashes_long_or_odd_subjects_the_same_on_every_call),
        cmocka_unit_test(test_cas_hit_counts_a_burst_then_refuses_with_the_shm_arithmetic),
        cmocka_unit_test(test_two_nodes_never_both_admit_the_last_hit),
        cmocka_unit_test(test_cas_hit_gives_up_refusing_after_every_race_lost),
        cmocka_unit_test(test_cas_hit_passes_a_store_error_on_and_leaves_the_result),
        cmocka_unit_test(test_cas_hit_with_bad_parameters_allows_and_writes_nothing),
        cmocka_unit_test(test_racing_threads_admit_exactly_the_limit),
        cmocka_unit_test(test_format_writes_the_three_commands),
        cmocka_unit_test(test_key_ok_follows_memcached),
        cmocka_unit_test(test_parse_gets_reads_a_value_and_a_miss),
        cmocka_unit_test(test_parse_gets_refuses_what_is_not_the_reply_asked_for),
        cmocka_unit_test(test_parse_store_reads_the_four_answers),
        cmocka_unit_test(test_parse_address_takes_host_port_and_bracketed_v6),
        cmocka_unit_test(test_client_reads_replies_split_over_the_wire),
        cmocka_unit_test(test_client_reconnects_once_when_a_pooled_connection_was_closed),
        cmocka_unit_test(test_client_times_out_on_a_silent_server),
        cmocka_unit_test(test_client_drops_a_connection_after_a_bad_reply),
        cmocka_unit_test(test_client_refuses_a_closed_port),
    };
    apr_initialize();
    return cmocka_run_group_tests_name("ratelimit_shared", tests, NULL, NULL);
}
