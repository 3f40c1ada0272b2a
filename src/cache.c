#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache.h"
#include "lru.h"
#include "mc.h"
#include "util.h"

struct cache {
    struct lru *memory;
    struct mc *mc;              /* NULL: in-process only */
};

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
    if (*cfg->memcached_servers != '\0') {
        /* One connection per worker at most: a pop never waits long. */
        cache->mc = mc_new(cfg->memcached_servers, (size_t)cfg->threads, err,
            errlen);
        if (cache->mc == NULL)
            goto fail;
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
    lru_free(cache->memory);
    mc_free(cache->mc);
    free(cache);
}

static struct entry *
tier2_get(struct cache *cache, const char *key, size_t keylen)
{
    char *val = NULL;
    size_t len = 0;
    struct entry *e;

    if (mc_get(cache->mc, key, keylen, &val, &len) != MC_HIT)
        return NULL;
    e = entry_decode(val, len);
    free(val);
    if (e == NULL) {
        /* Corrupt or from another version: a miss, and gone. */
        mc_delete(cache->mc, key, keylen);
    }
    return e;
}

struct entry *
cache_get(struct cache *cache, const char *key, size_t keylen, int64_t now,
    enum cache_source *src)
{
    struct entry *e = lru_get(cache->memory, key, keylen, now), *shared;

    *src = e != NULL ? CACHE_SRC_MEMORY : CACHE_SRC_NONE;
    if ((e != NULL && e->fresh_until > now) || cache->mc == NULL)
        return e;
    shared = tier2_get(cache, key, keylen);
    if (shared != NULL && shared->keep_until > now &&
        (e == NULL || shared->fresh_until > e->fresh_until)) {
        entry_unref(e);
        lru_put(cache->memory, key, keylen, shared);
        *src = CACHE_SRC_MEMCACHED;
        return shared;
    }
    entry_unref(shared);
    return e;
}

struct entry *
cache_get_shared(struct cache *cache, const char *key, size_t keylen,
    int64_t now)
{
    struct entry *e;

    if (cache->mc == NULL || (e = tier2_get(cache, key, keylen)) == NULL)
        return NULL;
    if (e->fresh_until <= now) {
        entry_unref(e);
        return NULL;
    }
    lru_put(cache->memory, key, keylen, e);
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
    if (e->keep_until <= now)
        return;
    lru_put(cache->memory, key, keylen, e);
    if (cache->mc != NULL && e->blob_len <= MC_ITEM_MAX)
        mc_set(cache->mc, key, keylen, e->blob, e->blob_len,
            e->keep_until - now);
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
