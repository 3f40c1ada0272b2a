#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "upstream.h"

/* Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]. */
static void
test_backoff_bounds(void **state)
{
    static const uint32_t rnds[] = {
        0, 1, 7, 99, 12345, 0x7fffffffu, 0xffffffffu};
    int attempt;
    size_t i;

    (void)state;
    for (attempt = 1; attempt <= 12; attempt++) {
        int64_t ceiling = 100;
        int k;

        for (k = 1; k < attempt; k++)
            ceiling = ceiling * 2 > 2000 ? 2000 : ceiling * 2;
        for (i = 0; i < sizeof(rnds) / sizeof(rnds[0]); i++) {
            int64_t d = upstream_backoff_ms(attempt, 100, 2000, rnds[i]);
            assert_true(d >= 0);
            assert_true(d <= ceiling);
        }
        /* The top of the range is reachable. */
        assert_int_equal(
            upstream_backoff_ms(attempt, 100, 2000, (uint32_t)ceiling),
            ceiling);
    }
    assert_int_equal(upstream_backoff_ms(1, 100, 2000, 0), 0);
    assert_int_equal(upstream_backoff_ms(3, 0, 2000, 12345), 0);
    /* Huge attempt counts do not overflow. */
    assert_true(upstream_backoff_ms(1000, 100, 2000, 0xffffffffu) <= 2000);
}

/* Spread: many draws cover the range, not one point. */
static void
test_backoff_spread(void **state)
{
    int buckets[4] = {0, 0, 0, 0};
    uint32_t x = 2463534242u;
    int i;

    (void)state;
    for (i = 0; i < 4000; i++) {
        int64_t d;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d = upstream_backoff_ms(4, 100, 2000, x); /* range 0..800 */
        buckets[d * 4 / 801]++;
    }
    for (i = 0; i < 4; i++)
        assert_true(buckets[i] > 700);
}

static void
test_retry_after(void **state)
{
    const time_t now = 1784000000; /* 2026-07-14 */

    (void)state;
    assert_int_equal(upstream_parse_retry_after("0", now), 0);
    assert_int_equal(upstream_parse_retry_after("3", now), 3);
    assert_int_equal(upstream_parse_retry_after("120", now), 120);
    assert_int_equal(upstream_parse_retry_after("", now), -1);
    assert_int_equal(upstream_parse_retry_after(NULL, now), -1);
    assert_int_equal(upstream_parse_retry_after("-5", now), -1);
    assert_int_equal(upstream_parse_retry_after("soon", now), -1);
    assert_int_equal(upstream_parse_retry_after("1.5", now), -1);
    /* HTTP-date: 30 s after now, and one in the past. */
    assert_int_equal(
        upstream_parse_retry_after("Tue, 14 Jul 2026 03:33:50 GMT", now), 30);
    assert_int_equal(
        upstream_parse_retry_after("Tue, 14 Jul 2026 03:33:20 GMT", now + 3600),
        0);
}

