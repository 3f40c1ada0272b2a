#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* ------------------------------------------------------- util_parse_long */

static const struct {
    const char *s;
    long min, max;
    int rc;
    long want;
} long_cases[] = {
    {"0", 0, 10, 0, 0},
    {"7", 0, 10, 0, 7},
    {"10", 0, 10, 0, 10},
    {"11", 0, 10, -1, 0},
    {"5", 6, 10, -1, 0},
    {"6", 6, 10, 0, 6},
    {"0010", 0, 100, 0, 10}, /* leading zeros are digits */
    {"", 0, 10, -1, 0},
    {"-1", -10, 10, -1, 0}, /* no sign, ever */
    {"+1", 0, 10, -1, 0},
    {" 1", 0, 10, -1, 0},
    {"1 ", 0, 10, -1, 0},
    {"1\n", 0, 10, -1, 0},
    {"1x", 0, 10, -1, 0},
    {"x1", 0, 10, -1, 0},
    {"0x10", 0, 100, -1, 0},
    {"1.0", 0, 10, -1, 0},
    {"1e3", 0, 10000, -1, 0},
    {"9", 0, 9, 0, 9},
    {"19", 0, 19, 0, 19},
    {"20", 0, 19, -1, 0},
    {"100", 0, 99, -1, 0},
    {"2147483647", 0, 2147483647L, 0, 2147483647L},
    {"2147483648", 0, 2147483647L, -1, 0},
    {"9223372036854775807", 0, LONG_MAX, 0, LONG_MAX},
    {"9223372036854775808", 0, LONG_MAX, -1, 0},
    {"99999999999999999999999", 0, LONG_MAX, -1, 0},
    {"00000000000000000000001", 0, LONG_MAX, 0, 1},
};

static void
test_parse_long_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(long_cases) / sizeof(long_cases[0]); i++) {
        long out = -12345;
        int rc = util_parse_long(
            long_cases[i].s, long_cases[i].min, long_cases[i].max, &out);

        if (rc != long_cases[i].rc)
            fail_msg("util_parse_long(\"%s\", %ld, %ld) = %d, want %d",
                long_cases[i].s, long_cases[i].min, long_cases[i].max, rc,
                long_cases[i].rc);
        if (rc == 0)
            assert_int_equal(out, long_cases[i].want);
        else
            assert_int_equal(out, -12345); /* untouched on failure */
    }
    assert_int_equal(util_parse_long(NULL, 0, 10, &(long){0}), -1);
}

static void
test_parse_long_every_value(void **state)
{
    char buf[16];
    long v, out;

    (void)state;
    for (v = 0; v <= 2000; v++) {
        snprintf(buf, sizeof(buf), "%ld", v);
        assert_int_equal(
            util_parse_long(buf, 0, 1000, &out), v <= 1000 ? 0 : -1);
        if (v <= 1000)
            assert_int_equal(out, v);
    }
}

/* ------------------------------------------------------- util_parse_size */

static const struct {
    const char *s;
    int rc;
    uint64_t want;
} size_cases[] = {
    {"0", 0, 0},
    {"1", 0, 1},
    {"1024", 0, 1024},
    {"1K", 0, 1024},
    {"1k", 0, 1024},
    {"2M", 0, 2ULL << 20},
    {"2m", 0, 2ULL << 20},
    {"3G", 0, 3ULL << 30},
    {"3g", 0, 3ULL << 30},
    {"0K", 0, 0},
    {"268435456", 0, 268435456ULL},
    {"18446744073709551615", 0, UINT64_MAX},
    {"18446744073709551616", -1, 0},
    {"17179869183G", 0, 17179869183ULL << 30},
    {"17179869184G", -1, 0},
    {"", -1, 0},
    {"K", -1, 0},
    {"-1", -1, 0},
    {"+1", -1, 0},
    {" 1", -1, 0},
    {"1 ", -1, 0},
    {"1 K", -1, 0},
    {"1KB", -1, 0},
    {"1KK", -1, 0},
    {"1T", -1, 0},
    {"1.5M", -1, 0},
    {"0x10", -1, 0},
};

