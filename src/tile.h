#ifndef HEREPROXY_TILE_H
#define HEREPROXY_TILE_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "flight.h"
#include "labels.h"
#include "request.h"
#include "settings.h"
#include "upstream.h"

/*
 * The tile flow, for tiles and HERE's metadata documents, start to end in
 * one place (as MapCache's mapcache_core_get_tile): look in the cache
 * (fresh, or stale to be revalidated), else follow the fetch already
 * running for the key, or lead one (a memcached lock shares it across
 * instances; the circuit breaker, cache-only mode and the quotas may
 * refuse it), and store what HERE sent. tile_get returns an answer, a
 * value the FastCGI side writes without knowing where it came from;
 * tile_done then finishes what the request started (the leader's store
 * and lock, a revalidation). TTL policy lives here and nowhere else.
 *
 * The cache and HERE are reached through the two interfaces below, so
 * that tests drive the flow with fakes (no sockets, no threads of their
 * own).
 */

struct breaker;
struct admit;
struct metrics;
struct flight_jobs;

/* Where tiles are kept: the two tiers of cache.h, or a test's fake. */
struct tile_store {
    void *ctx;
    /* The in-process tier's entry (fresh or stale), referenced, or NULL. */
    struct entry *(*get_memory)(
        void *ctx, const char *key, size_t keylen, int64_t now);
    /* The rest of the lookup given the memory tier's entry (taken over). */
    struct entry *(*get_rest)(void *ctx, const char *key, size_t keylen,
        int64_t now, struct entry *memory);
    /* A fresh entry another instance stored in the shared tier, or NULL. */
    struct entry *(*get_shared)(
        void *ctx, const char *key, size_t keylen, int64_t now);
    /* 1 when there is a shared tier (and so a lock across instances). */
    int (*shared)(void *ctx);
    /* 1: this instance fetches; 0: another holds the lock (wait for it). */
    int (*lock)(void *ctx, const char *key, size_t keylen, long ttl_s);
    void (*unlock)(void *ctx, const char *key, size_t keylen);
    void (*put)(void *ctx, const char *key, size_t keylen, struct entry *e,
        int64_t now);
};

/* Who asks HERE: the upstream engine (upstream.h), or a test's fake. */
struct tile_fetcher {
    void *ctx;
    /* Fill flight f from HERE (see upstream_submit). */
    int (*submit)(void *ctx, struct flight *f, const char *path_and_query,
        int has_query, const char *if_none_match, enum upstream_expect expect);
};

struct tile_flow {
    struct tile_store store;
    struct tile_fetcher fetcher;
    struct flights *flights;
    struct breaker *breaker;
    struct admit *limits;              /* quotas, cache-only; NULL: none */
    struct metrics *metrics;           /* NULL: nothing counted */
    struct flight_jobs *revalidations; /* NULL: tile_done waits for them */
};

struct cache;
struct upstream;

/* The real store and fetcher. */
void tile_store_cache(struct tile_store *s, struct cache *c);
void tile_fetcher_upstream(struct tile_fetcher *f, struct upstream *up);

enum tile_body {
    TILE_ENTRY,  /* a cached entry: data and len point into it */
    TILE_WHOLE,  /* a fetch that has all arrived: data and len */
    TILE_STREAM, /* a fetch still arriving: read it with tile_stream */
    TILE_ERROR   /* nothing to serve: error, message, detail */
};

struct tile_answer {
    enum tile_body body;
    enum cache_status cache;  /* HIT, STALE, MISS or COALESCED */
    int status;               /* 200, a cached 404, or the error's */
    long max_age_s;           /* freshness left, for Cache-Control */
    const char *content_type; /* into the entry or head */
    const char *etag;         /* "" for none */
    int64_t content_length;   /* TILE_STREAM: -1 when unknown */
    const void *data;
    size_t len;
    enum error_kind error; /* TILE_ERROR; also a cached 404 */
    long retry_after_s;    /* TILE_ERROR: when > 0 */
    char message[160];     /* TILE_ERROR: for the client */
    char detail[256];      /* TILE_ERROR: for the log only */
    int waited;            /* it came from a flight */
    /* The exchange with HERE this request led (attempts 0: none). */
    struct flight_result upstream;
    char correlation_id[96];
    /* Held until tile_done. */
    struct entry *entry;
    struct flight *flight;
    struct flight_head head;
    size_t stream_off;
    struct flight_result cut; /* a TILE_STREAM cut off: why */
    int leader, locked, shared_hit;
    struct flight *revalidation; /* a stale entry's, led by this one */
};

/*
 * Answer req (a ROUTE_TILE or ROUTE_META request) under cfg. Always
 * fills *a; call tile_done(a) after writing it, whatever it is.
 */
void tile_get(struct tile_flow *t, const struct settings *cfg,
    const struct tile_req *req, struct tile_answer *a);

/*
 * A TILE_STREAM's next bytes (waiting for them): a pointer valid until
 * tile_done, *len 0 at the end; then *cut is 1 when HERE's body was cut
 * off (the client must see it incomplete), and a->cut says how the fetch
 * ended (its outcome: stalled, broken, timeout, ...).
 */
const void *tile_stream(struct tile_answer *a, size_t *len, int *cut);

/*
 * After the answer went out: the leader stores what HERE sent, lets the
 * lock and the flight go; a stale entry's revalidation is started (and
 * finished on t->revalidations). Releases everything the answer held.
 */
void tile_done(struct tile_flow *t, const struct settings *cfg,
    const struct tile_req *req, struct tile_answer *a);

/*
 * A document the proxy writes itself from one of HERE's metadata documents
 * (the capabilities of caps.h, from HERE's copyright): kept in the cache
 * under key as metadata is (CACHE_META_TTL), or written anew for every
 * request when key is NULL.
 */
struct tile_doc {
    const struct tile_req *source; /* HERE's document (a ROUTE_META one) */
    const char *key;               /* NULL: kept nowhere */
    size_t key_len;
    const char *content_type;
    /*
     * The document (malloc'd, *len bytes; NULL: out of memory) from
     * HERE's (src, NUL-terminated), or without it (src NULL) when HERE's
     * could not be had.
     */
    char *(*render)(void *ctx, const char *src, size_t src_len, size_t *len);
    void *ctx;
};

/*
 * Answer doc: a TILE_ENTRY, from the cache (HIT) or written now; then its
 * cache status is that of HERE's document (HIT: HERE was not asked) and
 * a->upstream the exchange with HERE this request led, if any. Written
 * without HERE's document, it is kept nowhere, is fresh for at most
 * CACHE_NEGATIVE_TTL, and a->detail says why (for the log). TILE_ERROR
 * only when memory ran out. Call tile_done(a) after writing it.
 */
void tile_get_doc(struct tile_flow *t, const struct settings *cfg,
    const struct tile_doc *doc, struct tile_answer *a);

/*
 * Seconds a response stays fresh: a 404 CACHE_NEGATIVE_TTL, metadata
 * CACHE_META_TTL, a tile HERE's Cache-Control (cache_ttl) or
 * CACHE_TTL_DEFAULT; never over CACHE_TTL_CAP.
 */
long tile_fresh_ttl(const struct settings *cfg, int meta, int status,
    const char *cache_control);

/* flight_jobs' job function for revalidations: ctx is the tile_flow. */
void tile_revalidation_done(void *ctx, void *job);

#endif
