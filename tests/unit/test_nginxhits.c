#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "nginx/counts.h"
#include "nginx/nginxhits.h"
#include "nginx/nginxhits_format.h"
#include "settings.h"
#include "tmpdir_fixture.h"

/*
 * The file is written here the way contrib/nginx-module writes it: a
 * header, slot 0 "_other", then one slot per name, counters added to.
 */

struct fx {
    struct tmpdir_fx t;
    struct nginxhits *nh;
    struct nginxhits_header *h; /* the writer's mapping */
    size_t size;
};

static struct nginxhits_slot *
slot(struct nginxhits_header *h, uint32_t i)
{
    return (struct nginxhits_slot *)(h + 1) + i;
}

/*
 * Size path for nslots slots and map it (x->h, the writer's side):
 * afresh (a new inode), or with in_place the file there now, keeping what
 * it holds. A file without a header gets one.
 */
static void
open_map(struct fx *x, uint32_t nslots, int in_place)
{
    int fd;

    if (x->h != NULL)
        munmap(x->h, x->size);
    x->h = NULL;
    if (!in_place)
        unlink(x->t.path);
    x->size = NGINXHITS_FILE_SIZE(nslots);
    fd = open(x->t.path, O_RDWR | O_CREAT | (in_place ? 0 : O_EXCL), 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)x->size), 0);
    x->h = mmap(NULL, x->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(x->h != MAP_FAILED);
    if (memcmp(x->h->magic, NGINXHITS_MAGIC, 8) == 0)
        return;
    strcpy(slot(x->h, 0)->name, NGINXHITS_OTHER);
    slot(x->h, 0)->len = strlen(NGINXHITS_OTHER);
    slot(x->h, 0)->ready = 1;
    x->h->version = NGINXHITS_VERSION;
    x->h->slot_size = sizeof(struct nginxhits_slot);
    x->h->nslots = nslots;
    x->h->used = 1;
    memcpy(x->h->magic, NGINXHITS_MAGIC, 8);
}

/* Create path afresh (a new inode) with nslots slots and map it. */
static void
create(struct fx *x, uint32_t nslots)
{
    open_map(x, nslots, 0);
}

/* A new slot for name (a name may have two: two workers raced). */
static struct nginxhits_slot *
take(struct fx *x, const char *name)
{
    struct nginxhits_slot *s = slot(x->h, x->h->used++);

    s->len = (uint32_t)strlen(name);
    memcpy(s->name, name, s->len + 1);
    s->ready = 1;
    return s;
}

/* One hit as the module counts it: status index st, class cl. */
static void
hit(struct nginxhits_slot *s, int kind, int st, int cl, uint64_t ms,
    uint64_t bytes)
{
    s->requests[kind][st]++;
    s->bytes += bytes;
    s->duration_ms_sum[kind] += ms;
    s->duration[kind][cl]++;
}

static int
fx_setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));

    if (x == NULL || tmpdir_fx_open(&x->t, "test_nginxhits", "hits") != 0) {
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

    nginxhits_free(x->nh);
    if (x->h != NULL)
        munmap(x->h, x->size);
    if (tmpdir_fx_close(&x->t) != 0)
        return -1;
    free(x);
    return 0;
}

/* The Prometheus text holds line (a whole sample line). */
static int
has(struct metrics *m, const char *line)
{
    char *text = metrics_render_prometheus(m, NULL, "test"), want[256];
    int found;

    assert_non_null(text);
    snprintf(want, sizeof(want), "\n%s\n", line);
    found = strstr(text, want) != NULL;
    free(text);
    return found;
}

/* hereproxy_request_duration_seconds_sum of a cache label. */
static double
sum_of(struct metrics *m, const char *cache)
{
    char *text = metrics_render_prometheus(m, NULL, "test"), key[128], *p;
    double v = -1;

    assert_non_null(text);
    snprintf(key, sizeof(key),
        "\nhereproxy_request_duration_seconds_sum{cache=\"%s\"} ", cache);
    if ((p = strstr(text, key)) != NULL)
        v = strtod(p + strlen(key), NULL);
    free(text);
    return v;
}

