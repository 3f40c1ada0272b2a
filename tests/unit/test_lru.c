#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"
#include "lru.h"
#include "siphash.h"

#define NOW 1000
#define LATER 2000000000

/* An entry whose body is its key, padded to body_len with '.'. */
static struct entry *
mk(const char *key, size_t body_len, int64_t keep_until)
{
    char *body = malloc(body_len + 1);
    size_t klen = strlen(key);
    struct entry *e;

    assert_non_null(body);
    memset(body, '.', body_len);
    memcpy(body, key, klen < body_len ? klen : body_len);
    e = entry_new(
        200, keep_until, keep_until, "image/png", "\"e\"", body, body_len);
    free(body);
    assert_non_null(e);
    return e;
}

/* Put a fresh entry and drop our reference. */
static int
put(struct lru *l, const char *key, size_t body_len)
{
    struct entry *e = mk(key, body_len, LATER);
    int rc = lru_put(l, key, strlen(key), e);

    entry_unref(e);
    return rc;
}

/* 1 when key is present (checks the body it holds). */
static int
has(struct lru *l, const char *key)
{
    struct entry *e = lru_get(l, key, strlen(key), NOW);
    size_t klen = strlen(key);

    if (e == NULL)
        return 0;
    assert_true(e->body_len >= klen || memcmp(e->body, key, e->body_len) == 0);
    if (e->body_len >= klen)
        assert_memory_equal(e->body, key, klen);
    entry_unref(e);
    return 1;
}

static struct lru_stats
stats(struct lru *l)
{
    struct lru_stats s;

    lru_stats(l, &s);
    return s;
}

/* A purge of everything: every shard emptied, references given back. */
static void
test_clear(void **state)
{
    struct lru *l = lru_new(1000, 1 << 20);
    struct lru_stats s;
    char key[16];
    int i;

    (void)state;
    for (i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(put(l, key, 10), 0);
    }
    assert_int_equal(stats(l).entries, 100);
    assert_int_equal(lru_clear(l), 100);
    s = stats(l);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.evictions, 0);
    assert_false(has(l, "k1"));
    assert_int_equal(put(l, "k1", 10), 0); /* still usable */
    assert_true(has(l, "k1"));
    assert_int_equal(lru_clear(l), 1);
    lru_free(l);
    l = lru_new(0, 0);
    assert_int_equal(lru_clear(l), 0); /* disabled: nothing */
    lru_free(l);
}

static void
test_disabled(void **state)
{
    struct lru *l;
    struct lru_stats s;

    (void)state;
    l = lru_new(0, 1 << 20);
    assert_non_null(l);
    assert_int_equal(put(l, "a", 10), -1);
    assert_false(has(l, "a"));
    lru_delete(l, "a", 1);
    s = stats(l);
    assert_true(s.entries == 0 && s.bytes == 0 && s.evictions == 0);
    lru_free(l);

    l = lru_new(1000, 0);
    assert_non_null(l);
    assert_int_equal(put(l, "a", 10), -1);
    assert_false(has(l, "a"));
    lru_free(l);
    lru_free(NULL);
}

