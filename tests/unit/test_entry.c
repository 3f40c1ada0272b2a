#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "mac.h"

static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n',
    0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 1, 2, 0xff, 0xfe};

static struct entry *
sample(void)
{
    struct entry *e = entry_new(200, 1700000000, 1700086400, "image/png",
        "\"abc123\"", png, sizeof(png));

    assert_non_null(e);
    return e;
}

/* Fields of a decoded entry equal those of the original. */
static void
assert_same(const struct entry *a, const struct entry *b)
{
    assert_int_equal(a->status, b->status);
    assert_true(a->fresh_until == b->fresh_until);
    assert_true(a->keep_until == b->keep_until);
    assert_string_equal(a->content_type, b->content_type);
    assert_string_equal(a->etag, b->etag);
    assert_int_equal(a->body_len, b->body_len);
    if (a->body_len > 0)
        assert_memory_equal(a->body, b->body, a->body_len);
    assert_int_equal(a->blob_len, b->blob_len);
    assert_memory_equal(a->blob, b->blob, a->blob_len);
    /* Pointers into the entry's own memory, not the source blob. */
    assert_true(
        b->body >= b->blob && b->body + b->body_len <= b->blob + b->blob_len);
}

static void
test_new_layout(void **state)
{
    struct entry *e = sample();
    const unsigned char *h = e->blob;

    (void)state;
    assert_int_equal(e->refs, 1);
    assert_int_equal(e->status, 200);
    assert_string_equal(e->content_type, "image/png");
    assert_string_equal(e->etag, "\"abc123\"");
    assert_int_equal(e->body_len, sizeof(png));
    assert_memory_equal(e->body, png, sizeof(png));
    assert_int_equal(e->blob_len, ENTRY_HEADER_SIZE + 9 + 8 + sizeof(png));
    /* The documented byte layout, little-endian. */
    assert_memory_equal(h, "HPXE", 4);
    assert_int_equal(h[4], ENTRY_VERSION);
    assert_int_equal(h[5], 0);
    assert_int_equal(h[6] | h[7] << 8, 200);
    assert_int_equal(
        h[8] | h[9] << 8 | h[10] << 16 | (uint32_t)h[11] << 24, 1700000000);
    assert_int_equal(h[12] | h[13] | h[14] | h[15], 0);
    assert_int_equal(h[24] | h[25] << 8, sizeof(png));
    assert_int_equal(h[28] | h[29] << 8, 9);
    assert_int_equal(h[30] | h[31] << 8, 8);
    /* Nonce and tag: zero until the entry is sealed for memcached. */
    for (size_t i = 32; i < 60; i++)
        assert_int_equal(h[i], 0);
    assert_memory_equal(h + 60, "image/png\"abc123\"", 17);
    assert_memory_equal(h + 77, png, sizeof(png));
    assert_true(entry_footprint(e) >= e->blob_len + sizeof(*e));
    entry_unref(e);
}

static void
test_roundtrip(void **state)
{
    static const struct {
        int status;
        int64_t fresh, keep;
        const char *ctype, *etag;
        size_t body_len;
    } cases[] = {
        {200, 1700000000, 1700086400, "image/png", "\"abc\"", 1000},
        {200, 0, 0, "", "", 0},
        {204, -1, -2, "text/plain", "W/\"x\"", 1},
        {404, INT64_MAX, INT64_MIN, "application/json", "", 17},
        {100, 1, 2, "a", "b", 65536},
        {599, 123456789012345LL, -123456789012345LL, "image/jpeg",
            "\"0123456789\"", 300000},
    };
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char *body = malloc(cases[i].body_len + 1);
        struct entry *e, *d;

        assert_non_null(body);
        for (j = 0; j < cases[i].body_len; j++)
            body[j] = (unsigned char)(j * 7 + i);
        e = entry_new(cases[i].status, cases[i].fresh, cases[i].keep,
            cases[i].ctype, cases[i].etag, body, cases[i].body_len);
        assert_non_null(e);
        assert_int_equal(e->status, cases[i].status);
        assert_true(e->fresh_until == cases[i].fresh);
        assert_true(e->keep_until == cases[i].keep);
        d = entry_decode(e->blob, e->blob_len);
        assert_non_null(d);
        assert_int_equal(d->refs, 1);
        assert_same(e, d);
        free(body);
        entry_unref(e);
        entry_unref(d);
    }
}

