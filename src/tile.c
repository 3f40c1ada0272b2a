#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admit.h"
#include "breaker.h"
#include "cache.h"
#include "flightjobs.h"
#include "log.h"
#include "metrics.h"
#include "response.h"
#include "tile.h"
#include "util.h"

/* A follower waits for the leader's whole flight, and this much more. */
#define FOLLOWER_SLACK_MS 1000
/* A memcached look for another instance's tile, while it fetches. */
#define SHARED_POLL_MS 10

/*
 * Whatever a head holds fits an entry: a value too long for the head was
 * dropped by the engine, so none is ever cut here or refused there.
 */
_Static_assert(sizeof(((struct flight_head *)0)->etag) - 1 <= ENTRY_ETAG_MAX,
    "a flight's ETag must fit an entry");
_Static_assert(
    sizeof(((struct flight_head *)0)->content_type) - 1 <= ENTRY_CTYPE_MAX,
    "a flight's Content-Type must fit an entry");

/* ------------------------------------------------------ store and fetcher */

static struct entry *
cache_memory(void *ctx, const char *key, size_t keylen, int64_t now)
{
    return cache_get_memory(ctx, key, keylen, now);
}

static struct entry *
cache_rest(void *ctx, const char *key, size_t keylen, int64_t now,
    struct entry *memory)
{
    enum cache_source src;

    return cache_get_after_memory(ctx, key, keylen, now, memory, &src);
}

static struct entry *
cache_shared_entry(void *ctx, const char *key, size_t keylen, int64_t now)
{
    return cache_get_shared(ctx, key, keylen, now);
}

static int
cache_is_shared(void *ctx)
{
    return cache_shared(ctx);
}

static int
cache_take_lock(void *ctx, const char *key, size_t keylen, long ttl_s)
{
    return cache_lock(ctx, key, keylen, ttl_s);
}

static void
cache_drop_lock(void *ctx, const char *key, size_t keylen)
{
    cache_unlock(ctx, key, keylen);
}

static void
cache_store(
    void *ctx, const char *key, size_t keylen, struct entry *e, int64_t now)
{
    cache_put(ctx, key, keylen, e, now);
}

void
tile_store_cache(struct tile_store *s, struct cache *c)
{
    s->ctx = c;
    s->get_memory = cache_memory;
    s->get_rest = cache_rest;
    s->get_shared = cache_shared_entry;
    s->shared = cache_is_shared;
    s->lock = cache_take_lock;
    s->unlock = cache_drop_lock;
    s->put = cache_store;
}

static int
upstream_fetch(void *ctx, struct flight *f, const char *path_and_query,
    int has_query, const char *if_none_match, enum upstream_expect expect)
{
    return upstream_submit(
        ctx, f, path_and_query, has_query, if_none_match, expect);
}

void
tile_fetcher_upstream(struct tile_fetcher *f, struct upstream *up)
{
    f->ctx = up;
    f->submit = upstream_fetch;
}

/* ------------------------------------------------------------- policies */

long
tile_fresh_ttl(
    const struct settings *cfg, int meta, int status, const char *cache_control)
{
    long cap = cfg->cache_ttl_cap_s, ttl;

    if (status == 404)
        ttl = cfg->cache_negative_ttl_s;
    else if (meta)
        ttl = cfg->cache_meta_ttl_s;
    else
        return cache_ttl(
            cache_control != NULL && *cache_control ? cache_control : NULL,
            cfg->cache_ttl_default_s, cap);
    return ttl < cap ? ttl : cap;
}

/* How long an entry is kept past its freshness: stale 200s, not 404s. */
static int64_t
keep_until(const struct settings *cfg, int status, int64_t fresh_until)
{
    return fresh_until + (status == 200 ? cfg->cache_stale_ttl_s : 0);
}

/* The Content-Types a 200 from HERE may have for this request. */
static enum upstream_expect
expect_of(const struct tile_req *req)
{
    return req->route == ROUTE_META ? UPSTREAM_EXPECT_JSON
                                    : UPSTREAM_EXPECT_IMAGE;
}

/* ------------------------------------------------------------- answers */

