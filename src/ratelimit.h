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
    long limit; /* tokens per period; 0: no limit */
    long period_s;
    long burst; /* bucket size; defaults to limit */
};

/*
 * Parse "N/second|minute|hour|day" (also s, m, h, d, sec, min), optionally
 * followed by ",burst=M". "" or "0" or "off" means no limit.
 * Returns 0, or -1 with err set.
 */
int rate_spec_parse(
    const char *text, struct rate_spec *out, char *err, size_t errlen);

/* Format a spec back into the form rate_spec_parse reads. */
void rate_spec_format(const struct rate_spec *spec, char *buf, size_t size);

/* Per-índice specs that replace the default one. */
#define RATE_NAME_MAX 64

struct rate_override {
    char name[RATE_NAME_MAX + 1];
    struct rate_spec spec;
};

struct rate_overrides {
    size_t n;
    struct rate_override *items; /* owned; rate_overrides_free */
};

/*
 * Parse "name:spec,name:spec": names are 1..64 of [A-Za-z0-9_.-] (an
 * índice), specs as rate_spec_parse reads them; a ",burst=M" item belongs
 * to the spec before it ("a:10/second,burst=20,b:off"). Spaces around
 * items are ignored; a name given twice is an error. With allow_burst 0 a
 * burst is refused (quotas count, they have no bucket). "" is an empty
 * list. Returns 0 with *out filled (free with rate_overrides_free), or -1
 * with err set and *out empty.
 */
int rate_overrides_parse(const char *text, int allow_burst,
    struct rate_overrides *out, char *err, size_t errlen);

void rate_overrides_free(struct rate_overrides *o);

/* The spec for name: its override, else def. */
const struct rate_spec *rate_overrides_find(const struct rate_overrides *o,
    const char *name, const struct rate_spec *def);

/* What one request was told; the fields feed the RateLimit-* headers. */
struct rate_decision {
    int allowed;
    long limit;         /* RateLimit-Limit: the bucket size */
    long remaining;     /* RateLimit-Remaining, after this request */
    long reset_s;       /* RateLimit-Reset: until the bucket is full */
    long retry_after_s; /* when refused: until a token is back */
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
