#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "caps.h"
#include "handler.h"
#include "response.h"
#include "settings.h"
#include "tile.h"
#include "util.h"

#define LABELS_MAX 16
#define LABEL_BYTES 120
#define STYLES_MAX 32
#define WMTS_MAX (4u << 20) /* far above a real one (about 80 KiB) */
#define TEMPLATE_MAX (CAPS_BASE_MAX + REQUEST_KEY_MAX + 256)

/*
 * Web Mercator (EPSG:3857): the half extent in metres and the latitude
 * where it ends; GoogleMapsCompatible's scale denominator at zoom 0 for
 * 256-pixel tiles (OGC 07-057r7, annex E.4).
 */
#define MERC_HALF "20037508.3427892"
#define LAT_MAX 85.0511287798066
#define SCALE_Z0 559082264.0287178

static const char copyright_sign[] = "\xc2\xa9"; /* U+00A9 */

/* ------------------------------------------------------------------ URLs */

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* 1 to 65535, without a leading zero. */
static int
valid_port(const char *s, size_t len)
{
    long port = 0;
    size_t i;

    if (len == 0 || len > 5 || s[0] == '0')
        return 0;
    for (i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return 0;
        port = port * 10 + (s[i] - '0');
    }
    return port <= 65535;
}

/* Dot-separated labels of 1 to 63 letters, digits and inner '-'. */
static int
valid_name(const char *s, size_t len)
{
    size_t i, label = 0;

    if (len == 0 || len > 253)
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!is_alnum(s[i]) && (s[i] != '-' || label == 0))
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0 && s[len - 1] != '-';
}

int
caps_host_valid(const char *host, size_t len)
{
    const char *end;
    size_t hlen, i;

    if (host == NULL || len == 0)
        return 0;
    if (host[0] == '[') {
        if ((end = memchr(host, ']', len)) == NULL)
            return 0;
        hlen = (size_t)(end - host) + 1;
        if (hlen < 4 || hlen > 47 || memchr(host, ':', hlen) == NULL)
            return 0;
        for (i = 1; i + 1 < hlen; i++)
            if (!is_hex(host[i]) && host[i] != ':' && host[i] != '.')
                return 0;
    } else {
        end = memchr(host, ':', len);
        hlen = end != NULL ? (size_t)(end - host) : len;
        if (!valid_name(host, hlen))
            return 0;
    }
    if (hlen == len)
        return 1;
    return host[hlen] == ':' && valid_port(host + hlen + 1, len - hlen - 1);
}

int
caps_public_url_valid(const char *url)
{
    const char *p, *path;
    size_t i;

    if (strlen(url) >= CAPS_BASE_MAX)
        return 0;
    if (strncmp(url, "https://", 8) == 0)
        p = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        p = url + 7;
    else
        return 0;
    path = strchr(p, '/');
    if (!caps_host_valid(p, path != NULL ? (size_t)(path - p) : strlen(p)))
        return 0;
    if (path == NULL)
        return 1;
    if (strstr(path, "..") != NULL || strstr(path, "//") != NULL)
        return 0;
    for (i = 0; path[i] != '\0'; i++)
        if (!is_alnum(path[i]) && strchr("._~-/", path[i]) == NULL)
            return 0;
    return 1;
}

