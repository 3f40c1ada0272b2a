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
#include "mac.h"
#include "mc.h"
#include "metrics.h"
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
 *
 * memcached holds data, not authority. Every value the proxy writes there
 * carries a MAC (mac.h) bound to its key, under CACHE_SECRET: entries,
 * the generation, purge-log items and coalescing locks. What does not
 * verify is a miss, counted (hereproxy_cache_rejected_total) and logged
 * at most once per 10 s per reason; an entry that verifies is
 * still bounded (status, type, freshness, size) before it is served. The
 * generation carries a sequence number, so that an old one written back
 * (a replay) is refused as surely as a forged one.
 */
#define GEN_KEY "gen"
#define PURGE_SEQ_KEY "purge-seq"
#define PURGE_LOG_PREFIX "purge:"
#define PURGE_SYNC_MS 1000
#define PURGE_LOG_TTL_S 86400
#define PURGE_LOG_CATCHUP 1000    /* further behind: clear the tier */
#define PURGE_LOG_TIP 8           /* newest items that may be on their way */
#define SHARED_TTL_S (30 * 86400) /* memcached's longest relative expiry */
#define GKEY_MAX (REQUEST_KEY_MAX + 24)
/* How far another instance's clock may run ahead of ours. */
#define CLOCK_SKEW_S 120
/* The largest sealed small value: a purge-log item holding a key. */
#define SMALL_MAX (REQUEST_KEY_MAX + MAC_SEAL_LEN + 64)

struct cache {
    struct lru *memory;
    struct mc *mc;           /* NULL: in-process only */
    struct mac *mac;         /* keyed with CACHE_SECRET; with mc only */
    struct metrics *metrics; /* atomic; NULL: nothing counted */
    uint64_t generation;     /* atomic; part of every memcached key */
    uint64_t gen_seq;        /* atomic; the generation's sequence */
    uint64_t owner;          /* this instance, in the locks it takes */
    /* Bounds of what memcached may hand us (cache_set_bounds): atomic. */
    long ttl_cap_s, stale_ttl_s;
    uint64_t max_body;
    uint64_t purge_seq; /* the last purge-log entry applied */
    uint64_t purge_tip; /* the sync thread's: the tip it waited on once */
    int stop;           /* the sync thread's, under sync_lock */
    int syncing;        /* the sync thread runs */
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
gen_key(const struct cache *cache, const char *key, size_t keylen, char *out)
{
    return gen_key_format(cache, key, keylen, ENTRY_VERSION, out);
}

/* One more value refused for reason r (see metrics_cache_rejected). */
static void
reject(
    struct cache *cache, enum metrics_reject r, const char *key, size_t keylen)
{
    metrics_cache_rejected(
        __atomic_load_n(&cache->metrics, __ATOMIC_ACQUIRE), r, key, keylen);
}

/*
 * Read a sealed small value (gen, lock, purge log) into buf (NUL-ended).
 * Returns its payload length; 0 when absent; -1 when memcached failed;
 * -2 when it was there and did not verify (refused for reason r).
 */
static ssize_t
read_sealed(struct cache *cache, const char *name, size_t namelen,
    enum metrics_reject r, char *buf, size_t size)
{
    const char *val = NULL;
    size_t len = 0;
    ssize_t plen;

