#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "acl.h"
#include "flightjobs.h"
#include "handler.h"
#include "log.h"
#include "metrics.h"
#include "response.h"
#include "util.h"

/* The settings now in force: a reload swaps the pointer (see main.c). */
static const struct settings *
handler_cfg(const struct handler *h)
{
    return __atomic_load_n(&h->cfg, __ATOMIC_ACQUIRE);
}

#define FOLLOWER_SLACK_MS 1000
/* How long a tile-sized body may take after its head and still go out whole. */
#define WHOLE_WAIT_MS 5

/* What the handler learned along the way, for the access line. */
struct outcome {
    int status;
    size_t bytes;             /* body bytes the web server took */
    const char *cache_status;
    const char *error_kind;   /* metrics_error kind; NULL: no error */
    char error[320];          /* the log's detail, not the client's */
    int upstream;
    int upstream_status;
    int upstream_attempts;
    double upstream_ms;
    long upstream_http;
    char correlation_id[96];
};

/* The Content-Types a 200 from HERE may have for this request. */
static enum upstream_expect
expect_of(int meta)
{
    return meta ? UPSTREAM_EXPECT_JSON : UPSTREAM_EXPECT_IMAGE;
}

/*
 * An error response: message to the client, and to the access line with
 * detail (NULL: none) after it. The client learns what kind of failure it
 * was; addresses, host names and library messages stay in the log, under
 * the request id the client has.
 */
static void
fail_detail(struct FCGX_Stream *out, struct outcome *o, int status,
    const char *kind, const char *message, const char *detail,
    const struct response_meta *meta)
{
    size_t n = util_strlcpy(o->error, message, sizeof(o->error));

    o->status = status;
    o->error_kind = kind;
    if (detail != NULL && *detail != '\0' && n + 2 < sizeof(o->error)) {
        memcpy(o->error + n, ": ", 2);
        util_strlcpy(o->error + n + 2, detail, sizeof(o->error) - n - 2);
    }
    o->bytes = response_error(out, status, message, meta);
}

static void
fail(struct FCGX_Stream *out, struct outcome *o, int status, const char *kind,
    const char *message, const struct response_meta *meta)
{
    fail_detail(out, o, status, kind, message, NULL, meta);
}

/*
 * A flight that brought no usable head becomes a client-safe error: the
 * kind of failure for the client, curl's words (which name the address and
 * port) for the log.
 */
static void
fail_flight(struct FCGX_Stream *out, struct outcome *o,
    const struct flight_result *r, struct response_meta *meta)
{
    char msg[128];

    switch (r->outcome) {
    case UPSTREAM_TIMEOUT:
        fail_detail(
            out, o, 504, "upstream_timeout", "HERE timed out", r->error, meta);
        return;
    case UPSTREAM_TOO_BIG:
        fail_detail(out, o, 502, "other",
            "HERE's response is larger than UPSTREAM_MAX_BYTES", r->error,
            meta);
        return;
    case UPSTREAM_BAD_RESPONSE:
        fail_detail(out, o, 502, "upstream_bad_response",
            "HERE sent an unexpected Content-Type", r->error, meta);
        return;
    case UPSTREAM_CONNECT:
        fail_detail(out, o, 502, "upstream_unreachable", "HERE unreachable",
            r->error, meta);
        return;
    case UPSTREAM_TLS:
        fail_detail(out, o, 502, "upstream_unreachable",
            "TLS with HERE failed (certificate refused or handshake error)",
            r->error, meta);
        return;
    case UPSTREAM_BROKEN:
        fail_detail(out, o, 502, "upstream_unreachable",
            "HERE's response was broken off or malformed", r->error, meta);
        return;
    case UPSTREAM_BUSY:
        meta->retry_after_s = 1;
        fail(out, o, 503, "busy", "too many requests to HERE in flight",
            meta);
        return;
    case UPSTREAM_STOPPED:
        meta->retry_after_s = 1;
        fail_detail(out, o, 503, "other", "shutting down", r->error, meta);
        return;
    case UPSTREAM_SHED:
        meta->retry_after_s = r->retry_after_s > 0 ? r->retry_after_s : 1;
        fail(out, o, 503, "breaker_open", r->error, meta);
        return;
    case UPSTREAM_CACHE_ONLY:
        meta->retry_after_s = r->retry_after_s > 0 ? r->retry_after_s : 1;
        fail(out, o, 503, "cache_only", r->error, meta);
        return;
    case UPSTREAM_HTTP_ERROR:
        snprintf(msg, sizeof(msg), "HERE answered %d %s", r->status,
            response_reason(r->status));
        if (r->status == 429) {
            meta->retry_after_s = r->retry_after_s > 0 ? r->retry_after_s
                                                      : 1;
            fail(out, o, 503, "upstream_4xx", msg, meta);
        } else {
            fail(out, o, 502, "upstream_5xx", msg, meta);
        }
        return;
    default:
        fail_detail(out, o, 502, "upstream_unreachable", "HERE unreachable",
            r->error, meta);
        return;
    }
}

/*
 * A head other than 200: the client gets what HERE's status means, never
 * its body or headers (a redirect's Location stays here).
 */
static void
fail_status(struct FCGX_Stream *out, struct outcome *o, int status,
    struct flight *f, struct response_meta *meta)
{
    struct flight_result r;
    char msg[128];

    snprintf(msg, sizeof(msg), "HERE answered %d %s", status,
        response_reason(status));
    if (status == 429) {
        /* Still 429 after the last retry: as fail_flight() does. */
        flight_result(f, &r);
        meta->retry_after_s = r.retry_after_s > 0 ? r.retry_after_s : 1;
        fail(out, o, 503, "upstream_4xx", msg, meta);
    } else if (status >= 400 && status < 500) {
        fail(out, o, status, "upstream_4xx", msg, meta);
    } else if (status >= 500) {
        fail(out, o, 502, "upstream_5xx", msg, meta);
    } else if (status >= 300 && status != 304) {
        /* The engine follows no redirect: HERE moved, or is not HERE. */
        snprintf(msg, sizeof(msg),
            "HERE answered %d %s (redirects are not followed)", status,
            response_reason(status));
        fail(out, o, 502, "upstream_3xx", msg, meta);
    } else {
        /* 304 to a request that was not conditional, 204, 206, ... */
        fail(out, o, 502, "upstream_bad_response", msg, meta);
    }
}

