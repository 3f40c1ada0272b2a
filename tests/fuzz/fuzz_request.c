/*
 * request_parse() on arbitrary request lines.
 *
 * Input: one control byte, then URI bytes (up to the first NUL).
 *   bits 0-1  method: GET, HEAD, OPTIONS, POST
 *   bits 2-3  0: the bytes are the whole URI; otherwise they are the query
 *             after a fixed valid path (tile, metadata, short tile form),
 *             so that the query parser is fuzzed on its own
 *   bit 4     HERE_ALLOW_LOGISTICS
 *   bit 5     HEREPROXY_ZMAX 22 instead of 20
 *
 * Invariants: the status is 0 or one of 400, 404, 405, 414 with a short
 * printable message; every string is NUL-terminated; a tile or metadata
 * key is printable, shorter than REQUEST_KEY_MAX, has a clean upstream path
 * (no "..", "//", '%', no leading '/'), a query of known names in strictly
 * increasing order, no indice and no dropped parameter; parsing the key
 * again yields the same key (it is canonical). TileJSON and WMTS
 * capabilities keys: their own path, the same query rules.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

#include "fuzz.h"

static const char *const methods[] = {"GET", "HEAD", "OPTIONS", "POST"};
static const char *const prefixes[] = {"",
    "/here-proxy/base/mc/12/2200/1343/png?", "/here-proxy/info?",
    "/here-proxy/mc/3/4/5/jpeg?"};

/* Query names the key may hold, in the order build_key writes them. */
static const char *const key_names[] = {"endTime", "features", "lang", "lang2",
    "ppi", "pview", "scale", "size", "startTime", "style", NULL};

static int
known_key_name(const char *name, size_t len)
{
    size_t i;

    for (i = 0; key_names[i] != NULL; i++)
        if (strlen(key_names[i]) == len && memcmp(key_names[i], name, len) == 0)
            return (int)i;
    return -1;
}

static int
valid_indice(const char *v)
{
    size_t len = strlen(v);

    if (strcmp(v, "-") == 0)
        return 1;
    return len >= 1 && len <= REQUEST_INDICE_MAX &&
        strspn(v,
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
            "0123456789_.-") == len;
}

static void
check_path(const char *path, size_t len, const struct tile_req *req)
{
    char expect[REQUEST_KEY_MAX];
    size_t i;

    FUZZ_CHECK(len > 0);
    FUZZ_CHECK(path[0] != '/' && path[len - 1] != '/');
    for (i = 0; i < len; i++) {
        char c = path[i];
        FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '/' || c == '.' || c == '_');
        if (i + 1 < len) {
            FUZZ_CHECK(!(c == '.' && path[i + 1] == '.'));
            FUZZ_CHECK(!(c == '/' && path[i + 1] == '/'));
            FUZZ_CHECK(!(c == '/' && path[i + 1] == '.'));
        }
    }
    if (req->route == ROUTE_TILE) {
        long max = (1L << req->z) - 1;

        FUZZ_CHECK(req->resource != NULL && req->format != NULL);
        FUZZ_CHECK(req->z >= 0 && req->x >= 0 && req->y >= 0);
        FUZZ_CHECK(req->x <= max && req->y <= max);
        snprintf(expect, sizeof(expect), "%s/mc/%ld/%ld/%ld/%s", req->resource,
            req->z, req->x, req->y, req->format);
    } else if (req->route == ROUTE_TILEJSON) {
        FUZZ_CHECK(req->resource != NULL && req->format != NULL);
        snprintf(expect, sizeof(expect), "tilejson/%s/%s", req->resource,
            req->format);
    } else if (req->route == ROUTE_WMTS) {
        FUZZ_CHECK(req->format != NULL);
        snprintf(expect, sizeof(expect), "wmts/1.0.0/%s", req->format);
    } else {
        FUZZ_CHECK(req->endpoint != NULL);
        snprintf(expect, sizeof(expect), "%s", req->endpoint);
    }
    FUZZ_CHECK(strlen(expect) == len && memcmp(expect, path, len) == 0);
}

static void
check_query(const char *q, const struct tile_req *req)
{
    int last = -1, seen_defaults = 0;

    while (*q != '\0') {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        int idx;

        FUZZ_CHECK(eq != NULL && eq > q && (size_t)(eq - q) + 1 < len);
        idx = known_key_name(q, (size_t)(eq - q));
        FUZZ_CHECK(idx > last); /* known, once, in canonical order */
        last = idx;
        if (strcmp(key_names[idx], "ppi") == 0 ||
            strcmp(key_names[idx], "scale") == 0 ||
            strcmp(key_names[idx], "size") == 0 ||
            strcmp(key_names[idx], "style") == 0)
            seen_defaults++;
        q += len;
        if (*q == '&') {
            q++;
            FUZZ_CHECK(*q != '\0');
        }
    }
    /* HERE's defaults are always filled in for tiles and TileJSON; the
     * WMTS capabilities have a layer for each style instead. */
    FUZZ_CHECK(req->route == ROUTE_META ||
        seen_defaults == (req->route == ROUTE_WMTS ? 3 : 4));
}

