#ifndef HEREPROXY_ADMIT_H
#define HEREPROXY_ADMIT_H

#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "labels.h"
#include "request.h"
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
 * A spent quota puts its scope (one índice, or all) in cache-only mode:
 * admit_upstream_begin refuses until the window ends.
 *
 * HERE answering 401, 403 or 429 HERE_DENY_THRESHOLD times in a row puts
 * the scope the denials are about in cache-only mode for
 * HERE_CACHE_ONLY_S (or HERE's shorter Retry-After): a 401 is about the
 * key, and a 403 for a request with HERE's default parameters (plan class
 * "") about the plan itself: everything. A 403 for a request with
 * parameters of its own (its plan class, request.c: a style, features, a
 * size the plan may lack) makes only the requests of that plan class
 * cache-only, whichever índice sends them. A 429 is about volume: one
 * índice's run makes that índice cache-only, a run spanning several
 * índices everything. A success ends the runs of the scopes it belongs
 * to. Entering and leaving are logged as JSON events (cache_only_start,
 * cache_only_end).
 *
 * The tables of counters, cache-only scopes and runs are sized from the
 * configuration (a floor, METRICS_MAX_INDICES, the índices of
 * HEREPROXY_INDICES and HEREPROXY_CLIENT_TOKENS, the overrides) and never
 * fail open when full: a quota count is refused (that índice's misses,
 * counted) rather than dropped while its window runs, a cache-only scope
 * makes room by ending the one nearest its end, a run of denials by
 * forgetting the least recently counted.
 *
 * Thread-safe; settings are read at creation and by admit_reload, and
 * need not outlive the object. A NULL struct admit limits nothing (every
 * call allows).
 */

struct admit;

/* an índice, or a plan class (whole: two classes never share a scope) */
#define ADMIT_SCOPE_NAME_MAX REQUEST_PLAN_MAX

/* A scope in cache-only mode, for the metrics. */
struct admit_scope {
    int params; /* 0: an índice, 1: a plan class */
    char name[ADMIT_SCOPE_NAME_MAX + 1];
};

/* Counts of what full tables did, for the metrics. */
struct admit_stats {
    uint64_t quota_table_full; /* misses refused: no room to count */
    uint64_t scopes_evicted;   /* cache-only scopes ended for room */
    uint64_t table_size;       /* entries each table holds */
};

struct admit_verdict {
    int allowed;
    int limited;            /* a rate limit applies: send RateLimit-* */
    long limit;             /* RateLimit-Limit */
    long remaining;         /* RateLimit-Remaining */
    long reset_s;           /* RateLimit-Reset */
    long retry_after_s;     /* when refused */
    const char *refused_by; /* "indice" or "address" when refused */
};

/* NULL with err set when a setting cannot be used (or memory ran out). */
struct admit *admit_new(const struct settings *cfg, char *err, size_t errlen);
void admit_free(struct admit *l);

/*
 * Count values refused in memcached (a quota or budget count that does
 * not verify) in m, which outlives l. Call before the workers start.
 */
struct metrics;
void admit_set_metrics(struct admit *l, struct metrics *m);

/*
 * SIGHUP: the limits, quotas, budget and trusted proxies of cfg from now
 * on. Buckets, counters and cache-only periods carry on. 0, or -1 with err
 * set (the running rules stay).
 */
int admit_reload(
    struct admit *l, const struct settings *cfg, char *err, size_t errlen);

/*
 * Who may ask, for every tile and metadata request, before anything else:
 * with HEREPROXY_CLIENT_TOKENS a valid token (header_token, X-Proxy-Token,
 * else the query's "token") is required and decides req->indice; with
 * HEREPROXY_INDICES only the listed índices pass. ERROR_NONE to go on,
 * else ERROR_UNAUTHORIZED or ERROR_FORBIDDEN with the client's message.
 * Tokens are never logged or forwarded.
 */
enum error_kind admit_client(const struct settings *cfg, struct tile_req *req,
    const char *header_token, const char **message);

/*
 * CORS under cfg: the Access-Control-Allow-Origin for a request from
 * origin: "*", origin itself when HEREPROXY_CORS_ORIGINS lists it, else
 * NULL. *vary is 1 when the answer depends on Origin (an allow-list).
 */
const char *admit_cors_origin(
    const struct settings *cfg, const char *origin, int *vary);

/*
 * The rate limits of one tile or metadata request of indice, from the
 * client at remote_addr (X-Forwarded-For xff, believed from trusted
 * proxies only): admit_request with the client's address found. When
 * refused, msg gets the client's message. Returns v->allowed.
 */
int admit_rate(struct admit *l, const char *indice, const char *remote_addr,
    const char *xff, int64_t now_ms, int64_t now_s, struct admit_verdict *v,
    char *msg, size_t msglen);

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
 * Before the proxy asks HERE for indice at now_s, for a request of plan
 * class plan ("" or NULL: HERE's defaults): 0 when it may (the fetch is
 * counted), -1 when its scope is cache-only (the whole proxy, the índice,
 * or the plan class), with a client-safe reason and the seconds until it
 * may try again.
 */
int admit_upstream_begin(struct admit *l, const char *indice, const char *plan,
    int64_t now_s, char *reason, size_t reasonlen, long *retry_after_s);

/*
 * What HERE answered a fetch for indice with plan class plan: its final
 * HTTP status (0 when none came) and its Retry-After in seconds (or 0).
 * Runs of 401, 403 and 429 make their scope cache-only (see above).
 */
void admit_upstream_result(struct admit *l, const char *indice,
    const char *plan, int status, int retry_after_s, int64_t now_s);

/*
 * For the metrics: *all is 1 while the whole proxy is cache-only; returns
 * the índices and plan classes cache-only at now_s, índices first, each
 * sorted by name (*n of them; NULL when none), which the caller frees.
 */
struct admit_scope *admit_cache_only(
    struct admit *l, int64_t now_s, int *all, size_t *n);

void admit_stats(struct admit *l, struct admit_stats *out);

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
void admit_addr_key(
    const char *addr, int ipv6_prefix, char *out, size_t outlen);

#endif