static long
fresh_ttl(const struct handler *h, const struct tile_req *req, int status,
    const char *cache_control)
{
    const struct settings *cfg = handler_cfg(h);
    long cap = cfg->cache_ttl_cap_s;

    if (status == 404)
        return cfg->cache_negative_ttl_s < cap ? cfg->cache_negative_ttl_s
                                               : cap;
    if (req != NULL && req->route == ROUTE_META)
        return cfg->cache_meta_ttl_s < cap ? cfg->cache_meta_ttl_s : cap;
    return cache_ttl(*cache_control ? cache_control : NULL,
        cfg->cache_ttl_default_s, cap);
}

static void
note_breaker(struct handler *h, enum breaker_change change)
{
    cJSON *f;

    if (change == BREAKER_SAME)
        return;
    f = cJSON_CreateObject();
    if (f != NULL) {
        cJSON_AddNumberToObject(f, "threshold",
            (double)handler_cfg(h)->here_breaker_threshold);
        cJSON_AddNumberToObject(f, "cooldown_ms",
            (double)handler_cfg(h)->here_breaker_cooldown_ms);
    }
    log_event(change == BREAKER_OPENED ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
        change == BREAKER_OPENED ? "breaker_open" : "breaker_closed", f);
}

/*
 * The leader's view of how HERE did, for the breaker and for HERE's
 * denials (of the key, of indice's volume, or of the plan class plan).
 */
static void
record_upstream(struct handler *h, const char *indice, const char *plan,
    const struct flight_result *r)
{
    int ok;

    if (r->attempts == 0 || r->outcome == UPSTREAM_BUSY ||
        r->outcome == UPSTREAM_STOPPED)
        return;
    ok = r->outcome == UPSTREAM_OK && r->status < 500 && r->status != 429;
    note_breaker(h, breaker_record(&h->breaker, ok, util_mono_ms()));
    /* HERE refusing the key (401), the plan (403) or the volume (429)
     * again and again: stop asking for what it is about. */
    admit_upstream_result(h->limits, indice, plan, r->status,
        r->retry_after_s, (int64_t)time(NULL));
}

/*
 * Quotas and cache-only mode, right before a fetch would be billed. 0: go
 * ahead (counted); -1: f is ended as shed (503 with reason and Retry-After).
 */
static int
spend_quota(struct handler *h, const char *indice, const char *plan,
    struct flight *f)
{
    struct flight_result r;
    long retry_after_s = 0;

    memset(&r, 0, sizeof(r));
    if (admit_upstream_begin(h->limits, indice, plan, (int64_t)time(NULL),
            r.error, sizeof(r.error), &retry_after_s) == 0)
        return 0;
    r.outcome = UPSTREAM_CACHE_ONLY;
    r.retry_after_s = retry_after_s > 0 ? (int)retry_after_s : 1;
    flight_end(f, FLIGHT_FAILED, &r);
    return -1;
}

/* The outcome label of hereproxy_upstream_requests_total, or NULL. */
static const char *
upstream_metric_outcome(const struct flight_result *r)
{
    switch (r->outcome) {
    case UPSTREAM_OK:
        if (r->status == 304)
            return "not_modified";
        return r->status >= 300 ? "http_error" : "ok";
    case UPSTREAM_CONNECT: return "connect";
    case UPSTREAM_TLS: return "tls";
    case UPSTREAM_TIMEOUT: return "timeout";
    case UPSTREAM_TOO_BIG: return "too_big";
    case UPSTREAM_BROKEN: return "broken";
    case UPSTREAM_BUSY: return "busy";
    case UPSTREAM_HTTP_ERROR: return "http_error";
    case UPSTREAM_SHED: return "breaker_open";
    case UPSTREAM_CACHE_ONLY: return "cache_only";
    case UPSTREAM_BAD_RESPONSE: return "bad_response";
    default: return NULL;     /* stopping: not an exchange */
    }
}

/* One upstream exchange (or refusal) of a flight this request led. */
static void
note_upstream_metrics(struct handler *h, const char *indice,
    const struct flight_result *r, struct flight *f)
{
    const char *outcome = upstream_metric_outcome(r);

    if (outcome == NULL)
        return;
    metrics_upstream(h->metrics, indice, outcome, (int)r->http_version,
        r->attempts, r->attempts > 0 ? (uint64_t)flight_body_len(f) : 0,
        r->upstream_ms / 1000.0);
}

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
    util_strlcpy(head.content_type, e->content_type,
        sizeof(head.content_type));
    util_strlcpy(head.etag, e->etag, sizeof(head.etag));
    snprintf(head.cache_control, sizeof(head.cache_control), "max-age=%lld",
        (long long)(e->fresh_until - (int64_t)time(NULL)));
    flight_set_head(f, &head);
    if (e->body_len > 0 && flight_append(f, e->body, e->body_len) != 0) {
        r.outcome = UPSTREAM_BROKEN;
        flight_end(f, FLIGHT_FAILED, &r);
        return;
    }
    r.outcome = UPSTREAM_OK;
    r.status = e->status;
    flight_end(f, FLIGHT_OK, &r);
}

/*
 * Leader of a flight: get it filled. Another instance may already be
 * fetching the key (its memcached lock is taken): then wait for its result
 * in memcached for a bounded time before asking HERE ourselves.
 * Returns 1 when this instance holds the lock, 0 otherwise.
 */
