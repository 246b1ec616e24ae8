/*
 * deepmine/plugin.h — the public plugin ABI of mod_deepmine (ABI major 1).
 *
 * A plugin is one shared object that exports one symbol, DM_PLUGIN_ENTRY_NAME
 * ("deepmine_plugin_entry"), of type dm_plugin_entry_fn. The host calls it
 * once, right after loading, and reads the descriptor it returns. The
 * descriptor and everything it points to belong to the plugin and must stay
 * valid until the plugin's fini() has run (a static const struct is the
 * usual choice).
 *
 * Versioning, after SQLite's sqlite3ext.h: structures are only ever grown at
 * their end, and each one carries its own size. A host reads a field of a
 * plugin structure only if the plugin's size covers it (DM_HAS_FIELD), and a
 * plugin uses a host function only if the host table's size covers it. A
 * plugin built for another ABI major is refused; any minor loads.
 *
 * Memory: neither side frees what the other allocated. Strings the plugin
 * hands back (redirect URLs, message ids, parsed fields) must be allocated
 * with host->alloc(call, n): that memory belongs to the call and is released
 * by the host when the call's result has been used. Strings the host hands
 * in are valid for the duration of the call only.
 *
 * Strings cross as pointer + length (dm_str); they are not necessarily
 * NUL-terminated unless a field says so. This header uses only C99 types:
 * no APR, SQLite, jansson or Apache type appears here.
 *
 * History of minors:
 *   1.0  entry, host table, descriptor, payment/kyc/mailer function tables
 *   1.1  dm_plugin.health (optional self-check shown to operators)
 *   1.2  dm_plugin.handle_request (optional: answer requests under
 *        /api/plugins/<name>/), dm_plugin_request, dm_plugin_response, and
 *        the reserved settings _name and _public_url
 *   1.3  dm_host.mime_message, dm_host.retry_after, dm_host.message_id_for,
 *        dm_host.setting_default (one shared e-mail builder for every
 *        mailer; "try again in n seconds"; stable Message-IDs; defaults a
 *        plugin gives its own settings)
 *   1.4  payment: query, refund_ex, dispute/review/pending events,
 *        method descriptions; host: rsa_sha256_verify, hmac_sha512
 *   1.5  two new kinds, storage (dm_storage_ops) and monitor
 *        (dm_monitor_ops); DM_ERR_NOT_FOUND; payment webhook_ack_body;
 *        kyc: query, resubmission and ignored statuses, event time and
 *        provider reference; host: sha512
 */
#ifndef DEEPMINE_PLUGIN_H
#define DEEPMINE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DM_PLUGIN_ABI_MAJOR 1
#define DM_PLUGIN_ABI_MINOR 5

/* The one symbol a plugin exports. */
#define DM_PLUGIN_ENTRY_NAME "deepmine_plugin_entry"

#if defined(__GNUC__)
#define DM_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define DM_PLUGIN_EXPORT
#endif