static void
test_parse_size_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]); i++) {
        uint64_t out = 4242;
        int rc = util_parse_size(size_cases[i].s, &out);

        if (rc != size_cases[i].rc)
            fail_msg("util_parse_size(\"%s\") = %d, want %d", size_cases[i].s,
                rc, size_cases[i].rc);
        if (rc == 0 && out != size_cases[i].want)
            fail_msg("util_parse_size(\"%s\") gave %llu", size_cases[i].s,
                (unsigned long long)out);
        if (rc != 0)
            assert_true(out == 4242);
    }
    assert_int_equal(util_parse_size(NULL, &(uint64_t){0}), -1);
}

/* ---------------------------------------------------------- util_strlcpy */

static void
test_strlcpy(void **state)
{
    char buf[8];

    (void)state;
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(util_strlcpy(buf, "abc", sizeof(buf)), 3);
    assert_string_equal(buf, "abc");

    memset(buf, 'x', sizeof(buf));
    assert_int_equal(util_strlcpy(buf, "abcdefg", sizeof(buf)), 7);
    assert_string_equal(buf, "abcdefg");

    memset(buf, 'x', sizeof(buf));
    assert_int_equal(util_strlcpy(buf, "abcdefghijkl", sizeof(buf)), 12);
    assert_string_equal(buf, "abcdefg");

    memset(buf, 'x', sizeof(buf));
    assert_int_equal(util_strlcpy(buf, "", sizeof(buf)), 0);
    assert_string_equal(buf, "");

    memset(buf, 'x', sizeof(buf));
    assert_int_equal(util_strlcpy(buf, "abc", 1), 3);
    assert_int_equal(buf[0], '\0');
    assert_int_equal(buf[1], 'x');

    memset(buf, 'x', sizeof(buf));
    assert_int_equal(util_strlcpy(buf, "abc", 0), 3);
    assert_int_equal(buf[0], 'x'); /* size 0 writes nothing */

    memset(buf, 'x', sizeof(buf));
    assert_int_equal(util_strlcpy(buf, "abcdef", 4), 6);
    assert_string_equal(buf, "abc");
    assert_int_equal(buf[4], 'x'); /* nothing past size */
}

/* --------------------------------------------------------------- dynbuf */

