/*
 * kyc_sniff.h — what a document upload really is, from its first bytes.
 * A member declares a Content-Type; the bytes must say the same, so a
 * file is never stored (nor later served to staff) under a type it is not.
 * Only the three types identity documents come in are known.
 */
#ifndef DM_KYC_SNIFF_H
#define DM_KYC_SNIFF_H

#include <stddef.h>

/* "image/jpeg" (FF D8 FF), "image/png" (the 8-byte PNG signature) or
 * "application/pdf" ("%PDF-" at offset 0), else NULL. Reads at most the
 * first 8 bytes of data (len may be anything, 0 included). */
const char *dm_kyc_sniff(const void *data, size_t len);

/* The declared Content-Type reduced to one of the three known types:
 * parameters (";charset=…") and surrounding white space dropped, case
 * folded. NULL when it is none of them. Result is static. */
const char *dm_kyc_declared_type(const char *content_type);

#endif