static void
test_basic(void **state)
{
    struct lru *l = lru_new(1000, 64 << 20);
    struct entry *a = mk("alpha", 100, LATER), *b = mk("beta", 50, LATER);
    struct entry *got;
    struct lru_stats s;

    (void)state;
    assert_int_equal(lru_put(l, "k", 1, a), 0);
    assert_int_equal(a->refs, 2); /* the cache holds its own */
    got = lru_get(l, "k", 1, NOW);
    assert_ptr_equal(got, a);
    assert_int_equal(a->refs, 3);
    entry_unref(got);
    assert_null(lru_get(l, "K", 1, NOW));
    assert_null(lru_get(l, "k2", 2, NOW));
    assert_null(lru_get(l, "", 0, NOW));
    s = stats(l);
    assert_int_equal(s.entries, 1);
    assert_true(s.bytes >= entry_footprint(a));

    /* Replace: one entry, the new value, the old reference released. */
    assert_int_equal(lru_put(l, "k", 1, b), 0);
    assert_int_equal(a->refs, 1);
    got = lru_get(l, "k", 1, NOW);
    assert_ptr_equal(got, b);
    entry_unref(got);
    s = stats(l);
    assert_int_equal(s.entries, 1);
    assert_int_equal(s.evictions, 0);

    /* Keys with NUL bytes and prefixes are distinct. */
    assert_int_equal(lru_put(l, "k\0x", 3, a), 0);
    assert_int_equal(lru_put(l, "k\0y", 3, b), 0);
    got = lru_get(l, "k\0x", 3, NOW);
    assert_ptr_equal(got, a);
    entry_unref(got);
    assert_int_equal(stats(l).entries, 3);

    assert_int_equal(lru_delete(l, "k", 1), 1);
    assert_null(lru_get(l, "k", 1, NOW));
    assert_int_equal(lru_delete(l, "k", 1), 0); /* absent: nothing */
    assert_int_equal(lru_delete(l, "nothing", 7), 0);
    assert_int_equal(stats(l).entries, 2);
    lru_delete(l, "k\0x", 3);
    lru_delete(l, "k\0y", 3);
    s = stats(l);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(a->refs, 1);
    assert_int_equal(b->refs, 1);
    entry_unref(a);
    entry_unref(b);
    lru_free(l);
}

/* Never more entries than asked for, whatever the bound. */
static void
test_entry_bound(void **state)
{
    static const size_t bounds[] = {16, 160, 1024, 1, 5, 10, 17, 100, 1000};
    size_t i;
    int k, failures = 0;
    char key[32];

    (void)state;
    for (i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
        struct lru *l = lru_new(bounds[i], 1ULL << 30);
        struct lru_stats s;
        uint64_t max_seen = 0;

        for (k = 0; k < 5000; k++) {
            snprintf(key, sizeof(key), "base/mc/12/%d/0/png", k);
            assert_int_equal(put(l, key, 64), 0);
            s = stats(l);
            if (s.entries > max_seen)
                max_seen = s.entries;
        }
        s = stats(l);
        lru_free(l);
        if (max_seen > bounds[i]) {
            print_error("lru_new(%zu, 1G): %llu entries held\n", bounds[i],
                (unsigned long long)max_seen);
            failures++;
        }
        assert_true(s.entries > 0);
        assert_int_equal(s.evictions + s.entries, 5000);
    }
    if (failures > 0)
        fail_msg("entry bound exceeded for %d bounds", failures);
}

static void
test_byte_bound(void **state)
{
    const uint64_t max = 256 * 1024;
    struct lru *l = lru_new(1000000, max);
    struct lru_stats s;
    struct entry *e;
    char key[32];
    int k, present = 0;

    (void)state;
    for (k = 0; k < 3000; k++) {
        snprintf(key, sizeof(key), "key-%d", k);
        assert_int_equal(put(l, key, 500 + (size_t)(k % 7) * 100), 0);
        s = stats(l);
        assert_true(s.bytes <= max);
    }
    s = stats(l);
    assert_true(s.entries > 100);
    assert_int_equal(s.evictions + s.entries, 3000);
    for (k = 0; k < 3000; k++) {
        snprintf(key, sizeof(key), "key-%d", k);
        present += has(l, key);
    }
    assert_int_equal(present, s.entries);

    /* Larger than a shard's share (max / 16) or than everything: refused. */
    e = mk("big", (size_t)max / 16, LATER);
    assert_int_equal(lru_put(l, "big", 3, e), -1);
    assert_int_equal(e->refs, 1);
    entry_unref(e);
    e = mk("huge", (size_t)max * 2, LATER);
    assert_int_equal(lru_put(l, "huge", 4, e), -1);
    entry_unref(e);
    assert_false(has(l, "big"));
    assert_false(has(l, "huge"));
    assert_true(stats(l).entries == s.entries); /* nothing evicted */
    lru_free(l);
}