static void
test_counts_what_grew(void **state)
{
    struct fx *x = *state;
    struct nginxhits_slot *a, *old;

    create(x, 16);
    old = take(x, "old");
    hit(old, NGINXHITS_KIND_HIT, 0, 0, 0, 100);
    a = take(x, "A");
    hit(a, NGINXHITS_KIND_HIT, 0, 0, 0, 100);
    assert_non_null(x->nh = nginxhits_new(x->t.path, x->t.m));
    /* Counts from before it started are not its to count. */
    assert_int_equal(nginxhits_step(x->nh), 0);
    hit(a, NGINXHITS_KIND_HIT, 0, 0, 0, 1000);  /* 200, 0 ms */
    hit(a, NGINXHITS_KIND_HIT, 0, 1, 1, 1000);  /* 200, 1 ms */
    hit(a, NGINXHITS_KIND_HIT, 2, 0, 0, 0);     /* 304 */
    hit(a, NGINXHITS_KIND_STALE, 0, 3, 4, 500); /* stale, 4 ms */
    hit(a, NGINXHITS_KIND_HIT, NGINXHITS_NSTATUS - 1, NGINXHITS_NCLASS - 1,
        40000, 7); /* other, > 30 s */
    assert_int_equal(nginxhits_step(x->nh), 5);
    assert_int_equal(nginxhits_step(x->nh), 0);
    assert_true(has(x->t.m,
        "hereproxy_requests_total{indice=\"A\",cache=\"hit\",code=\"200\"} 2"));
    assert_true(has(x->t.m,
        "hereproxy_requests_total{indice=\"A\",cache=\"hit\",code=\"304\"} 1"));
    assert_true(has(x->t.m,
        "hereproxy_requests_total{indice=\"A\",cache=\"stale\",code=\"200\"} "
        "1"));
    assert_true(has(x->t.m,
        "hereproxy_requests_total{indice=\"A\",cache=\"hit\",code=\"other\"} "
        "1"));
    assert_true(
        has(x->t.m, "hereproxy_response_bytes_total{indice=\"A\"} 2507"));
    assert_false(has(x->t.m,
        "hereproxy_requests_total{indice=\"old\",cache=\"hit\",code=\"200\"} "
        "1"));
    /* Each class in its bucket; the sums exact (ms / 1000). */
    assert_true(has(x->t.m,
        "hereproxy_request_duration_seconds_bucket{cache=\"hit\",le=\"0.0001\"}"
        " 2"));
    assert_true(has(x->t.m,
        "hereproxy_request_duration_seconds_bucket{cache=\"hit\",le=\"0.001\"} "
        "3"));
    assert_true(has(x->t.m,
        "hereproxy_request_duration_seconds_bucket{cache=\"hit\",le=\"30\"} "
        "3"));
    assert_true(has(x->t.m,
        "hereproxy_request_duration_seconds_bucket{cache=\"hit\",le=\"+Inf\"} "
        "4"));
    assert_true(sum_of(x->t.m, "hit") > 40.001 - 1e-9 &&
        sum_of(x->t.m, "hit") < 40.001 + 1e-9);
    assert_true(has(x->t.m,
        "hereproxy_request_duration_seconds_bucket{cache=\"stale\",le=\"0."
        "0025\"} 0"));
    assert_true(has(x->t.m,
        "hereproxy_request_duration_seconds_bucket{cache=\"stale\",le=\"0."
        "005\"} 1"));
    assert_true(sum_of(x->t.m, "stale") > 0.004 - 1e-9 &&
        sum_of(x->t.m, "stale") < 0.004 + 1e-9);
}