/* status 0: the kind's own (labels.h); message NULL: the kind's words. */
static void
answer_error(struct tile_answer *a, enum error_kind kind, int status,
    const char *message, const char *detail)
{
    a->body = TILE_ERROR;
    a->error = kind;
    a->status = status != 0 ? status : error_kind_status(kind, 502);
    if (message == NULL)
        message = error_kind_message(kind);
    util_strlcpy(
        a->message, message != NULL ? message : "error", sizeof(a->message));
    util_strlcpy(a->detail, detail != NULL ? detail : "", sizeof(a->detail));
}

/*
 * A flight that brought no usable head: the kind of failure for the
 * client, curl's words (which name the address and port) for the log.
 */
static void
answer_failed_flight(struct tile_answer *a, const struct flight_result *r)
{
    char msg[128];

    switch (r->outcome) {
    case UPSTREAM_TIMEOUT:
        answer_error(a, ERROR_UPSTREAM_TIMEOUT, 0, NULL, r->error);
        return;
    case UPSTREAM_STALLED:
        answer_error(a, ERROR_UPSTREAM_TIMEOUT, 0,
            "HERE stopped sending (stalled)", r->error);
        return;
    case UPSTREAM_TOO_BIG:
        answer_error(a, ERROR_OTHER, 502,
            "HERE's response is larger than UPSTREAM_MAX_BYTES", r->error);
        return;
    case UPSTREAM_BAD_RESPONSE:
        answer_error(a, ERROR_UPSTREAM_BAD_RESPONSE, 0, NULL, r->error);
        return;
    case UPSTREAM_TLS:
        answer_error(a, ERROR_UPSTREAM_UNREACHABLE, 0,
            "TLS with HERE failed (certificate refused or handshake error)",
            r->error);
        return;
    case UPSTREAM_BROKEN:
        answer_error(a, ERROR_UPSTREAM_UNREACHABLE, 0,
            "HERE's response was broken off or malformed", r->error);
        return;
    case UPSTREAM_BUSY:
        a->retry_after_s = 1;
        answer_error(a, ERROR_BUSY, 0, NULL, NULL);
        return;
    case UPSTREAM_STOPPED:
        a->retry_after_s = 1;
        answer_error(a, ERROR_OTHER, 503, "shutting down", r->error);
        return;
    case UPSTREAM_SHED:
        a->retry_after_s = r->retry_after_s > 0 ? r->retry_after_s : 1;
        answer_error(a, ERROR_BREAKER_OPEN, 0, r->error, NULL);
        return;
    case UPSTREAM_CACHE_ONLY:
        a->retry_after_s = r->retry_after_s > 0 ? r->retry_after_s : 1;
        answer_error(a, ERROR_CACHE_ONLY, 0, r->error, NULL);
        return;
    case UPSTREAM_AUTH:
        /* Why (the token endpoint's answer) is for the log only. */
        a->retry_after_s = 1;
        answer_error(a, ERROR_UPSTREAM_AUTH, 0, NULL, r->error);
        return;
    case UPSTREAM_HTTP_ERROR:
        snprintf(msg, sizeof(msg), "HERE answered %d %s", r->status,
            response_reason(r->status));
        if (r->status == 429) {
            a->retry_after_s = r->retry_after_s > 0 ? r->retry_after_s : 1;
            answer_error(a, ERROR_UPSTREAM_4XX, 503, msg, NULL);
        } else {
            answer_error(a, ERROR_UPSTREAM_5XX, 0, msg, NULL);
        }
        return;
    default: /* UPSTREAM_CONNECT, and whatever else failed to connect */
        answer_error(a, ERROR_UPSTREAM_UNREACHABLE, 0, NULL, r->error);
        return;
    }
}

/*
 * A head other than 200: the client gets what HERE's status means, never
 * its body or headers (a redirect's Location stays here).
 */
