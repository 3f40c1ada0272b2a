#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "flight.h"
#include "flightjobs.h"
#include "util.h"

struct record {
    pthread_mutex_t lock;
    int order[8];
    int n;
};

struct job {
    struct record *rec;
    int id;
};

static void
note(void *ctx, void *data)
{
    struct record *rec = ctx;
    struct job *j = data;

    pthread_mutex_lock(&rec->lock);
    rec->order[rec->n++] = j->id;
    pthread_mutex_unlock(&rec->lock);
}

static int
count(struct record *rec)
{
    int n;

    pthread_mutex_lock(&rec->lock);
    n = rec->n;
    pthread_mutex_unlock(&rec->lock);
    return n;
}

/* Wait (bounded) until n jobs ran. */
static int
wait_count(struct record *rec, int n)
{
    int64_t until = util_mono_ms() + 5000;

    while (count(rec) < n && util_mono_ms() < until) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    return count(rec);
}

/* Jobs run as their flights end, not in the order they were added. */
static void
test_jobs_run_as_flights_end(void **state)
{
    struct record rec = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};
    struct flights *reg = flights_new();
    struct flight_jobs *fj = flight_jobs_start(note, &rec);
    struct flight *a, *b, *c;
    struct job ja = {&rec, 1}, jb = {&rec, 2}, jc = {&rec, 3};
    int leader;

    (void)state;
    assert_non_null(fj);
    a = flight_join(reg, "a", 1, &leader);
    b = flight_join(reg, "b", 1, &leader);
    c = flight_join(reg, "c", 1, &leader);
    flight_end(c, FLIGHT_OK, NULL); /* ended before it was added */
    assert_int_equal(flight_jobs_add(fj, a, &ja), 0);
    assert_int_equal(flight_jobs_add(fj, b, &jb), 0);
    assert_int_equal(flight_jobs_add(fj, c, &jc), 0);
    assert_int_equal(wait_count(&rec, 1), 1);
    assert_int_equal(rec.order[0], 3);
    flight_end(b, FLIGHT_FAILED, NULL);
    assert_int_equal(wait_count(&rec, 2), 2);
    assert_int_equal(rec.order[1], 2);
    assert_int_equal(count(&rec), 2); /* a is still running */

    /* Stopping waits for a, within its deadline; it is not there yet. */
    assert_int_equal(flight_jobs_stop(fj, util_mono_ms() + 50), 0);
    assert_int_equal(flight_jobs_add(fj, a, &ja), -1); /* stopping */
    flight_end(a, FLIGHT_OK, NULL);
    assert_int_equal(flight_jobs_stop(fj, util_mono_ms() + 5000), 1);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.order[2], 1);
    flight_jobs_free(fj);
    flight_release(reg, a);
    flight_release(reg, b);
    flight_release(reg, c);
    flights_free(reg);
}

/* Many flights ending from another thread: every job runs once. */
struct ender {
    struct flight **f;
    int n;
};

static void *
end_all(void *arg)
{
    struct ender *e = arg;
    int i;

    for (i = e->n - 1; i >= 0; i--)
        flight_end(e->f[i], FLIGHT_OK, NULL);
    return NULL;
}

static void
count_job(void *ctx, void *data)
{
    (void)data;
    __atomic_fetch_add((int *)ctx, 1, __ATOMIC_RELAXED);
}

static void
test_many_jobs(void **state)
{
    struct flights *reg = flights_new();
    struct flight *f[200];
    struct ender e = {f, 200};
    int ran = 0, i, leader;
    struct flight_jobs *fj = flight_jobs_start(count_job, &ran);
    pthread_t t;
    char key[16];

    (void)state;
    for (i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        f[i] = flight_join(reg, key, strlen(key), &leader);
    }
    pthread_create(&t, NULL, end_all, &e);
    for (i = 0; i < 200; i++)
        assert_int_equal(flight_jobs_add(fj, f[i], NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(flight_jobs_stop(fj, util_mono_ms() + 5000), 1);
    assert_int_equal(ran, 200);
    flight_jobs_free(fj);
    for (i = 0; i < 200; i++)
        flight_release(reg, f[i]);
    flights_free(reg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_run_as_flights_end),
        cmocka_unit_test(test_many_jobs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
