/*
 * password.c — see password.h.
 *
 * Three pieces of process-wide state, each behind its own lock:
 *   - the limiter (one per configuration, from dm_pw_limiter_create): a
 *     counting semaphore made of an APR mutex and condition variable, so a
 *     caller can give up after wait_ms;
 *   - the dummy hash for dm_pw_verify_dummy, made lazily on first use and
 *     remade when the parameters change;
 *   - cracklib, which libpwquality calls for its dictionary check: its
 *     PWOpen() keeps the open dictionary in a static, so two checks at once
 *     in one process fail ("another dictionary already open") or crash.
 *     Every pwquality_check runs under cracklib_lock. A check takes about
 *     half a millisecond and runs only when a password is set.
 * The two static locks are pthread mutexes because they need no pool and no
 * initialisation order; APR's threads are pthreads on every platform we run.
 */
#include "members/password.h"

#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_time.h>
#include <crypt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <pwquality.h>
#include <sodium.h>
#include <string.h>

#include "base/log.h"
#include "base/validate.h"

#define PW_MIN_CHARS 10
#define PW_MAX_BYTES 128

struct dm_pw_limiter {
    apr_thread_mutex_t *mutex;
    apr_thread_cond_t *cond;
    int max;
    int in_use;
    apr_interval_time_t wait;
};

static pthread_mutex_t cracklib_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t dummy_lock = PTHREAD_MUTEX_INITIALIZER;
static char dummy_hash[crypto_pwhash_STRBYTES];
static unsigned long long dummy_ops;
static size_t dummy_mem;

dm_err *dm_pw_limiter_create(apr_pool_t *p, int max, int wait_ms, dm_pw_limiter **out)
{
    dm_pw_limiter *lim;

    if (max < 1 || wait_ms < 0) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "password hash limiter: max must be at least 1 and wait_ms at least 0");
    }
    lim = apr_pcalloc(p, sizeof(*lim));
    if (apr_thread_mutex_create(&lim->mutex, APR_THREAD_MUTEX_DEFAULT, p) != APR_SUCCESS ||
        apr_thread_cond_create(&lim->cond, p) != APR_SUCCESS) {
        return dm_err_make(p, DM_E_INTERNAL, NULL,
                           "password hash limiter: cannot create its mutex or condition");
    }
    lim->max = max;
    lim->wait = apr_time_from_msec(wait_ms);
    *out = lim;
    return NULL;
}

/* A hash maps its memory (8-64 MiB) fresh and touches all of it, on top of
 * whatever the process holds at that moment: the free pages malloc's arenas
 * kept from the last burst of requests go back to the system first, so the
 * hash's memory replaces them instead of adding to the process's peak
 * (docs/decisions.md "Memory, sixth round"). */
static void release_free_memory(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* Takes a slot, waiting at most lim->wait for one. NULL lim: no cap. */
static dm_err *limiter_acquire(apr_pool_t *p, dm_pw_limiter *lim)
{
    apr_time_t deadline;
    int got = 0;

    if (!lim) {
        return NULL;
    }
    deadline = apr_time_now() + lim->wait;
    apr_thread_mutex_lock(lim->mutex);
    for (;;) {
        apr_interval_time_t left;
        if (lim->in_use < lim->max) {
            lim->in_use++;
            got = 1;
            break;
        }
        left = deadline - apr_time_now();
        if (left <= 0) {
            break;
        }
        /* A timeout or a spurious wake-up both go round again: the slot
         * count and the clock decide. */
        (void)apr_thread_cond_timedwait(lim->cond, lim->mutex, left);
    }
    apr_thread_mutex_unlock(lim->mutex);
    if (!got) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "too many password checks at once, try again");
    }
    release_free_memory();
    return NULL;
}

static void limiter_release(dm_pw_limiter *lim)
{
    if (!lim) {
        return;
    }
    apr_thread_mutex_lock(lim->mutex);
    lim->in_use--;
    apr_thread_cond_signal(lim->cond);
    apr_thread_mutex_unlock(lim->mutex);
}

static void resolve_params(const dm_pw_params *params, unsigned long long *ops, size_t *mem)
{
    *ops = params && params->opslimit ? params->opslimit : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    *mem = params && params->memlimit ? params->memlimit : crypto_pwhash_MEMLIMIT_INTERACTIVE;
}

