#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "admit.h"
#include "caps.h"
#include "fcgi.h"
#include "handler.h"
#include "log.h"
#include "metrics.h"
#include "response.h"
#include "upstream.h"
#include "util.h"

const struct settings *
handler_cfg(const struct handler *h)
{
    return __atomic_load_n(&h->cfg, __ATOMIC_ACQUIRE);
}

void
handler_init_tiles(struct handler *h)
{
    tile_store_cache(&h->tiles.store, h->cache);
    tile_fetcher_upstream(&h->tiles.fetcher, h->upstream);
    h->tiles.flights = h->flights;
    h->tiles.breaker = &h->breaker;
    h->tiles.limits = h->limits;
    h->tiles.metrics = h->metrics;
    h->tiles.revalidations = h->revalidations;
}

/*
 * A 200 under way that HERE cut off: the connection to the web server is
 * aborted on purpose (fcgi_abort), so that the client sees the response
 * incomplete rather than short. Say so, and why, on the access line: the
 * web server logs only a protocol error for it (man page, DIAGNOSTICS).
 */
static void
note_cut(const struct tile_answer *a, struct outcome *o)
{
    static const struct {
        int outcome;
        const char *aborted;
    } why[] = {
        {UPSTREAM_STALLED, "upstream_stalled"},
        {UPSTREAM_TIMEOUT, "upstream_timeout"},
        {UPSTREAM_TOO_BIG, "upstream_too_big"},
        {UPSTREAM_STOPPED, "shutting_down"},
    };
    size_t i;

    o->aborted = "upstream_broken";
    for (i = 0; i < sizeof(why) / sizeof(why[0]); i++)
        if (why[i].outcome == a->cut.outcome)
            o->aborted = why[i].aborted;
    /* When it does not fit, what is cut is the end of HERE's reason. */
    if (snprintf(o->detail, sizeof(o->detail),
            "response aborted on purpose: HERE's response was cut off after "
            "%zu of %s%lld bytes: %s",
            a->stream_off, a->content_length >= 0 ? "" : "at least ",
            (long long)(a->content_length >= 0 ? a->content_length
                                               : (int64_t)a->stream_off),
            *a->cut.error ? a->cut.error
                          : upstream_outcome_name(a->cut.outcome)) < 0)
        o->detail[0] = '\0';
}

/* What the tile flow answered, written; -1 when a stream was cut off. */
static int
write_answer(struct tile_answer *a, const char *inm, struct fcgi_out *out,
    struct response_meta *meta, struct outcome *o)
{
    const char *x_cache = cache_status_header(a->cache);
    int status, client_ok;
    size_t len;
    int cut = 0;

    switch (a->body) {
    case TILE_ERROR:
        meta->retry_after_s = a->retry_after_s;
        response_fail(out, o, a->error, a->status, a->message, a->detail, meta);
        return 0;
    case TILE_ENTRY:
    case TILE_WHOLE:
        /* It has all arrived: one write, headers, body and end. */
        o->bytes = response_body(out, a->status, a->content_type, a->etag,
            a->data, a->len, inm, x_cache, a->max_age_s, meta, &o->status);
        o->error = a->error; /* a cached HERE 404 */
        return 0;
    case TILE_STREAM: break;
    }
    status = response_etag_matches(inm, a->etag) ? 304 : 200;
    client_ok = response_begin(out, status, a->content_type, a->etag,
                    a->content_length, x_cache, a->max_age_s, meta) == 0;
    o->status = status;
    /* Read it all even for a client gone: the leader stores it. */
    for (;;) {
        const void *p = tile_stream(a, &len, &cut);

        if (len == 0)
            break;
        if (client_ok && status == 200 && !meta->head) {
            if (response_chunk(out, p, len) != 0)
                client_ok = 0;
            else
                o->bytes += len;
        }
    }
    if (cut) {
        note_cut(a, o);
        response_abort(out);
        return -1;
    }
    if (client_ok)
        response_end(out);
    return 0;
}

