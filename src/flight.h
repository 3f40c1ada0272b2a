#ifndef HEREPROXY_FLIGHT_H
#define HEREPROXY_FLIGHT_H

#include <stddef.h>
#include <stdint.h>

/*
 * A flight is one upstream fetch that any number of requests for the same
 * cache key read at once (request coalescing). The upstream engine writes
 * into it: first the response head, then body chunks, then the end. Every
 * reader, the one that started it included, waits on it and sends the
 * body to its own client, whole once it has arrived or chunk by chunk as
 * it arrives. The body is kept in blocks that never move, and what is
 * published is never written again, so readers take no lock.
 */

struct flight;
struct flights;

/* The body is kept in blocks of this size. */
#define FLIGHT_BLOCK_SIZE (64 * 1024)

enum flight_end {
    FLIGHT_RUNNING,
    FLIGHT_OK,    /* the whole body arrived */
    FLIGHT_FAILED /* no usable response, or cut off part way */
};

/* What the upstream answered, published once. */
struct flight_head {
    int status;
    int64_t content_length; /* -1 when not announced */
    /*
     * 1: published with the whole body appended already (the end follows
     * at once): a reader waits for the end and writes it in one go. 0: the
     * body streams (larger than HERE_BUFFER_MAX_BYTES).
     */
    int whole;
    char content_type[128];
    char etag[256];
    char cache_control[256];
    char correlation_id[96];
};

/* How it went, published at the end (also on success). */
struct flight_result {
    int outcome; /* enum upstream_outcome */
    int attempts;
    int status; /* last HTTP status, 0 when none */
    long http_version;
    double upstream_ms;
    int retry_after_s; /* for a 503 to the client, or 0 */
    int stalls;        /* attempts abandoned by HERE_ATTEMPT_TIMEOUT_MS */
    char error[256];
};

struct flights *flights_new(void);
/* All flights must have been released. */
void flights_free(struct flights *reg);

/*
 * The running flight for key, or a new one. Returns it referenced;
 * *leader is 1 when it was created by this call: the caller must then make
 * something fill it (upstream, or another tier) and call flight_end.
 */
struct flight *flight_join(
    struct flights *reg, const char *key, size_t keylen, int *leader);

/*
 * The running flight for key, referenced as one more reader, or NULL:
 * never starts one (a request that would only follow looks here before
 * asking memcached what the leader is already fetching).
 */
struct flight *flight_join_running(
    struct flights *reg, const char *key, size_t keylen);

/* Take another reference (for the engine while it fills f). */
struct flight *flight_ref(struct flights *reg, struct flight *f);

/*
 * Drop a reference. The registry forgets the flight when it ends, so that
 * later requests start afresh (and find the cache filled).
 */
void flight_release(struct flights *reg, struct flight *f);

/* Writer side. */
void flight_set_head(struct flight *f, const struct flight_head *head);
/* Returns 0, or -1 when memory ran out (the flight then fails). */
int flight_append(struct flight *f, const void *data, size_t len);
/*
 * Drop the body appended so far, for another attempt. Only before the head
 * is published: no reader looks at the body before it has the head.
 */
void flight_discard_body(struct flight *f);
/*
 * The transfer is over. The flight stays joinable (late readers get the
 * whole body at once) until its leader retires it, after storing the
 * result in the cache, so that no request falls between the two.
 */
void flight_end(
    struct flight *f, enum flight_end end, const struct flight_result *result);

/*
 * A body appended whole before its head: publish the head (head->whole
 * set) and a FLIGHT_OK end together, so that a reader waiting for the head
 * wakes once, with the end there too.
 */
void flight_end_whole(struct flight *f, const struct flight_head *head,
    const struct flight_result *result);

/*
 * Call fn(arg) when the flight ends (at once if it has): from the thread
 * that ends it, so fn must only wake someone; it may be called twice.
 * One hook per flight.
 */
typedef void flight_end_fn(void *arg);
void flight_notify_end(struct flight *f, flight_end_fn *fn, void *arg);

/* Leader: forget the flight in the registry; later requests start anew. */
void flight_retire(struct flights *reg, struct flight *f);

/*
 * Wait until the flight has ended, or until deadline_ms on the monotonic
 * clock (< 0: no deadline); returns how it ended (FLIGHT_RUNNING: the
 * deadline came first).
 */
enum flight_end flight_wait_end(struct flight *f, int64_t deadline_ms);

/*
 * A follower's wait: until the flight has ended, or its leader streams it
 * (flight_stream: the body is slow or large), or deadline_ms. Returns the
 * end so far. One wake-up for each of a storm's followers, not one per
 * chunk.
 */
enum flight_end flight_wait_whole(struct flight *f, int64_t deadline_ms);

/* The leader: it streams the body, and so may the followers. */
void flight_stream(struct flight *f);

/*
 * Reader side. Wait for the head (or the end without one), at most until
 * deadline_ms on the monotonic clock. Returns 0 with *head filled, or -1
 * when the flight failed or timed out (*result filled when it ended).
 */
int flight_wait_head(struct flight *f, int64_t deadline_ms,
    struct flight_head *head, struct flight_result *result);

/*
 * The next bytes at offset: waits until there are some, or the end.
 * Returns a pointer valid while the flight is referenced and sets *len
 * (0 at the end); *end tells how it ended once no bytes remain.
 */
const void *flight_read(
    struct flight *f, size_t offset, size_t *len, enum flight_end *end);

/*
 * The whole body, without waiting, when the flight has ended well and the
 * body sits in one block: a reader that comes after the end (most of a
 * storm's followers) writes it in one go. NULL otherwise. The pointer is
 * valid while the flight is referenced.
 */
const void *flight_done_body(struct flight *f, size_t *len);

/* After a FLIGHT_OK end: the whole body copied into buf (body_len bytes). */
size_t flight_body_len(struct flight *f);
void flight_copy_body(struct flight *f, void *buf);

void flight_result(struct flight *f, struct flight_result *out);

/* Readers attached over the flight's life, the first included. */
int flight_readers(struct flight *f);

#endif
