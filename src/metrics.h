#ifndef HEREPROXY_METRICS_H
#define HEREPROXY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "hereauth.h"
#include "labels.h"
#include "procstat.h"

/*
 * Counters and histograms for /metrics: per indice (the client's label)
 * request, upstream, error and rate-limit counts, global latency
 * histograms, and gauges the caller reads at scrape time. Rendered as
 * Prometheus text (format 0.0.4) or as per-indice JSON.
 *
 * Every update is a relaxed atomic add: counts are exact however many
 * workers record at once. The indice table is a fixed-capacity open
 * addressing table that only grows: finding a known indice is a few
 * atomic loads and takes no lock; only the first sight of a new indice
 * takes a mutex. Past max_indices, new indices share one series,
 * indice="_other", so a client cannot grow memory or the scrape without
 * bound.
 *
 * Indice values: NULL or "" count as "-" (absent). A value that is not 1 to
 * 64 of [A-Za-z0-9_.-], and the literals "_other" and "_refused", count
 * under "_other". METRICS_REFUSED (that pointer, not an equal string)
 * counts under indice="_refused": requests refused before admission (a
 * bad or missing client token, an índice not allowed, a request that does
 * not parse), whose índice is the client's word only, so that they never
 * take a series of their own.
 */

extern const char METRICS_REFUSED[];

#define METRICS_DEFAULT_MAX_INDICES 1000
#define METRICS_MAX_INDICES_LIMIT 100000
#define METRICS_INDICE_MAX 64

struct metrics;

/* The cache label of a request: hit|miss|stale|coalesced|none. */
enum metrics_cache {
    METRICS_HIT,       /* fresh entry from L1 or L2 */
    METRICS_MISS,      /* fetched upstream by this request */
    METRICS_STALE,     /* stale entry served (revalidation elsewhere) */
    METRICS_COALESCED, /* waited on another request's upstream fetch */
    METRICS_NONE       /* no cache lookup: errors, health, preflight */
};
#define METRICS_NCACHE 5

/* The label a response's cache status counts under. */
enum metrics_cache metrics_cache_of(enum cache_status s);

/*
 * Why a value read from memcached was refused (never served, never
 * trusted): hereproxy_cache_rejected_total{reason}. One list drives the
 * enum and the label names.
 */
/* clang-format off */
#define METRICS_REJECT_LIST(X)                                               \
    X(MAC, "mac")                 /* an entry whose tag does not verify */    \
    X(FORMAT, "format")           /* not an entry of this layout */           \
    X(BOUNDS, "bounds")           /* status, type, freshness or size */       \
    X(TOO_LARGE, "too_large")     /* larger than any value the proxy writes */\
    X(GENERATION, "generation")   /* a cache generation not ours to trust */  \
    X(LOCK, "lock")               /* a coalescing lock that does not verify */\
    X(PURGE_LOG, "purge_log")     /* a purge-log entry that does not verify */\
    X(COUNTER, "counter")         /* a quota or budget count */
/* clang-format on */

/* clang-format off */
enum metrics_reject {
#define METRICS_REJECT_ENUM(id, name) METRICS_REJECT_##id,
    METRICS_REJECT_LIST(METRICS_REJECT_ENUM)
#undef METRICS_REJECT_ENUM
    METRICS_NREJECT
};
/* clang-format on */

/* The label of a reason ("mac", ...). */
const char *metrics_reject_name(enum metrics_reject r);

/*
 * Values read by the caller when a scrape comes; metrics renders them.
 * Zero what you do not have.
 */
struct metrics_gauges {
    uint64_t lru_entries;
    uint64_t lru_bytes;
    uint64_t lru_max_bytes;
    uint64_t lru_evictions;          /* a counter owned by the LRU */
    uint64_t lru_refused;            /* memcached hits not admitted */
    int memcached_configured;        /* 0 or 1 */
    int memcached_up;                /* 0 or 1 */
    uint64_t memcached_servers;      /* in MEMCACHED_SERVERS */
    uint64_t memcached_servers_down; /* not answering a round trip now */
    /* Each server's state from that round trip: name and 1 (up) or 0. */
    const char *const *memcached_server_names;
    const int *memcached_server_up;
    size_t memcached_listed; /* entries in the two above */
    uint64_t upstream_inflight;
    uint64_t upstream_queued;
    int breaker_open;                /* 0 or 1 */
    struct hereauth_stats here_auth; /* the key or token (hereauth.h) */
    uint64_t threads_busy;
    uint64_t threads_total;
    int cache_only_all; /* 1: the whole proxy is cache-only */
    const char *const *cache_only_indices; /* indices in cache-only mode */
    size_t cache_only_count;
    const char *const *cache_only_params; /* plan classes in it */
    size_t cache_only_params_count;
    uint64_t quota_table_full;   /* misses refused: quota table full */
    uint64_t cache_only_evicted; /* cache-only scopes ended for room */
    double start_time;           /* Unix seconds the process started */
    double now;                  /* Unix seconds; 0 reads the clock */
    /*
     * Workers waiting in accept(), and waiting on a kept-alive connection
     * for its next request; the others are busy. Connections closed while
     * idle so that a waiting connection got a worker (a counter).
     */
    uint64_t workers_accepting;
    uint64_t workers_idle_conn;
    uint64_t idle_conns_closed;
    /*
     * The process: process_* families (Prometheus client conventions),
     * each left out when unknown, and hereproxy_cpus_available.
     * have_process 0: none of them (a caller without /proc, the tests).
     */
    int have_process;
    struct procstat process;
    const char *libcurl_version; /* a build_info label; NULL: left out */
};

