#ifndef HEREPROXY_BREAKER_H
#define HEREPROXY_BREAKER_H

#include <pthread.h>
#include <stdint.h>

/*
 * A circuit breaker for HERE. After `threshold` upstream failures in a
 * row it opens: misses fail fast (or get a stale tile) for `cooldown_ms`.
 * Then one probe goes through; its success closes the breaker, its
 * failure opens it again. Time comes in as an argument.
 */

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

enum breaker_change { BREAKER_SAME, BREAKER_OPENED, BREAKER_CLOSED_AGAIN };

struct breaker {
    pthread_mutex_t lock;
    long threshold; /* 0: never opens */
    long cooldown_ms;
    enum breaker_state state;
    long failures;
    int64_t opened_ms;
    int64_t probe_ms; /* when the probe went, in half-open */
    uint64_t opens;
};

void breaker_init(struct breaker *b, long threshold, long cooldown_ms);
void breaker_cleanup(struct breaker *b);

/*
 * May a request go upstream now? Returns 1, or 0 with the milliseconds
 * until it may try again in *retry_after_ms.
 */
int breaker_allow(struct breaker *b, int64_t now_ms, int64_t *retry_after_ms);

/* Record how an upstream request ended; returns what changed. */
enum breaker_change breaker_record(struct breaker *b, int ok, int64_t now_ms);

enum breaker_state breaker_state(struct breaker *b);
const char *breaker_state_name(enum breaker_state state);

#endif
