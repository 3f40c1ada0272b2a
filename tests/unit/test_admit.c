#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "admit.h"
#include "log.h"
#include "ratelimit.h"
#include "settings.h"

/* 2026-11-28 12:00:00 UTC: mid-day, so a day window has 43200 s left. */
#define NOON 1795867200LL

static void
test_client_addr(void **state)
{
    static const struct {
        const char *remote, *xff, *want;
    } cases[] = {
        /* Untrusted sender: X-Forwarded-For is not believed. */
        {"198.51.100.1", "203.0.113.5", "198.51.100.1"},
        /* Trusted sender: the first untrusted hop from the right. */
        {"127.0.0.1", "203.0.113.5", "203.0.113.5"},
        {"127.0.0.1", "1.1.1.1, 203.0.113.5", "203.0.113.5"},
        {"127.0.0.1", "1.1.1.1,203.0.113.5, 10.0.0.7", "203.0.113.5"},
        {"10.2.3.4", " 203.0.113.5 ,10.9.9.9 ", "203.0.113.5"},
        /* Every hop trusted: the leftmost. */
        {"127.0.0.1", "10.0.0.1, 10.0.0.2", "10.0.0.1"},
        /* No header: the sender itself. */
        {"127.0.0.1", NULL, "127.0.0.1"},
        {"127.0.0.1", "", "127.0.0.1"},
        /* Ports and brackets go. */
        {"127.0.0.1", "203.0.113.5:4711", "203.0.113.5"},
        {"127.0.0.1", "[2001:db8::1]:443", "2001:db8::1"},
        {"127.0.0.1", "2001:db8::2", "2001:db8::2"},
        {"::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9"},
        /* Junk ends the walk at the last trusted hop. */
        {"127.0.0.1", "unknown", "127.0.0.1"},
        {"127.0.0.1", "203.0.113.5, 10.0.0.3, junk", "127.0.0.1"},
        {"127.0.0.1", "junk, 10.0.0.3", "10.0.0.3"},
        {"127.0.0.1", "203.0.113.5,,10.0.0.3", "10.0.0.3"},
        {"127.0.0.1", "[2001:db8::1", "127.0.0.1"},
        /* No REMOTE_ADDR at all. */
        {NULL, "203.0.113.5", "-"},
    };
    struct acl *trusted = NULL;
    char err[200], out[64];
    size_t i;

    (void)state;
    assert_int_equal(
        acl_parse(&trusted, "127.0.0.1, 10.0.0.0/8", err, sizeof(err)), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        admit_client_addr(
            cases[i].remote, cases[i].xff, trusted, out, sizeof(out));
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("REMOTE_ADDR %s, X-Forwarded-For '%s': got %s, "
                     "expected %s",
                cases[i].remote ? cases[i].remote : "NULL",
                cases[i].xff ? cases[i].xff : "NULL", out, cases[i].want);
    }
    /* No trusted proxies: always REMOTE_ADDR. */
    admit_client_addr("127.0.0.1", "203.0.113.5", NULL, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1");
    acl_free(trusted);
}

/* One key per client: case, zeros, IPv4-mapped forms and the prefix. */
static void
test_addr_key(void **state)
{
    static const struct {
        const char *addr;
        int prefix;
        const char *want;
    } cases[] = {
        {"192.0.2.1", 64, "192.0.2.1"},
        {"::ffff:192.0.2.1", 64, "192.0.2.1"},
        {"::FFFF:192.0.2.1", 128, "192.0.2.1"},
        {"::ffff:c000:201", 64, "192.0.2.1"},
        {"2001:DB8::1", 64, "2001:db8::/64"},
        {"2001:db8:0:0::2", 64, "2001:db8::/64"},
        {"2001:0db8:0000:0000:ffff:ffff:ffff:ffff", 64, "2001:db8::/64"},
        {"2001:db8:0:1::1", 64, "2001:db8:0:1::/64"},
        {"2001:db8:abcd:12ff::1", 56, "2001:db8:abcd:1200::/56"},
        {"2001:db8:abcd:12ff::1", 1, "::/1"},
        {"2001:DB8::1", 128, "2001:db8::1"},
        {"2001:db8:0:0::1", 128, "2001:db8::1"},
        {"::1", 64, "::/64"},
        {"-", 64, "-"},
        {"junk", 64, "junk"},
    };
    char out[64];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        admit_addr_key(cases[i].addr, cases[i].prefix, out, sizeof(out));
        if (strcmp(out, cases[i].want) != 0)
            fail_msg("%s at /%d: got %s, expected %s", cases[i].addr,
                cases[i].prefix, out, cases[i].want);
    }
    /* The longest key fits the 64 bytes the caller has. */
    admit_addr_key(
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 127, out, sizeof(out));
    assert_string_equal(out, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
}

static struct admit *
make(struct settings *c, const char *const *kv)
{
    char err[256];
    struct admit *l;

    assert_int_equal(settings_init(c), 0);
    for (; *kv != NULL; kv += 2)
        if (settings_set(c, kv[0], kv[1], err, sizeof(err)) != 0)
            fail_msg("%s=%s: %s", kv[0], kv[1], err);
    l = admit_new(c, err, sizeof(err));
    if (l == NULL)
        fail_msg("admit_new: %s", err);
    return l;
}

static void
test_rate(void **state)
{
    static const char *const kv[] = {"RATE_LIMIT_INDEX", "3/minute",
        "RATE_LIMIT_INDEX_OVERRIDES", "open:off,big:100/minute",
        "RATE_LIMIT_IP", "5/minute", NULL};
    struct settings c;
    struct admit *l = make(&c, kv);
    struct admit_verdict v;
    int i;

    (void)state;
    assert_true(admit_by_address(l));
    for (i = 0; i < 3; i++) {
        assert_int_equal(admit_request(l, "a", "192.0.2.1", 1000, NOON, &v), 1);
        assert_true(v.limited);
        assert_int_equal(v.limit, 3); /* the tighter of the two */
        assert_int_equal(v.remaining, 2 - i);
    }
    assert_int_equal(admit_request(l, "a", "192.0.2.1", 1000, NOON, &v), 0);
    assert_string_equal(v.refused_by, "indice");
    assert_int_equal(v.remaining, 0);
    assert_int_equal(v.retry_after_s, 20); /* one token at 3/minute */
    /* 20 s later one more. */
    assert_int_equal(admit_request(l, "a", "192.0.2.1", 21000, NOON, &v), 1);
    /* The address took 5 (a refusal by the índice costs it a token too)
     * and got 1.67 back: one more, then refused whatever the índice, and
     * without spending the índice's tokens. */
    assert_int_equal(admit_request(l, "b", "192.0.2.1", 21000, NOON, &v), 1);
    assert_int_equal(admit_request(l, "b", "192.0.2.1", 21000, NOON, &v), 0);
    assert_string_equal(v.refused_by, "address");
    assert_int_equal(v.limit, 5);
    assert_int_equal(admit_request(l, "b", "192.0.2.2", 21000, NOON, &v), 1);
    assert_int_equal(v.remaining, 1); /* b: 3 - 2, not 3 - 3 */
    /* Overrides. */
    assert_int_equal(admit_request(l, "big", "192.0.2.3", 21000, NOON, &v), 1);
    assert_int_equal(v.limit, 5); /* the address is tighter */
    assert_int_equal(admit_request(l, "open", NULL, 21000, NOON, &v), 1);
    assert_false(v.limited);
    admit_free(l);
    settings_cleanup(&c);
}

/*
 * RATE_LIMIT_IP for IPv6 clients: one bucket per /64 (the default), where
 * case and zeros do not matter and the rest of the prefix is the same
 * client; another /64 is another client; at /128 each address is one.
 */
static void
test_rate_ipv6_prefix(void **state)
{
    static const char *const kv[] = {"RATE_LIMIT_IP", "1/minute", NULL};
    struct settings c, next;
    struct admit *l = make(&c, kv);
    struct admit_verdict v;
    char err[256];

    (void)state;
    assert_int_equal(admit_request(l, "a", "2001:DB8::1", 0, NOON, &v), 1);
    assert_int_equal(admit_request(l, "a", "2001:db8:0:0::2", 0, NOON, &v), 0);
    assert_string_equal(v.refused_by, "address");
    assert_int_equal(admit_request(l, "a", "2001:db8::ffff:1", 0, NOON, &v), 0);
    assert_int_equal(admit_request(l, "a", "2001:db8:0:1::1", 0, NOON, &v), 1);
    /* IPv4-mapped: the IPv4 client's bucket. */
    assert_int_equal(admit_request(l, "a", "192.0.2.7", 0, NOON, &v), 1);
    assert_int_equal(admit_request(l, "a", "::ffff:192.0.2.7", 0, NOON, &v), 0);

    /* RATE_LIMIT_IPV6_PREFIX=128 (a reload): each address its own. */
    assert_int_equal(settings_init(&next), 0);
    assert_int_equal(
        settings_set(&next, "RATE_LIMIT_IP", "1/minute", err, sizeof(err)), 0);
    assert_int_equal(
        settings_set(&next, "RATE_LIMIT_IPV6_PREFIX", "128", err, sizeof(err)),
        0);
    assert_int_equal(admit_reload(l, &next, err, sizeof(err)), 0);
    settings_cleanup(&next);
    assert_int_equal(admit_request(l, "a", "2001:db8:5::1", 0, NOON, &v), 1);
    assert_int_equal(admit_request(l, "a", "2001:db8:5::2", 0, NOON, &v), 1);
    assert_int_equal(admit_request(l, "a", "2001:DB8:5:0::1", 0, NOON, &v), 0);
    admit_free(l);
    settings_cleanup(&c);
}

/* SIGHUP: new limits at once; what was spent and cache-only carry on. */
static void
test_reload(void **state)
{
    static const char *const kv[] = {
        "RATE_LIMIT_INDEX", "2/minute", "QUOTA_UPSTREAM_INDEX", "1/day", NULL};
    struct settings c, next;
    struct admit *l = make(&c, kv);
    struct admit_verdict v;
    char reason[200], err[256];
    long ra = 0;

    (void)state;
    assert_false(admit_by_address(l));
    assert_int_equal(admit_request(l, "a", NULL, 1000, NOON, &v), 1);
    assert_int_equal(admit_request(l, "a", NULL, 1000, NOON, &v), 1);
    assert_int_equal(admit_request(l, "a", NULL, 1000, NOON, &v), 0);
    assert_int_equal(
        admit_upstream_begin(l, "q", "", NOON, reason, sizeof(reason), &ra), 0);
    assert_int_equal(
        admit_upstream_begin(l, "q", "", NOON, reason, sizeof(reason), &ra),
        -1); /* q is cache-only now */

    assert_int_equal(settings_init(&next), 0);
    assert_int_equal(
        settings_set(&next, "RATE_LIMIT_INDEX", "off", err, sizeof(err)), 0);
    assert_int_equal(
        settings_set(&next, "RATE_LIMIT_IP", "1/minute", err, sizeof(err)), 0);
    assert_int_equal(
        settings_set(&next, "QUOTA_UPSTREAM_INDEX", "5/day", err, sizeof(err)),
        0);
    assert_int_equal(admit_reload(l, &next, err, sizeof(err)), 0);
    settings_cleanup(&next); /* the rules keep nothing of it */
    assert_true(admit_by_address(l));
    assert_int_equal(admit_request(l, "a", NULL, 1000, NOON, &v), 1);
    assert_false(v.limited); /* the índice limit is off */
    assert_int_equal(admit_request(l, "a", "192.0.2.9", 1000, NOON, &v), 1);
    assert_int_equal(admit_request(l, "a", "192.0.2.9", 1000, NOON, &v), 0);
    assert_string_equal(v.refused_by, "address");
    /* q's cache-only period was entered under 1/day: it lasts. */
    assert_int_equal(
        admit_upstream_begin(l, "q", "", NOON + 1, reason, sizeof(reason), &ra),
        -1);
    /* r counts against the new 5/day. */
    assert_int_equal(
        admit_upstream_begin(l, "r", "", NOON, reason, sizeof(reason), &ra), 0);
    assert_int_equal(
        admit_upstream_begin(l, "r", "", NOON, reason, sizeof(reason), &ra), 0);
    admit_free(l);
    settings_cleanup(&c);
}

static void
test_quota(void **state)
{
    static const char *const kv[] = {"QUOTA_UPSTREAM_INDEX", "5/day",
        "QUOTA_UPSTREAM_INDEX_OVERRIDES", "small:2/day,open:off", NULL};
    struct settings c;
    struct admit *l = make(&c, kv);
    struct admit_verdict v;
    char reason[200];
    long ra = 0;
    int i;

    (void)state;
    assert_false(admit_by_address(l));
    assert_int_equal(admit_request(l, "small", NULL, 0, NOON, &v), 1);
    assert_false(v.limited); /* no rate limit set */
    assert_int_equal(
        admit_upstream_begin(l, "small", "", NOON, reason, sizeof(reason), &ra),
        0);
    assert_int_equal(admit_upstream_begin(
                         l, "small", "", NOON + 1, reason, sizeof(reason), &ra),
        0);
    assert_int_equal(admit_upstream_begin(
                         l, "small", "", NOON + 2, reason, sizeof(reason), &ra),
        -1);
    assert_non_null(strstr(reason, "small"));
    assert_non_null(strstr(reason, "2/day"));
    assert_int_equal(ra, 43200 - 2);
    /* Cache-only now: refused without counting, until the day ends. */
    assert_int_equal(admit_upstream_begin(l, "small", "", NOON + 3600, reason,
                         sizeof(reason), &ra),
        -1);
    assert_int_equal(ra, 43200 - 3600);
    /* Other índices: the default 5/day, or none. */
    for (i = 0; i < 5; i++)
        assert_int_equal(admit_upstream_begin(
                             l, "other", "", NOON, reason, sizeof(reason), &ra),
            0);
    assert_int_equal(
        admit_upstream_begin(l, "other", "", NOON, reason, sizeof(reason), &ra),
        -1);
    for (i = 0; i < 50; i++)
        assert_int_equal(admit_upstream_begin(
                             l, "open", "", NOON, reason, sizeof(reason), &ra),
            0);
    {
        /* The metrics' view: both índices cache-only, the proxy not. */
        struct admit_scope *co;
        size_t n = 9;
        int all = 1;

        co = admit_cache_only(l, NOON + 10, &all, &n);
        assert_int_equal(n, 2);
        assert_int_equal(all, 0);
        assert_false(co[0].params);
        assert_string_equal(co[0].name, "other"); /* sorted */
        assert_string_equal(co[1].name, "small");
        free(co);
        co = admit_cache_only(l, NOON + 43200, &all, &n);
        assert_null(co); /* the day is over */
        assert_int_equal(n, 0);
    }
    /* The next UTC day: a new window. */
    assert_int_equal(admit_upstream_begin(l, "small", "", NOON + 43200, reason,
                         sizeof(reason), &ra),
        0);
    admit_free(l);
    settings_cleanup(&c);
}

static void
test_budget(void **state)
{
    static const char *const kv[] = {"HERE_DAILY_BUDGET", "3", NULL};
    struct settings c;
    struct admit *l = make(&c, kv);
    char reason[200];
    long ra = 0;

    (void)state;
    assert_int_equal(
        admit_upstream_begin(l, "a", "", NOON, reason, sizeof(reason), &ra), 0);
    assert_int_equal(
        admit_upstream_begin(l, "b", "", NOON, reason, sizeof(reason), &ra), 0);
    assert_int_equal(
        admit_upstream_begin(l, "c", "", NOON, reason, sizeof(reason), &ra), 0);
    assert_int_equal(
        admit_upstream_begin(l, "d", "", NOON, reason, sizeof(reason), &ra),
        -1);
    assert_non_null(strstr(reason, "HERE_DAILY_BUDGET"));
    assert_int_equal(ra, 43200);
    {
        size_t n = 9;
        int all = 0;

        assert_null(admit_cache_only(l, NOON + 1, &all, &n));
        assert_int_equal(n, 0);
        assert_int_equal(all, 1);
    }
    assert_int_equal(admit_upstream_begin(
                         l, "a", "", NOON + 10, reason, sizeof(reason), &ra),
        -1);
    assert_int_equal(admit_upstream_begin(
                         l, "a", "", NOON + 43200, reason, sizeof(reason), &ra),
        0);
    admit_free(l);
    settings_cleanup(&c);
}

/* 401s, and 403s for HERE's default parameters: the whole proxy. */
static void
test_here_denied(void **state)
{
    static const char *const kv[] = {
        "HERE_DENY_THRESHOLD", "3", "HERE_CACHE_ONLY_S", "60", NULL};
    struct settings c;
    struct admit *l = make(&c, kv);
    char reason[256];
    long ra = 0;

    (void)state;
    /* A run broken by a success does not count. */
    admit_upstream_result(l, "a", "", 401, 0, NOON);
    admit_upstream_result(l, "b", "", 403, 0, NOON);
    admit_upstream_result(l, "a", "", 200, 0, NOON);
    admit_upstream_result(l, "a", "", 401, 0, NOON);
    admit_upstream_result(l, "a", "", 0, 0, NOON); /* no answer: neither */
    admit_upstream_result(l, "c", "", 403, 0, NOON);
    assert_int_equal(
        admit_upstream_begin(l, "a", "", NOON, reason, sizeof(reason), &ra), 0);
    admit_upstream_result(l, "a", "", 401, 0, NOON);
    assert_int_equal(
        admit_upstream_begin(l, "a", "", NOON + 1, reason, sizeof(reason), &ra),
        -1);
    assert_non_null(strstr(reason, "401"));
    assert_int_equal(ra, 59);
    assert_int_equal(admit_upstream_begin(l, "z", "style=satellite.day",
                         NOON + 1, reason, sizeof(reason), &ra),
        -1);
    assert_int_equal(admit_upstream_begin(
                         l, "a", "", NOON + 60, reason, sizeof(reason), &ra),
        0);

    /* The key is the key whatever the parameters: 401 is everything. */
    admit_upstream_result(l, "a", "size=512", 401, 0, NOON + 70);
    admit_upstream_result(l, "b", "style=topo.day", 401, 0, NOON + 70);
    admit_upstream_result(l, "c", "lang=de", 401, 0, NOON + 70);
    assert_int_equal(admit_upstream_begin(
                         l, "d", "", NOON + 70, reason, sizeof(reason), &ra),
        -1);

    /* HERE's Retry-After may shorten the period... */
    admit_upstream_result(l, "a", "", 403, 7, NOON + 200);
    admit_upstream_result(l, "a", "", 403, 7, NOON + 200);
    admit_upstream_result(l, "a", "", 403, 7, NOON + 200);
    assert_int_equal(admit_upstream_begin(
                         l, "b", "", NOON + 200, reason, sizeof(reason), &ra),
        -1);
    assert_int_equal(ra, 7);
    assert_non_null(strstr(reason, "403"));
    assert_int_equal(admit_upstream_begin(
                         l, "b", "", NOON + 207, reason, sizeof(reason), &ra),
        0);
    /* ... never lengthen it past HERE_CACHE_ONLY_S. */
    admit_upstream_result(l, "a", "", 401, 86400, NOON + 300);
    admit_upstream_result(l, "a", "", 401, 86400, NOON + 300);
    admit_upstream_result(l, "a", "", 401, 86400, NOON + 300);
    assert_int_equal(admit_upstream_begin(
                         l, "b", "", NOON + 300, reason, sizeof(reason), &ra),
        -1);
    assert_int_equal(ra, 60);
    assert_int_equal(admit_upstream_begin(
                         l, "b", "", NOON + 360, reason, sizeof(reason), &ra),
        0);
    admit_free(l);
    settings_cleanup(&c);
}

/*
 * One client asks for a style its plan lacks: HERE's 403s make only that
 * plan class cache-only (for every índice), never the fleet.
 */
static void
test_deny_scopes_params(void **state)
{
    static const char *const kv[] = {
        "HERE_DENY_THRESHOLD", "3", "HERE_CACHE_ONLY_S", "60", NULL};
    static const char *const sat = "style=satellite.day";
    struct settings c;
    struct admit *l = make(&c, kv);
    struct admit_scope *v;
    char reason[256];
    long ra = 0;
    size_t n;
    int i, asked = 0, all = 1;

    (void)state;
    /* Six tries of índice A for satellite tiles: three reach HERE. */
    for (i = 0; i < 6; i++) {
        if (admit_upstream_begin(
                l, "A", sat, NOON, reason, sizeof(reason), &ra) != 0)
            continue;
        asked++;
        admit_upstream_result(l, "A", sat, 403, 0, NOON);
    }
    assert_int_equal(asked, 3);
    assert_int_equal(
        admit_upstream_begin(l, "A", sat, NOON, reason, sizeof(reason), &ra),
        -1);
    assert_non_null(strstr(reason, sat));
    assert_non_null(strstr(reason, "403"));
    assert_int_equal(ra, 60);
    /* Everyone else, and A with the default style, is still fetched. */
    assert_int_equal(
        admit_upstream_begin(l, "B", "", NOON, reason, sizeof(reason), &ra), 0);
    assert_int_equal(
        admit_upstream_begin(l, "A", "", NOON, reason, sizeof(reason), &ra), 0);
    assert_int_equal(admit_upstream_begin(l, "B", "style=topo.day", NOON,
                         reason, sizeof(reason), &ra),
        0);
    /* The class is the plan's, not A's: B's satellite misses wait too. */
    assert_int_equal(admit_upstream_begin(
                         l, "B", sat, NOON + 1, reason, sizeof(reason), &ra),
        -1);
    v = admit_cache_only(l, NOON + 1, &all, &n);
    assert_int_equal(all, 0);
    assert_int_equal(n, 1);
    assert_true(v[0].params);
    assert_string_equal(v[0].name, sat);
    free(v);

    /* A success for a class ends its run. */
    admit_upstream_result(l, "A", "features=pois:all", 403, 0, NOON);
    admit_upstream_result(l, "B", "features=pois:all", 403, 0, NOON);
    admit_upstream_result(l, "C", "features=pois:all", 200, 0, NOON);
    admit_upstream_result(l, "A", "features=pois:all", 403, 0, NOON);
    admit_upstream_result(l, "A", "features=pois:all", 403, 0, NOON);
    assert_int_equal(admit_upstream_begin(l, "A", "features=pois:all", NOON,
                         reason, sizeof(reason), &ra),
        0);
    /* ... a success of another class does not. */
    admit_upstream_result(l, "A", "", 200, 0, NOON);
    admit_upstream_result(l, "A", "features=pois:all", 403, 0, NOON);
    assert_int_equal(admit_upstream_begin(l, "A", "features=pois:all", NOON,
                         reason, sizeof(reason), &ra),
        -1);

    /* HERE_CACHE_ONLY_S later satellite is asked for again. */
    assert_int_equal(admit_upstream_begin(
                         l, "A", sat, NOON + 60, reason, sizeof(reason), &ra),
        0);
    assert_null(admit_cache_only(l, NOON + 60, &all, &n));
    admit_free(l);
    settings_cleanup(&c);
}

/* 429 is about volume: one índice's run, that índice; several, all. */
static void
test_deny_scopes_volume(void **state)
{
    static const char *const kv[] = {
        "HERE_DENY_THRESHOLD", "3", "HERE_CACHE_ONLY_S", "60", NULL};
    struct settings c;
    struct admit *l = make(&c, kv);
    struct admit_scope *v;
    char reason[256];
    long ra = 0;
    size_t n;
    int all = 1;

    (void)state;
    admit_upstream_result(l, "A", "", 429, 5, NOON);
    admit_upstream_result(l, "A", "", 429, 5, NOON);
    admit_upstream_result(l, "A", "", 429, 5, NOON);
    assert_int_equal(
        admit_upstream_begin(l, "A", "", NOON, reason, sizeof(reason), &ra),
        -1);
    assert_int_equal(ra, 5);
    assert_non_null(strstr(reason, "indice A"));
    assert_int_equal(
        admit_upstream_begin(l, "B", "", NOON, reason, sizeof(reason), &ra), 0);
    v = admit_cache_only(l, NOON, &all, &n);
    assert_int_equal(all, 0);
    assert_int_equal(n, 1);
    assert_false(v[0].params);
    assert_string_equal(v[0].name, "A");
    free(v);

    /* Interleaved with another índice's success: no run. */
    admit_upstream_result(l, "C", "", 429, 0, NOON + 100);
    admit_upstream_result(l, "C", "", 429, 0, NOON + 100);
    admit_upstream_result(l, "C", "", 200, 0, NOON + 100);
    admit_upstream_result(l, "C", "", 429, 0, NOON + 100);
    assert_int_equal(admit_upstream_begin(
                         l, "C", "", NOON + 100, reason, sizeof(reason), &ra),
        0);
    /* A run across índices: HERE throttles the account, everything. */
    admit_upstream_result(l, "D", "", 429, 0, NOON + 100);
    admit_upstream_result(l, "E", "size=512", 429, 0, NOON + 100);
    assert_int_equal(admit_upstream_begin(
                         l, "F", "", NOON + 100, reason, sizeof(reason), &ra),
        -1);
    assert_non_null(strstr(reason, "429"));
    assert_int_equal(ra, 60);
    assert_null(admit_cache_only(l, NOON + 100, &all, &n));
    assert_int_equal(all, 1);
    admit_free(l);
    settings_cleanup(&c);
}

/*
 * The quota counters never fail open when full: a new índice is refused
 * (counted), live counts carry on, the budget is still counted, and
 * windows that ended make room.
 */
static void
test_quota_table_full(void **state)
{
    static const char *const kv[] = {"QUOTA_UPSTREAM_INDEX", "3/day",
        "METRICS_MAX_INDICES", "0", "HERE_DAILY_BUDGET", "4100", NULL};
    struct settings c;
    struct admit *l = make(&c, kv);
    struct admit_stats st;
    char reason[256], name[32];
    long ra = 0;
    int i, cap;

    (void)state;
    admit_stats(l, &st);
    cap = (int)st.table_size;
    assert_int_equal(cap, 4096); /* the floor, with nothing configured */
    for (i = 0; i < cap; i++) {
        snprintf(name, sizeof(name), "i%d", i);
        assert_int_equal(admit_upstream_begin(
                             l, name, "", NOON, reason, sizeof(reason), &ra),
            0);
    }
    /* Full: a new índice is not let through uncounted. */
    assert_int_equal(admit_upstream_begin(
                         l, "new", "", NOON + 5, reason, sizeof(reason), &ra),
        -1);
    assert_non_null(strstr(reason, "too many indices"));
    assert_int_equal(ra, 43200 - 5); /* until the windows end */
    admit_stats(l, &st);
    assert_int_equal(st.quota_table_full, 1);
    /* Counted índices go on counting, to their quota. */
    assert_int_equal(
        admit_upstream_begin(l, "i0", "", NOON, reason, sizeof(reason), &ra),
        0);
    assert_int_equal(
        admit_upstream_begin(l, "i0", "", NOON, reason, sizeof(reason), &ra),
        0);
    assert_int_equal(
        admit_upstream_begin(l, "i0", "", NOON, reason, sizeof(reason), &ra),
        -1);
    assert_non_null(strstr(reason, "quota of indice i0"));
    /* The fleet's budget has a count of its own: 4096 + 2, then 4100. */
    assert_int_equal(
        admit_upstream_begin(l, "i1", "", NOON, reason, sizeof(reason), &ra),
        0);
    assert_int_equal(
        admit_upstream_begin(l, "i2", "", NOON, reason, sizeof(reason), &ra),
        0);
    assert_int_equal(
        admit_upstream_begin(l, "i3", "", NOON, reason, sizeof(reason), &ra),
        -1);
    assert_non_null(strstr(reason, "HERE_DAILY_BUDGET"));
    /* The next day every window has ended: room again. */
    assert_int_equal(admit_upstream_begin(l, "new", "", NOON + 43200, reason,
                         sizeof(reason), &ra),
        0);
    admit_free(l);
    settings_cleanup(&c);
}

/* Sized from the configuration: the índices it names, over the floor. */
static void
test_table_sizes(void **state)
{
    static const char *const kv[] = {"METRICS_MAX_INDICES", "10",
        "HEREPROXY_INDICES", "a,b,c", "QUOTA_UPSTREAM_INDEX_OVERRIDES",
        "a:5/day,b:6/day", NULL};
    struct settings c, next;
    struct admit *l = make(&c, kv);
    struct admit_stats st;
    char err[256];

    (void)state;
    admit_stats(l, &st);
    assert_int_equal(st.table_size, 4096 + 10 + 3 + 2);
    /* A reload naming more makes room for them. */
    assert_int_equal(settings_init(&next), 0);
    assert_int_equal(
        settings_set(&next, "METRICS_MAX_INDICES", "2000", err, sizeof(err)),
        0);
    assert_int_equal(admit_reload(l, &next, err, sizeof(err)), 0);
    settings_cleanup(&next);
    admit_stats(l, &st);
    assert_int_equal(st.table_size, 4096 + 2000);
    admit_free(l);
    settings_cleanup(&c);
}

/*
 * A full table of cache-only scopes makes room by ending the one nearest
 * its end: the new scope is cache-only, and the fleet is not.
 */
static void
test_scope_table_full(void **state)
{
    static const char *const kv[] = {"HERE_DENY_THRESHOLD", "1",
        "HERE_CACHE_ONLY_S", "600", "METRICS_MAX_INDICES", "0", NULL};
    struct settings c;
    struct admit *l = make(&c, kv);
    struct admit_stats st;
    struct admit_scope *v;
    char reason[256], plan[32];
    long ra = 0;
    size_t n;
    int i, cap, all = 1;

    (void)state;
    admit_stats(l, &st);
    cap = (int)st.table_size;
    for (i = 0; i < cap; i++) {
        snprintf(plan, sizeof(plan), "size=512&lang=x%d", i);
        admit_upstream_result(l, "A", plan, 403, 0, NOON + i / 1000);
    }
    admit_stats(l, &st);
    assert_int_equal(st.scopes_evicted, 0);
    /* One more: it is cache-only, the oldest one gave way. */
    admit_upstream_result(l, "A", "style=satellite.day", 403, 0, NOON + 10);
    assert_int_equal(admit_upstream_begin(l, "A", "style=satellite.day",
                         NOON + 10, reason, sizeof(reason), &ra),
        -1);
    assert_int_equal(admit_upstream_begin(
                         l, "A", "", NOON + 10, reason, sizeof(reason), &ra),
        0);
    admit_stats(l, &st);
    assert_int_equal(st.scopes_evicted, 1);
    assert_int_equal(admit_upstream_begin(l, "A", "size=512&lang=x0", NOON + 10,
                         reason, sizeof(reason), &ra),
        0);
    assert_int_equal(admit_upstream_begin(l, "A", "size=512&lang=x4000",
                         NOON + 10, reason, sizeof(reason), &ra),
        -1);
    v = admit_cache_only(l, NOON + 10, &all, &n);
    assert_int_equal(all, 0);
    assert_int_equal(n, (size_t)cap);
    free(v);
    admit_free(l);
    settings_cleanup(&c);
}

/* Runs of denials in a full table: a new scope's run still completes. */
static void
test_run_table_full(void **state)
{
    static const char *const kv[] = {
        "HERE_DENY_THRESHOLD", "2", "METRICS_MAX_INDICES", "0", NULL};
    struct settings c;
    struct admit *l = make(&c, kv);
    char reason[256], plan[32];
    long ra = 0;
    int i;

    (void)state;
    for (i = 0; i < 5000; i++) {
        snprintf(plan, sizeof(plan), "lang=x%d", i);
        admit_upstream_result(l, "A", plan, 403, 0, NOON);
    }
    admit_upstream_result(l, "A", "style=satellite.day", 403, 0, NOON);
    admit_upstream_result(l, "A", "style=satellite.day", 403, 0, NOON);
    assert_int_equal(admit_upstream_begin(l, "A", "style=satellite.day", NOON,
                         reason, sizeof(reason), &ra),
        -1);
    assert_int_equal(
        admit_upstream_begin(l, "A", "", NOON, reason, sizeof(reason), &ra), 0);
    admit_free(l);
    settings_cleanup(&c);
}

static void
test_null(void **state)
{
    struct admit_verdict v;
    char reason[64];
    long ra = 0;
    size_t n;
    int all;

    (void)state;
    assert_false(admit_by_address(NULL));
    assert_null(admit_trusted(NULL));
    assert_int_equal(admit_request(NULL, "a", NULL, 0, NOON, &v), 1);
    assert_false(v.limited);
    admit_upstream_result(NULL, "a", "", 401, 0, NOON);
    assert_null(admit_cache_only(NULL, NOON, &all, &n));
    assert_int_equal(
        admit_upstream_begin(NULL, "a", "", NOON, reason, sizeof(reason), &ra),
        0);
    admit_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_addr),
        cmocka_unit_test(test_addr_key),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_rate_ipv6_prefix),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_here_denied),
        cmocka_unit_test(test_deny_scopes_params),
        cmocka_unit_test(test_deny_scopes_volume),
        cmocka_unit_test(test_quota_table_full),
        cmocka_unit_test(test_table_sizes),
        cmocka_unit_test(test_scope_table_full),
        cmocka_unit_test(test_run_table_full),
        cmocka_unit_test(test_null),
    };

    /* The cache-only events go to stderr; keep the test output short. */
    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