/* argon2id into out[crypto_pwhash_STRBYTES]; the caller holds a slot. */
static dm_err *hash_argon2id(apr_pool_t *p, unsigned long long ops, size_t mem,
                             const char *password, char *out)
{
    if (sodium_init() < 0 || crypto_pwhash_str_alg(out, password, strlen(password), ops, mem,
                                                   crypto_pwhash_ALG_ARGON2ID13) != 0) {
        dm_log(DM_L_ERR,
               "DM00250: argon2id hashing failed (opslimit %" APR_UINT64_T_FMT
               ", memlimit %" APR_SIZE_T_FMT " bytes): out of memory or parameters out of range",
               (apr_uint64_t)ops, mem);
        return dm_err_make(p, DM_E_INTERNAL, NULL, "password hashing failed");
    }
    return NULL;
}

dm_err *dm_pw_hash(apr_pool_t *p, dm_pw_limiter *lim, const dm_pw_params *params,
                   const char *password, const char **out)
{
    char buf[crypto_pwhash_STRBYTES];
    unsigned long long ops;
    size_t mem;
    dm_err *e;

    if (!password) {
        return dm_err_make(p, DM_E_INVALID, "password", "password is required");
    }
    resolve_params(params, &ops, &mem);
    if ((e = limiter_acquire(p, lim))) {
        return e;
    }
    e = hash_argon2id(p, ops, mem, password, buf);
    limiter_release(lim);
    if (!e) {
        *out = apr_pstrdup(p, buf);
    }
    return e;
}

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* bcrypt through libxcrypt. A malformed hash makes crypt_r fail (NULL, or
 * a "*0"-style failure token), which is a mismatch. */
static int verify_bcrypt(apr_pool_t *p, const char *stored, const char *password)
{
    struct crypt_data *cd = apr_pcalloc(p, sizeof(*cd));
    const char *r = crypt_r(password, stored, cd);
    size_t n = strlen(stored);
    int ok = r && r[0] == '$' && strlen(r) == n && sodium_memcmp(r, stored, n) == 0;

    /* the work area holds key material derived from the password */
    sodium_memzero(cd, sizeof(*cd));
    return ok;
}

dm_err *dm_pw_verify(apr_pool_t *p, dm_pw_limiter *lim, const dm_pw_params *params,
                     const char *stored, const char *password, int *ok, int *needs_rehash)
{
    unsigned long long ops;
    size_t mem;
    int argon, bcrypt, rehash = 0;
    dm_err *e;

    *ok = 0;
    *needs_rehash = 0;
    if (!password) {
        return NULL;
    }
    resolve_params(params, &ops, &mem);
    argon = stored && has_prefix(stored, "$argon2id$") && strlen(stored) < crypto_pwhash_STRBYTES;
    if (argon) {
        /* -1: not a well-formed argon2id string; checked before paying for
         * a verification. */
        rehash = crypto_pwhash_argon2id_str_needs_rehash(stored, ops, mem);
        argon = rehash >= 0;
    }
    bcrypt = stored && (has_prefix(stored, "$2a$") || has_prefix(stored, "$2b$") ||
                        has_prefix(stored, "$2y$"));
    if (!argon && !bcrypt) {
        /* Unknown format (a disabled account, say): a mismatch that costs
         * what a real check costs. */
        return dm_pw_verify_dummy(p, lim, params, password);
    }
    if ((e = limiter_acquire(p, lim))) {
        return e;
    }
    if (argon) {
        *ok = crypto_pwhash_argon2id_str_verify(stored, password, strlen(password)) == 0;
    } else {
        *ok = verify_bcrypt(p, stored, password);
        rehash = 1;
    }
    limiter_release(lim);
    /* Only a caller who knows the password can rehash it. */
    *needs_rehash = *ok && rehash;
    return NULL;
}

dm_err *dm_pw_verify_dummy(apr_pool_t *p, dm_pw_limiter *lim, const dm_pw_params *params,
                           const char *password)
{
    char hash[crypto_pwhash_STRBYTES];
    unsigned long long ops;
    size_t mem;
    dm_err *e = NULL;

    resolve_params(params, &ops, &mem);
    if ((e = limiter_acquire(p, lim))) {
        return e;
    }
    pthread_mutex_lock(&dummy_lock);
    if (!dummy_hash[0] || dummy_ops != ops || dummy_mem != mem) {
        unsigned char secret[32];
        char hex[2 * sizeof(secret) + 1];

        if (sodium_init() >= 0) {
            randombytes_buf(secret, sizeof(secret));
            sodium_bin2hex(hex, sizeof(hex), secret, sizeof(secret));
            dummy_hash[0] = '\0';
            if (!(e = hash_argon2id(p, ops, mem, hex, dummy_hash))) {
                dummy_ops = ops;
                dummy_mem = mem;
            }
            sodium_memzero(hex, sizeof(hex));
        } else {
            e = dm_err_make(p, DM_E_INTERNAL, NULL, "password hashing failed");
        }
    }
    memcpy(hash, dummy_hash, sizeof(hash));
    pthread_mutex_unlock(&dummy_lock);
    if (!e) {
        /* the result is meaningless; the time spent is the point */
        int r = crypto_pwhash_argon2id_str_verify(hash, password ? password : "",
                                                  password ? strlen(password) : 0);
        (void)r;
    }
    limiter_release(lim);
    return e;
}

