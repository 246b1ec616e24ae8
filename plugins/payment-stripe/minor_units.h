/*
 * minor_units.h — Stripe amounts in a currency's minor unit, from and to
 * DeepMine's micro-units (10^-6 of the currency's major unit). Header-only
 * (static functions, no host), so tests/unit/test_stripe.c includes it and
 * checks the conversion without the plugin around it.
 *
 * Stripe's rules (https://docs.stripe.com/currencies, "Minor units in API
 * amounts", "Zero-decimal currencies", "Three-decimal currencies",
 * "Special cases"):
 * - most currencies: 2 decimals, 12.50 USD is 1250;
 * - zero-decimal currencies: the amount is in major units, 1250 JPY is 1250;
 * - three-decimal currencies (BHD, JOD, KWD, OMR, TND): 3 decimals, and the
 *   last digit must be 0 (12.345 KWD cannot be charged; 12.340 is 12340);
 * - ISK: zero-decimal in ISO 4217, but Stripe takes it as two-decimal with
 *   the last two digits 00 (5 ISK is 500).
 * An amount that is not a whole number of what Stripe can charge is
 * refused, never rounded.
 */
#ifndef DM_STRIPE_MINOR_UNITS_H
#define DM_STRIPE_MINOR_UNITS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static const char *const stripe_zero_decimal[] = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF",
                                                  "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
                                                  "VUV", "XAF", "XOF", "XPF", NULL};

static const char *const stripe_three_decimal[] = {"BHD", "JOD", "KWD", "OMR", "TND", NULL};

static int stripe_in_list(const char *const *list, const char *cur, size_t n)
{
    for (const char *const *l = list; *l; l++) {
        if (n == 3 && memcmp(*l, cur, 3) == 0) {
            return 1;
        }
    }
    return 0;
}

/* A currency code as Stripe and ISO 4217 spell it: three letters A-Z. */
static int stripe_currency_ok(const char *cur, size_t n)
{
    if (!cur || n != 3) {
        return 0;
    }
    for (size_t i = 0; i < 3; i++) {
        if (cur[i] < 'A' || cur[i] > 'Z') {
            return 0;
        }
    }
    return 1;
}

/* The currency's decimals in Stripe amounts (0, 2 or 3), and the step the
 * amount must be a multiple of (1, 10 for three-decimal, 100 for ISK).
 * -1 when cur is not an upper-case ISO 4217 code. */
static int stripe_exponent(const char *cur, size_t n, int64_t *step)
{
    *step = 1;
    if (!stripe_currency_ok(cur, n)) {
        return -1;
    }
    if (stripe_in_list(stripe_zero_decimal, cur, n)) {
        return 0;
    }
    if (stripe_in_list(stripe_three_decimal, cur, n)) {
        *step = 10;
        return 3;
    }
    if (memcmp(cur, "ISK", 3) == 0) {
        *step = 100;
    }
    return 2;
}

/* Micro-units in one minor unit: 10^(6 - exponent). */
static int64_t stripe_micros_per_minor(int exp)
{
    int64_t f = 1;
    for (int i = exp; i < 6; i++) {
        f *= 10;
    }
    return f;
}

typedef enum stripe_minor_result {
    STRIPE_MINOR_OK = 0,
    STRIPE_MINOR_BAD_CURRENCY = 1, /* not an ISO 4217 code in capitals */
    STRIPE_MINOR_NOT_POSITIVE = 2, /* zero or negative */
    STRIPE_MINOR_FRACTION = 3      /* not a whole number of chargeable units */
} stripe_minor_result;

/* micros (> 0) in currency cur as a Stripe amount. */
static stripe_minor_result stripe_to_minor(const char *cur, size_t n, int64_t micros,
                                           int64_t *minor)
{
    int64_t step, per;
    int exp = stripe_exponent(cur, n, &step);

    if (exp < 0) {
        return STRIPE_MINOR_BAD_CURRENCY;
    }
    if (micros <= 0) {
        return STRIPE_MINOR_NOT_POSITIVE;
    }
    per = stripe_micros_per_minor(exp);
    if (micros % per != 0 || (micros / per) % step != 0) {
        return STRIPE_MINOR_FRACTION;
    }
    *minor = micros / per;
    return STRIPE_MINOR_OK;
}

/* A Stripe amount (>= 0) in currency cur as micro-units; 0 on a bad
 * currency, a negative amount or an overflow. */
static int stripe_from_minor(const char *cur, size_t n, int64_t minor, int64_t *micros)
{
    int64_t step, per;
    int exp = stripe_exponent(cur, n, &step);

    if (exp < 0 || minor < 0) {
        return 0;
    }
    per = stripe_micros_per_minor(exp);
    if (minor > INT64_MAX / per) {
        return 0;
    }
    *micros = minor * per;
    return 1;
}

#endif /* DM_STRIPE_MINOR_UNITS_H */
