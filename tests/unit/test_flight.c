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

#include "flight.h"
#include "util.h"

#define CHUNKS 300
#define CHUNK 997 /* odd, so chunks straddle 64 KB blocks */
#define READERS 8

static unsigned char
pattern(size_t i)
{
    return (unsigned char)(i * 31 + i / 251);
}

struct reader {
    struct flight *f;
    size_t got;
    int mismatches;
    enum flight_end end;
    int head_rc;
};

/* Read the whole flight as a client stream would, checking every byte. */
static void *
read_all(void *arg)
{
    struct reader *r = arg;
    struct flight_head head;
    struct flight_result res;
    size_t len;
    const unsigned char *p;

    r->head_rc = flight_wait_head(r->f, util_mono_ms() + 10000, &head, &res);
    if (r->head_rc != 0)
        return NULL;
    while ((p = flight_read(r->f, r->got, &len, &r->end)) != NULL && len > 0) {
        size_t i;
        for (i = 0; i < len; i++)
            r->mismatches += p[i] != pattern(r->got + i);
        r->got += len;
    }
    return NULL;
}

static void *
write_all(void *arg)
{
    struct flight *f = arg;
    struct flight_head head;
    struct flight_result res;
    unsigned char buf[CHUNK];
    size_t off = 0;
    int c;

    memset(&head, 0, sizeof(head));
    head.status = 200;
    head.content_length = CHUNKS * CHUNK;
    util_strlcpy(head.content_type, "image/png", sizeof(head.content_type));
    flight_set_head(f, &head);
    for (c = 0; c < CHUNKS; c++) {
        size_t i;
        for (i = 0; i < CHUNK; i++)
            buf[i] = pattern(off + i);
        if (flight_append(f, buf, CHUNK) != 0)
            break;
        off += CHUNK;
    }
    memset(&res, 0, sizeof(res));
    res.status = 200;
    res.attempts = 1;
    flight_end(f, FLIGHT_OK, &res);
    return NULL;
}

/* Many readers of one flight all see the same bytes, streamed. */
static void
test_readers_share_one_fetch(void **state)
{
    struct flights *reg = flights_new();
    struct flight *f, *g;
    struct reader readers[READERS];
    pthread_t rt[READERS], wt;
    int leader, i;
    unsigned char *body;

    (void)state;
    f = flight_join(reg, "k", 1, &leader);
    assert_int_equal(leader, 1);
    for (i = 0; i < READERS; i++) {
        memset(&readers[i], 0, sizeof(readers[i]));
        readers[i].f = i == 0 ? f : flight_join(reg, "k", 1, &leader);
        assert_ptr_equal(readers[i].f, f);
        if (i > 0)
            assert_int_equal(leader, 0);
        pthread_create(&rt[i], NULL, read_all, &readers[i]);
    }
    assert_int_equal(flight_readers(f), READERS);
    pthread_create(&wt, NULL, write_all, flight_ref(reg, f));
    pthread_join(wt, NULL);
    flight_release(reg, f); /* the writer's reference */
    for (i = 0; i < READERS; i++) {
        pthread_join(rt[i], NULL);
        assert_int_equal(readers[i].head_rc, 0);
        assert_int_equal(readers[i].got, CHUNKS * CHUNK);
        assert_int_equal(readers[i].mismatches, 0);
        assert_int_equal(readers[i].end, FLIGHT_OK);
    }
    assert_int_equal(flight_wait_end(f, -1), FLIGHT_OK);
    assert_int_equal(flight_body_len(f), CHUNKS * CHUNK);
    body = malloc(CHUNKS * CHUNK);
    assert_non_null(body);
    flight_copy_body(f, body);
    for (i = 0; i < CHUNKS * CHUNK; i++)
        if (body[i] != pattern((size_t)i))
            fail_msg("copied body differs at %d", i);
    free(body);

    /* Ended but not retired: a late request still joins it, whole. */
    g = flight_join(reg, "k", 1, &leader);
    assert_ptr_equal(g, f);
    assert_int_equal(leader, 0);
    flight_release(reg, g);

    /* Retired: the next request leads a new fetch. */
    flight_retire(reg, f);
    g = flight_join(reg, "k", 1, &leader);
    assert_ptr_not_equal(g, f);
    assert_int_equal(leader, 1);
    flight_end(g, FLIGHT_FAILED, NULL);
    flight_retire(reg, g);
    flight_release(reg, g);
    for (i = 0; i < READERS; i++)
        flight_release(reg, readers[i].f);
    flights_free(reg);
}

