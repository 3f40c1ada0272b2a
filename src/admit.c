#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admit.h"
#include "log.h"
#include "mac.h"
#include "mc.h"
#include "metrics.h"
#include "ratelimit.h"
#include "sealcount.h"
#include "siphash.h"
#include "util.h"

#define BUCKETS_FLOOR 100000 /* rate-limit buckets: even unconfigured */
#define TABLE_FLOOR 4096     /* counters, cache-only scopes, runs */
#define XFF_HOPS_MAX 64
#define ADDR_MAX 64
#define NAME_MAX_ (ADMIT_SCOPE_NAME_MAX + 4) /* "qi:", "i:", "p:" + name */
#define REASON_MAX 256 /* what flight_result.error holds */
#define FULL_LOG_S 60  /* "table full" logged at most this often */

/* ------------------------------------------------------------ bounded tables
 * Named entries found by a keyed hash (names are índices and parameters a
 * client picks), at most cap of them: the caller decides what happens when
 * it is full (refuse, or make room by its own rule). Entries are allocated
 * when first added; cap only bounds them.
 */

struct tslot {
    struct tslot *chain;
    uint64_t hash;
    size_t at; /* index in table.all */
    char name[NAME_MAX_ + 1];
};

struct table {
    struct tslot **buckets;
    size_t nbuckets;    /* a power of two */
    struct tslot **all; /* n of them, in no order */
    size_t n, cap;
    size_t entry_size; /* of a struct that starts with a tslot */
};

static int
table_init(struct table *t, size_t cap, size_t entry_size)
{
    memset(t, 0, sizeof(*t));
    t->entry_size = entry_size;
    for (t->nbuckets = 16; t->nbuckets < cap; t->nbuckets <<= 1)
        ;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    t->all = calloc(cap, sizeof(*t->all));
    t->cap = cap;
    return t->buckets != NULL && t->all != NULL ? 0 : -1;
}