/*
 * max_indices: how many indices get series of their own (0: all go to
 * "_other"); at most METRICS_MAX_INDICES_LIMIT. Returns NULL on a bad
 * bound or no memory. metrics_free(NULL) does nothing.
 */
struct metrics *metrics_new(size_t max_indices);
void metrics_free(struct metrics *m);

/*
 * Every recording function accepts m == NULL and then does nothing, so that
 * callers need not test whether metrics are on. The renders need an m.
 * All functions but metrics_new and metrics_free are thread-safe.
 */

/*
 * One answered request: hereproxy_requests_total{indice,cache,code},
 * hereproxy_response_bytes_total{indice} and
 * hereproxy_request_duration_seconds{cache}. status is the HTTP status
 * sent; the statuses the proxy emits have their own code label, any other
 * 100..599 is counted as its class ("1xx".."5xx", so code=~"5.." still
 * matches), anything else as "other".
 */
void metrics_request(struct metrics *m, const char *indice,
    enum metrics_cache cache, int status, double seconds, uint64_t bytes);

/*
 * What metrics_request counts, for requests answered elsewhere and counted
 * in batches (NGINX's cache, NGINX_HITS_FILE): n requests of one cache
 * label and status; bytes sent; n durations that fall in the bucket of
 * seconds and add up to sum.
 */
void metrics_requests_add(struct metrics *m, const char *indice,
    enum metrics_cache cache, int status, uint64_t n);
void metrics_bytes_add(struct metrics *m, const char *indice, uint64_t bytes);
void metrics_durations_add(struct metrics *m, const char *indice,
    enum metrics_cache cache, double seconds, uint64_t n, double sum);

/*
 * One upstream exchange, after its retries (labels.h): the outcomes where
 * no call was made (busy, breaker_open, cache_only) are counted but not
 * timed.
 * http_version: 10, 11, 20, 30, or 0 when no response came.
 * attempts: tries made (retries are attempts - 1).
 */
void metrics_upstream(struct metrics *m, const char *indice,
    enum upstream_label outcome, int http_version, int attempts, uint64_t bytes,
    double seconds);

/*
 * Attempts of one exchange that HERE stopped feeding and the engine
 * abandoned (HERE_ATTEMPT_TIMEOUT_MS), whether a retry then succeeded or
 * not: hereproxy_upstream_stalls_total.
 */
void metrics_upstream_stalls(struct metrics *m, int stalls);

/* One error answered to a client, of kind (labels.h; ERROR_NONE: none). */
void metrics_error(struct metrics *m, const char *indice, enum error_kind kind);

/* One purge through /admin/purge: a tile (all 0) or everything (1). */
void metrics_purge(struct metrics *m, int all);

/* One request refused by the rate limiter. */
void metrics_rate_limited(struct metrics *m, const char *indice);

/*
 * One value from memcached refused, for reason r, read under key (ours or
 * a client's canonical key: printable). Counted, and logged as the event
 * cache_rejected at most once per 10 s per reason with how many were
 * refused since, so that junk written to memcached cannot flood the log.
 */
void metrics_cache_rejected(
    struct metrics *m, enum metrics_reject r, const char *key, size_t keylen);

/* One memcached operation: its latency and whether it succeeded. */
void metrics_memcached(struct metrics *m, double seconds, int ok);

/*
 * Prometheus text exposition format 0.0.4 (Content-Type
 * "text/plain; version=0.0.4; charset=utf-8"). g may be NULL (all zero);
 * version is the build_info label (NULL: "unknown"). Returns a
 * NUL-terminated string the caller frees with free(), or NULL when out of
 * memory.
 */
char *metrics_render_prometheus(
    struct metrics *m, const struct metrics_gauges *g, const char *version);

/*
 * Per-indice summary as JSON:
 * {"indices":{"A":{"requests":N,"hits":N,"misses":N,"stale":N,
 *  "coalesced":N,"bytes":N,"upstream_calls":N,"upstream_bytes":N,
 *  "errors":N,"rate_limited":N,"hit_ratio":R,
 *  "latency_ms":{"p50":Q,"p95":Q}},...},"totals":{...}}
 * hit_ratio = (hits + stale) / (hits + stale + misses + coalesced): the
 * share of cache lookups answered from the cache; null before any lookup.
 * latency_ms: quantiles of the indice's request durations (every cache
 * result) in milliseconds, interpolated within the histogram buckets as
 * histogram_quantile() does (see metrics_quantile); null before any
 * request. Each indice keeps one fixed histogram, so memory stays bounded
 * by max_indices.
 * upstream_calls counts exchanges that reached the network (all outcomes
 * but busy and breaker_open). Returns a string the caller frees with
 * free(), or NULL when out of memory.
 */
char *metrics_render_json(struct metrics *m);

/*
 * The q-quantile (0..1) in seconds of a duration histogram given as
 * per-bucket (not cumulative) counts over the registry's buckets, the last
 * being +Inf: n must be metrics_nbuckets(). Linear interpolation inside the
 * bucket holding the rank, the first bucket starting at 0; a rank in the
 * +Inf bucket gives the highest finite bound. Returns -1 when there are no
 * observations or the arguments are bad. Pure.
 */
double metrics_quantile(const uint64_t *counts, size_t n, double q);

/* Buckets of every duration histogram, +Inf included. */
size_t metrics_nbuckets(void);

/* The upper bound of bucket i (i < metrics_nbuckets() - 1), in seconds. */
double metrics_bucket_bound(size_t i);

#endif
