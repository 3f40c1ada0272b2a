#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "nginx/counts.h"
#include "nginx/nginxlog.h"
#include "settings.h"
#include "tmpdir_fixture.h"

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
                           "\"request_time\":0.001}",
                         &e),
        1);
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
                           "\"status\":200,\"bytes\":1,\"request_time\":0.000}",
                         &e),
        1);
    assert_int_equal(e.cache, METRICS_STALE);
    assert_int_equal(parse("{\"indice\":\"b.1\",\"cache\":\"UPDATING\","
                           "\"status\":200,\"bytes\":1,\"request_time\":0.000}",
                         &e),
        1);
    assert_int_equal(e.cache, METRICS_STALE);
    /* A 304 NGINX answered from its cache counts too. */
    assert_int_equal(parse("{\"indice\":\"b\",\"cache\":\"HIT\","
                           "\"status\":304,\"bytes\":0,\"request_time\":0.000}",
                         &e),
        1);
    assert_int_equal(e.status, 304);
}

static void
test_proxy_answered_is_skipped(void **state)
{
    static const char *const skip[] = {
        "MISS", "EXPIRED", "BYPASS", "REVALIDATED", "", "-"};
    struct nginxlog_entry e;
    char line[200];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(skip) / sizeof(skip[0]); i++) {
        snprintf(line, sizeof(line),
            "{\"indice\":\"A\",\"cache\":\"%s\","
            "\"status\":200,\"bytes\":10,\"request_time\":0.1}",
            skip[i]);
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
                           "\"status\":200,\"bytes\":1,\"request_time\":0}",
                         &e),
        1);
    assert_string_equal(e.indice, "-");
    /* Not an indice hereproxy accepts: not a series of its own. */
    assert_int_equal(parse("{\"indice\":\"a b\",\"cache\":\"HIT\","
                           "\"status\":200,\"bytes\":1,\"request_time\":0}",
                         &e),
        1);
    assert_string_equal(e.indice, "-");
    assert_int_equal(
        parse("{\"indice\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"cache\":\"HIT\","
              "\"status\":200,\"bytes\":1,\"request_time\":0}",
            &e),
        1);
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
                           "\"status\":\"200\"}",
                         &e),
        -1);
    assert_int_equal(parse("{\"indice\":\"A\",\"cache\":\"HIT\","
                           "\"status\":700}",
                         &e),
        -1);
    assert_int_equal(parse("[1,2]", &e), -1);
    assert_int_equal(parse("{\"cache\":7}", &e), -1);
}

/* ------------------------------------------------ the file follower */

#define HIT(ind)                                                               \
    "{\"indice\":\"" ind "\",\"cache\":\"HIT\","                               \
    "\"status\":200,\"bytes\":10,\"request_time\":0.001}\n"
#define MISS(ind)                                                              \
    "{\"indice\":\"" ind "\",\"cache\":\"MISS\","                              \
    "\"status\":200,\"bytes\":10,\"request_time\":0.001}\n"

struct fx {
    struct tmpdir_fx t;
    struct nginxlog_follow *f;
};

static int
fx_setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));

    if (x == NULL || tmpdir_fx_open(&x->t, "test_nginxlog", "cache.log") != 0) {
        free(x);
        return -1;
    }
    *state = x;
    return 0;
}

static int
fx_teardown(void **state)
{
    struct fx *x = *state;

    nginxlog_follow_free(x->f);
    if (tmpdir_fx_close(&x->t) != 0)
        return -1;
    free(x);
    return 0;
}

