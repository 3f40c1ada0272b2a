#ifndef HEREPROXY_RATELIMIT_H
#define HEREPROXY_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Token buckets keyed by a string (an índice, a client address). A bucket
 * holds at most `burst` tokens and gains `limit` tokens per `period_s`;
 * each request takes one. Buckets live in a bounded table: when it is full
 * the least recently used bucket is forgotten (it comes back full, which
 * errs on the side of serving).
 */

struct rate_spec {
    long limit;                 /* tokens per period; 0: no limit */
    long period_s;
    long burst;                 /* bucket size; defaults to limit */
};

/*
 * Parse "N/second|minute|hour|day" (also s, m, h, d, sec, min), optionally
 * followed by ",burst=M". "" or "0" or "off" means no limit.
 * Returns 0, or -1 with err set.
 */
int rate_spec_parse(const char *text, struct rate_spec *out, char *err,
    size_t errlen);

/* Format a spec back into the form rate_spec_parse reads. */
void rate_spec_format(const struct rate_spec *spec, char *buf, size_t size);

/* What one request was told; the fields feed the RateLimit-* headers. */
struct rate_decision {
    int allowed;
    long limit;                 /* RateLimit-Limit: the bucket size */
    long remaining;             /* RateLimit-Remaining, after this request */
    long reset_s;               /* RateLimit-Reset: until the bucket is full */
    long retry_after_s;         /* when refused: until a token is back */
};

struct ratelimiter;

struct ratelimiter *ratelimiter_new(size_t max_keys);
void ratelimiter_free(struct ratelimiter *rl);

/* Take one token from key's bucket at now_ms (monotonic). */
void ratelimiter_take(struct ratelimiter *rl, const char *key, size_t keylen,
    const struct rate_spec *spec, int64_t now_ms, struct rate_decision *out);

/* Buckets currently held. */
size_t ratelimiter_size(struct ratelimiter *rl);

#endif
