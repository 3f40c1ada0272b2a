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
#include "mc.h"
#include "ratelimit.h"
#include "siphash.h"
#include "util.h"

#define BUCKETS_MAX 100000
#define COUNTERS_MAX 4096           /* in-process window counters */
#define CACHE_ONLY_MAX ADMIT_CACHE_ONLY_MAX
#define XFF_HOPS_MAX 64
#define ADDR_MAX 64

/* A fixed-window count kept in process (no memcached, or it failed). */
struct counter {
    char key[96];
    int64_t window;
    uint64_t count;
};

struct cache_only {
    char indice[RATE_NAME_MAX + 1];   /* "" for the whole proxy */
    int64_t until;                    /* Unix seconds; 0: not in it */
    char reason[200];
};

/* What the settings say; a reload swaps in a new one whole. */
struct rules {
    struct rate_spec index_spec, ip_spec, quota_spec;
    struct rate_overrides index_over, quota_over;
    struct acl *trusted;
    int shared_rate;
    long budget;
    long deny_threshold;
    long cache_only_s;
    int ipv6_prefix;
    struct rules *older;    /* replaced: still read by late requests */
};

struct admit {
    struct rules *rules;            /* atomic; never freed before l */
    struct ratelimiter *buckets;
    struct mc *mc;                  /* NULL: count in process */

    pthread_mutex_t lock;           /* everything below */
    struct counter counters[COUNTERS_MAX];
    struct cache_only all;
    struct cache_only indices[CACHE_ONLY_MAX];
    long deny_run;
};

/* ------------------------------------------------------------- metrics hooks
 * The one place each state change is seen; a metrics module can count here.
 */

/* Cache-only mode entered (entering 1) or left (0) for scope "indice"/"all". */
static void
hook_cache_only_changed(const char *scope, const char *indice, int entering,
    const char *cause, int64_t until, const char *reason, int64_t now_s)
{
    cJSON *f = cJSON_CreateObject();

    if (f != NULL) {
        cJSON_AddStringToObject(f, "scope", scope);
        if (*indice != '\0')
            cJSON_AddStringToObject(f, "indice", indice);
        if (entering) {
            cJSON_AddStringToObject(f, "cause", cause);
            cJSON_AddStringToObject(f, "reason", reason);
            cJSON_AddNumberToObject(f, "until", (double)until);
            cJSON_AddNumberToObject(f, "retry_after_s",
                (double)(until - now_s));
        }
    }
    log_event(entering ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
        entering ? "cache_only_start" : "cache_only_end", f);
}

/* ---------------------------------------------------------------- creation */

static void
rules_free(struct rules *r)
{
    while (r != NULL) {
        struct rules *older = r->older;

        rate_overrides_free(&r->index_over);
        rate_overrides_free(&r->quota_over);
        acl_free(r->trusted);
        free(r);
        r = older;
    }
}