static int
lead_flight(struct handler *h, const struct tile_req *req, struct flight *f,
    int *shared_hit)
{
    int64_t wait_until, retry_ms;
    long lock_ttl = handler_cfg(h)->here_timeout_ms / 1000 + 2;
    int locked;

    *shared_hit = 0;
    /* CACHE_COALESCE_WAIT_MS=0: no cross-instance lock, fetch at once. */
    locked = handler_cfg(h)->cache_coalesce_wait_ms > 0 &&
        cache_lock(h->cache, req->key, req->key_len, lock_ttl);
    if (locked && cache_shared(h->cache)) {
        /*
         * Another instance may have stored the tile and let go of its
         * lock between our miss and our lock: look once more, or HERE
         * is asked twice.
         */
        struct entry *e = cache_get_shared(h->cache, req->key, req->key_len,
            (int64_t)time(NULL));

        if (e != NULL) {
            flight_fill_from_entry(f, e);
            entry_unref(e);
            *shared_hit = 1;
            return 1;
        }
    }
    if (!locked) {
        wait_until = util_mono_ms() + handler_cfg(h)->cache_coalesce_wait_ms;
        while (util_mono_ms() < wait_until) {
            struct entry *e;
            struct timespec ts = {0, 10 * 1000000L};

            nanosleep(&ts, NULL);
            e = cache_get_shared(h->cache, req->key, req->key_len,
                (int64_t)time(NULL));
            if (e != NULL) {
                flight_fill_from_entry(f, e);
                entry_unref(e);
                *shared_hit = 1;
                return 0;
            }
        }
    }
    if (!breaker_allow(&h->breaker, util_mono_ms(), &retry_ms)) {
        struct flight_result r;

        memset(&r, 0, sizeof(r));
        r.outcome = UPSTREAM_SHED;
        r.retry_after_s = (int)((retry_ms + 999) / 1000);
        util_strlcpy(r.error, "HERE is failing: circuit breaker open",
            sizeof(r.error));
        flight_end(f, FLIGHT_FAILED, &r);
        return locked && cache_shared(h->cache);
    }
    if (spend_quota(h, req->indice, req->plan, f) != 0)
        return locked && cache_shared(h->cache);
    upstream_submit(h->upstream, f, req->key, req->key_has_query, NULL,
        expect_of(req->route == ROUTE_META));
    return locked && cache_shared(h->cache);
}

/*
 * Whatever a head holds fits an entry: a value too long for the head was
 * dropped by the engine, so none is ever cut here or refused there.
 */
_Static_assert(sizeof(((struct flight_head *)0)->etag) - 1 <= ENTRY_ETAG_MAX,
    "a flight's ETag must fit an entry");
_Static_assert(sizeof(((struct flight_head *)0)->content_type) - 1 <=
        ENTRY_CTYPE_MAX,
    "a flight's Content-Type must fit an entry");

/* Build the entry a finished flight stands for, or NULL. */
static struct entry *
entry_from_flight(struct handler *h, const struct tile_req *req,
    struct flight *f, const struct flight_head *head)
{
    int64_t now = (int64_t)time(NULL);
    size_t len = flight_body_len(f);
    struct entry *e;
    char *body;
    long ttl = fresh_ttl(h, req, head->status, head->cache_control);
    int64_t keep;

    if (ttl <= 0 || (head->status != 200 && head->status != 404))
        return NULL;
    /* Negative entries are not served stale. */
    keep = now + ttl + (head->status == 200 ? handler_cfg(h)->cache_stale_ttl_s : 0);
    if ((body = malloc(len ? len : 1)) == NULL)
        return NULL;
    flight_copy_body(f, body);
    if (head->status == 404) {
        const char *json = "{\"error\":\"HERE answered 404 Not Found\","
                           "\"status\":404}";
        e = entry_new(404, now + ttl, keep, "application/json", "", json,
            strlen(json));
    } else if (*head->content_type != '\0') {
        /* The engine published the canonical type of an allowed one. */
        e = entry_new(
            200, now + ttl, keep, head->content_type, head->etag, body, len);
    } else {
        e = NULL;
    }
    free(body);
    return e;
}

/*
 * Send a flight to the client: in one write when it has all arrived (or
 * soon does), else streamed as it arrives. Followers sleep until the end,
 * or until the leader finds the body slow or large and streams it.
 * Returns -1 when the body was cut off after the head went out.
 */
static int
stream_flight(struct handler *h, const struct tile_req *req,
    struct flight *f, int leader, const char *inm, const char *x_cache,
    struct FCGX_Stream *out, struct response_meta *meta, struct outcome *o)
{
    int64_t deadline = util_mono_ms() + handler_cfg(h)->cache_coalesce_wait_ms +
        handler_cfg(h)->here_timeout_ms + handler_cfg(h)->here_queue_timeout_ms +
        FOLLOWER_SLACK_MS;
    struct flight_head head;
    struct flight_result r;
    enum flight_end end = FLIGHT_RUNNING;
    size_t off = 0, len;
    const void *body;
    int client_ok = 1, status;

    memset(&r, 0, sizeof(r));
    if (!leader)
        flight_wait_whole(f, deadline);
    if (flight_wait_head(f, deadline, &head, &r) != 0) {
        fail_flight(out, o, &r, meta);
        return 0;
    }
    util_strlcpy(o->correlation_id, head.correlation_id,
        sizeof(o->correlation_id));
    if (head.status != 200) {
        flight_wait_end(f, -1);
        fail_status(out, o, head.status, f, meta);
        return 0;
    }
    if (leader && head.content_length >= 0 &&
        head.content_length <= FLIGHT_BLOCK_SIZE)
        /*
         * A tile-sized body follows its head within moments, unless HERE
         * is slow: wait that long for all of it, and it goes out in one
         * write instead of a write per chunk, to each reader.
         */
        flight_wait_end(f, util_mono_ms() + WHOLE_WAIT_MS);
    body = flight_done_body(f, &len);
    if (body != NULL) {
        /* It has all arrived: one write, as for a hit. */
        o->bytes = response_body(out, 200, head.content_type, head.etag, body,
            len, inm, x_cache, fresh_ttl(h, req, 200, head.cache_control), meta,
            &o->status);
        return 0;
    }
    if (leader)
        flight_stream(f);   /* slow or large: the followers stream too */
    status = response_etag_matches(inm, head.etag) ? 304 : 200;
    if (response_begin(out, status, head.content_type, head.etag,
            head.content_length, x_cache,
            fresh_ttl(h, req, 200, head.cache_control), meta) != 0)
        client_ok = 0;
    o->status = status;
    for (;;) {
        const void *p = flight_read(f, off, &len, &end);

        if (len == 0)
            break;
        off += len;
        if (client_ok && status == 200 && !meta->head) {
            if (response_chunk(out, p, len) != 0)
                client_ok = 0;
            else
                o->bytes += len;
        }
    }
    if (end == FLIGHT_FAILED) {
        util_strlcpy(o->error, "HERE's response was cut off",
            sizeof(o->error));
        return -1;
    }
    return 0;
}