/* The entry that was just read survives a flood of new ones. */
static void
test_recent_survives(void **state)
{
    struct lru *l = lru_new(160, 1ULL << 30);
    char key[32];
    int k;

    (void)state;
    assert_int_equal(put(l, "hot", 10), 0);
    assert_int_equal(put(l, "cold", 10), 0);
    for (k = 0; k < 5000; k++) {
        snprintf(key, sizeof(key), "flood-%d", k);
        assert_int_equal(put(l, key, 10), 0);
        assert_true(has(l, "hot"));
    }
    assert_false(has(l, "cold"));
    lru_free(l);
}

/*
 * Exact eviction order within one shard. Which keys share a shard is
 * found by probing a cache that holds one entry per shard.
 */
static void
same_shard_keys(char keys[][16], int n)
{
    struct lru *probe = lru_new(16, 1ULL << 30);
    int found = 1, i;

    snprintf(keys[0], 16, "k0");
    for (i = 1; found < n && i < 100000; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(put(probe, keys[0], 8), 0);
        assert_int_equal(put(probe, key, 8), 0);
        if (!has(probe, keys[0]))
            memcpy(keys[found++], key, 16);
        lru_delete(probe, key, strlen(key));
    }
    assert_int_equal(found, n);
    lru_free(probe);
}

static void
test_lru_order(void **state)
{
    char k[5][16];
    struct lru *l;

    (void)state;
    same_shard_keys(k, 5);
    l = lru_new(16 * 3, 1ULL << 30); /* three per shard */
    assert_int_equal(put(l, k[0], 8), 0);
    assert_int_equal(put(l, k[1], 8), 0);
    assert_int_equal(put(l, k[2], 8), 0);
    assert_true(has(l, k[0]));            /* order now 0, 2, 1 */
    assert_int_equal(put(l, k[3], 8), 0); /* evicts 1 */
    assert_true(has(l, k[0]) && has(l, k[2]) && has(l, k[3]));
    assert_false(has(l, k[1]));           /* order 3, 2, 0 */
    assert_true(has(l, k[2]));            /* order 2, 3, 0 */
    assert_int_equal(put(l, k[4], 8), 0); /* evicts 0 */
    assert_false(has(l, k[0]));
    assert_true(has(l, k[2]) && has(l, k[3]) && has(l, k[4]));
    /* order 4, 3, 2. Replacing refreshes recency too. */
    assert_int_equal(put(l, k[2], 8), 0); /* order 2, 4, 3 */
    assert_int_equal(put(l, k[1], 8), 0); /* evicts 3 */
    assert_false(has(l, k[3]));
    assert_true(has(l, k[2]) && has(l, k[4]) && has(l, k[1]));
    assert_int_equal(stats(l).evictions, 3);
    lru_free(l);
}

static void
test_expiry(void **state)
{
    struct lru *l = lru_new(100, 1 << 20);
    struct entry *e = mk("x", 10, 500), *got;

    (void)state;
    assert_int_equal(lru_put(l, "x", 1, e), 0);
    got = lru_get(l, "x", 1, 499);
    assert_ptr_equal(got, e);
    entry_unref(got);
    assert_int_equal(stats(l).entries, 1);
    /* keep_until == now: gone, and dropped from the cache. */
    assert_null(lru_get(l, "x", 1, 500));
    assert_int_equal(stats(l).entries, 0);
    assert_int_equal(stats(l).bytes, 0);
    assert_null(lru_get(l, "x", 1, 0));
    assert_int_equal(e->refs, 1);
    entry_unref(e);

    e = mk("y", 10, 500);
    assert_int_equal(lru_put(l, "y", 1, e), 0);
    assert_null(lru_get(l, "y", 1, 10000));
    assert_int_equal(e->refs, 1);
    entry_unref(e);
    lru_free(l);
}

