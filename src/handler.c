#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handler.h"
#include "log.h"
#include "response.h"
#include "util.h"

#define FOLLOWER_SLACK_MS 1000

/* What the handler learned along the way, for the access line. */
struct outcome {
    int status;
    size_t bytes;
    const char *cache_status;
    char error[320];
    int upstream;
    int upstream_status;
    int upstream_attempts;
    double upstream_ms;
    long upstream_http;
    char correlation_id[96];
};

static const char *
default_content_type(const struct tile_req *req)
{
    if (req->route == ROUTE_META)
        return "application/json";
    return strcmp(req->format, "jpeg") == 0 ? "image/jpeg" : "image/png";
}

static void
fail(struct FCGX_Stream *out, struct outcome *o, int status,
    const char *message, const struct response_meta *meta)
{
    o->status = status;
    util_strlcpy(o->error, message, sizeof(o->error));
    o->bytes = response_error(out, status, message, meta);
}

/* A flight that brought no usable head becomes a client-safe error. */
static void
fail_flight(struct FCGX_Stream *out, struct outcome *o,
    const struct flight_result *r, struct response_meta *meta)
{
    char msg[320];

    switch (r->outcome) {
    case UPSTREAM_TIMEOUT:
        fail(out, o, 504, "HERE did not answer in time", meta);
        return;
    case UPSTREAM_TOO_BIG:
        fail(out, o, 502, "HERE's response is larger than "
            "UPSTREAM_MAX_BYTES", meta);
        return;
    case UPSTREAM_BUSY:
        meta->retry_after_s = 1;
        fail(out, o, 503, "too many requests to HERE in flight", meta);
        return;
    case UPSTREAM_STOPPED:
        meta->retry_after_s = 1;
        fail(out, o, 503, "shutting down", meta);
        return;
    case UPSTREAM_SHED:
        meta->retry_after_s = r->retry_after_s > 0 ? r->retry_after_s : 1;
        fail(out, o, 503, r->error, meta);
        return;
    case UPSTREAM_HTTP_ERROR:
        snprintf(msg, sizeof(msg), "HERE answered %d %s", r->status,
            response_reason(r->status));
        if (r->status == 429) {
            meta->retry_after_s = r->retry_after_s > 0 ? r->retry_after_s
                                                      : 1;
            fail(out, o, 503, msg, meta);
        } else {
            fail(out, o, 502, msg, meta);
        }
        return;
    default:
        snprintf(msg, sizeof(msg), "HERE unreachable: %s", r->error);
        fail(out, o, 502, msg, meta);
        return;
    }
}

static long
fresh_ttl(const struct handler *h, const struct tile_req *req, int status,
    const char *cache_control)
{
    const struct settings *cfg = h->cfg;
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
            (double)h->cfg->here_breaker_threshold);
        cJSON_AddNumberToObject(f, "cooldown_ms",
            (double)h->cfg->here_breaker_cooldown_ms);
    }
    log_event(change == BREAKER_OPENED ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
        change == BREAKER_OPENED ? "breaker_open" : "breaker_closed", f);
}

/* The leader's view of how HERE did, for the breaker. */
static void
record_upstream(struct handler *h, const struct flight_result *r)
{
    int ok;

    if (r->attempts == 0 || r->outcome == UPSTREAM_BUSY ||
        r->outcome == UPSTREAM_STOPPED)
        return;
    ok = r->outcome == UPSTREAM_OK && r->status < 500 && r->status != 429;
    note_breaker(h, breaker_record(&h->breaker, ok, util_mono_ms()));
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
    long lock_ttl = h->cfg->here_timeout_ms / 1000 + 2;
    int locked;

    *shared_hit = 0;
    /* CACHE_COALESCE_WAIT_MS=0: no cross-instance lock, fetch at once. */
    locked = h->cfg->cache_coalesce_wait_ms > 0 &&
        cache_lock(h->cache, req->key, req->key_len, lock_ttl);
    if (!locked) {
        wait_until = util_mono_ms() + h->cfg->cache_coalesce_wait_ms;
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
    upstream_submit(h->upstream, f, req->key, req->key_has_query, NULL);
    return locked && cache_shared(h->cache);
}

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
    keep = now + ttl + (head->status == 200 ? h->cfg->cache_stale_ttl_s : 0);
    if ((body = malloc(len ? len : 1)) == NULL)
        return NULL;
    flight_copy_body(f, body);
    if (head->status == 404) {
        const char *json = "{\"error\":\"HERE answered 404 Not Found\","
                           "\"status\":404}";
        e = entry_new(404, now + ttl, keep, "application/json", "", json,
            strlen(json));
    } else {
        e = entry_new(200, now + ttl, keep,
            *head->content_type ? head->content_type
                                : default_content_type(req),
            head->etag, body, len);
    }
    free(body);
    return e;
}

