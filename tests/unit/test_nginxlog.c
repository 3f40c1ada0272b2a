#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "nginxlog.h"

static int
parse(const char *s, struct nginxlog_entry *e)
{
    memset(e, 0, sizeof(*e));
    return nginxlog_parse(s, strlen(s), e);
}

static void
test_hit_with_syslog_header(void **state)
{
    struct nginxlog_entry e;

    (void)state;
    assert_int_equal(parse("<190>Nov 28 15:04:00 nginx: {\"indice\":\"A\","
        "\"cache\":\"HIT\",\"status\":200,\"bytes\":4053,"
        "\"request_time\":0.001}", &e), 1);
    assert_string_equal(e.indice, "A");
    assert_int_equal(e.cache, METRICS_HIT);
    assert_int_equal(e.status, 200);
    assert_int_equal(e.bytes, 4053);
    assert_true(e.seconds > 0.0009 && e.seconds < 0.0011);
}

static void
test_stale_and_updating(void **state)
{
    struct nginxlog_entry e;

    (void)state;
    assert_int_equal(parse("{\"indice\":\"b.1\",\"cache\":\"STALE\","
        "\"status\":200,\"bytes\":1,\"request_time\":0.000}", &e), 1);
    assert_int_equal(e.cache, METRICS_STALE);
    assert_int_equal(parse("{\"indice\":\"b.1\",\"cache\":\"UPDATING\","
        "\"status\":200,\"bytes\":1,\"request_time\":0.000}", &e), 1);
    assert_int_equal(e.cache, METRICS_STALE);
    /* A 304 NGINX answered from its cache counts too. */
    assert_int_equal(parse("{\"indice\":\"b\",\"cache\":\"HIT\","
        "\"status\":304,\"bytes\":0,\"request_time\":0.000}", &e), 1);
    assert_int_equal(e.status, 304);
}

static void
test_proxy_answered_is_skipped(void **state)
{
    static const char *const skip[] = {"MISS", "EXPIRED", "BYPASS",
        "REVALIDATED", "", "-"};
    struct nginxlog_entry e;
    char line[200];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(skip) / sizeof(skip[0]); i++) {
        snprintf(line, sizeof(line), "{\"indice\":\"A\",\"cache\":\"%s\","
            "\"status\":200,\"bytes\":10,\"request_time\":0.1}", skip[i]);
        assert_int_equal(parse(line, &e), 0);
    }
}

static void
test_indice_rules(void **state)
{
    struct nginxlog_entry e;

    (void)state;
    /* No indice ($arg_indice empty): "-", as hereproxy counts it. */
    assert_int_equal(parse("{\"indice\":\"\",\"cache\":\"HIT\","
        "\"status\":200,\"bytes\":1,\"request_time\":0}", &e), 1);
    assert_string_equal(e.indice, "-");
    /* Not an indice hereproxy accepts: not a series of its own. */
    assert_int_equal(parse("{\"indice\":\"a b\",\"cache\":\"HIT\","
        "\"status\":200,\"bytes\":1,\"request_time\":0}", &e), 1);
    assert_string_equal(e.indice, "-");
    assert_int_equal(parse("{\"indice\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"cache\":\"HIT\","
        "\"status\":200,\"bytes\":1,\"request_time\":0}", &e), 1);
    assert_string_equal(e.indice, "-");
}

static void
test_malformed(void **state)
{
    struct nginxlog_entry e;

    (void)state;
    assert_int_equal(parse("", &e), -1);
    assert_int_equal(parse("<190>no json here", &e), -1);
    assert_int_equal(parse("{\"indice\":\"A\",\"cache\":\"HIT\"", &e), -1);
    assert_int_equal(parse("{\"indice\":\"A\",\"cache\":\"HIT\","
        "\"status\":\"200\"}", &e), -1);
    assert_int_equal(parse("{\"indice\":\"A\",\"cache\":\"HIT\","
        "\"status\":700}", &e), -1);
    assert_int_equal(parse("[1,2]", &e), -1);
    assert_int_equal(parse("{\"cache\":7}", &e), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_with_syslog_header),
        cmocka_unit_test(test_stale_and_updating),
        cmocka_unit_test(test_proxy_answered_is_skipped),
        cmocka_unit_test(test_indice_rules),
        cmocka_unit_test(test_malformed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