/* A reference handed out stays readable after the cache lets go. */
static void
test_references_survive(void **state)
{
    struct lru *l = lru_new(160, 1ULL << 30);
    struct entry *got[3];
    char key[32];
    int k;

    (void)state;
    assert_int_equal(put(l, "a", 4000), 0);
    assert_int_equal(put(l, "b", 4000), 0);
    assert_int_equal(put(l, "c", 4000), 0);
    got[0] = lru_get(l, "a", 1, NOW);
    got[1] = lru_get(l, "b", 1, NOW);
    got[2] = lru_get(l, "c", 1, NOW);
    assert_non_null(got[0]);
    assert_non_null(got[1]);
    assert_non_null(got[2]);
    for (k = 0; k < 2000; k++) { /* evicts everything */
        snprintf(key, sizeof(key), "other-%d", k);
        assert_int_equal(put(l, key, 10), 0);
    }
    assert_false(has(l, "a"));
    assert_int_equal(put(l, "b", 10), 0); /* replaced */
    lru_delete(l, "c", 1);
    lru_free(l); /* cache gone entirely */
    assert_memory_equal(got[0]->body, "a...", 4);
    assert_memory_equal(got[1]->body, "b...", 4);
    assert_int_equal(got[2]->body_len, 4000);
    for (k = 0; k < 3; k++) {
        assert_int_equal(got[k]->refs, 1);
        entry_unref(got[k]);
    }
}

/* ------------------------------------------------------------ threads */

#define NTHREADS 4
#define NOPS 20000
#define NKEYS 600
#define STRESS_ENTRIES 256
#define STRESS_BYTES (512 * 1024)

struct worker {
    struct lru *l;
    unsigned seed;
    int errors;
};

static void *
stress(void *arg)
{
    struct worker *w = arg;
    char key[32];
    int i;

    for (i = 0; i < NOPS; i++) {
        unsigned r = (unsigned)rand_r(&w->seed);
        int k = (int)(r % NKEYS), op = (int)((r >> 10) % 10);
        struct entry *e;

        snprintf(key, sizeof(key), "stress/%d", k);
        if (op < 6) {
            e = lru_get(w->l, key, strlen(key), NOW);
            if (e != NULL) {
                if (e->body_len < strlen(key) ||
                    memcmp(e->body, key, strlen(key)) != 0)
                    w->errors++;
                entry_unref(e);
            }
        } else if (op < 9) {
            e = mk(key, 100 + (size_t)(r % 3000), LATER);
            if (lru_put(w->l, key, strlen(key), e) != 0)
                w->errors++;
            entry_unref(e);
        } else {
            lru_delete(w->l, key, strlen(key));
        }
    }
    return NULL;
}

static void
test_threads(void **state)
{
    struct lru *l = lru_new(STRESS_ENTRIES, STRESS_BYTES);
    pthread_t t[NTHREADS];
    struct worker w[NTHREADS];
    struct lru_stats s;
    char key[32];
    int i, present = 0;

    (void)state;
    for (i = 0; i < NTHREADS; i++) {
        w[i].l = l;
        w[i].seed = (unsigned)i * 7919u + 1;
        w[i].errors = 0;
        assert_int_equal(pthread_create(&t[i], NULL, stress, &w[i]), 0);
    }
    for (i = 0; i < NTHREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].errors, 0);
    }
    s = stats(l);
    assert_true(s.entries <= STRESS_ENTRIES);
    assert_true(s.bytes <= STRESS_BYTES);
    assert_true(s.entries > 0);
    assert_true(s.evictions > 0);
    for (i = 0; i < NKEYS; i++) {
        snprintf(key, sizeof(key), "stress/%d", i);
        present += has(l, key);
    }
    assert_int_equal(present, s.entries);
    /* Delete all: the accounting returns to zero. */
    for (i = 0; i < NKEYS; i++) {
        snprintf(key, sizeof(key), "stress/%d", i);
        lru_delete(l, key, strlen(key));
    }
    s = stats(l);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    lru_free(l);
}

/* lru_offer: put through TinyLFU admission; drops our reference. */
static int
offer(struct lru *l, const char *key)
{
    struct entry *e = mk(key, 16, LATER);
    int rc = lru_offer(l, key, strlen(key), e);

    entry_unref(e);
    return rc;
}

/*
 * A one-entry shard's sketch has 16 counters, and under some process keys
 * two keys' four counters are the same four: count-min cannot tell them
 * apart then (about 3 % of random keys). The tests of admission and ageing
 * use one fixed key under which their keys' counters differ.
 */