static void
answer_status(struct tile_answer *a, int status, struct flight *f)
{
    struct flight_result r;
    char msg[128];

    snprintf(msg, sizeof(msg), "HERE answered %d %s", status,
        response_reason(status));
    if (status == 429) {
        /* Still 429 after the last retry: as answer_failed_flight does. */
        flight_result(f, &r);
        a->retry_after_s = r.retry_after_s > 0 ? r.retry_after_s : 1;
        answer_error(a, ERROR_UPSTREAM_4XX, 503, msg, NULL);
    } else if (status >= 400 && status < 500) {
        answer_error(a, ERROR_UPSTREAM_4XX, status, msg, NULL);
    } else if (status >= 500) {
        answer_error(a, ERROR_UPSTREAM_5XX, 0, msg, NULL);
    } else if (status >= 300 && status != 304) {
        /* The engine follows no redirect: HERE moved, or is not HERE. */
        snprintf(msg, sizeof(msg),
            "HERE answered %d %s (redirects are not followed)", status,
            response_reason(status));
        answer_error(a, ERROR_UPSTREAM_3XX, 0, msg, NULL);
    } else {
        /* 304 to a request that was not conditional, 204, 206, ... */
        answer_error(a, ERROR_UPSTREAM_BAD_RESPONSE, 0, msg, NULL);
    }
}

/* A cached entry, fresh (HIT) or stale. */
static void
answer_entry(struct tile_answer *a, struct entry *e, enum cache_status cache,
    int64_t now)
{
    a->body = TILE_ENTRY;
    a->cache = cache;
    a->entry = e;
    a->status = e->status;
    a->max_age_s = cache == CACHE_STATUS_HIT ? (long)(e->fresh_until - now) : 0;
    a->content_type = e->content_type;
    a->etag = e->etag;
    a->data = e->body;
    a->len = e->body_len;
    if (e->status >= 400)
        a->error = ERROR_UPSTREAM_4XX; /* a cached HERE 404 */
}

/* ------------------------------------------------------ HERE's outcomes */

static void
note_breaker(const struct settings *cfg, enum breaker_change change)
{
    cJSON *f;

    if (change == BREAKER_SAME)
        return;
    if ((f = cJSON_CreateObject()) != NULL) {
        cJSON_AddNumberToObject(
            f, "threshold", (double)cfg->here_breaker_threshold);
        cJSON_AddNumberToObject(
            f, "cooldown_ms", (double)cfg->here_breaker_cooldown_ms);
    }
    log_event(change == BREAKER_OPENED ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
        change == BREAKER_OPENED ? "breaker_open" : "breaker_closed", f);
}

/* The label of hereproxy_upstream_requests_total, or -1: not an exchange. */
static int
upstream_label_of(const struct flight_result *r)
{
    switch ((enum upstream_outcome)r->outcome) {
    case UPSTREAM_OK:
        if (r->status == 304)
            return UPSTREAM_LABEL_NOT_MODIFIED;
        return r->status >= 300 ? UPSTREAM_LABEL_HTTP_ERROR : UPSTREAM_LABEL_OK;
    case UPSTREAM_CONNECT: return UPSTREAM_LABEL_CONNECT;
    case UPSTREAM_TLS: return UPSTREAM_LABEL_TLS;
    case UPSTREAM_TIMEOUT: return UPSTREAM_LABEL_TIMEOUT;
    case UPSTREAM_STALLED: return UPSTREAM_LABEL_STALLED;
    case UPSTREAM_TOO_BIG: return UPSTREAM_LABEL_TOO_BIG;
    case UPSTREAM_BROKEN: return UPSTREAM_LABEL_BROKEN;
    case UPSTREAM_BUSY: return UPSTREAM_LABEL_BUSY;
    case UPSTREAM_HTTP_ERROR: return UPSTREAM_LABEL_HTTP_ERROR;
    case UPSTREAM_SHED: return UPSTREAM_LABEL_BREAKER_OPEN;
    case UPSTREAM_CACHE_ONLY: return UPSTREAM_LABEL_CACHE_ONLY;
    case UPSTREAM_BAD_RESPONSE: return UPSTREAM_LABEL_BAD_RESPONSE;
    case UPSTREAM_AUTH: return UPSTREAM_LABEL_AUTH;
    case UPSTREAM_STOPPED: return -1;
    }
    return -1;
}

/*
 * How HERE did for a flight this request led: the breaker, HERE's denials
 * (of the key, of indice's volume, or of the plan class plan), the
 * metrics.
 */