static void
test_dynbuf_cap(void **state)
{
    struct dynbuf b;
    static char chunk[10000];
    size_t i;

    (void)state;
    memset(chunk, 'a', sizeof(chunk));
    dynbuf_init(&b, 10000);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    for (i = 0; i < 10; i++)
        assert_int_equal(dynbuf_append(&b, chunk, 1000), 0);
    assert_int_equal(b.len, 10000);
    assert_true(b.cap <= 10000);
    /* Full: even one byte more fails and changes nothing. */
    assert_int_equal(dynbuf_append(&b, "z", 1), -1);
    assert_int_equal(b.len, 10000);
    assert_int_equal(dynbuf_append(&b, "", 0), 0);
    assert_int_equal(b.len, 10000);
    for (i = 0; i < b.len; i++)
        assert_int_equal(b.data[i], 'a');

    dynbuf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(dynbuf_append(&b, "hello", 5), 0);
    assert_memory_equal(b.data, "hello", 5);
    /* An append that would pass the cap fails whole, not partly. */
    assert_int_equal(dynbuf_append(&b, chunk, 9996), -1);
    assert_int_equal(b.len, 5);
    assert_int_equal(dynbuf_append(&b, chunk, 9995), 0);
    assert_int_equal(b.len, 10000);
    dynbuf_cleanup(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    dynbuf_cleanup(&b); /* twice is harmless */
}

static void
test_dynbuf_growth(void **state)
{
    struct dynbuf b;
    size_t i;
    unsigned char byte;

    (void)state;
    dynbuf_init(&b, 1 << 20);
    for (i = 0; i < 100000; i++) {
        byte = (unsigned char)(i * 31);
        assert_int_equal(dynbuf_append(&b, &byte, 1), 0);
    }
    assert_int_equal(b.len, 100000);
    assert_true(b.cap >= b.len && b.cap <= (1 << 20));
    for (i = 0; i < 100000; i++)
        assert_int_equal((unsigned char)b.data[i], (unsigned char)(i * 31));
    dynbuf_cleanup(&b);

    /* A tiny cap. */
    dynbuf_init(&b, 3);
    assert_int_equal(dynbuf_append(&b, "ab", 2), 0);
    assert_int_equal(dynbuf_append(&b, "cd", 2), -1);
    assert_int_equal(dynbuf_append(&b, "c", 1), 0);
    assert_memory_equal(b.data, "abc", 3);
    assert_int_equal(dynbuf_append(&b, "d", 1), -1);
    dynbuf_cleanup(&b);

    /* Cap 0: nothing fits. */
    dynbuf_init(&b, 0);
    assert_int_equal(dynbuf_append(&b, "a", 1), -1);
    dynbuf_cleanup(&b);
}

/* ------------------------------------------------------- util_rfc3339_ms */

static const struct {
    int64_t ms;
    const char *want;
} time_cases[] = {
    {0, "1970-01-01T00:00:00.000Z"},
    {1, "1970-01-01T00:00:00.001Z"},
    {999, "1970-01-01T00:00:00.999Z"},
    {1000, "1970-01-01T00:00:01.000Z"},
    {86399999, "1970-01-01T23:59:59.999Z"},
    {951782400000LL, "2000-02-29T00:00:00.000Z"},
    {1700000000123LL, "2023-11-14T22:13:20.123Z"},
    {4102444799999LL, "2099-12-31T23:59:59.999Z"},
};

static void
test_rfc3339(void **state)
{
    char buf[32];
    size_t i;
    int64_t now;

    (void)state;
    for (i = 0; i < sizeof(time_cases) / sizeof(time_cases[0]); i++) {
        util_rfc3339_ms(time_cases[i].ms, buf, sizeof(buf));
        assert_string_equal(buf, time_cases[i].want);
    }
    now = util_wall_ms();
    util_rfc3339_ms(now, buf, sizeof(buf));
    assert_int_equal(strlen(buf), 24);
    assert_int_equal(buf[4], '-');
    assert_int_equal(buf[10], 'T');
    assert_int_equal(buf[19], '.');
    assert_int_equal(buf[23], 'Z');
    /* A short buffer is truncated, still terminated. */
    memset(buf, 'x', sizeof(buf));
    util_rfc3339_ms(0, buf, 11);
    assert_string_equal(buf, "1970-01-01");
}

static void
test_clocks(void **state)
{
    int64_t a = util_mono_us(), b = util_mono_us();
    int64_t ms = util_mono_ms(), wall = util_wall_ms();

    (void)state;
    assert_true(b >= a);
    assert_true(ms >= a / 1000);
    assert_true(wall > 1600000000000LL); /* after September 2020 */
}

/* --------------------------------------------------- util_consttime_equal */

/* Proxy URLs as HTTPS_PROXY holds them: the credentials never survive. */
static void
test_redact_userinfo(void **state)
{
    static const char *const cases[][2] = {
        {"http://user:s3cret@proxy.example:3128",
            "http://<redacted>@proxy.example:3128"},
        {"http://user:s3cret@proxy.example:3128/",
            "http://<redacted>@proxy.example:3128/"},
        {"user:s3cret@proxy.example:3128", "<redacted>@proxy.example:3128"},
        /* a password holding '@' ends at the last '@' of the authority */
        {"http://u:p@ss@proxy:8080", "http://<redacted>@proxy:8080"},
        {"socks5h://u:p@[::1]:1080", "socks5h://<redacted>@[::1]:1080"},
        /* no user information, or an '@' past the authority: unchanged */
        {"http://proxy.example:3128", "http://proxy.example:3128"},
        {"http://proxy.example:3128/a@b", "http://proxy.example:3128/a@b"},
        {"proxy.example:3128", "proxy.example:3128"},
        {"", ""},
    };
    char out[128], small[12];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        util_redact_userinfo(cases[i][0], out, sizeof(out));
        assert_string_equal(out, cases[i][1]);
        assert_null(strstr(out, "s3cret"));
    }
    /* Cut to fit, still without the secret. */
    util_redact_userinfo(
        "http://user:s3cret@proxy.example:3128", small, sizeof(small));
    assert_string_equal(small, "http://<red");
}