/* Case-insensitive (ASCII) substring test. */
static int contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay; hay++) {
        if (strncasecmp(hay, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

static dm_err *policy_invalid(apr_pool_t *p, const char *msg)
{
    return dm_err_make(p, DM_E_INVALID, "password", "%s", msg);
}

dm_err *dm_pw_policy_check(apr_pool_t *p, const char *password, const char *email)
{
    pwquality_settings_t *pwq;
    const char *at;
    char *user = NULL;
    void *aux = NULL;
    char reason[PWQ_MAX_ERROR_MESSAGE_LEN];
    size_t len;
    int rc;

    if (!password || !*password) {
        return policy_invalid(p, "password is required");
    }
    len = strlen(password);
    if (len > PW_MAX_BYTES) {
        return dm_err_make(p, DM_E_INVALID, "password",
                           "password must be at most %d bytes (a character outside ASCII takes "
                           "2 to 4)",
                           PW_MAX_BYTES);
    }
    if (!dm_utf8_valid(password, len)) {
        return policy_invalid(p, "password is not valid UTF-8 text");
    }
    if (dm_utf8_has_control(password, len)) {
        return policy_invalid(p, "password must not contain control characters");
    }
    if (dm_utf8_length(password, len) < PW_MIN_CHARS) {
        return dm_err_make(p, DM_E_INVALID, "password", "password must be at least %d characters",
                           PW_MIN_CHARS);
    }
    if (email && (at = strrchr(email, '@')) != NULL) {
        size_t n = (size_t)(at - email);
        /* a quoted local part is looked for without its quotes */
        if (n >= 2 && email[0] == '"' && email[n - 1] == '"') {
            user = apr_pstrmemdup(p, email + 1, n - 2);
        } else {
            user = apr_pstrmemdup(p, email, n);
        }
    }
    if (user && dm_utf8_length(user, strlen(user)) >= 3 && contains_nocase(password, user)) {
        return policy_invalid(p, "password must not contain the part of the e-mail address "
                                 "before the @");
    }

    /* Library defaults (no /etc/security/pwquality.conf: the policy must not
     * change with the host), with our minimum length. A settings object is
     * per check: it is a small calloc, and sharing one is not thread-safe. */
    pwq = pwquality_default_settings();
    if (!pwq) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "password check failed: out of memory");
    }
    (void)pwquality_set_int_value(pwq, PWQ_SETTING_MIN_LENGTH, PW_MIN_CHARS);
    pthread_mutex_lock(&cracklib_lock);
    rc = pwquality_check(pwq, password, NULL, user, &aux);
    pthread_mutex_unlock(&cracklib_lock);
    pwquality_free_settings(pwq);
    if (rc == PWQ_ERROR_CRACKLIB_CHECK && aux &&
        strcmp((const char *)aux, "error loading dictionary") == 0) {
        /* Not the member's fault: every password would be refused. */
        dm_log(DM_L_ERR, "DM00251: libpwquality cannot load the cracklib dictionary (is "
                         "cracklib-runtime installed?); refusing to set passwords");
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "passwords cannot be checked right now, try again later");
    }
    if (rc == PWQ_ERROR_MEM_ALLOC) {
        (void)pwquality_strerror(reason, sizeof(reason), rc, aux); /* frees aux */
        return dm_err_make(p, DM_E_INTERNAL, NULL, "password check failed: out of memory");
    }
    if (rc < 0) {
        /* e.g. "The password fails the dictionary check - it is based on a
         * dictionary word" (pwquality_strerror frees aux where it must) */
        const char *msg = pwquality_strerror(reason, sizeof(reason), rc, aux);
        return policy_invalid(p, msg ? msg : "password is too weak");
    }
    return NULL;
}
