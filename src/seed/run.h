#ifndef HEREPROXY_SEED_RUN_H
#define HEREPROXY_SEED_RUN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "seed/tiles.h"

/*
 * A seeding run: tiles asked of the proxy over one libcurl multi handle,
 * at most a few at a time, each answer judged (seed/http.h), counted and
 * shown as progress on stderr.
 */

/* Why a run ended before its last tile; the name goes in the summary. */
/* clang-format off */
#define SEED_STOP_LIST(X)                                                    \
    X(NONE, NULL)                  /* it ran to the end */                  \
    X(SIGNAL, "signal")            /* SIGINT or SIGTERM */                  \
    X(CACHE_ONLY, "cache_only")    /* a spent quota or budget */            \
    X(REFUSED, "refused")          /* 4xx: every tile would get one */      \
    X(WAIT, "wait")                /* Retry-After beyond --max-wait */      \
    X(FAILURES, "failures")        /* too many tiles failed in a row */     \
    X(INPUT, "input")              /* a bad line in the tiles file */       \
    X(ERROR, "error")              /* out of memory, libcurl refused */
/* clang-format on */

/* clang-format off */
enum seed_stop {
#define SEED_STOP_ENUM(id, name) SEED_STOP_##id,
    SEED_STOP_LIST(SEED_STOP_ENUM)
#undef SEED_STOP_ENUM
    SEED_STOP_COUNT
};
/* clang-format on */

/* The summary's name of a stop; NULL for SEED_STOP_NONE. */
const char *seed_stop_name(enum seed_stop s);

/* Where the tiles come from: a box's iterator or a tiles file. */
struct seed_source {
    /* 1: *t is the next tile; 0: no more; -1: err says what is wrong. */
    int (*next)(void *ctx, struct seed_tile *t, char *err, size_t errlen);
    void *ctx;
    uint64_t total; /* 0: not known in advance */
};

struct seed_run_opts {
    const char *base_url; /* checked by seed_url_check, no trailing '/' */
    const char *resource;
    const char *format;
    const char *query; /* seed_query_build */
    const char *token; /* X-Proxy-Token, or NULL */
    int concurrency;   /* transfers at once, at most */
    int retries;       /* per tile, after a 5xx or a network error */
    long max_wait_s;   /* a longer Retry-After stops the run */
    long timeout_ms;   /* per request */
    long progress_ms;  /* a plain progress line this often; 0: none */
    int tty;           /* stderr is a terminal: draw a bar instead */
    volatile sig_atomic_t *signalled; /* set by the signal handler */
};

struct seed_totals {
    uint64_t tiles; /* of the run: the area's, or the lines read */
    uint64_t fetched, cached, failed;
    double seconds;
    enum seed_stop stopped;
};

/*
 * Ask for every tile of src. Returns 0 with *out filled (out->stopped
 * says whether it ended early), or -1 when libcurl could not be set up
 * (said on stderr).
 */
int seed_run(const struct seed_run_opts *o, struct seed_source *src,
    struct seed_totals *out);

#endif
