#ifndef HEREPROXY_HANDLER_H
#define HEREPROXY_HANDLER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "request.h"
#include "settings.h"
#include "tile.h"

/*
 * One request, start to end: route it, admit it, answer it from the tile
 * flow (tile.h) or an operators' endpoint (admin.h), write the answer,
 * log one line. Shared state is owned by the modules it names, so any
 * number of workers may call it at once.
 */

struct acl;
struct admit;
struct cache;
struct fcgi_out;
struct flight_jobs;
struct hereauth;
struct metrics;
struct upstream;

/* What every request may use: built at start, swapped settings aside. */
struct handler {
    const struct settings *cfg; /* atomic: swapped by a reload */
    struct cache *cache;
    struct upstream *upstream;
    struct hereauth *auth; /* the key or token HERE gets */
    struct flights *flights;
    struct admit *limits;
    struct breaker breaker;
    struct request_policy policy;
    struct metrics *metrics;           /* NULL: nothing recorded */
    struct flight_jobs *revalidations; /* NULL: tile_done waits for them */
    struct tile_flow tiles;            /* over the members above */
    struct acl *metrics_acl;           /* METRICS_ALLOW; NULL admits nobody */
    _Atomic long threads_busy;         /* workers between accept and finish */
    double start_time;                 /* Unix seconds, for uptime */
    /*
     * Workers waiting in accept(), and waiting on a kept-alive connection
     * for its next request; such connections closed so that a waiting
     * connection got a worker (HEREPROXY_IDLE_RELEASE_MS).
     */
    _Atomic long threads_accepting;
    _Atomic long threads_idle_conn;
    _Atomic uint64_t idle_conns_closed;
};

/* The settings now in force (a reload swaps the pointer: see main.c). */
const struct settings *handler_cfg(const struct handler *h);

/*
 * The request policy under cfg: h->policy with cfg's styles (HERE_STYLES
 * is reloadable, so a request takes them from its own snapshot). out
 * points into cfg.
 */
void handler_policy(const struct handler *h, const struct settings *cfg,
    struct request_policy *out);

/* Set up h->tiles over the cache, upstream and the rest of h. */
void handler_init_tiles(struct handler *h);

/*
 * Serve one request given its parameters, writing to out (which is ended,
 * or failed: then the connection is done). Returns 0, or -1 when the
 * response was cut off part way and the web server was told so.
 */
int handler_serve(
    struct handler *h, const struct request_params *rp, struct fcgi_out *out);

#endif
