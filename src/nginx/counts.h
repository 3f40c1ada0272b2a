#ifndef HEREPROXY_NGINX_COUNTS_H
#define HEREPROXY_NGINX_COUNTS_H

#include <stddef.h>

/*
 * NGINX's hits, counted where hereproxy counts its own requests, so that
 * the per-índice metrics equal what clients sent although NGINX's cache
 * layer answers some without asking hereproxy. One way per deployment,
 * read by one thread of its own, outside the request path:
 *
 *   NGINX_LOG_FILE   stock NGINX writes a JSON access line per request;
 *                    the thread follows the file like tail -F (nginxlog.h).
 *   NGINX_HITS_FILE  hereproxy's NGINX module (contrib/nginx-module) adds
 *                    up its hits in a shared file; the thread reads what
 *                    grew (nginxhits.h), no log line per hit.
 *
 * Both step every 100 ms (the log file at once again while lines wait).
 */

struct metrics;
struct settings;
struct nginx_counts;

/*
 * Start counting as cfg says into m (which outlives it). NULL with err
 * set on failure, NULL with err "" when neither setting is set.
 */
struct nginx_counts *nginx_counts_start(
    const struct settings *cfg, struct metrics *m, char *err, size_t errlen);

/* Count a last time, stop the thread, free. NULL does nothing. */
void nginx_counts_stop(struct nginx_counts *nc);

#endif
