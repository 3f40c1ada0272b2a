#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "log.h"
#include "lru.h"
#include "mc.h"
#include "request.h"
#include "util.h"

/*
 * Purges. Every memcached key holds the cache generation ("<gen>/" before
 * the canonical key): a purge of everything writes a new random generation
 * to memcached, and the old entries are never read again (memcached ages
 * them out). A purge of one tile deletes it and appends its key to a purge
 * log in memcached (a counter and one item per purge), so that every
 * instance drops it from its in-process tier too. A thread per instance
 * reads the generation and the log every PURGE_SYNC_MS.
 */
#define GEN_KEY "gen"
#define PURGE_SEQ_KEY "purge-seq"
#define PURGE_LOG_PREFIX "purge:"
#define PURGE_SYNC_MS 1000
#define PURGE_LOG_TTL_S 86400
#define PURGE_LOG_CATCHUP 1000     /* further behind: clear the tier */
#define SHARED_TTL_S (30 * 86400)  /* memcached's longest relative expiry */
#define GKEY_MAX (REQUEST_KEY_MAX + 24)

struct cache {
    struct lru *memory;
    struct mc *mc;              /* NULL: in-process only */
    uint64_t generation;        /* atomic; part of every memcached key */
    uint64_t purge_seq;         /* the last purge-log entry applied */
    int stop;                   /* the sync thread's, under sync_lock */
    int syncing;                /* the sync thread runs */
    pthread_t sync_thread;
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_wake;
};

/*
 * "<generation>v<entry format>/" + key: the memcached key of a cache entry
 * ("<generation>/" for format 1). With the format in the key, instances of
 * two versions side by side (a rolling upgrade) keep one entry each instead
 * of deleting each other's as unreadable and fetching again from HERE.
 */
static size_t
gen_key_format(const struct cache *cache, const char *key, size_t keylen,
    int format, char *out)
{
    uint64_t g = __atomic_load_n(&cache->generation, __ATOMIC_ACQUIRE);
    int n = format == 1 ? snprintf(out, GKEY_MAX, "%" PRIx64 "/", g)
                        : snprintf(out, GKEY_MAX, "%" PRIx64 "v%d/", g, format);

    if (keylen > GKEY_MAX - 1 - (size_t)n)
        keylen = GKEY_MAX - 1 - (size_t)n;
    memcpy(out + n, key, keylen);
    out[(size_t)n + keylen] = '\0';
    return (size_t)n + keylen;
}

static size_t
gen_key(const struct cache *cache, const char *key, size_t keylen,
    char *out)
{
    return gen_key_format(cache, key, keylen, ENTRY_VERSION, out);
}

/* A memcached value holding one number (hex or decimal), or -1. */
static int
shared_number(struct cache *cache, const char *name, int base,
    uint64_t *out)
{
    const char *val = NULL;
    char buf[24], *end;
    size_t len = 0;
    enum mc_result r = mc_get(cache->mc, name, strlen(name), &val, &len);

    if (r != MC_HIT)
        return r == MC_MISS ? 0 : -1;
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, val, len);
    buf[len] = '\0';
    errno = 0;
    *out = strtoull(buf, &end, base);
    return errno == 0 && *end == '\0' ? 1 : -1;
}

/*
 * Take generation g: the in-process tier holds another's entries. Returns
 * how many it dropped; logs why when why is set.
 */
static size_t
adopt_generation(struct cache *cache, uint64_t g, const char *why)
{
    char text[20];
    cJSON *f;
    size_t n;

    if (__atomic_exchange_n(&cache->generation, g, __ATOMIC_ACQ_REL) == g)
        return 0;
    n = lru_clear(cache->memory);
    if (why == NULL)
        return n;
    snprintf(text, sizeof(text), "%" PRIx64, g);
    if ((f = cJSON_CreateObject()) != NULL) {
        cJSON_AddStringToObject(f, "generation", text);
        cJSON_AddNumberToObject(f, "memory_entries_dropped", (double)n);
        cJSON_AddStringToObject(f, "why", why);
    }
    log_event(LOG_LEVEL_INFO, "cache_generation", f);
    return n;
}

/* Apply purge-log entries (from, to]; 0, or -1 to leave it for later. */
static int
apply_purge_log(struct cache *cache, uint64_t from, uint64_t to)
{
    uint64_t i;

    if (to - from > PURGE_LOG_CATCHUP) {
        lru_clear(cache->memory);
        return 0;
    }
    for (i = from + 1; i <= to; i++) {
        char name[40];
        const char *val = NULL;
        size_t len = 0;
        enum mc_result r;

        snprintf(name, sizeof(name), PURGE_LOG_PREFIX "%" PRIu64, i);
        r = mc_get(cache->mc, name, strlen(name), &val, &len);
        if (r == MC_ERROR)
            return -1;
        if (r == MC_MISS) {
            /* Lost (evicted or expired): we cannot know the key. */
            lru_clear(cache->memory);
            continue;
        }
        lru_delete(cache->memory, val, len);
    }
    return 0;
}