static struct rules *
rules_new(const struct settings *cfg, char *err, size_t errlen)
{
    struct rules *r = calloc(1, sizeof(*r));
    char msg[256];

    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (rate_spec_parse(cfg->rate_limit_index, &r->index_spec, msg,
            sizeof(msg)) != 0 ||
        rate_spec_parse(cfg->rate_limit_ip, &r->ip_spec, msg,
            sizeof(msg)) != 0 ||
        rate_spec_parse(cfg->quota_upstream_index, &r->quota_spec, msg,
            sizeof(msg)) != 0 ||
        rate_overrides_parse(cfg->rate_limit_index_overrides, 1,
            &r->index_over, msg, sizeof(msg)) != 0 ||
        rate_overrides_parse(cfg->quota_upstream_index_overrides, 0,
            &r->quota_over, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "rate limits: %s", msg);
        rules_free(r);
        return NULL;
    }
    if (*cfg->rate_trusted_proxies != '\0' &&
        acl_parse(&r->trusted, cfg->rate_trusted_proxies, msg,
            sizeof(msg)) != 0) {
        snprintf(err, errlen, "RATE_TRUSTED_PROXIES: %s", msg);
        rules_free(r);
        return NULL;
    }
    r->shared_rate = strcmp(cfg->rate_limit_shared, "memcached") == 0;
    r->budget = cfg->here_daily_budget;
    r->deny_threshold = cfg->here_deny_threshold;
    r->cache_only_s = cfg->here_cache_only_s;
    r->ipv6_prefix = (int)cfg->rate_limit_ipv6_prefix;
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

    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&l->lock, NULL);
    if ((l->rules = rules_new(cfg, err, errlen)) == NULL)
        goto fail;
    if ((l->buckets = ratelimiter_new(BUCKETS_MAX)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (*cfg->memcached_servers != '\0') {
        l->mc = mc_new(cfg->memcached_servers, (size_t)cfg->threads, err,
            errlen);
        if (l->mc == NULL)
            goto fail;
    }
    return l;
fail:
    admit_free(l);
    return NULL;
}

void
admit_free(struct admit *l)
{
    if (l == NULL)
        return;
    rules_free(l->rules);
    ratelimiter_free(l->buckets);
    mc_free(l->mc);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

int
admit_reload(struct admit *l, const struct settings *cfg, char *err,
    size_t errlen)
{
    struct rules *r;

    if (l == NULL)
        return 0;
    if ((r = rules_new(cfg, err, errlen)) == NULL)
        return -1;
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

/* ---------------------------------------------------------------- counting */

/*
 * Count one in key's fixed window of period_s at now_s: memcached when
 * there is one (shared by every instance), else (or when it fails) in
 * process. Returns the count including this one, 0 when it could not be
 * counted (the table is full: serve rather than refuse).
 */
static uint64_t
count_window(struct admit *l, const char *key, long period_s, int64_t now_s)
{
    int64_t window = now_s - now_s % period_s;
    char mkey[200];
    uint64_t value = 0, h;
    size_t i, free_slot = COUNTERS_MAX;
    int n;

    n = snprintf(mkey, sizeof(mkey), "lim:%lld:%s", (long long)window, key);
    if (l->mc != NULL &&
        mc_count(l->mc, mkey, (size_t)n, 1, period_s + 60, &value) == 0)
        return value;
    h = siphash_keyed(key, strlen(key));
    pthread_mutex_lock(&l->lock);
    for (i = 0; i < COUNTERS_MAX; i++) {
        struct counter *c = &l->counters[(h + i) % COUNTERS_MAX];

        if (c->window == window && strcmp(c->key, key) == 0) {
            value = ++c->count;
            break;
        }
        if (free_slot == COUNTERS_MAX && c->window != window)
            free_slot = (h + i) % COUNTERS_MAX;
    }
    if (value == 0 && free_slot != COUNTERS_MAX) {
        struct counter *c = &l->counters[free_slot];

        util_strlcpy(c->key, key, sizeof(c->key));
        c->window = window;
        value = c->count = 1;
    }
    pthread_mutex_unlock(&l->lock);
    return value;
}

/* ------------------------------------------------------------ rate limits */

/* One limit on one key; fills v. */
static void
take(struct admit *l, char kind, const char *name,
    const struct rate_spec *spec, int64_t now_ms, int64_t now_s,
    struct admit_verdict *v)
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
        int m = snprintf(mkey, sizeof(mkey), "lim:%lld:%s",
            (long long)window, key);

        if (mc_count(l->mc, mkey, (size_t)m, 1, spec->period_s + 60,
                &count) == 0) {
            v->limit = spec->limit;
            v->reset_s = window + spec->period_s - now_s;
            v->remaining = count >= (uint64_t)spec->limit
                ? 0 : spec->limit - (long)count;
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
    spec = rate_overrides_find(&r->index_over, indice, &r->index_spec);
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

/* The slot for indice ("" = all); with create, a new or expired one. */
static struct cache_only *
co_slot(struct admit *l, const char *indice, int create, int64_t now_s)
{
    struct cache_only *spare = NULL;
    size_t i;

    if (*indice == '\0')
        return &l->all;
    for (i = 0; i < CACHE_ONLY_MAX; i++) {
        struct cache_only *c = &l->indices[i];

        if (c->until != 0 && strcmp(c->indice, indice) == 0)
            return c;
        if (spare == NULL && (c->until == 0 || c->until <= now_s))
            spare = c;
    }
    if (!create || spare == NULL)
        return NULL;
    if (spare->until != 0)  /* expired, never looked at since: say so */
        hook_cache_only_changed("indice", spare->indice, 0, NULL, 0, NULL,
            now_s);
    memset(spare, 0, sizeof(*spare));
    util_strlcpy(spare->indice, indice, sizeof(spare->indice));
    return spare;
}

/*
 * 1 while indice's scope ("" = all) is cache-only at now_s, with its
 * reason and remaining seconds; logs the end of a period once. Lock held.
 */
static int
co_active(struct admit *l, const char *indice, int64_t now_s, char *reason,
    size_t reasonlen, long *retry_after_s)
{
    struct cache_only *c = co_slot(l, indice, 0, now_s);

    if (c == NULL || c->until == 0)
        return 0;
    if (c->until > now_s) {
        util_strlcpy(reason, c->reason, reasonlen);
        *retry_after_s = (long)(c->until - now_s);
        return 1;
    }
    hook_cache_only_changed(*indice ? "indice" : "all", indice, 0, NULL, 0,
        NULL, now_s);
    c->until = 0;
    return 0;
}

/* Enter (or extend) cache-only mode for indice ("" = all). Lock held. */
static void
co_enter(struct admit *l, const char *indice, const char *cause,
    int64_t until, const char *reason, int64_t now_s)
{
    struct cache_only *c = co_slot(l, indice, 1, now_s);

    if (c == NULL)
        return;     /* table full: each request is refused by its count */
    if (c->until > now_s && c->until >= until)
        return;
    if (c->until <= now_s)
        hook_cache_only_changed(*indice ? "indice" : "all", indice, 1,
            cause, until, reason, now_s);
    c->until = until;
    util_strlcpy(c->reason, reason, sizeof(c->reason));
}

size_t
admit_cache_only(struct admit *l, int64_t now_s, int *all, char *names,
    size_t namesize, size_t max)
{
    size_t i, n = 0;

    *all = 0;
    if (l == NULL)
        return 0;
    pthread_mutex_lock(&l->lock);
    *all = l->all.until > now_s;
    for (i = 0; i < CACHE_ONLY_MAX && n < max; i++)
        if (l->indices[i].until > now_s)
            util_strlcpy(names + namesize * n++, l->indices[i].indice,
                namesize);
    pthread_mutex_unlock(&l->lock);
    return n;
}

int
admit_upstream_begin(struct admit *l, const char *indice, int64_t now_s,
    char *reason, size_t reasonlen, long *retry_after_s)
{
    const struct rate_spec *quota;
    const struct rules *r;
    char key[RATE_NAME_MAX + 8], spec_text[64];
    int refused;

    if (l == NULL)
        return 0;
    r = rules_of(l);
    quota = rate_overrides_find(&r->quota_over, indice, &r->quota_spec);
    pthread_mutex_lock(&l->lock);
    refused = co_active(l, "", now_s, reason, reasonlen, retry_after_s) ||
        co_active(l, indice, now_s, reason, reasonlen, retry_after_s);
    pthread_mutex_unlock(&l->lock);
    if (refused)
        return -1;
    if (quota->limit > 0) {
        snprintf(key, sizeof(key), "qi:%s", indice);
        if (count_window(l, key, quota->period_s, now_s) >
            (uint64_t)quota->limit) {
            int64_t until = now_s - now_s % quota->period_s +
                quota->period_s;

            rate_spec_format(quota, spec_text, sizeof(spec_text));
            snprintf(reason, reasonlen, "cache-only: the upstream quota of "
                "indice %s (%s) is spent; cached tiles are still served",
                indice, spec_text);
            *retry_after_s = (long)(until - now_s);
            pthread_mutex_lock(&l->lock);
            co_enter(l, indice, "quota", until, reason, now_s);
            pthread_mutex_unlock(&l->lock);
            return -1;
        }
    }
    if (r->budget > 0 && count_window(l, "budget", 86400, now_s) >
        (uint64_t)r->budget) {
        int64_t until = now_s - now_s % 86400 + 86400;

        snprintf(reason, reasonlen, "cache-only: HERE_DAILY_BUDGET (%ld "
            "requests to HERE a day) is spent; cached tiles are still "
            "served", r->budget);
        *retry_after_s = (long)(until - now_s);
        pthread_mutex_lock(&l->lock);
        co_enter(l, "", "budget", until, reason, now_s);
        pthread_mutex_unlock(&l->lock);
        return -1;
    }
    return 0;
}

void
admit_upstream_result(struct admit *l, int status, int retry_after_s,
    int64_t now_s)
{
    char reason[200];

    const struct rules *r = l != NULL ? rules_of(l) : NULL;

    if (r == NULL || status == 0 || r->deny_threshold <= 0)
        return;
    pthread_mutex_lock(&l->lock);
    if (status != 401 && status != 403 && status != 429) {
        l->deny_run = 0;
    } else if (++l->deny_run >= r->deny_threshold) {
        long period = retry_after_s > 0 ? retry_after_s : r->cache_only_s;

        snprintf(reason, sizeof(reason), "cache-only: HERE answered %d "
            "%ld times in a row; cached tiles are still served", status,
            l->deny_run);
        co_enter(l, "", "here_denied", now_s + period, reason, now_s);
        l->deny_run = 0;
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
    if (buf[0] == '[') {                    /* [v6] or [v6]:port */
        char *end = strchr(buf, ']');

        if (end == NULL || (end[1] != '\0' && end[1] != ':'))
            return -1;
        *end = '\0';
        memmove(buf, buf + 1, strlen(buf + 1) + 1);
    } else if ((colon = strchr(buf, ':')) != NULL &&
               strchr(colon + 1, ':') == NULL) {
        buf[colon - buf] = '\0';            /* a.b.c.d:port */
    }
    if (inet_pton(AF_INET, buf, &a4) != 1 &&
        inet_pton(AF_INET6, buf, &a6) != 1)
        return -1;
    util_strlcpy(out, buf, outlen);
    return 0;
}

void
admit_addr_key(const char *addr, int ipv6_prefix, char *out, size_t outlen)
{
    struct in6_addr a6;
    struct in_addr a4;
    char text[INET6_ADDRSTRLEN + 8];     /* and "/128" */
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
        util_strlcpy(out, addr, outlen);    /* "-": no address */
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

    util_strlcpy(out, remote_addr != NULL && *remote_addr ? remote_addr : "-",
        outlen);
    if (trusted == NULL || xff == NULL || !acl_allows(trusted, out))
        return;
    end = xff + strlen(xff);
    while (end > xff && hops++ < XFF_HOPS_MAX) {
        const char *start = end;
        char hop[ADDR_MAX];

        while (start > xff && start[-1] != ',')
            start--;
        if (hop_addr(start, (size_t)(end - start), hop, sizeof(hop)) != 0)
            return;                 /* junk: the last trusted hop stays */
        util_strlcpy(out, hop, outlen);
        if (!acl_allows(trusted, hop))
            return;
        end = start > xff ? start - 1 : start;
    }
}
