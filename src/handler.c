#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "handler.h"
#include "log.h"
#include "response.h"
#include "util.h"

/* What the handler learned along the way, for the access line. */
struct outcome {
    int status;
    size_t bytes;
    const char *cache_status;
    char error[320];
    int upstream;
    int upstream_status;
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

/* An upstream response that is not a 200 becomes a client-safe error. */
static void
fail_upstream(struct FCGX_Stream *out, struct outcome *o,
    const struct upstream_response *r, const struct response_meta *meta)
{
    char msg[320];

    if (r->outcome == UPSTREAM_TIMEOUT) {
        fail(out, o, 504, "HERE did not answer in time", meta);
        return;
    }
    if (r->outcome == UPSTREAM_TOO_BIG) {
        fail(out, o, 502, "HERE's response is larger than "
            "UPSTREAM_MAX_BYTES", meta);
        return;
    }
    if (r->outcome != UPSTREAM_OK) {
        snprintf(msg, sizeof(msg), "HERE unreachable: %s", r->error);
        fail(out, o, 502, msg, meta);
        return;
    }
    snprintf(msg, sizeof(msg), "HERE answered %ld %s", r->status,
        response_reason((int)r->status));
    fail(out, o, r->status >= 400 && r->status < 500 ? (int)r->status : 502,
        msg, meta);
}

static long
entry_ttl(const struct handler *h, const struct tile_req *req,
    const struct upstream_response *r)
{
    const struct settings *cfg = h->cfg;

    if (req->route == ROUTE_META)
        return cfg->cache_meta_ttl_s < cfg->cache_ttl_cap_s
            ? cfg->cache_meta_ttl_s : cfg->cache_ttl_cap_s;
    return cache_ttl(*r->cache_control ? r->cache_control : NULL,
        cfg->cache_ttl_default_s, cfg->cache_ttl_cap_s);
}

static void
serve_proxied(struct handler *h, const struct tile_req *req,
    char *const *envp, struct FCGX_Stream *out,
    const struct response_meta *meta, struct outcome *o)
{
    const char *inm = request_param(envp, "HTTP_IF_NONE_MATCH");
    int64_t now = (int64_t)time(NULL);
    enum cache_source src;
    struct upstream_response r;
    struct entry *e;
    long ttl;

    e = cache_get(h->cache, req->key, req->key_len, now, &src);
    if (e != NULL) {
        o->cache_status = "HIT";
        o->bytes = response_entry(out, e, inm, "HIT",
            (long)(e->fresh_until - now), meta, &o->status);
        entry_unref(e);
        return;
    }
    o->cache_status = "MISS";
    o->upstream = 1;
    upstream_fetch(h->upstream, req->key, req->key_has_query, &r);
    o->upstream_status = (int)r.status;
    o->upstream_ms = r.elapsed_ms;
    o->upstream_http = r.http_version;
    util_strlcpy(o->correlation_id, r.correlation_id,
        sizeof(o->correlation_id));
    if (r.outcome != UPSTREAM_OK || r.status != 200) {
        fail_upstream(out, o, &r, meta);
        goto done;
    }
    now = (int64_t)time(NULL);
    ttl = entry_ttl(h, req, &r);
    e = entry_new(200, now + ttl, now + ttl,
        *r.content_type ? r.content_type : default_content_type(req), r.etag,
        r.body.data, r.body.len);
    if (e == NULL) {
        fail(out, o, 503, "out of memory", meta);
        goto done;
    }
    if (ttl > 0)
        cache_put(h->cache, req->key, req->key_len, e, now);
    o->bytes = response_entry(out, e, inm, "MISS", ttl, meta, &o->status);
    entry_unref(e);
done:
    upstream_response_cleanup(&r);
}

static void
serve_readyz(struct handler *h, struct FCGX_Stream *out,
    const struct response_meta *meta, struct outcome *o)
{
    char reason[128], body[160];

    if (cache_ready(h->cache, reason, sizeof(reason)) != 0) {
        fail(out, o, 503, reason, meta);
        return;
    }
    snprintf(body, sizeof(body), "{\"status\":\"ready\",\"cache\":\"%s\"}",
        cache_backend(h->cache));
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

void
handler_serve(struct handler *h, char *const *envp, struct FCGX_Stream *out)
{
    int64_t t0 = util_mono_us(), wall = util_wall_ms();
    const char *method = request_param(envp, "REQUEST_METHOD");
    const char *uri = request_param(envp, "REQUEST_URI");
    struct response_meta meta = {NULL, NULL, NULL, 0};
    struct outcome o;
    struct access_record rec;
    struct tile_req req;
    char err[256];
    int rc;

    memset(&o, 0, sizeof(o));
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
            serve_proxied(h, &req, envp, out, &meta, &o);
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
    rec.upstream_ms = o.upstream_ms;
    rec.upstream_http = upstream_http_name(o.upstream_http);
    rec.correlation_id = *o.correlation_id ? o.correlation_id : NULL;
    rec.error = *o.error ? o.error : NULL;
    log_access(&rec);
}
