#ifndef HEREPROXY_NGINXHITS_H
#define HEREPROXY_NGINXHITS_H

#include <stdint.h>

#include "../metrics.h"

/*
 * NGINX_HITS_FILE: the counters NGINX's hereproxy module keeps of the
 * requests its cache answered (layout: nginxhits_format.h), read so that
 * they count in the per-indice metrics like the NGINX_LOG_FILE lines do,
 * without a log line per hit. Each step adds what grew since the last
 * one. Counts in the file when hereproxy starts are not counted; a file
 * that appears later, or replaces the one read (another inode: NGINX
 * recreated it), is counted from zero. The file is read with pread, not
 * mapped: one cut short (truncated) or rewritten with another header
 * under the reader is let go, and counted from zero once it is whole
 * again. A missing or not yet valid file is waited for (logged once).
 */

struct nginxhits;

/* Returns NULL when out of memory; nginxhits_free(NULL) does nothing. */
struct nginxhits *nginxhits_new(const char *path, struct metrics *m);

/* One look: the number of requests counted. */
uint64_t nginxhits_step(struct nginxhits *nh);
void nginxhits_free(struct nginxhits *nh);

#endif