static void
table_cleanup(struct table *t)
{
    size_t i;

    for (i = 0; i < t->n; i++)
        free(t->all[i]);
    free(t->all);
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

static struct tslot **
table_bucket(struct table *t, uint64_t hash)
{
    return &t->buckets[hash & (t->nbuckets - 1)];
}

/* Room for cap entries from now on (never fewer than now). 0 or -1. */
static int
table_grow(struct table *t, size_t cap)
{
    struct tslot **all, **buckets;
    size_t nbuckets, i;

    if (cap <= t->cap)
        return 0;
    for (nbuckets = t->nbuckets; nbuckets < cap; nbuckets <<= 1)
        ;
    if ((all = realloc(t->all, cap * sizeof(*all))) == NULL)
        return -1;
    t->all = all;
    if (nbuckets != t->nbuckets) {
        if ((buckets = calloc(nbuckets, sizeof(*buckets))) == NULL)
            return -1;
        free(t->buckets);
        t->buckets = buckets;
        t->nbuckets = nbuckets;
        for (i = 0; i < t->n; i++) {
            struct tslot **b = table_bucket(t, t->all[i]->hash);

            t->all[i]->chain = *b;
            *b = t->all[i];
        }
    }
    t->cap = cap;
    return 0;
}

static void *
table_find(struct table *t, const char *name, uint64_t *hash)
{
    struct tslot *e;

    *hash = siphash_keyed(name, strlen(name));
    for (e = *table_bucket(t, *hash); e != NULL; e = e->chain)
        if (e->hash == *hash && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

/* A zeroed entry for name (not in t), or NULL: full, or no memory. */
static void *
table_add(struct table *t, const char *name, uint64_t hash)
{
    struct tslot *e, **b;

    if (t->n >= t->cap || (e = calloc(1, t->entry_size)) == NULL)
        return NULL;
    util_strlcpy(e->name, name, sizeof(e->name));
    e->hash = hash;
    b = table_bucket(t, hash);
    e->chain = *b;
    *b = e;
    e->at = t->n;
    t->all[t->n++] = e;
    return e;
}

static void
table_del(struct table *t, void *entry)
{
    struct tslot *e = entry, **p = table_bucket(t, e->hash);

    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    t->all[e->at] = t->all[--t->n];
    t->all[e->at]->at = e->at;
    free(e);
}

/* ------------------------------------------------------------------ state */

/* A fixed-window count kept in process (no memcached, or it failed). */
struct counter {
    struct tslot s; /* "qi:<indice>" */
    int64_t window; /* its start, Unix seconds */
    int64_t ends;   /* reusable from then on */
    uint64_t count;
};

enum scope_kind { SCOPE_ALL, SCOPE_INDICE, SCOPE_PARAMS };
static const char *const scope_names[] = {"all", "indice", "params"};
static const char scope_prefix[] = {'\0', 'i', 'p'};

struct cache_only {
    struct tslot s; /* "i:<indice>", "p:<plan class>" */
    enum scope_kind kind;
    int from_quota; /* the counts refuse anyway */
    int64_t until;  /* Unix seconds; 0: not in it */
    char reason[REASON_MAX];
};

/* HERE's denials in a row for one scope. */
struct deny_run {
    struct tslot s; /* "i:<indice>" (429), "p:<plan>" (403) */
    long count;
    uint64_t touched; /* admit.tick when last counted */
};

/*
 * What the settings say; a reload swaps in a new one whole. The specs,
 * overrides and trusted proxies are the settings' own, parsed when they
 * were set (settings.h): a settings object lives until the process ends.
 */
struct rules {
    struct rate_spec index_spec, ip_spec, quota_spec;
    const struct rate_overrides *index_over, *quota_over;
    const struct acl *trusted;
    int shared_rate;
    long budget;
    long deny_threshold;
    long cache_only_s;
    int ipv6_prefix;
    size_t table_cap;    /* of each table below */
    struct rules *older; /* replaced: still read by late requests */
};

struct admit {
    struct rules *rules; /* atomic; never freed before l */
    struct ratelimiter *buckets;
    struct mc *mc;           /* NULL: count in process */
    struct mac *mac;         /* seals quota and budget counts */
    struct metrics *metrics; /* NULL: rejections not counted */

    pthread_mutex_t lock;        /* everything below */
    struct table counters;       /* struct counter */
    int64_t counters_full_until; /* no window ends before: no room */
    int64_t budget_window;       /* HERE_DAILY_BUDGET in process */
    uint64_t budget_count;
    struct cache_only all;
    struct table scopes; /* struct cache_only */
    struct table runs;   /* struct deny_run */
    uint64_t tick;
    long all_run;       /* 401, or 403 with default parameters */
    long volume_run;    /* 429, whatever the índice */
    int volume_several; /* ... from more than one índice */
    char volume_first[RATE_NAME_MAX + 1];
    int64_t full_logged;       /* a table-full event, Unix seconds */
    uint64_t quota_table_full; /* misses refused: no counter free */
    uint64_t scopes_evicted;   /* cache-only scopes ended for room */
};

/* ------------------------------------------------------------- metrics hooks
 * The one place each state change is seen; a metrics module can count here.
 */

/* Cache-only mode entered (entering 1) or left (0) for a scope. */
static void
hook_cache_only_changed(enum scope_kind kind, const char *name, int entering,
    const char *cause, int status, int64_t until, const char *reason,
    int evicted, int64_t now_s)
{
    cJSON *f = cJSON_CreateObject();

    if (f != NULL) {
        cJSON_AddStringToObject(f, "scope", scope_names[kind]);
        if (kind == SCOPE_INDICE)
            cJSON_AddStringToObject(f, "indice", name);
        else if (kind == SCOPE_PARAMS)
            cJSON_AddStringToObject(f, "params", name);
        if (entering) {
            cJSON_AddStringToObject(f, "cause", cause);
            if (status != 0)
                cJSON_AddNumberToObject(f, "status", status);
            cJSON_AddStringToObject(f, "reason", reason);
            cJSON_AddNumberToObject(f, "until", (double)until);
            cJSON_AddNumberToObject(
                f, "retry_after_s", (double)(until - now_s));
        } else if (evicted) {
            cJSON_AddBoolToObject(f, "evicted", 1);
        }
    }
    log_event(entering ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
        entering ? "cache_only_start" : "cache_only_end", f);
}

/* A table is full (which, and its size); at most once a FULL_LOG_S. */
static void
hook_table_full(struct admit *l, const char *table, size_t cap, int64_t now_s)
{
    cJSON *f;

    if (l->full_logged != 0 && now_s - l->full_logged < FULL_LOG_S)
        return;
    l->full_logged = now_s;
    if ((f = cJSON_CreateObject()) != NULL) {
        cJSON_AddStringToObject(f, "table", table);
        cJSON_AddNumberToObject(f, "size", (double)cap);
    }
    log_event(LOG_LEVEL_WARN, "admit_table_full", f);
}

/* ---------------------------------------------------------------- creation */

static void
rules_free(struct rules *r)
{
    while (r != NULL) {
        struct rules *older = r->older;

        free(r);
        r = older;
    }
}

static struct rules *
rules_new(const struct settings *cfg, char *err, size_t errlen)
{
    struct rules *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->index_spec = cfg->index_rate;
    r->ip_spec = cfg->ip_rate;
    r->quota_spec = cfg->quota;
    r->index_over = &cfg->index_rates;
    r->quota_over = &cfg->quotas;
    r->trusted = cfg->trusted_acl;
    r->shared_rate = strcmp(cfg->rate_limit_shared, "memcached") == 0;
    r->budget = cfg->here_daily_budget;
    r->deny_threshold = cfg->here_deny_threshold;
    r->cache_only_s = cfg->here_cache_only_s;
    r->ipv6_prefix = (int)cfg->rate_limit_ipv6_prefix;
    /*
     * Room for every índice the configuration names or lets have series
     * of their own, over a floor: the índices a client can pick beyond
     * those find the tables full (refused, or making room by LRU).
     */
    r->table_cap = TABLE_FLOOR + (size_t)cfg->metrics_max_indices +
        cfg->indices_allowed.n + token_table_count(cfg->client_token_table) +
        r->index_over->n + r->quota_over->n;
    return r;
}

static const struct rules *
rules_of(const struct admit *l)
{
    return __atomic_load_n(&l->rules, __ATOMIC_ACQUIRE);
}

struct admit *
admit_new(const struct settings *cfg, char *err, size_t errlen)
{
    struct admit *l = calloc(1, sizeof(*l));
    size_t cap;

    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&l->lock, NULL);
    if ((l->rules = rules_new(cfg, err, errlen)) == NULL)
        goto fail;
    cap = l->rules->table_cap;
    if ((l->buckets = ratelimiter_new(BUCKETS_FLOOR + cap)) == NULL ||
        table_init(&l->counters, cap, sizeof(struct counter)) != 0 ||
        table_init(&l->scopes, cap, sizeof(struct cache_only)) != 0 ||
        table_init(&l->runs, cap, sizeof(struct deny_run)) != 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (*cfg->memcached_servers != '\0') {
        l->mc =
            mc_new(cfg->memcached_servers, (size_t)cfg->threads, err, errlen);
        if (l->mc == NULL)
            goto fail;
        if ((l->mac = mac_new_fleet(
                 cfg->cache_secret, settings_here_secret(cfg))) == NULL) {
            snprintf(err, errlen, "cannot set up the memcached MAC");
            goto fail;
        }
    }
    return l;
fail:
    admit_free(l);
    return NULL;
}

void
admit_set_metrics(struct admit *l, struct metrics *m)
{
    if (l != NULL)
        l->metrics = m;
}

void
admit_free(struct admit *l)
{
    if (l == NULL)
        return;
    rules_free(l->rules);
    ratelimiter_free(l->buckets);
    mc_free(l->mc);
    mac_free(l->mac);
    table_cleanup(&l->counters);
    table_cleanup(&l->scopes);
    table_cleanup(&l->runs);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

int
admit_reload(
    struct admit *l, const struct settings *cfg, char *err, size_t errlen)
{
    struct rules *r;
    int rc;

    if (l == NULL)
        return 0;
    if ((r = rules_new(cfg, err, errlen)) == NULL)
        return -1;
    /* More índices named: more room (the tables never shrink). */
    pthread_mutex_lock(&l->lock);
    rc = table_grow(&l->counters, r->table_cap) != 0 ||
        table_grow(&l->scopes, r->table_cap) != 0 ||
        table_grow(&l->runs, r->table_cap) != 0;
    if (rc == 0)
        l->counters_full_until = 0;
    pthread_mutex_unlock(&l->lock);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory");
        rules_free(r);
        return -1;
    }
    /* Buckets, counters and cache-only periods carry on under the new
     * rules; the old rules stay readable for requests still using them. */
    r->older = l->rules;
    __atomic_store_n(&l->rules, r, __ATOMIC_RELEASE);
    return 0;
}

int
admit_by_address(const struct admit *l)
{
    return l != NULL && rules_of(l)->ip_spec.limit > 0;
}

const struct acl *
admit_trusted(const struct admit *l)
{
    return l != NULL ? rules_of(l)->trusted : NULL;
}

void
admit_stats(struct admit *l, struct admit_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    out->quota_table_full = l->quota_table_full;
    out->scopes_evicted = l->scopes_evicted;
    out->table_size = l->counters.cap;
    pthread_mutex_unlock(&l->lock);
}

/* ---------------------------------------------------------------- counting */

/*
 * Forget the counters whose window has ended; 1 when that made room. When
 * none has, no window ends before the earliest end seen: the table is not
 * scanned again until then. Lock held.
 */
static int
counters_make_room(struct admit *l, int64_t now_s)
{
    int64_t earliest = INT64_MAX;
    size_t i = 0;

    if (now_s < l->counters_full_until)
        return 0;
    while (i < l->counters.n) {
        struct counter *c = (struct counter *)l->counters.all[i];

        if (c->ends <= now_s) {
            table_del(&l->counters, c); /* all[i] is another now */
            continue;
        }
        if (c->ends < earliest)
            earliest = c->ends;
        i++;
    }
    if (l->counters.n < l->counters.cap)
        return 1;
    l->counters_full_until = earliest;
    return 0;
}

/*
 * Count one in key's window in process. Returns the count including this
 * one, or 0 when the table is full of counts of windows still running:
 * refuse (a live count is never dropped, or its índice would start
 * over). Windows that ended are reused.
 */
static uint64_t
count_local(struct admit *l, const char *key, long period_s, int64_t now_s,
    int64_t window)
{
    struct counter *c;
    uint64_t value = 0, h;

    pthread_mutex_lock(&l->lock);
    if (strcmp(key, "budget") == 0) {
        /* One count for the fleet: never crowded out by índices. */
        if (l->budget_window != window) {
            l->budget_window = window;
            l->budget_count = 0;
        }
        value = ++l->budget_count;
    } else if ((c = table_find(&l->counters, key, &h)) != NULL ||
        ((l->counters.n < l->counters.cap || counters_make_room(l, now_s)) &&
            (c = table_add(&l->counters, key, h)) != NULL)) {
        if (c->window != window) {
            c->window = window;
            c->count = 0;
        }
        c->ends = window + period_s;
        value = ++c->count;
    }
    pthread_mutex_unlock(&l->lock);
    return value;
}

/*
 * Count one in key's fixed window of period_s at now_s: memcached when
 * there is one (shared by every instance, sealed so that only the fleet
 * can set it: sealcount.h), else (or when it fails) in process. Returns
 * the count including this one, 0 when it could not be counted (the
 * in-process table is full: refuse).
 */
static uint64_t
count_window(struct admit *l, const char *key, long period_s, int64_t now_s)
{
    int64_t window = now_s - now_s % period_s;
    char mkey[200];
    uint64_t value = 0;
    int n;

    n = snprintf(mkey, sizeof(mkey), "lim:%lld:%s", (long long)window, key);
    if (l->mc != NULL) {
        switch (sealcount_add(
            l->mc, l->mac, mkey, (size_t)n, 1, period_s + 60, &value)) {
        case SEALCOUNT_REPLACED:
            metrics_cache_rejected(
                l->metrics, METRICS_REJECT_COUNTER, mkey, (size_t)n);
            return value;
        case SEALCOUNT_OK: return value;
        default: break;
        }
    }
    return count_local(l, key, period_s, now_s, window);
}

/* ------------------------------------------------------------ rate limits */

/* One limit on one key; fills v. */
static void
take(struct admit *l, char kind, const char *name, const struct rate_spec *spec,
    int64_t now_ms, int64_t now_s, struct admit_verdict *v)
{
    char key[RATE_NAME_MAX + ADDR_MAX + 8];
    struct rate_decision d;
    int n;

    memset(v, 0, sizeof(*v));
    v->allowed = 1;
    if (spec->limit <= 0)
        return;
    n = snprintf(key, sizeof(key), "r%c:%s", kind, name);
    v->limited = 1;
    if (rules_of(l)->shared_rate && l->mc != NULL) {
        char mkey[200];
        int64_t window = now_s - now_s % spec->period_s;
        uint64_t count;
        int m =
            snprintf(mkey, sizeof(mkey), "lim:%lld:%s", (long long)window, key);

        if (mc_count(l->mc, mkey, (size_t)m, 1, spec->period_s + 60, &count) ==
            0) {
            v->limit = spec->limit;
            v->reset_s = window + spec->period_s - now_s;
            v->remaining =
                count >= (uint64_t)spec->limit ? 0 : spec->limit - (long)count;
            if (count > (uint64_t)spec->limit) {
                v->allowed = 0;
                v->retry_after_s = v->reset_s > 0 ? v->reset_s : 1;
            }
            return;
        }
        /* memcached failed: this instance's own buckets, not no limit. */
    }
    ratelimiter_take(l->buckets, key, (size_t)n, spec, now_ms, &d);
    v->allowed = d.allowed;
    v->limit = d.limit;
    v->remaining = d.remaining;
    v->reset_s = d.reset_s;
    v->retry_after_s = d.retry_after_s;
}

int
admit_request(struct admit *l, const char *indice, const char *client,
    int64_t now_ms, int64_t now_s, struct admit_verdict *out)
{
    struct admit_verdict by_ip, by_index;
    const struct rate_spec *spec;
    const struct rules *r;
    char addr_key[ADDR_MAX];

    memset(out, 0, sizeof(*out));
    out->allowed = 1;
    if (l == NULL)
        return 1;
    r = rules_of(l);
    spec = rate_overrides_find(r->index_over, indice, &r->index_spec);
    memset(&by_ip, 0, sizeof(by_ip));
    by_ip.allowed = 1;
    if (client != NULL && r->ip_spec.limit > 0) {
        admit_addr_key(client, r->ipv6_prefix, addr_key, sizeof(addr_key));
        take(l, 'a', addr_key, &r->ip_spec, now_ms, now_s, &by_ip);
    }
    if (!by_ip.allowed) {
        *out = by_ip;
        out->refused_by = "address";
        return 0;
    }
    take(l, 'i', indice, spec, now_ms, now_s, &by_index);
    if (!by_index.allowed) {
        *out = by_index;
        out->refused_by = "indice";
        return 0;
    }
    /* Both passed: the headers describe the one closer to refusing. */
    if (by_ip.limited &&
        (!by_index.limited || by_ip.remaining < by_index.remaining))
        *out = by_ip;
    else
        *out = by_index;
    return 1;
}

/* --------------------------------------------------------- cache-only mode */

/* The table name of a scope: "i:<indice>" or "p:<plan class>". */
static void
scope_key(enum scope_kind kind, const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%c:%s", scope_prefix[kind], name);
}

/* The scope of kind and name, or NULL (kind SCOPE_ALL: l->all). */
static struct cache_only *
co_find(struct admit *l, enum scope_kind kind, const char *name)
{
    char key[NAME_MAX_ + 1];
    uint64_t h;

    if (kind == SCOPE_ALL)
        return &l->all;
    scope_key(kind, name, key, sizeof(key));
    return table_find(&l->scopes, key, &h);
}

/* A scope's period is over (or cut short to make room): say so. */
static void
co_end(struct admit *l, struct cache_only *c, int evicted, int64_t now_s)
{
    hook_cache_only_changed(
        c->kind, c->s.name + 2, 0, NULL, 0, 0, NULL, evicted, now_s);
    table_del(&l->scopes, c);
}

/*
 * Room for one more scope: the ended ones go; when every one is running,
 * the one whose end is nearest goes first, a quota's before a denial's
 * (a spent quota refuses by its count anyway). Counted and logged: never
 * the whole proxy instead. Lock held.
 */
static void
co_make_room(struct admit *l, int64_t now_s)
{
    struct cache_only *victim = NULL;
    size_t i = 0;

    while (i < l->scopes.n) {
        struct cache_only *c = (struct cache_only *)l->scopes.all[i];

        if (c->until <= now_s) {
            co_end(l, c, 0, now_s);
            continue;
        }
        if (victim == NULL || c->from_quota > victim->from_quota ||
            (c->from_quota == victim->from_quota && c->until < victim->until))
            victim = c;
        i++;
    }
    if (l->scopes.n < l->scopes.cap || victim == NULL)
        return;
    l->scopes_evicted++;
    hook_table_full(l, "cache_only", l->scopes.cap, now_s);
    co_end(l, victim, 1, now_s);
}

/*
 * 1 while the scope is cache-only at now_s, with its reason and remaining
 * seconds; logs the end of a period once. Lock held.
 */
static int
co_active(struct admit *l, enum scope_kind kind, const char *name,
    int64_t now_s, char *reason, size_t reasonlen, long *retry_after_s)
{
    struct cache_only *c = co_find(l, kind, name);

    if (c == NULL || c->until == 0)
        return 0;
    if (c->until > now_s) {
        util_strlcpy(reason, c->reason, reasonlen);
        *retry_after_s = (long)(c->until - now_s);
        return 1;
    }
    if (kind == SCOPE_ALL) {
        hook_cache_only_changed(SCOPE_ALL, "", 0, NULL, 0, 0, NULL, 0, now_s);
        c->until = 0;
    } else {
        co_end(l, c, 0, now_s);
    }
    return 0;
}

/* Enter (or extend) cache-only mode for a scope. Lock held. */
static void
co_enter(struct admit *l, enum scope_kind kind, const char *name,
    const char *cause, int status, int64_t until, const char *reason,
    int64_t now_s)
{
    struct cache_only *c = co_find(l, kind, name);
    char key[NAME_MAX_ + 1];
    uint64_t h;

    if (c == NULL) {
        scope_key(kind, name, key, sizeof(key));
        if (l->scopes.n >= l->scopes.cap)
            co_make_room(l, now_s);
        table_find(&l->scopes, key, &h);
        if ((c = table_add(&l->scopes, key, h)) == NULL)
            return; /* no memory: refused by its count, or asked */
        c->kind = kind;
    }
    if (c->until > now_s && c->until >= until)
        return;
    if (c->until <= now_s)
        hook_cache_only_changed(
            kind, name, 1, cause, status, until, reason, 0, now_s);
    c->until = until;
    c->from_quota = strcmp(cause, "quota") == 0;
    util_strlcpy(c->reason, reason, sizeof(c->reason));
}

static int
cmp_scope(const void *a, const void *b)
{
    const struct admit_scope *x = a, *y = b;

    if (x->params != y->params)
        return x->params - y->params;
    return strcmp(x->name, y->name);
}

struct admit_scope *
admit_cache_only(struct admit *l, int64_t now_s, int *all, size_t *n)
{
    struct admit_scope *v = NULL;
    size_t i, count = 0;

    *all = 0;
    *n = 0;
    if (l == NULL)
        return NULL;
    pthread_mutex_lock(&l->lock);
    *all = l->all.until > now_s;
    for (i = 0; i < l->scopes.n; i++)
        count += ((struct cache_only *)l->scopes.all[i])->until > now_s;
    if (count > 0 && (v = calloc(count, sizeof(*v))) != NULL) {
        for (i = 0; i < l->scopes.n; i++) {
            struct cache_only *c = (struct cache_only *)l->scopes.all[i];

            if (c->until <= now_s)
                continue;
            v[*n].params = c->kind == SCOPE_PARAMS;
            util_strlcpy(v[*n].name, c->s.name + 2, sizeof(v[*n].name));
            (*n)++;
        }
    }
    pthread_mutex_unlock(&l->lock);
    if (v != NULL)
        qsort(v, *n, sizeof(*v), cmp_scope);
    return v;
}

/* A spent quota, or a full table of counts: refuse; lock not held. */
static int
refuse_quota(struct admit *l, const char *indice, const struct rate_spec *q,
    uint64_t count, int64_t now_s, char *reason, size_t reasonlen,
    long *retry_after_s)
{
    int64_t until = now_s - now_s % q->period_s + q->period_s;
    char spec_text[64];

    if (count == 0) {
        /* No room to count it: cache-only until a window ends. */
        pthread_mutex_lock(&l->lock);
        l->quota_table_full++;
        hook_table_full(l, "quota", l->counters.cap, now_s);
        until =
            l->counters_full_until > now_s ? l->counters_full_until : now_s + 1;
        pthread_mutex_unlock(&l->lock);
        snprintf(reason, reasonlen,
            "cache-only: this instance counts the "
            "upstream quotas of too many indices at once to count indice "
            "%s's; cached tiles are still served",
            indice);
        *retry_after_s = (long)(until - now_s);
        return -1;
    }
    rate_spec_format(q, spec_text, sizeof(spec_text));
    snprintf(reason, reasonlen,
        "cache-only: the upstream quota of indice %s "
        "(%s) is spent; cached tiles are still served",
        indice, spec_text);
    *retry_after_s = (long)(until - now_s);
    pthread_mutex_lock(&l->lock);
    co_enter(l, SCOPE_INDICE, indice, "quota", 0, until, reason, now_s);
    pthread_mutex_unlock(&l->lock);
    return -1;
}

int
admit_upstream_begin(struct admit *l, const char *indice, const char *plan,
    int64_t now_s, char *reason, size_t reasonlen, long *retry_after_s)
{
    const struct rate_spec *quota;
    const struct rules *r;
    char key[RATE_NAME_MAX + 8];
    uint64_t count;
    int refused;

    if (l == NULL)
        return 0;
    if (plan == NULL)
        plan = "";
    r = rules_of(l);
    quota = rate_overrides_find(r->quota_over, indice, &r->quota_spec);
    pthread_mutex_lock(&l->lock);
    refused =
        co_active(l, SCOPE_ALL, "", now_s, reason, reasonlen, retry_after_s) ||
        co_active(
            l, SCOPE_INDICE, indice, now_s, reason, reasonlen, retry_after_s) ||
        (*plan != '\0' &&
            co_active(l, SCOPE_PARAMS, plan, now_s, reason, reasonlen,
                retry_after_s));
    pthread_mutex_unlock(&l->lock);
    if (refused)
        return -1;
    if (quota->limit > 0) {
        snprintf(key, sizeof(key), "qi:%s", indice);
        count = count_window(l, key, quota->period_s, now_s);
        if (count == 0 || count > (uint64_t)quota->limit)
            return refuse_quota(l, indice, quota, count, now_s, reason,
                reasonlen, retry_after_s);
    }
    if (r->budget > 0 &&
        count_window(l, "budget", 86400, now_s) > (uint64_t)r->budget) {
        int64_t until = now_s - now_s % 86400 + 86400;

        snprintf(reason, reasonlen,
            "cache-only: HERE_DAILY_BUDGET (%ld "
            "requests to HERE a day) is spent; cached tiles are still "
            "served",
            r->budget);
        *retry_after_s = (long)(until - now_s);
        pthread_mutex_lock(&l->lock);
        co_enter(l, SCOPE_ALL, "", "budget", 0, until, reason, now_s);
        pthread_mutex_unlock(&l->lock);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------- HERE's denials in a row */

/*
 * One more denial in the run of a scope (kind and name); returns the run
 * so far. A full table forgets its least recently counted run: that
 * scope's next denials start a run again (HERE is asked at most
 * HERE_DENY_THRESHOLD - 1 more times), which is all it costs. Lock held.
 */
static long
run_count(struct admit *l, enum scope_kind kind, const char *name)
{
    char key[NAME_MAX_ + 1];
    struct deny_run *d, *oldest = NULL;
    uint64_t h;
    size_t i;

    scope_key(kind, name, key, sizeof(key));
    if ((d = table_find(&l->runs, key, &h)) == NULL) {
        if (l->runs.n >= l->runs.cap) {
            for (i = 0; i < l->runs.n; i++) {
                struct deny_run *e = (struct deny_run *)l->runs.all[i];

                if (oldest == NULL || e->touched < oldest->touched)
                    oldest = e;
            }
            table_del(&l->runs, oldest);
        }
        if ((d = table_add(&l->runs, key, h)) == NULL)
            return 1; /* no memory: a run of one */
    }
    d->touched = ++l->tick;
    return ++d->count;
}

/* A scope's run is over (a success, or it led to cache-only). */
static void
run_end(struct admit *l, enum scope_kind kind, const char *name)
{
    char key[NAME_MAX_ + 1];
    struct deny_run *d;
    uint64_t h;

    scope_key(kind, name, key, sizeof(key));
    if ((d = table_find(&l->runs, key, &h)) != NULL)
        table_del(&l->runs, d);
}

void
admit_upstream_result(struct admit *l, const char *indice, const char *plan,
    int status, int retry_after_s, int64_t now_s)
{
    const struct rules *r = l != NULL ? rules_of(l) : NULL;
    enum scope_kind kind = SCOPE_ALL;
    const char *name = "";
    char reason[REASON_MAX];
    long run = 0, period;

    if (r == NULL || status == 0 || r->deny_threshold <= 0)
        return;
    if (plan == NULL)
        plan = "";
    pthread_mutex_lock(&l->lock);
    if (status != 401 && status != 403 && status != 429) {
        /* HERE served it: the runs this request was part of are over. */
        l->all_run = 0;
        l->volume_run = 0;
        run_end(l, SCOPE_INDICE, indice);
        if (*plan != '\0')
            run_end(l, SCOPE_PARAMS, plan);
        pthread_mutex_unlock(&l->lock);
        return;
    }
    if (status == 401 || (status == 403 && *plan == '\0')) {
        /* The key itself (401), or the plan's defaults refused: all. */
        if ((run = ++l->all_run) >= r->deny_threshold)
            l->all_run = 0;
    } else if (status == 403) {
        /* Parameters the plan lacks (a style, a feature, a size): only
         * the requests that ask for them, whichever índice asks. */
        kind = SCOPE_PARAMS;
        name = plan;
        if ((run = run_count(l, kind, name)) >= r->deny_threshold)
            run_end(l, kind, name);
    } else {
        /* 429 is about volume: the índice in a run of its own; the
         * whole proxy when the run spans several índices. */
        if (l->volume_run++ == 0) {
            util_strlcpy(l->volume_first, indice, sizeof(l->volume_first));
            l->volume_several = 0;
        } else if (strcmp(l->volume_first, indice) != 0) {
            l->volume_several = 1;
        }
        if (l->volume_several && l->volume_run >= r->deny_threshold) {
            run = l->volume_run;
            l->volume_run = 0;
        } else {
            kind = SCOPE_INDICE;
            name = indice;
            if ((run = run_count(l, kind, name)) >= r->deny_threshold) {
                /* Put down to that índice: the fleet's run starts over. */
                run_end(l, kind, name);
                l->volume_run = 0;
            }
        }
    }
    if (run >= r->deny_threshold) {
        /* HERE's Retry-After may shorten the period, never lengthen it. */
        period = retry_after_s > 0 && retry_after_s < r->cache_only_s
            ? retry_after_s
            : r->cache_only_s;
        if (kind == SCOPE_ALL)
            snprintf(reason, sizeof(reason),
                "cache-only: HERE answered "
                "%d %ld times in a row%s; cached tiles are still served",
                status, run, status == 429 ? " across indices" : "");
        else if (kind == SCOPE_INDICE)
            snprintf(reason, sizeof(reason),
                "cache-only for indice %s: "
                "HERE answered %d %ld times in a row; cached tiles are "
                "still served",
                indice, status, run);
        else
            snprintf(reason, sizeof(reason),
                "cache-only for these "
                "parameters (not in the plan?): HERE answered %d %ld times "
                "in a row; cached tiles are still served: %s",
                status, run, plan);
        co_enter(l, kind, name, "here_denied", status, now_s + period, reason,
            now_s);
    }
    pthread_mutex_unlock(&l->lock);
}

/* ---------------------------------------------------------- client address */

/*
 * Copy hop [p, p+len) into out without spaces or a port; 0 when it is an
 * IPv4 or IPv6 address.
 */
static int
hop_addr(const char *p, size_t len, char *out, size_t outlen)
{
    char buf[ADDR_MAX];
    const char *colon;
    struct in6_addr a6;
    struct in_addr a4;

    while (len > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    if (buf[0] == '[') { /* [v6] or [v6]:port */
        char *end = strchr(buf, ']');

        if (end == NULL || (end[1] != '\0' && end[1] != ':'))
            return -1;
        *end = '\0';
        memmove(buf, buf + 1, strlen(buf + 1) + 1);
    } else if ((colon = strchr(buf, ':')) != NULL &&
        strchr(colon + 1, ':') == NULL) {
        buf[colon - buf] = '\0'; /* a.b.c.d:port */
    }
    if (inet_pton(AF_INET, buf, &a4) != 1 && inet_pton(AF_INET6, buf, &a6) != 1)
        return -1;
    util_strlcpy(out, buf, outlen);
    return 0;
}

void
admit_addr_key(const char *addr, int ipv6_prefix, char *out, size_t outlen)
{
    struct in6_addr a6;
    struct in_addr a4;
    char text[INET6_ADDRSTRLEN + 8]; /* and "/128" */
    int i;

    if (inet_pton(AF_INET, addr, &a4) == 1) {
        inet_ntop(AF_INET, &a4, text, sizeof(text));
    } else if (inet_pton(AF_INET6, addr, &a6) == 1) {
        if (IN6_IS_ADDR_V4MAPPED(&a6)) {
            /* ::ffff:a.b.c.d is the IPv4 client a.b.c.d. */
            memcpy(&a4, &a6.s6_addr[12], 4);
            inet_ntop(AF_INET, &a4, text, sizeof(text));
        } else {
            if (ipv6_prefix < 1 || ipv6_prefix > 128)
                ipv6_prefix = 128;
            /* One client of IPv6 holds a whole prefix (a /64 at home):
             * its bucket is the prefix's. */
            for (i = 0; i < 16; i++) {
                int bits = ipv6_prefix - i * 8;

                if (bits <= 0)
                    a6.s6_addr[i] = 0;
                else if (bits < 8)
                    a6.s6_addr[i] &= (uint8_t)(0xff00 >> bits);
            }
            inet_ntop(AF_INET6, &a6, text, sizeof(text));
            if (ipv6_prefix < 128) {
                size_t n = strlen(text);

                snprintf(text + n, sizeof(text) - n, "/%d", ipv6_prefix);
            }
        }
    } else {
        util_strlcpy(out, addr, outlen); /* "-": no address */
        return;
    }
    util_strlcpy(out, text, outlen);
}

void
admit_client_addr(const char *remote_addr, const char *xff,
    const struct acl *trusted, char *out, size_t outlen)
{
    const char *end;
    int hops = 0;

    util_strlcpy(
        out, remote_addr != NULL && *remote_addr ? remote_addr : "-", outlen);
    if (trusted == NULL || xff == NULL || !acl_allows(trusted, out))
        return;
    end = xff + strlen(xff);
    while (end > xff && hops++ < XFF_HOPS_MAX) {
        const char *start = end;
        char hop[ADDR_MAX];

        while (start > xff && start[-1] != ',')
            start--;
        if (hop_addr(start, (size_t)(end - start), hop, sizeof(hop)) != 0)
            return; /* junk: the last trusted hop stays */
        util_strlcpy(out, hop, outlen);
        if (!acl_allows(trusted, hop))
            return;
        end = start > xff ? start - 1 : start;
    }
}

/* ------------------------------------------------------- who may ask */

enum error_kind
admit_client(const struct settings *cfg, struct tile_req *req,
    const char *header_token, const char **message)
{
    if (*cfg->client_tokens != '\0') {
        const char *token = header_token;
        char indice[REQUEST_INDICE_MAX + 1];

        if (token == NULL || *token == '\0')
            token = *req->token ? req->token : NULL;
        if (token == NULL) {
            *message = "a client token is required (header X-Proxy-Token "
                       "or query token)";
            return ERROR_UNAUTHORIZED;
        }
        if (!settings_token_indice(cfg, token, indice, sizeof(indice))) {
            *message = "unknown client token";
            return ERROR_UNAUTHORIZED;
        }
        util_strlcpy(req->indice, indice, sizeof(req->indice));
    }
    if (!settings_indice_allowed(cfg, req->indice)) {
        *message = "indice not allowed";
        return ERROR_FORBIDDEN;
    }
    return ERROR_NONE;
}

const char *
admit_cors_origin(const struct settings *cfg, const char *origin, int *vary)
{
    *vary = strcmp(cfg->cors_origins, "*") != 0;
    if (!*vary)
        return "*";
    return settings_origin_allowed(cfg, origin) ? origin : NULL;
}

int
admit_rate(struct admit *l, const char *indice, const char *remote_addr,
    const char *xff, int64_t now_ms, int64_t now_s, struct admit_verdict *v,
    char *msg, size_t msglen)
{
    char client[ADDR_MAX];

    if (admit_by_address(l))
        admit_client_addr(
            remote_addr, xff, admit_trusted(l), client, sizeof(client));
    admit_request(
        l, indice, admit_by_address(l) ? client : NULL, now_ms, now_s, v);
    if (v->allowed)
        return 1;
    if (strcmp(v->refused_by, "address") == 0)
        snprintf(msg, msglen,
            "rate limit exceeded for this client address "
            "(RATE_LIMIT_IP)");
    else
        snprintf(msg, msglen, "rate limit exceeded for indice %s", indice);
    return 0;
}
