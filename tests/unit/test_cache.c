#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "entry.h"
#include "settings.h"

/* ----------------------------------------------------------- cache_ttl */

static const struct {
    const char *cc;
    long def, cap, want;
} ttl_cases[] = {
    {NULL, 3600, 86400, 3600},
    {NULL, 100000, 86400, 86400}, /* the default is capped too */
    {"", 3600, 86400, 3600},
    {"public", 3600, 86400, 3600},
    {"max-age=60", 3600, 86400, 60},
    {"max-age=0", 3600, 86400, 0},
    {"public, max-age=120", 3600, 86400, 120},
    {"max-age=120, public", 3600, 86400, 120},
    {"max-age=120,public", 3600, 86400, 120},
    {"  max-age=120  ", 3600, 86400, 120},
    {"\tmax-age=120\t", 3600, 86400, 120},
    {"MAX-AGE=120", 3600, 86400, 120},
    {"Max-Age=120", 3600, 86400, 120},
    {"max-age=\"120\"", 3600, 86400, 120},
    {"max-age=86400", 3600, 86400, 86400},
    {"max-age=86401", 3600, 86400, 86400},
    {"max-age=604800", 3600, 86400, 86400},
    {"max-age=2147483647", 3600, 86400, 86400},
    {"s-maxage=30", 3600, 86400, 30},
    {"s-maxage=30, max-age=60", 3600, 86400, 30},
    {"max-age=60, s-maxage=30", 3600, 86400, 30},
    {"max-age=60, s-maxage=0", 3600, 86400, 0},
    {"S-MAXAGE=30, MAX-AGE=60", 3600, 86400, 30},
    {"s-maxage=999999, max-age=60", 3600, 86400, 86400},
    {"s-maxage=junk, max-age=60", 3600, 86400, 60},
    {"no-store", 3600, 86400, 0},
    {"no-cache", 3600, 86400, 0},
    {"private", 3600, 86400, 0},
    {"NO-STORE", 3600, 86400, 0},
    {"No-Cache", 3600, 86400, 0},
    {"Private", 3600, 86400, 0},
    {"max-age=600, no-store", 3600, 86400, 0},
    {"no-cache, max-age=600", 3600, 86400, 0},
    {"public, max-age=600, private", 3600, 86400, 0},
    {"private=\"Set-Cookie\", max-age=600", 3600, 86400, 0},
    {"no-cache=\"Set-Cookie\"", 3600, 86400, 0},
    {"s-maxage=600, no-store", 3600, 86400, 0},
    /* Lookalikes are not the real directives. */
    {"no-stored", 3600, 86400, 3600},
    {"xno-store", 3600, 86400, 3600},
    {"privateer", 3600, 86400, 3600},
    {"max-ages=60", 3600, 86400, 3600},
    {"xmax-age=60", 3600, 86400, 3600},
    {"s-max-age=60", 3600, 86400, 3600},
    {"smaxage=60", 3600, 86400, 3600},
    {"must-revalidate, proxy-revalidate", 3600, 86400, 3600},
    {"stale-while-revalidate=60", 3600, 86400, 3600},
    /* Junk values fall back to the default. */
    {"max-age", 3600, 86400, 3600},
    {"max-age=", 3600, 86400, 3600},
    {"max-age=abc", 3600, 86400, 3600},
    {"max-age=-60", 3600, 86400, 3600},
    {"max-age=+60", 3600, 86400, 3600},
    {"max-age=6 0", 3600, 86400, 3600},
    {"max-age=60s", 3600, 86400, 3600},
    {"max-age=0x10", 3600, 86400, 3600},
    {"max-age=\"\"", 3600, 86400, 3600},
    {"max-age=\"60", 3600, 86400, 3600},
    {"max-age=60\"", 3600, 86400, 3600},
    {"max-age=6.5", 3600, 86400, 3600},
    {",,,", 3600, 86400, 3600},
    {", max-age=50 ,", 3600, 86400, 50},
    /* Zero cap and zero default. */
    {"max-age=60", 3600, 0, 0},
    {NULL, 0, 86400, 0},
    {"public", 0, 86400, 0},
};

static void
test_ttl_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ttl_cases) / sizeof(ttl_cases[0]); i++) {
        long got =
            cache_ttl(ttl_cases[i].cc, ttl_cases[i].def, ttl_cases[i].cap);
        if (got != ttl_cases[i].want)
            fail_msg("cache_ttl(%s%s%s, %ld, %ld) = %ld, want %ld",
                ttl_cases[i].cc ? "\"" : "",
                ttl_cases[i].cc ? ttl_cases[i].cc : "NULL",
                ttl_cases[i].cc ? "\"" : "", ttl_cases[i].def, ttl_cases[i].cap,
                got, ttl_cases[i].want);
    }
}

/*
 * RFC 9111 1.2.2: a delta-seconds too large to represent counts as
 * 2147483648, so a huge max-age is capped, not replaced by the default.
 */
static void
test_ttl_huge_max_age(void **state)
{
    (void)state;
    assert_int_equal(cache_ttl("max-age=2147483648", 3600, 86400), 86400);
    assert_int_equal(cache_ttl("max-age=99999999999", 3600, 86400), 86400);
    assert_int_equal(
        cache_ttl("s-maxage=999999999999999999999", 3600, 86400), 86400);
}

