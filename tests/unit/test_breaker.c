#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "breaker.h"

/* Closed until `threshold` failures in a row; a success resets the count. */
static void
test_opens_after_threshold(void **state)
{
    struct breaker b;
    int64_t wait = -1;

    (void)state;
    breaker_init(&b, 3, 1000);
    assert_int_equal(breaker_record(&b, 0, 0), BREAKER_SAME);
    assert_int_equal(breaker_record(&b, 0, 1), BREAKER_SAME);
    assert_int_equal(breaker_record(&b, 1, 2), BREAKER_SAME); /* reset */
    assert_int_equal(breaker_record(&b, 0, 3), BREAKER_SAME);
    assert_int_equal(breaker_record(&b, 0, 4), BREAKER_SAME);
    assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
    assert_int_equal(breaker_allow(&b, 5, &wait), 1);
    assert_int_equal(breaker_record(&b, 0, 10), BREAKER_OPENED);
    assert_int_equal(breaker_state(&b), BREAKER_OPEN);
    assert_int_equal(breaker_allow(&b, 11, &wait), 0);
    assert_int_equal(wait, 999);
    assert_int_equal(breaker_allow(&b, 1009, &wait), 0);
    assert_int_equal(wait, 1);
    breaker_cleanup(&b);
}

/* After the cool-down exactly one probe goes; its result decides. */
static void
test_half_open_probe(void **state)
{
    struct breaker b;
    int64_t wait = -1;

    (void)state;
    breaker_init(&b, 1, 100);
    assert_int_equal(breaker_record(&b, 0, 0), BREAKER_OPENED);
    assert_int_equal(breaker_allow(&b, 100, &wait), 1); /* probe */
    assert_int_equal(breaker_state(&b), BREAKER_HALF_OPEN);
    assert_int_equal(breaker_allow(&b, 101, &wait), 0); /* others wait */
    assert_true(wait > 0);
    assert_int_equal(breaker_record(&b, 0, 150), BREAKER_OPENED); /* failed */
    assert_int_equal(breaker_allow(&b, 200, &wait), 0);
    assert_int_equal(breaker_allow(&b, 250, &wait), 1); /* next probe */
    assert_int_equal(breaker_record(&b, 1, 260), BREAKER_CLOSED_AGAIN);
    assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
    assert_int_equal(breaker_allow(&b, 261, &wait), 1);
    assert_int_equal(breaker_allow(&b, 261, &wait), 1);
    breaker_cleanup(&b);
}

/* Threshold 0 turns the breaker off. */
static void
test_disabled(void **state)
{
    struct breaker b;
    int64_t wait;
    int i;

    (void)state;
    breaker_init(&b, 0, 100);
    for (i = 0; i < 1000; i++)
        assert_int_equal(breaker_record(&b, 0, i), BREAKER_SAME);
    assert_int_equal(breaker_allow(&b, 1000, &wait), 1);
    assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
    breaker_cleanup(&b);
}

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
    assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_after_threshold),
        cmocka_unit_test(test_half_open_probe),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
