#ifndef HEREPROXY_REQUEST_H
#define HEREPROXY_REQUEST_H

#include <stddef.h>

/*
 * Turns a request line (method and REQUEST_URI) into a validated tile or
 * metadata request with its canonical cache key. Pure: no I/O, no
 * allocation; everything lives in struct tile_req.
 */

#define REQUEST_URI_MAX 4096
#define REQUEST_KEY_MAX 512
#define REQUEST_INDICE_MAX 64
#define REQUEST_TOKEN_MAX 128
#define REQUEST_PATH_LOG_MAX 256
#define REQUEST_PLAN_MAX 512
#define REQUEST_STYLE_MAX 64

/*
 * The styles accepted by default (HERE_STYLES' default): HERE's Raster
 * Tile API v3 styles but the logistics ones, which HERE_ALLOW_LOGISTICS
 * adds (HERE bills them as advanced).
 */
#define REQUEST_STYLES_DEFAULT                                                 \
    "explore.day,explore.night,explore.satellite.day,lite.day,lite.night,"     \
    "lite.satellite.day,satellite.day,topo.day,topo.night"

/*
 * The routes, with the methods each answers (the Allow of a 405). One
 * list drives the enum and the table.
 */
/* clang-format off */
#define REQUEST_ROUTES_LIST(X)                                               \
    X(NONE, "GET, HEAD, OPTIONS")                                            \
    X(TILE, "GET, HEAD, OPTIONS")   /* /here-proxy/{resource}/mc/z/x/y/f */  \
    X(META, "GET, HEAD, OPTIONS")   /* /here-proxy/{info|copyright|...} */   \
    X(TILEJSON, "GET, HEAD, OPTIONS") /* /here-proxy/tilejson/{res}.json */  \
    X(WMTS, "GET, HEAD, OPTIONS")   /* .../wmts/1.0.0/WMTSCapabilities.xml */\
    X(PREFLIGHT, "GET, HEAD, OPTIONS")  /* OPTIONS on /here-proxy/... */     \
    X(HEALTHZ, "GET, HEAD")                                                  \
    X(READYZ, "GET, HEAD")                                                   \
    X(METRICS, "GET, HEAD")         /* /metrics: per-indice JSON */          \
    X(METRICS_PROMETHEUS, "GET, HEAD") /* text format 0.0.4 */               \
    X(ADMIN_PURGE, "POST")  /* /admin/purge?all=1, /admin/purge/here-proxy */
/* clang-format on */

/* clang-format off */
enum req_route {
#define REQUEST_ROUTE_ENUM(id, allow) ROUTE_##id,
    REQUEST_ROUTES_LIST(REQUEST_ROUTE_ENUM)
#undef REQUEST_ROUTE_ENUM
    ROUTE_COUNT
};
/* clang-format on */

/* The methods a route answers, for the Allow header of a 405. */
const char *request_route_allow(enum req_route route);

enum req_method {
    METHOD_GET,
    METHOD_HEAD,
    METHOD_OPTIONS,
    METHOD_POST,
    METHOD_OTHER
};

struct request_policy {
    long zmax;
    int allow_logistics;
    /*
     * The styles accepted (HERE_STYLES), sorted by strcmp, owned by the
     * caller (the settings); NULL: REQUEST_STYLES_DEFAULT.
     */
    char *const *styles;
    size_t nstyles;
};

