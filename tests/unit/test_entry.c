#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "crc32c.h"
#include "entry.h"

static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
    '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 1, 2, 0xff, 0xfe};

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
    assert_true(b->body >= b->blob && b->body + b->body_len <= b->blob +
        b->blob_len);
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
    assert_int_equal(h[8] | h[9] << 8 | h[10] << 16 | (uint32_t)h[11] << 24,
        1700000000);
    assert_int_equal(h[12] | h[13] | h[14] | h[15], 0);
    assert_int_equal(h[24] | h[25] << 8, sizeof(png));
    assert_int_equal(h[32] | h[33] << 8, 9);
    assert_int_equal(h[34] | h[35] << 8, 8);
    assert_int_equal(h[36] | h[37] | h[38] | h[39], 0);
    assert_memory_equal(h + 40, "image/png\"abc123\"", 17);
    assert_memory_equal(h + 57, png, sizeof(png));
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

/* Any single flipped bit anywhere in the blob is caught. */
static void
test_every_bit_flip(void **state)
{
    struct entry *e = sample();
    unsigned char *copy = malloc(e->blob_len);
    size_t off;
    int bit, undetected = 0;
    char first[128] = "";

    (void)state;
    assert_non_null(copy);
    for (off = 0; off < e->blob_len; off++) {
        for (bit = 0; bit < 8; bit++) {
            struct entry *d;

            memcpy(copy, e->blob, e->blob_len);
            copy[off] ^= (unsigned char)(1u << bit);
            d = entry_decode(copy, e->blob_len);
            if (d != NULL) {
                if (undetected++ == 0)
                    snprintf(first, sizeof(first), "offset %zu bit %d",
                        off, bit);
                entry_unref(d);
            }
        }
    }
    free(copy);
    entry_unref(e);
    if (undetected > 0)
        fail_msg("%d single-bit corruptions decoded as valid (first: %s)",
            undetected, first);
}

/* The body and strings alone: every flipped bit is caught by the CRC. */
static void
test_payload_bit_flips(void **state)
{
    struct entry *e = sample();
    unsigned char *copy = malloc(e->blob_len);
    size_t off;
    int bit;

    (void)state;
    assert_non_null(copy);
    for (off = ENTRY_HEADER_SIZE; off < e->blob_len; off++) {
        for (bit = 0; bit < 8; bit++) {
            memcpy(copy, e->blob, e->blob_len);
            copy[off] ^= (unsigned char)(1u << bit);
            if (entry_decode(copy, e->blob_len) != NULL)
                fail_msg("payload offset %zu bit %d not caught", off, bit);
        }
    }
    /* The length and CRC fields too. */
    for (off = 24; off < 36; off++) {
        for (bit = 0; bit < 8; bit++) {
            memcpy(copy, e->blob, e->blob_len);
            copy[off] ^= (unsigned char)(1u << bit);
            if (entry_decode(copy, e->blob_len) != NULL)
                fail_msg("header offset %zu bit %d not caught", off, bit);
        }
    }
    free(copy);
    entry_unref(e);
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
    /* A status out of range with a correct CRC (CRC covers payload). */
    memcpy(copy, e->blob, e->blob_len);
    copy[6] = 99;
    copy[7] = 0;
    assert_null(entry_decode(copy, e->blob_len));
    copy[6] = 0x58;   /* 600 */
    copy[7] = 0x02;
    assert_null(entry_decode(copy, e->blob_len));
    /* Lengths that disagree with the size. */
    memcpy(copy, e->blob, e->blob_len);
    copy[24] ^= 1;
    assert_null(entry_decode(copy, e->blob_len));
    /* Oversized string lengths. */
    memcpy(copy, e->blob, e->blob_len);
    copy[32] = 0xff;
    copy[33] = 0xff;
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

/* Set the CRC field of a blob to the CRC of its (changed) contents. */
static void
fix_crc(unsigned char *blob, size_t len)
{
    uint32_t crc;

    memset(blob + 28, 0, 4);
    crc = crc32c(0, blob, len);
    blob[28] = (unsigned char)crc;
    blob[29] = (unsigned char)(crc >> 8);
    blob[30] = (unsigned char)(crc >> 16);
    blob[31] = (unsigned char)(crc >> 24);
}

/*
 * Found by tests/fuzz/fuzz_entry: a blob with a correct CRC and a NUL or
 * CR/LF in its content type or ETag decoded, cutting the C string short
 * or injecting response headers.
 */
static void
test_control_bytes(void **state)
{
    static const unsigned char bad[] = {'\0', '\r', '\n', 0x01, 0x1f, 0x7f};
    /* In "image/png", in "\"abc123\"" (right after it) */
    static const size_t offsets[] = {ENTRY_HEADER_SIZE + 5,
        ENTRY_HEADER_SIZE + 9 + 4};
    struct entry *e = sample(), *d;
    unsigned char *copy = malloc(e->blob_len);
    size_t i, j;

    (void)state;
    assert_non_null(copy);
    for (j = 0; j < 2; j++) {
        for (i = 0; i < sizeof(bad); i++) {
            memcpy(copy, e->blob, e->blob_len);
            copy[offsets[j]] = bad[i];
            fix_crc(copy, e->blob_len);
            assert_null(entry_decode(copy, e->blob_len));
        }
    }
    /* The body is data: any byte goes. */
    memcpy(copy, e->blob, e->blob_len);
    copy[e->blob_len - 1] = '\0';
    fix_crc(copy, e->blob_len);
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
    entry_unref(e);         /* freed: valgrind reports any leak */
    assert_int_equal(d->body_len, sizeof(png));
    entry_unref(d);
    entry_unref(NULL);      /* does nothing */
}


/* Known answers, and the instruction path equal to the tables. */
static void
test_crc32c(void **state)
{
    static unsigned char buf[70000];
    size_t i, off, len;

    (void)state;
    assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(crc32c_portable(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(crc32c(0, "", 0), 0);
    memset(buf, 0, 32);
    assert_int_equal(crc32c(0, buf, 32), 0x8a9136aau);      /* RFC 3720 */
    memset(buf, 0xff, 32);
    assert_int_equal(crc32c(0, buf, 32), 0x62a8ab43u);
    for (i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 2654435761u >> 13);
    for (off = 0; off < 9; off++)
        for (len = 0; len + off <= sizeof(buf); len = len * 3 + 1)
            assert_int_equal(crc32c(0, buf + off, len),
                crc32c_portable(0, buf + off, len));
    /* In pieces, continued: the same as at once. */
    assert_int_equal(crc32c(crc32c(0, buf, 1001), buf + 1001, 50000),
        crc32c(0, buf, 51001));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_new_layout),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_every_bit_flip),
        cmocka_unit_test(test_payload_bit_flips),
        cmocka_unit_test(test_bad_blobs),
        cmocka_unit_test(test_control_bytes),
        cmocka_unit_test(test_refcount),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
