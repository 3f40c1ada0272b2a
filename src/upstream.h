#ifndef HEREPROXY_UPSTREAM_H
#define HEREPROXY_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "flight.h"
#include "settings.h"

/*
 * The upstream engine: one thread drives every transfer to HERE through one
 * curl multi handle, so concurrent misses share a few HTTP/2 connections
 * (multiplexed streams, negotiated by ALPN; certificates always checked).
 * Each transfer fills a flight. The engine retries what can succeed later
 * (connect errors, timeouts, stalls, 5xx, 429 with Retry-After) with capped
 * exponential backoff and full jitter, only before the response head has
 * been published and within the HERE_TIMEOUT_MS deadline, and caps the
 * transfers in progress at HERE_MAX_INFLIGHT (the rest queue, for at most
 * HERE_QUEUE_TIMEOUT_MS).
 *
 * A response whose body fits HERE_BUFFER_MAX_BYTES (every tile) is
 * published only once it is whole, head and body together, so that an
 * attempt HERE stalls or breaks off part way can still be retried: no
 * reader has seen any of it. A larger body is published as it comes
 * (streamed), and can no longer be retried once it has started. An
 * attempt that gets no byte for HERE_ATTEMPT_TIMEOUT_MS, or takes longer
 * than that in all while it could still be retried, is abandoned.
 */

struct upstream;
struct flights;
struct hereauth;

enum upstream_outcome {
    UPSTREAM_OK,          /* an HTTP response arrived whole */
    UPSTREAM_CONNECT,     /* could not connect (or resolve) */
    UPSTREAM_TLS,         /* TLS handshake or certificate failure */
    UPSTREAM_TIMEOUT,     /* the deadline passed */
    UPSTREAM_STALLED,     /* HERE_ATTEMPT_TIMEOUT_MS without progress */
    UPSTREAM_TOO_BIG,     /* body over UPSTREAM_MAX_BYTES */
    UPSTREAM_BROKEN,      /* reset, truncated, protocol error */
    UPSTREAM_BUSY,        /* waited too long for an in-flight slot */
    UPSTREAM_HTTP_ERROR,  /* 5xx or 429 after the last attempt */
    UPSTREAM_STOPPED,     /* the engine is shutting down */
    UPSTREAM_SHED,        /* not asked: the circuit breaker is open */
    UPSTREAM_CACHE_ONLY,  /* not asked: cache-only mode (quota, budget) */
    UPSTREAM_AUTH,        /* not asked: no valid HERE token (hereauth.h) */
    UPSTREAM_BAD_RESPONSE /* a 200 whose Content-Type is not allowed */
};

/*
 * What a 200 from HERE may be: a tile is passed on and cached only as
 * image/png or image/jpeg, a metadata document only as application/json.
 * Anything else (text/html, image/svg+xml, none) ends the transfer at its
 * head: the flight fails as UPSTREAM_BAD_RESPONSE, so no reader of it ever
 * gets the body and nothing is cached.
 */
enum upstream_expect { UPSTREAM_EXPECT_IMAGE, UPSTREAM_EXPECT_JSON };

/*
 * The canonical media type ("image/png", "image/jpeg", "application/json")
 * of a Content-Type value when expect allows it, else NULL. Only the media
 * type counts (before any ';', trimmed, any case); parameters are dropped.
 * Pure, for tests.
 */
const char *upstream_media_type(const char *value, enum upstream_expect expect);

/* What upstream_header_value found in a header line. */
enum upstream_header {
    UPSTREAM_HEADER_OTHER,    /* another header */
    UPSTREAM_HEADER_KEPT,     /* the value is in out */
    UPSTREAM_HEADER_TOO_LONG, /* does not fit out: dropped whole, out "" */
    UPSTREAM_HEADER_BAD_BYTES /* a control byte inside: dropped, out "" */
};