/*
 * One look at the shared generation and purge log. At start (first) the
 * log's position is taken as it is: the in-process tier is still empty.
 */
static void
sync_shared(struct cache *cache, int first)
{
    uint64_t g, seq, last;
    char text[20];
    int r;

    r = shared_number(cache, GEN_KEY, 16, &g);
    if (r > 0) {
        adopt_generation(cache, g, first ? NULL : "purge on another instance");
    } else if (r == 0) {
        /* Never set, or lost with a memcached restart: put ours back. */
        snprintf(text, sizeof(text), "%" PRIx64,
            __atomic_load_n(&cache->generation, __ATOMIC_ACQUIRE));
        mc_add(cache->mc, GEN_KEY, sizeof(GEN_KEY) - 1, text, strlen(text),
            SHARED_TTL_S);
    }
    r = shared_number(cache, PURGE_SEQ_KEY, 10, &seq);
    if (r < 0)
        return;
    if (r == 0)
        seq = 0;
    last = __atomic_load_n(&cache->purge_seq, __ATOMIC_ACQUIRE);
    if (!first && seq > last && apply_purge_log(cache, last, seq) != 0)
        return;
    if (!first && seq < last)
        lru_clear(cache->memory);   /* the log restarted: assume the worst */
    __atomic_store_n(&cache->purge_seq, seq, __ATOMIC_RELEASE);
}

static void *
sync_main(void *arg)
{
    struct cache *cache = arg;

    pthread_mutex_lock(&cache->sync_lock);
    while (!cache->stop) {
        struct timespec until;

        util_timespec_in(CLOCK_REALTIME, PURGE_SYNC_MS, &until);
        pthread_cond_timedwait(&cache->sync_wake, &cache->sync_lock, &until);
        if (cache->stop)
            break;
        /* While memcached is lost, the requests and /readyz find out when
         * it is back; a lone success here would only make the health
         * state (and its log events) flap. */
        if (!mc_healthy(cache->mc))
            continue;
        pthread_mutex_unlock(&cache->sync_lock);
        sync_shared(cache, 0);
        pthread_mutex_lock(&cache->sync_lock);
    }
    pthread_mutex_unlock(&cache->sync_lock);
    return NULL;
}