static void
copy_result(struct outcome *o, const struct flight_result *r)
{
    o->upstream = r->attempts > 0;
    o->upstream_status = r->status;
    o->upstream_attempts = r->attempts;
    o->upstream_ms = r->upstream_ms;
    o->upstream_http = r->http_version;
}

/* A miss: lead a new flight, or follow f (NULL: the running one, if any). */
static int
serve_miss(struct handler *h, const struct tile_req *req, struct flight *f,
    const char *inm, struct FCGX_Stream *out, struct response_meta *meta,
    struct outcome *o)
{
    struct flight_result r;
    int leader = 0, locked = 0, shared_hit = 0, rc;

    /* Whatever it answers comes after a wait: the client may be gone. */
    meta->check_gone = 1;
    if (f == NULL &&
        (f = flight_join(h->flights, req->key, req->key_len, &leader)) ==
        NULL) {
        fail(out, o, 503, "internal", "out of memory", meta);
        return 0;
    }
    if (leader)
        locked = lead_flight(h, req, f, &shared_hit);
    o->cache_status = leader && !shared_hit ? "MISS" : "COALESCED";
    rc = stream_flight(h, req, f, leader, inm, leader && !shared_hit ? "MISS"
                                                            : "COALESCED",
        out, meta, o);
    if (leader) {
        struct flight_head head;

        flight_wait_end(f, -1);
        flight_result(f, &r);
        if (!shared_hit) {
            copy_result(o, &r);
            record_upstream(h, req->indice, req->plan, &r);
            note_upstream_metrics(h, req->indice, &r, f);
            if (r.outcome == UPSTREAM_OK &&
                flight_wait_head(f, 0, &head, NULL) == 0) {
                struct entry *e = entry_from_flight(h, req, f, &head);
                if (e != NULL) {
                    cache_put(h->cache, req->key, req->key_len, e,
                        (int64_t)time(NULL));
                    entry_unref(e);
                }
            }
        }
        /* Only now: a request arriving earlier joined the flight. */
        flight_retire(h->flights, f);
        if (locked)
            cache_unlock(h->cache, req->key, req->key_len);
    }
    flight_release(h->flights, f);
    return rc;
}

/* A stale entry: serve it now, revalidate after the response is out. */
static void
serve_stale(struct handler *h, const struct tile_req *req,
    struct entry *e, const char *inm, struct FCGX_Stream *out,
    const struct response_meta *meta, struct outcome *o,
    struct handler_later *later)
{
    char rkey[REQUEST_KEY_MAX + 2];
    int leader = 0;
    struct flight *f;

    o->cache_status = "STALE";
    o->bytes = response_entry(out, e, inm, "STALE", 0, meta, &o->status);
    /* One revalidation per key at a time: a flight under its own key. */
    rkey[0] = 'R';
    rkey[1] = '|';
    memcpy(rkey + 2, req->key, req->key_len);
    f = flight_join(h->flights, rkey, req->key_len + 2, &leader);
    if (f == NULL)
        return;
    if (!leader) {
        flight_release(h->flights, f);
        return;
    }
    later->flight = f;
    later->stale = entry_ref(e);
    later->meta_ttl = req->route == ROUTE_META ? handler_cfg(h)->cache_meta_ttl_s
                                               : -1;
    util_strlcpy(later->indice, req->indice, sizeof(later->indice));
    util_strlcpy(later->plan, req->plan, sizeof(later->plan));
    memcpy(later->key, req->key, req->key_len);
    later->key_len = req->key_len;
    later->key[later->key_len] = '\0';
}

static int
serve_proxied(struct handler *h, const struct tile_req *req,
    char *const *envp, struct FCGX_Stream *out, struct response_meta *meta,
    struct outcome *o, struct handler_later *later)
{
    const char *inm = request_param(envp, "HTTP_IF_NONE_MATCH");
    int64_t now = (int64_t)time(NULL);
    enum cache_source src;
    struct flight *f;
    struct entry *e;

    e = cache_get_memory(h->cache, req->key, req->key_len, now);
    if (e == NULL &&
        (f = flight_join_running(h->flights, req->key, req->key_len)) != NULL)
        /* Being fetched: follow, without asking memcached (a storm's
         * followers would each ask while the leader waits its turn). */
        return serve_miss(h, req, f, inm, out, meta, o);
    e = cache_get_after_memory(h->cache, req->key, req->key_len, now, e,
        &src);
    if (e != NULL && e->fresh_until > now) {
        o->cache_status = "HIT";
        o->bytes = response_entry(out, e, inm, "HIT",
            (long)(e->fresh_until - now), meta, &o->status);
        if (o->status >= 400)
            o->error_kind = "upstream_4xx";   /* a cached HERE 404 */
        entry_unref(e);
        return 0;
    }
    if (e != NULL) {
        serve_stale(h, req, e, inm, out, meta, o, later);
        entry_unref(e);
        return 0;
    }
    return serve_miss(h, req, NULL, inm, out, meta, o);
}

/*
 * The rest of a revalidation, once HERE has answered: count it, store a
 * 304's refreshed entry or a 200's new one, and let the flight go.
 */
