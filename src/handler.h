#ifndef HEREPROXY_HANDLER_H
#define HEREPROXY_HANDLER_H

#include "cache.h"
#include "request.h"
#include "settings.h"
#include "upstream.h"

/*
 * One request, start to end: parse, answer from cache or HERE, write the
 * response, log one line. Shared state is read-only here or owned by the
 * cache and upstream modules, so any number of workers may call it.
 */

struct FCGX_Stream;

struct handler {
    const struct settings *cfg;
    struct cache *cache;
    struct upstream *upstream;
    struct request_policy policy;
};

/* envp: the request's FastCGI parameters. */
void handler_serve(struct handler *h, char *const *envp,
    struct FCGX_Stream *out);

#endif