/*
 * Stream a flight to the client as it arrives. Returns -1 when the body
 * was cut off after the head went out.
 */
static int
stream_flight(struct handler *h, const struct tile_req *req,
    struct flight *f, const char *inm, const char *x_cache,
    struct FCGX_Stream *out, struct response_meta *meta, struct outcome *o)
{
    int64_t deadline = util_mono_ms() + h->cfg->cache_coalesce_wait_ms +
        h->cfg->here_timeout_ms + h->cfg->here_queue_timeout_ms +
        FOLLOWER_SLACK_MS;
    struct flight_head head;
    struct flight_result r;
    enum flight_end end = FLIGHT_RUNNING;
    size_t off = 0, len;
    int client_ok = 1, status;

    memset(&r, 0, sizeof(r));
    if (flight_wait_head(f, deadline, &head, &r) != 0) {
        fail_flight(out, o, &r, meta);
        return 0;
    }
    util_strlcpy(o->correlation_id, head.correlation_id,
        sizeof(o->correlation_id));
    if (head.status != 200) {
        char msg[96];

        end = flight_wait_end(f);
        snprintf(msg, sizeof(msg), "HERE answered %d %s", head.status,
            response_reason(head.status));
        if (head.status == 429) {
            /* Still 429 after the last retry: as fail_flight() does. */
            flight_result(f, &r);
            meta->retry_after_s = r.retry_after_s > 0 ? r.retry_after_s : 1;
            fail(out, o, 503, msg, meta);
        } else {
            fail(out, o, head.status >= 400 && head.status < 500
                    ? head.status : 502, msg, meta);
        }
        return 0;
    }
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

static int
serve_miss(struct handler *h, const struct tile_req *req, const char *inm,
    struct FCGX_Stream *out, struct response_meta *meta, struct outcome *o)
{
    struct flight *f;
    struct flight_result r;
    int leader, locked = 0, shared_hit = 0, rc;