/* True when a structure whose first member is its size covers `field`. */
#define DM_HAS_FIELD(ptr, type, field)                                                             \
    ((ptr) != NULL && (size_t)(ptr)->size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* Status codes every plugin and host function returns. */
typedef enum dm_status {
    DM_OK = 0,
    DM_ERR_INVALID = 1,     /* bad input: a malformed or unverifiable request */
    DM_ERR_TEMPORARY = 2,   /* try again later: timeout, 429, 5xx */
    DM_ERR_PERMANENT = 3,   /* will never succeed: rejected by the provider */
    DM_ERR_UNSUPPORTED = 4, /* the plugin does not implement this */
    DM_ERR_CONFIG = 5,      /* a setting is missing or wrong */
    DM_ERR_INTERNAL = 6,
    DM_ERR_NOT_FOUND = 7 /* since 1.5: no such object (storage get/delete, kyc query) */
} dm_status;

typedef enum dm_plugin_kind {
    DM_PLUGIN_PAYMENT = 1,
    DM_PLUGIN_KYC = 2,
    DM_PLUGIN_MAILER = 3,
    DM_PLUGIN_STORAGE = 4, /* since 1.5 */
    DM_PLUGIN_MONITOR = 5  /* since 1.5 */
} dm_plugin_kind;

typedef enum dm_log_level {
    DM_LOG_ERROR = 3,
    DM_LOG_WARN = 4,
    DM_LOG_NOTICE = 5,
    DM_LOG_INFO = 6,
    DM_LOG_DEBUG = 7
} dm_log_level;

typedef struct dm_str {
    const char *ptr;
    size_t len;
} dm_str;

typedef struct dm_header {
    dm_str name;
    dm_str value;
} dm_header;

/* One call's context, opaque to the plugin: memory from host->alloc(call, …)
 * lives as long as the call. During init(), it lives as long as the plugin. */
typedef struct dm_call dm_call;

/* A human-readable message a function may leave on failure (or success).
 * The buffer belongs to the host; the plugin writes at most sizeof(text)-1
 * bytes and NUL-terminates. */
typedef struct dm_message {
    char text[256];
} dm_message;

/* ---- HTTP client offered by the host (libcurl underneath) ---- */

typedef struct dm_http_request {
    uint32_t size;      /* sizeof(dm_http_request) as the plugin knows it */
    const char *method; /* NUL-terminated: "GET", "POST", … */
    const char *url;    /* NUL-terminated */
    const dm_header *headers;
    size_t n_headers;
    dm_str body;
    uint32_t timeout_ms; /* 0: the host's default (10 s) */
} dm_http_request;

typedef struct dm_http_response {
    uint32_t size;            /* set by the plugin before the call */
    int status;               /* HTTP status, 0 when no response arrived */
    dm_str body;              /* host-owned, valid for the call */
    const dm_header *headers; /* host-owned, valid for the call */
    size_t n_headers;
} dm_http_response;

/* ---- The host table ---- */

struct dm_mail; /* below, with the mailer functions */

typedef struct dm_host {
    uint32_t size; /* sizeof(dm_host) as the host knows it */
    uint16_t abi_major;
    uint16_t abi_minor;

    /* Logging into Apache's error log, prefixed with the plugin's name. */
    void (*log)(dm_call *call, dm_log_level level, const char *msg);

    /* This plugin's setting `key` (DeepMinePluginSet), with env:/file:
     * already resolved; NULL when unset. NUL-terminated, host-owned, valid
     * as long as the plugin.
     * Keys starting with '_' are reserved: the configuration cannot set
     * them, the host fills them (since 1.2; NULL from an older host):
     *   "_name"        the name this instance is declared under
     *                  (DeepMinePlugin's <name>): its requests are under
     *                  /api/plugins/<_name>/, its webhooks at
     *                  /api/webhooks/<_name>;
     *   "_public_url"  the site's public base URL (DeepMinePublicURL, no
     *                  trailing slash, e.g. "https://shop.example"); NULL
     *                  when the server has none configured. */
    const char *(*setting)(dm_call *call, const char *key);

    /* Memory owned by the call (see above). Never NULL for n < 16 MiB. */
    void *(*alloc)(dm_call *call, size_t n);

    /* An HTTP request; DM_OK when a response arrived (any status),
     * DM_ERR_TEMPORARY on a network error or timeout, with msg set. */
    dm_status (*http)(dm_call *call, const dm_http_request *req, dm_http_response *resp,
                      dm_message *msg);

    /* Crypto (libsodium). out must hold 32 bytes. */
    void (*hmac_sha256)(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[32]);
    void (*sha256)(const void *data, size_t len, unsigned char out[32]);
    void (*random_bytes)(void *buf, size_t len);
    /* 1 when equal, in time independent of the contents. */
    int (*equal_ct)(const void *a, const void *b, size_t len);

    /* Encodings into call memory, NUL-terminated. decode returns NULL on
     * malformed input. */
    char *(*hex_encode)(dm_call *call, const void *data, size_t len);
    char *(*base64_encode)(dm_call *call, const void *data, size_t len);
    unsigned char *(*base64_decode)(dm_call *call, const char *b64, size_t len, size_t *out_len);

    /* JSON helpers. json_get looks up a dotted path ("data.object.id",
     * "items.0.name") in a JSON text and returns the value: a string value
     * unescaped, a number/true/false/null as its literal, an object or array
     * as compact JSON. NULL when the text is not JSON or the path is absent.
     * json_quote returns s as a quoted, escaped JSON string literal. */
    const char *(*json_get)(dm_call *call, dm_str json, const char *path, size_t *out_len);
    char *(*json_quote)(dm_call *call, dm_str s);

    /* ---- since 1.3: e-mail (check DM_HAS_FIELD before use) ---- */

    /* The complete RFC 5322 message for `mail` (CRLF line ends), as every
     * mailer should send it: Date (`date`, Unix seconds, written in UTC),
     * From, To, Subject, Message-ID (`<message_id>`; the argument has no
     * brackets, see message_id_for), MIME-Version, the extra headers, then
     * multipart/alternative with a text/plain and a text/html part, or the
     * one part when only one body is given. Each part is quoted-printable
     * when mostly ASCII, else base64; non-ASCII subjects, display names and
     * header values become RFC 2047 encoded-words; lines are folded to 78
     * characters where the words allow. mail->idempotency_key is not used.
     * Call memory, NUL-terminated, its length in *out_len. NULL, and nothing
     * may be sent, when the input is invalid: a CR, LF or other control
     * character in from, to, subject or a header name or value (header
     * injection), an address that is not plain ASCII, an extra header the
     * builder writes itself (Date, From, To, Subject, Message-ID,
     * MIME-Version, Content-Type, Content-Transfer-Encoding). Return
     * DM_ERR_INVALID then: the host hands its precise reason to the
     * caller. */
    char *(*mime_message)(dm_call *call, const struct dm_mail *mail, const char *message_id,
                          int64_t date, size_t *out_len);

    /* With DM_ERR_TEMPORARY: try this message again in `seconds` at the
     * earliest (a provider's 429 Retry-After). The last call wins. */
    void (*retry_after)(dm_call *call, uint32_t seconds);

    /* The Message-ID (without brackets) that belongs to an idempotency key:
     * the first 32 hex digits of SHA-256(key) "@" the domain of `from`
     * ("deepmine.invalid" when it has none), so a resent message keeps its
     * id. An empty key gives a random id. Call memory, NUL-terminated. */
    const char *(*message_id_for)(dm_call *call, dm_str idempotency_key, dm_str from);

    /* In init() only: gives setting `key` the value `value` when the
     * configuration leaves it unset, so that the host reads the plugin's
     * default too (the mail queue reads a mailer's rate_per_second). Keys
     * starting with '_' are ignored, as is any call outside init(). */
    void (*setting_default)(dm_call *call, const char *key, const char *value);

    /* ---- since 1.4: more signature schemes (check DM_HAS_FIELD) ---- */

    /* RSA-SHA256 (PKCS#1 v1.5) verification of `sig` over `data` with the
     * PEM public key or X.509 certificate `pem` (OpenSSL's libcrypto).
     * 1 when the signature is valid, 0 when it is not, -1 when the key
     * cannot be read. */
    int (*rsa_sha256_verify)(const char *pem, size_t pem_len, const void *data, size_t len,
                             const void *sig, size_t sig_len);
    /* HMAC-SHA-512 (libsodium). out must hold 64 bytes. */
    void (*hmac_sha512)(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[64]);

    /* ---- since 1.5 (check DM_HAS_FIELD) ---- */

    /* SHA-512 (libsodium). out must hold 64 bytes. */
    void (*sha512)(const void *data, size_t len, unsigned char out[64]);
} dm_host;

/* Size of a host table of ABI 1.2 (and 1.0, 1.1: the table did not grow). */
#define DM_HOST_SIZE_1_2 offsetof(dm_host, mime_message)
/* Size of a host table of ABI 1.3. */
#define DM_HOST_SIZE_1_3 offsetof(dm_host, rsa_sha256_verify)
/* Size of a host table of ABI 1.4. */
#define DM_HOST_SIZE_1_4 offsetof(dm_host, sha512)

/* ---- Per-kind function tables ---- */

typedef struct dm_payment_checkout {
    uint32_t size;
    dm_str order_id; /* our order id */
    int64_t amount_micros;
    dm_str currency; /* ISO 4217, upper case */
    dm_str success_url;
    dm_str cancel_url;
    dm_str customer_email;
} dm_payment_checkout;

typedef struct dm_payment_checkout_result {
    uint32_t size;
    dm_str redirect_url; /* call memory */
    dm_str provider_ref; /* call memory */
} dm_payment_checkout_result;

typedef enum dm_payment_event_status {
    DM_PAY_PAID = 1,
    DM_PAY_FAILED = 2,
    DM_PAY_REFUNDED = 3,
    DM_PAY_EXPIRED = 4,
    DM_PAY_IGNORED = 5, /* a verified event we do not act on */
    /* since 1.4 */
    DM_PAY_DISPUTE_OPENED = 6, /* a chargeback or dispute was opened */
    DM_PAY_DISPUTE_WON = 7,    /* closed in the merchant's favour */
    DM_PAY_DISPUTE_LOST = 8,   /* closed for the buyer: the money went back */
    DM_PAY_NEEDS_REVIEW = 9,   /* money moved but not as asked: review_reason */
    DM_PAY_PENDING = 10        /* seen, not settled yet (a query's answer, a
                                  crypto payment waiting for confirmations) */
} dm_payment_event_status;

/* Why an event needs a person (DM_PAY_NEEDS_REVIEW), since 1.4. */
typedef enum dm_payment_review_reason {
    DM_REVIEW_NONE = 0,
    DM_REVIEW_UNDERPAID = 1,
    DM_REVIEW_OVERPAID = 2,
    DM_REVIEW_PAID_AFTER_EXPIRY = 3,
    DM_REVIEW_UNKNOWN_CURRENCY = 4,
    DM_REVIEW_OTHER = 5
} dm_payment_review_reason;

typedef struct dm_payment_event {
    uint32_t size;
    dm_str event_id; /* provider event id, unique per plugin */
    dm_str provider_ref;
    dm_str order_id;
    dm_payment_event_status status;
    int64_t amount_micros; /* paid; refunded (0: the whole remainder); disputed */
    dm_str currency;
    /* ---- since 1.4 ---- */
    /* The provider's identity of the money itself (Stripe payment intent,
     * PayPal capture id, BTCPay invoice id, Coinbase charge code, Binance
     * prepay id): one payment credits an order once, whichever event, the
     * return page or the janitor reports it. Empty: provider_ref. */
    dm_str payment_id;
    dm_payment_review_reason review_reason; /* with DM_PAY_NEEDS_REVIEW */
    dm_str detail;                          /* optional words for staff ("paid 9.50 of 10.00") */
} dm_payment_event;

/* A refund request, since 1.4 (refund_ex). */
typedef struct dm_payment_refund_request {
    uint32_t size;
    dm_str provider_ref;
    dm_str payment_id; /* what the paid event named; may be empty */
    int64_t amount_micros;
    dm_str currency;
    dm_str idempotency_key; /* the same key must never refund twice */
    dm_str reason;
} dm_payment_refund_request;

typedef struct dm_payment_ops {
    uint32_t size;
    dm_status (*create_checkout)(dm_call *call, const dm_payment_checkout *in,
                                 dm_payment_checkout_result *out, dm_message *msg);
    /* Verifies the raw body against the headers, then parses it. A body
     * that fails verification must return DM_ERR_INVALID. */
    dm_status (*parse_webhook)(dm_call *call, dm_str raw_body, const dm_header *headers,
                               size_t n_headers, dm_payment_event *out, dm_message *msg);
    /* Optional (NULL when unsupported). */
    dm_status (*refund)(dm_call *call, dm_str provider_ref, int64_t amount_micros, dm_str currency,
                        dm_message *msg);

    /* ---- since 1.4 (check DM_HAS_FIELD, then NULL) ---- */

    /* Optional: the provider's current state of the checkout or payment
     * provider_ref, as an event (for the janitor and the return page):
     * DM_PAY_PAID, _FAILED, _EXPIRED, _PENDING, _NEEDS_REVIEW … event_id
     * may be empty (the host names it). */
    dm_status (*query)(dm_call *call, dm_str provider_ref, dm_payment_event *out, dm_message *msg);
    /* Optional: refund with an idempotency key and a reason; preferred
     * over refund when both are set. *refund_id (call memory) may be left
     * empty. */
    dm_status (*refund_ex)(dm_call *call, const dm_payment_refund_request *req, dm_str *refund_id,
                           dm_message *msg);
    /* For members choosing how to pay (GET /api/payment-methods); NULL:
     * the plugin's name, "card", any currency. NUL-terminated, static. */
    const char *display_name; /* "Card (Stripe)" */
    const char *method_kind;  /* "card" | "crypto" | "wallet" */
    const char *currencies;   /* "USD,EUR" (ISO 4217, comma-separated) or "*" */
    /* How long a checkout can be paid, in seconds; 0: DeepMineCheckoutHold. */
    uint32_t checkout_lifetime_s;

    /* ---- since 1.5 ---- */
    /* The body the provider expects in the 200 answer to a webhook it
     * delivered and we accepted (Binance Pay:
     * {"returnCode":"SUCCESS","returnMessage":null}); NULL: the host's own
     * JSON answer. NUL-terminated, static; sent as application/json. */
    const char *webhook_ack_body;
} dm_payment_ops;

typedef enum dm_kyc_status {
    DM_KYC_APPROVED = 1,
    DM_KYC_REJECTED = 2,     /* final: the member may not try again */
    DM_KYC_NEEDS_REVIEW = 3, /* a person decides (iDenfy SUSPECTED) */
    DM_KYC_PENDING = 4,
    /* since 1.5 */
    DM_KYC_RESUBMISSION = 5, /* rejected, the member may try again (Sumsub RED+RETRY) */
    DM_KYC_EXPIRED = 6,      /* the member never finished; may start again */
    DM_KYC_IGNORED = 7       /* a verified event we do not act on (not final) */
} dm_kyc_status;

typedef struct dm_kyc_start_result {
    uint32_t size;
    dm_str url; /* either url or token is set; call memory */
    dm_str token;
    dm_str provider_ref;
} dm_kyc_start_result;

typedef struct dm_kyc_event {
    uint32_t size;
    dm_str event_id; /* unique per plugin: the host applies an event once */
    dm_str member_id;
    dm_kyc_status status;
    dm_str reason; /* words safe to show the member */
    /* ---- since 1.5 ---- */
    /* When the provider says the event happened (Unix milliseconds; 0:
     * unknown). The host applies a member's events in this order and
     * ignores one older than the newest it applied. */
    int64_t occurred_at_ms;
    dm_str provider_ref; /* the provider's applicant / scan reference */
} dm_kyc_event;

typedef struct dm_kyc_ops {
    uint32_t size;
    dm_status (*start)(dm_call *call, dm_str member_id, dm_str email, dm_kyc_start_result *out,
                       dm_message *msg);
    dm_status (*parse_webhook)(dm_call *call, dm_str raw_body, const dm_header *headers,
                               size_t n_headers, dm_kyc_event *out, dm_message *msg);
    /* ---- since 1.5 (check DM_HAS_FIELD, then NULL) ---- */
    /* Optional: the provider's current verdict on member_id's verification
     * provider_ref (for the polling job). DM_KYC_PENDING while undecided. */
    dm_status (*query)(dm_call *call, dm_str member_id, dm_str provider_ref, dm_kyc_event *out,
                       dm_message *msg);
} dm_kyc_ops;

/* ---- Storage (since 1.5) ---- */

/* The host's source of an object's bytes for put: fills buf with up to cap
 * bytes, sets *got (0 at the end). Anything but DM_OK aborts the put, and
 * the plugin must then leave no object (nor a partial one) under the key. */
typedef dm_status (*dm_storage_read_fn)(void *ctx, void *buf, size_t cap, size_t *got);
/* The host's sink for get: one chunk of the object, in order. Anything but
 * DM_OK stops the get (the plugin returns that status). */
typedef dm_status (*dm_storage_write_fn)(void *ctx, const void *buf, size_t len);
/* One object of a list. NUL-terminated key, valid for the call of `each`. */
typedef dm_status (*dm_storage_each_fn)(void *ctx, const char *key, int64_t size,
                                        int64_t mtime_unix);

typedef struct dm_storage_ops {
    uint32_t size;
    /* Stores `length` bytes (read through `read`) under `key` (NUL-terminated;
     * letters, digits and "/._-" only, no "..", no leading "/": the host
     * checks). All or nothing: the object appears only when every byte is
     * stored and durable; an existing object is replaced the same way. */
    dm_status (*put)(dm_call *call, const char *key, const char *content_type, int64_t length,
                     dm_storage_read_fn read, void *ctx, dm_message *msg);
    /* Streams the object to `write` in chunks. DM_ERR_NOT_FOUND when there
     * is none. *size_out (may be NULL) gets its size before the first chunk. */
    dm_status (*get)(dm_call *call, const char *key, dm_storage_write_fn write, void *ctx,
                     int64_t *size_out, dm_message *msg);
    /* DM_OK also when there was no such object. */
    dm_status (*remove)(dm_call *call, const char *key, dm_message *msg);
    /* Every object whose key starts with prefix (may be ""), in key order. */
    dm_status (*list)(dm_call *call, const char *prefix, dm_storage_each_fn each, void *ctx,
                      dm_message *msg);
} dm_storage_ops;

/* ---- Monitoring (since 1.5) ---- */

/* One error event for an error tracker. Never a request body, token,
 * password, e-mail address or document: the host builds it from the log
 * line and the context it knows. Empty strings mean "not known". */
typedef struct dm_monitor_event {
    uint32_t size;
    dm_log_level level;
    dm_str event_id;  /* 32 lower-case hex digits, unique per event */
    int64_t time_ms;  /* Unix milliseconds */
    dm_str dm_number; /* "DM00650" */
    dm_str message;   /* the log text without the number */
    dm_str route;     /* "POST /api/orders" (the route pattern, not the URL) */
    dm_str plugin;    /* the plugin involved, if any */
    dm_str job;       /* the job, if any */
    dm_str release;   /* the module's version, "deepmine@1.2.0" */
    dm_str environment;
    dm_str request_id; /* Apache's UNIQUE_ID or the host's own */
    dm_str server_name;
} dm_monitor_event;

typedef struct dm_monitor_ops {
    uint32_t size;
    /* Sends one event (called from the cron daemon's drain of the error
     * queue, never on a request's path). DM_ERR_TEMPORARY: the host keeps it
     * and tries again later. host->retry_after(call, n), with any status
     * (a provider's rate limit seen on a success too): the host sends this
     * plugin nothing for n seconds. Other errors: the event is dropped. */
    dm_status (*capture)(dm_call *call, const dm_monitor_event *ev, dm_message *msg);
} dm_monitor_ops;

typedef struct dm_mail {
    uint32_t size;
    /* "addr@example.com" or "Display Name <addr@example.com>"; an empty
     * from means the mailer's own default sender (its setting `from`). */
    dm_str from;
    dm_str to;
    dm_str subject;
    dm_str text;
    dm_str html;
    const dm_header *headers; /* extra headers, e.g. List-Unsubscribe */
    size_t n_headers;
    dm_str idempotency_key;
} dm_mail;

typedef enum dm_mail_event_type {
    DM_MAIL_DELIVERED = 1,
    DM_MAIL_BOUNCED = 2,
    DM_MAIL_COMPLAINED = 3,
    DM_MAIL_OTHER = 4
} dm_mail_event_type;

typedef struct dm_mail_event {
    uint32_t size;
    dm_str event_id;
    dm_str message_id;
    dm_str recipient;
    dm_mail_event_type type;
} dm_mail_event;

typedef struct dm_mailer_ops {
    uint32_t size;
    dm_status (*send)(dm_call *call, const dm_mail *mail, dm_str *message_id, dm_message *msg);
    /* Optional (NULL when the provider sends no delivery webhooks). */
    dm_status (*parse_webhook)(dm_call *call, dm_str raw_body, const dm_header *headers,
                               size_t n_headers, dm_mail_event *out, dm_message *msg);
} dm_mailer_ops;

/* ---- Requests under /api/plugins/<name>/ (since 1.2) ---- */

/* What the host hands to handle_request: one HTTP request whose path starts
 * with /api/plugins/<name>. Everything is host memory valid for the call. */
typedef struct dm_plugin_request {
    /* sizeof(dm_plugin_request) as the host knows it */
    uint32_t size;
    /* NUL-terminated: "GET", "HEAD" or "POST" */
    const char *method;
    /* Below /api/plugins/<name>, as decoded by the server: "/checkout/abc";
     * "/" for the base itself. */
    dm_str path;
    /* The raw query string without '?', may be empty. */
    dm_str query;
    /* Every request header, as received. */
    const dm_header *headers;
    size_t n_headers;
    /* The raw body (at most DeepMineMaxBody bytes), may be empty. */
    dm_str body;
} dm_plugin_request;

/* What handle_request fills. The host sets size and status (200) first. */
typedef struct dm_plugin_response {
    /* sizeof(dm_plugin_response) as the host knows it */
    uint32_t size;
    /* HTTP status, 200 to 599 */
    int status;
    /* e.g. "text/html; charset=utf-8"; empty: "text/plain; charset=utf-8" */
    dm_str content_type;
    /* call memory */
    dm_str body;
    /* Extra headers (call memory), e.g. Location or Cache-Control. The host
     * refuses those it sets itself (Content-Type, Content-Length,
     * Content-Security-Policy, Set-Cookie, …; see docs/plugins.md). */
    const dm_header *headers;
    size_t n_headers;
} dm_plugin_response;

/* ---- The descriptor ---- */

typedef struct dm_plugin {
    uint32_t size;      /* sizeof(dm_plugin) as the plugin knows it */
    uint16_t abi_major; /* DM_PLUGIN_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;
    dm_plugin_kind kind;
    const char *name;    /* the plugin's own name, e.g. "mailer-spool" */
    const char *version; /* the plugin's release, e.g. "1.0.0" */

    /* NULL-terminated list of settings that must be present; the host
     * refuses to start when one is missing. May be NULL. */
    const char *const *required_settings;

    /* Called once at start-up, after the settings are checked; DM_OK or the
     * host refuses to start and logs msg. May be NULL. */
    dm_status (*init)(const dm_host *host, dm_call *call, dm_message *msg);
    /* Called once at shutdown. May be NULL. */
    void (*fini)(void);

    /* The table for `kind`: a dm_payment_ops, dm_kyc_ops, dm_mailer_ops,
     * dm_storage_ops or dm_monitor_ops. */
    const void *ops;

    /* since 1.1: an optional cheap self-check (settings sane, no network). */
    dm_status (*health)(dm_call *call, dm_message *msg);

    /* since 1.2: optional (NULL: the plugin serves no pages). Answers a
     * request under /api/plugins/<name>/ — a checkout page, a gateway's
     * return URL. The host does no authentication there: the plugin checks
     * whatever proves the caller's right (a signed token in the path, a
     * signature). DM_OK: the host sends resp. Otherwise the host answers
     * with an API error carrying msg: DM_ERR_INVALID 400,
     * DM_ERR_UNSUPPORTED 404 (no such page), DM_ERR_TEMPORARY 503, any
     * other 500. Pages are served with a strict Content-Security-Policy
     * (no scripts; inline styles and forms posting to the same origin). */
    dm_status (*handle_request)(dm_call *call, const dm_plugin_request *req,
                                dm_plugin_response *resp, dm_message *msg);
} dm_plugin;

/* Size of a descriptor built against ABI 1.0. */
#define DM_PLUGIN_SIZE_1_0 offsetof(dm_plugin, health)
/* Size of a descriptor built against ABI 1.1. */
#define DM_PLUGIN_SIZE_1_1 offsetof(dm_plugin, handle_request)

/* The entry: returns the plugin's descriptor, or NULL if it cannot run with
 * this host at all (for example a host table too small for its needs). It
 * must not do any work besides; init() does that. */
typedef const dm_plugin *(*dm_plugin_entry_fn)(const dm_host *host);

#ifdef __cplusplus
}
#endif

#endif /* DEEPMINE_PLUGIN_H */
