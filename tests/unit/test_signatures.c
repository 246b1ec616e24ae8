/*
 * test_signatures.c — the signature schemes of ABI 1.4's host table:
 * RSA-SHA256 (PKCS#1 v1.5) against signatures made by the `openssl`
 * command (an independent implementation run as its own process, with a
 * key pair made for this run), and HMAC-SHA-512 against RFC 4231's test
 * vectors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rsa.h"
#include "deepmine/plugin.h"
#include "fixture.h"
#include "plugins/host_services.h"

static apr_pool_t *pool;
static const char *pub_pem, *other_pem, *cert_pem;
static unsigned char sig[512];
static size_t sig_len;
static const char message[] = "1700000000000\nNONCE123\n{\"bizType\":\"PAY\",\"data\":\"{}\"}\n";

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    buf = apr_palloc(pool, (apr_size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len) {
        *len = (size_t)n;
    }
    return buf;
}

static void sh(const char *cmd)
{
    assert_int_equal(system(apr_psprintf(pool, "cd '%s' && %s >/dev/null 2>&1", dm_fx_dir(), cmd)),
                     0);
}

/* Two key pairs, a certificate, and openssl's signature of `message`. */
static int setup(void **state)
{
    const char *d = dm_fx_dir();
    FILE *f;
    char *s;

    (void)state;
    f = fopen(apr_pstrcat(pool, d, "/msg", NULL), "wb");
    if (!f || fwrite(message, 1, sizeof(message) - 1, f) != sizeof(message) - 1) {
        return -1;
    }
    fclose(f);
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem");
    sh("openssl pkey -in key.pem -pubout -out pub.pem");
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out other.pem");
    sh("openssl pkey -in other.pem -pubout -out otherpub.pem");
    sh("openssl req -new -x509 -key key.pem -subj /CN=standin -days 2 -out cert.pem");
    sh("openssl dgst -sha256 -sign key.pem -out msg.sig msg");
    pub_pem = slurp(apr_pstrcat(pool, d, "/pub.pem", NULL), NULL);
    other_pem = slurp(apr_pstrcat(pool, d, "/otherpub.pem", NULL), NULL);
    cert_pem = slurp(apr_pstrcat(pool, d, "/cert.pem", NULL), NULL);
    s = slurp(apr_pstrcat(pool, d, "/msg.sig", NULL), &sig_len);
    if (sig_len > sizeof(sig)) {
        return -1;
    }
    memcpy(sig, s, sig_len);
    return 0;
}

static void test_rsa_accepts_what_openssl_signed_with_the_key_or_its_certificate(void **state)
{
    (void)state;
    assert_int_equal(sig_len, 256);
    assert_int_equal(
        dm_rsa_sha256_verify(pub_pem, strlen(pub_pem), message, sizeof(message) - 1, sig, sig_len),
        1);
    assert_int_equal(dm_rsa_sha256_verify(cert_pem, strlen(cert_pem), message, sizeof(message) - 1,
                                          sig, sig_len),
                     1);
}

static void test_rsa_refuses_a_changed_message_signature_or_key(void **state)
{
    unsigned char bad[512];
    char *msg = apr_pstrdup(pool, message);

    (void)state;
    msg[3] ^= 1;
    assert_int_equal(
        dm_rsa_sha256_verify(pub_pem, strlen(pub_pem), msg, sizeof(message) - 1, sig, sig_len), 0);
    memcpy(bad, sig, sig_len);
    bad[sig_len - 1] ^= 0x80;
    assert_int_equal(
        dm_rsa_sha256_verify(pub_pem, strlen(pub_pem), message, sizeof(message) - 1, bad, sig_len),
        0);
    assert_int_equal(dm_rsa_sha256_verify(pub_pem, strlen(pub_pem), message, sizeof(message) - 1,
                                          sig, sig_len - 1),
                     0);
    assert_int_equal(dm_rsa_sha256_verify(other_pem, strlen(other_pem), message,
                                          sizeof(message) - 1, sig, sig_len),
                     0);
    /* the message without its last byte: a signature covers every byte */
    assert_int_equal(
        dm_rsa_sha256_verify(pub_pem, strlen(pub_pem), message, sizeof(message) - 2, sig, sig_len),
        0);
}

static void test_rsa_says_minus_one_for_what_is_not_a_key(void **state)
{
    static const char junk[] = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";

    (void)state;
    assert_int_equal(dm_rsa_sha256_verify(junk, strlen(junk), message, 3, sig, sig_len), -1);
    assert_int_equal(dm_rsa_sha256_verify("", 0, message, 3, sig, sig_len), -1);
    assert_int_equal(dm_rsa_sha256_verify(NULL, 10, message, 3, sig, sig_len), -1);
    /* a truncated key: only the bytes given are read */
    assert_int_equal(dm_rsa_sha256_verify(pub_pem, 40, message, 3, sig, sig_len), -1);
}

static void test_host_table_offers_both_schemes_since_abi_1_4(void **state)
{
    const dm_host *h = dm_host_services();

    (void)state;
    assert_true(DM_HAS_FIELD(h, dm_host, rsa_sha256_verify));
    assert_true(DM_HAS_FIELD(h, dm_host, hmac_sha512));
    assert_int_equal(h->abi_minor, DM_PLUGIN_ABI_MINOR);
    assert_int_equal(DM_HOST_SIZE_1_3, offsetof(dm_host, rsa_sha256_verify));
    assert_int_equal(
        h->rsa_sha256_verify(pub_pem, strlen(pub_pem), message, sizeof(message) - 1, sig, sig_len),
        1);
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", b[i]);
    }
}

/* RFC 4231 test cases 1, 2 and 6 (a 131-byte key, longer than the block). */
static void test_hmac_sha512_matches_rfc_4231(void **state)
{
    const dm_host *h = dm_host_services();
    unsigned char key1[20], key6[131], out[64];
    char got[129];
    static const char data6[] = "Test Using Larger Than Block-Size Key - Hash Key First";

    (void)state;
    memset(key1, 0x0b, sizeof(key1));
    h->hmac_sha512(key1, sizeof(key1), "Hi There", 8, out);
    hex(out, 64, got);
    assert_string_equal(got, "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                             "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854");
    h->hmac_sha512("Jefe", 4, "what do ya want for nothing?", 28, out);
    hex(out, 64, got);
    assert_string_equal(got, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                             "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
    memset(key6, 0xaa, sizeof(key6));
    h->hmac_sha512(key6, sizeof(key6), data6, sizeof(data6) - 1, out);
    hex(out, 64, got);
    assert_string_equal(got, "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
                             "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rsa_accepts_what_openssl_signed_with_the_key_or_its_certificate),
        cmocka_unit_test(test_rsa_refuses_a_changed_message_signature_or_key),
        cmocka_unit_test(test_rsa_says_minus_one_for_what_is_not_a_key),
        cmocka_unit_test(test_host_table_offers_both_schemes_since_abi_1_4),
        cmocka_unit_test(test_hmac_sha512_matches_rfc_4231),
    };
    int rc;

    apr_initialize();
    apr_pool_create(&pool, NULL);
    if (dm_fx_init("signatures") != 0 || dm_host_services_init(pool) != NULL) {
        return 1;
    }
    rc = cmocka_run_group_tests(tests, setup, NULL);
    if (dm_fx_done() != 0) {
        rc = 1;
    }
    apr_terminate();
    return rc;
}
