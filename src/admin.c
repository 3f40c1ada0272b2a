#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "acl.h"
#include "admin.h"
#include "admit.h"
#include "cache.h"
#include "handler.h"
#include "hereauth.h"
#include "log.h"
#include "metrics.h"
#include "procstat.h"
#include "response.h"
#include "upstream.h"
#include "util.h"

/* The length of "/admin/purge", after which a tile's path may follow. */
#define PURGE_PREFIX_LEN 12

static void
serve_healthz(
    struct fcgi_out *out, const struct response_meta *meta, struct outcome *o)
{
    o->status = 200;
    o->bytes = response_json(out, 200, "{\"status\":\"ok\"}", meta);
}

/*
 * Ready when every memcached server answers a round trip; some down:
 * still ready (their tiles come from HERE), but say which, so that
 * operators and probes see it; none: 503. With HERE platform credentials,
 * no valid token is a 503 too: no miss could be fetched.
 */
static void
serve_readyz(struct handler *h, struct fcgi_out *out,
    const struct response_meta *meta, struct outcome *o)
{
    char reason[512];
    cJSON *root, *down;
    char *body;
    int ready = cache_ready(h->cache, reason, sizeof(reason));
    struct hereauth_stats as;

    if (ready < 0) {
        response_fail(out, o, ERROR_OTHER, 503, reason, NULL, meta);
        return;
    }
    hereauth_stats(h->auth, &as);
    if (as.bearer && !as.token_valid) {
        char msg[sizeof(as.why) + 32];

        snprintf(msg, sizeof(msg), "no valid HERE token: %s", as.why);
        response_fail(out, o, ERROR_OTHER, 503, msg, NULL, meta);
        return;
    }
    if ((root = cJSON_CreateObject()) == NULL)
        goto oom;
    cJSON_AddStringToObject(root, "status", ready > 0 ? "degraded" : "ready");
    cJSON_AddStringToObject(root, "cache", cache_backend(h->cache));
    cJSON_AddStringToObject(
        root, "breaker", breaker_state_name(breaker_state(&h->breaker)));
    cJSON_AddStringToObject(root, "here_auth", as.bearer ? "oauth" : "api_key");
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
    response_fail(out, o, ERROR_INTERNAL, 0, NULL, NULL, meta);
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
fill_gauges(struct handler *h, const struct settings *cfg,
    struct metrics_gauges *g, struct cache_only_view *co,
    struct servers_view *sv)
{
    struct upstream_stats us;
    struct lru_stats ls;
    struct admit_stats as;
    size_t i, n = 0;

    memset(g, 0, sizeof(*g));
    co->scopes = admit_cache_only(
        h->limits, (int64_t)time(NULL), &g->cache_only_all, &n);
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
    g->lru_max_bytes = (uint64_t)cfg->cache_maxbytes;
    g->lru_evictions = ls.evictions;
    g->lru_refused = ls.refused;
    g->memcached_configured = cache_shared(h->cache);
    /* The probes' round trips first: the states below are theirs. */
    g->memcached_servers =
        (uint64_t)cache_shared_servers(h->cache, &g->memcached_servers_down);
    g->memcached_up = cache_shared_up(h->cache);
    for (i = 0; i < g->memcached_servers && i < SERVERS_VIEW_MAX; i++)
        sv->names[i] = cache_shared_server(h->cache, (int)i, &sv->up[i]);
    g->memcached_listed = i;
    g->memcached_server_names = sv->names;
    g->memcached_server_up = sv->up;
    upstream_stats(h->upstream, &us);
    hereauth_stats(h->auth, &g->here_auth);
    g->upstream_inflight = us.inflight;
    g->upstream_queued = us.queued;
    g->breaker_open = breaker_state(&h->breaker) != BREAKER_CLOSED;
    g->threads_busy =
        (uint64_t)atomic_load_explicit(&h->threads_busy, memory_order_relaxed);
    g->threads_total = (uint64_t)cfg->threads;
    g->workers_accepting = (uint64_t)atomic_load_explicit(
        &h->threads_accepting, memory_order_relaxed);
    g->workers_idle_conn = (uint64_t)atomic_load_explicit(
        &h->threads_idle_conn, memory_order_relaxed);
    g->idle_conns_closed =
        atomic_load_explicit(&h->idle_conns_closed, memory_order_relaxed);
    g->start_time = h->start_time;
    g->have_process = 1;
    procstat_read(&g->process);
    g->libcurl_version = curl_version_info(CURLVERSION_NOW)->version;
}

/* /metrics (JSON) and /metrics/prometheus, for METRICS_ALLOW only. */
static void
serve_metrics(struct handler *h, const struct settings *cfg,
    enum req_route route, const struct request_params *rp, struct fcgi_out *out,
    const struct response_meta *meta, struct outcome *o)
{
    struct metrics_gauges g;
    char *text;

    if (!acl_allows(cfg->metrics_acl, rp->remote_addr)) {
        response_fail(out, o, ERROR_FORBIDDEN, 0,
            "metrics are not available to this address (see "
            "METRICS_ALLOW)",
            NULL, meta);
        return;
    }
    if (route == ROUTE_METRICS_PROMETHEUS) {
        struct cache_only_view co;
        struct servers_view sv;

        fill_gauges(h, cfg, &g, &co, &sv);
        text = metrics_render_prometheus(h->metrics, &g, PACKAGE_VERSION);
        free(co.names);
        free(co.scopes);
    } else {
        text = metrics_render_json(h->metrics);
    }
    if (text == NULL) {
        response_fail(out, o, ERROR_INTERNAL, 0, NULL, NULL, meta);
        return;
    }
    o->status = 200;
    o->bytes = route == ROUTE_METRICS_PROMETHEUS
        ? response_text(
              out, 200, "text/plain; version=0.0.4; charset=utf-8", text, meta)
        : response_json(out, 200, text, meta);
    free(text);
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
serve_purge(struct handler *h, const struct settings *cfg,
    const struct request_params *rp, struct fcgi_out *out,
    struct response_meta *meta, struct outcome *o)
{
    const char *uri = rp->uri;
    const char *query = strchr(uri, '?');
    const char *remote = rp->remote_addr;
    size_t plen = query ? (size_t)(query - uri) : strlen(uri);
    struct cache_purge p;
    struct tile_req tile;
    struct request_policy policy;
    char err[256];
    cJSON *f = NULL, *doc;
    char *text;
    int all, rc;

    if (*cfg->admin_token == '\0') {
        response_fail(out, o, ERROR_NOT_FOUND, 0,
            "the admin endpoint is off (set HEREPROXY_ADMIN_TOKEN to turn "
            "it on)",
            NULL, meta);
        return;
    }
    if (!admin_authorized(cfg->admin_token, rp->authorization)) {
        meta->www_authenticate = "Bearer realm=\"hereproxy-admin\"";
        response_fail(out, o, ERROR_UNAUTHORIZED, 0,
            "a valid admin token is required (Authorization: Bearer "
            "HEREPROXY_ADMIN_TOKEN)",
            NULL, meta);
        return;
    }
    all = plen == PURGE_PREFIX_LEN;
    if (all &&
        (query == NULL ||
            (strcmp(query, "?all=1") != 0 &&
                strcmp(query, "?all=true") != 0))) {
        response_fail(out, o, ERROR_BAD_REQUEST, 0,
            "say what to purge: POST /admin/purge/here-proxy/{tile path} "
            "for one tile, POST /admin/purge?all=1 for everything",
            NULL, meta);
        return;
    }
    if (all) {
        rc = cache_purge_all(h->cache, &p);
    } else {
        handler_policy(h, cfg, &policy);
        if (request_parse("GET", uri + PURGE_PREFIX_LEN, &policy, &tile, err,
                sizeof(err)) != 0 ||
            (tile.route != ROUTE_TILE && tile.route != ROUTE_META)) {
            char msg[320];

            snprintf(msg, sizeof(msg),
                "not a tile or metadata path after /admin/purge: %s",
                tile.route == ROUTE_TILE || tile.route == ROUTE_META
                    ? err
                    : "no such endpoint");
            response_fail(out, o, ERROR_BAD_REQUEST, 0, msg, NULL, meta);
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
            cJSON_AddNumberToObject(
                f, "memory_entries", (double)p.memory_entries);
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
        response_fail(out, o, ERROR_OTHER, 503,
            all ? "memcached unreachable: only this instance started "
                  "afresh; other instances and memcached keep their "
                  "entries: retry"
                : "memcached unreachable: the tile is gone from this "
                  "instance only; retry",
            NULL, meta);
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
    o->bytes = response_json(
        out, 200, text != NULL ? text : "{\"status\":\"purged\"}", meta);
    free(text);
}

void
admin_serve(struct handler *h, const struct settings *cfg,
    const struct tile_req *req, const struct request_params *rp,
    struct fcgi_out *out, struct response_meta *meta, struct outcome *o)
{
    switch (req->route) {
    case ROUTE_HEALTHZ: serve_healthz(out, meta, o); break;
    case ROUTE_READYZ: serve_readyz(h, out, meta, o); break;
    case ROUTE_METRICS:
    case ROUTE_METRICS_PROMETHEUS:
        serve_metrics(h, cfg, req->route, rp, out, meta, o);
        break;
    case ROUTE_ADMIN_PURGE: serve_purge(h, cfg, rp, out, meta, o); break;
    default: response_fail(out, o, ERROR_NOT_FOUND, 0, NULL, NULL, meta); break;
    }
}
