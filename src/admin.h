#ifndef HEREPROXY_ADMIN_H
#define HEREPROXY_ADMIN_H

#include "request.h"

/*
 * The operators' endpoints: GET /healthz, GET /readyz, GET /metrics (JSON
 * per índice), GET /metrics/prometheus (METRICS_ALLOW only) and POST
 * /admin/purge (HEREPROXY_ADMIN_TOKEN). The shipped web server configs
 * keep all but /healthz off the public side.
 */

struct handler;
struct fcgi_out;
struct outcome;
struct response_meta;
struct settings;

/* Answer req (one of the routes above), filling o for the access line. */
void admin_serve(struct handler *h, const struct settings *cfg,
    const struct tile_req *req, const struct request_params *rp,
    struct fcgi_out *out, struct response_meta *meta, struct outcome *o);

#endif