    if ((f = flight_join(h->flights, req->key, req->key_len, &leader)) ==
        NULL) {
        fail(out, o, 503, "out of memory", meta);
        return 0;
    }
    if (leader)
        locked = lead_flight(h, req, f, &shared_hit);
    o->cache_status = leader && !shared_hit ? "MISS" : "COALESCED";
    rc = stream_flight(h, req, f, inm, leader && !shared_hit ? "MISS"
                                                            : "COALESCED",
        out, meta, o);
    if (leader) {
        struct flight_head head;

        flight_wait_end(f);
        flight_result(f, &r);
        if (!shared_hit) {
            copy_result(o, &r);
            record_upstream(h, &r);
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
    later->meta_ttl = req->route == ROUTE_META ? h->cfg->cache_meta_ttl_s
                                               : -1;
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
    struct entry *e;

    e = cache_get(h->cache, req->key, req->key_len, now, &src);
    if (e != NULL && e->fresh_until > now) {
        o->cache_status = "HIT";
        o->bytes = response_entry(out, e, inm, "HIT",
            (long)(e->fresh_until - now), meta, &o->status);
        entry_unref(e);
        return 0;
    }
    if (e != NULL) {
        serve_stale(h, req, e, inm, out, meta, o, later);
        entry_unref(e);
        return 0;
    }
    return serve_miss(h, req, inm, out, meta, o);
}

void
handler_finish_later(struct handler *h, struct handler_later *later)
{
    struct flight *f = later->flight;
    struct entry *old = later->stale, *e = NULL;
    struct flight_head head;
    struct flight_result r;
    int64_t retry_ms, now;
    long ttl;

    if (f == NULL)
        return;
    if (breaker_allow(&h->breaker, util_mono_ms(), &retry_ms)) {
        upstream_submit(h->upstream, f, later->key,
            strchr(later->key, '?') != NULL, *old->etag ? old->etag : NULL);
    } else {
        memset(&r, 0, sizeof(r));
        r.outcome = UPSTREAM_STOPPED;
        flight_end(f, FLIGHT_FAILED, &r);
    }
    flight_wait_end(f);
    flight_result(f, &r);
    record_upstream(h, &r);
    if (r.outcome == UPSTREAM_OK && flight_wait_head(f, 0, &head, NULL) == 0) {
        now = (int64_t)time(NULL);
        ttl = later->meta_ttl >= 0 ? later->meta_ttl
                                   : fresh_ttl(h, NULL, 200,
                                         head.cache_control);
        if (ttl > h->cfg->cache_ttl_cap_s)
            ttl = h->cfg->cache_ttl_cap_s;
        if (head.status == 304 && ttl > 0) {
            /* Not modified: the same bytes, fresh again. */
            e = entry_new(old->status, now + ttl,
                now + ttl + h->cfg->cache_stale_ttl_s, old->content_type,
                *head.etag ? head.etag : old->etag, old->body,
                old->body_len);
        } else if (head.status == 200 && ttl > 0) {
            size_t len = flight_body_len(f);
            char *body = malloc(len ? len : 1);
            if (body != NULL) {
                flight_copy_body(f, body);
                e = entry_new(200, now + ttl,
                    now + ttl + h->cfg->cache_stale_ttl_s,
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

static void
serve_readyz(struct handler *h, struct FCGX_Stream *out,
    const struct response_meta *meta, struct outcome *o)
{
    char reason[128], body[200];

    if (cache_ready(h->cache, reason, sizeof(reason)) != 0) {
        fail(out, o, 503, reason, meta);
        return;
    }
    snprintf(body, sizeof(body),
        "{\"status\":\"ready\",\"cache\":\"%s\",\"breaker\":\"%s\"}",
        cache_backend(h->cache),
        breaker_state_name(breaker_state(&h->breaker)));
    o->status = 200;
    o->bytes = response_json(out, 200, body, meta);
}

static const char *
cors_origin(const struct handler *h, char *const *envp)
{
    const char *origin = request_param(envp, "HTTP_ORIGIN");

    if (strcmp(h->cfg->cors_origins, "*") == 0)
        return "*";
    return settings_origin_allowed(h->cfg, origin) ? origin : NULL;
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
    if (*h->cfg->client_tokens != '\0') {
        const char *token = request_param(envp, "HTTP_X_PROXY_TOKEN");
        char indice[REQUEST_INDICE_MAX + 1];

        if (token == NULL || *token == '\0')
            token = *req->token ? req->token : NULL;
        if (token == NULL) {
            fail(out, o, 401, "a client token is required (header "
                "X-Proxy-Token or query token)", meta);
            return -1;
        }
        if (!settings_token_indice(h->cfg, token, indice, sizeof(indice))) {
            fail(out, o, 401, "unknown client token", meta);
            return -1;
        }
        util_strlcpy(req->indice, indice, sizeof(req->indice));
    }
    if (!settings_indice_allowed(h->cfg, req->indice)) {
        fail(out, o, 403, "indice not allowed", meta);
        return -1;
    }
    return 0;
}

int
handler_serve(struct handler *h, char *const *envp, struct FCGX_Stream *out,
    struct handler_later *later)
{
    int64_t t0 = util_mono_us(), wall = util_wall_ms();
    const char *method = request_param(envp, "REQUEST_METHOD");
    const char *uri = request_param(envp, "REQUEST_URI");
    struct response_meta meta = {NULL, NULL, NULL, 0, 0};
    struct outcome o;
    struct access_record rec;
    struct tile_req req;
    char err[256];
    int rc, result = 0;

    memset(&o, 0, sizeof(o));
    later->flight = NULL;
    later->stale = NULL;
    o.cache_status = "NONE";
    rc = request_parse(method, uri, &h->policy, &req, err, sizeof(err));
    meta.head = req.method == METHOD_HEAD;
    if (req.route == ROUTE_TILE || req.route == ROUTE_META ||
        req.route == ROUTE_PREFLIGHT) {
        meta.indice = req.indice;
        meta.cors_origin = cors_origin(h, envp);
    }
    if (uri == NULL) {
        fail(out, &o, 400, "no REQUEST_URI: include fastcgi_params in the "
            "web server's configuration", &meta);
    } else if (rc != 0) {
        if (rc == 405)
            meta.allow = req.route == ROUTE_HEALTHZ ||
                req.route == ROUTE_READYZ ? "GET, HEAD"
                                          : "GET, HEAD, OPTIONS";
        fail(out, &o, rc, err, &meta);
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
            if (admit_client(h, &req, envp, out, &meta, &o) == 0)
                result = serve_proxied(h, &req, envp, out, &meta, &o,
                    later);
            break;
        case ROUTE_NONE:
            fail(out, &o, 404, "no such endpoint", &meta);
            break;
        }
    }
    memset(&rec, 0, sizeof(rec));
    rec.wall_ms = wall;
    rec.method = method ? method : "-";
    rec.path = req.path;
    rec.indice = req.indice;
    rec.cache_status = o.cache_status;
    rec.remote_addr = request_param(envp, "REMOTE_ADDR");
    rec.request_id = request_param(envp, "HTTP_X_REQUEST_ID");
    rec.status = o.status;
    rec.latency_ms = (double)(util_mono_us() - t0) / 1000.0;
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