static void
record_exchange(struct tile_flow *t, const struct settings *cfg,
    const char *indice, const char *plan, const struct flight_result *r,
    struct flight *f)
{
    int label = upstream_label_of(r), ok;

    if (label >= 0)
        metrics_upstream(t->metrics, indice, (enum upstream_label)label,
            (int)r->http_version, r->attempts,
            r->attempts > 0 ? (uint64_t)flight_body_len(f) : 0,
            r->upstream_ms / 1000.0);
    metrics_upstream_stalls(t->metrics, r->stalls);
    if (r->attempts == 0 || r->outcome == UPSTREAM_BUSY ||
        r->outcome == UPSTREAM_STOPPED)
        return;
    ok = r->outcome == UPSTREAM_OK && r->status < 500 && r->status != 429;
    note_breaker(cfg, breaker_record(t->breaker, ok, util_mono_ms()));
    /* HERE refusing the key (401), the plan (403) or the volume (429)
     * again and again: stop asking for what it is about. */
    admit_upstream_result(t->limits, indice, plan, r->status, r->retry_after_s,
        (int64_t)time(NULL));
}

/*
 * Right before a fetch would be billed: the breaker, cache-only mode and
 * the quotas. 0: go ahead (counted); -1: f was ended with the refusal.
 */
static int
may_fetch(
    struct tile_flow *t, const char *indice, const char *plan, struct flight *f)
{
    struct flight_result r;
    int64_t retry_ms;
    long retry_after_s = 0;

    memset(&r, 0, sizeof(r));
    if (!breaker_allow(t->breaker, util_mono_ms(), &retry_ms)) {
        r.outcome = UPSTREAM_SHED;
        r.retry_after_s = (int)((retry_ms + 999) / 1000);
        util_strlcpy(
            r.error, "HERE is failing: circuit breaker open", sizeof(r.error));
        flight_end(f, FLIGHT_FAILED, &r);
        return -1;
    }
    if (admit_upstream_begin(t->limits, indice, plan, (int64_t)time(NULL),
            r.error, sizeof(r.error), &retry_after_s) == 0)
        return 0;
    r.outcome = UPSTREAM_CACHE_ONLY;
    r.retry_after_s = retry_after_s > 0 ? (int)retry_after_s : 1;
    flight_end(f, FLIGHT_FAILED, &r);
    return -1;
}

/* ----------------------------------------------------------------- miss */

/* Publish a cached entry into a flight, as if HERE had sent it. */
static void
flight_fill_from_entry(struct flight *f, const struct entry *e)
{
    struct flight_head head;
    struct flight_result r;

    memset(&head, 0, sizeof(head));
    memset(&r, 0, sizeof(r));
    head.status = e->status;
    head.content_length = (int64_t)e->body_len;
    util_strlcpy(head.content_type, e->content_type, sizeof(head.content_type));
    util_strlcpy(head.etag, e->etag, sizeof(head.etag));
    snprintf(head.cache_control, sizeof(head.cache_control), "max-age=%lld",
        (long long)(e->fresh_until - (int64_t)time(NULL)));
    if (e->body_len > 0 && flight_append(f, e->body, e->body_len) != 0) {
        r.outcome = UPSTREAM_BROKEN;
        flight_end(f, FLIGHT_FAILED, &r);
        return;
    }
    /* The body first: readers get head, body and end together, as a tile
     * from HERE. */
    head.whole = 1;
    r.outcome = UPSTREAM_OK;
    r.status = e->status;
    flight_end_whole(f, &head, &r);
}

/*
 * A shared entry that came while we looked (another instance stored the
 * tile): it fills the flight, and this request leads no fetch.
 */
static int
filled_from_shared(
    struct tile_flow *t, const struct tile_req *req, struct flight *f)
{
    struct entry *e = t->store.get_shared(
        t->store.ctx, req->key, req->key_len, (int64_t)time(NULL));

    if (e == NULL)
        return 0;
    flight_fill_from_entry(f, e);
    entry_unref(e);
    return 1;
}

/*
 * The leader of a flight gets it filled. Another instance may already be
 * fetching the key (its memcached lock is taken): then wait for its result
 * in memcached for a bounded time before asking HERE ourselves.
 */
