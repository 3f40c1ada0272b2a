#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmemcached/memcached.h>
#include <libmemcachedutil-1.0/pool.h>

#include "log.h"
#include "mc.h"
#include "util.h"

#define KEY_PREFIX "hp1:"

struct mc {
    memcached_st *master;
    memcached_pool_st *pool;
    int healthy;               /* atomic */
};

size_t
mc_key(const char *key, size_t keylen, char *out)
{
    size_t plen = sizeof(KEY_PREFIX) - 1, i;
    int plain = plen + keylen <= MC_KEY_MAX;

    for (i = 0; plain && i < keylen; i++)
        if ((unsigned char)key[i] <= ' ' || (unsigned char)key[i] >= 0x7f)
            plain = 0;
    if (plain) {
        memcpy(out, KEY_PREFIX, plen);
        memcpy(out + plen, key, keylen);
        out[plen + keylen] = '\0';
        return plen + keylen;
    }
    return (size_t)snprintf(out, MC_KEY_MAX + 1, KEY_PREFIX "#%016llx%016llx",
        (unsigned long long)util_hash64(key, keylen, 0),
        (unsigned long long)util_hash64(key, keylen, 0x9e3779b97f4a7c15ULL));
}

static void
set_behaviors(memcached_st *m)
{
    /* Ketama: adding or removing a server moves about 1/N of the keys. */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_DISTRIBUTION,
        MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    /* A cache must answer fast or not at all. */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, 250);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 250);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, 250000);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SND_TIMEOUT, 250000);
    /* After a failure skip the server for 2 s, then try it again. */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 2);
}