/* Different keys are different flights, even when they collide in a bucket. */
static void
test_keys_are_distinct(void **state)
{
    struct flights *reg = flights_new();
    struct flight *f[600];
    char key[32];
    int i, leader;

    (void)state;
    for (i = 0; i < 600; i++) {
        snprintf(key, sizeof(key), "base/mc/9/%d/1/png", i);
        f[i] = flight_join(reg, key, strlen(key), &leader);
        assert_int_equal(leader, 1);
    }
    for (i = 0; i < 600; i++) {
        struct flight *again;
        snprintf(key, sizeof(key), "base/mc/9/%d/1/png", i);
        again = flight_join(reg, key, strlen(key), &leader);
        assert_ptr_equal(again, f[i]);
        assert_int_equal(leader, 0);
        flight_release(reg, again);
    }
    for (i = 0; i < 600; i++) {
        flight_end(f[i], FLIGHT_FAILED, NULL);
        flight_retire(reg, f[i]);
        flight_release(reg, f[i]);
    }
    flights_free(reg);
}

/* A failure without a head wakes readers with the reason. */
static void
test_failure_reaches_readers(void **state)
{
    struct flights *reg = flights_new();
    struct flight *f;
    struct flight_head head;
    struct flight_result res, got;
    int leader;
    size_t len;
    enum flight_end end;

    (void)state;
    f = flight_join(reg, "x", 1, &leader);
    /* Nothing yet: waiting for the head times out. */
    assert_int_equal(flight_wait_head(f, util_mono_ms() + 30, &head, &got), -1);
    memset(&res, 0, sizeof(res));
    res.status = 503;
    res.attempts = 3;
    util_strlcpy(res.error, "HERE answered 503", sizeof(res.error));
    flight_end(f, FLIGHT_FAILED, &res);
    assert_int_equal(
        flight_wait_head(f, util_mono_ms() + 1000, &head, &got), -1);
    assert_int_equal(got.attempts, 3);
    assert_string_equal(got.error, "HERE answered 503");
    assert_null(flight_read(f, 0, &len, &end));
    assert_int_equal(len, 0);
    assert_int_equal(end, FLIGHT_FAILED);
    flight_retire(reg, f);
    flight_release(reg, f);
    flights_free(reg);
}

/*
 * A follower that only looks: joins a running flight, never starts one,
 * and finds nothing once the flight is retired.
 */
static void
test_join_running_never_leads(void **state)
{
    struct flights *reg = flights_new();
    struct flight *f, *g;
    int leader;

    (void)state;
    assert_null(flight_join_running(reg, "t", 1));
    f = flight_join(reg, "t", 1, &leader);
    assert_int_equal(leader, 1);
    g = flight_join_running(reg, "t", 1);
    assert_ptr_equal(g, f);
    assert_int_equal(flight_readers(f), 2);
    assert_null(flight_join_running(reg, "u", 1));
    flight_end(f, FLIGHT_FAILED, NULL);
    flight_retire(reg, f);
    assert_null(flight_join_running(reg, "t", 1));
    flight_release(reg, g);
    flight_release(reg, f);
    flights_free(reg);
}

/* The whole body at once only when it ended well and fits one block. */
struct whole_reader {
    struct flight *f;
    int head_rc, whole, ok;
    size_t len;
};

/* A tile's reader: the head, then (whole) the end and the body at once. */
static void *
read_whole(void *arg)
{
    struct whole_reader *r = arg;
    struct flight_head head;
    const unsigned char *p;
    size_t i;

    r->head_rc = flight_wait_head(r->f, util_mono_ms() + 10000, &head, NULL);
    if (r->head_rc != 0)
        return NULL;
    r->whole = head.whole;
    if (flight_wait_end(r->f, util_mono_ms() + 10000) != FLIGHT_OK ||
        (p = flight_done_body(r->f, &r->len)) == NULL)
        return NULL;
    r->ok = 1;
    for (i = 0; i < r->len; i++)
        r->ok &= p[i] == pattern(i);
    return NULL;
}

/*
 * Head and end published together (a tile held until whole): every
 * reader waiting for the head gets the whole body and an OK end.
 */
static void
test_end_whole(void **state)
{
    struct flights *reg = flights_new();
    struct whole_reader readers[READERS];
    static unsigned char body[40000];
    struct flight_head head;
    struct flight_result res;
    pthread_t rt[READERS];
    struct flight *f;
    int leader, i;

    (void)state;
    for (i = 0; i < (int)sizeof(body); i++)
        body[i] = pattern((size_t)i);
    f = flight_join(reg, "w", 1, &leader);
    for (i = 0; i < READERS; i++) {
        memset(&readers[i], 0, sizeof(readers[i]));
        readers[i].f = f;
        assert_int_equal(
            pthread_create(&rt[i], NULL, read_whole, &readers[i]), 0);
    }
    assert_int_equal(flight_append(f, body, sizeof(body)), 0);
    memset(&head, 0, sizeof(head));
    head.status = 200;
    head.content_length = sizeof(body);
    head.whole = 1;
    memset(&res, 0, sizeof(res));
    flight_end_whole(f, &head, &res);
    for (i = 0; i < READERS; i++) {
        pthread_join(rt[i], NULL);
        assert_int_equal(readers[i].head_rc, 0);
        assert_int_equal(readers[i].whole, 1);
        assert_int_equal(readers[i].ok, 1);
        assert_int_equal(readers[i].len, sizeof(body));
    }
    flight_retire(reg, f);
    flight_release(reg, f);
    flights_free(reg);
}