struct cache *
cache_new(const struct settings *cfg, char *err, size_t errlen)
{
    struct cache *cache = calloc(1, sizeof(*cache));

    if (cache == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cache->memory = lru_new((size_t)cfg->cache_maxsize, cfg->cache_maxbytes);
    if (cache->memory == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&cache->sync_lock, NULL);
    pthread_cond_init(&cache->sync_wake, NULL);
    if (*cfg->memcached_servers != '\0') {
        /* One connection per worker at most (+1 for the sync thread). */
        cache->mc = mc_new(cfg->memcached_servers, (size_t)cfg->threads + 1,
            err, errlen);
        if (cache->mc == NULL)
            goto fail;
        sync_shared(cache, 1);
        if (pthread_create(&cache->sync_thread, NULL, sync_main, cache) != 0) {
            snprintf(err, errlen, "cannot start the cache sync thread");
            goto fail;
        }
        cache->syncing = 1;
    }
    return cache;
fail:
    cache_free(cache);
    return NULL;
}

void
cache_free(struct cache *cache)
{
    if (cache == NULL)
        return;
    if (cache->syncing) {
        pthread_mutex_lock(&cache->sync_lock);
        cache->stop = 1;
        pthread_cond_signal(&cache->sync_wake);
        pthread_mutex_unlock(&cache->sync_lock);
        pthread_join(cache->sync_thread, NULL);
    }
    pthread_mutex_destroy(&cache->sync_lock);
    pthread_cond_destroy(&cache->sync_wake);
    lru_free(cache->memory);
    mc_free(cache->mc);
    free(cache);
}

/* *gen: the generation the entry was read under. */
static struct entry *
tier2_get(struct cache *cache, const char *key, size_t keylen,
    uint64_t *gen)
{
    const char *val = NULL;
    char gkey[GKEY_MAX];
    size_t len = 0, glen;
    struct entry *e;

    *gen = __atomic_load_n(&cache->generation, __ATOMIC_ACQUIRE);
    glen = gen_key(cache, key, keylen, gkey);
    if (mc_get(cache->mc, gkey, glen, &val, &len) != MC_HIT)
        return NULL;
    e = entry_decode(val, len);   /* copies: val is the thread's buffer */
    if (e == NULL) {
        /* Corrupt or from another version: a miss, and gone. */
        mc_delete(cache->mc, gkey, glen);
    }
    return e;
}

/*
 * Into the in-process tier if it is asked for more than what it would evict
 * (lru_offer), unless a purge came between read and now.
 */
static void
memory_fill(struct cache *cache, const char *key, size_t keylen,
    struct entry *e, uint64_t gen)
{
    if (__atomic_load_n(&cache->generation, __ATOMIC_ACQUIRE) == gen)
        lru_offer(cache->memory, key, keylen, e);
}

struct entry *
cache_get_memory(struct cache *cache, const char *key, size_t keylen,
    int64_t now)
{
    return lru_get(cache->memory, key, keylen, now);
}

struct entry *
cache_get_after_memory(struct cache *cache, const char *key, size_t keylen,
    int64_t now, struct entry *e, enum cache_source *src)
{
    struct entry *shared;
    uint64_t gen;

    *src = e != NULL ? CACHE_SRC_MEMORY : CACHE_SRC_NONE;
    if ((e != NULL && e->fresh_until > now) || cache->mc == NULL)
        return e;
    shared = tier2_get(cache, key, keylen, &gen);
    if (shared != NULL && shared->keep_until > now &&
        (e == NULL || shared->fresh_until > e->fresh_until)) {
        entry_unref(e);
        memory_fill(cache, key, keylen, shared, gen);
        *src = CACHE_SRC_MEMCACHED;
        return shared;
    }
    entry_unref(shared);
    return e;
}

struct entry *
cache_get(struct cache *cache, const char *key, size_t keylen, int64_t now,
    enum cache_source *src)
{
    return cache_get_after_memory(cache, key, keylen, now,
        cache_get_memory(cache, key, keylen, now), src);
}

struct entry *
cache_get_shared(struct cache *cache, const char *key, size_t keylen,
    int64_t now)
{
    struct entry *e;
    uint64_t gen;

    if (cache->mc == NULL ||
        (e = tier2_get(cache, key, keylen, &gen)) == NULL)
        return NULL;
    if (e->fresh_until <= now) {
        entry_unref(e);
        return NULL;
    }
    memory_fill(cache, key, keylen, e, gen);
    return e;
}

/* The lock lives beside the entry: "L:" + key. */
static size_t
lock_key(const char *key, size_t keylen, char *out, size_t outsize)
{
    if (keylen + 3 > outsize)
        keylen = outsize - 3;
    out[0] = 'L';
    out[1] = ':';
    memcpy(out + 2, key, keylen);
    out[keylen + 2] = '\0';
    return keylen + 2;
}

int
cache_lock(struct cache *cache, const char *key, size_t keylen, long ttl_s)
{
    char lkey[600];
    size_t llen;

    if (cache->mc == NULL)
        return 1;
    llen = lock_key(key, keylen, lkey, sizeof(lkey));
    /* A memcached error must not stop tiles: fetch ourselves. */
    return mc_add(cache->mc, lkey, llen, "1", 1, ttl_s) != 1;
}

void
cache_unlock(struct cache *cache, const char *key, size_t keylen)
{
    char lkey[600];
    size_t llen;

    if (cache->mc == NULL)
        return;
    llen = lock_key(key, keylen, lkey, sizeof(lkey));
    mc_delete(cache->mc, lkey, llen);
}

int
cache_shared(const struct cache *cache)
{
    return cache->mc != NULL;
}

void
cache_put(struct cache *cache, const char *key, size_t keylen,
    struct entry *e, int64_t now)
{
    char gkey[GKEY_MAX];
    size_t glen;

    if (e->keep_until <= now)
        return;
    lru_put(cache->memory, key, keylen, e);
    if (cache->mc != NULL && e->blob_len <= MC_ITEM_MAX) {
        glen = gen_key(cache, key, keylen, gkey);
        mc_set(cache->mc, gkey, glen, e->blob, e->blob_len,
            e->keep_until - now);
    }
}

int
cache_purge_key(struct cache *cache, const char *key, size_t keylen,
    struct cache_purge *out)
{
    char gkey[GKEY_MAX], name[40];
    size_t glen;
    uint64_t seq;

    memset(out, 0, sizeof(out[0]));
    out->in_memory = lru_delete(cache->memory, key, keylen);
    snprintf(out->generation, sizeof(out->generation), "%" PRIx64,
        __atomic_load_n(&cache->generation, __ATOMIC_ACQUIRE));
    if (cache->mc == NULL)
        return 0;
    glen = gen_key(cache, key, keylen, gkey);
    switch (mc_delete(cache->mc, gkey, glen)) {
    case 0:
        out->in_memcached = 1;
        break;
    case 1:
        break;
    default:
        return -1;
    }
    /* The previous format's copy, for instances of the previous version. */
    glen = gen_key_format(cache, key, keylen, ENTRY_VERSION - 1, gkey);
    if (mc_delete(cache->mc, gkey, glen) < 0)
        return -1;
    /* The other instances drop it from their in-process tiers. */
    if (mc_count(cache->mc, PURGE_SEQ_KEY, sizeof(PURGE_SEQ_KEY) - 1, 1,
            SHARED_TTL_S, &seq) != 0)
        return -1;
    snprintf(name, sizeof(name), PURGE_LOG_PREFIX "%" PRIu64, seq);
    if (mc_set(cache->mc, name, strlen(name), key, keylen,
            PURGE_LOG_TTL_S) != 0)
        return -1;
    return 0;
}

int
cache_purge_all(struct cache *cache, struct cache_purge *out)
{
    uint64_t g = 0;
    int rc = 0;

    memset(out, 0, sizeof(out[0]));
    /* Random, not a counter: a lost counter must never come back to a
     * generation whose entries still sit in memcached. */
    while (g == 0 || g == __atomic_load_n(&cache->generation,
                                   __ATOMIC_ACQUIRE))
        if (getrandom(&g, sizeof(g), 0) != (ssize_t)sizeof(g))
            g ^= (uint64_t)util_mono_us() * 0x9e3779b97f4a7c15ULL ^
                (uint64_t)getpid();
    snprintf(out->generation, sizeof(out->generation), "%" PRIx64, g);
    if (cache->mc != NULL &&
        mc_set(cache->mc, GEN_KEY, sizeof(GEN_KEY) - 1, out->generation,
            strlen(out->generation), SHARED_TTL_S) != 0)
        rc = -1;
    out->memory_entries = adopt_generation(cache, g, NULL);
    return rc;
}

int
cache_ready(struct cache *cache, char *reason, size_t len)
{
    int down;

    if (cache->mc == NULL)
        return 0;
    down = mc_ping(cache->mc, reason, len);
    if (down == 0)
        return 0;
    if (down < mc_server_count(cache->mc))
        return 1;
    snprintf(reason, len, "memcached unreachable");
    return -1;
}

void
cache_memory_stats(struct cache *cache, struct lru_stats *out)
{
    lru_stats(cache->memory, out);
}

int
cache_shared_up(struct cache *cache)
{
    return cache->mc != NULL && mc_healthy(cache->mc);
}

int
cache_shared_servers(struct cache *cache, uint64_t *down)
{
    char names[512];

    *down = 0;
    if (cache->mc == NULL)
        return 0;
    *down = (uint64_t)mc_ping(cache->mc, names, sizeof(names));
    return mc_server_count(cache->mc);
}

void
cache_set_metrics(struct cache *cache, struct metrics *m)
{
    if (cache->mc != NULL)
        mc_set_metrics(cache->mc, m);
}

const char *
cache_backend(const struct cache *cache)
{
    return cache->mc != NULL ? "memory+memcached" : "memory";
}

/* Value of "name=digits" at p (after the name matched), or -1. */
static long
directive_seconds(const char *p, size_t len)
{
    long v = 0;
    size_t i;

    if (len > 2 && p[0] == '"' && p[len - 1] == '"') {
        p++;
        len -= 2;
    }
    if (len == 0)
        return -1;
    /* RFC 9111 5.2: a delta larger than 2^31 means 2^31, never an error. */
    for (i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        if (v < 0x80000000L)
            v = v * 10 + (p[i] - '0');
    }
    return v > 0x80000000L ? 0x80000000L : v;
}

long
cache_ttl(const char *cache_control, long default_s, long cap_s)
{
    const char *p = cache_control;
    long max_age = -1, s_maxage = -1, ttl;

    while (p != NULL && *p != '\0') {
        size_t len, nlen;
        const char *eq;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        len = strcspn(p, ",");
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        eq = memchr(p, '=', len);
        nlen = eq ? (size_t)(eq - p) : len;
        if ((nlen == 8 && strncasecmp(p, "no-store", 8) == 0) ||
            (nlen == 8 && strncasecmp(p, "no-cache", 8) == 0) ||
            (nlen == 7 && strncasecmp(p, "private", 7) == 0))
            return 0;
        if (eq != NULL && nlen == 7 && strncasecmp(p, "max-age", 7) == 0)
            max_age = directive_seconds(eq + 1, len - nlen - 1);
        else if (eq != NULL && nlen == 8 &&
                 strncasecmp(p, "s-maxage", 8) == 0)
            s_maxage = directive_seconds(eq + 1, len - nlen - 1);
        p += strcspn(p, ",");
    }
    ttl = s_maxage >= 0 ? s_maxage : max_age >= 0 ? max_age : default_s;
    return ttl > cap_s ? cap_s : ttl;
}
