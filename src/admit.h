#ifndef HEREPROXY_ADMIT_H
#define HEREPROXY_ADMIT_H

#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "settings.h"

/*
 * Admission and HERE's bill. Two jobs:
 *
 * Rate limits (RATE_LIMIT_INDEX with RATE_LIMIT_INDEX_OVERRIDES, and
 * RATE_LIMIT_IP) decide for every tile and metadata request, before the
 * cache is asked: token buckets in process, or (RATE_LIMIT_SHARED=memcached)
 * fixed-window counters in memcached shared by every replica.
 *
 * Quotas count only what HERE bills: each fetch the proxy starts for an
 * índice (QUOTA_UPSTREAM_INDEX with QUOTA_UPSTREAM_INDEX_OVERRIDES) and for
 * the whole fleet (HERE_DAILY_BUDGET), in fixed windows aligned to the
 * Unix clock (a day is a UTC day), counted in memcached when there is one.
 * A spent quota, or HERE answering 401, 403 or 429 HERE_DENY_THRESHOLD
 * times in a row, puts its scope (one índice, or all) in cache-only mode:
 * admit_upstream_begin refuses until the window ends (or HERE's
 * Retry-After, or HERE_CACHE_ONLY_S, passes). Entering and leaving are
 * logged as JSON events (cache_only_start, cache_only_end).
 *
 * Thread-safe; settings are read at creation and by admit_reload, and
 * need not outlive the object. A NULL struct admit limits nothing (every
 * call allows).
 */

struct admit;

#define ADMIT_CACHE_ONLY_MAX 1024   /* indices in cache-only mode at once */

struct admit_verdict {
    int allowed;
    int limited;              /* a rate limit applies: send RateLimit-* */
    long limit;               /* RateLimit-Limit */
    long remaining;           /* RateLimit-Remaining */
    long reset_s;             /* RateLimit-Reset */
    long retry_after_s;       /* when refused */
    const char *refused_by;   /* "indice" or "address" when refused */
};

/* NULL with err set when a setting cannot be used (or memory ran out). */
struct admit *admit_new(const struct settings *cfg, char *err,
    size_t errlen);
void admit_free(struct admit *l);

/*
 * SIGHUP: the limits, quotas, budget and trusted proxies of cfg from now
 * on. Buckets, counters and cache-only periods carry on. 0, or -1 with err
 * set (the running rules stay).
 */
int admit_reload(struct admit *l, const struct settings *cfg, char *err,
    size_t errlen);

/* 1 when RATE_LIMIT_IP is on (the caller must find the client address). */
int admit_by_address(const struct admit *l);

/* RATE_TRUSTED_PROXIES, or NULL when empty; owned by l. */
const struct acl *admit_trusted(const struct admit *l);

/*
 * Rate limits for one request of indice from client (NULL when
 * RATE_LIMIT_IP is off). now_ms: monotonic; now_s: Unix seconds. The
 * address bucket is asked first, so a client refused by its own limit
 * spends nothing of the índice's. Fills *out; returns out->allowed.
 */
int admit_request(struct admit *l, const char *indice, const char *client,
    int64_t now_ms, int64_t now_s, struct admit_verdict *out);

/*
 * Before the proxy asks HERE for indice at now_s: 0 when it may (the fetch
 * is counted), -1 when the scope is cache-only, with a client-safe reason
 * and the seconds until it may try again.
 */
int admit_upstream_begin(struct admit *l, const char *indice,
    int64_t now_s, char *reason, size_t reasonlen, long *retry_after_s);

/*
 * What HERE answered a fetch (its final HTTP status, 0 when none came, and
 * its Retry-After in seconds or 0): a run of 401, 403 or 429 puts
 * everything in cache-only mode.
 */
/*
 * For the metrics: *all is 1 while the whole proxy is cache-only; the
 * indices in cache-only mode at now_s are copied into names (max of them,
 * namesize bytes each). Returns how many were copied.
 */
size_t admit_cache_only(struct admit *l, int64_t now_s, int *all,
    char *names, size_t namesize, size_t max);

void admit_upstream_result(struct admit *l, int status, int retry_after_s,
    int64_t now_s);

/*
 * The client address for rate limiting: remote_addr, unless it is in
 * trusted: then X-Forwarded-For (xff, may be NULL) is read from the right
 * and the first hop not in trusted is the client (the leftmost hop when
 * every one is trusted). A hop may carry a port ("1.2.3.4:80",
 * "[::1]:80"); a hop that is no address ends the walk at the last trusted
 * one (proxies append real addresses; junk came from the client). Writes
 * the address to out (at least 64 bytes). Pure.
 */
void admit_client_addr(const char *remote_addr, const char *xff,
    const struct acl *trusted, char *out, size_t outlen);

/*
 * The rate-limit key of a client address: one spelling per client, so that
 * case and zeros ("2001:DB8::1", "2001:db8:0:0::1") make one key. An IPv4
 * address as inet_ntop writes it; an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) as that IPv4 address; any other IPv6 address cut to its
 * first ipv6_prefix bits (RATE_LIMIT_IPV6_PREFIX, 1..128), written
 * "network/prefix" below 128. Anything else is copied as it is. Writes at
 * most outlen bytes (64 hold every key). Pure.
 */
void admit_addr_key(const char *addr, int ipv6_prefix, char *out,
    size_t outlen);

#endif