/*
 * An attempt that failed before its head was published leaves nothing: the
 * next one's body replaces it. After the head, the body stays.
 */
static void
test_discard_body(void **state)
{
    struct flights *reg = flights_new();
    static unsigned char big[FLIGHT_BLOCK_SIZE + 100];
    struct flight_head head;
    struct flight_result res;
    const unsigned char *p;
    struct flight *f;
    int leader;
    size_t len;

    (void)state;
    memset(&head, 0, sizeof(head));
    head.status = 200;
    head.whole = 1;
    memset(&res, 0, sizeof(res));
    memset(big, 'x', sizeof(big));
    f = flight_join(reg, "r", 1, &leader);
    /* The first attempt: more than a block, then it stalled. */
    assert_int_equal(flight_append(f, big, sizeof(big)), 0);
    assert_int_equal(flight_body_len(f), sizeof(big));
    flight_discard_body(f);
    assert_int_equal(flight_body_len(f), 0);
    flight_discard_body(f); /* nothing to drop: harmless */
    /* The retry: the whole tile, head and end at once. */
    assert_int_equal(flight_append(f, "tile", 4), 0);
    flight_end_whole(f, &head, &res);
    flight_discard_body(f);             /* published: kept */
    flight_end(f, FLIGHT_FAILED, &res); /* ended once: no effect */
    memset(&head, 0, sizeof(head));
    assert_int_equal(flight_wait_head(f, util_mono_ms(), &head, NULL), 0);
    assert_int_equal(head.status, 200);
    assert_int_equal(head.whole, 1);
    assert_int_equal(flight_wait_end(f, util_mono_ms()), FLIGHT_OK);
    p = flight_done_body(f, &len);
    assert_non_null(p);
    assert_int_equal(len, 4);
    assert_memory_equal(p, "tile", 4);
    flight_retire(reg, f);
    flight_release(reg, f);
    flights_free(reg);
}

static void
test_done_body(void **state)
{
    struct flights *reg = flights_new();
    struct flight *f;
    struct flight_head head;
    struct flight_result res;
    static unsigned char big[FLIGHT_BLOCK_SIZE + 1];
    const unsigned char *p;
    int leader;
    size_t len = 99;

    (void)state;
    memset(&head, 0, sizeof(head));
    head.status = 200;
    memset(&res, 0, sizeof(res));
    f = flight_join(reg, "d", 1, &leader);
    flight_set_head(f, &head);
    assert_int_equal(flight_append(f, "tile", 4), 0);
    assert_null(flight_done_body(f, &len));
    assert_int_equal(len, 0);
    /* Still running at the deadline: says so instead of waiting on. */
    assert_int_equal(flight_wait_end(f, util_mono_ms() + 20), FLIGHT_RUNNING);
    assert_int_equal(flight_append(f, "-end", 4), 0);
    flight_end(f, FLIGHT_OK, &res);
    assert_int_equal(flight_wait_end(f, util_mono_ms() + 20), FLIGHT_OK);
    p = flight_done_body(f, &len);
    assert_non_null(p);
    assert_int_equal(len, 8);
    assert_memory_equal(p, "tile-end", 8);
    flight_retire(reg, f);
    flight_release(reg, f);

    /* Cut off: no whole body. */
    f = flight_join(reg, "d", 1, &leader);
    flight_set_head(f, &head);
    assert_int_equal(flight_append(f, "ti", 2), 0);
    flight_end(f, FLIGHT_FAILED, &res);
    assert_null(flight_done_body(f, &len));
    flight_retire(reg, f);
    flight_release(reg, f);

    /* Larger than a block: the reader streams it instead. */
    f = flight_join(reg, "d", 1, &leader);
    flight_set_head(f, &head);
    memset(big, 'b', sizeof(big));
    assert_int_equal(flight_append(f, big, sizeof(big)), 0);
    flight_end(f, FLIGHT_OK, &res);
    assert_null(flight_done_body(f, &len));
    p = flight_read(f, FLIGHT_BLOCK_SIZE - 1, &len, &(enum flight_end){0});
    assert_int_equal(len, 1);
    assert_int_equal(p[0], 'b');
    p = flight_read(f, FLIGHT_BLOCK_SIZE, &len, &(enum flight_end){0});
    assert_int_equal(len, 1);
    flight_retire(reg, f);
    flight_release(reg, f);

    /* Ended well with no body at all. */
    f = flight_join(reg, "d", 1, &leader);
    flight_set_head(f, &head);
    flight_end(f, FLIGHT_OK, &res);
    assert_non_null(flight_done_body(f, &len));
    assert_int_equal(len, 0);
    flight_retire(reg, f);
    flight_release(reg, f);
    flights_free(reg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readers_share_one_fetch),
        cmocka_unit_test(test_keys_are_distinct),
        cmocka_unit_test(test_failure_reaches_readers),
        cmocka_unit_test(test_join_running_never_leads),
        cmocka_unit_test(test_done_body),
        cmocka_unit_test(test_discard_body),
        cmocka_unit_test(test_end_whole),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
