#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmemcached/memcached.h>
#include <libmemcachedutil-1.0/pool.h>

#include "log.h"
#include "mc.h"
#include "mcget.h"
#include "metrics.h"
#include "util.h"

#define KEY_PREFIX "hp1:"
/* Readiness asks each server for this key: a round trip, found or not. */
#define PROBE_KEY KEY_PREFIX "readyz-probe"
#define PROBE_TIMEOUT_MS 200
/* A server that failed is skipped by the pool's handles for this long. */
#define RETRY_TIMEOUT_S 2
/*
 * Back only after this long without a failed exchange: the pool's handles
 * skip a server until their own retry timeout has run out, each from its
 * own last failure, so "up" then means tiles are stored there again, and
 * the handles still catching up do not make it flap.
 */
#define BACK_AFTER_MS ((RETRY_TIMEOUT_S + 1) * 1000L)
/* A cache must answer fast or not at all: connect, send and receive. */
#define IO_TIMEOUT_MS 250

/*
 * One memcached server: its health, and a handle of its own for readiness
 * probes, apart from the pool.
 */
struct mc_probe {
    memcached_st *m;
    pthread_mutex_t lock;
    int64_t last_fail_ms; /* atomic: the last failed exchange; 0: none */
    int up;               /* atomic: what was last logged of it */
    char name[300];       /* host:port */
};