static void
finish_revalidation(struct handler *h, struct handler_later *later)
{
    struct flight *f = later->flight;
    struct entry *old = later->stale, *e = NULL;
    struct flight_head head;
    struct flight_result r;
    int64_t now;
    long ttl;

    flight_wait_end(f, -1);
    flight_result(f, &r);
    record_upstream(h, later->indice, later->plan, &r);
    note_upstream_metrics(h, later->indice, &r, f);
    if (r.outcome == UPSTREAM_OK && flight_wait_head(f, 0, &head, NULL) == 0) {
        now = (int64_t)time(NULL);
        ttl = later->meta_ttl >= 0 ? later->meta_ttl
                                   : fresh_ttl(h, NULL, 200,
                                         head.cache_control);
        if (ttl > handler_cfg(h)->cache_ttl_cap_s)
            ttl = handler_cfg(h)->cache_ttl_cap_s;
        if (head.status == 304 && ttl > 0) {
            /* Not modified: the same bytes, fresh again. */
            e = entry_new(old->status, now + ttl,
                now + ttl + handler_cfg(h)->cache_stale_ttl_s, old->content_type,
                *head.etag ? head.etag : old->etag, old->body,
                old->body_len);
        } else if (head.status == 200 && ttl > 0) {
            size_t len = flight_body_len(f);
            char *body = malloc(len ? len : 1);
            if (body != NULL) {
                flight_copy_body(f, body);
                e = entry_new(200, now + ttl,
                    now + ttl + handler_cfg(h)->cache_stale_ttl_s,
                    *head.content_type ? head.content_type
                                       : old->content_type,
                    head.etag, body, len);
                free(body);
            }
        }
        if (e != NULL) {
            cache_put(h->cache, later->key, later->key_len, e, now);
            entry_unref(e);
        }
    }
    flight_retire(h->flights, f);
    flight_release(h->flights, f);
    entry_unref(old);
    later->flight = NULL;
    later->stale = NULL;
}

void
handler_revalidation_done(void *ctx, void *job)
{
    finish_revalidation(ctx, job);
    free(job);
}

void
handler_finish_later(struct handler *h, struct handler_later *later)
{
    struct flight *f = later->flight;
    struct handler_later *job;
    struct flight_result r;
    int64_t retry_ms;

    if (f == NULL)
        return;
    if (!breaker_allow(&h->breaker, util_mono_ms(), &retry_ms)) {
        /* Refused by the breaker: counted as such, the stale entry stays. */
        memset(&r, 0, sizeof(r));
        r.outcome = UPSTREAM_SHED;
        flight_end(f, FLIGHT_FAILED, &r);
    } else if (spend_quota(h, later->indice, later->plan, f) == 0) {
        upstream_submit(h->upstream, f, later->key,
            strchr(later->key, '?') != NULL,
            *later->stale->etag ? later->stale->etag : NULL,
            expect_of(later->meta_ttl >= 0));
    }
    /*
     * Not here: with fastcgi_keep_conn this worker's connection is back
     * in NGINX's pool, and the next request on it would wait for HERE.
     */
    if ((job = malloc(sizeof(*job))) != NULL) {
        *job = *later;
        if (h->revalidations == NULL ||
            flight_jobs_add(h->revalidations, f, job) != 0) {
            free(job);
            job = NULL;
        }
    }
    if (job == NULL)
        finish_revalidation(h, later);
    later->flight = NULL;
    later->stale = NULL;
}

static void
serve_readyz(struct handler *h, struct FCGX_Stream *out,
    const struct response_meta *meta, struct outcome *o)
{
    char reason[512];
    cJSON *root, *down;
    char *body;
    int ready = cache_ready(h->cache, reason, sizeof(reason));

    if (ready < 0) {
        fail(out, o, 503, "other", reason, meta);
        return;
    }
    /*
     * Some memcached servers down: still ready (their tiles come from
     * HERE), but say which, so that operators and probes see it.
     */
    root = cJSON_CreateObject();
    if (root == NULL)
        goto oom;
    cJSON_AddStringToObject(root, "status", ready > 0 ? "degraded" : "ready");
    cJSON_AddStringToObject(root, "cache", cache_backend(h->cache));
    cJSON_AddStringToObject(root, "breaker",
        breaker_state_name(breaker_state(&h->breaker)));
    if (ready > 0) {
        char *item, *save = NULL;

        if ((down = cJSON_AddArrayToObject(root, "memcached_down")) == NULL)
            goto oom;
        for (item = strtok_r(reason, ",", &save); item != NULL;
             item = strtok_r(NULL, ",", &save))
            cJSON_AddItemToArray(down, cJSON_CreateString(item));
    }
    if ((body = cJSON_PrintUnformatted(root)) == NULL)
        goto oom;
    cJSON_Delete(root);
    o->status = 200;
    o->bytes = response_json(out, 200, body, meta);
    free(body);
    return;
oom:
    cJSON_Delete(root);
    fail(out, o, 500, "internal", "out of memory", meta);
}

/* The cache-only scopes of a scrape; names[] point into scopes. */
struct cache_only_view {
    struct admit_scope *scopes;
    const char **names;
};

/* Each memcached server's state at a scrape. */
#define SERVERS_VIEW_MAX 64
struct servers_view {
    const char *names[SERVERS_VIEW_MAX];
    int up[SERVERS_VIEW_MAX];
};

/* What the metrics render reads from the other modules, at scrape time. */
static void
fill_gauges(struct handler *h, struct metrics_gauges *g,
    struct cache_only_view *co, struct servers_view *sv)
{
    struct upstream_stats us;
    struct lru_stats ls;
    struct admit_stats as;
    size_t i, n = 0;