/* ----------------------------------------------------- the cache itself */

static struct cache *
new_cache(struct settings *cfg, long maxsize, const char *maxbytes)
{
    struct cache *c;
    char err[256] = "";

    assert_int_equal(settings_init(cfg), 0);
    cfg->cache_maxsize = maxsize;
    assert_int_equal(
        settings_set(cfg, "CACHE_MAXBYTES", maxbytes, err, sizeof(err)), 0);
    c = cache_new(cfg, err, sizeof(err));
    if (c == NULL)
        fail_msg("cache_new: %s", err);
    return c;
}

static struct entry *
tile(int64_t fresh, int64_t keep, const char *body)
{
    struct entry *e =
        entry_new(200, fresh, keep, "image/png", "\"t\"", body, strlen(body));

    assert_non_null(e);
    return e;
}

static void
test_memory_only(void **state)
{
    struct settings cfg;
    struct cache *c = new_cache(&cfg, 1000, "64M");
    const char *key = "base/mc/1/0/0/png?ppi=100";
    enum cache_source src = CACHE_SRC_MEMCACHED;
    struct entry *e, *got;
    char reason[64] = "";

    (void)state;
    assert_string_equal(cache_backend(c), "memory");
    assert_int_equal(cache_ready(c, reason, sizeof(reason)), 0);

    assert_null(cache_get(c, key, strlen(key), 1000, &src));
    assert_int_equal(src, CACHE_SRC_NONE);

    e = tile(1100, 2000, "tile-one");
    cache_put(c, key, strlen(key), e, 1000);
    entry_unref(e);

    /* Fresh until 1100 (exclusive). */
    got = cache_get(c, key, strlen(key), 1000, &src);
    assert_non_null(got);
    assert_int_equal(src, CACHE_SRC_MEMORY);
    assert_memory_equal(got->body, "tile-one", 8);
    entry_unref(got);
    got = cache_get(c, key, strlen(key), 1099, &src);
    assert_non_null(got);
    entry_unref(got);
    /* Stale but kept: returned so the miss path can serve it stale. */
    src = CACHE_SRC_NONE;
    got = cache_get(c, key, strlen(key), 1100, &src);
    assert_non_null(got);
    assert_int_equal(src, CACHE_SRC_MEMORY);
    assert_true(got->fresh_until <= 1100);
    entry_unref(got);
    got = cache_get(c, key, strlen(key), 1999, &src);
    assert_non_null(got);
    entry_unref(got);
    /* Past keep_until: gone. */
    assert_null(cache_get(c, key, strlen(key), 2000, &src));
    assert_int_equal(src, CACHE_SRC_NONE);
    assert_null(cache_get(c, key, strlen(key), 5000, &src));

    /* A new put replaces it. */
    e = tile(6000, 7000, "tile-two");
    cache_put(c, key, strlen(key), e, 5000);
    entry_unref(e);
    got = cache_get(c, key, strlen(key), 5000, &src);
    assert_non_null(got);
    assert_memory_equal(got->body, "tile-two", 8);
    entry_unref(got);

    /* Other keys stay apart. */
    assert_null(cache_get(c, "base/mc/1/0/1/png", 17, 5000, &src));

    /* Already past keep_until: not stored. */
    e = tile(100, 200, "old");
    cache_put(c, "old", 3, e, 5000);
    assert_int_equal(e->refs, 1);
    entry_unref(e);
    assert_null(cache_get(c, "old", 3, 150, &src));

    cache_free(c);
    cache_free(NULL);
    settings_cleanup(&cfg);
}

static void
test_memory_disabled(void **state)
{
    struct settings cfg;
    struct cache *c = new_cache(&cfg, 0, "64M");
    enum cache_source src;
    struct entry *e = tile(2000, 3000, "x");
    char reason[64];

    (void)state;
    cache_put(c, "k", 1, e, 1000);
    assert_int_equal(e->refs, 1);
    entry_unref(e);
    assert_null(cache_get(c, "k", 1, 1000, &src));
    assert_int_equal(src, CACHE_SRC_NONE);
    assert_int_equal(cache_ready(c, reason, sizeof(reason)), 0);
    assert_string_equal(cache_backend(c), "memory");
    cache_free(c);
    settings_cleanup(&cfg);
}

static void
test_memory_bounded(void **state)
{
    struct settings cfg;
    struct cache *c = new_cache(&cfg, 160, "64M");
    enum cache_source src;
    char key[32];
    int i, hits = 0;

    (void)state;
    for (i = 0; i < 2000; i++) {
        struct entry *e = tile(5000, 6000, "body");
        snprintf(key, sizeof(key), "base/mc/11/%d/0/png", i);
        cache_put(c, key, strlen(key), e, 1000);
        entry_unref(e);
    }
    for (i = 0; i < 2000; i++) {
        struct entry *e;
        snprintf(key, sizeof(key), "base/mc/11/%d/0/png", i);
        if ((e = cache_get(c, key, strlen(key), 1000, &src)) != NULL) {
            hits++;
            entry_unref(e);
        }
    }
    assert_in_range(hits, 1, 160);
    cache_free(c);
    settings_cleanup(&cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ttl_table),
        cmocka_unit_test(test_ttl_huge_max_age),
        cmocka_unit_test(test_memory_only),
        cmocka_unit_test(test_memory_disabled),
        cmocka_unit_test(test_memory_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
