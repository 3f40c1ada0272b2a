#ifndef HEREPROXY_RESPONSE_H
#define HEREPROXY_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"

/*
 * Everything the proxy writes to the web server: status line, headers and
 * body on the FastCGI stream. Errors become JSON bodies here and nowhere
 * else. Every response carries X-Content-Type-Options: nosniff. Each
 * function returns the number of body bytes written (fewer than the body
 * when the web server went away: see response_client_gone).
 */

struct FCGX_Stream;
struct fcgi_conn;

/* Headers every response from a proxy route carries. */
struct response_meta {
    const char *indice;       /* X-Index; NULL to omit */
    const char *cors_origin;  /* Access-Control-Allow-Origin; NULL: none */
    const char *allow;        /* Allow, on 405 */
    const char *www_authenticate; /* WWW-Authenticate, on 401 */
    long retry_after_s;       /* Retry-After when > 0 */
    int head;                 /* HEAD: headers only */
    const char *request_id;   /* X-Request-ID; NULL to omit */
    /* RateLimit-Limit, -Remaining, -Reset when rate_limited is 1 */
    int rate_limited;
    long rate_limit;
    long rate_remaining;
    long rate_reset_s;
    /* The request's connection, for the response in one write; or NULL. */
    const struct fcgi_conn *conn;
    /*
     * Vary: Origin, when the CORS headers depend on the request's Origin
     * (an allow-list): a shared cache must not hand one origin's copy, or
     * a copy without Access-Control-Allow-Origin, to another.
     */
    int vary_origin;
    /*
     * Client tokens are on: tiles and metadata are Cache-Control: private
     * (no shared cache hands them to a client without a token), and a
     * preflight allows the X-Proxy-Token header.
     */
    int client_tokens;
    /*
     * 1: the response waited (on HERE): first ask whether the web server
     * hung up meanwhile (its client went away), and write nothing then.
     */
    int check_gone;
};

/* {"error": message, "status": status} with Content-Type JSON. */
size_t response_error(struct FCGX_Stream *out, int status,
    const char *message, const struct response_meta *meta);

/* A text document with its Content-Type (Cache-Control: no-store). */
size_t response_text(struct FCGX_Stream *out, int status,
    const char *content_type, const char *body,
    const struct response_meta *meta);

/* A JSON document given as text. */
size_t response_json(struct FCGX_Stream *out, int status, const char *json,
    const struct response_meta *meta);

/*
 * A cached entry: 200 with its body, or 304 when if_none_match matches its
 * ETag. x_cache is HIT or MISS; max_age_s the remaining freshness.
 * *status_out gets the status sent.
 */
size_t response_entry(struct FCGX_Stream *out, const struct entry *e,
    const char *if_none_match, const char *x_cache, long max_age_s,
    const struct response_meta *meta, int *status_out);

/*
 * The same for a body held elsewhere (a flight that has ended): status
 * with its body, or 304 when if_none_match matches etag ("" for none).
 */
size_t response_body(struct FCGX_Stream *out, int status,
    const char *content_type, const char *etag, const void *body,
    size_t body_len, const char *if_none_match, const char *x_cache,
    long max_age_s, const struct response_meta *meta, int *status_out);

/*
 * Start a response whose body arrives from HERE in chunks: headers only,
 * with X-Accel-Buffering: no so that NGINX passes each chunk on at once.
 * content_length < 0 when unknown. Returns 0, or -1 when the client is gone.
 */
int response_begin(struct FCGX_Stream *out, int status,
    const char *content_type, const char *etag, int64_t content_length,
    const char *x_cache, long max_age_s, const struct response_meta *meta);

/* One chunk of body, flushed to the web server. Returns 0 or -1. */
int response_chunk(struct FCGX_Stream *out, const void *data, size_t len);

/* 204 for a CORS preflight. */
void response_preflight(struct FCGX_Stream *out,
    const struct response_meta *meta);

/*
 * True once a write to out failed: the web server (the client behind it)
 * went away before the response was out whole.
 */
int response_client_gone(struct FCGX_Stream *out);

/* True when an If-None-Match value matches etag (weak comparison). */
int response_etag_matches(const char *if_none_match, const char *etag);

const char *response_reason(int status);

#endif
