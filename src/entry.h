#ifndef HEREPROXY_ENTRY_H
#define HEREPROXY_ENTRY_H

#include <stddef.h>
#include <stdint.h>

/*
 * A cached response, in one byte layout for both tiers:
 *
 *   0  magic "HPXE"          24  body length (u32)
 *   4  version (u8, 2)       28  CRC-32C of the blob, this field 0
 *   5  flags (u8, zero)      32  content type length (u16)
 *   6  HTTP status (u16)     34  ETag length (u16)
 *   8  fresh until (i64 s)   36  reserved (u32, zero)
 *  16  keep until (i64 s)    40  content type, ETag, body
 *
 * Integers are little-endian. The in-memory struct keeps that blob whole,
 * so storing in memcached copies nothing, and points into it.
 */

#define ENTRY_HEADER_SIZE 40
#define ENTRY_VERSION 2
#define ENTRY_CTYPE_MAX 128
#define ENTRY_ETAG_MAX 256

struct entry {
    int refs;                 /* atomic; the last entry_unref frees */
    int status;
    int64_t fresh_until;      /* Unix seconds */
    int64_t keep_until;
    const char *content_type; /* NUL-terminated copies after the blob */
    const char *etag;         /* "" when the upstream sent none */
    const unsigned char *body;
    size_t body_len;
    size_t blob_len;
    unsigned char *blob;      /* the serialised layout above */
};

/*
 * Build an entry holding copies of the parts. Returns it with one
 * reference, or NULL when a part is too long or memory ran out.
 */
struct entry *entry_new(int status, int64_t fresh_until, int64_t keep_until,
    const char *content_type, const char *etag, const void *body,
    size_t body_len);

/*
 * Check and decode a serialised blob (magic, version, lengths, CRC).
 * Returns a new entry with one reference, or NULL when anything is off.
 */
struct entry *entry_decode(const void *blob, size_t len);

/* Memory an entry holds, for cache byte accounting. */
size_t entry_footprint(const struct entry *e);

struct entry *entry_ref(struct entry *e);
/* Drop a reference; frees at zero. entry_unref(NULL) does nothing. */
void entry_unref(struct entry *e);

#endif
