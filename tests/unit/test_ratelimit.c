#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

static void
test_spec_parse(void **state)
{
    static const struct {
        const char *text;
        long limit, period, burst;
        int rc;
    } cases[] = {
        {"100/minute", 100, 60, 100, 0},
        {"10/second,burst=20", 10, 1, 20, 0},
        {"5/s", 5, 1, 5, 0},
        {"20000/day", 20000, 86400, 20000, 0},
        {"3/HOUR", 3, 3600, 3, 0},
        {"1/min,burst=1", 1, 60, 1, 0},
        {"", 0, 0, 0, 0},
        {"off", 0, 0, 0, 0},
        {"0", 0, 0, 0, 0},
        {"0/minute", 0, 0, 0, -1},
        {"-1/minute", 0, 0, 0, -1},
        {"100", 0, 0, 0, -1},
        {"100/fortnight", 0, 0, 0, -1},
        {"100/minute,burst=0", 0, 0, 0, -1},
        {"100/minute,burst=", 0, 0, 0, -1},
        {"100/minute,bust=5", 0, 0, 0, -1},
        {"100 /minute", 0, 0, 0, -1},
        {"99999999999/minute", 0, 0, 0, -1},
        {"1/minute,burst=2,burst=3", 0, 0, 0, -1},
    };
    size_t i;
    char err[200];

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct rate_spec s;
        int rc = rate_spec_parse(cases[i].text, &s, err, sizeof(err));

        if (rc != cases[i].rc)
            fail_msg(
                "'%s': rc %d, expected %d", cases[i].text, rc, cases[i].rc);
        if (rc == 0 &&
            (s.limit != cases[i].limit || s.period_s != cases[i].period ||
                s.burst != cases[i].burst))
            fail_msg("'%s': parsed %ld/%lds burst %ld", cases[i].text, s.limit,
                s.period_s, s.burst);
        if (rc == 0 && s.limit > 0) {
            struct rate_spec again;
            char text[64];

            rate_spec_format(&s, text, sizeof(text));
            assert_int_equal(
                rate_spec_parse(text, &again, err, sizeof(err)), 0);
            assert_memory_equal(&s, &again, sizeof(s));
        }
    }
}

/* 25 requests at once against 10/minute: exactly 10 pass. */
static void
test_burst_then_refill(void **state)
{
    struct ratelimiter *rl = ratelimiter_new(100);
    struct rate_spec spec = {10, 60, 10};
    struct rate_decision d;
    int i, allowed = 0;

    (void)state;
    for (i = 0; i < 25; i++) {
        ratelimiter_take(rl, "A", 1, &spec, 1000, &d);
        allowed += d.allowed;
        if (i < 10) {
            assert_int_equal(d.remaining, 9 - i);
        } else {
            assert_false(d.allowed);
            assert_int_equal(d.remaining, 0);
            assert_int_equal(d.retry_after_s, 6); /* one token: 6 s */
            assert_int_equal(d.reset_s, 60);
        }
        assert_int_equal(d.limit, 10);
    }
    assert_int_equal(allowed, 10);
    /* Another key is untouched. */
    ratelimiter_take(rl, "B", 1, &spec, 1000, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 9);
    /* 6 s later one token is back, and only one. */
    ratelimiter_take(rl, "A", 1, &spec, 7000, &d);
    assert_true(d.allowed);
    ratelimiter_take(rl, "A", 1, &spec, 7000, &d);
    assert_false(d.allowed);
    /* A long pause refills to the burst, not beyond. */
    for (i = 0, allowed = 0; i < 30; i++) {
        ratelimiter_take(rl, "A", 1, &spec, 10000000, &d);
        allowed += d.allowed;
    }
    assert_int_equal(allowed, 10);
    ratelimiter_free(rl);
}

/* No limit configured: always allowed, no headers' worth of numbers. */
static void
test_unlimited(void **state)
{
    struct ratelimiter *rl = ratelimiter_new(10);
    struct rate_spec spec = {0, 0, 0};
    struct rate_decision d;
    int i;

    (void)state;
    for (i = 0; i < 1000; i++) {
        ratelimiter_take(rl, "A", 1, &spec, i, &d);
        assert_true(d.allowed);
        assert_int_equal(d.limit, 0);
    }
    assert_int_equal(ratelimiter_size(rl), 0);
    ratelimiter_free(rl);
}

struct worker {
    struct ratelimiter *rl;
    const struct rate_spec *spec;
    int allowed;
};

static void *
hammer(void *arg)
{
    struct worker *w = arg;
    struct rate_decision d;
    int i;

    for (i = 0; i < 5000; i++) {
        char key[8];
        snprintf(key, sizeof(key), "k%d", i % 4);
        ratelimiter_take(w->rl, key, strlen(key), w->spec, 5000, &d);
        w->allowed += d.allowed;
    }
    return NULL;
}

