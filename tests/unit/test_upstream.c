#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <time.h>

#include "upstream.h"

/* Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]. */
static void
test_backoff_bounds(void **state)
{
    static const uint32_t rnds[] = {0, 1, 7, 99, 12345, 0x7fffffffu,
        0xffffffffu};
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
        assert_int_equal(upstream_backoff_ms(attempt, 100, 2000,
                             (uint32_t)ceiling), ceiling);
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
        d = upstream_backoff_ms(4, 100, 2000, x);   /* range 0..800 */
        buckets[d * 4 / 801]++;
    }
    for (i = 0; i < 4; i++)
        assert_true(buckets[i] > 700);
}

static void
test_retry_after(void **state)
{
    const time_t now = 1784000000;      /* 2026-07-14 */

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
    assert_int_equal(upstream_parse_retry_after(
                         "Tue, 14 Jul 2026 03:33:50 GMT", now), 30);
    assert_int_equal(upstream_parse_retry_after(
                         "Tue, 14 Jul 2026 03:33:20 GMT", now + 3600), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_backoff_spread),
        cmocka_unit_test(test_retry_after),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