/* A tile or metadata request that was admitted: the tile flow's answer. */
static int
serve_tile(struct handler *h, const struct settings *cfg,
    const struct tile_req *req, const struct request_params *rp,
    struct fcgi_out *out, struct response_meta *meta, struct outcome *o)
{
    struct tile_answer a;
    int rc;

    tile_get(&h->tiles, cfg, req, &a);
    o->cache = a.cache;
    /* Whatever it answers after a wait, the client may be gone. */
    meta->check_gone = a.waited;
    rc = write_answer(&a, rp->if_none_match, out, meta, o);
    util_strlcpy(
        o->correlation_id, a.correlation_id, sizeof(o->correlation_id));
    tile_done(&h->tiles, cfg, req, &a);
    o->upstream_status = a.upstream.status;
    o->upstream_attempts = a.upstream.attempts;
    o->upstream_ms = a.upstream.upstream_ms;
    o->upstream_http = a.upstream.http_version;
    return rc;
}

/*
 * Tiles, metadata and capabilities: who may ask (the token decides the índice), then the
 * rate limits count it, then the cache and HERE. *refused: it was turned
 * away before admission (no metrics series of its own).
 */
static int
serve_proxied(struct handler *h, const struct settings *cfg,
    struct tile_req *req, const struct request_params *rp, struct fcgi_out *out,
    struct response_meta *meta, struct outcome *o, int *refused)
{
    struct admit_verdict v;
    const char *message = NULL;
    enum error_kind kind;
    char msg[160];

    if ((kind = admit_client(cfg, req, rp->proxy_token, &message)) !=
        ERROR_NONE) {
        *refused = 1;
        response_fail(out, o, kind, 0, message, NULL, meta);
        return 0;
    }
    admit_rate(h->limits, req->indice, rp->remote_addr, rp->forwarded_for,
        util_mono_ms(), (int64_t)time(NULL), &v, msg, sizeof(msg));
    if (v.limited) {
        meta->rate_limited = 1;
        meta->rate_limit = v.limit;
        meta->rate_remaining = v.remaining;
        meta->rate_reset_s = v.reset_s;
    }
    if (!v.allowed) {
        metrics_rate_limited(h->metrics, req->indice);
        meta->retry_after_s = v.retry_after_s > 0 ? v.retry_after_s : 1;
        o->cache = CACHE_STATUS_LIMITED;
        response_fail(out, o, ERROR_RATE_LIMITED, 0, msg, NULL, meta);
        return 0;
    }
    if (req->route == ROUTE_TILEJSON || req->route == ROUTE_WMTS) {
        caps_serve(h, cfg, req, rp, out, meta, o);
        return 0;
    }
    return serve_tile(h, cfg, req, rp, out, meta, o);
}

/*
 * The web server went away (its client did) before the response was out
 * whole: logged and counted as 499, as NGINX logs it, with the body bytes
 * it took; the status that was meant goes into the detail.
 */
static void
note_client_gone(struct outcome *o)
{
    char detail[sizeof(o->detail)];
    int n = snprintf(detail, sizeof(detail),
        "client went away: %d not delivered whole", o->status);

    if (*o->detail != '\0' && n > 0 && (size_t)n + 2 < sizeof(detail)) {
        memcpy(detail + n, "; ", 2);
        util_strlcpy(detail + n + 2, o->detail, sizeof(detail) - (size_t)n - 2);
    }
    util_strlcpy(o->detail, detail, sizeof(o->detail));
    o->status = 499;
}

