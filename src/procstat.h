#ifndef HEREPROXY_PROCSTAT_H
#define HEREPROXY_PROCSTAT_H

#include <stdint.h>

/*
 * What the process uses, for the process_* metrics of the Prometheus
 * client conventions: CPU time, memory and start time from
 * /proc/self/stat, open descriptors from /proc/self/fd and their limit
 * from getrlimit(RLIMIT_NOFILE); and the CPUs it may use (its affinity,
 * lowered by a cgroup v2 CPU quota), against which its CPU time is
 * judged. Read at scrape time: a few small reads, no state kept.
 * Linux only; what cannot be read (no /proc, a sandbox) is left unknown
 * and its metric out of the scrape.
 */

struct procstat {
    int have_stat;           /* the next three were read */
    double cpu_seconds;      /* user + system, all threads */
    uint64_t resident_bytes; /* resident set size */
    uint64_t virtual_bytes;  /* virtual memory size */
    long open_fds;           /* -1: unknown */
    long max_fds;            /* soft RLIMIT_NOFILE; -1: unknown, unlimited */
    double cpus;             /* CPUs it may use; 0: unknown */
};

/* Fill ps with what can be read now. */
void procstat_read(struct procstat *ps);

/*
 * The Unix time (seconds) the process started, from its start in
 * /proc/self/stat (clock ticks after boot) and the clocks; 0 when it
 * cannot be read. Computed once by the caller at startup: the value
 * must not move between scrapes, or changes() would see restarts.
 */
double procstat_start_time(void);

/*
 * The fields of a /proc/PID/stat line: CPU time (utime + stime), virtual
 * and resident size, and start time in seconds after boot. The command
 * name in parentheses may hold spaces and parentheses. ticks_per_s is
 * sysconf(_SC_CLK_TCK), page_bytes the page size. 0, or -1 when the line
 * does not parse. Pure.
 */
int procstat_parse_stat(const char *line, long ticks_per_s, long page_bytes,
    struct procstat *ps, double *start_after_boot_s);

/*
 * The CPUs a cgroup v2 cpu.max line allows ("150000 100000" -> 1.5);
 * 0 for "max" (no quota) or a line that does not parse. Pure.
 */
double procstat_parse_cpu_max(const char *line);

#endif