static void
use_fixed_hash_key(void)
{
    static const uint8_t key[SIPHASH_KEY_BYTES] = {
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

    siphash_set_process_key(key);
}

static void
test_offer_admission(void **state)
{
    struct lru *l;
    int i;

    (void)state;
    use_fixed_hash_key();
    l = lru_new(1, 1 << 20); /* one shard, one entry */
    assert_non_null(l);
    assert_int_equal(offer(l, "a"), 0); /* room: always stored */
    for (i = 0; i < 3; i++)
        assert_true(has(l, "a"));
    /* b asked for once (a miss), a three times: b is refused. */
    assert_false(has(l, "b"));
    assert_int_equal(offer(l, "b"), 1);
    assert_true(has(l, "a"));
    assert_int_equal(stats(l).refused, 1);
    assert_int_equal(stats(l).evictions, 0);
    /* Asked for more often than a now: b takes its place. */
    for (i = 0; i < 5; i++)
        assert_false(has(l, "b"));
    assert_int_equal(offer(l, "b"), 0);
    assert_true(has(l, "b"));
    assert_false(has(l, "a"));
    assert_int_equal(stats(l).evictions, 1);
    /* lru_put (a fetch from HERE) is never refused. */
    assert_int_equal(put(l, "c", 16), 0);
    assert_true(has(l, "c"));
    /* Replacing the same key is not an admission. */
    assert_int_equal(offer(l, "c"), 0);
    assert_int_equal(stats(l).refused, 1);
    lru_free(l);
}

static void
test_offer_counts_age(void **state)
{
    struct lru *l;
    int i;

    (void)state;
    use_fixed_hash_key();
    l = lru_new(1, 1 << 20);
    assert_non_null(l);
    assert_int_equal(offer(l, "old"), 0);
    for (i = 0; i < 8; i++)
        assert_true(has(l, "old"));
    assert_false(has(l, "new"));
    assert_int_equal(offer(l, "new"), 1); /* 1 against 8 */
    /* 100 lookups of another key: the counts halve every 20 (10 x 2). */
    for (i = 0; i < 100; i++)
        assert_false(has(l, "other"));
    assert_false(has(l, "new"));
    assert_int_equal(offer(l, "new"), 0); /* old's 8 faded to 0 */
    assert_true(has(l, "new"));
    lru_free(l);
}

/*
 * A sweep over many tiles read from memcached, each asked for once, while
 * the popular ones are still asked for now and then: through lru_offer the
 * popular tiles stay in process, through lru_put the sweep pushes them out.
 */
static void
test_offer_resists_sweep(void **state)
{
    char key[32];
    int i, kept, gated;

    (void)state;
    for (gated = 0; gated <= 1; gated++) {
        struct lru *l = lru_new(1024, 1 << 26); /* 16 shards of 64 */

        assert_non_null(l);
        for (i = 0; i < 256; i++) {
            snprintf(key, sizeof(key), "hot%d", i);
            assert_int_equal(put(l, key, 16), 0);
            has(l, key);
            has(l, key);
        }
        for (i = 0; i < 40000; i++) {
            snprintf(key, sizeof(key), "sweep%d", i);
            assert_false(has(l, key));
            if (gated)
                offer(l, key);
            else
                put(l, key, 16);
            if (i % 4 == 0) {
                snprintf(key, sizeof(key), "hot%d", (i / 4) % 256);
                has(l, key);
            }
        }
        for (kept = 0, i = 0; i < 256; i++) {
            snprintf(key, sizeof(key), "hot%d", i);
            kept += has(l, key);
        }
        printf("# sweep %s: %d of 256 popular tiles kept\n",
            gated ? "through lru_offer" : "through lru_put", kept);
        if (gated)
            assert_true(kept >= 230);
        else
            assert_true(kept <= 64);
        lru_free(l);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_offer_admission),
        cmocka_unit_test(test_offer_counts_age),
        cmocka_unit_test(test_offer_resists_sweep),
        cmocka_unit_test(test_entry_bound),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_recent_survives),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_references_survive),
        cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
