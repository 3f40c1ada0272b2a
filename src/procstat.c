#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "procstat.h"

/* Fields of /proc/PID/stat (proc(5)), counted from 1. */
#define STAT_UTIME 14
#define STAT_STIME 15
#define STAT_STARTTIME 22
#define STAT_VSIZE 23
#define STAT_RSS 24

/* Digits only, up to the next space or the end: 0, or -1. */
static int
parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (len == 0)
        return -1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int
procstat_parse_stat(const char *line, long ticks_per_s, long page_bytes,
    struct procstat *ps, double *start_after_boot_s)
{
    uint64_t utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
    const char *p = strrchr(line, ')');
    int field = 3, found = 0;

    /* The name may hold ") ": the fields start after the last ')'. */
    if (p == NULL || p[1] != ' ' || ticks_per_s <= 0 || page_bytes <= 0)
        return -1;
    p += 2;
    while (*p != '\0' && *p != '\n' && field <= STAT_RSS) {
        size_t len = strcspn(p, " \n");
        uint64_t *dst = NULL;

        switch (field) {
        case STAT_UTIME: dst = &utime; break;
        case STAT_STIME: dst = &stime; break;
        case STAT_STARTTIME: dst = &start; break;
        case STAT_VSIZE: dst = &vsize; break;
        case STAT_RSS: dst = &rss; break;
        default: break;
        }
        if (dst != NULL) {
            if (parse_u64(p, len, dst) != 0)
                return -1;
            found++;
        }
        p += len;
        if (*p == ' ')
            p++;
        field++;
    }
    if (found != 5)
        return -1;
    ps->cpu_seconds = (double)(utime + stime) / (double)ticks_per_s;
    ps->virtual_bytes = vsize;
    ps->resident_bytes = rss * (uint64_t)page_bytes;
    ps->have_stat = 1;
    if (start_after_boot_s != NULL)
        *start_after_boot_s = (double)start / (double)ticks_per_s;
    return 0;
}

double
procstat_parse_cpu_max(const char *line)
{
    uint64_t quota, period;
    size_t len = strcspn(line, " \n");

    if (parse_u64(line, len, &quota) != 0 || line[len] != ' ')
        return 0; /* "max": no quota */
    line += len + 1;
    len = strcspn(line, " \n");
    if (parse_u64(line, len, &period) != 0 || period == 0)
        return 0;
    return (double)quota / (double)period;
}

/* A small file read whole into buf (NUL-terminated): 0, or -1. */
static int
read_small(const char *path, char *buf, size_t size)
{
    ssize_t n;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    while (got < size - 1 && (n = read(fd, buf + got, size - 1 - got)) > 0)
        got += (size_t)n;
    close(fd);
    buf[got] = '\0';
    return got > 0 ? 0 : -1;
}

/* Descriptors open now, the one that reads the directory left out. */
static long
count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

/* The quota of our own cgroup (v2), in CPUs; 0 when none is known. */
static double
cgroup_cpus(void)
{
    char line[512], path[640];
    char *p, *nl;

    if (read_small("/proc/self/cgroup", line, sizeof(line)) != 0)
        return 0;
    /* cgroup v2: the line "0::/path". */
    if (strncmp(line, "0::", 3) == 0)
        p = line + 3;
    else if ((p = strstr(line, "\n0::")) != NULL)
        p += 4;
    else
        return 0;
    if ((nl = strchr(p, '\n')) != NULL)
        *nl = '\0';
    if (strcmp(p, "/") == 0)
        p = "";
    if (snprintf(path, sizeof(path), "/sys/fs/cgroup%s/cpu.max", p) >=
            (int)sizeof(path) ||
        read_small(path, line, sizeof(line)) != 0)
        return 0;
    return procstat_parse_cpu_max(line);
}

static double
available_cpus(void)
{
    cpu_set_t set;
    double n = 0, quota;

    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = (double)CPU_COUNT(&set);
    if (n <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);

        n = online > 0 ? (double)online : 0;
    }
    quota = cgroup_cpus();
    if (quota > 0 && (n <= 0 || quota < n))
        n = quota;
    return n;
}

void
procstat_read(struct procstat *ps)
{
    char line[1024];
    struct rlimit rl;

    memset(ps, 0, sizeof(*ps));
    ps->open_fds = ps->max_fds = -1;
    if (read_small("/proc/self/stat", line, sizeof(line)) == 0)
        (void)procstat_parse_stat(
            line, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), ps, NULL);
    ps->open_fds = count_fds();
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        ps->max_fds = (long)rl.rlim_cur;
    ps->cpus = available_cpus();
}

double
procstat_start_time(void)
{
    struct procstat ps;
    struct timespec boot, wall;
    char line[1024];
    double after_boot;

    if (read_small("/proc/self/stat", line, sizeof(line)) != 0 ||
        procstat_parse_stat(line, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE),
            &ps, &after_boot) != 0 ||
        clock_gettime(CLOCK_BOOTTIME, &boot) != 0 ||
        clock_gettime(CLOCK_REALTIME, &wall) != 0)
        return 0;
    /* Now, less the time since the start (both after boot). */
    return (double)wall.tv_sec + (double)wall.tv_nsec / 1e9 -
        ((double)boot.tv_sec + (double)boot.tv_nsec / 1e9 - after_boot);
}