static void
lead(struct tile_flow *t, const struct settings *cfg,
    const struct tile_req *req, struct tile_answer *a)
{
    struct flight *f = a->flight;
    int shared = t->store.shared(t->store.ctx);
    int held;

    /* CACHE_COALESCE_WAIT_MS=0: no cross-instance lock, fetch at once. */
    held = cfg->cache_coalesce_wait_ms > 0 &&
        t->store.lock(t->store.ctx, req->key, req->key_len,
            cfg->here_timeout_ms / 1000 + 2);
    a->locked = held && shared;
    if (held && shared) {
        /* Another instance may have stored it and let go of its lock
         * between our miss and our lock: look once more, or HERE is asked
         * twice. */
        if ((a->shared_hit = filled_from_shared(t, req, f)))
            return;
    }
    if (!held) {
        int64_t until = util_mono_ms() + cfg->cache_coalesce_wait_ms;

        while (util_mono_ms() < until) {
            struct timespec ts = {0, SHARED_POLL_MS * 1000000L};

            nanosleep(&ts, NULL);
            if ((a->shared_hit = filled_from_shared(t, req, f)))
                return;
        }
    }
    if (may_fetch(t, req->indice, req->plan, f) == 0)
        t->fetcher.submit(t->fetcher.ctx, f, req->key, req->key_has_query, NULL,
            expect_of(req));
}

/*
 * A miss: lead a new flight, or follow f (NULL: the running one, if any).
 * The answer waits for the head. A tile-sized body (HERE_BUFFER_MAX_BYTES)
 * comes with its head, whole, and goes out in one write; a larger one is
 * streamed as it comes. Followers sleep until the end, or until the leader
 * streams it.
 */
static void
miss(struct tile_flow *t, const struct settings *cfg,
    const struct tile_req *req, struct flight *f, struct tile_answer *a)
{
    int64_t deadline = util_mono_ms() + cfg->cache_coalesce_wait_ms +
        cfg->here_timeout_ms + cfg->here_queue_timeout_ms + FOLLOWER_SLACK_MS;
    struct flight_result r;

    a->waited = 1;
    if (f == NULL &&
        (f = flight_join(t->flights, req->key, req->key_len, &a->leader)) ==
            NULL) {
        a->cache = CACHE_STATUS_NONE;
        answer_error(a, ERROR_INTERNAL, 503, NULL, NULL);
        return;
    }
    a->flight = f;
    if (a->leader)
        lead(t, cfg, req, a);
    a->cache = a->leader && !a->shared_hit ? CACHE_STATUS_MISS
                                           : CACHE_STATUS_COALESCED;
    memset(&r, 0, sizeof(r));
    if (!a->leader)
        flight_wait_whole(f, deadline);
    if (flight_wait_head(f, deadline, &a->head, &r) != 0) {
        answer_failed_flight(a, &r);
        return;
    }
    util_strlcpy(
        a->correlation_id, a->head.correlation_id, sizeof(a->correlation_id));
    if (a->head.status != 200) {
        flight_wait_end(f, -1);
        answer_status(a, a->head.status, f);
        return;
    }
    a->status = 200;
    a->content_type = a->head.content_type;
    a->etag = a->head.etag;
    a->content_length = a->head.content_length;
    a->max_age_s = tile_fresh_ttl(
        cfg, req->route == ROUTE_META, 200, a->head.cache_control);
    /* Published whole: the end is on its way, if not here already. */
    if (a->head.whole)
        flight_wait_end(f, -1);
    if ((a->data = flight_done_body(f, &a->len)) != NULL) {
        a->body = TILE_WHOLE;
        return;
    }
    if (a->leader)
        flight_stream(f); /* slow or large: the followers stream too */
    a->body = TILE_STREAM;
}

const void *
tile_stream(struct tile_answer *a, size_t *len, int *cut)
{
    enum flight_end end = FLIGHT_RUNNING;
    const void *p = flight_read(a->flight, a->stream_off, len, &end);

    a->stream_off += *len;
    *cut = *len == 0 && end == FLIGHT_FAILED;
    if (*cut)
        flight_result(a->flight, &a->cut);
    return p;
}

