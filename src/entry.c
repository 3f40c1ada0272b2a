#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "entry.h"
#include "mac.h"

static const unsigned char magic[4] = {'H', 'P', 'X', 'E'};

static void
put16(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void
put32(unsigned char *p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

static void
put64(unsigned char *p, int64_t v)
{
    put32(p, (uint32_t)((uint64_t)v & 0xffffffffu));
    put32(p + 4, (uint32_t)((uint64_t)v >> 32));
}

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

static int64_t
get64(const unsigned char *p)
{
    return (int64_t)((uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32);
}

/* Where the MAC's nonce and tag sit in the header. */
#define NONCE_AT 32
#define TAG_AT (NONCE_AT + MAC_NONCE_LEN)

/*
 * One allocation: struct, blob, then NUL-terminated copies of the content
 * type and ETag so that callers can use them as C strings.
 */
static struct entry *
alloc_entry(size_t blob_len, size_t ctype_len, size_t etag_len)
{
    struct entry *e = malloc(sizeof(*e) + blob_len + ctype_len + etag_len + 2);
    char *strings;

    if (e == NULL)
        return NULL;
    e->refs = 1;
    e->blob = (unsigned char *)(e + 1);
    e->blob_len = blob_len;
    strings = (char *)e->blob + blob_len;
    e->content_type = strings;
    e->etag = strings + ctype_len + 1;
    return e;
}

static void
fill_strings(struct entry *e, size_t ctype_len, size_t etag_len)
{
    char *ctype = (char *)e->blob + e->blob_len;
    char *etag = ctype + ctype_len + 1;

    memcpy(ctype, e->blob + ENTRY_HEADER_SIZE, ctype_len);
    ctype[ctype_len] = '\0';
    memcpy(etag, e->blob + ENTRY_HEADER_SIZE + ctype_len, etag_len);
    etag[etag_len] = '\0';
}

struct entry *
entry_new(int status, int64_t fresh_until, int64_t keep_until,
    const char *content_type, const char *etag, const void *body,
    size_t body_len)
{
    size_t clen = strlen(content_type), elen = strlen(etag), blob_len;
    struct entry *e;
    unsigned char *h;

    if (clen > ENTRY_CTYPE_MAX || elen > ENTRY_ETAG_MAX ||
        body_len > UINT32_MAX - ENTRY_HEADER_SIZE - clen - elen ||
        status < 100 || status > 599)
        return NULL;
    blob_len = ENTRY_HEADER_SIZE + clen + elen + body_len;
    if ((e = alloc_entry(blob_len, clen, elen)) == NULL)
        return NULL;
    h = e->blob;
    memcpy(h, magic, 4);
    h[4] = ENTRY_VERSION;
    h[5] = 0;
    put16(h + 6, (uint32_t)status);
    put64(h + 8, fresh_until);
    put64(h + 16, keep_until);
    put32(h + 24, (uint32_t)body_len);
    put16(h + 28, (uint32_t)clen);
    put16(h + 30, (uint32_t)elen);
    memset(h + NONCE_AT, 0, MAC_NONCE_LEN + MAC_TAG_LEN); /* unsealed */
    memcpy(h + ENTRY_HEADER_SIZE, content_type, clen);
    memcpy(h + ENTRY_HEADER_SIZE + clen, etag, elen);
    if (body_len > 0)
        memcpy(h + ENTRY_HEADER_SIZE + clen + elen, body, body_len);
    fill_strings(e, clen, elen);
    e->status = status;
    e->fresh_until = fresh_until;
    e->keep_until = keep_until;
    e->body = h + ENTRY_HEADER_SIZE + clen + elen;
    e->body_len = body_len;
    return e;
}

/*
 * Content type and ETag are written into response headers: refuse NUL (the
 * C strings would be cut short) and other control bytes (CR, LF: header
 * injection from whoever can write to memcached). HTAB is allowed.
 */
static int
valid_field(const unsigned char *p, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            return 0;
    return 1;
}

/* The layout's lengths and fields check out; *status etc. filled. */
static int
layout_ok(const unsigned char *h, size_t len, size_t *clen, size_t *elen,
    size_t *body_len)
{
    int status;

    if (h == NULL || len < ENTRY_HEADER_SIZE || memcmp(h, magic, 4) != 0 ||
        h[4] != ENTRY_VERSION || h[5] != 0)
        return 0;
    status = (int)get16(h + 6);
    *body_len = get32(h + 24);
    *clen = get16(h + 28);
    *elen = get16(h + 30);
    return status >= 100 && status <= 599 && *clen <= ENTRY_CTYPE_MAX &&
        *elen <= ENTRY_ETAG_MAX &&
        len == ENTRY_HEADER_SIZE + *clen + *elen + *body_len &&
        valid_field(h + ENTRY_HEADER_SIZE, *clen + *elen);
}

struct entry *
entry_decode(const void *blob, size_t len)
{
    const unsigned char *h = blob;
    size_t clen, elen, body_len;
    struct entry *e;

    if (!layout_ok(h, len, &clen, &elen, &body_len))
        return NULL;
    if ((e = alloc_entry(len, clen, elen)) == NULL)
        return NULL;
    memcpy(e->blob, h, len);
    fill_strings(e, clen, elen);
    e->status = (int)get16(h + 6);
    e->fresh_until = get64(h + 8);
    e->keep_until = get64(h + 16);
    e->body = e->blob + ENTRY_HEADER_SIZE + clen + elen;
    e->body_len = body_len;
    return e;
}

/*
 * What the tag covers: the key's length and the key (so that an entry
 * copied under another key does not verify), then the blob without the
 * tag (the nonce included).
 */
static int
tag_parts(struct iovec parts[4], unsigned char klen[4], const char *key,
    size_t keylen, const unsigned char *blob, size_t len)
{
    put32(klen, (uint32_t)keylen);
    parts[0].iov_base = klen;
    parts[0].iov_len = 4;
    parts[1].iov_base = (void *)(uintptr_t)key;
    parts[1].iov_len = keylen;
    parts[2].iov_base = (void *)(uintptr_t)blob;
    parts[2].iov_len = TAG_AT;
    parts[3].iov_base = (void *)(uintptr_t)(blob + ENTRY_HEADER_SIZE);
    parts[3].iov_len = len - ENTRY_HEADER_SIZE;
    return 4;
}

int
entry_seal(struct entry *e, struct mac *m, const char *key, size_t keylen)
{
    struct iovec parts[4];
    unsigned char klen[4];
    int n = tag_parts(parts, klen, key, keylen, e->blob, e->blob_len);

    if (mac_nonce(e->blob + NONCE_AT) != 0 ||
        mac_tag(m, e->blob + NONCE_AT, parts, n, e->blob + TAG_AT) != 0) {
        memset(e->blob + NONCE_AT, 0, MAC_NONCE_LEN + MAC_TAG_LEN);
        return -1;
    }
    return 0;
}

enum entry_check
entry_check(
    const void *blob, size_t len, struct mac *m, const char *key, size_t keylen)
{
    const unsigned char *h = blob;
    size_t clen, elen, body_len;
    struct iovec parts[4];
    unsigned char klen[4];
    int n;

    if (!layout_ok(h, len, &clen, &elen, &body_len))
        return ENTRY_MALFORMED;
    n = tag_parts(parts, klen, key, keylen, h, len);
    return mac_check(m, h + NONCE_AT, parts, n, h + TAG_AT) ? ENTRY_OK
                                                            : ENTRY_FORGED;
}

size_t
entry_footprint(const struct entry *e)
{
    return sizeof(*e) + e->blob_len + strlen(e->content_type) +
        strlen(e->etag) + 2;
}

struct entry *
entry_ref(struct entry *e)
{
    __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
    return e;
}

void
entry_unref(struct entry *e)
{
    if (e != NULL && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(e);
}