int
caps_base_url(const char *public_url, const char *host, const char *https,
    const char *scheme, char *out, size_t size, int *from_host)
{
    int secure, n;

    *from_host = 0;
    if (public_url != NULL && *public_url != '\0')
        return util_strlcpy(out, public_url, size) < size ? 0 : -1;
    *from_host = 1;
    if (host == NULL || !caps_host_valid(host, strlen(host)))
        return -1;
    secure = (https != NULL &&
                 (strcasecmp(https, "on") == 0 || strcmp(https, "1") == 0)) ||
        (scheme != NULL && strcmp(scheme, "https") == 0);
    n = snprintf(out, size, "%s://%s", secure ? "https" : "http", host);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* ---------------------------------------------------------- attribution */

/* The code point of a valid UTF-8 sequence of n bytes. */
static unsigned
code_point(const unsigned char *s, size_t n)
{
    static const unsigned char lead_mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    unsigned cp = s[0] & lead_mask[n];
    size_t i;

    for (i = 1; i < n; i++)
        cp = cp << 6 | (s[i] & 0x3f);
    return cp;
}

static int
is_blank(unsigned cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == 0xa0;
}

/*
 * What a label must not carry: control characters, and those that
 * reorder or hide text (bidirectional overrides, zero-width characters).
 */
static int
unwanted(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||
        (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
        (cp >= 0x2060 && cp <= 0x2069) || cp == 0xfeff;
}

/* HERE's label as plain text (see caps_attribution); out: LABEL_BYTES+1. */
static void
clean_label(const char *in, char *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    int space = 0;

    while (*s != '\0') {
        size_t n = util_utf8_sequence(s);
        unsigned cp;

        if (n == 0) {
            s++; /* not UTF-8: dropped */
            continue;
        }
        cp = code_point(s, n);
        if (is_blank(cp) || unwanted(cp)) {
            space |= is_blank(cp) && o > 0;
            s += n;
            continue;
        }
        if (o + (size_t)space + n > LABEL_BYTES)
            break;
        if (space)
            out[o++] = ' ';
        space = 0;
        memcpy(out + o, s, n);
        o += n;
        s += n;
    }
    out[o] = '\0';
}

struct labels {
    size_t n;
    char text[LABELS_MAX][LABEL_BYTES + 1];
};

static void
labels_add(struct labels *l, const char *raw)
{
    char clean[LABEL_BYTES + 1];
    size_t i;

    clean_label(raw, clean);
    if (*clean == '\0' || l->n == LABELS_MAX)
        return;
    for (i = 0; i < l->n; i++)
        if (strcmp(l->text[i], clean) == 0)
            return;
    memcpy(l->text[l->n++], clean, sizeof(clean));
}

/*
 * The labels HERE's v3 copyright document gives resource in style:
 * resources.{resource}.styles.{style} lists ids, copyrights.{id} their
 * entries. 0, or -1 when root is not such a document.
 */
static int
labels_of(const cJSON *root, const char *resource, const char *style,
    struct labels *l)
{
    const cJSON *copyrights =
        cJSON_GetObjectItemCaseSensitive(root, "copyrights");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "resources");
    const cJSON *ids, *id, *entries, *e, *label;

    l->n = 0;
    if (!cJSON_IsObject(copyrights) || !cJSON_IsObject(res))
        return -1;
    res = cJSON_GetObjectItemCaseSensitive(res, resource);
    res = cJSON_GetObjectItemCaseSensitive(res, "styles");
    ids = cJSON_GetObjectItemCaseSensitive(res, style);
    if (!cJSON_IsArray(ids))
        return 0;
    cJSON_ArrayForEach(id, ids)
    {
        if (!cJSON_IsString(id))
            continue;
        entries = cJSON_GetObjectItemCaseSensitive(copyrights, id->valuestring);
        if (!cJSON_IsArray(entries))
            continue;
        cJSON_ArrayForEach(e, entries)
        {
            label = cJSON_GetObjectItemCaseSensitive(e, "label");
            if (cJSON_IsString(label))
                labels_add(l, label->valuestring);
        }
    }
    return 0;
}

/* A label that carries its own copyright sign (or word). */
static int
has_sign(const char *label)
{
    return strncmp(label, copyright_sign, 2) == 0 ||
        strncasecmp(label, "(c)", 3) == 0 ||
        strncasecmp(label, "copyright", 9) == 0;
}

/* The labels as one line; whole labels only, as many as fit. */
static void
attribution_text(const struct labels *l, int year, char *out, size_t size)
{
    size_t i, n;
    int here = 0;

    for (i = 0; i < l->n; i++)
        here |= strstr(l->text[i], "HERE") != NULL;
    out[0] = '\0';
    if (!here)
        snprintf(out, size, "%s %d HERE", copyright_sign, year);
    for (i = 0; i < l->n; i++) {
        const char *sep = out[0] != '\0' ? ", " : "";
        const char *sign = has_sign(l->text[i]) ? "" : "\xc2\xa9 ";

        n = strlen(out);
        if (n + strlen(sep) + strlen(sign) + strlen(l->text[i]) >= size)
            break;
        snprintf(out + n, size - n, "%s%s%s", sep, sign, l->text[i]);
    }
}

/* caps_attribution over a parsed document (NULL: none). */
static int
attribution_from(const cJSON *root, const char *resource, const char *style,
    int year, char *out, size_t size)
{
    struct labels l;
    int rc = root != NULL ? labels_of(root, resource, style, &l) : -1;

    if (rc != 0)
        l.n = 0;
    attribution_text(&l, year, out, size);
    return rc;
}

int
caps_attribution(const char *doc, size_t len, const char *resource,
    const char *style, int year, char *out, size_t size)
{
    cJSON *root = doc != NULL ? cJSON_ParseWithLength(doc, len) : NULL;
    int rc = attribution_from(root, resource, style, year, out, size);

    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------- writing */

static int
put(struct dynbuf *b, const char *s)
{
    return dynbuf_append(b, s, strlen(s));
}

static int putf(struct dynbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
putf(struct dynbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    return dynbuf_append(b, tmp, (size_t)n);
}

/* s with the five XML (and HTML) specials as entities. */
static int
put_escaped(struct dynbuf *b, const char *s)
{
    int bad = 0;

    for (; *s != '\0' && !bad; s++) {
        switch (*s) {
        case '&': bad = put(b, "&amp;"); break;
        case '<': bad = put(b, "&lt;"); break;
        case '>': bad = put(b, "&gt;"); break;
        case '"': bad = put(b, "&quot;"); break;
        case '\'': bad = put(b, "&#39;"); break;
        default: bad = dynbuf_append(b, s, 1); break;
        }
    }
    return bad;
}

/* The query a tile URL carries: the key's, after '?' (never empty). */
static const char *
tile_query(const struct tile_req *req)
{
    const char *q = strchr(req->key, '?');

    return q != NULL ? q + 1 : "";
}

/*
 * A tile URL template through the proxy: the base, the tile's path with
 * placeholders z, x and y, the canonical query (with style, for a WMTS
 * layer), the client's índice. Never the client's token.
 */
static int
put_template(struct dynbuf *b, const struct caps_doc *d, const char *resource,
    const char *style, const char *z, const char *x, const char *y)
{
    return putf(b, "%s/here-proxy/%s/mc/%s/%s/%s/%s?%s", d->base, resource, z,
               x, y, d->req->format, tile_query(d->req)) ||
        (style != NULL ? putf(b, "&style=%s", style) : 0) ||
        (d->indice != NULL ? putf(b, "&indice=%s", d->indice) : 0);
}

/* The same, XML-escaped, for an attribute. */
static int
put_template_xml(struct dynbuf *b, const struct caps_doc *d,
    const char *resource, const char *style)
{
    struct dynbuf url;
    int bad;

    dynbuf_init(&url, TEMPLATE_MAX);
    bad = put_template(&url, d, resource, style, "{TileMatrix}", "{TileCol}",
              "{TileRow}") ||
        dynbuf_append(&url, "", 1) || put_escaped(b, url.data);
    dynbuf_cleanup(&url);
    return bad;
}

char *
caps_tilejson(const struct caps_doc *d, size_t *len)
{
    const struct tile_req *r = d->req;
    double bounds[4] = {-180, -LAT_MAX, 180, LAT_MAX};
    double center[3] = {0, 0, d->zmax < 2 ? (double)d->zmax : 2};
    char attribution[CAPS_ATTRIBUTION_MAX], text[160];
    struct dynbuf url, html;
    cJSON *root = NULL, *tiles;
    char *out = NULL;
    int ok;

    dynbuf_init(&url, TEMPLATE_MAX);
    dynbuf_init(&html, sizeof(attribution) * 6);
    caps_attribution(d->copyright, d->copyright_len, r->resource, r->style,
        d->year, attribution, sizeof(attribution));
    /* TileJSON's attribution is HTML to its clients: HERE's words as text. */
    ok = put_escaped(&html, attribution) == 0 &&
        dynbuf_append(&html, "", 1) == 0 &&
        put_template(&url, d, r->resource, NULL, "{z}", "{x}", "{y}") == 0 &&
        dynbuf_append(&url, "", 1) == 0 &&
        (root = cJSON_CreateObject()) != NULL;
    snprintf(text, sizeof(text), "HERE %s %s", r->resource, r->style);
    ok = ok && cJSON_AddStringToObject(root, "tilejson", "3.0.0") != NULL &&
        cJSON_AddStringToObject(root, "name", text) != NULL;
    snprintf(text, sizeof(text),
        "HERE Raster Tile API v3 through hereproxy: resource %s, style %s, "
        "%s tiles of %ld pixels",
        r->resource, r->style, r->format, r->size);
    ok = ok && cJSON_AddStringToObject(root, "description", text) != NULL &&
        cJSON_AddStringToObject(root, "attribution", html.data) != NULL &&
        cJSON_AddStringToObject(root, "scheme", "xyz") != NULL &&
        (tiles = cJSON_AddArrayToObject(root, "tiles")) != NULL &&
        cJSON_AddItemToArray(tiles, cJSON_CreateString(url.data)) &&
        cJSON_AddNumberToObject(root, "minzoom", 0) != NULL &&
        cJSON_AddNumberToObject(root, "maxzoom", (double)d->zmax) != NULL &&
        cJSON_AddItemToObject(
            root, "bounds", cJSON_CreateDoubleArray(bounds, 4)) &&
        cJSON_AddItemToObject(
            root, "center", cJSON_CreateDoubleArray(center, 3)) &&
        cJSON_AddNumberToObject(root, "tileSize", (double)r->size) != NULL;
    if (ok && (out = cJSON_PrintUnformatted(root)) != NULL)
        *len = strlen(out);
    cJSON_Delete(root);
    dynbuf_cleanup(&url);
    dynbuf_cleanup(&html);
    return out;
}

/* One layer: a resource in a style. */
static int
put_layer(struct dynbuf *b, const struct caps_doc *d, const cJSON *copyright,
    const char *resource, const char *style, const char *mime, const char *set)
{
    char attribution[CAPS_ATTRIBUTION_MAX];

    attribution_from(
        copyright, resource, style, d->year, attribution, sizeof(attribution));
    return putf(b, "<Layer><ows:Title>HERE %s, %s</ows:Title>", resource,
               style) ||
        putf(b,
            "<ows:Abstract>HERE Raster Tile API v3 through hereproxy: "
            "resource %s, style %s. ",
            resource, style) ||
        put_escaped(b, attribution) ||
        put(b,
            "</ows:Abstract><ows:WGS84BoundingBox>"
            "<ows:LowerCorner>-180 -85.0511287798066</ows:LowerCorner>"
            "<ows:UpperCorner>180 85.0511287798066</ows:UpperCorner>"
            "</ows:WGS84BoundingBox>") ||
        putf(b, "<ows:Identifier>%s-%s</ows:Identifier>", resource, style) ||
        putf(b,
            "<Style isDefault=\"true\"><ows:Title>%s</ows:Title>"
            "<ows:Identifier>%s</ows:Identifier></Style>",
            style, style) ||
        putf(b, "<Format>%s</Format>", mime) ||
        putf(b,
            "<TileMatrixSetLink><TileMatrixSet>%s</TileMatrixSet>"
            "</TileMatrixSetLink>",
            set) ||
        putf(b, "<ResourceURL format=\"%s\" resourceType=\"tile\" template=\"",
            mime) ||
        put_template_xml(b, d, resource, style) || put(b, "\"/></Layer>\n");
}

/*
 * GoogleMapsCompatible (OGC 07-057r7, annex E.4) to HEREPROXY_ZMAX: 256
 * pixels a tile. HERE's 512-pixel tiles keep the grid (2^z a side) with
 * twice the pixels: a set of their own, at half the scale.
 */
static int
put_matrix_set(struct dynbuf *b, const struct caps_doc *d, const char *set)
{
    long tile = d->req->size == 512 ? 512 : 256, z;
    int bad = putf(b,
                  "<TileMatrixSet><ows:Identifier>%s</ows:Identifier>"
                  "<ows:SupportedCRS>urn:ogc:def:crs:EPSG::3857"
                  "</ows:SupportedCRS>",
                  set) ||
        (tile == 256 ? put(b,
                           "<WellKnownScaleSet>urn:ogc:def:wkss:OGC:1.0:"
                           "GoogleMapsCompatible</WellKnownScaleSet>")
                     : 0);

    for (z = 0; z <= d->zmax && !bad; z++) {
        double scale = SCALE_Z0 / (double)(1L << z) / (double)(tile / 256);

        bad = putf(b,
            "<TileMatrix><ows:Identifier>%ld</ows:Identifier>"
            "<ScaleDenominator>%.16g</ScaleDenominator>"
            "<TopLeftCorner>-" MERC_HALF " " MERC_HALF "</TopLeftCorner>"
            "<TileWidth>%ld</TileWidth><TileHeight>%ld</TileHeight>"
            "<MatrixWidth>%ld</MatrixWidth><MatrixHeight>%ld</MatrixHeight>"
            "</TileMatrix>\n",
            z, scale, tile, tile, 1L << z, 1L << z);
    }
    return bad || put(b, "</TileMatrixSet>\n");
}

char *
caps_wmts(const struct caps_doc *d, size_t *len)
{
    const struct tile_req *r = d->req;
    const char *const *resources = request_resources();
    const char *mime =
        strcmp(r->format, "jpeg") == 0 ? "image/jpeg" : "image/png";
    const char *set =
        r->size == 512 ? "GoogleMapsCompatible512" : "GoogleMapsCompatible";
    char attribution[CAPS_ATTRIBUTION_MAX];
    cJSON *root = d->copyright != NULL
        ? cJSON_ParseWithLength(d->copyright, d->copyright_len)
        : NULL;
    struct dynbuf b;
    size_t i, j;
    int bad;

    dynbuf_init(&b, WMTS_MAX);
    attribution_from(root, resources[0], d->nstyles > 0 ? d->styles[0] : "",
        d->year, attribution, sizeof(attribution));
    bad = put(&b,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<Capabilities xmlns=\"http://www.opengis.net/wmts/1.0\" "
              "xmlns:ows=\"http://www.opengis.net/ows/1.1\" "
              "xmlns:xlink=\"http://www.w3.org/1999/xlink\" "
              "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
              "xsi:schemaLocation=\"http://www.opengis.net/wmts/1.0 "
              "http://schemas.opengis.net/wmts/1.0/"
              "wmtsGetCapabilities_response.xsd\" version=\"1.0.0\">\n"
              "<ows:ServiceIdentification>"
              "<ows:Title>HERE raster tiles through hereproxy</ows:Title>"
              "<ows:Abstract>HERE Raster Tile API v3 map tiles, cached by "
              "hereproxy. ") ||
        put_escaped(&b, attribution) ||
        put(&b,
            "</ows:Abstract><ows:ServiceType>OGC WMTS</ows:ServiceType>"
            "<ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion>"
            "<ows:AccessConstraints>") ||
        put_escaped(&b, attribution) ||
        put(&b,
            "</ows:AccessConstraints></ows:ServiceIdentification>\n"
            "<ows:ServiceProvider><ows:ProviderName>HERE (through "
            "hereproxy)</ows:ProviderName><ows:ServiceContact/>"
            "</ows:ServiceProvider>\n<Contents>\n");
    for (i = 0; resources[i] != NULL && !bad; i++)
        for (j = 0; j < d->nstyles && !bad; j++)
            bad = put_layer(&b, d, root, resources[i], d->styles[j], mime, set);
    bad = bad || put_matrix_set(&b, d, set) || put(&b, "</Contents>\n") ||
        putf(&b,
            "<ServiceMetadataURL xlink:href=\"%s/here-proxy/wmts/1.0.0/"
            "WMTSCapabilities.xml?%s%s%s",
            d->base, strcmp(r->format, "png") != 0 ? "format=" : "",
            strcmp(r->format, "png") != 0 ? r->format : "",
            strcmp(r->format, "png") != 0 ? "&amp;" : "") ||
        put_escaped(&b, tile_query(r)) ||
        (d->indice != NULL ? putf(&b, "&amp;indice=%s", d->indice) : 0) ||
        put(&b, "\"/>\n</Capabilities>\n") || dynbuf_append(&b, "", 1);
    cJSON_Delete(root);
    if (bad) {
        dynbuf_cleanup(&b);
        return NULL;
    }
    *len = b.len - 1;
    return b.data;
}

/* ---------------------------------------------------------------- serve */

/*
 * What the cache keeps a document under: its request's key, the base URL
 * and the índice its links carry, and the settings it depends on
 * (HEREPROXY_ZMAX, the allowed styles), so that instances set otherwise
 * never share one. Its length, or -1 when it does not fit.
 */
static int
doc_key(const struct caps_doc *d, char *out, size_t size)
{
    uint64_t styles = 0;
    size_t i;
    int n;

    for (i = 0; i < d->nstyles; i++)
        styles = util_hash64(d->styles[i], strlen(d->styles[i]) + 1, styles);
    n = snprintf(out, size, "%s|%s|z%ld|s%016llx%s%s", d->req->key, d->base,
        d->zmax, (unsigned long long)styles, d->indice != NULL ? "|i=" : "",
        d->indice != NULL ? d->indice : "");
    return n > 0 && (size_t)n < size ? n : -1;
}

/* tile_doc's render: HERE's copyright document into the capabilities. */
static char *
render(void *ctx, const char *src, size_t src_len, size_t *len)
{
    struct caps_doc *d = ctx;

    d->copyright = src;
    d->copyright_len = src_len;
    return d->req->route == ROUTE_WMTS ? caps_wmts(d, len)
                                       : caps_tilejson(d, len);
}

void
caps_serve(struct handler *h, const struct settings *cfg,
    const struct tile_req *req, const struct request_params *rp,
    struct fcgi_out *out, struct response_meta *meta, struct outcome *o)
{
    const char *styles[STYLES_MAX];
    char base[CAPS_BASE_MAX], key[REQUEST_KEY_MAX], err[256];
    struct tile_req source;
    struct tile_answer a;
    struct tile_doc doc;
    struct caps_doc d;
    time_t now = time(NULL);
    struct tm tm;
    int from_host, n;

    if (caps_base_url(cfg->public_url, rp->host, rp->https, rp->scheme, base,
            sizeof(base), &from_host) != 0) {
        response_fail(out, o, ERROR_BAD_REQUEST, 0,
            "the Host header cannot make this document's URLs (a host name "
            "or address and an optional port; or set HEREPROXY_PUBLIC_URL)",
            NULL, meta);
        return;
    }
    /* HERE's copyright, under the requester's índice: its quota, its
     * metrics, as a metadata request of its own would be. */
    if (request_parse("GET", "/here-proxy/copyright", &h->policy, &source, err,
            sizeof(err)) != 0) {
        response_fail(out, o, ERROR_INTERNAL, 500, NULL, err, meta);
        return;
    }
    util_strlcpy(source.indice, req->indice, sizeof(source.indice));
    memset(&d, 0, sizeof(d));
    d.req = req;
    d.base = base;
    d.indice = req->indice_given ? req->indice : NULL;
    d.zmax = h->policy.zmax;
    d.styles = styles;
    d.nstyles = request_styles(&h->policy, styles, STYLES_MAX);
    d.year = gmtime_r(&now, &tm) != NULL ? tm.tm_year + 1900 : 1970;
    memset(&doc, 0, sizeof(doc));
    doc.source = &source;
    doc.content_type =
        req->route == ROUTE_WMTS ? CAPS_WMTS_TYPE : CAPS_TILEJSON_TYPE;
    doc.render = render;
    doc.ctx = &d;
    /* A Host-made document is never kept: no Host of a client's choosing
     * lands in the cache. */
    if (!from_host && (n = doc_key(&d, key, sizeof(key))) > 0) {
        doc.key = key;
        doc.key_len = (size_t)n;
    }
    tile_get_doc(&h->tiles, cfg, &doc, &a);
    o->cache = a.cache;
    meta->check_gone = a.waited;
    meta->private_cache = from_host || d.indice != NULL;
    if (a.body == TILE_ERROR) {
        response_fail(out, o, a.error, a.status, a.message, a.detail, meta);
    } else {
        o->bytes = response_body(out, a.status, a.content_type, a.etag, a.data,
            a.len, rp->if_none_match, cache_status_header(a.cache), a.max_age_s,
            meta, &o->status);
        util_strlcpy(o->detail, a.detail, sizeof(o->detail));
    }
    util_strlcpy(
        o->correlation_id, a.correlation_id, sizeof(o->correlation_id));
    o->upstream_status = a.upstream.status;
    o->upstream_attempts = a.upstream.attempts;
    o->upstream_ms = a.upstream.upstream_ms;
    o->upstream_http = a.upstream.http_version;
    tile_done(&h->tiles, cfg, req, &a);
}
