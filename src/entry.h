#ifndef HEREPROXY_ENTRY_H
#define HEREPROXY_ENTRY_H

#include <stddef.h>
#include <stdint.h>

/*
 * A cached response, in one byte layout for both tiers:
 *
 *   0  magic "HPXE"          24  body length (u32)
 *   4  version (u8, 3)       28  content type length (u16)
 *   5  flags (u8, zero)      30  ETag length (u16)
 *   6  HTTP status (u16)     32  MAC nonce (12 bytes)
 *   8  fresh until (i64 s)   44  MAC tag (16 bytes)
 *  16  keep until (i64 s)    60  content type, ETag, body
 *
 * Integers are little-endian. The in-memory struct keeps that blob whole,
 * so storing in memcached copies nothing, and points into it. The tag
 * (mac.h) covers the memcached key and every byte of the blob but the tag
 * itself: entry_seal writes it before the entry is stored, entry_check
 * verifies it on what memcached returns. Entries made in this process are
 * trusted as they are; the tag only matters across the memcached boundary.
 */

#define ENTRY_HEADER_SIZE 60
#define ENTRY_VERSION 3
#define ENTRY_CTYPE_MAX 128
#define ENTRY_ETAG_MAX 256

struct mac;

struct entry {
    int refs; /* atomic; the last entry_unref frees */
    int status;
    int64_t fresh_until; /* Unix seconds */
    int64_t keep_until;
    const char *content_type; /* NUL-terminated copies after the blob */
    const char *etag;         /* "" when the upstream sent none */
    const unsigned char *body;
    size_t body_len;
    size_t blob_len;
    unsigned char *blob; /* the serialised layout above */
};

/*
 * Build an entry holding copies of the parts. Returns it with one
 * reference, or NULL when a part is too long or memory ran out.
 */
struct entry *entry_new(int status, int64_t fresh_until, int64_t keep_until,
    const char *content_type, const char *etag, const void *body,
    size_t body_len);

/*
 * Decode a serialised blob whose layout checks out (magic, version,
 * lengths, no control bytes in the header fields). Returns a new entry
 * with one reference, or NULL when anything is off. It does not check the
 * tag: see entry_check.
 */
struct entry *entry_decode(const void *blob, size_t len);

/*
 * Tag e's blob for the memcached key it is about to be stored under. Call
 * before e is shared with other threads (the tag is written into the
 * blob). 0, or -1 when libcrypto failed (store it nowhere then).
 */
int entry_seal(struct entry *e, struct mac *m, const char *key, size_t keylen);

enum entry_check {
    ENTRY_OK,
    ENTRY_MALFORMED, /* not an entry of this layout */
    ENTRY_FORGED     /* the tag does not verify under this key */
};

/* Whether blob, read from memcached under key, is a sealed entry. */
enum entry_check entry_check(const void *blob, size_t len, struct mac *m,
    const char *key, size_t keylen);

/* Memory an entry holds, for cache byte accounting. */
size_t entry_footprint(const struct entry *e);

struct entry *entry_ref(struct entry *e);
/* Drop a reference; frees at zero. entry_unref(NULL) does nothing. */
void entry_unref(struct entry *e);

#endif