/* The allow-list: the media type alone, any case, parameters dropped. */
static void
test_media_type(void **state)
{
    static const struct {
        const char *value;
        enum upstream_expect expect;
        const char *canonical; /* NULL: refused */
    } cases[] = {
        {"image/png", UPSTREAM_EXPECT_IMAGE, "image/png"},
        {"image/jpeg", UPSTREAM_EXPECT_IMAGE, "image/jpeg"},
        {"IMAGE/PNG", UPSTREAM_EXPECT_IMAGE, "image/png"},
        {"Image/Jpeg; q=1", UPSTREAM_EXPECT_IMAGE, "image/jpeg"},
        {"  image/png ;charset=binary", UPSTREAM_EXPECT_IMAGE, "image/png"},
        {"image/png\t", UPSTREAM_EXPECT_IMAGE, "image/png"},
        {"application/json", UPSTREAM_EXPECT_JSON, "application/json"},
        {"application/json; charset=utf-8", UPSTREAM_EXPECT_JSON,
            "application/json"},
        {"Application/JSON;charset=UTF-8", UPSTREAM_EXPECT_JSON,
            "application/json"},
        /* Not for this kind of request. */
        {"application/json", UPSTREAM_EXPECT_IMAGE, NULL},
        {"image/png", UPSTREAM_EXPECT_JSON, NULL},
        /* Not on the list at all. */
        {"text/html", UPSTREAM_EXPECT_IMAGE, NULL},
        {"text/html; charset=utf-8", UPSTREAM_EXPECT_JSON, NULL},
        {"image/svg+xml", UPSTREAM_EXPECT_IMAGE, NULL},
        {"image/jpg", UPSTREAM_EXPECT_IMAGE, NULL},
        {"image/pngx", UPSTREAM_EXPECT_IMAGE, NULL},
        {"image/pn", UPSTREAM_EXPECT_IMAGE, NULL},
        {"image/png,text/html", UPSTREAM_EXPECT_IMAGE, NULL},
        {"image / png", UPSTREAM_EXPECT_IMAGE, NULL},
        {"application/javascript", UPSTREAM_EXPECT_JSON, NULL},
        {"application/json5", UPSTREAM_EXPECT_JSON, NULL},
        {"*/*", UPSTREAM_EXPECT_IMAGE, NULL},
        {"", UPSTREAM_EXPECT_IMAGE, NULL},
        {";", UPSTREAM_EXPECT_IMAGE, NULL},
        {"   ", UPSTREAM_EXPECT_JSON, NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = upstream_media_type(cases[i].value, cases[i].expect);

        if (cases[i].canonical == NULL) {
            if (got != NULL)
                fail_msg("\"%s\" was allowed as %s", cases[i].value, got);
        } else {
            if (got == NULL)
                fail_msg("\"%s\" was refused", cases[i].value);
            assert_string_equal(got, cases[i].canonical);
        }
    }
    assert_null(upstream_media_type(NULL, UPSTREAM_EXPECT_IMAGE));
}

/* A value that does not fit is dropped whole, never cut. */
static void
test_header_value(void **state)
{
    char out[16], line[4096];
    size_t vlen = 0;
    int n;

    (void)state;
    /* Another header: untouched. */
    strcpy(out, "keep");
    assert_int_equal(upstream_header_value(
                         "Expires: 0\r\n", 12, "ETag", out, sizeof(out), &vlen),
        UPSTREAM_HEADER_OTHER);
    assert_string_equal(out, "keep");
    assert_int_equal(upstream_header_value(
                         "ETagX: 1\r\n", 10, "ETag", out, sizeof(out), NULL),
        UPSTREAM_HEADER_OTHER);
    /* Kept, blanks trimmed, any case of the name. */
    assert_int_equal(upstream_header_value("etag:  \"abc\" \r\n", 15, "ETag",
                         out, sizeof(out), &vlen),
        UPSTREAM_HEADER_KEPT);
    assert_string_equal(out, "\"abc\"");
    assert_int_equal(vlen, 5);
    /* Exactly the room there is: 15 bytes and the NUL. */
    n = snprintf(line, sizeof(line), "ETag: \"%013d\"\r\n", 7);
    assert_int_equal(
        upstream_header_value(line, (size_t)n, "ETag", out, sizeof(out), &vlen),
        UPSTREAM_HEADER_KEPT);
    assert_int_equal(vlen, 15);
    assert_int_equal(strlen(out), 15);
    assert_int_equal(out[14], '"');
    /* One byte more: dropped, not cut to 15. */
    n = snprintf(line, sizeof(line), "ETag: \"%014d\"\r\n", 7);
    assert_int_equal(
        upstream_header_value(line, (size_t)n, "ETag", out, sizeof(out), &vlen),
        UPSTREAM_HEADER_TOO_LONG);
    assert_int_equal(vlen, 16);
    assert_string_equal(out, "");
    /* The 3,000-byte ETag of the issue, in a 256-byte field. */
    {
        char etag[256];

        memset(line, 'a', sizeof(line));
        memcpy(line, "ETag: \"", 7);
        line[7 + 2998] = '"';
        memcpy(line + 7 + 2999, "\r\n", 2);
        assert_int_equal(upstream_header_value(
                             line, 7 + 3001, "ETag", etag, sizeof(etag), &vlen),
            UPSTREAM_HEADER_TOO_LONG);
        assert_int_equal(vlen, 3000);
        assert_string_equal(etag, "");
    }
    /* Control bytes: dropped too, and told apart. */
    assert_int_equal(upstream_header_value("ETag: \"a\rb\"\r\n", 13, "ETag",
                         out, sizeof(out), &vlen),
        UPSTREAM_HEADER_BAD_BYTES);
    assert_string_equal(out, "");
    assert_int_equal(upstream_header_value("ETag: \"a\0b\"\r\n", 13, "ETag",
                         out, sizeof(out), &vlen),
        UPSTREAM_HEADER_BAD_BYTES);
    assert_string_equal(out, "");
    /* An empty value is kept as empty. */
    assert_int_equal(
        upstream_header_value("ETag:\r\n", 7, "ETag", out, sizeof(out), &vlen),
        UPSTREAM_HEADER_KEPT);
    assert_string_equal(out, "");
    assert_int_equal(vlen, 0);
}

/*
 * The watchdog: no byte for the attempt timeout ends any attempt; taking
 * longer than that in all ends one that can still be retried (nothing
 * published), not a large body that keeps coming.
 */
static void
test_stall_check(void **state)
{
    int64_t next = -1;

    (void)state;
    /* Started at 1000, timeout 500. */
    assert_int_equal(upstream_stall_check(1000, 1000, 1000, 1, 500, &next),
        UPSTREAM_STALL_NONE);
    assert_int_equal(next, 500);
    assert_int_equal(upstream_stall_check(1499, 1000, 1000, 1, 500, &next),
        UPSTREAM_STALL_NONE);
    assert_int_equal(next, 1);
    /* Nothing at all since the start (before the head, or connecting). */
    assert_int_equal(upstream_stall_check(1500, 1000, 1000, 1, 500, &next),
        UPSTREAM_STALL_IDLE);
    /* Bytes came at 1400: idle until 1900, but in all only until 1500. */
    assert_int_equal(upstream_stall_check(1450, 1000, 1400, 1, 500, &next),
        UPSTREAM_STALL_NONE);
    assert_int_equal(next, 50);
    assert_int_equal(upstream_stall_check(1500, 1000, 1400, 1, 500, &next),
        UPSTREAM_STALL_SLOW);
    /* Streaming (published): only the idle rule. */
    assert_int_equal(upstream_stall_check(1500, 1000, 1400, 0, 500, &next),
        UPSTREAM_STALL_NONE);
    assert_int_equal(next, 400);
    assert_int_equal(upstream_stall_check(5000, 1000, 4600, 0, 500, &next),
        UPSTREAM_STALL_NONE);
    assert_int_equal(upstream_stall_check(5100, 1000, 4600, 0, 500, &next),
        UPSTREAM_STALL_IDLE);
}

/* Tile-sized bodies are kept back until whole; larger ones stream. */
static void
test_holds(void **state)
{
    (void)state;
    assert_true(upstream_holds(0, 65536));
    assert_true(upstream_holds(65536, 65536));
    assert_false(upstream_holds(65537, 65536));
    assert_true(upstream_holds(-1, 65536)); /* unknown: until it passes */
    assert_true(upstream_holds(0, 0));
    assert_false(upstream_holds(1, 0));
    assert_true(upstream_holds(-1, 0));
}

static void
test_outcome_names(void **state)
{
    (void)state;
    assert_string_equal(upstream_outcome_name(UPSTREAM_OK), "ok");
    assert_string_equal(upstream_outcome_name(UPSTREAM_TIMEOUT), "timeout");
    assert_string_equal(upstream_outcome_name(UPSTREAM_STALLED), "stalled");
    assert_string_equal(upstream_outcome_name(UPSTREAM_TOO_BIG), "too_big");
    assert_string_equal(
        upstream_outcome_name(UPSTREAM_BAD_RESPONSE), "bad_response");
    assert_string_equal(upstream_outcome_name(-1), "unknown");
    assert_string_equal(
        upstream_outcome_name(UPSTREAM_BAD_RESPONSE + 1), "unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_backoff_spread),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_media_type),
        cmocka_unit_test(test_header_value),
        cmocka_unit_test(test_stall_check),
        cmocka_unit_test(test_holds),
        cmocka_unit_test(test_outcome_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