/* Append (mode "a") or create/truncate ("w") path with text. */
static void
put(const char *path, const char *mode, const char *text)
{
    FILE *fp = fopen(path, mode);

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* The indice's "requests" in the JSON render. */
static int
requests(struct metrics *m, const char *indice)
{
    char *json = metrics_render_json(m), key[80], *p;
    int n = 0;

    assert_non_null(json);
    snprintf(key, sizeof(key), "\"%s\":{\"requests\":", indice);
    if ((p = strstr(json, key)) != NULL)
        n = (int)strtol(p + strlen(key), NULL, 10);
    free(json);
    return n;
}

static void
test_follow_appended(void **state)
{
    struct fx *x = *state;

    put(x->t.path, "w", HIT("old") HIT("old"));
    assert_non_null(x->f = nginxlog_follow_new(x->t.path, x->t.m));
    /* Lines from before it started are not its to count. */
    assert_int_equal(nginxlog_follow_step(x->f, 0), 0);
    put(x->t.path, "a",
        HIT("A") MISS("A") HIT("A") "\n"
                                    "not json\n");
    assert_int_equal(nginxlog_follow_step(x->f, 100), 2);
    assert_int_equal(nginxlog_follow_step(x->f, 200), 0);
    assert_int_equal(requests(x->t.m, "A"), 2);
    assert_int_equal(requests(x->t.m, "old"), 0);
}

static void
test_follow_partial_line(void **state)
{
    struct fx *x = *state;
    const char *line = HIT("P");
    char half[128];

    put(x->t.path, "w", "");
    assert_non_null(x->f = nginxlog_follow_new(x->t.path, x->t.m));
    snprintf(half, sizeof(half), "%.*s", 20, line);
    put(x->t.path, "a", HIT("P"));
    put(x->t.path, "a", half);
    assert_int_equal(nginxlog_follow_step(x->f, 0), 1);
    put(x->t.path, "a", line + 20);
    assert_int_equal(nginxlog_follow_step(x->f, 100), 1);
    assert_int_equal(requests(x->t.m, "P"), 2);
}

static void
test_follow_long_line(void **state)
{
    struct fx *x = *state;
    size_t n = 200000;
    char *big = malloc(n + 2);

    assert_non_null(big);
    memset(big, 'x', n);
    memcpy(big, "{\"indice\":\"", 11);
    big[n] = '\n';
    big[n + 1] = '\0';
    put(x->t.path, "w", "");
    assert_non_null(x->f = nginxlog_follow_new(x->t.path, x->t.m));
    put(x->t.path, "a", HIT("L"));
    put(x->t.path, "a", big);
    put(x->t.path, "a", HIT("L"));
    free(big);
    /* The long line is skipped whole; the lines around it count. */
    assert_int_equal(nginxlog_follow_step(x->f, 0), 2);
    assert_int_equal(requests(x->t.m, "L"), 2);
}

static void
test_follow_rename_rotation(void **state)
{
    struct fx *x = *state;
    char old[160];

    snprintf(old, sizeof(old), "%s.1", x->t.path);
    put(x->t.path, "w", "");
    assert_non_null(x->f = nginxlog_follow_new(x->t.path, x->t.m));
    put(x->t.path, "a", HIT("R"));
    assert_int_equal(nginxlog_follow_step(x->f, 0), 1);
    /* logrotate renames and creates; NGINX writes the old file until it
     * reopens its logs. */
    assert_int_equal(rename(x->t.path, old), 0);
    put(x->t.path, "w", HIT("R") HIT("R"));
    put(old, "a", HIT("R") HIT("R") HIT("R"));
    assert_int_equal(nginxlog_follow_step(x->f, 1000), 3);
    put(old, "a", HIT("R"));
    assert_int_equal(nginxlog_follow_step(x->f, 2000), 1);
    /* Idle past the grace: the new file, from its start. */
    assert_int_equal(nginxlog_follow_step(x->f, 3000), 0);
    assert_int_equal(nginxlog_follow_step(x->f, 4000), 2);
    put(x->t.path, "a", HIT("R"));
    assert_int_equal(nginxlog_follow_step(x->f, 4100), 1);
    assert_int_equal(requests(x->t.m, "R"), 8);
}

static void
test_follow_truncation(void **state)
{
    struct fx *x = *state;

    put(x->t.path, "w", "");
    assert_non_null(x->f = nginxlog_follow_new(x->t.path, x->t.m));
    put(x->t.path, "a", HIT("T") HIT("T") HIT("T"));
    assert_int_equal(nginxlog_follow_step(x->f, 0), 3);
    /* copytruncate: the same file, shorter; NGINX appends from 0. */
    assert_int_equal(truncate(x->t.path, 0), 0);
    put(x->t.path, "a", HIT("T"));
    assert_int_equal(nginxlog_follow_step(x->f, 100), 1);
    assert_int_equal(requests(x->t.m, "T"), 4);
}

static void
test_follow_missing_file(void **state)
{
    struct fx *x = *state;

    assert_non_null(x->f = nginxlog_follow_new(x->t.path, x->t.m));
    assert_int_equal(nginxlog_follow_step(x->f, 0), 0);
    assert_int_equal(nginxlog_follow_step(x->f, 100), 0);
    /* Created after the follower started: all of it is new. */
    put(x->t.path, "w", HIT("M") HIT("M"));
    assert_int_equal(nginxlog_follow_step(x->f, 200), 2);
    put(x->t.path, "a", HIT("M"));
    assert_int_equal(nginxlog_follow_step(x->f, 300), 1);
    assert_int_equal(requests(x->t.m, "M"), 3);
}

/* The thread (nginx/counts.h): counts what is appended, stops promptly. */
static void
test_follow_thread(void **state)
{
    struct fx *x = *state;
    struct nginx_counts *nc;
    struct settings cfg;
    char err[128];
    int i;

    put(x->t.path, "w", "");
    assert_int_equal(settings_init(&cfg), 0);
    assert_int_equal(
        settings_set(&cfg, "NGINX_LOG_FILE", x->t.path, err, sizeof(err)), 0);
    nc = nginx_counts_start(&cfg, x->t.m, err, sizeof(err));
    assert_non_null(nc);
    put(x->t.path, "a", HIT("H") HIT("H"));
    for (i = 0; i < 50 && requests(x->t.m, "H") < 2; i++)
        usleep(20000);
    assert_int_equal(requests(x->t.m, "H"), 2);
    nginx_counts_stop(nc);
    settings_cleanup(&cfg);
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
        cmocka_unit_test_setup_teardown(
            test_follow_appended, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_follow_partial_line, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_follow_long_line, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_follow_rename_rotation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_follow_truncation, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_follow_missing_file, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_follow_thread, fx_setup, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
