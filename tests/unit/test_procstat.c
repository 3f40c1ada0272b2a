#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "procstat.h"

/* A /proc/PID/stat line of Linux 6 (52 fields), with the given name. */
static void
stat_line(char *buf, size_t size, const char *comm)
{
    snprintf(buf, size,
        "4242 (%s) S 1 4242 4242 0 -1 4194560 2816 0 0 0 "
        /* utime stime cutime cstime */
        "1234 566 7 8 "
        "20 0 67 0 "
        /* starttime vsize rss */
        "98765 1073741824 12800 "
        "18446744073709551615 1 1 0 0 0 0 0 4096 16386 0 0 0 17 1 0 0 0 0 "
        "0 0 0 0 0 0 0 0 0\n",
        comm);
}

static void
test_parse_stat(void **state)
{
    struct procstat ps;
    char line[512];
    double start = 0;

    (void)state;
    memset(&ps, 0, sizeof(ps));
    stat_line(line, sizeof(line), "hereproxy.fcgi");
    assert_int_equal(procstat_parse_stat(line, 100, 4096, &ps, &start), 0);
    assert_true(ps.have_stat);
    assert_true(fabs(ps.cpu_seconds - 18.0) < 1e-9); /* (1234 + 566) / 100 */
    assert_true(ps.virtual_bytes == 1073741824ULL);
    assert_true(ps.resident_bytes == 12800ULL * 4096);
    assert_true(fabs(start - 987.65) < 1e-9);

    /* The name may hold spaces and parentheses: the last ')' ends it. */
    memset(&ps, 0, sizeof(ps));
    stat_line(line, sizeof(line), "a) 9 9 (b c");
    assert_int_equal(procstat_parse_stat(line, 250, 16384, &ps, NULL), 0);
    assert_true(fabs(ps.cpu_seconds - 7.2) < 1e-9); /* 1800 / 250 */
    assert_true(ps.resident_bytes == 12800ULL * 16384);
}

static void
test_parse_stat_bad(void **state)
{
    struct procstat ps;
    char line[512];
    static const char *const bad[] = {
        "",
        "4242 hereproxy S 1",
        "4242 (x)S 1 2 3",
        "4242 (x) S 1 4242 4242 0 -1 4194560 2816 0 0 0 12x4 566 7 8",
        /* cut off before rss */
        "4242 (x) S 1 4242 4242 0 -1 4194560 2816 0 0 0 1234 566 7 8 20 0 "
        "67 0 98765 1073741824",
        /* a negative utime */
        "4242 (x) S 1 4242 4242 0 -1 4194560 2816 0 0 0 -1 566 7 8 20 0 67 "
        "0 98765 1073741824 12800 1",
        /* an overflowing rss */
        "4242 (x) S 1 4242 4242 0 -1 4194560 2816 0 0 0 1 566 7 8 20 0 67 "
        "0 98765 1073741824 184467440737095516150 1",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&ps, 0, sizeof(ps));
        assert_int_equal(procstat_parse_stat(bad[i], 100, 4096, &ps, NULL), -1);
        assert_false(ps.have_stat);
    }
    stat_line(line, sizeof(line), "x");
    assert_int_equal(procstat_parse_stat(line, 0, 4096, &ps, NULL), -1);
    assert_int_equal(procstat_parse_stat(line, 100, 0, &ps, NULL), -1);
}

static void
test_parse_cpu_max(void **state)
{
    (void)state;
    assert_true(fabs(procstat_parse_cpu_max("150000 100000\n") - 1.5) < 1e-9);
    assert_true(fabs(procstat_parse_cpu_max("50000 100000") - 0.5) < 1e-9);
    assert_true(procstat_parse_cpu_max("max 100000\n") == 0);
    assert_true(procstat_parse_cpu_max("100000 0\n") == 0);
    assert_true(procstat_parse_cpu_max("100000\n") == 0);
    assert_true(procstat_parse_cpu_max("") == 0);
    assert_true(procstat_parse_cpu_max("-5 100000") == 0);
}

/* This very process: what the scrape of the proxy will show. */
static void
test_read_self(void **state)
{
    struct procstat a, b;
    struct rlimit rl;
    int fds[8];
    size_t i;
    double start, now = (double)time(NULL);
    volatile double spin = 0;
    clock_t c0;

    (void)state;
    procstat_read(&a);
    assert_true(a.have_stat);
    assert_true(a.resident_bytes > 0);
    assert_true(a.virtual_bytes >= a.resident_bytes);
    assert_true(a.cpus >= 0.01);
    assert_true(a.open_fds >= 3); /* stdin, stdout, stderr at least */
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur == RLIM_INFINITY)
        assert_int_equal(a.max_fds, -1);
    else
        assert_int_equal(a.max_fds, (long)rl.rlim_cur);

    for (i = 0; i < 8; i++)
        assert_true((fds[i] = open("/dev/null", O_RDONLY)) >= 0);
    /* Some CPU time, so that the count moves (10 ms ticks). */
    c0 = clock();
    while (clock() - c0 < CLOCKS_PER_SEC / 20)
        spin += 1;
    procstat_read(&b);
    assert_int_equal(b.open_fds, a.open_fds + 8);
    assert_true(b.cpu_seconds > a.cpu_seconds);
    for (i = 0; i < 8; i++)
        close(fds[i]);

    /* Started within the last minute (and not in the future). */
    start = procstat_start_time();
    assert_true(start > now - 60 && start <= now + 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat),
        cmocka_unit_test(test_parse_stat_bad),
        cmocka_unit_test(test_parse_cpu_max),
        cmocka_unit_test(test_read_self),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