    switch (mc_get(cache->mc, name, namelen, &val, &len)) {
    case MC_HIT: break;
    case MC_MISS: return 0;
    case MC_TOO_LARGE: reject(cache, r, name, namelen); return -2;
    default: return -1;
    }
    plen = mac_open(cache->mac, name, namelen, val, len);
    if (plen < 0 || (size_t)plen >= size) {
        reject(cache, r, name, namelen);
        return -2;
    }
    memcpy(buf, val, (size_t)plen);
    buf[plen] = '\0';
    return plen;
}

/* Seal payload under name and store it; 0 or -1. add: only if absent. */
static int
write_sealed(struct cache *cache, const char *name, size_t namelen,
    const char *payload, size_t len, int64_t ttl_s, int add)
{
    char sealed[SMALL_MAX];
    size_t n = mac_seal(
        cache->mac, name, namelen, payload, len, sealed, sizeof(sealed));

    if (n == 0)
        return -1;
    return add ? mc_add(cache->mc, name, namelen, sealed, n, ttl_s)
               : mc_set(cache->mc, name, namelen, sealed, n, ttl_s);
}

/*
 * The shared generation: "<sequence> <generation>" (decimal, hex). 1 with
 * both read, 0 when absent, -1 when memcached failed, -2 when refused.
 */
static int
read_generation(struct cache *cache, uint64_t *seq, uint64_t *gen)
{
    char buf[64], *end;
    ssize_t n = read_sealed(cache, GEN_KEY, sizeof(GEN_KEY) - 1,
        METRICS_REJECT_GENERATION, buf, sizeof(buf));

    if (n <= 0)
        return n == 0 ? 0 : (int)n;
    errno = 0;
    *seq = strtoull(buf, &end, 10);
    if (errno != 0 || *end != ' ')
        goto bad;
    *gen = strtoull(end + 1, &end, 16);
    if (errno != 0 || *end != '\0')
        goto bad;
    return 1;
bad:
    /* Sealed by us, yet not ours to read: another version's layout. */
    reject(cache, METRICS_REJECT_GENERATION, GEN_KEY, sizeof(GEN_KEY) - 1);
    return -2;
}

static int
write_generation(struct cache *cache, uint64_t seq, uint64_t gen, int add)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "%" PRIu64 " %" PRIx64, seq, gen);

    return write_sealed(cache, GEN_KEY, sizeof(GEN_KEY) - 1, text, (size_t)n,
        SHARED_TTL_S, add);
}

/*
 * (seq, gen) against ours: > 0 after it (a later purge; a tie between two
 * purges at once goes to the larger generation, so that all converge), 0
 * the same, < 0 before it (an older one written back).
 */
static int
generation_cmp(const struct cache *cache, uint64_t seq, uint64_t gen)
{
    uint64_t cs = __atomic_load_n(&cache->gen_seq, __ATOMIC_ACQUIRE);
    uint64_t cg = __atomic_load_n(&cache->generation, __ATOMIC_ACQUIRE);

    if (seq != cs)
        return seq > cs ? 1 : -1;
    return gen > cg ? 1 : gen < cg ? -1 : 0;
}

/* Write ours back over a missing (add) or refused (set) generation. */
static void
restore_generation(struct cache *cache, int add)
{
    write_generation(cache, __atomic_load_n(&cache->gen_seq, __ATOMIC_ACQUIRE),
        __atomic_load_n(&cache->generation, __ATOMIC_ACQUIRE), add);
}

/*
 * Take generation g: the in-process tier holds another's entries. Returns
 * how many it dropped; logs why when why is set.
 */
