#ifndef HEREPROXY_NGINXLOG_H
#define HEREPROXY_NGINXLOG_H

#include <stddef.h>
#include <stdint.h>

#include "../metrics.h"

/*
 * NGINX's own cache answers requests that never reach hereproxy. So that
 * the per-indice metrics still count them, stock NGINX writes one JSON
 * access line per request to a log file that a thread follows
 * (NGINX_LOG_FILE, counts.h), counting the lines NGINX answered itself
 * (cache HIT, STALE, UPDATING). Lines for requests that
 * went on to hereproxy (MISS, EXPIRED, BYPASS, REVALIDATED, none) are
 * skipped: hereproxy counted them already.
 */

struct nginxlog_entry {
    char indice[65];          /* "-" when absent or not a valid indice */
    enum metrics_cache cache; /* METRICS_HIT or METRICS_STALE */
    int status;
    uint64_t bytes;
    double seconds;
};

/*
 * Parse one line: an optional syslog header, then
 * {"indice":"...","cache":"$upstream_cache_status","status":N,
 *  "bytes":N,"request_time":S}. Returns 1 when NGINX answered the request
 * from its cache (e filled), 0 for a line to skip, -1 when malformed.
 */
int nginxlog_parse(const char *buf, size_t len, struct nginxlog_entry *e);

/*
 * The NGINX_LOG_FILE follower, like tail -F: lines in the file when it
 * starts are not counted (it reads from the end); a file that does not
 * exist yet is read from its start once it appears (logged once). Each step
 * reads what was appended, counts complete lines into m, keeps a partial
 * last line for the next step and skips lines over 64 KiB whole. Rotation:
 * when the path names another file, the old one is read until idle for 2 s
 * (NGINX writes it until it reopens its logs), then the new one from its
 * start; when the file shrinks (copytruncate), it is read again from 0.
 * Returns NULL when out of memory; nginxlog_follow_free(NULL) does nothing.
 */
struct nginxlog_follow;
struct nginxlog_follow *nginxlog_follow_new(
    const char *path, struct metrics *m);

/*
 * One step at now_ms (a monotonic clock): the number of lines counted.
 * *more is 1 when it stopped with more to read (step again at once).
 */
long nginxlog_follow_step(struct nginxlog_follow *f, uint64_t now_ms);
int nginxlog_follow_more(const struct nginxlog_follow *f);
void nginxlog_follow_free(struct nginxlog_follow *f);

#endif
