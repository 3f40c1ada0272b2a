#include "config.h"

#include <inttypes.h>
#include <stddef.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "labels.h"
#include "log.h"
#include "metrics.h"
#include "siphash.h"
#include "util.h"

const char METRICS_REFUSED[] = "_refused";

/* A scrape of 1000 busy indices is a few MB; this only stops runaways. */
#define RENDER_MAX (256u * 1024 * 1024)

static const char *const cache_names[METRICS_NCACHE] = {
    "hit", "miss", "stale", "coalesced", "none"};

/*
 * Statuses the proxy sends get a slot each; others fall into their class
 * so that code=~"5.." still sees every server error.
 */
static const int status_codes[] = {
    200, 204, 304, 400, 401, 403, 404, 405, 413, 429, 499, 500, 502, 503, 504};
#define NCODES (sizeof(status_codes) / sizeof(status_codes[0]))
#define NSTATUS (NCODES + 6) /* + 1xx..5xx + other */
static const char *const status_extra[6] = {
    "1xx", "2xx", "3xx", "4xx", "5xx", "other"};

#define NOUTCOME UPSTREAM_LABEL_COUNT
#define NKIND ERROR_KIND_COUNT

static const char *const version_names[] = {"1.0", "1.1", "2", "3"};
#define NVERSION (sizeof(version_names) / sizeof(version_names[0]))

/*
 * Fine enough below 1 ms for L1 hits and up to the 30 s upstream timeout
 * for misses, so that p50/p95/p99 interpolate within a narrow bucket.
 * The label strings are kept beside the bounds to print them exactly.
 */
static const double bucket_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const char *const bucket_le[] = {"0.0001", "0.00025", "0.0005", "0.001",
    "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10", "30"};
#define NBOUNDS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

struct histogram {
    _Atomic uint64_t counts[NBOUNDS + 1]; /* per bucket; the last is +Inf */
    _Atomic uint64_t sum_bits;            /* a double, added by CAS */
};

/*
 * One indice's counters. Allocated zeroed (an all-zero _Atomic uint64_t is
 * 0 on every platform we build on) and never freed before metrics_free.
 */
struct idx {
    char name[METRICS_INDICE_MAX + 1];
    _Atomic uint64_t requests[METRICS_NCACHE][NSTATUS];
    _Atomic uint64_t response_bytes;
    _Atomic uint64_t upstream[NOUTCOME];
    _Atomic uint64_t upstream_bytes;
    _Atomic uint64_t errors[NKIND];
    _Atomic uint64_t rate_limited;
    struct histogram duration; /* every request of the indice */
};

struct metrics {
    size_t max_indices;
    size_t nslots; /* a power of two, over 2 * max_indices */
    _Atomic(struct idx *) *slots;
    struct idx **order; /* insertion order, `count` valid */
    _Atomic size_t count;
    pthread_mutex_t insert_lock;
    struct idx *other;
    struct idx *refused; /* METRICS_REFUSED */
    _Atomic uint64_t overflow;
    struct histogram request_duration[METRICS_NCACHE];
    struct histogram upstream_duration;
    struct histogram memcached_duration;
    _Atomic uint64_t retries;
    _Atomic uint64_t stalls; /* attempts HERE stopped feeding */
    _Atomic uint64_t http_version[NVERSION];
    _Atomic uint64_t memcached_errors;
    _Atomic uint64_t purges[2]; /* one tile, everything */
    _Atomic uint64_t rejected[METRICS_NREJECT];
    _Atomic int64_t rejected_logged_ms[METRICS_NREJECT];
    _Atomic uint64_t rejected_since[METRICS_NREJECT];
};

#define REJECT_LOG_MS 10000

/* clang-format off */
static const char *const reject_names[METRICS_NREJECT] = {
#define REJECT_NAME(id, name) name,
    METRICS_REJECT_LIST(REJECT_NAME)
#undef REJECT_NAME
};
/* clang-format on */

const char *
metrics_reject_name(enum metrics_reject r)
{
    return (size_t)r < METRICS_NREJECT ? reject_names[r] : "unknown";
}

