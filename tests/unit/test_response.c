#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "response.h"

static const struct {
    const char *inm, *etag;
    int match;
} etag_cases[] = {
    /* exact */
    {"\"abc\"", "\"abc\"", 1},
    {"\"abc\"", "\"abd\"", 0},
    {"\"abc\"", "\"ab\"", 0},
    {"\"ab\"", "\"abc\"", 0},
    {"\"ABC\"", "\"abc\"", 0},
    {"abc", "\"abc\"", 0},
    {"\"\"", "\"\"", 1},
    /* weak comparison: W/ on either side */
    {"W/\"abc\"", "\"abc\"", 1},
    {"\"abc\"", "W/\"abc\"", 1},
    {"W/\"abc\"", "W/\"abc\"", 1},
    {"w/\"abc\"", "\"abc\"", 0},
    {"W/\"abd\"", "W/\"abc\"", 0},
    {"W/", "\"abc\"", 0},
    /* lists */
    {"\"x\", \"abc\"", "\"abc\"", 1},
    {"\"abc\", \"x\"", "\"abc\"", 1},
    {"\"x\",\"abc\",\"y\"", "\"abc\"", 1},
    {"\"x\" , W/\"abc\" , \"y\"", "\"abc\"", 1},
    {"\"x\",\t\"abc\"", "\"abc\"", 1},
    {"\"x\", \"y\"", "\"abc\"", 0},
    {", , \"abc\" ,", "\"abc\"", 1},
    {",,,", "\"abc\"", 0},
    {"\"abc\"\"abc\"", "\"abc\"", 0},
    {"\"x\", \"abc\"junk", "\"abc\"", 0},
    /* any */
    {"*", "\"abc\"", 1},
    {" * ", "\"abc\"", 1},
    {"*", "W/\"abc\"", 1},
    /* nothing to match */
    {"", "\"abc\"", 0},
    {"   ", "\"abc\"", 0},
    {"\"abc\"", "", 0},
    {"*", "", 0},
    {"", "", 0},
    {"W/", "W/", 0},
};

static void
test_etag_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(etag_cases) / sizeof(etag_cases[0]); i++) {
        int got = response_etag_matches(etag_cases[i].inm,
            etag_cases[i].etag);
        if (got != etag_cases[i].match)
            fail_msg("If-None-Match '%s' vs ETag '%s': %d, want %d",
                etag_cases[i].inm, etag_cases[i].etag, got,
                etag_cases[i].match);
    }
    assert_int_equal(response_etag_matches(NULL, "\"abc\""), 0);
    assert_int_equal(response_etag_matches("\"abc\"", NULL), 0);
    assert_int_equal(response_etag_matches(NULL, NULL), 0);
}

/* RFC 9110 8.8.3: etagc includes ','; a list splits between tags only. */
static void
test_etag_with_comma(void **state)
{
    (void)state;
    assert_int_equal(response_etag_matches("\"a,b\"", "\"a,b\""), 1);
    assert_int_equal(response_etag_matches("\"x\", \"a,b\"", "\"a,b\""), 1);
    assert_int_equal(response_etag_matches("\"a,b\"", "\"a\""), 0);
}

static void
test_etag_long_list(void **state)
{
    char inm[8192];
    size_t len = 0;
    int i;

    (void)state;
    for (i = 0; i < 500; i++)
        len += (size_t)snprintf(inm + len, sizeof(inm) - len, "%s\"t%d\"",
            i ? ", " : "", i);
    assert_int_equal(response_etag_matches(inm, "\"t0\""), 1);
    assert_int_equal(response_etag_matches(inm, "\"t499\""), 1);
    assert_int_equal(response_etag_matches(inm, "W/\"t250\""), 1);
    assert_int_equal(response_etag_matches(inm, "\"t500\""), 0);
    assert_int_equal(response_etag_matches(inm, "\"t4\"x"), 0);
}

static void
test_reason(void **state)
{
    static const struct {
        int status;
        const char *reason;
    } cases[] = {
        {200, "OK"},
        {204, "No Content"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {410, "Gone"},
        {413, "Payload Too Large"},
        {414, "URI Too Long"},
        {429, "Too Many Requests"},
        {500, "Internal Server Error"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
    };
    size_t i;
    int s;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(response_reason(cases[i].status),
            cases[i].reason);
    /* Unknown codes still get a non-empty, header-safe reason. */
    for (s = 100; s < 600; s++) {
        const char *r = response_reason(s);
        const char *p;
        assert_non_null(r);
        assert_true(*r != '\0');
        for (p = r; *p; p++)
            assert_true(*p >= 0x20 && *p < 0x7f);
    }
    assert_string_equal(response_reason(418), "Error");
    assert_string_equal(response_reason(599), "Error");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etag_table),
        cmocka_unit_test(test_etag_with_comma),
        cmocka_unit_test(test_etag_long_list),
        cmocka_unit_test(test_reason),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
