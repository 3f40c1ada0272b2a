#ifndef HEREPROXY_CAPS_H
#define HEREPROXY_CAPS_H

#include <stddef.h>

#include "request.h"

/*
 * Capabilities: the documents that let clients find the proxy's tiles by
 * themselves. TileJSON 3.0.0 at /here-proxy/tilejson/{resource}.json (one
 * tile set: MapLibre, OpenLayers, Leaflet plugins) and the WMTS 1.0.0
 * RESTful capabilities at /here-proxy/wmts/1.0.0/WMTSCapabilities.xml (a
 * layer for each resource and allowed style: QGIS, GDAL, OpenLayers).
 * Their tile URLs go through the proxy, under HEREPROXY_PUBLIC_URL or the
 * request's own scheme and Host; their attribution is HERE's copyright
 * document's, which comes through the tile flow (tile_get_doc).
 *
 * The renderers are pure (the unit tests call them); caps_serve is the
 * route's glue.
 */

#define CAPS_BASE_MAX 256 /* a base URL, NUL included */
#define CAPS_ATTRIBUTION_MAX 512
#define CAPS_TILEJSON_TYPE "application/json"
#define CAPS_WMTS_TYPE "application/xml" /* cache.c allows it under wmts/ */

/*
 * A Host header (or a URL's authority) we put into URLs: a DNS name
 * (labels of letters, digits and '-'), an IPv4 address or an [IPv6]
 * address, then an optional :port (1 to 65535). len bytes of host.
 */
int caps_host_valid(const char *host, size_t len);

/*
 * HEREPROXY_PUBLIC_URL: http:// or https://, a valid host (as above), an
 * optional path of A-Z a-z 0-9 . _ ~ - / without "..", no query, fragment
 * or user; at most CAPS_BASE_MAX - 1 bytes.
 */
int caps_public_url_valid(const char *url);

/*
 * The base URL the documents' links start with (no trailing '/'):
 * public_url when it is set (""), else the request's scheme (HTTPS "on" or
 * "1", or REQUEST_SCHEME "https": https; else http) and its Host, which
 * must be valid. *from_host tells which. 0, or -1 when there is no usable
 * Host.
 */
int caps_base_url(const char *public_url, const char *host, const char *https,
    const char *scheme, char *out, size_t size, int *from_host);

/*
 * The attribution of resource in style, from HERE's copyright document
 * (doc, len bytes; HERE's v3 form: "resources" maps a resource's styles
 * to ids in "copyrights", whose entries have a "label"), as text: "©
 * <year> HERE" unless a label names HERE already, then each label once,
 * "© label", comma separated. Labels are HERE's words, not trusted: only
 * valid UTF-8 stays, control, bidirectional and zero-width characters go,
 * blanks shrink to one, each is cut at 120 bytes, 16 at most. Returns 0;
 * -1 when doc is NULL or not such a document: then out is the fallback "©
 * <year> HERE".
 */
int caps_attribution(const char *doc, size_t len, const char *resource,
    const char *style, int year, char *out, size_t size);

/* What a capabilities document is written from. */
struct caps_doc {
    const struct tile_req *req; /* ROUTE_TILEJSON or ROUTE_WMTS, parsed */
    const char *base;           /* caps_base_url's */
    const char *indice;         /* into the tile URLs; NULL: none */
    long zmax;                  /* HEREPROXY_ZMAX */
    const char *const *styles;  /* request_styles: a WMTS layer each */
    size_t nstyles;
    const char *copyright; /* HERE's document, NUL-terminated; NULL: none */
    size_t copyright_len;
    int year; /* of the fallback attribution */
};

/*
 * The TileJSON 3.0.0 document (tilejson, name, description, attribution
 * as HTML-escaped text, scheme xyz, tiles, minzoom, maxzoom, bounds,
 * center, tileSize) or the WMTS capabilities (XML). Return a malloc'd body
 * of *len bytes (the caller frees), or NULL when memory ran out.
 */
char *caps_tilejson(const struct caps_doc *d, size_t *len);
char *caps_wmts(const struct caps_doc *d, size_t *len);

struct fcgi_out;
struct handler;
struct outcome;
struct request_params;
struct response_meta;
struct settings;

/*
 * Answer req (ROUTE_TILEJSON or ROUTE_WMTS, admitted) and fill o for the
 * access line and the metrics. Documents built from HEREPROXY_PUBLIC_URL
 * are kept in the cache (CACHE_META_TTL); those built from the request's
 * Host are not, and go out Cache-Control: private, as do those carrying
 * the client's índice: no shared cache keyed without them may hand them
 * to another client.
 */
void caps_serve(struct handler *h, const struct settings *cfg,
    const struct tile_req *req, const struct request_params *rp,
    struct fcgi_out *out, struct response_meta *meta, struct outcome *o);

#endif