/* The entry a finished flight stands for, or NULL (not to be stored). */
static struct entry *
entry_from_flight(const struct settings *cfg, const struct tile_req *req,
    struct flight *f, const struct flight_head *head)
{
    int64_t now = (int64_t)time(NULL), fresh;
    long ttl = tile_fresh_ttl(
        cfg, req->route == ROUTE_META, head->status, head->cache_control);
    size_t len = flight_body_len(f);
    struct entry *e = NULL;
    char *body;

    if (ttl <= 0 || (head->status != 200 && head->status != 404))
        return NULL;
    fresh = now + ttl;
    if (head->status == 404) {
        static const char json[] = "{\"error\":\"HERE answered 404 Not "
                                   "Found\",\"status\":404}";

        return entry_new(404, fresh, keep_until(cfg, 404, fresh),
            "application/json", "", json, sizeof(json) - 1);
    }
    /* The engine published the canonical type of an allowed one. */
    if (*head->content_type == '\0' || (body = malloc(len ? len : 1)) == NULL)
        return NULL;
    flight_copy_body(f, body);
    e = entry_new(200, fresh, keep_until(cfg, 200, fresh), head->content_type,
        head->etag, body, len);
    free(body);
    return e;
}

/* The leader, once the flight has ended: store it, let it go. */
static void
finish_lead(struct tile_flow *t, const struct settings *cfg,
    const struct tile_req *req, struct tile_answer *a)
{
    struct flight *f = a->flight;
    struct flight_head head;

    flight_wait_end(f, -1);
    if (!a->shared_hit) {
        flight_result(f, &a->upstream);
        record_exchange(t, cfg, req->indice, req->plan, &a->upstream, f);
        if (a->upstream.outcome == UPSTREAM_OK &&
            flight_wait_head(f, 0, &head, NULL) == 0) {
            struct entry *e = entry_from_flight(cfg, req, f, &head);

            if (e != NULL) {
                t->store.put(t->store.ctx, req->key, req->key_len, e,
                    (int64_t)time(NULL));
                entry_unref(e);
            }
        }
    }
    /* Only now: a request arriving earlier joined the flight. */
    flight_retire(t->flights, f);
    if (a->locked)
        t->store.unlock(t->store.ctx, req->key, req->key_len);
}

/* ----------------------------------------------------------- revalidate */

/* A stale entry's revalidation, from its start to the store. */
struct revalidation {
    struct tile_flow *t;
    const struct settings *cfg; /* kept by main.c until exit */
    struct flight *flight;
    struct entry *stale;
    int meta;
    size_t key_len;
    char key[REQUEST_KEY_MAX];
    char indice[REQUEST_INDICE_MAX + 1]; /* its metrics; whose quota */
    char plan[REQUEST_PLAN_MAX + 1];     /* its plan class (request.h) */
};

/* One revalidation per key at a time: a flight under a key of its own. */
static struct flight *
revalidation_join(struct tile_flow *t, const struct tile_req *req)
{
    char rkey[REQUEST_KEY_MAX + 2];
    struct flight *f;
    int leader = 0;

    rkey[0] = 'R';
    rkey[1] = '|';
    memcpy(rkey + 2, req->key, req->key_len);
    f = flight_join(t->flights, rkey, req->key_len + 2, &leader);
    if (f != NULL && !leader) {
        flight_release(t->flights, f);
        return NULL;
    }
    return f;
}

/*
 * The rest of a revalidation, once HERE has answered: count it, store a
 * 304's refreshed entry or a 200's new one, and let the flight go.
 */