static int
add_servers(memcached_st *m, const char *servers, char *err, size_t errlen)
{
    char *copy = strdup(servers), *item, *save = NULL;
    int rc = -1;

    if (copy == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (item = strtok_r(copy, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(item, ':');
        long port = 11211;
        memcached_return_t r;

        if (colon != NULL) {
            *colon = '\0';
            if (util_parse_long(colon + 1, 1, 65535, &port) != 0) {
                snprintf(err, errlen, "MEMCACHED_SERVERS: bad port in '%s'",
                    item);
                goto done;
            }
        }
        r = memcached_server_add(m, item, (in_port_t)port);
        if (r != MEMCACHED_SUCCESS) {
            snprintf(err, errlen, "MEMCACHED_SERVERS: cannot add %s:%ld: %s",
                item, port, memcached_strerror(m, r));
            goto done;
        }
    }
    rc = 0;
done:
    free(copy);
    return rc;
}

struct mc *
mc_new(const char *servers, size_t pool_size, char *err, size_t errlen)
{
    struct mc *mc = calloc(1, sizeof(*mc));

    if (mc == NULL || (mc->master = memcached_create(NULL)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    set_behaviors(mc->master);
    if (add_servers(mc->master, servers, err, errlen) != 0)
        goto fail;
    mc->pool = memcached_pool_create(mc->master, 1, (int)pool_size);
    if (mc->pool == NULL) {
        snprintf(err, errlen, "cannot create the memcached pool");
        goto fail;
    }
    mc->healthy = 1;
    return mc;
fail:
    mc_free(mc);
    return NULL;
}

void
mc_free(struct mc *mc)
{
    if (mc == NULL)
        return;
    if (mc->pool != NULL)
        memcached_pool_destroy(mc->pool);
    if (mc->master != NULL)
        memcached_free(mc->master);
    free(mc);
}

/* Log the first failure and the recovery, not every request. */
static void
note_result(struct mc *mc, int ok, const char *what)
{
    int was = __atomic_exchange_n(&mc->healthy, ok, __ATOMIC_ACQ_REL);

    if (was && !ok) {
        cJSON *f = cJSON_CreateObject();
        if (f != NULL)
            cJSON_AddStringToObject(f, "error", what);
        log_event(LOG_LEVEL_WARN, "memcached_lost", f);
    } else if (!was && ok) {
        log_event(LOG_LEVEL_INFO, "memcached_back", NULL);
    }
}

static memcached_st *
pool_take(struct mc *mc)
{
    memcached_return_t rc;
    memcached_st *m = memcached_pool_pop(mc->pool, true, &rc);

    return rc == MEMCACHED_SUCCESS ? m : NULL;
}

enum mc_result
mc_get(struct mc *mc, const char *key, size_t keylen, char **val,
    size_t *len)
{
    char mkey[MC_KEY_MAX + 1];
    size_t mlen = mc_key(key, keylen, mkey), vlen = 0;
    memcached_st *m = pool_take(mc);
    memcached_return_t rc;
    uint32_t flags = 0;
    char *v;

    if (m == NULL)
        return MC_ERROR;
    v = memcached_get(m, mkey, mlen, &vlen, &flags, &rc);
    memcached_pool_push(mc->pool, m);
    if (rc == MEMCACHED_SUCCESS && v != NULL) {
        note_result(mc, 1, NULL);
        *val = v;
        *len = vlen;
        return MC_HIT;
    }
    free(v);
    if (rc == MEMCACHED_NOTFOUND) {
        note_result(mc, 1, NULL);
        return MC_MISS;
    }
    note_result(mc, 0, memcached_strerror(NULL, rc));
    return MC_ERROR;
}

int
mc_set(struct mc *mc, const char *key, size_t keylen, const void *val,
    size_t len, int64_t ttl_s)
{
    char mkey[MC_KEY_MAX + 1];
    size_t mlen = mc_key(key, keylen, mkey);
    memcached_st *m;
    memcached_return_t rc;

    if (len > MC_ITEM_MAX || ttl_s <= 0)
        return -1;
    /* memcached reads expiries over 30 days as absolute times. */
    if (ttl_s > 30 * 24 * 3600)
        ttl_s = 30 * 24 * 3600;
    if ((m = pool_take(mc)) == NULL)
        return -1;
    rc = memcached_set(m, mkey, mlen, val, len, (time_t)ttl_s, 0);
    memcached_pool_push(mc->pool, m);
    note_result(mc, rc == MEMCACHED_SUCCESS, memcached_strerror(NULL, rc));
    return rc == MEMCACHED_SUCCESS ? 0 : -1;
}

int
mc_add(struct mc *mc, const char *key, size_t keylen, const void *val,
    size_t len, int64_t ttl_s)
{
    char mkey[MC_KEY_MAX + 1];
    size_t mlen = mc_key(key, keylen, mkey);
    memcached_st *m = pool_take(mc);
    memcached_return_t rc;

    if (m == NULL)
        return -1;
    rc = memcached_add(m, mkey, mlen, val, len, (time_t)ttl_s, 0);
    memcached_pool_push(mc->pool, m);
    if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTSTORED ||
        rc == MEMCACHED_DATA_EXISTS) {
        note_result(mc, 1, NULL);
        return rc == MEMCACHED_SUCCESS ? 0 : 1;
    }
    note_result(mc, 0, memcached_strerror(NULL, rc));
    return -1;
}

int
mc_count(struct mc *mc, const char *key, size_t keylen, uint32_t delta,
    int64_t ttl_s, uint64_t *value)
{
    char mkey[MC_KEY_MAX + 1];
    size_t mlen = mc_key(key, keylen, mkey);
    memcached_st *m = pool_take(mc);
    memcached_return_t rc;

    if (m == NULL)
        return -1;
    if (ttl_s > 30 * 24 * 3600)
        ttl_s = 30 * 24 * 3600;
    rc = memcached_increment(m, mkey, mlen, delta, value);
    if (rc == MEMCACHED_NOTFOUND) {
        /* First of its window: create it; a racing add loses harmlessly. */
        rc = memcached_add(m, mkey, mlen, "0", 1, (time_t)ttl_s, 0);
        if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTSTORED ||
            rc == MEMCACHED_DATA_EXISTS)
            rc = memcached_increment(m, mkey, mlen, delta, value);
    }
    memcached_pool_push(mc->pool, m);
    note_result(mc, rc == MEMCACHED_SUCCESS, memcached_strerror(NULL, rc));
    return rc == MEMCACHED_SUCCESS ? 0 : -1;
}

int
mc_delete(struct mc *mc, const char *key, size_t keylen)
{
    char mkey[MC_KEY_MAX + 1];
    size_t mlen = mc_key(key, keylen, mkey);
    memcached_st *m = pool_take(mc);
    memcached_return_t rc;

    if (m == NULL)
        return -1;
    rc = memcached_delete(m, mkey, mlen, 0);
    memcached_pool_push(mc->pool, m);
    return rc == MEMCACHED_SUCCESS ? 0 : -1;
}

int
mc_ping(struct mc *mc)
{
    memcached_st *m = pool_take(mc);
    memcached_return_t rc;

    if (m == NULL)
        return -1;
    rc = memcached_version(m);
    memcached_pool_push(mc->pool, m);
    note_result(mc, rc == MEMCACHED_SUCCESS, memcached_strerror(NULL, rc));
    return rc == MEMCACHED_SUCCESS ? 0 : -1;
}

int
mc_healthy(struct mc *mc)
{
    return __atomic_load_n(&mc->healthy, __ATOMIC_ACQUIRE);
}
