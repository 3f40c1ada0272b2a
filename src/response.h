#ifndef HEREPROXY_RESPONSE_H
#define HEREPROXY_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "labels.h"

/*
 * Everything the proxy writes to the web server: status line, headers and
 * body as FastCGI records (fcgi.h), a whole response with the end of the
 * request in one write. Errors become JSON bodies here and nowhere
 * else. Every response carries X-Content-Type-Options: nosniff. Each
 * function returns the number of body bytes written (fewer than the body
 * when the web server went away: see response_client_gone).
 */

struct fcgi_out;

/* Headers every response from a proxy route carries. */
struct response_meta {
    const char *indice;           /* X-Index; NULL to omit */
    const char *cors_origin;      /* Access-Control-Allow-Origin; NULL: none */
    const char *allow;            /* Allow, on 405 */
    const char *www_authenticate; /* WWW-Authenticate, on 401 */
    long retry_after_s;           /* Retry-After when > 0 */
    int head;                     /* HEAD: headers only */
    const char *request_id;       /* X-Request-ID; NULL to omit */
    /* RateLimit-Limit, -Remaining, -Reset when rate_limited is 1 */
    int rate_limited;
    long rate_limit;
    long rate_remaining;
    long rate_reset_s;
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
     * A document that only this client may keep (Cache-Control: private):
     * capabilities built from the request's Host, or carrying its índice,
     * which a shared cache keyed without them must not hand to others.
     */
    int private_cache;
    /*
     * 1: the response waited (on HERE): first ask whether the web server
     * hung up meanwhile (its client went away), and write nothing then.
     */
    int check_gone;
};

/* What a request came to, for its access line and its metrics. */
struct outcome {
    int status;
    size_t bytes; /* body bytes the web server took */
    enum cache_status cache;
    enum error_kind error; /* ERROR_NONE: none */
    char detail[320];      /* the log's "error": never the client's */
    /*
     * The log's "aborted": why the connection to the web server was
     * aborted on purpose (a 200 already under way that HERE cut off, so
     * that the client sees it incomplete), e.g. "upstream_stalled"; NULL
     * when it was not.
     */
    const char *aborted;
    /* The exchange with HERE this request led (attempts 0: none). */
    int upstream_status;
    int upstream_attempts;
    double upstream_ms;
    long upstream_http;
    char correlation_id[96];
};

/*
 * An error response, and o filled for the access line: status 0 takes the
 * kind's (labels.h); message (NULL: the kind's words) goes to the client,
 * detail (NULL: none) after it to the log only, under the request id the
 * client has. The client learns what kind of failure it was; addresses,
 * host names and library messages stay in the log.
 */
void response_fail(struct fcgi_out *out, struct outcome *o,
    enum error_kind kind, int status, const char *message, const char *detail,
    const struct response_meta *meta);

/* {"error": message, "status": status} with Content-Type JSON. */
size_t response_error(struct fcgi_out *out, int status, const char *message,
    const struct response_meta *meta);

/* A text document with its Content-Type (Cache-Control: no-store). */
size_t response_text(struct fcgi_out *out, int status, const char *content_type,
    const char *body, const struct response_meta *meta);

/* A JSON document given as text. */
size_t response_json(struct fcgi_out *out, int status, const char *json,
    const struct response_meta *meta);

/*
 * A cached entry: 200 with its body, or 304 when if_none_match matches its
 * ETag. x_cache is HIT or MISS; max_age_s the remaining freshness.
 * *status_out gets the status sent.
 */
size_t response_entry(struct fcgi_out *out, const struct entry *e,
    const char *if_none_match, const char *x_cache, long max_age_s,
    const struct response_meta *meta, int *status_out);

/*
 * The same for a body held elsewhere (a flight that has ended): status
 * with its body, or 304 when if_none_match matches etag ("" for none).
 */
size_t response_body(struct fcgi_out *out, int status, const char *content_type,
    const char *etag, const void *body, size_t body_len,
    const char *if_none_match, const char *x_cache, long max_age_s,
    const struct response_meta *meta, int *status_out);

/*
 * Start a response whose body arrives from HERE in chunks: headers only,
 * with X-Accel-Buffering: no so that NGINX passes each chunk on at once.
 * content_length < 0 when unknown. Returns 0, or -1 when the client is gone.
 */
int response_begin(struct fcgi_out *out, int status, const char *content_type,
    const char *etag, int64_t content_length, const char *x_cache,
    long max_age_s, const struct response_meta *meta);

/*
 * One chunk of body, written at once, unless the web server hung up
 * meanwhile. Returns 0 or -1.
 */
int response_chunk(struct fcgi_out *out, const void *data, size_t len);

/* The end of a streamed response (after its last chunk). 0 or -1. */
int response_end(struct fcgi_out *out);

/* 204 for a CORS preflight. */
void response_preflight(struct fcgi_out *out, const struct response_meta *meta);

/*
 * True once a write to out failed: the web server (the client behind it)
 * went away before the response was out whole.
 */
int response_client_gone(struct fcgi_out *out);

/*
 * A streamed body was cut off after its head went out: tell the web server
 * so that its client sees the response incomplete (fcgi_abort).
 */
void response_abort(struct fcgi_out *out);

/* True when an If-None-Match value matches etag (weak comparison). */
int response_etag_matches(const char *if_none_match, const char *etag);

const char *response_reason(int status);

#endif