/* The access line and the request's metrics. */
static void
account(struct handler *h, const struct request_params *rp,
    const struct tile_req *req, const struct response_meta *meta,
    const struct outcome *o, int refused, int64_t wall, int64_t elapsed_us)
{
    struct access_record rec;
    /*
     * Refused before admission, the índice is only what the client wrote:
     * one fixed label, so that junk índices take no series of their own
     * (the access line keeps what was asked).
     */
    const char *label = refused ? METRICS_REFUSED : req->indice;

    metrics_request(h->metrics, label, metrics_cache_of(o->cache), o->status,
        (double)elapsed_us / 1e6, (uint64_t)o->bytes);
    metrics_error(h->metrics, label, o->error);
    memset(&rec, 0, sizeof(rec));
    rec.wall_ms = wall;
    rec.method = rp->method ? rp->method : "-";
    rec.path = req->path;
    rec.indice = req->indice;
    rec.cache_status = cache_status_header(o->cache);
    rec.remote_addr = rp->remote_addr;
    rec.request_id = meta->request_id;
    rec.status = o->status;
    rec.latency_ms = (double)elapsed_us / 1000.0;
    rec.bytes = o->bytes;
    rec.upstream = o->upstream_attempts > 0;
    rec.upstream_status = o->upstream_status;
    rec.upstream_attempts = o->upstream_attempts;
    rec.upstream_ms = o->upstream_ms;
    rec.upstream_http = upstream_http_name(o->upstream_http);
    rec.correlation_id = *o->correlation_id ? o->correlation_id : NULL;
    rec.error = *o->detail ? o->detail : NULL;
    rec.aborted = o->aborted;
    log_access(&rec);
}

void
handler_policy(const struct handler *h, const struct settings *cfg,
    struct request_policy *out)
{
    *out = h->policy;
    out->styles = cfg->styles.names;
    out->nstyles = cfg->styles.n;
}

int
handler_serve(
    struct handler *h, const struct request_params *rp, struct fcgi_out *out)
{
    int64_t t0 = util_mono_us(), wall = util_wall_ms();
    const struct settings *cfg = handler_cfg(h); /* one view: reloads */
    struct response_meta meta;
    struct outcome o;
    struct tile_req req;
    struct request_policy policy;
    char err[256], request_id[LOG_REQUEST_ID_MAX + 1];
    int rc, result = 0, refused = 0;

    memset(&o, 0, sizeof(o));
    memset(&meta, 0, sizeof(meta));
    o.cache = CACHE_STATUS_NONE;
    /* The web server's id when it is one we can echo safely, else ours. */
    if (log_request_id_valid(rp->request_id))
        meta.request_id = rp->request_id;
    else
        meta.request_id = log_request_id_new(request_id, sizeof(request_id));
    handler_policy(h, cfg, &policy);
    rc = request_parse(rp->method, rp->uri, &policy, &req, err, sizeof(err));
    meta.head = req.method == METHOD_HEAD;
    if (req.route == ROUTE_TILE || req.route == ROUTE_META ||
        req.route == ROUTE_TILEJSON || req.route == ROUTE_WMTS ||
        req.route == ROUTE_PREFLIGHT) {
        meta.indice = req.indice;
        meta.cors_origin =
            admit_cors_origin(cfg, rp->origin, &meta.vary_origin);
        meta.client_tokens = *cfg->client_tokens != '\0';
    }
    if (rp->uri == NULL) {
        refused = 1;
        response_fail(out, &o, ERROR_BAD_REQUEST, 0,
            "no REQUEST_URI: include fastcgi_params in the web server's "
            "configuration",
            NULL, &meta);
    } else if (rc != 0) {
        refused = 1;
        if (rc == 405)
            meta.allow = request_route_allow(req.route);
        response_fail(out, &o,
            rc == 405       ? ERROR_METHOD
                : rc == 404 ? ERROR_NOT_FOUND
                            : ERROR_BAD_REQUEST,
            rc, err, NULL, &meta);
    } else {
        switch (req.route) {
        case ROUTE_TILE:
        case ROUTE_META:
        case ROUTE_TILEJSON:
        case ROUTE_WMTS:
            result = serve_proxied(h, cfg, &req, rp, out, &meta, &o, &refused);
            break;
        case ROUTE_PREFLIGHT:
            o.status = 204;
            response_preflight(out, &meta);
            break;
        case ROUTE_NONE:
            response_fail(out, &o, ERROR_NOT_FOUND, 0, NULL, NULL, &meta);
            break;
        default: admin_serve(h, cfg, &req, rp, out, &meta, &o); break;
        }
    }
    if (result == 0 && response_client_gone(out))
        note_client_gone(&o);
    account(h, rp, &req, &meta, &o, refused, wall, util_mono_us() - t0);
    return result;
}