static size_t
adopt_generation(struct cache *cache, uint64_t seq, uint64_t g, const char *why)
{
    char text[20];
    cJSON *f;
    size_t n;

    __atomic_store_n(&cache->gen_seq, seq, __ATOMIC_RELEASE);
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

/*
 * Apply purge-log entries (from, to]; *done is how far it got; 0, or -1
 * to leave it for later. An item that is missing (evicted) or does not
 * verify (forged) is skipped: only sealed items name keys to drop. A
 * purge takes its number first and writes its item next, so an item
 * missing among the newest may still be on its way: the first look at a
 * tip stops before it and the next round reads or skips it. Further
 * behind than PURGE_LOG_CATCHUP, the tier is cleared, but only when the
 * newest items prove that many purges were made: a sequence pushed ahead
 * by anyone else must not empty the caches.
 */
static int
apply_purge_log(struct cache *cache, uint64_t from, uint64_t to, uint64_t *done)
{
    uint64_t i, burst = to - from > PURGE_LOG_CATCHUP, start = from;
    char key[REQUEST_KEY_MAX + 1];

    *done = to;
    if (burst)
        from = to - PURGE_LOG_CATCHUP;
    for (i = from + 1; i <= to; i++) {
        char name[40];
        ssize_t n;

        snprintf(name, sizeof(name), PURGE_LOG_PREFIX "%" PRIu64, i);
        n = read_sealed(cache, name, strlen(name), METRICS_REJECT_PURGE_LOG,
            key, sizeof(key));
        if (n == -1)
            return -1;
        if (n == 0 && to - i < PURGE_LOG_TIP && cache->purge_tip != to) {
            cache->purge_tip = to;
            *done = burst ? start : i - 1;
            return 0;
        }
        if (n <= 0)
            continue;
        if (burst) {
            lru_clear(cache->memory);
            return 0;
        }
        lru_delete(cache->memory, key, (size_t)n);
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
    uint64_t g = 0, seq = 0, last;
    char text[24];
    int r;

    r = read_generation(cache, &seq, &g);
    if (r > 0 && (first || generation_cmp(cache, seq, g) > 0)) {
        adopt_generation(
            cache, seq, g, first ? NULL : "purge on another instance");
    } else if (r > 0 && generation_cmp(cache, seq, g) < 0) {
        /* An older generation written back: a replay, refused. */
        reject(cache, METRICS_REJECT_GENERATION, GEN_KEY, sizeof(GEN_KEY) - 1);
        restore_generation(cache, 0);
    } else if (r == 0 || r == -2) {
        /* Lost with a memcached restart, or forged: ours goes back. */
        restore_generation(cache, r == 0);
    }
    /* The sequence is a plain counter (memcached incr): a hint of how far
     * the log goes, never trusted to clear anything by itself. */
    {
        const char *val = NULL;
        size_t len = 0;
        char *end;

        r = mc_get(
            cache->mc, PURGE_SEQ_KEY, sizeof(PURGE_SEQ_KEY) - 1, &val, &len);
        if (r == MC_ERROR)
            return;
        seq = 0;
        if (r == MC_HIT && len > 0 && len < sizeof(text)) {
            memcpy(text, val, len);
            text[len] = '\0';
            errno = 0;
            seq = strtoull(text, &end, 10);
            if (errno != 0 || *end != '\0')
                seq = 0;
        }
    }
    last = __atomic_load_n(&cache->purge_seq, __ATOMIC_ACQUIRE);
    if (!first && seq > last && apply_purge_log(cache, last, seq, &seq) != 0)
        return;
    /* seq < last: the log restarted (memcached lost it): follow it on. */
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

/*
 * The MAC of memcached values: CACHE_SECRET, else a secret derived from the
 * HERE credential (every instance with that credential shares the cache).
 */
static int
cache_mac_new(
    struct cache *cache, const struct settings *cfg, char *err, size_t errlen)
{
    cache->mac = mac_new_fleet(cfg->cache_secret, settings_here_secret(cfg));
    if (cache->mac == NULL) {
        snprintf(err, errlen,
            "cannot set up the memcached MAC (CACHE_SECRET "
            "or the HERE credential it derives from)");
        return -1;
    }
    return 0;
}

void
cache_set_bounds(struct cache *cache, const struct settings *cfg)
{
    __atomic_store_n(&cache->ttl_cap_s, cfg->cache_ttl_cap_s, __ATOMIC_RELAXED);
    __atomic_store_n(
        &cache->stale_ttl_s, cfg->cache_stale_ttl_s, __ATOMIC_RELAXED);
    __atomic_store_n(
        &cache->max_body, cfg->upstream_max_bytes, __ATOMIC_RELAXED);
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
    cache_set_bounds(cache, cfg);
    if (getrandom(&cache->owner, sizeof(cache->owner), 0) !=
        (ssize_t)sizeof(cache->owner))
        cache->owner = (uint64_t)util_mono_us() ^ (uint64_t)getpid() << 32;
    if (*cfg->memcached_servers != '\0') {
        /* One connection per worker at most (+1 for the sync thread). */
        cache->mc = mc_new(
            cfg->memcached_servers, (size_t)cfg->threads + 1, err, errlen);
        if (cache->mc == NULL)
            goto fail;
        if (cache_mac_new(cache, cfg, err, errlen) != 0)
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
    mac_free(cache->mac);
    free(cache);
}

/* A tile's key has its path ("base/mc/z/x/y/png"); metadata's has none. */
static int
is_tile_key(const char *key, size_t keylen)
{
    return memmem(key, keylen, "/mc/", 4) != NULL;
}

/*
 * The Content-Type a 200 under key may have: the WMTS capabilities'
 * (request.h names their keys "wmts/..."; caps.c writes them), a tile's
 * image, or JSON (metadata, TileJSON). The WMTS prefix is looked at first:
 * a capabilities key holds the public URL, which may contain "/mc/".
 */
static int
type_allowed(const char *key, size_t keylen, const char *ct)
{
    if (keylen >= 5 && memcmp(key, "wmts/", 5) == 0)
        return strcmp(ct, "application/xml") == 0;
    if (!(keylen >= 9 && memcmp(key, "tilejson/", 9) == 0) &&
        is_tile_key(key, keylen))
        return strcmp(ct, "image/png") == 0 || strcmp(ct, "image/jpeg") == 0;
    return strcmp(ct, "application/json") == 0;
}

/*
 * What an entry that verified may still not be (a fleet of instances with
 * other settings, or the secret in the wrong hands): only 200 or 404;
 * tiles only image/png or image/jpeg, WMTS capabilities only
 * application/xml, metadata, TileJSON and 404s only application/json;
 * fresh for at most CACHE_TTL_CAP and kept for at most CACHE_STALE_TTL
 * more, from now (give or take another instance's clock); a body no larger
 * than UPSTREAM_MAX_BYTES.
 */
static int
entry_in_bounds(const struct cache *cache, const struct entry *e,
    const char *key, size_t keylen, int64_t now)
{
    long cap = __atomic_load_n(&cache->ttl_cap_s, __ATOMIC_RELAXED);
    long stale = __atomic_load_n(&cache->stale_ttl_s, __ATOMIC_RELAXED);
    const char *ct = e->content_type;

    if (e->status == 200) {
        if (!type_allowed(key, keylen, ct))
            return 0;
    } else if (e->status != 404 || strcmp(ct, "application/json") != 0) {
        return 0;
    }
    return e->fresh_until <= now + cap + CLOCK_SKEW_S &&
        e->keep_until <= now + cap + stale + CLOCK_SKEW_S &&
        e->keep_until >= e->fresh_until &&
        e->body_len <= __atomic_load_n(&cache->max_body, __ATOMIC_RELAXED);
}

/*
 * The entry memcached holds for key, if it is one of ours and in bounds;
 * *gen: the generation it was read under. Whatever else is there is a
 * miss, counted; it is not deleted (an instance with another secret is a
 * misconfiguration to see in the metrics, not a reason to thrash), and
 * the next fetch overwrites it.
 */
static struct entry *
tier2_get(struct cache *cache, const char *key, size_t keylen, uint64_t *gen,
    int64_t now)
{
    const char *val = NULL;
    char gkey[GKEY_MAX];
    size_t len = 0, glen;
    struct entry *e;

    *gen = __atomic_load_n(&cache->generation, __ATOMIC_ACQUIRE);
    glen = gen_key(cache, key, keylen, gkey);
    switch (mc_get(cache->mc, gkey, glen, &val, &len)) {
    case MC_HIT: break;
    case MC_TOO_LARGE:
        reject(cache, METRICS_REJECT_TOO_LARGE, key, keylen);
        return NULL;
    default: return NULL;
    }
    switch (entry_check(val, len, cache->mac, gkey, glen)) {
    case ENTRY_OK: break;
    case ENTRY_MALFORMED:
        reject(cache, METRICS_REJECT_FORMAT, key, keylen);
        return NULL;
    default: reject(cache, METRICS_REJECT_MAC, key, keylen); return NULL;
    }
    e = entry_decode(val, len); /* copies: val is the thread's buffer */
    if (e != NULL && !entry_in_bounds(cache, e, key, keylen, now)) {
        reject(cache, METRICS_REJECT_BOUNDS, key, keylen);
        entry_unref(e);
        return NULL;
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
cache_get_memory(
    struct cache *cache, const char *key, size_t keylen, int64_t now)
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
    shared = tier2_get(cache, key, keylen, &gen, now);
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
cache_get_shared(
    struct cache *cache, const char *key, size_t keylen, int64_t now)
{
    struct entry *e;
    uint64_t gen;

    if (cache->mc == NULL ||
        (e = tier2_get(cache, key, keylen, &gen, now)) == NULL)
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

/*
 * The lock is sealed: "<owner> <until ms>", so that only an instance of
 * the fleet can make others wait, and not past the lock's own expiry.
 */
int
cache_lock(struct cache *cache, const char *key, size_t keylen, long ttl_s)
{
    char lkey[600], text[64], held[64], *end;
    int64_t now = util_wall_ms();
    unsigned long long owner, until;
    size_t llen;
    ssize_t n;
    int r;

    if (cache->mc == NULL)
        return 1;
    llen = lock_key(key, keylen, lkey, sizeof(lkey));
    r = snprintf(text, sizeof(text), "%" PRIx64 " %lld", cache->owner,
        (long long)(now + ttl_s * 1000));
    /* A memcached error must not stop tiles: fetch ourselves. */
    if (write_sealed(cache, lkey, llen, text, (size_t)r, ttl_s, 1) != 1)
        return 1;
    n = read_sealed(cache, lkey, llen, METRICS_REJECT_LOCK, held, sizeof(held));
    if (n == 0 || n == -1)
        return 1; /* gone meanwhile, or memcached failed: fetch */
    if (n > 0) {
        errno = 0;
        owner = strtoull(held, &end, 16);
        if (errno == 0 && *end == ' ') {
            until = strtoull(end + 1, &end, 10);
            if (errno == 0 && *end == '\0' && (int64_t)until > now &&
                (int64_t)until <= now + (ttl_s + CLOCK_SKEW_S) * 1000 &&
                owner != cache->owner)
                return 0; /* another instance fetches it: wait */
        }
    }
    /* Forged, expired or not ours to believe: take it over. */
    write_sealed(cache, lkey, llen, text, (size_t)r, ttl_s, 0);
    return 1;
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
cache_put(struct cache *cache, const char *key, size_t keylen, struct entry *e,
    int64_t now)
{
    char gkey[GKEY_MAX];
    size_t glen = 0;
    int shared;

    if (e->keep_until <= now)
        return;
    /* Sealed before any other thread can see the blob. */
    shared = cache->mc != NULL && e->blob_len <= MC_ITEM_MAX;
    if (shared) {
        glen = gen_key(cache, key, keylen, gkey);
        shared = entry_seal(e, cache->mac, gkey, glen) == 0;
    }
    lru_put(cache->memory, key, keylen, e);
    if (shared)
        mc_set(
            cache->mc, gkey, glen, e->blob, e->blob_len, e->keep_until - now);
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
    case 0: out->in_memcached = 1; break;
    case 1: break;
    default: return -1;
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
    if (write_sealed(
            cache, name, strlen(name), key, keylen, PURGE_LOG_TTL_S, 0) != 0)
        return -1;
    return 0;
}

int
cache_purge_all(struct cache *cache, struct cache_purge *out)
{
    uint64_t g = 0, seq;
    int rc = 0;

    memset(out, 0, sizeof(out[0]));
    /* Random, not a counter: a lost counter must never come back to a
     * generation whose entries still sit in memcached. */
    while (g == 0 || g == __atomic_load_n(&cache->generation, __ATOMIC_ACQUIRE))
        if (getrandom(&g, sizeof(g), 0) != (ssize_t)sizeof(g))
            g ^= (uint64_t)util_mono_us() * 0x9e3779b97f4a7c15ULL ^
                (uint64_t)getpid();
    snprintf(out->generation, sizeof(out->generation), "%" PRIx64, g);
    seq = __atomic_load_n(&cache->gen_seq, __ATOMIC_ACQUIRE) + 1;
    if (cache->mc != NULL && write_generation(cache, seq, g, 0) != 0)
        rc = -1;
    out->memory_entries = adopt_generation(cache, seq, g, NULL);
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

const char *
cache_shared_server(struct cache *cache, int i, int *up)
{
    if (cache->mc == NULL || mc_server_name(cache->mc, i) == NULL)
        return NULL;
    *up = mc_server_up(cache->mc, i);
    return mc_server_name(cache->mc, i);
}

void
cache_set_metrics(struct cache *cache, struct metrics *m)
{
    /* Published: the sync thread may already be refusing values. */
    __atomic_store_n(&cache->metrics, m, __ATOMIC_RELEASE);
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
        else if (eq != NULL && nlen == 8 && strncasecmp(p, "s-maxage", 8) == 0)
            s_maxage = directive_seconds(eq + 1, len - nlen - 1);
        p += strcspn(p, ",");
    }
    ttl = s_maxage >= 0 ? s_maxage : max_age >= 0 ? max_age : default_s;
    return ttl > cap_s ? cap_s : ttl;
}
