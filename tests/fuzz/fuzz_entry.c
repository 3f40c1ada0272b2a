/*
 * entry_check() and entry_decode() on arbitrary blobs, as memcached could
 * hand them back.
 *
 * Invariants: entry_check() refuses whatever entry_decode() refuses
 * (MALFORMED) and, under a fixed secret, every input as it is (FORGED:
 * nobody can make a tag without the secret). For a blob that decodes: the
 * entry holds an identical copy; the lengths add up (header + content type
 * + ETag + body = blob); the strings and the body point into the entry's
 * own copy; entry_new() from the decoded fields rebuilds the same bytes
 * but for the nonce and tag; the footprint covers the blob; sealed under a
 * key it verifies under that key, not under another, and not with a byte
 * of it changed. A blob that does not decode is simply refused (NULL).
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "mac.h"

#include "fuzz.h"

static uint32_t
get16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t
get32(const unsigned char *p)
{
    return get16(p) | get16(p + 2) << 16;
}

static void
check_decoded(const struct entry *e, const uint8_t *blob, size_t len)
{
    size_t clen = get16(blob + 28), elen = get16(blob + 30);
    struct entry *again;

    FUZZ_CHECK(e->refs == 1);
    FUZZ_CHECK(e->blob_len == len);
    FUZZ_CHECK(memcmp(e->blob, blob, len) == 0);
    FUZZ_CHECK(e->blob != blob);
    FUZZ_CHECK(e->status >= 100 && e->status <= 599);
    FUZZ_CHECK(e->status == (int)get16(blob + 6));
    FUZZ_CHECK(e->body_len == get32(blob + 24));
    FUZZ_CHECK(ENTRY_HEADER_SIZE + clen + elen + e->body_len == len);
    FUZZ_CHECK(clen <= ENTRY_CTYPE_MAX && elen <= ENTRY_ETAG_MAX);
    FUZZ_CHECK(e->body == e->blob + ENTRY_HEADER_SIZE + clen + elen);
    /* The C strings are the whole fields: no NUL inside them. */
    FUZZ_CHECK(strlen(e->content_type) == clen);
    FUZZ_CHECK(strlen(e->etag) == elen);
    FUZZ_CHECK(memcmp(e->content_type, blob + ENTRY_HEADER_SIZE, clen) == 0);
    FUZZ_CHECK(memcmp(e->etag, blob + ENTRY_HEADER_SIZE + clen, elen) == 0);
    FUZZ_CHECK(entry_footprint(e) >= len);

    again = entry_new(e->status, e->fresh_until, e->keep_until, e->content_type,
        e->etag, e->body, e->body_len);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(again->blob_len == len);
    FUZZ_CHECK(memcmp(again->blob, blob, 32) == 0);
    FUZZ_CHECK(memcmp(again->blob + ENTRY_HEADER_SIZE, blob + ENTRY_HEADER_SIZE,
                   len - ENTRY_HEADER_SIZE) == 0);
    FUZZ_CHECK(entry_footprint(again) == entry_footprint(e));
    entry_unref(again);
}

static struct mac *fleet;

/* A decoded entry, sealed: it verifies under its key, and only so. */
static void
check_sealed(struct entry *e)
{
    static const char key[] = "0v3/base/mc/1/0/0/png";

    FUZZ_CHECK(entry_seal(e, fleet, key, sizeof(key) - 1) == 0);
    FUZZ_CHECK(entry_check(e->blob, e->blob_len, fleet, key, sizeof(key) - 1) ==
        ENTRY_OK);
    FUZZ_CHECK(entry_check(e->blob, e->blob_len, fleet, key, sizeof(key) - 2) ==
        ENTRY_FORGED);
    e->blob[e->blob_len - 1] ^= 0x20;
    FUZZ_CHECK(entry_check(e->blob, e->blob_len, fleet, key, sizeof(key) - 1) !=
        ENTRY_OK);
    e->blob[e->blob_len - 1] ^= 0x20;
}

static void
decode_one(const uint8_t *blob, size_t len)
{
    struct entry *e = entry_decode(blob, len);
    enum entry_check c = entry_check(blob, len, fleet, "k", 1);

    if (e == NULL) {
        FUZZ_CHECK(c == ENTRY_MALFORMED);
        return;
    }
    FUZZ_CHECK(c == ENTRY_FORGED);
    check_decoded(e, blob, len);
    check_sealed(e);
    FUZZ_CHECK(entry_ref(e) == e && e->refs == 2);
    entry_unref(e);
    entry_unref(e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char secret[] = "the fuzzer's fleet secret";
    uint8_t *copy;

    if (fleet == NULL && (fleet = mac_new(secret, sizeof(secret) - 1)) == NULL)
        abort();
    /* A private copy: ASan then catches any read past the blob. */
    copy = malloc(size > 0 ? size : 1);
    if (copy == NULL)
        abort();
    if (size > 0)
        memcpy(copy, data, size);
    decode_one(copy, size);
    free(copy);
    entry_unref(NULL);
    return 0;
}