static void
inc(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t
get(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static double
bits_to_double(uint64_t bits)
{
    double d;

    memcpy(&d, &bits, sizeof(d));
    return d;
}

static uint64_t
double_to_bits(double d)
{
    uint64_t bits;

    memcpy(&bits, &d, sizeof(bits));
    return bits;
}

/* n observations in the bucket of seconds, adding sum to the sum. */
static void
hist_observe_n(struct histogram *h, double seconds, uint64_t n, double sum)
{
    uint64_t old, new;
    size_t i;

    /* A clock step must not make the sum go backwards or become NaN. */
    if (!(seconds >= 0))
        seconds = 0;
    if (!(sum >= 0))
        sum = 0;
    for (i = 0; i < NBOUNDS && seconds > bucket_bounds[i]; i++)
        ;
    inc(&h->counts[i], n);
    old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    do {
        new = double_to_bits(bits_to_double(old) + sum);
    } while (!atomic_compare_exchange_weak_explicit(
        &h->sum_bits, &old, new, memory_order_relaxed, memory_order_relaxed));
}

static void
hist_observe(struct histogram *h, double seconds)
{
    hist_observe_n(h, seconds, 1, seconds);
}

static size_t
status_slot(int status)
{
    size_t i;

    for (i = 0; i < NCODES; i++)
        if (status_codes[i] == status)
            return i;
    if (status >= 100 && status <= 599)
        return NCODES + (size_t)(status / 100 - 1);
    return NSTATUS - 1;
}

static const char *
status_label(size_t slot, char *buf, size_t size)
{
    if (slot >= NCODES)
        return status_extra[slot - NCODES];
    snprintf(buf, size, "%d", status_codes[slot]);
    return buf;
}

/* Length of a valid indice, or 0. */
static size_t
indice_len(const char *s)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        if (i >= METRICS_INDICE_MAX)
            return 0;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return i;
}

struct metrics *
metrics_new(size_t max_indices)
{
    struct metrics *m = NULL;

    if (max_indices > METRICS_MAX_INDICES_LIMIT)
        return NULL;
    if ((m = calloc(1, sizeof(*m))) == NULL)
        return NULL;
    m->max_indices = max_indices;
    /* Load factor at most 1/2: probes stay short and always end. */
    m->nslots = 16;
    while (m->nslots < 2 * max_indices + 1)
        m->nslots <<= 1;
    m->slots = calloc(m->nslots, sizeof(*m->slots));
    m->order = calloc(max_indices + 1, sizeof(*m->order));
    m->other = calloc(1, sizeof(*m->other));
    m->refused = calloc(1, sizeof(*m->refused));
    if (m->slots == NULL || m->order == NULL || m->other == NULL ||
        m->refused == NULL)
        goto fail;
    util_strlcpy(m->other->name, "_other", sizeof(m->other->name));
    util_strlcpy(m->refused->name, METRICS_REFUSED, sizeof(m->refused->name));
    if (pthread_mutex_init(&m->insert_lock, NULL) != 0)
        goto fail;
    return m;
fail:
    free(m->slots);
    free(m->order);
    free(m->other);
    free(m->refused);
    free(m);
    return NULL;
}

void
metrics_free(struct metrics *m)
{
    size_t i, n;

    if (m == NULL)
        return;
    n = atomic_load(&m->count);
    for (i = 0; i < n; i++)
        free(m->order[i]);
    free(m->order);
    free(m->slots);
    free(m->other);
    free(m->refused);
    pthread_mutex_destroy(&m->insert_lock);
    free(m);
}

/* The slot holding name, or the empty slot where it would go. */
static size_t
probe(struct metrics *m, const char *name, uint64_t hash, struct idx **found)
{
    size_t mask = m->nslots - 1, i;
    struct idx *p;

    for (i = (size_t)hash & mask;; i = (i + 1) & mask) {
        p = atomic_load_explicit(&m->slots[i], memory_order_acquire);
        if (p == NULL || strcmp(p->name, name) == 0)
            break;
    }
    *found = p;
    return i;
}

/*
 * The counters of an indice, created on first sight. *overflowed is set
 * when a table with no room left sent it to "_other".
 */
static struct idx *
idx_get(struct metrics *m, const char *indice, int *overflowed)
{
    struct idx *p, *fresh;
    uint64_t hash;
    size_t len, slot, n;

    *overflowed = 0;
    if (indice == METRICS_REFUSED)
        return m->refused;
    if (indice == NULL || *indice == '\0')
        indice = "-";
    /* The fixed labels are ours: a client naming them is "_other". */
    if ((len = indice_len(indice)) == 0 || strcmp(indice, "_other") == 0 ||
        strcmp(indice, METRICS_REFUSED) == 0)
        return m->other;
    hash = siphash_keyed(indice, len);
    probe(m, indice, hash, &p);
    if (p != NULL)
        return p;
    /* The table only fills up: once full, no lock is needed to say so. */
    if (atomic_load_explicit(&m->count, memory_order_acquire) >=
        m->max_indices) {
        *overflowed = 1;
        return m->other;
    }
    /* Allocate outside the lock; freed again if another thread won. */
    if ((fresh = calloc(1, sizeof(*fresh))) == NULL)
        return m->other;
    memcpy(fresh->name, indice, len + 1);
    pthread_mutex_lock(&m->insert_lock);
    slot = probe(m, indice, hash, &p);
    n = atomic_load_explicit(&m->count, memory_order_relaxed);
    if (p == NULL && n >= m->max_indices) {
        p = m->other;
        *overflowed = 1;
    } else if (p == NULL) {
        p = fresh;
        fresh = NULL;
        m->order[n] = p;
        /* Publish the zeroed counters before the pointer to them. */
        atomic_store_explicit(&m->slots[slot], p, memory_order_release);
        atomic_store_explicit(&m->count, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->insert_lock);
    free(fresh);
    return p;
}

enum metrics_cache
metrics_cache_of(enum cache_status s)
{
    switch (s) {
    case CACHE_STATUS_HIT: return METRICS_HIT;
    case CACHE_STATUS_MISS: return METRICS_MISS;
    case CACHE_STATUS_STALE: return METRICS_STALE;
    case CACHE_STATUS_COALESCED: return METRICS_COALESCED;
    default: return METRICS_NONE; /* no lookup, or a rate limit */
    }
}

void
metrics_request(struct metrics *m, const char *indice, enum metrics_cache cache,
    int status, double seconds, uint64_t bytes)
{
    struct idx *p;
    int overflowed;

    if (m == NULL)
        return;
    if ((unsigned)cache >= METRICS_NCACHE)
        cache = METRICS_NONE;
    p = idx_get(m, indice, &overflowed);
    /* Counted once per request, not once per kind of record. */
    if (overflowed)
        inc(&m->overflow, 1);
    inc(&p->requests[cache][status_slot(status)], 1);
    inc(&p->response_bytes, bytes);
    hist_observe(&m->request_duration[cache], seconds);
    hist_observe(&p->duration, seconds);
}

void
metrics_requests_add(struct metrics *m, const char *indice,
    enum metrics_cache cache, int status, uint64_t n)
{
    struct idx *p;
    int overflowed;

    if (m == NULL || n == 0)
        return;
    if ((unsigned)cache >= METRICS_NCACHE)
        cache = METRICS_NONE;
    p = idx_get(m, indice, &overflowed);
    if (overflowed)
        inc(&m->overflow, n);
    inc(&p->requests[cache][status_slot(status)], n);
}

void
metrics_bytes_add(struct metrics *m, const char *indice, uint64_t bytes)
{
    int overflowed;

    if (m == NULL || bytes == 0)
        return;
    inc(&idx_get(m, indice, &overflowed)->response_bytes, bytes);
}

void
metrics_durations_add(struct metrics *m, const char *indice,
    enum metrics_cache cache, double seconds, uint64_t n, double sum)
{
    struct idx *p;
    int overflowed;

    if (m == NULL || n == 0)
        return;
    if ((unsigned)cache >= METRICS_NCACHE)
        cache = METRICS_NONE;
    p = idx_get(m, indice, &overflowed);
    hist_observe_n(&m->request_duration[cache], seconds, n, sum);
    hist_observe_n(&p->duration, seconds, n, sum);
}

void
metrics_upstream(struct metrics *m, const char *indice,
    enum upstream_label outcome, int http_version, int attempts, uint64_t bytes,
    double seconds)
{
    struct idx *p;
    int overflowed;

    if (m == NULL || (unsigned)outcome >= NOUTCOME)
        return;
    p = idx_get(m, indice, &overflowed);
    inc(&p->upstream[outcome], 1);
    inc(&p->upstream_bytes, bytes);
    if (attempts > 1)
        inc(&m->retries, (uint64_t)(attempts - 1));
    switch (http_version) {
    case 10: inc(&m->http_version[0], 1); break;
    case 11: inc(&m->http_version[1], 1); break;
    case 20: inc(&m->http_version[2], 1); break;
    case 30: inc(&m->http_version[3], 1); break;
    default: break;
    }
    /* A refusal takes no time worth a bucket; it would skew the quantiles. */
    if (upstream_label_called(outcome))
        hist_observe(&m->upstream_duration, seconds);
}

void
metrics_upstream_stalls(struct metrics *m, int stalls)
{
    if (m != NULL && stalls > 0)
        inc(&m->stalls, (uint64_t)stalls);
}

void
metrics_error(struct metrics *m, const char *indice, enum error_kind kind)
{
    struct idx *p;
    int overflowed;

    if (m == NULL || kind == ERROR_NONE || (unsigned)kind >= NKIND)
        return;
    p = idx_get(m, indice, &overflowed);
    inc(&p->errors[kind], 1);
}

void
metrics_purge(struct metrics *m, int all)
{
    if (m != NULL)
        inc(&m->purges[all != 0], 1);
}

void
metrics_rate_limited(struct metrics *m, const char *indice)
{
    struct idx *p;
    int overflowed;

    if (m == NULL)
        return;
    p = idx_get(m, indice, &overflowed);
    inc(&p->rate_limited, 1);
}

void
metrics_cache_rejected(
    struct metrics *m, enum metrics_reject r, const char *key, size_t keylen)
{
    int64_t now = util_mono_ms(), last;
    char where[96];
    uint64_t n;
    cJSON *f;

    if (m == NULL || (size_t)r >= METRICS_NREJECT)
        return;
    inc(&m->rejected[r], 1);
    inc(&m->rejected_since[r], 1);
    last =
        atomic_load_explicit(&m->rejected_logged_ms[r], memory_order_relaxed);
    if ((last != 0 && now - last < REJECT_LOG_MS) ||
        !atomic_compare_exchange_strong_explicit(&m->rejected_logged_ms[r],
            &last, now, memory_order_relaxed, memory_order_relaxed))
        return;
    n = atomic_exchange_explicit(
        &m->rejected_since[r], 0, memory_order_relaxed);
    util_strlcpy(
        where, key, keylen + 1 < sizeof(where) ? keylen + 1 : sizeof(where));
    if ((f = cJSON_CreateObject()) != NULL) {
        cJSON_AddStringToObject(f, "reason", reject_names[r]);
        cJSON_AddNumberToObject(f, "count", (double)n);
        cJSON_AddStringToObject(f, "key", where);
    }
    log_event(LOG_LEVEL_WARN, "cache_rejected", f);
}

void
metrics_memcached(struct metrics *m, double seconds, int ok)
{
    if (m == NULL)
        return;
    hist_observe(&m->memcached_duration, seconds);
    if (!ok)
        inc(&m->memcached_errors, 1);
}

/* ------------------------------------------------------------ snapshot */

/*
 * The indices to render, sorted by name so that scrapes are stable, with
 * "_refused" and "_other" last when they have anything. Free the array,
 * not the entries.
 */
static int
cmp_idx(const void *a, const void *b)
{
    const struct idx *const *x = a, *const *y = b;

    return strcmp((*x)->name, (*y)->name);
}

static int
idx_used(struct idx *p)
{
    size_t c, s;

    if (get(&p->response_bytes) || get(&p->upstream_bytes) ||
        get(&p->rate_limited))
        return 1;
    for (c = 0; c < METRICS_NCACHE; c++)
        for (s = 0; s < NSTATUS; s++)
            if (get(&p->requests[c][s]))
                return 1;
    for (s = 0; s < NOUTCOME; s++)
        if (get(&p->upstream[s]))
            return 1;
    for (s = 0; s < NKIND; s++)
        if (get(&p->errors[s]))
            return 1;
    return 0;
}

static struct idx **
snapshot(struct metrics *m, size_t *np)
{
    size_t n = atomic_load_explicit(&m->count, memory_order_acquire);
    struct idx **v = malloc((n + 2) * sizeof(*v));

    if (v == NULL)
        return NULL;
    memcpy(v, m->order, n * sizeof(*v));
    qsort(v, n, sizeof(*v), cmp_idx);
    if (idx_used(m->refused))
        v[n++] = m->refused;
    if (idx_used(m->other))
        v[n++] = m->other;
    *np = n;
    return v;
}

/* ------------------------------------------------------------ prometheus */

struct out {
    struct dynbuf b;
    int failed;
};

static void out_printf(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
out_printf(struct out *o, const char *fmt, ...)
{
    char small[512], *p = small;
    va_list ap;
    int n;

    if (o->failed)
        return;
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = 1;
        return;
    }
    if ((size_t)n >= sizeof(small)) {
        if ((p = malloc((size_t)n + 1)) == NULL) {
            o->failed = 1;
            return;
        }
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (dynbuf_append(&o->b, p, (size_t)n) != 0)
        o->failed = 1;
    if (p != small)
        free(p);
}

static void
out_raw(struct out *o, const char *s, size_t n)
{
    if (!o->failed && dynbuf_append(&o->b, s, n) != 0)
        o->failed = 1;
}

/* A label value: backslash, double quote and newline are escaped. */
static void
out_label_value(struct out *o, const char *s)
{
    const char *run = s;

    for (; *s != '\0'; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '"')
            esc = "\\\"";
        else if (*s == '\n')
            esc = "\\n";
        if (esc != NULL) {
            out_raw(o, run, (size_t)(s - run));
            out_raw(o, esc, 2);
            run = s + 1;
        }
    }
    out_raw(o, run, (size_t)(s - run));
}

static void
family(struct out *o, const char *name, const char *type, const char *help)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Go's strconv formatting of special values, which Prometheus parses. */
static void
out_double(struct out *o, double v)
{
    if (isnan(v))
        out_printf(o, "NaN");
    else if (isinf(v))
        out_printf(o, v > 0 ? "+Inf" : "-Inf");
    else
        out_printf(o, "%.17g", v);
}

/*
 * One histogram's series; label/value is its one label or NULL. The
 * buckets are made cumulative here from one read of each count, so
 * +Inf and _count agree even while workers record.
 */
static void
out_histogram(struct out *o, const char *name, const char *label,
    const char *value, struct histogram *h)
{
    uint64_t cum = 0;
    size_t i;

    for (i = 0; i <= NBOUNDS; i++) {
        cum += get(&h->counts[i]);
        out_printf(o, "%s_bucket{", name);
        if (label != NULL) {
            out_printf(o, "%s=\"", label);
            out_label_value(o, value);
            out_printf(o, "\",");
        }
        out_printf(o, "le=\"%s\"} %" PRIu64 "\n",
            i < NBOUNDS ? bucket_le[i] : "+Inf", cum);
    }
    out_printf(o, "%s_sum", name);
    if (label != NULL) {
        out_printf(o, "{%s=\"", label);
        out_label_value(o, value);
        out_printf(o, "\"}");
    }
    out_printf(o, " ");
    out_double(o,
        bits_to_double(
            atomic_load_explicit(&h->sum_bits, memory_order_relaxed)));
    out_printf(o, "\n%s_count", name);
    if (label != NULL) {
        out_printf(o, "{%s=\"", label);
        out_label_value(o, value);
        out_printf(o, "\"}");
    }
    out_printf(o, " %" PRIu64 "\n", cum);
}

/* name{indice="..."} value, for a per-indice counter. */
static void
out_indice_sample(struct out *o, const char *name, const struct idx *p,
    const char *label, const char *value, uint64_t v)
{
    out_printf(o, "%s{indice=\"", name);
    out_label_value(o, p->name);
    if (label != NULL) {
        out_printf(o, "\",%s=\"", label);
        out_label_value(o, value);
    }
    out_printf(o, "\"} %" PRIu64 "\n", v);
}

static void
out_single(struct out *o, const char *name, const char *type, const char *help,
    uint64_t v)
{
    family(o, name, type, help);
    out_printf(o, "%s %" PRIu64 "\n", name, v);
}

static const char *
upstream_label_value(size_t i)
{
    return upstream_label_name((enum upstream_label)i);
}

static const char *
error_kind_value(size_t i)
{
    return error_kind_name((enum error_kind)i);
}

/*
 * The per-índice counter families after hereproxy_requests_total: a
 * counter, or an array of them under one label.
 */
static const struct family {
    const char *name, *help;
    size_t offset;     /* in struct idx */
    const char *label; /* NULL: one counter */
    size_t nvalues;
    const char *(*value_name)(size_t i);
} families[] = {
    {"hereproxy_response_bytes_total",
        "Response body bytes sent to clients, by indice.",
        offsetof(struct idx, response_bytes), NULL, 1, NULL},
    {"hereproxy_upstream_requests_total",
        "Upstream exchanges (after retries), by indice and outcome.",
        offsetof(struct idx, upstream), "outcome", NOUTCOME,
        upstream_label_value},
    {"hereproxy_upstream_bytes_total",
        "Body bytes received from the upstream, by indice.",
        offsetof(struct idx, upstream_bytes), NULL, 1, NULL},
    {"hereproxy_errors_total", "Error responses, by indice and kind.",
        offsetof(struct idx, errors), "kind", NKIND, error_kind_value},
    {"hereproxy_rate_limited_total",
        "Requests refused by the rate limiter, by indice.",
        offsetof(struct idx, rate_limited), NULL, 1, NULL},
};

static void
render_indices(struct out *o, struct idx **v, size_t n)
{
    char code[16];
    size_t i, c, s, f;

    family(o, "hereproxy_requests_total", "counter",
        "Requests answered, by indice, cache result and HTTP status.");
    for (i = 0; i < n; i++)
        for (c = 0; c < METRICS_NCACHE; c++)
            for (s = 0; s < NSTATUS; s++) {
                uint64_t x = get(&v[i]->requests[c][s]);
                if (x == 0)
                    continue;
                out_printf(o, "hereproxy_requests_total{indice=\"");
                out_label_value(o, v[i]->name);
                out_printf(o, "\",cache=\"%s\",code=\"%s\"} %" PRIu64 "\n",
                    cache_names[c], status_label(s, code, sizeof(code)), x);
            }

    for (f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        const struct family *fam = &families[f];

        family(o, fam->name, "counter", fam->help);
        for (i = 0; i < n; i++) {
            _Atomic uint64_t *cnt =
                (_Atomic uint64_t *)(void *)((char *)v[i] + fam->offset);

            for (s = 0; s < fam->nvalues; s++)
                if (get(&cnt[s]))
                    out_indice_sample(o, fam->name, v[i], fam->label,
                        fam->label ? fam->value_name(s) : NULL, get(&cnt[s]));
        }
    }
}

/* The HERE credential: which kind, and the token's health (OAuth). */
static void
render_here_auth(struct out *o, const struct hereauth_stats *a)
{
    size_t i;

    family(o, "hereproxy_here_auth", "gauge",
        "1 for the kind of HERE credential in use: api_key or oauth "
        "(HERE_CREDENTIALS_FILE).");
    out_printf(o, "hereproxy_here_auth{kind=\"api_key\"} %d\n", !a->bearer);
    out_printf(o, "hereproxy_here_auth{kind=\"oauth\"} %d\n", a->bearer != 0);
    out_single(o, "hereproxy_here_token_valid", "gauge",
        "1 while the proxy holds a HERE token it may send (OAuth only).",
        a->token_valid != 0);
    family(o, "hereproxy_here_token_expiry_seconds", "gauge",
        "Unix time the HERE token in use expires (0: none).");
    out_printf(
        o, "hereproxy_here_token_expiry_seconds %.3f\n", a->token_expiry);
    family(o, "hereproxy_here_token_renewals_total", "counter",
        "Requests for a HERE token to the token endpoint, by outcome.");
    for (i = 0; i < HEREAUTH_NOUTCOME; i++)
        out_printf(o,
            "hereproxy_here_token_renewals_total{outcome=\"%s\"} %" PRIu64 "\n",
            hereauth_outcome_name((enum hereauth_outcome)i), a->renewals[i]);
    out_single(o, "hereproxy_here_token_refused_total", "counter",
        "HERE tokens HERE answered 401 to, each replaced at once.", a->refused);
}

/*
 * Worker threads by state; busy is what neither waits for a connection
 * nor on one, so that the three add up to hereproxy_threads.
 */
static void
render_workers(struct out *o, const struct metrics_gauges *g)
{
    uint64_t waiting = g->workers_accepting + g->workers_idle_conn;

    family(o, "hereproxy_workers", "gauge",
        "Worker threads by state: accepting (free for a new connection), "
        "busy (reading or serving a request), idle_conn (bound to a "
        "kept-alive connection, waiting for its next request).");
    out_printf(o, "hereproxy_workers{state=\"accepting\"} %" PRIu64 "\n",
        g->workers_accepting);
    out_printf(o, "hereproxy_workers{state=\"busy\"} %" PRIu64 "\n",
        g->threads_total > waiting ? g->threads_total - waiting : 0);
    out_printf(o, "hereproxy_workers{state=\"idle_conn\"} %" PRIu64 "\n",
        g->workers_idle_conn);
    out_single(o, "hereproxy_idle_connections_closed_total", "counter",
        "Kept-alive FastCGI connections closed while idle because a new "
        "connection waited for a worker (HEREPROXY_IDLE_RELEASE_MS).",
        g->idle_conns_closed);
}

/*
 * The process collector's families, as every Prometheus client library
 * names them, and the CPUs the process may use. What is unknown is left
 * out rather than shown as 0.
 */
static void
render_process(struct out *o, const struct metrics_gauges *g)
{
    const struct procstat *p = &g->process;

    if (!g->have_process)
        return;
    if (p->have_stat) {
        family(o, "process_cpu_seconds_total", "counter",
            "Total user and system CPU time spent in seconds.");
        out_printf(o, "process_cpu_seconds_total %.2f\n", p->cpu_seconds);
        out_single(o, "process_resident_memory_bytes", "gauge",
            "Resident memory size in bytes.", p->resident_bytes);
        out_single(o, "process_virtual_memory_bytes", "gauge",
            "Virtual memory size in bytes.", p->virtual_bytes);
    }
    if (p->open_fds >= 0)
        out_single(o, "process_open_fds", "gauge",
            "Number of open file descriptors.", (uint64_t)p->open_fds);
    if (p->max_fds >= 0)
        out_single(o, "process_max_fds", "gauge",
            "Maximum number of open file descriptors.", (uint64_t)p->max_fds);
    if (g->start_time > 0) {
        family(o, "process_start_time_seconds", "gauge",
            "Start time of the process since unix epoch in seconds.");
        out_printf(o, "process_start_time_seconds %.3f\n", g->start_time);
    }
    if (p->cpus > 0) {
        family(o, "hereproxy_cpus_available", "gauge",
            "CPUs the process may use: its CPU affinity, or its cgroup's "
            "CPU quota (cpu.max) when lower.");
        out_printf(o, "hereproxy_cpus_available %g\n", p->cpus);
    }
}

char *
metrics_render_prometheus(
    struct metrics *m, const struct metrics_gauges *g, const char *version)
{
    static const struct metrics_gauges zero;
    struct out o;
    struct idx **v = NULL;
    size_t n = 0, i;
    double now, uptime;

    if (g == NULL)
        g = &zero;
    if (version == NULL)
        version = "unknown";
    if ((v = snapshot(m, &n)) == NULL)
        return NULL;
    dynbuf_init(&o.b, RENDER_MAX);
    o.failed = 0;

    render_indices(&o, v, n);

    family(&o, "hereproxy_request_duration_seconds", "histogram",
        "Time to answer a request, by cache result.");
    for (i = 0; i < METRICS_NCACHE; i++)
        out_histogram(&o, "hereproxy_request_duration_seconds", "cache",
            cache_names[i], &m->request_duration[i]);

    family(&o, "hereproxy_upstream_duration_seconds", "histogram",
        "Time of upstream exchanges that reached the network, retries "
        "included.");
    out_histogram(&o, "hereproxy_upstream_duration_seconds", NULL, NULL,
        &m->upstream_duration);

    out_single(&o, "hereproxy_upstream_retries_total", "counter",
        "Upstream attempts beyond the first.", get(&m->retries));
    out_single(&o, "hereproxy_upstream_stalls_total", "counter",
        "Upstream attempts abandoned after HERE_ATTEMPT_TIMEOUT_MS without "
        "progress (HERE stalled), retried or not.",
        get(&m->stalls));

    family(&o, "hereproxy_upstream_http_version_total", "counter",
        "Upstream responses by HTTP version.");
    for (i = 0; i < NVERSION; i++)
        out_printf(&o,
            "hereproxy_upstream_http_version_total{version=\"%s\"} "
            "%" PRIu64 "\n",
            version_names[i], get(&m->http_version[i]));

    family(&o, "hereproxy_memcached_duration_seconds", "histogram",
        "Time of memcached operations.");
    out_histogram(&o, "hereproxy_memcached_duration_seconds", NULL, NULL,
        &m->memcached_duration);
    out_single(&o, "hereproxy_memcached_errors_total", "counter",
        "Failed memcached operations.", get(&m->memcached_errors));

    out_single(&o, "hereproxy_cache_entries", "gauge",
        "Entries in the in-process cache.", g->lru_entries);
    out_single(&o, "hereproxy_cache_bytes", "gauge",
        "Bytes held by the in-process cache.", g->lru_bytes);
    out_single(&o, "hereproxy_cache_max_bytes", "gauge",
        "Byte bound of the in-process cache.", g->lru_max_bytes);
    out_single(&o, "hereproxy_cache_evictions_total", "counter",
        "Entries evicted from the in-process cache to make room.",
        g->lru_evictions);
    out_single(&o, "hereproxy_cache_admissions_refused_total", "counter",
        "Memcached hits not copied into the in-process cache: asked for "
        "less often than the entry they would evict.",
        g->lru_refused);
    out_single(&o, "hereproxy_memcached_configured", "gauge",
        "1 when a memcached tier is configured.", g->memcached_configured != 0);
    out_single(&o, "hereproxy_memcached_up", "gauge",
        "1 when the memcached tier answers.", g->memcached_up != 0);
    out_single(&o, "hereproxy_memcached_servers", "gauge",
        "memcached servers configured.", g->memcached_servers);
    out_single(&o, "hereproxy_memcached_servers_down", "gauge",
        "memcached servers not answering a round trip at scrape time.",
        g->memcached_servers_down);
    if (g->memcached_listed > 0) {
        family(&o, "hereproxy_memcached_server_up", "gauge",
            "1 when this memcached server answered a round trip at scrape "
            "time.");
        for (i = 0; i < g->memcached_listed; i++) {
            out_printf(&o, "hereproxy_memcached_server_up{server=\"");
            out_label_value(&o, g->memcached_server_names[i]);
            out_printf(&o, "\"} %d\n", g->memcached_server_up[i] != 0);
        }
    }
    family(&o, "hereproxy_cache_rejected_total", "counter",
        "Values read from memcached and refused (never served or trusted), "
        "by reason.");
    for (i = 0; i < METRICS_NREJECT; i++)
        out_printf(&o,
            "hereproxy_cache_rejected_total{reason=\"%s\"} %" PRIu64 "\n",
            reject_names[i], get(&m->rejected[i]));
    out_single(&o, "hereproxy_upstream_inflight", "gauge",
        "Upstream exchanges in progress.", g->upstream_inflight);
    out_single(&o, "hereproxy_upstream_queued", "gauge",
        "Upstream exchanges waiting for a slot.", g->upstream_queued);
    out_single(&o, "hereproxy_breaker_open", "gauge",
        "1 while the upstream circuit breaker is open.", g->breaker_open != 0);
    render_here_auth(&o, &g->here_auth);
    family(&o, "hereproxy_cache_only", "gauge",
        "1 while misses are refused to spare HERE (an indice's upstream "
        "limit or the daily budget spent, or HERE refusing): scope all, "
        "one series per indice, or per plan class (params) HERE refused.");
    out_printf(
        &o, "hereproxy_cache_only{scope=\"all\"} %d\n", g->cache_only_all != 0);
    for (i = 0; i < g->cache_only_count; i++) {
        out_printf(&o, "hereproxy_cache_only{scope=\"indice\",indice=\"");
        out_label_value(&o, g->cache_only_indices[i]);
        out_printf(&o, "\"} 1\n");
    }
    for (i = 0; i < g->cache_only_params_count; i++) {
        out_printf(&o, "hereproxy_cache_only{scope=\"params\",params=\"");
        out_label_value(&o, g->cache_only_params[i]);
        out_printf(&o, "\"} 1\n");
    }
    out_single(&o, "hereproxy_quota_table_full_total", "counter",
        "Misses refused because this instance's table of upstream quota "
        "counts was full of running windows.",
        g->quota_table_full);
    out_single(&o, "hereproxy_cache_only_evictions_total", "counter",
        "Cache-only scopes ended early to make room in a full table.",
        g->cache_only_evicted);
    family(&o, "hereproxy_cache_purges_total", "counter",
        "Purges through POST /admin/purge, by scope.");
    out_printf(&o, "hereproxy_cache_purges_total{scope=\"tile\"} %" PRIu64 "\n",
        get(&m->purges[0]));
    out_printf(&o, "hereproxy_cache_purges_total{scope=\"all\"} %" PRIu64 "\n",
        get(&m->purges[1]));
    out_single(&o, "hereproxy_threads_busy", "gauge",
        "Worker threads serving a request.", g->threads_busy);
    out_single(
        &o, "hereproxy_threads", "gauge", "Worker threads.", g->threads_total);
    render_workers(&o, g);

    family(&o, "hereproxy_build_info", "gauge",
        "Always 1; the labels say which build runs, with which libcurl.");
    out_printf(&o, "hereproxy_build_info{version=\"");
    out_label_value(&o, version);
    if (g->libcurl_version != NULL) {
        out_printf(&o, "\",libcurl=\"");
        out_label_value(&o, g->libcurl_version);
    }
    out_printf(&o, "\"} 1\n");

    now = g->now > 0 ? g->now : (double)util_wall_ms() / 1000.0;
    uptime = g->start_time > 0 && now > g->start_time ? now - g->start_time : 0;
    family(&o, "hereproxy_start_time_seconds", "gauge",
        "Unix time the process started.");
    out_printf(&o, "hereproxy_start_time_seconds %.3f\n", g->start_time);
    family(&o, "hereproxy_uptime_seconds", "gauge",
        "Seconds since the process started.");
    out_printf(&o, "hereproxy_uptime_seconds %.3f\n", uptime);
    render_process(&o, g);

    out_single(&o, "hereproxy_indices_tracked", "gauge",
        "Indices with series of their own.", (uint64_t)atomic_load(&m->count));
    out_single(&o, "hereproxy_indices_overflow_total", "counter",
        "Requests counted under the _other indice because the indice "
        "table was full.",
        get(&m->overflow));

    free(v);
    out_raw(&o, "", 1);
    if (o.failed) {
        dynbuf_cleanup(&o.b);
        return NULL;
    }
    return o.b.data;
}

/* ------------------------------------------------------------ json */

struct summary {
    uint64_t requests, by_cache[METRICS_NCACHE], bytes;
    uint64_t upstream_calls, upstream_bytes, errors, rate_limited;
    uint64_t buckets[NBOUNDS + 1]; /* request durations, not cumulative */
};

static void
summarize(struct idx *p, struct summary *s)
{
    size_t c, k;

    for (c = 0; c < METRICS_NCACHE; c++)
        for (k = 0; k < NSTATUS; k++) {
            uint64_t x = get(&p->requests[c][k]);
            s->by_cache[c] += x;
            s->requests += x;
        }
    s->bytes += get(&p->response_bytes);
    for (k = 0; k < NOUTCOME; k++)
        if (upstream_label_called(k))
            s->upstream_calls += get(&p->upstream[k]);
    s->upstream_bytes += get(&p->upstream_bytes);
    for (k = 0; k < NKIND; k++)
        s->errors += get(&p->errors[k]);
    s->rate_limited += get(&p->rate_limited);
    for (k = 0; k <= NBOUNDS; k++)
        s->buckets[k] += get(&p->duration.counts[k]);
}

/* Totals add up what the indices show: each counter is read once. */
static void
summary_add(struct summary *t, const struct summary *s)
{
    size_t c;

    t->requests += s->requests;
    for (c = 0; c < METRICS_NCACHE; c++)
        t->by_cache[c] += s->by_cache[c];
    t->bytes += s->bytes;
    t->upstream_calls += s->upstream_calls;
    t->upstream_bytes += s->upstream_bytes;
    t->errors += s->errors;
    t->rate_limited += s->rate_limited;
    for (c = 0; c <= NBOUNDS; c++)
        t->buckets[c] += s->buckets[c];
}

double
metrics_quantile(const uint64_t *counts, size_t n, double q)
{
    uint64_t total = 0, cum = 0;
    double rank, lower;
    size_t i;

    if (n != NBOUNDS + 1 || !(q >= 0 && q <= 1))
        return -1;
    for (i = 0; i < n; i++)
        total += counts[i];
    if (total == 0)
        return -1;
    rank = q * (double)total;
    for (i = 0; i < NBOUNDS; i++) {
        if ((double)(cum + counts[i]) >= rank && counts[i] > 0) {
            /*
             * As Prometheus' histogram_quantile: linear within the
             * bucket, the first bucket starting at 0.
             */
            lower = i == 0 ? 0 : bucket_bounds[i - 1];
            return lower +
                (bucket_bounds[i] - lower) *
                ((rank - (double)cum) / (double)counts[i]);
        }
        cum += counts[i];
    }
    /* In the +Inf bucket: the highest finite bound is all we know. */
    return bucket_bounds[NBOUNDS - 1];
}

size_t
metrics_nbuckets(void)
{
    return NBOUNDS + 1;
}

double
metrics_bucket_bound(size_t i)
{
    return i < NBOUNDS ? bucket_bounds[i] : -1;
}

/* {"p50": ms, "p95": ms}, null without observations. */
static cJSON *
latency_json(const struct summary *s)
{
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50", 0.50}, {"p95", 0.95}};
    cJSON *o = cJSON_CreateObject();
    size_t i;

    if (o == NULL)
        return NULL;
    for (i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        double v = metrics_quantile(s->buckets, NBOUNDS + 1, qs[i].q);
        cJSON *item;

        /* Milliseconds to a microsecond: the buckets are no finer. */
        item = v < 0 ? cJSON_AddNullToObject(o, qs[i].name)
                     : cJSON_AddNumberToObject(o, qs[i].name,
                           (double)(long long)(v * 1e6 + 0.5) / 1e3);
        if (item == NULL) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

static cJSON *
summary_json(const struct summary *s)
{
    cJSON *o = cJSON_CreateObject();
    uint64_t served, lookups;
    int ok;

    if (o == NULL)
        return NULL;
    served = s->by_cache[METRICS_HIT] + s->by_cache[METRICS_STALE];
    lookups =
        served + s->by_cache[METRICS_MISS] + s->by_cache[METRICS_COALESCED];
    ok = cJSON_AddNumberToObject(o, "requests", (double)s->requests) &&
        cJSON_AddNumberToObject(o, "hits", (double)s->by_cache[METRICS_HIT]) &&
        cJSON_AddNumberToObject(
            o, "misses", (double)s->by_cache[METRICS_MISS]) &&
        cJSON_AddNumberToObject(
            o, "stale", (double)s->by_cache[METRICS_STALE]) &&
        cJSON_AddNumberToObject(
            o, "coalesced", (double)s->by_cache[METRICS_COALESCED]) &&
        cJSON_AddNumberToObject(o, "bytes", (double)s->bytes) &&
        cJSON_AddNumberToObject(
            o, "upstream_calls", (double)s->upstream_calls) &&
        cJSON_AddNumberToObject(
            o, "upstream_bytes", (double)s->upstream_bytes) &&
        cJSON_AddNumberToObject(o, "errors", (double)s->errors) &&
        cJSON_AddNumberToObject(o, "rate_limited", (double)s->rate_limited);
    /* Served from cache over cache lookups; no lookups, no ratio. */
    if (ok && lookups > 0)
        ok = cJSON_AddNumberToObject(
                 o, "hit_ratio", (double)served / (double)lookups) != NULL;
    else if (ok)
        ok = cJSON_AddNullToObject(o, "hit_ratio") != NULL;
    if (ok) {
        cJSON *lat = latency_json(s);
        ok = lat != NULL && cJSON_AddItemToObject(o, "latency_ms", lat);
        if (lat != NULL && !ok)
            cJSON_Delete(lat);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *
metrics_render_json(struct metrics *m)
{
    cJSON *root = NULL, *indices, *item;
    struct summary total, one;
    struct idx **v = NULL;
    char *text = NULL;
    size_t n = 0, i;

    memset(&total, 0, sizeof(total));
    if ((v = snapshot(m, &n)) == NULL)
        goto done;
    if ((root = cJSON_CreateObject()) == NULL ||
        (indices = cJSON_AddObjectToObject(root, "indices")) == NULL)
        goto done;
    for (i = 0; i < n; i++) {
        memset(&one, 0, sizeof(one));
        summarize(v[i], &one);
        summary_add(&total, &one);
        if ((item = summary_json(&one)) == NULL)
            goto done;
        if (!cJSON_AddItemToObject(indices, v[i]->name, item)) {
            cJSON_Delete(item);
            goto done;
        }
    }
    if ((item = summary_json(&total)) == NULL)
        goto done;
    if (!cJSON_AddItemToObject(root, "totals", item)) {
        cJSON_Delete(item);
        goto done;
    }
    text = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(root);
    free(v);
    return text;
}