    memset(g, 0, sizeof(*g));
    co->scopes = admit_cache_only(h->limits, (int64_t)time(NULL),
        &g->cache_only_all, &n);
    co->names = NULL;
    if (co->scopes != NULL &&
        (co->names = malloc(n * sizeof(*co->names))) != NULL) {
        /* Índices first, then plan classes: two lists for the render. */
        for (i = 0; i < n; i++) {
            co->names[i] = co->scopes[i].name;
            if (co->scopes[i].params)
                g->cache_only_params_count++;
            else
                g->cache_only_count++;
        }
        g->cache_only_indices = co->names;
        g->cache_only_params = co->names + g->cache_only_count;
    }
    admit_stats(h->limits, &as);
    g->quota_table_full = as.quota_table_full;
    g->cache_only_evicted = as.scopes_evicted;
    cache_memory_stats(h->cache, &ls);
    g->lru_entries = ls.entries;
    g->lru_bytes = ls.bytes;
    g->lru_max_bytes = (uint64_t)handler_cfg(h)->cache_maxbytes;
    g->lru_evictions = ls.evictions;
    g->lru_refused = ls.refused;
    g->memcached_configured = cache_shared(h->cache);
    /* The probes' round trips first: the states below are theirs. */
    g->memcached_servers = (uint64_t)cache_shared_servers(h->cache,
        &g->memcached_servers_down);
    g->memcached_up = cache_shared_up(h->cache);
    if (sv != NULL) {
        for (i = 0; i < g->memcached_servers && i < SERVERS_VIEW_MAX; i++)
            sv->names[i] = cache_shared_server(h->cache, (int)i, &sv->up[i]);
        g->memcached_listed = i;
        g->memcached_server_names = sv->names;
        g->memcached_server_up = sv->up;
    }
    upstream_stats(h->upstream, &us);
    g->upstream_inflight = us.inflight;
    g->upstream_queued = us.queued;
    g->breaker_open = breaker_state(&h->breaker) != BREAKER_CLOSED;
    g->threads_busy = (uint64_t)atomic_load_explicit(&h->threads_busy,
        memory_order_relaxed);
    g->threads_total = (uint64_t)handler_cfg(h)->threads;
    g->start_time = h->start_time;
}

/* /metrics (JSON) and /metrics/prometheus, for METRICS_ALLOW only. */
static void
serve_metrics(struct handler *h, enum req_route route, char *const *envp,
    struct FCGX_Stream *out, const struct response_meta *meta,
    struct outcome *o)
{
    struct metrics_gauges g;
    char *text;

    if (!acl_allows(h->metrics_acl, request_param(envp, "REMOTE_ADDR"))) {
        fail(out, o, 403, "forbidden", "metrics are not available to this "
            "address (see METRICS_ALLOW)", meta);
        return;
    }
    if (route == ROUTE_METRICS_PROMETHEUS) {
        struct cache_only_view co;
        struct servers_view sv;

        fill_gauges(h, &g, &co, &sv);
        text = metrics_render_prometheus(h->metrics, &g, PACKAGE_VERSION);
        free(co.names);
        free(co.scopes);
    } else {
        text = metrics_render_json(h->metrics);
    }
    if (text == NULL) {
        fail(out, o, 500, "internal", "out of memory", meta);
        return;
    }
    o->status = 200;
    o->bytes = route == ROUTE_METRICS_PROMETHEUS
        ? response_text(out, 200, "text/plain; version=0.0.4; charset=utf-8",
              text, meta)
        : response_json(out, 200, text, meta);
    free(text);
}

static enum metrics_cache
metrics_cache_of(const char *cache_status)
{
    switch (cache_status[0]) {
    case 'H': return METRICS_HIT;
    case 'M': return METRICS_MISS;
    case 'S': return METRICS_STALE;
    case 'C': return METRICS_COALESCED;
    default: return METRICS_NONE;
    }
}

static const char *
cors_origin(const struct handler *h, char *const *envp)
{
    const char *origin = request_param(envp, "HTTP_ORIGIN");

    if (strcmp(handler_cfg(h)->cors_origins, "*") == 0)
        return "*";
    return settings_origin_allowed(handler_cfg(h), origin) ? origin : NULL;
}

/*
 * Metrics hook: a request was refused 429 by a rate limit (by is "indice"
 * or "address"). The access line already records it (cache_status
 * LIMITED); a metrics registry counts it here.
 */
static void
note_rate_limited(struct handler *h, const char *indice, const char *by)
{
    (void)by;
    metrics_rate_limited(h->metrics, indice);
}

/*
 * Rate limits for a tile or metadata request, before the cache is asked.
 * Sets the RateLimit-* headers in meta; answers 429 and returns -1 when
 * refused.
 */
static int
check_rate(struct handler *h, const struct tile_req *req, char *const *envp,
    struct FCGX_Stream *out, struct response_meta *meta, struct outcome *o)
{
    struct admit_verdict v;
    char client[64], msg[160];

    if (admit_by_address(h->limits))
        admit_client_addr(request_param(envp, "REMOTE_ADDR"),
            request_param(envp, "HTTP_X_FORWARDED_FOR"),
            admit_trusted(h->limits), client, sizeof(client));
    admit_request(h->limits, req->indice,
        admit_by_address(h->limits) ? client : NULL, util_mono_ms(),
        (int64_t)time(NULL), &v);
    if (v.limited) {
        meta->rate_limited = 1;
        meta->rate_limit = v.limit;
        meta->rate_remaining = v.remaining;
        meta->rate_reset_s = v.reset_s;
    }
    if (v.allowed)
        return 0;
    note_rate_limited(h, req->indice, v.refused_by);
    meta->retry_after_s = v.retry_after_s > 0 ? v.retry_after_s : 1;
    if (strcmp(v.refused_by, "address") == 0)
        snprintf(msg, sizeof(msg), "rate limit exceeded for this client "
            "address (RATE_LIMIT_IP)");
    else
        snprintf(msg, sizeof(msg), "rate limit exceeded for indice %s",
            req->indice);
    o->cache_status = "LIMITED";
    fail(out, o, 429, "rate_limited", msg, meta);
    return -1;
}

