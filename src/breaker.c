#include "config.h"

#include "breaker.h"

void
breaker_init(struct breaker *b, long threshold, long cooldown_ms)
{
    pthread_mutex_init(&b->lock, NULL);
    b->threshold = threshold;
    b->cooldown_ms = cooldown_ms;
    b->state = BREAKER_CLOSED;
    b->failures = 0;
    b->opened_ms = 0;
    b->probe_ms = 0;
    b->opens = 0;
}

void
breaker_cleanup(struct breaker *b)
{
    pthread_mutex_destroy(&b->lock);
}

int
breaker_allow(struct breaker *b, int64_t now_ms, int64_t *retry_after_ms)
{
    int allow = 1;

    *retry_after_ms = 0;
    pthread_mutex_lock(&b->lock);
    switch (b->state) {
    case BREAKER_CLOSED: break;
    case BREAKER_OPEN:
        if (now_ms - b->opened_ms >= b->cooldown_ms) {
            b->state = BREAKER_HALF_OPEN;
            b->probe_ms = now_ms;
        } else {
            allow = 0;
            *retry_after_ms = b->cooldown_ms - (now_ms - b->opened_ms);
        }
        break;
    case BREAKER_HALF_OPEN:
        /* One probe at a time; a probe that never reported expires. */
        if (now_ms - b->probe_ms >= b->cooldown_ms) {
            b->probe_ms = now_ms;
        } else {
            allow = 0;
            *retry_after_ms = b->cooldown_ms - (now_ms - b->probe_ms);
        }
        break;
    }
    pthread_mutex_unlock(&b->lock);
    return allow;
}

enum breaker_change
breaker_record(struct breaker *b, int ok, int64_t now_ms)
{
    enum breaker_change change = BREAKER_SAME;

    pthread_mutex_lock(&b->lock);
    if (ok) {
        b->failures = 0;
        if (b->state != BREAKER_CLOSED) {
            b->state = BREAKER_CLOSED;
            change = BREAKER_CLOSED_AGAIN;
        }
    } else if (b->state == BREAKER_HALF_OPEN ||
        (b->state == BREAKER_CLOSED && b->threshold > 0 &&
            ++b->failures >= b->threshold)) {
        b->state = BREAKER_OPEN;
        b->opened_ms = now_ms;
        b->opens++;
        change = BREAKER_OPENED;
    }
    pthread_mutex_unlock(&b->lock);
    return change;
}

enum breaker_state
breaker_state(struct breaker *b)
{
    enum breaker_state s;

    pthread_mutex_lock(&b->lock);
    s = b->state;
    pthread_mutex_unlock(&b->lock);
    return s;
}

const char *
breaker_state_name(enum breaker_state state)
{
    switch (state) {
    case BREAKER_CLOSED: return "closed";
    case BREAKER_OPEN: return "open";
    case BREAKER_HALF_OPEN: return "half_open";
    }
    return "unknown";
}