struct tile_req {
    enum req_route route;
    enum req_method method;
    const char *resource; /* static string, tiles and TileJSON */
    const char *format;   /* static string, tiles and capabilities */
    const char *endpoint; /* static string, metadata only */
    const char *style;    /* static string, tiles and TileJSON */
    long z, x, y;
    long size; /* tiles and capabilities: pixels a side (256 or 512) */
    char indice[REQUEST_INDICE_MAX + 1]; /* "-" when absent */
    int indice_given;                    /* the query had indice= */
    /* query "token" (client token): never in the key, never logged */
    char token[REQUEST_TOKEN_MAX + 1];   /* "" when absent */
    char path[REQUEST_PATH_LOG_MAX + 1]; /* path part, for logs */
    /*
     * The canonical key: upstream path relative to HERE_BASE_URL with the
     * normalised query (HERE's defaults filled in, names sorted), without
     * the API key or indice. Equivalent requests have equal keys.
     * Capabilities (TILEJSON, WMTS) have keys of their own, never asked of
     * HERE: "tilejson/{resource}/{format}?{a tile's query}" and
     * "wmts/1.0.0/{format}?{a tile's query without style}", so that the
     * query after '?' is what their tile URL templates carry.
     */
    char key[REQUEST_KEY_MAX];
    size_t key_len;
    int key_has_query;
    /*
     * The plan class: the request's choices that HERE's plan may not
     * include, "" for HERE's defaults. A tile's non-default resource,
     * format and parameters other than its position, as name=value pairs
     * in the key's order ("style=satellite.day&size=512"); metadata's
     * endpoint and parameters ("endpoint=copyright&lang=de"); "" for
     * capabilities (they ask HERE only for its copyright document, under
     * that request's own class). HERE's 403s for one class make only that
     * class cache-only (admit.h).
     */
    char plan[REQUEST_PLAN_MAX + 1];
};

enum req_method request_method_parse(const char *method);

/* A style name HERE_STYLES may hold: 1 to 64 of [a-z0-9._-], a-z first. */
int request_style_valid(const char *s, size_t len);

/*
 * The styles a request may name under policy, HERE's default first, into
 * out (at most max); returns how many. The one place that knows the
 * allowed styles: the capabilities list a layer for each.
 */
size_t request_styles(
    const struct request_policy *policy, const char **out, size_t max);

/* HERE's resources (base, background, ...), NULL-terminated. */
const char *const *request_resources(void);

/* An índice as requests may carry it: 1 to 64 of [A-Za-z0-9_.-]. */
int request_indice_valid(const char *s, size_t len);

/*
 * Parse and validate. Returns 0 with *req filled, or an HTTP status
 * (400, 404, 405, 414) with a client-safe message in err. req->path,
 * req->method and req->indice are set as far as they could be read, so
 * errors can be logged.
 */
int request_parse(const char *method, const char *uri,
    const struct request_policy *policy, struct tile_req *req, char *err,
    size_t errlen);

/*
 * The FastCGI parameters the proxy reads, found once per request (one walk
 * over what the web server sent), each NULL when absent. One list drives
 * the struct and the lookup.
 */
/* clang-format off */
#define REQUEST_PARAMS_LIST(X)                                               \
    X(method, "REQUEST_METHOD")                                              \
    X(uri, "REQUEST_URI")                                                    \
    X(remote_addr, "REMOTE_ADDR")                                            \
    X(origin, "HTTP_ORIGIN")                                                 \
    X(if_none_match, "HTTP_IF_NONE_MATCH")                                   \
    X(request_id, "HTTP_X_REQUEST_ID")                                       \
    X(proxy_token, "HTTP_X_PROXY_TOKEN")                                     \
    X(authorization, "HTTP_AUTHORIZATION")                                   \
    X(forwarded_for, "HTTP_X_FORWARDED_FOR")                                 \
    X(host, "HTTP_HOST")                                                     \
    X(https, "HTTPS")                                                        \
    X(scheme, "REQUEST_SCHEME")
/* clang-format on */

/* clang-format off */
struct request_params {
#define REQUEST_PARAM_FIELD(field, name) const char *field;
    REQUEST_PARAMS_LIST(REQUEST_PARAM_FIELD)
#undef REQUEST_PARAM_FIELD
};
/* clang-format on */

struct fcgi_param;

/* The parameters out of a FastCGI request's (they must outlive *out). */
void request_params_read(
    struct request_params *out, const struct fcgi_param *params, size_t n);

/* The same out of "NAME=value" strings (tests, tools), NULL-terminated. */
void request_params_from_env(struct request_params *out, char *const *envp);

#endif