/*
 * If line (len bytes, CRLF included) is header `name` (any case), its
 * value without surrounding blanks goes into out (outsize bytes with the
 * NUL), or out is "" when the value does not fit or holds a control byte:
 * never a value cut short. *value_len (may be NULL) gets the value's
 * length. Pure, for tests.
 */
enum upstream_header upstream_header_value(const char *line, size_t len,
    const char *name, char *out, size_t outsize, size_t *value_len);

struct upstream_stats {
    uint64_t requests; /* attempts started */
    uint64_t retries;
    uint64_t inflight;
    uint64_t queued;
    uint64_t bytes;
};

/*
 * Settings are read at creation and must outlive the engine; so must auth,
 * which says what each attempt sends to HERE (an API key or a bearer
 * token: hereauth.h).
 */
struct upstream *upstream_new(const struct settings *cfg,
    struct flights *flights, struct hereauth *auth, char *err, size_t errlen);
/* Ends queued and running transfers (their flights fail), then frees. */
void upstream_free(struct upstream *up);

/*
 * Start fetching HERE_BASE_URL/path_and_query into flight f, which the
 * engine references until it calls flight_end. Each attempt takes the
 * credential in force when it starts: the API key appended as apiKey, or
 * the token in an Authorization: Bearer header. Without a token the job
 * waits for one (within HERE_TIMEOUT_MS) while one is asked for, and ends
 * as UPSTREAM_AUTH when the token endpoint failed. A 401 to a credential
 * that was replaced or refused since is tried once more with the new one.
 * if_none_match, when not NULL, makes it a conditional request. expect
 * says which Content-Types a 200 may have; the published head carries the
 * canonical one. Returns 0, or -1 when the engine is stopping (the flight
 * is ended as failed).
 */
int upstream_submit(struct upstream *up, struct flight *f,
    const char *path_and_query, int has_query, const char *if_none_match,
    enum upstream_expect expect);

void upstream_stats(struct upstream *up, struct upstream_stats *out);

const char *upstream_http_name(long http_version);
const char *upstream_outcome_name(int outcome);

/*
 * Backoff before attempt number `attempt` (1 = the first retry): a random
 * time in [0, min(max_ms, base_ms * 2^(attempt-1))]; `rnd` is a random
 * 32-bit number. Pure, for tests.
 */
int64_t upstream_backoff_ms(
    int attempt, long base_ms, long max_ms, uint32_t rnd);

/* What the watchdog of an attempt finds (upstream_stall_check). */
enum upstream_stall {
    UPSTREAM_STALL_NONE, /* it may go on */
    UPSTREAM_STALL_IDLE, /* no byte from HERE for the attempt timeout */
    UPSTREAM_STALL_SLOW  /* retryable, and longer than that in all */
};

/*
 * The watchdog of one attempt at now (ms on the monotonic clock): it
 * started at started_ms, HERE last sent a byte at progress_ms (or the
 * connection came up; started_ms before that), and retryable says that
 * nothing of it was published yet. An attempt is abandoned after
 * timeout_ms without progress, or, while it can still be retried, after
 * timeout_ms in all. With UPSTREAM_STALL_NONE, *next_ms is how long until
 * it must be looked at again. Pure, for tests.
 */
enum upstream_stall upstream_stall_check(int64_t now, int64_t started_ms,
    int64_t progress_ms, int retryable, long timeout_ms, int64_t *next_ms);

/*
 * Whether a response head announcing content_length (-1: not announced)
 * is kept back until its body is whole: bodies up to buffer_max bytes
 * are; a body without a length is kept back until it passes buffer_max.
 * Pure, for tests.
 */
int upstream_holds(int64_t content_length, uint64_t buffer_max);

/*
 * Retry-After (delay-seconds or HTTP-date, judged against now) in seconds,
 * at most a week, or -1 when unusable. Pure, for tests.
 */
long upstream_parse_retry_after(const char *value, time_t now);

#endif
