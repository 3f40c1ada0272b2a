/*
 * entry_decode() on arbitrary blobs, as memcached could hand them back.
 *
 * Each input is decoded as it is, then (when it is long enough to have a
 * header) once more with its CRC field recomputed, so that mutations get
 * past the checksum to the length and field checks behind it.
 *
 * Invariants for a blob that decodes: the entry holds an identical copy;
 * the lengths add up (header + content type + ETag + body = blob); the
 * strings and the body point into the entry's own copy; entry_new() from
 * the decoded fields rebuilds the very same bytes; the footprint covers the
 * blob. A blob that does not decode is simply refused (NULL).
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>


#include "crc32c.h"
#include "entry.h"

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
    size_t clen = get16(blob + 32), elen = get16(blob + 34);
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
    FUZZ_CHECK(memcmp(again->blob, blob, len) == 0);
    FUZZ_CHECK(entry_footprint(again) == entry_footprint(e));
    entry_unref(again);
}

static void
decode_one(const uint8_t *blob, size_t len)
{
    struct entry *e = entry_decode(blob, len);

    if (e == NULL)
        return;
    check_decoded(e, blob, len);
    FUZZ_CHECK(entry_ref(e) == e && e->refs == 2);
    entry_unref(e);
    entry_unref(e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;
    uint32_t crc;

    /* A private copy: ASan then catches any read past the blob. */
    copy = malloc(size > 0 ? size : 1);
    if (copy == NULL)
        abort();
    if (size > 0)
        memcpy(copy, data, size);
    decode_one(copy, size);
    if (size >= ENTRY_HEADER_SIZE) {
        memset(copy + 28, 0, 4);
        crc = crc32c(0, copy, size);
        copy[28] = (uint8_t)crc;
        copy[29] = (uint8_t)(crc >> 8);
        copy[30] = (uint8_t)(crc >> 16);
        copy[31] = (uint8_t)(crc >> 24);
        decode_one(copy, size);
    }
    free(copy);
    entry_unref(NULL);
    return 0;
}
