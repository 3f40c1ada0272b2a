#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fcgi.h"
#include "response.h"
#include "util.h"

#define HEADERS_MAX 2048

/* Headers a browser script may read on a cross-origin tile. */
#define EXPOSED                                                                \
    "X-Cache, X-Index, X-Request-ID, ETag, Retry-After, "                      \
    "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"

const char *
response_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 410: return "Gone";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default:
        return status < 300 ? "OK" : status < 400 ? "Redirection" : "Error";
    }
}

/* Append to a header block; silently stops at the cap (never reached). */
static void hdr(char *buf, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
hdr(char *buf, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int w;

    if (*len >= HEADERS_MAX)
        return;
    va_start(ap, fmt);
    w = vsnprintf(buf + *len, HEADERS_MAX - *len, fmt, ap);
    va_end(ap);
    if (w > 0)
        *len +=
            (size_t)w < HEADERS_MAX - *len ? (size_t)w : HEADERS_MAX - *len - 1;
}

/*
 * put and put_num append without printf: the headers of a cache hit are
 * built on every request, and vsnprintf cost more than the lookup.
 */
static void
put(char *buf, size_t *len, const char *s)
{
    size_t n = strlen(s);

    if (n >= HEADERS_MAX - *len)
        n = HEADERS_MAX - *len - 1;
    memcpy(buf + *len, s, n);
    *len += n;
}

static void
put_num(char *buf, size_t *len, unsigned long long v)
{
    char tmp[24], *p = tmp + sizeof(tmp);

    *--p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(buf, len, p);
}

static void
common_headers(
    char *buf, size_t *len, int status, const struct response_meta *meta)
{
    put(buf, len, "Status: ");
    put_num(buf, len, (unsigned)status);
    put(buf, len, " ");
    put(buf, len, response_reason(status));
    /* Every response: no browser reads a tile or an error as a script. */
    put(buf, len, "\r\nX-Content-Type-Options: nosniff\r\n");
    if (meta->indice != NULL) {
        put(buf, len, "X-Index: ");
        put(buf, len, meta->indice);
        put(buf, len, "\r\n");
    }
    if (meta->request_id != NULL) {
        put(buf, len, "X-Request-ID: ");
        put(buf, len, meta->request_id);
        put(buf, len, "\r\n");
    }
    if (meta->retry_after_s > 0)
        hdr(buf, len, "Retry-After: %ld\r\n", meta->retry_after_s);
    if (meta->rate_limited)
        hdr(buf, len,
            "RateLimit-Limit: %ld\r\nRateLimit-Remaining: %ld\r\n"
            "RateLimit-Reset: %ld\r\n",
            meta->rate_limit, meta->rate_remaining, meta->rate_reset_s);
    if (meta->cors_origin != NULL) {
        put(buf, len, "Access-Control-Allow-Origin: ");
        put(buf, len, meta->cors_origin);
        put(buf, len, "\r\nAccess-Control-Expose-Headers: " EXPOSED "\r\n");
    }
    /* With or without a grant: both depend on Origin. */
    if (meta->vary_origin ||
        (meta->cors_origin != NULL && strcmp(meta->cors_origin, "*") != 0))
        put(buf, len, "Vary: Origin\r\n");
}

/*
 * A whole response, with the end of the request, in one writev: a web
 * server that is gone shows here. Returns the body bytes written;
 * response_client_gone() tells whether all went out.
 */
static size_t
send_all(struct fcgi_out *out, const struct response_meta *meta,
    const char *headers, size_t hlen, const void *body, size_t blen, int head)
{
    uint64_t before = out->body_written;

    if (head)
        blen = 0;
    /* A hit is written at once: no syscall to ask first. */
    if (meta->check_gone && fcgi_peer_gone(out)) {
        out->failed = 1;
        return 0;
    }
    fcgi_write(out, headers, hlen, body, blen, 1);
    return (size_t)(out->body_written - before);
}

int
response_client_gone(struct fcgi_out *out)
{
    return out->failed;
}

void
response_abort(struct fcgi_out *out)
{
    fcgi_abort(out);
}

void
response_fail(struct fcgi_out *out, struct outcome *o, enum error_kind kind,
    int status, const char *message, const char *detail,
    const struct response_meta *meta)
{
    size_t n;

    if (status == 0)
        status = error_kind_status(kind, 500);
    if (message == NULL && (message = error_kind_message(kind)) == NULL)
        message = response_reason(status);
    n = util_strlcpy(o->detail, message, sizeof(o->detail));
    o->status = status;
    o->error = kind;
    if (detail != NULL && *detail != '\0' && n + 2 < sizeof(o->detail)) {
        memcpy(o->detail + n, ": ", 2);
        util_strlcpy(o->detail + n + 2, detail, sizeof(o->detail) - n - 2);
    }
    o->bytes = response_error(out, status, message, meta);
}

size_t
response_text(struct fcgi_out *out, int status, const char *content_type,
    const char *body, const struct response_meta *meta)
{
    char buf[HEADERS_MAX];
    size_t len = 0, blen = strlen(body);

    common_headers(buf, &len, status, meta);
    if (meta->allow != NULL)
        hdr(buf, &len, "Allow: %s\r\n", meta->allow);
    if (meta->www_authenticate != NULL)
        hdr(buf, &len, "WWW-Authenticate: %s\r\n", meta->www_authenticate);
    hdr(buf, &len,
        "Content-Type: %s\r\n"
        "Content-Length: %zu\r\nCache-Control: no-store\r\n\r\n",
        content_type, blen);
    return send_all(out, meta, buf, len, body, blen, meta->head);
}

size_t
response_json(struct fcgi_out *out, int status, const char *json,
    const struct response_meta *meta)
{
    return response_text(out, status, "application/json", json, meta);
}

size_t
response_error(struct fcgi_out *out, int status, const char *message,
    const struct response_meta *meta)
{
    cJSON *obj = cJSON_CreateObject();
    char *text = NULL;
    size_t n;

    if (obj != NULL) {
        cJSON_AddStringToObject(obj, "error", message);
        cJSON_AddNumberToObject(obj, "status", status);
        text = cJSON_PrintUnformatted(obj);
        cJSON_Delete(obj);
    }
    /* Still a JSON error when memory ran out. */
    n = response_json(out, status,
        text ? text : "{\"error\":\"out of memory\",\"status\":500}", meta);
    free(text);
    return n;
}

/* Compare entity tags ignoring W/ (RFC 9110 weak comparison). */
static int
tag_equal(const char *a, size_t alen, const char *b)
{
    size_t blen;

    if (alen >= 2 && a[0] == 'W' && a[1] == '/') {
        a += 2;
        alen -= 2;
    }
    if (b[0] == 'W' && b[1] == '/')
        b += 2;
    blen = strlen(b);
    return blen > 0 && alen == blen && memcmp(a, b, alen) == 0;
}

/* Length of one list element: commas inside a quoted entity-tag are data. */
static size_t
list_element_length(const char *p)
{
    size_t i = 0;

    while (p[i] != '\0' && p[i] != ',') {
        if (p[i++] == '"') {
            while (p[i] != '\0' && p[i] != '"')
                i++;
            if (p[i] == '"')
                i++;
        }
    }
    return i;
}

int
response_etag_matches(const char *if_none_match, const char *etag)
{
    const char *p = if_none_match;

    if (p == NULL || etag == NULL || *etag == '\0')
        return 0;
    while (*p != '\0') {
        size_t len, step;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        if (*p == '*')
            return 1;
        step = len = list_element_length(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (tag_equal(p, len, etag))
            return 1;
        p += step;
    }
    return 0;
}

size_t
response_body(struct fcgi_out *out, int status, const char *content_type,
    const char *etag, const void *body, size_t body_len,
    const char *if_none_match, const char *x_cache, long max_age_s,
    const struct response_meta *meta, int *status_out)
{
    char buf[HEADERS_MAX];
    size_t len = 0;
    int not_modified = response_etag_matches(if_none_match, etag);

    if (not_modified)
        status = 304;
    common_headers(buf, &len, status, meta);
    put(buf, &len, "X-Cache: ");
    put(buf, &len, x_cache);
    put(buf, &len,
        meta->client_tokens || meta->private_cache
            ? "\r\nCache-Control: private, max-age="
            : "\r\nCache-Control: public, max-age=");
    put_num(buf, &len, max_age_s > 0 ? (unsigned long long)max_age_s : 0);
    put(buf, &len, "\r\n");
    if (*etag != '\0') {
        put(buf, &len, "ETag: ");
        put(buf, &len, etag);
        put(buf, &len, "\r\n");
    }
    if (!not_modified) {
        put(buf, &len, "Content-Type: ");
        put(buf, &len, content_type);
        put(buf, &len, "\r\nContent-Length: ");
        put_num(buf, &len, body_len);
        put(buf, &len, "\r\n");
    }
    put(buf, &len, "\r\n");
    *status_out = status;
    return send_all(
        out, meta, buf, len, body, body_len, meta->head || not_modified);
}

size_t
response_entry(struct fcgi_out *out, const struct entry *e,
    const char *if_none_match, const char *x_cache, long max_age_s,
    const struct response_meta *meta, int *status_out)
{
    return response_body(out, e->status, e->content_type, e->etag, e->body,
        e->body_len, if_none_match, x_cache, max_age_s, meta, status_out);
}

int
response_begin(struct fcgi_out *out, int status, const char *content_type,
    const char *etag, int64_t content_length, const char *x_cache,
    long max_age_s, const struct response_meta *meta)
{
    char buf[HEADERS_MAX];
    size_t len = 0;

    if (meta->check_gone && fcgi_peer_gone(out)) {
        out->failed = 1;
        return -1;
    }
    common_headers(buf, &len, status, meta);
    hdr(buf, &len, "X-Cache: %s\r\nX-Accel-Buffering: no\r\n", x_cache);
    hdr(buf, &len, "Cache-Control: %s, max-age=%ld\r\n",
        meta->client_tokens ? "private" : "public",
        max_age_s > 0 ? max_age_s : 0);
    if (etag != NULL && *etag != '\0')
        hdr(buf, &len, "ETag: %s\r\n", etag);
    if (status != 304) {
        hdr(buf, &len, "Content-Type: %s\r\n", content_type);
        if (content_length >= 0)
            hdr(buf, &len, "Content-Length: %lld\r\n",
                (long long)content_length);
    }
    hdr(buf, &len, "\r\n");
    return fcgi_write(out, buf, len, NULL, 0, 0);
}

int
response_chunk(struct fcgi_out *out, const void *data, size_t len)
{
    /*
     * A chunk comes after a wait on HERE: the web server may have hung up
     * meanwhile, and a write into a socket its peer closed still succeeds
     * once (one poll per chunk; only slow or large misses stream).
     */
    if (fcgi_peer_gone(out)) {
        out->failed = 1;
        return -1;
    }
    return fcgi_write(out, NULL, 0, data, len, 0);
}

int
response_end(struct fcgi_out *out)
{
    return fcgi_end(out);
}

void
response_preflight(struct fcgi_out *out, const struct response_meta *meta)
{
    char buf[HEADERS_MAX];
    size_t len = 0;

    common_headers(buf, &len, 204, meta);
    /* With tokens a page may send its token in a header, not the query. */
    if (meta->cors_origin != NULL)
        hdr(buf, &len,
            "Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n"
            "Access-Control-Allow-Headers: If-None-Match, X-Request-ID%s\r\n"
            "Access-Control-Max-Age: 86400\r\n",
            meta->client_tokens ? ", X-Proxy-Token" : "");
    hdr(buf, &len, "Content-Length: 0\r\n\r\n");
    send_all(out, meta, buf, len, NULL, 0, 1);
}