static void
check_key(const struct tile_req *req)
{
    const char *key = req->key, *q;
    size_t plen;

    FUZZ_CHECK(fuzz_terminated(key, sizeof(req->key)));
    FUZZ_CHECK(strlen(key) == req->key_len);
    FUZZ_CHECK(req->key_len < REQUEST_KEY_MAX);
    FUZZ_CHECK(fuzz_all_in(key, 0x21, 0x7e));
    FUZZ_CHECK(strstr(key, "indice") == NULL);
    FUZZ_CHECK(strstr(key, "apiKey") == NULL);
    FUZZ_CHECK(strstr(key, "app_id") == NULL);
    FUZZ_CHECK(strstr(key, "app_code") == NULL);
    FUZZ_CHECK(strpbrk(key, "%#+ \\\"'<>") == NULL);
    FUZZ_CHECK(strstr(key, "..") == NULL && strstr(key, "//") == NULL);
    q = strchr(key, '?');
    plen = q ? (size_t)(q - key) : req->key_len;
    FUZZ_CHECK((q != NULL) == (req->key_has_query != 0));
    check_path(key, plen, req);
    if (q != NULL) {
        FUZZ_CHECK(strchr(q + 1, '?') == NULL && q[1] != '\0');
        check_query(q + 1, req);
    } else {
        FUZZ_CHECK(req->route == ROUTE_META);
    }
}

/* The key is canonical: as a request it parses to itself. */
static void
check_reparse(const struct tile_req *req, const struct request_policy *pol)
{
    static struct tile_req again;
    char uri[sizeof("/here-proxy/") + REQUEST_KEY_MAX], err[256];
    int rc;

    snprintf(uri, sizeof(uri), "/here-proxy/%s", req->key);
    rc = request_parse("GET", uri, pol, &again, err, sizeof(err));
    if (rc != 0)
        fprintf(
            stderr, "key %s does not parse again: %d %s\n", req->key, rc, err);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(again.route == req->route);
    FUZZ_CHECK(again.key_len == req->key_len);
    FUZZ_CHECK(strcmp(again.key, req->key) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* static: keeps ASan's stack-overflow checks away from a 1 KiB struct */
    static struct tile_req req;
    struct request_policy pol;
    const char *method;
    char *uri = NULL, err[256];
    size_t plen, n;
    int rc;

    if (size == 0) {
        rc = request_parse("GET", NULL, NULL, &req, err, sizeof(err));
        FUZZ_CHECK(rc == 400);
        return 0;
    }
    method = methods[data[0] & 3];
    memset(&pol, 0, sizeof(pol)); /* the built-in styles */
    pol.allow_logistics = (data[0] >> 4) & 1;
    pol.zmax = (data[0] & 0x20) ? 22 : 20;
    plen = strlen(prefixes[(data[0] >> 2) & 3]);
    n = size - 1;
    uri = malloc(plen + n + 1);
    if (uri == NULL)
        abort();
    memcpy(uri, prefixes[(data[0] >> 2) & 3], plen);
    if (n > 0)
        memcpy(uri + plen, data + 1, n);
    uri[plen + n] = '\0';

    memset(err, 'x', sizeof(err));
    rc = request_parse(method, uri, &pol, &req, err, sizeof(err));

    FUZZ_CHECK(fuzz_terminated(req.path, sizeof(req.path)));
    FUZZ_CHECK(fuzz_all_in(req.path, 0x20, 0x7e));
    FUZZ_CHECK(fuzz_terminated(req.indice, sizeof(req.indice)));
    FUZZ_CHECK(valid_indice(req.indice));
    FUZZ_CHECK(req.method == request_method_parse(method));
    if (rc != 0) {
        FUZZ_CHECK(rc == 400 || rc == 404 || rc == 405 || rc == 414);
        FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(fuzz_all_in(err, 0x20, 0x7e));
        goto done;
    }
    switch (req.route) {
    case ROUTE_TILE:
    case ROUTE_META:
        FUZZ_CHECK(req.method == METHOD_GET || req.method == METHOD_HEAD);
        check_key(&req);
        check_reparse(&req, &pol);
        break;
    case ROUTE_TILEJSON:
    case ROUTE_WMTS:
        /* Keys of their own (request.h), never a request's path. */
        FUZZ_CHECK(req.method == METHOD_GET || req.method == METHOD_HEAD);
        FUZZ_CHECK(req.size == 256 || req.size == 512);
        FUZZ_CHECK(req.plan[0] == '\0');
        check_key(&req);
        break;
    case ROUTE_PREFLIGHT:
        FUZZ_CHECK(req.method == METHOD_OPTIONS);
        FUZZ_CHECK(req.key_len == 0 && req.key[0] == '\0');
        break;
    case ROUTE_HEALTHZ:
    case ROUTE_READYZ:
    case ROUTE_METRICS:
    case ROUTE_METRICS_PROMETHEUS:
        FUZZ_CHECK(req.method == METHOD_GET || req.method == METHOD_HEAD);
        FUZZ_CHECK(req.key_len == 0 && req.key[0] == '\0');
        break;
    case ROUTE_ADMIN_PURGE:
        /* The handler parses the tile after the prefix on its own. */
        FUZZ_CHECK(req.method == METHOD_POST);
        FUZZ_CHECK(strncmp(uri, "/admin/purge", 12) == 0);
        FUZZ_CHECK(req.key_len == 0 && req.key[0] == '\0');
        break;
    default: FUZZ_CHECK(!"request_parse returned 0 without a route");
    }
done:
    free(uri);
    return 0;
}