struct mc {
    memcached_st *master;
    /*
     * Picks a key's server for mcget; read-only after start. A clone, as
     * the pool's handles are: the master's own ketama map places keys
     * differently from its clones'.
     */
    memcached_st *picker;
    struct mcget *getter; /* gets, on each thread's connections */
    memcached_pool_st *pool;
    struct mc_probe *probes; /* one per server, in libmemcached's order */
    uint32_t nprobes;
    struct metrics *metrics; /* atomic: set after the sync thread starts */
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

static int
is_socket_path(const char *name)
{
    return name[0] == '/';
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
    /* gets answer with a CAS id (mc_gets); plain gets go through mcget. */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);
    /* A cache must answer fast or not at all. */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, 250);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 250);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, 250000);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SND_TIMEOUT, 250000);
    /* After a failure skip the server for 2 s, then try it again. */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, 1);
    memcached_behavior_set(
        m, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, RETRY_TIMEOUT_S);
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

        if (is_socket_path(item)) {
            r = memcached_server_add_unix_socket(m, item);
            if (r != MEMCACHED_SUCCESS) {
                snprintf(err, errlen, "MEMCACHED_SERVERS: cannot add %s: %s",
                    item, memcached_strerror(m, r));
                goto done;
            }
            continue;
        }
        if (colon != NULL) {
            *colon = '\0';
            if (util_parse_long(colon + 1, 1, 65535, &port) != 0) {
                snprintf(
                    err, errlen, "MEMCACHED_SERVERS: bad port in '%s'", item);
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

/* How MEMCACHED_SERVERS named s: host:port, or a Unix socket's path. */
static void
server_label(const memcached_instance_st *s, char *out, size_t outlen)
{
    if (is_socket_path(memcached_server_name(s)))
        snprintf(out, outlen, "%s", memcached_server_name(s));
    else
        snprintf(out, outlen, "%s:%u", memcached_server_name(s),
            (unsigned)memcached_server_port(s));
}

/*
 * A handle of its own for each server: a probe must reach that server and
 * no other, must not wait on the pool, and must try again at once (the
 * pool's handles skip a failed server for a while).
 */
static int
probes_new(struct mc *mc, char *err, size_t errlen)
{
    uint32_t i, n = memcached_server_count(mc->master);

    if ((mc->probes = calloc(n, sizeof(*mc->probes))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (i = 0; i < n; i++) {
        const memcached_instance_st *s =
            memcached_server_instance_by_position(mc->master, i);
        struct mc_probe *p = &mc->probes[i];

        server_label(s, p->name, sizeof(p->name));
        p->up = 1;
        if ((p->m = memcached_create(NULL)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        mc->nprobes = i + 1;
        pthread_mutex_init(&p->lock, NULL);
        memcached_behavior_set(p->m, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
        memcached_behavior_set(
            p->m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, PROBE_TIMEOUT_MS);
        memcached_behavior_set(
            p->m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, PROBE_TIMEOUT_MS);
        memcached_behavior_set(
            p->m, MEMCACHED_BEHAVIOR_RCV_TIMEOUT, PROBE_TIMEOUT_MS * 1000);
        memcached_behavior_set(
            p->m, MEMCACHED_BEHAVIOR_SND_TIMEOUT, PROBE_TIMEOUT_MS * 1000);
        memcached_behavior_set(p->m, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0);
        if ((is_socket_path(memcached_server_name(s))
                    ? memcached_server_add_unix_socket(
                          p->m, memcached_server_name(s))
                    : memcached_server_add(p->m, memcached_server_name(s),
                          memcached_server_port(s))) != MEMCACHED_SUCCESS) {
            snprintf(err, errlen, "MEMCACHED_SERVERS: cannot add %s", p->name);
            return -1;
        }
    }
    return 0;
}

/* The servers as libmemcached numbers them, for mcget. */
static int
getter_new(struct mc *mc, char *err, size_t errlen)
{
    uint32_t i, n = memcached_server_count(mc->master);
    const char **hosts = calloc(n ? n : 1, sizeof(*hosts));
    unsigned *ports = calloc(n ? n : 1, sizeof(*ports));

    if ((mc->picker = memcached_clone(NULL, mc->master)) != NULL &&
        hosts != NULL && ports != NULL) {
        for (i = 0; i < n; i++) {
            const memcached_instance_st *s =
                memcached_server_instance_by_position(mc->picker, i);
            hosts[i] = memcached_server_name(s);
            ports[i] = (unsigned)memcached_server_port(s);
        }
        /* Nothing the proxy stores is larger than an item. */
        mc->getter = mcget_new(
            n, hosts, ports, IO_TIMEOUT_MS, RETRY_TIMEOUT_S, MC_ITEM_MAX);
    }
    free(hosts);
    free(ports);
    if (mc->getter == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
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
    if (getter_new(mc, err, errlen) != 0)
        goto fail;
    mc->pool = memcached_pool_create(mc->master, 1, (int)pool_size);
    if (mc->pool == NULL) {
        snprintf(err, errlen, "cannot create the memcached pool");
        goto fail;
    }
    if (probes_new(mc, err, errlen) != 0)
        goto fail;
    return mc;
fail:
    mc_free(mc);
    return NULL;
}

void
mc_free(struct mc *mc)
{
    uint32_t i;

    if (mc == NULL)
        return;
    for (i = 0; i < mc->nprobes; i++) {
        memcached_free(mc->probes[i].m);
        pthread_mutex_destroy(&mc->probes[i].lock);
    }
    free(mc->probes);
    if (mc->pool != NULL)
        memcached_pool_destroy(mc->pool);
    mcget_free(mc->getter);
    if (mc->picker != NULL)
        memcached_free(mc->picker);
    if (mc->master != NULL)
        memcached_free(mc->master);
    free(mc);
}

/* The server index consistent hashing picks for a memcached key. */
static uint32_t
server_of(struct mc *mc, const char *mkey, size_t mlen)
{
    return memcached_generate_hash(mc->picker, mkey, mlen);
}

/*
 * A round trip to server i on its probe handle: a get answered "found" or
 * "not found". Called with the probe's lock held. A kept connection the
 * server closed while it was away (killed, restarted) fails at once: that
 * one failure is retried on a new connection; a server that did not answer
 * in time has had its chance.
 */
static int
probe_answers(struct mc_probe *p, const char **what)
{
    memcached_return_t rc;
    size_t vlen = 0;
    uint32_t flags = 0;
    int64_t t0 = util_mono_ms();
    int tries = 0;
    char *v;

    for (;;) {
        v = memcached_get(
            p->m, PROBE_KEY, sizeof(PROBE_KEY) - 1, &vlen, &flags, &rc);
        free(v);
        if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND)
            return 1;
        memcached_quit(p->m); /* reconnect next time, not half-read */
        if (++tries == 2 || util_mono_ms() - t0 >= PROBE_TIMEOUT_MS / 2) {
            *what = memcached_strerror(NULL, rc);
            return 0;
        }
    }
}

/*
 * Whether a pool handle's failure with server i means the server is gone:
 * the handle may have held a connection the server closed while it was
 * away and failed on it once back, which says nothing of the server now.
 * A fresh probe decides; while another thread probes, its verdict will.
 */
static int
confirmed_down(struct mc *mc, uint32_t i)
{
    struct mc_probe *p = &mc->probes[i];
    const char *what = NULL;
    int down;

    if (pthread_mutex_trylock(&p->lock) != 0)
        return 0;
    down = !probe_answers(p, &what);
    pthread_mutex_unlock(&p->lock);
    return down;
}

/* What one exchange with a server says of its health. */
enum verdict {
    ANSWERED,    /* it answered: found or not, stored or not */
    FAILED,      /* a fresh connection failed, or a run of them: it is gone */
    FAILED_KEPT, /* a pool handle failed: maybe on a stale connection */
    SKIPPED,     /* a pool handle still waits out its retry timeout */
};

/*
 * One exchange with server i: log its first failure and its recovery, once
 * per server and change, not every request (one server of several down
 * must not make the others' answers look like a recovery). A failure takes
 * it down at once when it is sure, or when a probe confirms a pool
 * handle's; a handle still skipping it changes nothing. An answer brings it
 * back only BACK_AFTER_MS after the last failure or skip, whoever saw it
 * (mcget, a pool handle, a probe).
 */
static void
note_server(struct mc *mc, uint32_t i, enum verdict v, const char *what)
{
    struct mc_probe *p;
    int64_t now, last;
    int ok = v == ANSWERED;
    cJSON *f;

    if (i >= mc->nprobes)
        return;
    p = &mc->probes[i];
    now = util_mono_ms();
    if (!ok) {
        __atomic_store_n(&p->last_fail_ms, now, __ATOMIC_RELAXED);
        if (v != FAILED && __atomic_load_n(&p->up, __ATOMIC_ACQUIRE) &&
            (v == SKIPPED || !confirmed_down(mc, i)))
            return;
    } else {
        last = __atomic_load_n(&p->last_fail_ms, __ATOMIC_RELAXED);
        if (last != 0 && now - last < BACK_AFTER_MS)
            return;
    }
    if (__atomic_exchange_n(&p->up, ok, __ATOMIC_ACQ_REL) == ok)
        return;
    if ((f = cJSON_CreateObject()) != NULL) {
        cJSON_AddStringToObject(f, "server", p->name);
        if (!ok)
            cJSON_AddStringToObject(f, "error", what ? what : "failed");
    }
    log_event(ok ? LOG_LEVEL_INFO : LOG_LEVEL_WARN,
        ok ? "memcached_back" : "memcached_lost", f);
}

void
mc_set_metrics(struct mc *mc, struct metrics *m)
{
    /* Published: the cache's sync thread is already running. */
    __atomic_store_n(&mc->metrics, m, __ATOMIC_RELEASE);
}

/* One operation's latency since t0_us (util_mono_us) and result. */
static void
observe(struct mc *mc, int64_t t0_us, int ok)
{
    metrics_memcached(__atomic_load_n(&mc->metrics, __ATOMIC_ACQUIRE),
        (double)(util_mono_us() - t0_us) / 1e6, ok);
}

static memcached_st *
pool_take(struct mc *mc)
{
    memcached_return_t rc;
    memcached_st *m = memcached_pool_pop(mc->pool, true, &rc);

    return rc == MEMCACHED_SUCCESS ? m : NULL;
}

enum mc_result
mc_get(struct mc *mc, const char *key, size_t keylen, const char **val,
    size_t *len)
{
    char mkey[MC_KEY_MAX + 1];
    size_t mlen = mc_key(key, keylen, mkey), vlen = 0;
    int64_t t0 = util_mono_us();
    const char *why = NULL;
    enum mcget_result r;
    enum verdict health;
    const char *v = NULL;

    uint32_t server = server_of(mc, mkey, mlen);

    /* libmemcached's ketama picks the server, mcget asks it. */
    r = mcget_get(mc->getter, server, mkey, mlen, &v, &vlen, &why);
    observe(mc, t0, r != MCGET_ERROR);
    /* One slow answer is an error, not yet a server lost (mcget.h). */
    health = r != MCGET_ERROR || !mcget_server_down(mc->getter, server)
        ? ANSWERED
        : FAILED;
    note_server(mc, server, health, why);
    switch (r) {
    case MCGET_HIT:
        *val = v;
        *len = vlen;
        return MC_HIT;
    case MCGET_MISS: return MC_MISS;
    case MCGET_TOO_LARGE: return MC_TOO_LARGE;
    default: return MC_ERROR;
    }
}

/*
 * What one operation through the pool does with its handle; the mkey is
 * the memcached key (mc_key). The wrapper below takes and gives back the
 * handle, times the operation and notes the server's health.
 */
struct pool_op {
    const void *val;
    size_t len;
    time_t ttl;
    uint64_t cas;
    uint32_t delta;
    uint64_t *value; /* mc_count's result */
    void *buf;       /* mc_gets' copy of the value */
    size_t bufsize, got;
    enum mc_result found; /* mc_gets' answer */
};

typedef memcached_return_t pool_fn(
    memcached_st *m, const char *mkey, size_t mlen, struct pool_op *op);

/* The server answered (found or not, stored or not): it is up. */
static int
answered(memcached_return_t rc)
{
    return rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND ||
        rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS ||
        rc == MEMCACHED_END;
}

static enum verdict
pool_verdict(memcached_return_t rc)
{
    if (answered(rc))
        return ANSWERED;
    return rc == MEMCACHED_SERVER_TEMPORARILY_DISABLED ||
            rc == MEMCACHED_SERVER_MARKED_DEAD
        ? SKIPPED
        : FAILED_KEPT;
}

static memcached_return_t
pool_do(struct mc *mc, const char *key, size_t keylen, pool_fn *fn,
    struct pool_op *op)
{
    char mkey[MC_KEY_MAX + 1];
    size_t mlen = mc_key(key, keylen, mkey);
    int64_t t0 = util_mono_us();
    memcached_st *m = pool_take(mc);
    memcached_return_t rc;

    if (m == NULL) {
        observe(mc, t0, 0);
        return MEMCACHED_FAILURE;
    }
    rc = fn(m, mkey, mlen, op);
    memcached_pool_push(mc->pool, m);
    observe(mc, t0, answered(rc));
    note_server(mc, server_of(mc, mkey, mlen), pool_verdict(rc),
        memcached_strerror(NULL, rc));
    return rc;
}

/* memcached reads expiries over 30 days as absolute times. */
static time_t
relative_ttl(int64_t ttl_s)
{
    return (time_t)(ttl_s > 30 * 24 * 3600 ? 30 * 24 * 3600 : ttl_s);
}

static memcached_return_t
do_set(memcached_st *m, const char *mkey, size_t mlen, struct pool_op *op)
{
    return memcached_set(m, mkey, mlen, op->val, op->len, op->ttl, 0);
}

int
mc_set(struct mc *mc, const char *key, size_t keylen, const void *val,
    size_t len, int64_t ttl_s)
{
    struct pool_op op = {.val = val, .len = len, .ttl = relative_ttl(ttl_s)};

    if (len > MC_ITEM_MAX || ttl_s <= 0)
        return -1;
    return pool_do(mc, key, keylen, do_set, &op) == MEMCACHED_SUCCESS ? 0 : -1;
}

static memcached_return_t
do_add(memcached_st *m, const char *mkey, size_t mlen, struct pool_op *op)
{
    return memcached_add(m, mkey, mlen, op->val, op->len, op->ttl, 0);
}

int
mc_add(struct mc *mc, const char *key, size_t keylen, const void *val,
    size_t len, int64_t ttl_s)
{
    struct pool_op op = {.val = val, .len = len, .ttl = relative_ttl(ttl_s)};
    memcached_return_t rc = pool_do(mc, key, keylen, do_add, &op);

    if (rc == MEMCACHED_SUCCESS)
        return 0;
    return rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS ? 1 : -1;
}

static memcached_return_t
do_count(memcached_st *m, const char *mkey, size_t mlen, struct pool_op *op)
{
    memcached_return_t rc =
        memcached_increment(m, mkey, mlen, op->delta, op->value);

    if (rc == MEMCACHED_NOTFOUND) {
        /* First of its window: create it; a racing add loses harmlessly. */
        rc = memcached_add(m, mkey, mlen, "0", 1, op->ttl, 0);
        if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTSTORED ||
            rc == MEMCACHED_DATA_EXISTS)
            rc = memcached_increment(m, mkey, mlen, op->delta, op->value);
    }
    return rc;
}

int
mc_count(struct mc *mc, const char *key, size_t keylen, uint32_t delta,
    int64_t ttl_s, uint64_t *value)
{
    struct pool_op op = {
        .ttl = relative_ttl(ttl_s), .delta = delta, .value = value};

    return pool_do(mc, key, keylen, do_count, &op) == MEMCACHED_SUCCESS ? 0
                                                                        : -1;
}

static memcached_return_t
do_gets(memcached_st *m, const char *mkey, size_t mlen, struct pool_op *op)
{
    const char *keys[1] = {mkey};
    memcached_result_st result, *r;
    memcached_return_t rc;

    if (memcached_result_create(m, &result) == NULL)
        return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
    rc = memcached_mget(m, keys, &mlen, 1);
    if (rc == MEMCACHED_SUCCESS) {
        if ((r = memcached_fetch_result(m, &result, &rc)) != NULL) {
            op->got = memcached_result_length(r);
            op->cas = memcached_result_cas(r);
            if (op->got > op->bufsize) {
                op->found = MC_TOO_LARGE;
            } else {
                memcpy(op->buf, memcached_result_value(r), op->got);
                op->found = MC_HIT;
            }
            /* Read to the end, so that the handle is in step again. */
            while (memcached_fetch_result(m, &result, &rc) != NULL)
                ;
            rc = MEMCACHED_SUCCESS;
        } else if (rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND) {
            op->found = MC_MISS;
            rc = MEMCACHED_SUCCESS;
        }
    }
    memcached_result_free(&result);
    return rc;
}

enum mc_result
mc_gets(struct mc *mc, const char *key, size_t keylen, void *buf,
    size_t bufsize, size_t *len, uint64_t *cas)
{
    struct pool_op op = {.buf = buf, .bufsize = bufsize, .found = MC_ERROR};

    if (pool_do(mc, key, keylen, do_gets, &op) != MEMCACHED_SUCCESS)
        return MC_ERROR;
    *len = op.got;
    *cas = op.cas;
    return op.found;
}

static memcached_return_t
do_cas(memcached_st *m, const char *mkey, size_t mlen, struct pool_op *op)
{
    return memcached_cas(m, mkey, mlen, op->val, op->len, op->ttl, 0, op->cas);
}

int
mc_cas(struct mc *mc, const char *key, size_t keylen, const void *val,
    size_t len, int64_t ttl_s, uint64_t cas)
{
    struct pool_op op = {
        .val = val, .len = len, .ttl = relative_ttl(ttl_s), .cas = cas};
    memcached_return_t rc = pool_do(mc, key, keylen, do_cas, &op);

    if (rc == MEMCACHED_SUCCESS)
        return 0;
    /* Changed or gone meanwhile: the caller reads again. */
    return rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTFOUND ? 1 : -1;
}

static memcached_return_t
do_delete(memcached_st *m, const char *mkey, size_t mlen, struct pool_op *op)
{
    (void)op;
    return memcached_delete(m, mkey, mlen, 0);
}

int
mc_delete(struct mc *mc, const char *key, size_t keylen)
{
    struct pool_op op = {0};
    memcached_return_t rc = pool_do(mc, key, keylen, do_delete, &op);

    if (rc == MEMCACHED_SUCCESS)
        return 0;
    return rc == MEMCACHED_NOTFOUND ? 1 : -1;
}

/*
 * Server i's health as its probe finds it (probe_answers), for readiness
 * and the gauges; its verdict is noted too, so that the events stay
 * current while no request touches memcached.
 */
static int
probe_one(struct mc *mc, uint32_t i)
{
    struct mc_probe *p = &mc->probes[i];
    const char *what = NULL;
    int ok;

    pthread_mutex_lock(&p->lock);
    ok = probe_answers(p, &what);
    pthread_mutex_unlock(&p->lock);
    /* Up again only once it has answered for a while (note_server). */
    note_server(mc, i, ok ? ANSWERED : FAILED, what);
    return __atomic_load_n(&p->up, __ATOMIC_ACQUIRE) ? 0 : -1;
}

int
mc_ping(struct mc *mc, char *down, size_t downlen)
{
    uint32_t i;
    int ndown = 0;
    size_t used = 0;

    if (downlen > 0)
        down[0] = '\0';
    for (i = 0; i < mc->nprobes; i++) {
        if (probe_one(mc, i) == 0)
            continue;
        ndown++;
        if (used < downlen) {
            int w = snprintf(down + used, downlen - used, "%s%s",
                used > 0 ? "," : "", mc->probes[i].name);

            if (w > 0)
                used += (size_t)w;
        }
    }
    return ndown;
}

int
mc_server_count(const struct mc *mc)
{
    return (int)mc->nprobes;
}

int
mc_server_for(
    struct mc *mc, const char *key, size_t keylen, char *out, size_t outlen)
{
    char mkey[MC_KEY_MAX + 1];
    size_t mlen = mc_key(key, keylen, mkey);
    const memcached_instance_st *s;
    memcached_return_t rc = MEMCACHED_SUCCESS;

    /* rc is only written on failure by some libmemcached versions. */
    s = memcached_server_by_key(mc->picker, mkey, mlen, &rc);
    if (s == NULL || memcached_failed(rc))
        return -1;
    server_label(s, out, outlen);
    return 0;
}

int
mc_healthy(struct mc *mc)
{
    uint32_t i;

    for (i = 0; i < mc->nprobes; i++)
        if (__atomic_load_n(&mc->probes[i].up, __ATOMIC_ACQUIRE))
            return 1;
    return 0;
}

const char *
mc_server_name(const struct mc *mc, int i)
{
    return i >= 0 && (uint32_t)i < mc->nprobes ? mc->probes[i].name : NULL;
}

int
mc_server_up(struct mc *mc, int i)
{
    return i >= 0 && (uint32_t)i < mc->nprobes &&
        __atomic_load_n(&mc->probes[i].up, __ATOMIC_ACQUIRE);
}