/*
 * Who may ask: with HEREPROXY_CLIENT_TOKENS a valid token (header
 * X-Proxy-Token, else query "token") is required and decides the indice;
 * with HEREPROXY_INDICES only the listed indices pass. Returns 0 to go on,
 * or -1 after answering 401 or 403. Tokens are never logged or forwarded.
 */
static int
admit_client(const struct handler *h, struct tile_req *req,
    char *const *envp, struct FCGX_Stream *out, struct response_meta *meta,
    struct outcome *o)
{
    const struct settings *cfg = handler_cfg(h);   /* one view: reloads */

    if (*cfg->client_tokens != '\0') {
        const char *token = request_param(envp, "HTTP_X_PROXY_TOKEN");
        char indice[REQUEST_INDICE_MAX + 1];

        if (token == NULL || *token == '\0')
            token = *req->token ? req->token : NULL;
        if (token == NULL) {
            fail(out, o, 401, "unauthorized", "a client token is required (header "
                "X-Proxy-Token or query token)", meta);
            return -1;
        }
        if (!settings_token_indice(cfg, token, indice, sizeof(indice))) {
            fail(out, o, 401, "unauthorized", "unknown client token", meta);
            return -1;
        }
        util_strlcpy(req->indice, indice, sizeof(req->indice));
    }
    if (!settings_indice_allowed(cfg, req->indice)) {
        fail(out, o, 403, "forbidden", "indice not allowed", meta);
        return -1;
    }
    return 0;
}

/* "Bearer <token>" in Authorization, compared in constant time. */
static int
admin_authorized(const char *expected, const char *authorization)
{
    const char *t;

    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7))
        return 0;
    for (t = authorization + 7; *t == ' '; t++)
        ;
    return util_consttime_equal(t, expected);
}

/*
 * POST /admin/purge/here-proxy/...: one tile (or metadata document), on
 * every instance; POST /admin/purge?all=1: everything, through a new cache
 * generation. HEREPROXY_ADMIN_TOKEN as a Bearer token; off when unset.
 */
static void
serve_purge(struct handler *h, const char *uri, char *const *envp,
    struct FCGX_Stream *out, struct response_meta *meta, struct outcome *o)
{
    const struct settings *cfg = handler_cfg(h);
    const char *query = strchr(uri, '?');
    const char *remote = request_param(envp, "REMOTE_ADDR");
    size_t plen = query ? (size_t)(query - uri) : strlen(uri);
    struct cache_purge p;
    struct tile_req tile;
    char err[256];
    cJSON *f = NULL, *doc;
    char *text;
    int all, rc;

    if (*cfg->admin_token == '\0') {
        fail(out, o, 404, "not_found", "the admin endpoint is off (set "
            "HEREPROXY_ADMIN_TOKEN to turn it on)", meta);
        return;
    }
    if (!admin_authorized(cfg->admin_token,
            request_param(envp, "HTTP_AUTHORIZATION"))) {
        meta->www_authenticate = "Bearer realm=\"hereproxy-admin\"";
        fail(out, o, 401, "unauthorized", "a valid admin token is required "
            "(Authorization: Bearer HEREPROXY_ADMIN_TOKEN)", meta);
        return;
    }
    all = plen == 12;
    if (all && (query == NULL || (strcmp(query, "?all=1") != 0 &&
                                  strcmp(query, "?all=true") != 0))) {
        fail(out, o, 400, "bad_request", "say what to purge: POST "
            "/admin/purge/here-proxy/{tile path} for one tile, POST "
            "/admin/purge?all=1 for everything", meta);
        return;
    }
    if (all) {
        rc = cache_purge_all(h->cache, &p);
    } else {
        if (request_parse("GET", uri + 12, &h->policy, &tile, err,
                sizeof(err)) != 0 ||
            (tile.route != ROUTE_TILE && tile.route != ROUTE_META)) {
            char msg[320];

            snprintf(msg, sizeof(msg), "not a tile or metadata path after "
                "/admin/purge: %s", tile.route == ROUTE_TILE ||
                tile.route == ROUTE_META ? err : "no such endpoint");
            fail(out, o, 400, "bad_request", msg, meta);
            return;
        }
        rc = cache_purge_key(h->cache, tile.key, tile.key_len, &p);
    }
    metrics_purge(h->metrics, all);
    if ((f = cJSON_CreateObject()) != NULL) {
        cJSON_AddStringToObject(f, "scope", all ? "all" : "tile");
        if (!all) {
            cJSON_AddStringToObject(f, "key", tile.key);
            cJSON_AddBoolToObject(f, "in_memory", p.in_memory);
            cJSON_AddBoolToObject(f, "in_memcached", p.in_memcached);
        } else {
            cJSON_AddNumberToObject(f, "memory_entries",
                (double)p.memory_entries);
        }
        cJSON_AddStringToObject(f, "generation", p.generation);
        cJSON_AddBoolToObject(f, "memcached_ok", rc == 0);
        cJSON_AddStringToObject(f, "remote_addr", remote ? remote : "-");
        cJSON_AddStringToObject(f, "request_id", meta->request_id);
    }
    /* The same fields answer the caller. */
    doc = f != NULL ? cJSON_Duplicate(f, 1) : NULL;
    log_event(rc == 0 ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, "purge", f);
    if (rc != 0) {
        cJSON_Delete(doc);
        meta->retry_after_s = 1;
        fail(out, o, 503, "other", all ? "memcached unreachable: only this "
            "instance started afresh; other instances and memcached keep "
            "their entries: retry" : "memcached unreachable: the tile is "
            "gone from this instance only; retry", meta);
        return;
    }
    if (doc != NULL) {
        cJSON_DeleteItemFromObject(doc, "remote_addr");
        cJSON_DeleteItemFromObject(doc, "memcached_ok");
        cJSON_AddStringToObject(doc, "status", "purged");
    }
    text = doc != NULL ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    o->status = 200;
    o->bytes = response_json(out, 200,
        text != NULL ? text : "{\"status\":\"purged\"}", meta);
    free(text);
}