static void
test_limits(void **state)
{
    char ctype[ENTRY_CTYPE_MAX + 2], etag[ENTRY_ETAG_MAX + 2];
    struct entry *e, *d;

    (void)state;
    memset(ctype, 'c', sizeof(ctype));
    memset(etag, 'e', sizeof(etag));
    ctype[ENTRY_CTYPE_MAX] = '\0';
    etag[ENTRY_ETAG_MAX] = '\0';
    e = entry_new(200, 1, 2, ctype, etag, "x", 1);
    assert_non_null(e);
    d = entry_decode(e->blob, e->blob_len);
    assert_non_null(d);
    assert_same(e, d);
    entry_unref(d);
    entry_unref(e);

    ctype[ENTRY_CTYPE_MAX] = 'c';
    ctype[ENTRY_CTYPE_MAX + 1] = '\0';
    assert_null(entry_new(200, 1, 2, ctype, "", "x", 1));
    etag[ENTRY_ETAG_MAX] = 'e';
    etag[ENTRY_ETAG_MAX + 1] = '\0';
    assert_null(entry_new(200, 1, 2, "", etag, "x", 1));
    assert_null(entry_new(99, 1, 2, "", "", "x", 1));
    assert_null(entry_new(600, 1, 2, "", "", "x", 1));
    assert_null(entry_new(0, 1, 2, "", "", "x", 1));
    assert_null(entry_new(-200, 1, 2, "", "", "x", 1));
    assert_null(entry_new(200, 1, 2, "", "", "x", UINT32_MAX));
    assert_null(entry_new(200, 1, 2, "", "", "x", SIZE_MAX));
}

static struct mac *
test_mac(const char *secret)
{
    struct mac *m = mac_new(secret, strlen(secret));

    assert_non_null(m);
    return m;
}

#define KEY "0v3/base/mc/1/0/0/png?ppi=100&scale=1&size=256&style=explore.day"

/* Any single flipped bit anywhere in a sealed blob is caught. */
static void
test_every_bit_flip(void **state)
{
    struct mac *m = test_mac("a secret of the fleet, 32 bytes.");
    struct entry *e = sample();
    unsigned char *copy = malloc(e->blob_len);
    size_t off;
    int bit, undetected = 0;
    char first[128] = "";

    (void)state;
    assert_non_null(copy);
    assert_int_equal(entry_seal(e, m, KEY, strlen(KEY)), 0);
    assert_int_equal(
        entry_check(e->blob, e->blob_len, m, KEY, strlen(KEY)), ENTRY_OK);
    for (off = 0; off < e->blob_len; off++) {
        for (bit = 0; bit < 8; bit++) {
            memcpy(copy, e->blob, e->blob_len);
            copy[off] ^= (unsigned char)(1u << bit);
            if (entry_check(copy, e->blob_len, m, KEY, strlen(KEY)) ==
                ENTRY_OK) {
                if (undetected++ == 0)
                    snprintf(
                        first, sizeof(first), "offset %zu bit %d", off, bit);
            }
        }
    }
    free(copy);
    entry_unref(e);
    mac_free(m);
    if (undetected > 0)
        fail_msg("%d single-bit corruptions verified (first: %s)", undetected,
            first);
}

/*
 * The tag binds the entry to its key and to the fleet's secret: copied
 * under another tile's key, written by an instance with another secret, or
 * written without one (never sealed), it does not verify.
 */