static void
finish_revalidation(struct revalidation *rv)
{
    const struct settings *cfg = rv->cfg;
    struct entry *old = rv->stale, *e = NULL;
    struct flight *f = rv->flight;
    struct flight_head head;
    struct flight_result r;

    flight_wait_end(f, -1);
    flight_result(f, &r);
    record_exchange(rv->t, cfg, rv->indice, rv->plan, &r, f);
    if (r.outcome == UPSTREAM_OK && flight_wait_head(f, 0, &head, NULL) == 0) {
        int64_t now = (int64_t)time(NULL);
        long ttl = tile_fresh_ttl(cfg, rv->meta, 200, head.cache_control);

        if (head.status == 304 && ttl > 0) {
            /* Not modified: the same bytes, fresh again. */
            e = entry_new(old->status, now + ttl,
                keep_until(cfg, 200, now + ttl), old->content_type,
                *head.etag ? head.etag : old->etag, old->body, old->body_len);
        } else if (head.status == 200 && ttl > 0) {
            size_t len = flight_body_len(f);
            char *body = malloc(len ? len : 1);

            if (body != NULL) {
                flight_copy_body(f, body);
                e = entry_new(200, now + ttl, keep_until(cfg, 200, now + ttl),
                    *head.content_type ? head.content_type : old->content_type,
                    head.etag, body, len);
                free(body);
            }
        }
        if (e != NULL) {
            rv->t->store.put(rv->t->store.ctx, rv->key, rv->key_len, e, now);
            entry_unref(e);
        }
    }
    flight_retire(rv->t->flights, f);
    flight_release(rv->t->flights, f);
    entry_unref(old);
}

void
tile_revalidation_done(void *ctx, void *job)
{
    (void)ctx;
    finish_revalidation(job);
    free(job);
}

/*
 * Ask HERE whether the stale entry changed (If-None-Match), now that the
 * client has it. The answer is stored by t->revalidations' thread, so the
 * next request on this worker's FastCGI connection waits for nothing.
 */
static void
revalidate(struct tile_flow *t, const struct settings *cfg,
    const struct tile_req *req, struct flight *f, struct entry *stale)
{
    struct revalidation *rv = calloc(1, sizeof(*rv));

    if (rv == NULL) {
        struct flight_result r;

        memset(&r, 0, sizeof(r));
        r.outcome = UPSTREAM_STOPPED;
        flight_end(f, FLIGHT_FAILED, &r);
        flight_retire(t->flights, f);
        flight_release(t->flights, f);
        return;
    }
    rv->t = t;
    rv->cfg = cfg;
    rv->flight = f;
    rv->stale = entry_ref(stale);
    rv->meta = req->route == ROUTE_META;
    util_strlcpy(rv->indice, req->indice, sizeof(rv->indice));
    util_strlcpy(rv->plan, req->plan, sizeof(rv->plan));
    memcpy(rv->key, req->key, req->key_len);
    rv->key_len = req->key_len;
    if (may_fetch(t, req->indice, req->plan, f) == 0)
        t->fetcher.submit(t->fetcher.ctx, f, req->key, req->key_has_query,
            *stale->etag ? stale->etag : NULL, expect_of(req));
    if (t->revalidations == NULL ||
        flight_jobs_add(t->revalidations, f, rv) != 0) {
        finish_revalidation(rv);
        free(rv);
    }
}

/* ----------------------------------------------------------------- flow */

void
tile_get(struct tile_flow *t, const struct settings *cfg,
    const struct tile_req *req, struct tile_answer *a)
{
    int64_t now = (int64_t)time(NULL);
    struct flight *f;
    struct entry *e;

    memset(a, 0, sizeof(*a));
    a->content_length = -1;
    a->etag = "";
    e = t->store.get_memory(t->store.ctx, req->key, req->key_len, now);
    if (e == NULL &&
        (f = flight_join_running(t->flights, req->key, req->key_len)) != NULL) {
        /* Being fetched: follow, without asking memcached (a storm's
         * followers would each ask while the leader waits its turn). */
        miss(t, cfg, req, f, a);
        return;
    }
    e = t->store.get_rest(t->store.ctx, req->key, req->key_len, now, e);
    if (e != NULL && e->fresh_until > now) {
        answer_entry(a, e, CACHE_STATUS_HIT, now);
        return;
    }
    if (e != NULL) {
        /* Stale: served now, revalidated once the client has it. */
        answer_entry(a, e, CACHE_STATUS_STALE, now);
        a->revalidation = revalidation_join(t, req);
        return;
    }
    miss(t, cfg, req, NULL, a);
}

/* ------------------------------------------------------------ documents */

/*
 * HERE's document for a tile_doc, through the flow above (cache, flight,
 * quotas): its bytes (malloc'd, NUL-terminated), or NULL with a->detail
 * saying why. a gets the cache status and the exchange with HERE.
 */