/* Exact under concurrency: 8 threads, 4 keys, 100 tokens each. */
static void
test_concurrent_exact(void **state)
{
    struct ratelimiter *rl = ratelimiter_new(100);
    struct rate_spec spec = {100, 60, 100};
    struct worker w[8];
    pthread_t t[8];
    int i, total = 0;

    (void)state;
    for (i = 0; i < 8; i++) {
        w[i].rl = rl;
        w[i].spec = &spec;
        w[i].allowed = 0;
        pthread_create(&t[i], NULL, hammer, &w[i]);
    }
    for (i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        total += w[i].allowed;
    }
    assert_int_equal(total, 400);
    ratelimiter_free(rl);
}

/* A flood of distinct keys stays within the bound. */
static void
test_bounded(void **state)
{
    struct ratelimiter *rl = ratelimiter_new(160);
    struct rate_spec spec = {1, 60, 1};
    struct rate_decision d;
    char key[32];
    int i;

    (void)state;
    for (i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
        ratelimiter_take(rl, key, strlen(key), &spec, 1, &d);
        assert_true(d.allowed);
    }
    assert_true(ratelimiter_size(rl) <= 160 + 16);
    assert_true(ratelimiter_size(rl) >= 100);
    /* The most recent key is remembered: its bucket is empty. */
    ratelimiter_take(rl, key, strlen(key), &spec, 2, &d);
    assert_false(d.allowed);
    ratelimiter_free(rl);
}

/*
 * A full table forgets the least recently used bucket, never the one in
 * use: a client held at its limit stays held however many keys others
 * bring (a forgotten bucket would come back full).
 */
static void
test_full_keeps_active(void **state)
{
    struct ratelimiter *rl = ratelimiter_new(32);
    struct rate_spec spec = {1, 3600, 1};
    struct rate_decision d;
    char key[32];
    int i;

    (void)state;
    ratelimiter_take(rl, "victim", 6, &spec, 1, &d);
    assert_true(d.allowed);
    for (i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "2001:db8:%x::/64", i);
        ratelimiter_take(rl, key, strlen(key), &spec, 1, &d);
        assert_true(d.allowed);
        ratelimiter_take(rl, "victim", 6, &spec, 1, &d);
        if (d.allowed)
            fail_msg("the held bucket was forgotten after %d others", i + 1);
    }
    assert_true(ratelimiter_size(rl) <= 32 + 16);
    ratelimiter_free(rl);
}

static void
test_overrides_parse(void **state)
{
    struct rate_overrides o;
    struct rate_spec def = {5, 60, 5};
    const struct rate_spec *s;
    char err[200];
    static const char *const bad[] = {
        "mapa1",
        "mapa1=10/minute",
        ":10/minute",
        "a:",
        "a:10/fortnight",
        "a:1/m,a:2/m",
        "burst=5,a:1/m",
        "a:1/m,,b:2/m",
        "a:1/m,",
        "a b:1/m",
        "a/b:1/m",
        "a:1/m,burst=0",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1/m",
    };
    size_t i;

    (void)state;
    assert_int_equal(rate_overrides_parse("", 1, &o, err, sizeof(err)), 0);
    assert_int_equal(o.n, 0);
    assert_ptr_equal(rate_overrides_find(&o, "x", &def), &def);
    rate_overrides_free(&o);

    assert_int_equal(rate_overrides_parse(" mapa1:1000/minute , demo:off,"
                                          "b.2-x_y:10/second,burst=20 ,z:3/day",
                         1, &o, err, sizeof(err)),
        0);
    assert_int_equal(o.n, 4);
    s = rate_overrides_find(&o, "mapa1", &def);
    assert_int_equal(s->limit, 1000);
    assert_int_equal(s->period_s, 60);
    assert_int_equal(s->burst, 1000);
    s = rate_overrides_find(&o, "demo", &def);
    assert_int_equal(s->limit, 0); /* off: not limited */
    s = rate_overrides_find(&o, "b.2-x_y", &def);
    assert_int_equal(s->limit, 10);
    assert_int_equal(s->period_s, 1);
    assert_int_equal(s->burst, 20);
    assert_int_equal(rate_overrides_find(&o, "z", &def)->period_s, 86400);
    assert_ptr_equal(rate_overrides_find(&o, "Mapa1", &def), &def);
    assert_ptr_equal(rate_overrides_find(&o, "nobody", &def), &def);
    rate_overrides_free(&o);
    rate_overrides_free(&o); /* twice: harmless */

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(err, 0, sizeof(err));
        if (rate_overrides_parse(bad[i], 1, &o, err, sizeof(err)) != -1)
            fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(o.n, 0);
        assert_null(o.items);
        assert_true(err[0] != '\0');
    }
    /* Quotas: a burst means nothing. */
    assert_int_equal(
        rate_overrides_parse("a:10/day,burst=20", 0, &o, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "burst"));
    assert_int_equal(
        rate_overrides_parse("a:10/day,b:off", 0, &o, err, sizeof(err)), 0);
    assert_int_equal(o.n, 2);
    rate_overrides_free(&o);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_parse),
        cmocka_unit_test(test_overrides_parse),
        cmocka_unit_test(test_burst_then_refill),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_concurrent_exact),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_full_keeps_active),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