static void
test_sealed_for_its_key(void **state)
{
    struct mac *m = test_mac("a secret of the fleet, 32 bytes.");
    struct mac *other = test_mac("another fleet's secret, 32 bytes");
    struct entry *e = sample(), *plain = sample();
    const char *k2 = "0v3/base/mc/1/0/1/png?ppi=100&scale=1&size=256&"
                     "style=explore.day";

    (void)state;
    assert_int_equal(entry_seal(e, m, KEY, strlen(KEY)), 0);
    assert_int_equal(
        entry_check(e->blob, e->blob_len, m, KEY, strlen(KEY)), ENTRY_OK);
    assert_int_equal(
        entry_check(e->blob, e->blob_len, m, k2, strlen(k2)), ENTRY_FORGED);
    assert_int_equal(entry_check(e->blob, e->blob_len, m, KEY, strlen(KEY) - 1),
        ENTRY_FORGED);
    assert_int_equal(entry_check(e->blob, e->blob_len, other, KEY, strlen(KEY)),
        ENTRY_FORGED);
    assert_int_equal(
        entry_check(plain->blob, plain->blob_len, m, KEY, strlen(KEY)),
        ENTRY_FORGED);
    /* Two seals of one entry differ (a fresh nonce), both verify. */
    assert_int_equal(entry_seal(plain, m, KEY, strlen(KEY)), 0);
    assert_memory_not_equal(plain->blob + 32, e->blob + 32, 28);
    assert_int_equal(
        entry_check(plain->blob, plain->blob_len, m, KEY, strlen(KEY)),
        ENTRY_OK);
    /* Structure first: a truncated blob is malformed, not forged. */
    assert_int_equal(entry_check(e->blob, e->blob_len - 1, m, KEY, strlen(KEY)),
        ENTRY_MALFORMED);
    entry_unref(e);
    entry_unref(plain);
    mac_free(m);
    mac_free(other);
}

/* Small sealed values: bound to their key, any change refused. */
static void
test_sealed_small_values(void **state)
{
    struct mac *m = test_mac("a secret of the fleet, 32 bytes.");
    char out[64], copy[64];
    size_t n, i;

    (void)state;
    n = mac_seal(m, "gen", 3, "7 1a2b", 6, out, sizeof(out));
    assert_int_equal(n, 6 + MAC_SEAL_LEN);
    assert_int_equal(mac_open(m, "gen", 3, out, n), 6);
    assert_memory_equal(out, "7 1a2b", 6);
    assert_int_equal(mac_open(m, "gen2", 4, out, n), -1);
    assert_int_equal(mac_open(m, "gen", 3, out, n - 1), -1);
    assert_int_equal(mac_open(m, "gen", 3, "7 1a2b", 6), -1);
    for (i = 0; i < n * 8; i++) {
        memcpy(copy, out, n);
        copy[i / 8] ^= (char)(1u << (i % 8));
        assert_int_equal(mac_open(m, "gen", 3, copy, n), -1);
    }
    /* Too small a buffer: nothing sealed. */
    assert_int_equal(mac_seal(m, "gen", 3, "7 1a2b", 6, out, 6 + 27), 0);
    mac_free(m);
}

static void
test_bad_blobs(void **state)
{
    struct entry *e = sample();
    unsigned char *copy = malloc(e->blob_len + 64);
    size_t n;

    (void)state;
    assert_non_null(copy);
    /* Every truncation. */
    for (n = 0; n < e->blob_len; n++)
        assert_null(entry_decode(e->blob, n));
    /* Extensions with any trailing bytes. */
    memcpy(copy, e->blob, e->blob_len);
    memset(copy + e->blob_len, 0, 64);
    for (n = 1; n <= 64; n++)
        assert_null(entry_decode(copy, e->blob_len + n));
    /* Wrong magic, every version but ours. */
    memcpy(copy, e->blob, e->blob_len);
    memcpy(copy, "HPXF", 4);
    assert_null(entry_decode(copy, e->blob_len));
    memcpy(copy, "hpxe", 4);
    assert_null(entry_decode(copy, e->blob_len));
    memcpy(copy, e->blob, e->blob_len);
    for (n = 0; n < 256; n++) {
        if (n == ENTRY_VERSION)
            continue;
        copy[4] = (unsigned char)n;
        assert_null(entry_decode(copy, e->blob_len));
    }
    /* A status out of range. */
    memcpy(copy, e->blob, e->blob_len);
    copy[6] = 99;
    copy[7] = 0;
    assert_null(entry_decode(copy, e->blob_len));
    copy[6] = 0x58; /* 600 */
    copy[7] = 0x02;
    assert_null(entry_decode(copy, e->blob_len));
    /* Lengths that disagree with the size. */
    memcpy(copy, e->blob, e->blob_len);
    copy[24] ^= 1;
    assert_null(entry_decode(copy, e->blob_len));
    /* Oversized string lengths. */
    memcpy(copy, e->blob, e->blob_len);
    copy[28] = 0xff;
    copy[29] = 0xff;
    assert_null(entry_decode(copy, e->blob_len));
    /* All zeros, all ones, garbage, NULL. */
    memset(copy, 0, e->blob_len);
    assert_null(entry_decode(copy, e->blob_len));
    memset(copy, 0xff, e->blob_len);
    assert_null(entry_decode(copy, e->blob_len));
    assert_null(entry_decode(NULL, 0));
    assert_null(entry_decode(NULL, 100));
    assert_null(entry_decode("HPXE", 4));
    free(copy);
    entry_unref(e);
}

