#ifndef HEREPROXY_LABELS_H
#define HEREPROXY_LABELS_H

/*
 * The labels a request's outcome carries from the handler to the edges:
 * enums inside the proxy, strings only in the response header, the log
 * line and the metrics text. One X-macro list each, as memcached's
 * text_cmd_entries[]: the enum and its names cannot drift apart, and no
 * label is found again by comparing strings.
 */

/*
 * How a tile or metadata request was answered: X-Cache and the log's
 * cache_status; the metrics label is the lower-case name (LIMITED counts
 * as none: it never looked).
 */
/* clang-format off */
#define CACHE_STATUS_LIST(X)                                                 \
    X(HIT, "HIT")              /* fresh, from either tier */                 \
    X(MISS, "MISS")            /* fetched from HERE by this request */       \
    X(STALE, "STALE")          /* stale, revalidated elsewhere */            \
    X(COALESCED, "COALESCED")  /* waited on another request's fetch */       \
    X(NONE, "NONE")            /* no cache lookup */                         \
    X(LIMITED, "LIMITED")      /* refused by a rate limit */
/* clang-format on */

/* clang-format off */
enum cache_status {
#define LABELS_ENUM(id, header) CACHE_STATUS_##id,
    CACHE_STATUS_LIST(LABELS_ENUM)
#undef LABELS_ENUM
    CACHE_STATUS_COUNT
};
/* clang-format on */

const char *cache_status_header(enum cache_status s);

/*
 * What went wrong, for the client's status and the metrics' kind label:
 * one table from kind to HTTP status (0: the caller's, e.g. HERE's own
 * 4xx, or the parser's 400/404/405/414) and to the client's message when
 * the kind says it all (NULL: the caller words it).
 */
/* clang-format off */
#define ERROR_KIND_LIST(X)                                                     \
    X(NONE, "none", 0, NULL)                                                   \
    X(BAD_REQUEST, "bad_request", 400, NULL)                                   \
    X(NOT_FOUND, "not_found", 404, "no such endpoint")                         \
    X(METHOD, "method", 405, NULL)                                             \
    X(UPSTREAM_3XX, "upstream_3xx", 502, NULL)                                 \
    X(UPSTREAM_4XX, "upstream_4xx", 0, NULL)                                   \
    X(UPSTREAM_5XX, "upstream_5xx", 502, NULL)                                 \
    X(UPSTREAM_BAD_RESPONSE, "upstream_bad_response", 502,                     \
        "HERE sent an unexpected Content-Type")                                \
    X(UPSTREAM_UNREACHABLE, "upstream_unreachable", 502, "HERE unreachable")   \
    X(UPSTREAM_TIMEOUT, "upstream_timeout", 504, "HERE timed out")             \
    X(BUSY, "busy", 503, "too many requests to HERE in flight")                \
    X(BREAKER_OPEN, "breaker_open", 503, NULL)                                 \
    X(CACHE_ONLY, "cache_only", 503, NULL)                                     \
    X(UPSTREAM_AUTH, "upstream_auth", 503,                                     \
        "no valid HERE token: the proxy cannot authenticate to HERE")          \
    X(UNAUTHORIZED, "unauthorized", 401, NULL)                                 \
    X(FORBIDDEN, "forbidden", 403, NULL)                                       \
    X(RATE_LIMITED, "rate_limited", 429, NULL)                                 \
    X(INTERNAL, "internal", 500, "out of memory")                              \
    X(OTHER, "other", 0, NULL)
/* clang-format on */

/* clang-format off */
enum error_kind {
#define LABELS_ENUM(id, name, status, message) ERROR_##id,
    ERROR_KIND_LIST(LABELS_ENUM)
#undef LABELS_ENUM
    ERROR_KIND_COUNT
};
/* clang-format on */

const char *error_kind_name(enum error_kind k);
/* The status a kind answers with, or fallback when the table has 0. */
int error_kind_status(enum error_kind k, int fallback);
/* The client's message for a kind, or NULL when the caller words it. */
const char *error_kind_message(enum error_kind k);

/*
 * How an exchange with HERE ended, for hereproxy_upstream_requests_total:
 * the label, and whether a call reached the network (refusals before a
 * call are counted, not timed).
 */
/* clang-format off */
#define UPSTREAM_LABEL_LIST(X)                                                 \
    X(OK, "ok", 1)                                                             \
    X(NOT_MODIFIED, "not_modified", 1)                                         \
    X(HTTP_ERROR, "http_error", 1)                                             \
    X(CONNECT, "connect", 1)                                                   \
    X(TLS, "tls", 1)                                                           \
    X(TIMEOUT, "timeout", 1)                                                   \
    X(STALLED, "stalled", 1)                                                   \
    X(TOO_BIG, "too_big", 1)                                                   \
    X(BROKEN, "broken", 1)                                                     \
    X(BUSY, "busy", 0)                                                         \
    X(BREAKER_OPEN, "breaker_open", 0)                                         \
    X(CACHE_ONLY, "cache_only", 0)                                             \
    X(AUTH, "auth", 0)                                                         \
    X(BAD_RESPONSE, "bad_response", 1)
/* clang-format on */

/* clang-format off */
enum upstream_label {
#define LABELS_ENUM(id, name, called) UPSTREAM_LABEL_##id,
    UPSTREAM_LABEL_LIST(LABELS_ENUM)
#undef LABELS_ENUM
    UPSTREAM_LABEL_COUNT
};
/* clang-format on */

const char *upstream_label_name(enum upstream_label l);
int upstream_label_called(enum upstream_label l);

#endif