static void
test_sum_waits_for_its_class(void **state)
{
    struct fx *x = *state;
    struct nginxhits_slot *a;

    create(x, 16);
    a = take(x, "A");
    assert_non_null(x->nh = nginxhits_new(x->t.path, x->t.m));
    assert_int_equal(nginxhits_step(x->nh), 0);
    /* Caught between the module's two adds: the sum, not yet the class. */
    a->requests[0][0]++;
    a->duration_ms_sum[0] += 7;
    assert_int_equal(nginxhits_step(x->nh), 1);
    a->duration[0][4]++;
    assert_int_equal(nginxhits_step(x->nh), 0);
    assert_true(has(x->t.m,
        "hereproxy_request_duration_seconds_bucket{cache=\"hit\",le=\"0.01\"} "
        "1"));
    assert_true(sum_of(x->t.m, "hit") > 0.007 - 1e-9 &&
        sum_of(x->t.m, "hit") < 0.007 + 1e-9);
}

static void
test_duplicates_add_up_and_other(void **state)
{
    struct fx *x = *state;
    struct nginxhits_slot *a1, *a2, *bad;

    create(x, 4);
    assert_non_null(x->nh = nginxhits_new(x->t.path, x->t.m));
    assert_int_equal(nginxhits_step(x->nh), 0);
    a1 = take(x, "A");
    a2 = take(x, "A");
    bad = take(x, "B");
    bad->len = NGINXHITS_NAME_MAX + 1; /* a slot no module writes */
    hit(a1, 0, 0, 0, 0, 10);
    hit(a2, 0, 0, 0, 0, 10);
    hit(bad, 0, 0, 0, 0, 10);
    hit(slot(x->h, 0), 0, 0, 0, 0, 10);
    x->h->used = 9; /* past nslots: the file is full */
    assert_int_equal(nginxhits_step(x->nh), 3);
    assert_true(has(x->t.m,
        "hereproxy_requests_total{indice=\"A\",cache=\"hit\",code=\"200\"} 2"));
    assert_true(has(x->t.m,
        "hereproxy_requests_total{indice=\"_other\",cache=\"hit\",code=\"200\"}"
        " 1"));
}

static void
test_missing_then_replaced(void **state)
{
    struct fx *x = *state;
    struct nginxhits_slot *a;

    assert_non_null(x->nh = nginxhits_new(x->t.path, x->t.m));
    assert_int_equal(nginxhits_step(x->nh), 0); /* no file yet */
    create(x, 8);
    a = take(x, "A");
    hit(a, 0, 0, 0, 0, 1);
    hit(a, 0, 0, 0, 0, 1);
    /* A file that appears later is counted whole. */
    assert_int_equal(nginxhits_step(x->nh), 2);
    hit(a, 0, 0, 0, 0, 1);
    /* Replaced (NGINX recreated it): the old one's last hit, then the
     * new one's from zero. */
    {
        struct nginxhits_header *old = x->h;
        size_t size = x->size;
        char moved[160];

        snprintf(moved, sizeof(moved), "%s.old", x->t.path);
        assert_int_equal(rename(x->t.path, moved), 0);
        x->h = NULL;
        create(x, 8);
        a = take(x, "A");
        hit(a, 0, 0, 0, 0, 1);
        assert_int_equal(nginxhits_step(x->nh), 2);
        munmap(old, size);
    }
    assert_true(has(x->t.m,
        "hereproxy_requests_total{indice=\"A\",cache=\"hit\",code=\"200\"} 4"));
    /* Removed: nothing new, nothing lost. */
    unlink(x->t.path);
    assert_int_equal(nginxhits_step(x->nh), 0);
}

/*
 * Cut short in place under the reader (truncate(1), a copytruncate
 * rotation), then whole again, then replaced: the reader never faults
 * (a mapping of the file did: SIGBUS), and each time the file is whole
 * again its counts start from zero, as a file NGINX created anew.
 */
