#ifndef HEREPROXY_UPSTREAM_H
#define HEREPROXY_UPSTREAM_H

#include <stddef.h>

#include "settings.h"
#include "util.h"

/*
 * HERE over libcurl. Easy handles are pooled and reused across requests;
 * a share handle spreads DNS, TLS sessions and connections between them.
 * HTTP/2 is negotiated by ALPN over TLS; certificates are always checked.
 */

struct upstream;

enum upstream_outcome {
    UPSTREAM_OK,          /* an HTTP response arrived whole */
    UPSTREAM_CONNECT,     /* could not connect (or resolve) */
    UPSTREAM_TLS,         /* TLS handshake or certificate failure */
    UPSTREAM_TIMEOUT,     /* connect or total timeout */
    UPSTREAM_TOO_BIG,     /* body over UPSTREAM_MAX_BYTES */
    UPSTREAM_BROKEN       /* reset, truncated, protocol error */
};

struct upstream_response {
    enum upstream_outcome outcome;
    long status;
    long http_version;            /* 10, 11, 20, or 0 */
    char content_type[128];
    char etag[256];
    char cache_control[256];
    char correlation_id[96];
    struct dynbuf body;
    double elapsed_ms;
    char error[256];              /* curl's words, without the URL */
};

/* The settings are read at creation; they must outlive the upstream. */
struct upstream *upstream_new(const struct settings *cfg, char *err,
    size_t errlen);
void upstream_free(struct upstream *up);

/*
 * GET HERE_BASE_URL/path_and_query with the API key appended. Blocks until
 * done. Fills *resp (call upstream_response_cleanup after). Returns 0 when
 * an HTTP response arrived (resp->status says which), -1 otherwise
 * (resp->outcome says why).
 */
int upstream_fetch(struct upstream *up, const char *path_and_query,
    int has_query, struct upstream_response *resp);

void upstream_response_cleanup(struct upstream_response *resp);

const char *upstream_http_name(long http_version);

#endif
