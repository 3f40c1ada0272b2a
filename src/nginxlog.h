#ifndef HEREPROXY_NGINXLOG_H
#define HEREPROXY_NGINXLOG_H

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

/*
 * NGINX's own cache answers requests that never reach hereproxy. So that
 * the per-indice metrics still count them, NGINX sends one JSON access
 * line per request over syslog to a Unix datagram socket
 * (NGINX_LOG_SOCKET); a thread reads it and counts the lines NGINX
 * answered itself (cache HIT, STALE, UPDATING). Lines for requests that
 * went on to hereproxy (MISS, EXPIRED, BYPASS, REVALIDATED, none) are
 * skipped: hereproxy counted them already.
 */

struct nginxlog;

struct nginxlog_entry {
    char indice[65];            /* "-" when absent or not a valid indice */
    enum metrics_cache cache;   /* METRICS_HIT or METRICS_STALE */
    int status;
    uint64_t bytes;
    double seconds;
};

/*
 * Parse one datagram: an optional syslog header, then
 * {"indice":"...","cache":"$upstream_cache_status","status":N,
 *  "bytes":N,"request_time":S}. Returns 1 when NGINX answered the request
 * from its cache (e filled), 0 for a line to skip, -1 when malformed.
 */
int nginxlog_parse(const char *buf, size_t len, struct nginxlog_entry *e);

/*
 * Bind path (a stale socket file is removed; mode 0666, the directory
 * guards access) and start the reading thread, counting into m. Returns
 * NULL with err set. nginxlog_stop(NULL) does nothing; it stops the
 * thread, closes and unlinks the socket, and frees.
 */
struct nginxlog *nginxlog_start(const char *path, struct metrics *m,
    char *err, size_t errlen);
void nginxlog_stop(struct nginxlog *nl);

#endif