/*
 * The web server went away (its client did) before the response was out
 * whole: logged and counted as 499, as NGINX logs it, with the body bytes
 * it took; the status that was meant goes into the detail.
 */
static void
note_client_gone(struct outcome *o)
{
    char detail[sizeof(o->error)];
    int n = snprintf(detail, sizeof(detail),
        "client went away: %d not delivered whole", o->status);

    if (*o->error != '\0' && n > 0 && (size_t)n + 2 < sizeof(detail)) {
        memcpy(detail + n, "; ", 2);
        util_strlcpy(detail + n + 2, o->error, sizeof(detail) - (size_t)n - 2);
    }
    util_strlcpy(o->error, detail, sizeof(o->error));
    o->status = 499;
}

int
handler_serve(struct handler *h, char *const *envp, struct FCGX_Stream *out,
    const struct fcgi_conn *conn, struct handler_later *later)
{
    int64_t t0 = util_mono_us(), wall = util_wall_ms();
    const char *method = request_param(envp, "REQUEST_METHOD");
    const char *uri = request_param(envp, "REQUEST_URI");
    const char *given_id = request_param(envp, "HTTP_X_REQUEST_ID");
    struct response_meta meta;
    struct outcome o;
    struct access_record rec;
    struct tile_req req;
    char err[256], request_id[LOG_REQUEST_ID_MAX + 1];
    int rc, result = 0, refused = 0;
    int64_t elapsed_us;
    const char *label;

    memset(&o, 0, sizeof(o));
    memset(&meta, 0, sizeof(meta));
    meta.conn = conn;
    later->flight = NULL;
    later->stale = NULL;
    o.cache_status = "NONE";
    /* The web server's id when it is one we can echo safely, else ours. */
    if (log_request_id_valid(given_id))
        meta.request_id = given_id;
    else
        meta.request_id = log_request_id_new(request_id, sizeof(request_id));
    rc = request_parse(method, uri, &h->policy, &req, err, sizeof(err));
    meta.head = req.method == METHOD_HEAD;
    if (req.route == ROUTE_TILE || req.route == ROUTE_META ||
        req.route == ROUTE_PREFLIGHT) {
        const struct settings *cfg = handler_cfg(h);

        meta.indice = req.indice;
        meta.cors_origin = cors_origin(h, envp);
        meta.vary_origin = strcmp(cfg->cors_origins, "*") != 0;
        meta.client_tokens = *cfg->client_tokens != '\0';
    }
    if (uri == NULL) {
        refused = 1;
        fail(out, &o, 400, "bad_request", "no REQUEST_URI: include "
            "fastcgi_params in the web server's configuration", &meta);
    } else if (rc != 0) {
        refused = 1;
        if (rc == 405)
            meta.allow = req.route == ROUTE_HEALTHZ ||
                req.route == ROUTE_READYZ || req.route == ROUTE_METRICS ||
                req.route == ROUTE_METRICS_PROMETHEUS ? "GET, HEAD"
                : req.route == ROUTE_ADMIN_PURGE ? "POST"
                                                 : "GET, HEAD, OPTIONS";
        fail(out, &o, rc, rc == 405 ? "method" : rc == 404 ? "not_found"
                                                          : "bad_request",
            err, &meta);
    } else {
        switch (req.route) {
        case ROUTE_HEALTHZ:
            o.status = 200;
            o.bytes = response_json(out, 200, "{\"status\":\"ok\"}", &meta);
            break;
        case ROUTE_READYZ:
            serve_readyz(h, out, &meta, &o);
            break;
        case ROUTE_PREFLIGHT:
            o.status = 204;
            response_preflight(out, &meta);
            break;
        case ROUTE_TILE:
        case ROUTE_META:
            /* The token decides the indice; the limits then count it. */
            if (admit_client(h, &req, envp, out, &meta, &o) != 0)
                refused = 1;
            else if (check_rate(h, &req, envp, out, &meta, &o) == 0)
                result = serve_proxied(h, &req, envp, out, &meta, &o,
                    later);
            break;
        case ROUTE_METRICS:
        case ROUTE_METRICS_PROMETHEUS:
            serve_metrics(h, req.route, envp, out, &meta, &o);
            break;
        case ROUTE_ADMIN_PURGE:
            serve_purge(h, uri, envp, out, &meta, &o);
            break;
        case ROUTE_NONE:
            fail(out, &o, 404, "not_found", "no such endpoint", &meta);
            break;
        }
    }
    if (response_client_gone(out))
        note_client_gone(&o);
    elapsed_us = util_mono_us() - t0;
    /*
     * Refused before admission, the índice is only what the client wrote:
     * one fixed label, so that junk índices take no series of their own
     * (the access line keeps what was asked).
     */
    label = refused ? METRICS_REFUSED : req.indice;
    metrics_request(h->metrics, label, metrics_cache_of(o.cache_status),
        o.status, (double)elapsed_us / 1e6, (uint64_t)o.bytes);
    if (o.error_kind != NULL)
        metrics_error(h->metrics, label, o.error_kind);
    memset(&rec, 0, sizeof(rec));
    rec.wall_ms = wall;
    rec.method = method ? method : "-";
    rec.path = req.path;
    rec.indice = req.indice;
    rec.cache_status = o.cache_status;
    rec.remote_addr = request_param(envp, "REMOTE_ADDR");
    rec.request_id = meta.request_id;
    rec.status = o.status;
    rec.latency_ms = (double)elapsed_us / 1000.0;
    rec.bytes = o.bytes;
    rec.upstream = o.upstream;
    rec.upstream_status = o.upstream_status;
    rec.upstream_attempts = o.upstream_attempts;
    rec.upstream_ms = o.upstream_ms;
    rec.upstream_http = upstream_http_name(o.upstream_http);
    rec.correlation_id = *o.correlation_id ? o.correlation_id : NULL;
    rec.error = *o.error ? o.error : NULL;
    log_access(&rec);
    return result;
}
