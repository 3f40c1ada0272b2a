#ifndef HEREPROXY_CACHE_H
#define HEREPROXY_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "lru.h"
#include "settings.h"

/*
 * The two tiers behind one interface: the in-process LRU first, then
 * memcached when MEMCACHED_SERVERS is set. A memcached hit fills the
 * in-process tier. A memcached failure is a miss, never an error.
 */

struct cache;
struct metrics;

enum cache_source { CACHE_SRC_NONE, CACHE_SRC_MEMORY, CACHE_SRC_MEMCACHED };

struct cache *cache_new(const struct settings *cfg, char *err, size_t errlen);
void cache_free(struct cache *cache);

/*
 * An entry for key still within its retention at `now` (Unix seconds),
 * fresh or stale (check e->fresh_until), referenced (entry_unref when
 * done), or NULL. A stale in-process entry is checked against memcached,
 * where another instance may have renewed it. *src says which tier
 * answered.
 */
struct entry *cache_get(struct cache *cache, const char *key, size_t keylen,
    int64_t now, enum cache_source *src);

/*
 * cache_get in two steps, for a caller with something to do between the
 * tiers: the in-process tier's entry (or NULL), then the rest of
 * cache_get given it (its reference is taken over).
 */
struct entry *cache_get_memory(
    struct cache *cache, const char *key, size_t keylen, int64_t now);
struct entry *cache_get_after_memory(struct cache *cache, const char *key,
    size_t keylen, int64_t now, struct entry *e, enum cache_source *src);

/* A fresh entry from memcached only (waiting on another instance). */
struct entry *cache_get_shared(
    struct cache *cache, const char *key, size_t keylen, int64_t now);

/*
 * Take the short cross-instance fetch lock for key in memcached. Returns 1
 * when taken (or when there is no memcached to share with, or the lock
 * there is not one an instance of the fleet sealed: fetch), 0 when another
 * instance holds it (wait for its result in memcached).
 */
int cache_lock(struct cache *cache, const char *key, size_t keylen, long ttl_s);
void cache_unlock(struct cache *cache, const char *key, size_t keylen);

/* What a purge found and did. */
struct cache_purge {
    int in_memory;         /* one key: it was in this process's tier */
    int in_memcached;      /* one key: memcached held it */
    size_t memory_entries; /* everything: entries dropped in this process */
    char generation[20];   /* the generation now in use (hex) */
};

/*
 * Purge one canonical key from both tiers, and from every instance's
 * in-process tier within about a second (a purge log in memcached). 0, or
 * -1 when memcached could not be reached (this process's copy is gone).
 */
int cache_purge_key(struct cache *cache, const char *key, size_t keylen,
    struct cache_purge *out);

/*
 * Purge everything: a new cache generation, in memcached for every
 * instance, and this process's tier emptied. 0, or -1 when memcached
 * could not be told (then only this process starts afresh).
 */
int cache_purge_all(struct cache *cache, struct cache_purge *out);

/*
 * The bounds of what memcached may hand back (CACHE_TTL_CAP,
 * CACHE_STALE_TTL, UPSTREAM_MAX_BYTES): at creation and on reload.
 */
void cache_set_bounds(struct cache *cache, const struct settings *cfg);

/* 1 when a memcached tier is configured. */
int cache_shared(const struct cache *cache);

/* Store in both tiers (memcached only when the entry fits an item). */
void cache_put(struct cache *cache, const char *key, size_t keylen,
    struct entry *e, int64_t now);

/*
 * 0 when every memcached server answers a round trip; 1 when some do not
 * (reason: their "host:port" list); -1 with a reason when none answers.
 * The in-process tier alone is always ready.
 */
int cache_ready(struct cache *cache, char *reason, size_t len);

/*
 * For the metrics: how many memcached servers are configured (the return)
 * and how many do not answer a round trip now (*down; each asked within
 * a short timeout). 0 and 0 without memcached.
 */
int cache_shared_servers(struct cache *cache, uint64_t *down);

/*
 * memcached server i (0 .. cache_shared_servers() - 1) by name, and in *up
 * whether its last exchange worked; NULL past the end.
 */
const char *cache_shared_server(struct cache *cache, int i, int *up);

/* Counts of the in-process tier, for the metrics. */
void cache_memory_stats(struct cache *cache, struct lru_stats *out);

/* 1 when memcached is configured and some server's last exchange worked. */
int cache_shared_up(struct cache *cache);

/*
 * Record every memcached operation's latency and result in m (which must
 * outlive the cache; NULL stops recording). Call before the workers start.
 */
void cache_set_metrics(struct cache *cache, struct metrics *m);

/* The name of the backend: "memory" or "memory+memcached". */
const char *cache_backend(const struct cache *cache);

/*
 * Seconds to keep a response with this Cache-Control value (NULL when
 * absent): s-maxage, else max-age, else default_s; at most cap_s; 0 for
 * no-store, no-cache or private.
 */
long cache_ttl(const char *cache_control, long default_s, long cap_s);

#endif
