#ifndef HEREPROXY_HANDLER_H
#define HEREPROXY_HANDLER_H

#include <stdatomic.h>
#include <stddef.h>

#include "acl.h"
#include "breaker.h"
#include "cache.h"
#include "entry.h"
#include "flight.h"
#include "admit.h"
#include "metrics.h"
#include "request.h"
#include "settings.h"
#include "upstream.h"

/*
 * One request, start to end: parse, answer from cache or from a flight
 * (one upstream fetch shared by every concurrent request for the key),
 * write the response, log one line. Shared state is owned by the cache,
 * flight, upstream and breaker modules, so any number of workers may call
 * it at once.
 */

struct FCGX_Stream;
struct fcgi_conn;

struct flight_jobs;

struct handler {
    const struct settings *cfg;   /* atomic: swapped by a reload */
    struct cache *cache;
    struct upstream *upstream;
    struct flights *flights;
    struct admit *limits;
    struct breaker breaker;
    struct request_policy policy;
    struct metrics *metrics;      /* NULL: nothing recorded */
    struct flight_jobs *revalidations;  /* NULL: workers finish their own */
    struct acl *metrics_acl;      /* METRICS_ALLOW; NULL admits nobody */
    _Atomic long threads_busy;    /* workers between accept and finish */
    double start_time;            /* Unix seconds, for uptime */
};

/*
 * Work left after the response went out: revalidating a stale entry. The
 * worker asks HERE after finishing the FastCGI request, so the client does
 * not wait, and hands the rest (storing the answer) to h->revalidations,
 * so the next request on its connection does not wait either.
 */
struct handler_later {
    struct flight *flight;        /* NULL: nothing to do */
    struct entry *stale;
    long meta_ttl;                /* >= 0 for metadata: its fixed TTL */
    size_t key_len;
    char key[REQUEST_KEY_MAX];
    char indice[REQUEST_INDICE_MAX + 1];  /* its metrics; whose quota it spends */
    char plan[REQUEST_PLAN_MAX + 1];      /* its plan class (request.h) */
};

/*
 * envp: the request's FastCGI parameters. Returns 0, or -1 when the
 * response was cut off part way (the caller must then drop the connection
 * so the client sees it was incomplete).
 */
int handler_serve(struct handler *h, char *const *envp,
    struct FCGX_Stream *out, const struct fcgi_conn *conn,
    struct handler_later *later);

void handler_finish_later(struct handler *h, struct handler_later *later);

/* h->revalidations' job function: ctx is the handler, job a handler_later. */
void handler_revalidation_done(void *ctx, void *job);

#endif