static void
test_cut_short_under_the_reader(void **state)
{
    struct fx *x = *state;
    struct nginxhits_slot *a;
    int i;

    create(x, 8);
    a = take(x, "A");
    hit(a, 0, 0, 0, 0, 1);
    assert_non_null(x->nh = nginxhits_new(x->t.path, x->t.m));
    assert_int_equal(nginxhits_step(x->nh), 0); /* the baseline */
    hit(a, 0, 0, 0, 0, 1);
    assert_int_equal(nginxhits_step(x->nh), 1);

    /* To nothing: the reader lets it go, and waits. */
    munmap(x->h, x->size);
    x->h = NULL;
    assert_int_equal(truncate(x->t.path, 0), 0);
    assert_int_equal(nginxhits_step(x->nh), 0);
    assert_int_equal(nginxhits_step(x->nh), 0);
    /* Whole again (the same inode), counted from zero. */
    open_map(x, 8, 1);
    a = take(x, "A");
    for (i = 0; i < 3; i++)
        hit(a, 0, 0, 0, 0, 1);
    assert_int_equal(nginxhits_step(x->nh), 3);
    hit(a, 0, 0, 0, 0, 1);
    assert_int_equal(nginxhits_step(x->nh), 1);

    /* Shorter than its header says, slots cut off: let go. */
    munmap(x->h, x->size);
    x->h = NULL;
    assert_int_equal(truncate(x->t.path, (off_t)NGINXHITS_FILE_SIZE(1)), 0);
    assert_int_equal(nginxhits_step(x->nh), 0);
    /* Whole again: slot A came back empty, counted from zero. */
    open_map(x, 8, 1);
    a = take(x, "A");
    hit(a, 0, 0, 0, 0, 1);
    hit(a, 0, 0, 0, 0, 1);
    assert_int_equal(nginxhits_step(x->nh), 2);

    /* Replaced by a new file: counted whole. */
    create(x, 4);
    a = take(x, "A");
    hit(a, 0, 0, 0, 0, 1);
    assert_int_equal(nginxhits_step(x->nh), 1);
    assert_true(has(x->t.m,
        "hereproxy_requests_total{indice=\"A\",cache=\"hit\",code=\"200\"} 8"));
}

static void
test_not_a_counters_file(void **state)
{
    struct fx *x = *state;
    FILE *fp;
    struct nginxhits_slot *a;

    fp = fopen(x->t.path, "w");
    assert_non_null(fp);
    fputs("hello, not counters\n", fp);
    fclose(fp);
    assert_non_null(x->nh = nginxhits_new(x->t.path, x->t.m));
    assert_int_equal(nginxhits_step(x->nh), 0);
    /* A header that claims more slots than the file holds. */
    create(x, 8);
    x->h->nslots = 9;
    a = take(x, "A");
    hit(a, 0, 0, 0, 0, 1);
    assert_int_equal(nginxhits_step(x->nh), 0);
    x->h->nslots = 8;
    assert_int_equal(nginxhits_step(x->nh), 1);
}

/* NGINX_HITS_FILE as the process runs it: a thread of nginx/counts.h. */
static void
test_thread(void **state)
{
    struct fx *x = *state;
    struct nginx_counts *nc;
    struct settings cfg;
    char err[128];
    struct nginxhits_slot *a;

    create(x, 8);
    a = take(x, "A");
    assert_int_equal(settings_init(&cfg), 0);
    assert_int_equal(
        settings_set(&cfg, "NGINX_HITS_FILE", x->t.path, err, sizeof(err)), 0);
    nc = nginx_counts_start(&cfg, x->t.m, err, sizeof(err));
    assert_non_null(nc);
    usleep(250 * 1000);
    hit(a, 0, 0, 0, 0, 1);
    hit(a, 0, 0, 0, 0, 1);
    /* Stopping counts a last time. */
    nginx_counts_stop(nc);
    assert_true(has(x->t.m,
        "hereproxy_requests_total{indice=\"A\",cache=\"hit\",code=\"200\"} 2"));
    nginx_counts_stop(NULL);
    /* Neither file set: nothing to start, and no error. */
    assert_int_equal(
        settings_set(&cfg, "NGINX_HITS_FILE", "", err, sizeof(err)), 0);
    assert_null(nginx_counts_start(&cfg, x->t.m, err, sizeof(err)));
    assert_string_equal(err, "");
    settings_cleanup(&cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_counts_what_grew, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_sum_waits_for_its_class, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_duplicates_add_up_and_other, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_missing_then_replaced, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_cut_short_under_the_reader, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_not_a_counters_file, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_thread, fx_setup, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
