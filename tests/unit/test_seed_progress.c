#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "seed/progress.h"

static struct seed_progress
progress(uint64_t fetched, uint64_t cached, uint64_t failed, uint64_t total,
    double elapsed_s)
{
    struct seed_progress p;

    memset(&p, 0, sizeof(p));
    p.fetched = fetched;
    p.cached = cached;
    p.failed = failed;
    p.done = fetched + cached + failed;
    p.total = total;
    p.elapsed_s = elapsed_s;
    return p;
}

static void
test_line(void **state)
{
    struct seed_progress p = progress(40, 9, 1, 200, 10);
    char buf[256];

    (void)state;
    seed_progress_line(buf, sizeof(buf), &p);
    assert_string_equal(buf,
        "50/200 tiles (25%), 5.0 tiles/s, ETA 30 s, "
        "fetched 40, cached 9, failed 1");
    p = progress(0, 0, 0, 200, 0);
    seed_progress_line(buf, sizeof(buf), &p);
    assert_string_equal(buf,
        "0/200 tiles (0%), 0.0 tiles/s, ETA unknown, "
        "fetched 0, cached 0, failed 0");
    /* Tiles from a pipe: no total, no ETA. */
    p = progress(7, 3, 0, 0, 2);
    seed_progress_line(buf, sizeof(buf), &p);
    assert_string_equal(
        buf, "10 tiles, 5.0 tiles/s, fetched 7, cached 3, failed 0");
    /* A small buffer cuts, never overflows. */
    seed_progress_line(buf, 8, &p);
    assert_string_equal(buf, "10 tile");
}

static size_t
count_char(const char *s, char c)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += *s == c;
    return n;
}

static void
test_bar(void **state)
{
    struct seed_progress p = progress(40, 9, 1, 200, 10);
    char buf[512];
    const char *close;

    (void)state;
    seed_progress_bar(buf, sizeof(buf), &p, 120);
    assert_true(strlen(buf) <= 119);
    assert_int_equal(buf[0], '[');
    close = strchr(buf, ']');
    assert_non_null(close);
    /* A quarter of the bar filled. */
    assert_int_equal(count_char(buf, '#'), (size_t)(close - buf - 1) / 4);
    assert_non_null(strstr(buf,
        "]  25% 50/200 5.0 tiles/s ETA 0:30 "
        "fetched 40 cached 9 failed 1"));
    /* An 80-column terminal has room for a bar. */
    p = progress(1000, 234, 0, 2730, 23.7);
    seed_progress_bar(buf, sizeof(buf), &p, 80);
    assert_int_equal(buf[0], '[');
    assert_true(strlen(buf) <= 79);
    assert_non_null(strstr(buf,
        "]  45% 1234/2730 52.1 tiles/s ETA 0:29 "
        "fetched 1000 cached 234"));
    assert_null(strstr(buf, "failed"));
    p = progress(40, 9, 1, 200, 10);
    /* Narrow terminal: no bar, cut to the width, no wrapping. */
    seed_progress_bar(buf, sizeof(buf), &p, 40);
    assert_int_equal(strlen(buf), 39);
    assert_int_equal(buf[0], ' ');
    assert_null(strchr(buf, '['));
    /* Done: a full bar. */
    p = progress(150, 50, 0, 200, 4);
    seed_progress_bar(buf, sizeof(buf), &p, 200);
    close = strchr(buf, ']');
    assert_non_null(close);
    assert_int_equal(count_char(buf, '#'), (size_t)(close - buf - 1));
    assert_non_null(strstr(buf, "100% 200/200"));
    /* Hours. */
    p = progress(10, 0, 0, 100000, 10);
    seed_progress_bar(buf, sizeof(buf), &p, 200);
    assert_non_null(strstr(buf, "ETA 27:46:30"));
    /* Nothing done yet: no ETA to tell. */
    p = progress(0, 0, 0, 100, 0);
    seed_progress_bar(buf, sizeof(buf), &p, 200);
    assert_non_null(strstr(buf, "0.0 tiles/s ETA -:--"));
    /* Unknown total: counts only. */
    p = progress(3, 4, 0, 0, 1);
    seed_progress_bar(buf, sizeof(buf), &p, 200);
    assert_string_equal(buf, "7 tiles 7.0 tiles/s fetched 3 cached 4");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_bar),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