static void
test_consttime_equal(void **state)
{
    static const struct {
        const char *a, *b;
        int eq;
    } cases[] = {
        {"", "", 1},
        {"a", "a", 1},
        {"secret-key", "secret-key", 1},
        {"a", "", 0},
        {"", "a", 0},
        {"a", "b", 0},
        {"abc", "abd", 0},
        {"abc", "ab", 0},
        {"ab", "abc", 0},
        {"abcabc", "abc", 0},
        {"abc", "abcabc", 0},
        {"Abc", "abc", 0},
        {"key\x80", "key\x81", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (util_consttime_equal(cases[i].a, cases[i].b) != cases[i].eq)
            fail_msg("util_consttime_equal(\"%s\", \"%s\") != %d", cases[i].a,
                cases[i].b, cases[i].eq);
}

/* ------------------------------------------------------------ util_hash64 */

static void
test_hash64(void **state)
{
    const char *k = "base/mc/1/0/0/png";
    uint64_t h = util_hash64(k, strlen(k), 0);
    unsigned counts[16] = {0};
    char buf[32];
    int i;

    (void)state;
    assert_true(h == util_hash64(k, strlen(k), 0));
    assert_true(h != util_hash64(k, strlen(k), 1));
    assert_true(h != util_hash64(k, strlen(k) - 1, 0));
    assert_true(util_hash64("a", 1, 0) != util_hash64("b", 1, 0));
    assert_true(util_hash64("", 0, 0) == util_hash64(NULL, 0, 0));
    /* Low bits spread evenly enough to pick one of 16 shards. */
    for (i = 0; i < 16000; i++) {
        snprintf(buf, sizeof(buf), "base/mc/14/%d/0/png", i);
        counts[util_hash64(buf, strlen(buf), 0) & 15]++;
    }
    for (i = 0; i < 16; i++)
        assert_in_range(counts[i], 800, 1200);
}

/* A deadline in milliseconds as a timespec, for futex and condvar waits. */
static void
test_ms_timespec(void **state)
{
    struct timespec ts;

    (void)state;
    util_ms_timespec(12345678999LL, &ts);
    assert_int_equal(ts.tv_sec, 12345678);
    assert_int_equal(ts.tv_nsec, 999000000L);
    util_ms_timespec(0, &ts);
    assert_int_equal(ts.tv_sec, 0);
    assert_int_equal(ts.tv_nsec, 0);
}

static void
test_header_field(void **state)
{
    static const char line[] = "content-TYPE: \t image/png ; x \r\n";
    size_t n = 99;
    const char *v;

    (void)state;
    v = util_header_field(line, sizeof(line) - 1, "Content-Type", &n);
    assert_non_null(v);
    assert_int_equal(n, strlen("image/png ; x"));
    assert_memory_equal(v, "image/png ; x", n);
    /* Another name, a prefix of the name, no colon: none. */
    assert_null(util_header_field(line, sizeof(line) - 1, "ETag", &n));
    assert_null(util_header_field("Content-Typex: a", 16, "Content-Type", &n));
    assert_null(util_header_field("Content-Type", 12, "Content-Type", &n));
    v = util_header_field("ETag:\r\n", 7, "etag", &n);
    assert_non_null(v);
    assert_int_equal(n, 0);
}

static void
test_lang_valid(void **state)
{
    static const char *const good[] = {"en", "pt-BR", "zh-Hant", "de-a"};
    static const char *const bad[] = {
        "", "e", "EN", "en-", "en_US", "en-Hanto", "en-B1", "eng", "e1"};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(util_lang_valid(good[i]));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(util_lang_valid(bad[i]));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ms_timespec),
        cmocka_unit_test(test_parse_long_table),
        cmocka_unit_test(test_parse_long_every_value),
        cmocka_unit_test(test_parse_size_table),
        cmocka_unit_test(test_strlcpy),
        cmocka_unit_test(test_dynbuf_cap),
        cmocka_unit_test(test_dynbuf_growth),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_consttime_equal),
        cmocka_unit_test(test_redact_userinfo),
        cmocka_unit_test(test_hash64),
        cmocka_unit_test(test_header_field),
        cmocka_unit_test(test_lang_valid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
