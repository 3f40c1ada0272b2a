#ifndef HEREPROXY_SEED_HTTP_H
#define HEREPROXY_SEED_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "seed/tiles.h"

/*
 * The seeder's side of HTTP, pure: the options that go into a tile's
 * URL, checked as the proxy checks them; the URL itself, built as a map
 * client builds it; and what an answer of the proxy means for the run.
 */

#define SEED_URL_MAX 1024
#define SEED_QUERY_MAX 256
#define SEED_TOKEN_MAX 128
#define SEED_MESSAGE_MAX 300

/* Each 1 when the value is one the proxy takes, else 0. */
int seed_resource_valid(const char *s);
int seed_format_valid(const char *s);
/* A style's spelling (the proxy knows which it serves): [a-z0-9._-]{1,64} */
int seed_style_valid(const char *s);
/* 1 to 64 of A-Z a-z 0-9 _ . -, as the proxy's indice. */
int seed_indice_valid(const char *s);
/* 1 to SEED_TOKEN_MAX printable bytes without blanks. */
int seed_token_valid(const char *s);

/*
 * The proxy's tile prefix, e.g. http://maps.example.com/here-proxy: http
 * or https, a host, no query or fragment, printable ASCII. Returns 0, or
 * -1 with a message in err.
 */
int seed_url_check(const char *url, char *err, size_t errlen);

/*
 * The query every tile of the run carries, in the demo page's order:
 * style first, then size, ppi and lang when given (0 or NULL: not
 * sent), indice last (NULL: none). The proxy's cache key is canonical
 * anyway; NGINX's cache layer keys on the query as sent. Returns 0, or
 * -1 when it would not fit.
 */
int seed_query_build(char *buf, size_t size, const char *style, long size_px,
    long ppi, const char *lang, const char *indice);

/*
 * base/resource/mc/z/x/y/format?query. Returns 0, or -1 when it would not
 * fit.
 */
int seed_tile_url(char *buf, size_t size, const char *base,
    const char *resource, const struct seed_tile *t, const char *format,
    const char *query);

/*
 * Retry-After as seconds from now_s: delta-seconds or an HTTP-date (a
 * date in the past is 0). Returns -1 when the value is neither.
 */
long seed_retry_after_parse(const char *value, int64_t now_s);

/* What one exchange with the proxy means for the run. */
enum seed_verdict {
    SEED_V_FETCHED,    /* a tile, fetched from HERE for us */
    SEED_V_CACHED,     /* a tile the proxy (or NGINX) had already */
    SEED_V_FAILED,     /* this tile failed; the run goes on */
    SEED_V_RETRY,      /* may succeed later: retry this tile */
    SEED_V_PAUSE,      /* 429 or 503 with Retry-After: pause, retry it */
    SEED_V_CACHE_ONLY, /* a spent quota or budget: stop */
    SEED_V_REFUSED     /* every tile would get the same: stop */
};

/* One exchange as the transfer ended; strings NULL when absent. */
struct seed_exchange {
    int transport_ok;            /* a whole response came back */
    const char *transport_error; /* else what went wrong */
    long status;
    const char *content_type;
    const char *x_cache;
    const char *x_cache_nginx;
    const char *retry_after;
    const char *body; /* its first body_len bytes, maybe not terminated */
    size_t body_len;
    uint64_t bytes; /* the whole body's length */
    int64_t now_s;  /* wall clock, for a Retry-After date */
};

struct seed_answer {
    enum seed_verdict verdict;
    long wait_s; /* SEED_V_PAUSE: Retry-After, or -1 when none was given */
    /* What went wrong, for a person: the status and the proxy's error. */
    char message[SEED_MESSAGE_MAX];
};

void seed_answer_judge(const struct seed_exchange *x, struct seed_answer *a);

#endif