static char *
doc_source(struct tile_flow *t, const struct settings *cfg,
    const struct tile_req *src, struct tile_answer *a, size_t *len)
{
    struct tile_answer s;
    struct dynbuf b;
    char *out = NULL;
    int ok = 0, cut = 0;

    dynbuf_init(&b, (size_t)cfg->upstream_max_bytes + 1);
    tile_get(t, cfg, src, &s);
    a->cache = s.cache;
    a->waited = s.waited;
    switch (s.body) {
    case TILE_ENTRY:
    case TILE_WHOLE:
        ok = s.status == 200 && dynbuf_append(&b, s.data, s.len) == 0;
        break;
    case TILE_STREAM:
        ok = 1;
        for (;;) {
            size_t n;
            const void *p = tile_stream(&s, &n, &cut);

            if (n == 0)
                break;
            if (ok && dynbuf_append(&b, p, n) != 0)
                ok = 0; /* read on: the leader stores it */
        }
        ok = ok && !cut;
        break;
    case TILE_ERROR: break;
    }
    if (ok && dynbuf_append(&b, "", 1) == 0) {
        out = b.data;
        *len = b.len - 1;
        b.data = NULL;
    } else {
        snprintf(a->detail, sizeof(a->detail),
            "HERE's %s document unavailable (%s): fallback attribution",
            src->endpoint, s.body == TILE_ERROR ? s.message : "not whole");
    }
    util_strlcpy(
        a->correlation_id, s.correlation_id, sizeof(a->correlation_id));
    tile_done(t, cfg, src, &s);
    a->upstream = s.upstream;
    dynbuf_cleanup(&b);
    return out;
}

void
tile_get_doc(struct tile_flow *t, const struct settings *cfg,
    const struct tile_doc *doc, struct tile_answer *a)
{
    int64_t now = (int64_t)time(NULL);
    enum cache_status cache;
    struct entry *e = NULL;
    char *src, *body, etag[24];
    size_t src_len = 0, len = 0;
    long ttl = tile_fresh_ttl(cfg, 1, 200, NULL);
    int have_src;

    memset(a, 0, sizeof(*a));
    a->content_length = -1;
    a->etag = "";
    if (doc->key != NULL) {
        e = t->store.get_memory(t->store.ctx, doc->key, doc->key_len, now);
        e = t->store.get_rest(t->store.ctx, doc->key, doc->key_len, now, e);
        if (e != NULL && e->fresh_until > now) {
            answer_entry(a, e, CACHE_STATUS_HIT, now);
            return;
        }
        entry_unref(e); /* written anew: HERE's part may be cached */
    }
    src = doc_source(t, cfg, doc->source, a, &src_len);
    have_src = src != NULL;
    if (!have_src && ttl > cfg->cache_negative_ttl_s)
        ttl = cfg->cache_negative_ttl_s;
    body = doc->render(doc->ctx, src, src_len, &len);
    free(src);
    cache = a->cache;
    if (body != NULL) {
        snprintf(etag, sizeof(etag), "\"%016llx\"",
            (unsigned long long)util_hash64(body, len, 0));
        e = entry_new(
            200, now + ttl, now + ttl, doc->content_type, etag, body, len);
        free(body);
    }
    if (e == NULL) {
        answer_error(a, ERROR_INTERNAL, 0, NULL, NULL);
        return;
    }
    if (doc->key != NULL && have_src && ttl > 0)
        t->store.put(t->store.ctx, doc->key, doc->key_len, e, now);
    answer_entry(a, e, cache, now);
    a->max_age_s = ttl;
}

void
tile_done(struct tile_flow *t, const struct settings *cfg,
    const struct tile_req *req, struct tile_answer *a)
{
    if (a->flight != NULL) {
        if (a->leader)
            finish_lead(t, cfg, req, a);
        flight_release(t->flights, a->flight);
        a->flight = NULL;
    }
    if (a->revalidation != NULL) {
        revalidate(t, cfg, req, a->revalidation, a->entry);
        a->revalidation = NULL;
    }
    entry_unref(a->entry);
    a->entry = NULL;
}