/*
 * Found by tests/fuzz/fuzz_entry: a blob with a NUL or CR/LF in its
 * content type or ETag decoded, cutting the C string short or injecting
 * response headers.
 */
static void
test_control_bytes(void **state)
{
    static const unsigned char bad[] = {'\0', '\r', '\n', 0x01, 0x1f, 0x7f};
    /* In "image/png", in "\"abc123\"" (right after it) */
    static const size_t offsets[] = {
        ENTRY_HEADER_SIZE + 5, ENTRY_HEADER_SIZE + 9 + 4};
    struct entry *e = sample(), *d;
    unsigned char *copy = malloc(e->blob_len);
    size_t i, j;

    (void)state;
    assert_non_null(copy);
    for (j = 0; j < 2; j++) {
        for (i = 0; i < sizeof(bad); i++) {
            memcpy(copy, e->blob, e->blob_len);
            copy[offsets[j]] = bad[i];
            assert_null(entry_decode(copy, e->blob_len));
        }
    }
    /* The body is data: any byte goes. */
    memcpy(copy, e->blob, e->blob_len);
    copy[e->blob_len - 1] = '\0';
    d = entry_decode(copy, e->blob_len);
    assert_non_null(d);
    entry_unref(d);
    /* HTAB is a legal field byte. */
    d = entry_new(200, 1, 2, "text/plain;\tcharset=utf-8", "", "x", 1);
    assert_non_null(d);
    entry_unref(e);
    e = entry_decode(d->blob, d->blob_len);
    assert_non_null(e);
    entry_unref(d);
    /* A header line smuggled in by whoever wrote the blob. */
    d = entry_new(200, 1, 2, "text/plain\r\nSet-Cookie: a=b", "", "x", 1);
    assert_non_null(d);
    assert_null(entry_decode(d->blob, d->blob_len));
    entry_unref(d);
    entry_unref(e);
    free(copy);
}

static void
test_refcount(void **state)
{
    struct entry *e = sample(), *d;

    (void)state;
    assert_ptr_equal(entry_ref(e), e);
    assert_int_equal(e->refs, 2);
    entry_ref(e);
    assert_int_equal(e->refs, 3);
    entry_unref(e);
    entry_unref(e);
    assert_int_equal(e->refs, 1);
    /* Still usable with one reference. */
    d = entry_decode(e->blob, e->blob_len);
    assert_non_null(d);
    entry_unref(e); /* freed: valgrind reports any leak */
    assert_int_equal(d->body_len, sizeof(png));
    entry_unref(d);
    entry_unref(NULL); /* does nothing */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_layout),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_every_bit_flip),
        cmocka_unit_test(test_sealed_for_its_key),
        cmocka_unit_test(test_sealed_small_values),
        cmocka_unit_test(test_bad_blobs),
        cmocka_unit_test(test_control_bytes),
        cmocka_unit_test(test_refcount),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
