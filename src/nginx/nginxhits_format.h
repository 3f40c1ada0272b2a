#ifndef HEREPROXY_NGINXHITS_FORMAT_H
#define HEREPROXY_NGINXHITS_FORMAT_H

/*
 * The counters file NGINX's hereproxy module (contrib/nginx-module) writes
 * and hereproxy reads (NGINX_HITS_FILE): the hits NGINX's cache answered,
 * per indice, in a file NGINX maps shared. NGINX workers add with atomic
 * instructions; hereproxy reads it (pread) every 100 ms and counts what
 * grew. This
 * header is the whole contract: both sides include it.
 *
 * Layout: a header, then nslots slots. Slot 0 is "_other": the counts of
 * indices that found the table full. A worker that meets an indice it has
 * not seen takes the next slot (atomic add on used), writes the name, then
 * sets ready (release); readers skip slots that are not ready. Two workers
 * may take a slot each for one name: readers add slots of one name up.
 * Counters only grow, while the file lives.
 */

#include <stdint.h>

#define NGINXHITS_MAGIC "HPXHITS1" /* 8 bytes, no NUL */
#define NGINXHITS_VERSION 1
#define NGINXHITS_DEFAULT_SLOTS 4096
#define NGINXHITS_MAX_SLOTS 100000
#define NGINXHITS_NAME_MAX 64    /* an indice: [A-Za-z0-9_.-]{1,64} */
#define NGINXHITS_OTHER "_other" /* slot 0 */

/* Who answered: NGINX's cache status HIT, or STALE and UPDATING. */
#define NGINXHITS_KIND_HIT 0
#define NGINXHITS_KIND_STALE 1
#define NGINXHITS_NKIND 2

/*
 * The statuses an answer from NGINX's cache has; any other is counted as
 * status 0 (hereproxy's code="other").
 */
#define NGINXHITS_STATUSES                                                     \
    {                                                                          \
        200, 206, 304, 412, 416, 499                                           \
    }
#define NGINXHITS_NSTATUS 7 /* the six, then the rest */

/*
 * Durations in whole milliseconds (what $request_time measures), counted
 * per class: class i holds the values up to NGINXHITS_MS_BOUNDS[i] (and
 * above the previous bound), the last class the rest. Every bound is one
 * of hereproxy's histogram bounds and none of those lies strictly between
 * two whole milliseconds of a class, so each class falls in one bucket.
 */
#define NGINXHITS_MS_BOUNDS                                                    \
    {                                                                          \
        0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000  \
    }
#define NGINXHITS_NCLASS 16 /* the 15 bounds, then the rest */

struct nginxhits_header {
    char magic[8];
    uint32_t version;
    uint32_t slot_size; /* sizeof(struct nginxhits_slot) */
    uint32_t nslots;
    uint32_t used; /* slots taken (atomic); may pass nslots */
    uint8_t pad[40];
};

struct nginxhits_slot {
    uint32_t ready; /* 1 once name is written (atomic) */
    uint32_t len;
    char name[NGINXHITS_NAME_MAX + 8]; /* NUL-terminated */
    uint64_t requests[NGINXHITS_NKIND][NGINXHITS_NSTATUS];
    uint64_t bytes; /* $body_bytes_sent */
    uint64_t duration_ms_sum[NGINXHITS_NKIND];
    uint64_t duration[NGINXHITS_NKIND][NGINXHITS_NCLASS];
    uint8_t pad[40]; /* to 512 bytes */
};

#define NGINXHITS_FILE_SIZE(nslots)                                            \
    (sizeof(struct nginxhits_header) +                                         \
        (uint64_t)(nslots) * sizeof(struct nginxhits_slot))

#endif
