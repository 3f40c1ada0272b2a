#include "config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "flight.h"
#include "siphash.h"
#include "util.h"

#define REGISTRY_BUCKETS 256

struct block {
    struct block *next;
    size_t used;
    unsigned char data[FLIGHT_BLOCK_SIZE];
};

/*
 * One writer (the upstream engine, or a leader filling from another tier)
 * publishes the head, body bytes and the end with release stores; any
 * number of readers load them without a lock. A storm's readers used to
 * wake together on a condition variable and then queue for its mutex, one
 * context switch after another; here they sleep on a futex word bumped at
 * each publication, each on the kinds of news it waits for.
 */
struct flight {
    struct flight *chain; /* registry bucket */
    int refs;             /* guarded by the registry lock */
    int registered;
    atomic_int readers;
    _Atomic uint32_t changes; /* futex word: one more per publication */
    atomic_int sleepers;      /* readers in FUTEX_WAIT: wake only then */
    atomic_int has_head;
    atomic_int streaming;    /* the leader streams: followers too */
    struct flight_head head; /* written once, before has_head */
    atomic_int ended;        /* flight_end was called (writer side) */
    flight_end_fn *end_fn;   /* flight_notify_end: written before */
    void *end_arg;           /* end_hook is set */
    atomic_int end_hook;
    atomic_int end;              /* enum flight_end */
    struct flight_result result; /* written once, before end */
    struct block *first, *last;  /* linked before body_len covers them */
    _Atomic size_t body_len;     /* bytes published so far */
    uint64_t hash;
    size_t keylen;
    char key[];
};

struct flights {
    pthread_mutex_t lock;
    struct flight *buckets[REGISTRY_BUCKETS];
};

struct flights *
flights_new(void)
{
    struct flights *reg = calloc(1, sizeof(*reg));

    if (reg != NULL)
        pthread_mutex_init(&reg->lock, NULL);
    return reg;
}

void
flights_free(struct flights *reg)
{
    if (reg == NULL)
        return;
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

static struct flight **
bucket(struct flights *reg, uint64_t hash)
{
    return &reg->buckets[hash % REGISTRY_BUCKETS];
}

static void
unregister(struct flights *reg, struct flight *f)
{
    struct flight **slot = bucket(reg, f->hash);

    for (; *slot != NULL; slot = &(*slot)->chain) {
        if (*slot == f) {
            *slot = f->chain;
            break;
        }
    }
    f->registered = 0;
}

static struct flight *
flight_new(const char *key, size_t keylen, uint64_t hash)
{
    struct flight *f = calloc(1, sizeof(*f) + keylen + 1);

    if (f == NULL)
        return NULL;
    memcpy(f->key, key, keylen);
    f->keylen = keylen;
    f->hash = hash;
    atomic_init(&f->end, FLIGHT_RUNNING);
    f->head.content_length = -1;
    return f;
}

static void
flight_destroy(struct flight *f)
{
    struct block *b = f->first;

    while (b != NULL) {
        struct block *next = b->next;
        free(b);
        b = next;
    }
    free(f);
}

/* The registered flight for key, as one more reader; reg->lock held. */
static struct flight *
find_locked(struct flights *reg, const char *key, size_t keylen, uint64_t hash)
{
    struct flight *f;

    for (f = *bucket(reg, hash); f != NULL; f = f->chain) {
        if (f->hash == hash && f->keylen == keylen &&
            memcmp(f->key, key, keylen) == 0) {
            f->refs++;
            atomic_fetch_add_explicit(&f->readers, 1, memory_order_relaxed);
            return f;
        }
    }
    return NULL;
}

struct flight *
flight_join(struct flights *reg, const char *key, size_t keylen, int *leader)
{
    uint64_t hash = siphash_keyed(key, keylen);
    struct flight *f;

    *leader = 0;
    pthread_mutex_lock(&reg->lock);
    if ((f = find_locked(reg, key, keylen, hash)) == NULL &&
        (f = flight_new(key, keylen, hash)) != NULL) {
        f->refs = 1;
        atomic_store_explicit(&f->readers, 1, memory_order_relaxed);
        f->registered = 1;
        f->chain = *bucket(reg, hash);
        *bucket(reg, hash) = f;
        *leader = 1;
    }
    pthread_mutex_unlock(&reg->lock);
    return f;
}

struct flight *
flight_join_running(struct flights *reg, const char *key, size_t keylen)
{
    uint64_t hash = siphash_keyed(key, keylen);
    struct flight *f;

    pthread_mutex_lock(&reg->lock);
    f = find_locked(reg, key, keylen, hash);
    pthread_mutex_unlock(&reg->lock);
    return f;
}

struct flight *
flight_ref(struct flights *reg, struct flight *f)
{
    pthread_mutex_lock(&reg->lock);
    f->refs++;
    pthread_mutex_unlock(&reg->lock);
    return f;
}

void
flight_release(struct flights *reg, struct flight *f)
{
    int last;

    if (f == NULL)
        return;
    pthread_mutex_lock(&reg->lock);
    last = --f->refs == 0;
    if (last && f->registered)
        unregister(reg, f);
    pthread_mutex_unlock(&reg->lock);
    if (last)
        flight_destroy(f);
}

/* What a publication brings: readers sleep until the kind they wait for. */
#define NEWS_HEAD 1u
#define NEWS_DATA 2u
#define NEWS_END 4u
#define NEWS_STREAM 8u

static void
publish(struct flight *f, unsigned news)
{
    /* Sequentially consistent with the sleepers count in await(). */
    atomic_fetch_add(&f->changes, 1);
    if (atomic_load(&f->sleepers) > 0)
        syscall(SYS_futex, &f->changes, FUTEX_WAKE_BITSET_PRIVATE, INT_MAX,
            NULL, NULL, news);
}

/*
 * Sleep while the flight is as it was when changes read seen, until news
 * of a kind in mask, or deadline_ms on the monotonic clock (< 0: none).
 * Returns early on other news or a signal: callers look again and loop.
 */
static void
await(struct flight *f, uint32_t seen, unsigned mask, int64_t deadline_ms)
{
    struct timespec ts, *tsp = NULL;

    if (deadline_ms >= 0) {
        util_ms_timespec(deadline_ms, &ts);
        tsp = &ts;
    }
    atomic_fetch_add(&f->sleepers, 1);
    /* FUTEX_WAIT_BITSET's timeout is absolute, on CLOCK_MONOTONIC. */
    syscall(SYS_futex, &f->changes, FUTEX_WAIT_BITSET_PRIVATE, seen, tsp, NULL,
        mask);
    atomic_fetch_sub(&f->sleepers, 1);
}

static enum flight_end
end_of(struct flight *f)
{
    return (enum flight_end)atomic_load_explicit(&f->end, memory_order_acquire);
}

void
flight_set_head(struct flight *f, const struct flight_head *head)
{
    if (atomic_load_explicit(&f->has_head, memory_order_relaxed))
        return; /* published once: readers copy it without a lock */
    f->head = *head;
    atomic_store_explicit(&f->has_head, 1, memory_order_release);
    publish(f, NEWS_HEAD);
}

int
flight_append(struct flight *f, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t published = atomic_load_explicit(&f->body_len, memory_order_relaxed);

    while (len > 0) {
        struct block *b = f->last;
        size_t n;

        if (b == NULL || b->used == FLIGHT_BLOCK_SIZE) {
            if ((b = malloc(sizeof(*b))) == NULL)
                return -1;
            b->next = NULL;
            b->used = 0;
            /* Readers follow links only as far as body_len reaches. */
            if (f->last != NULL)
                f->last->next = b;
            else
                f->first = b;
            f->last = b;
        }
        n = FLIGHT_BLOCK_SIZE - b->used;
        if (n > len)
            n = len;
        memcpy(b->data + b->used, p, n);
        b->used += n;
        published += n;
        p += n;
        len -= n;
    }
    atomic_store_explicit(&f->body_len, published, memory_order_release);
    publish(f, NEWS_DATA);
    return 0;
}

void
flight_discard_body(struct flight *f)
{
    struct block *b = f->first;

    if (atomic_load_explicit(&f->has_head, memory_order_relaxed))
        return; /* published: a reader may be reading it */
    while (b != NULL) {
        struct block *next = b->next;
        free(b);
        b = next;
    }
    f->first = f->last = NULL;
    atomic_store_explicit(&f->body_len, 0, memory_order_release);
}

void
flight_retire(struct flights *reg, struct flight *f)
{
    pthread_mutex_lock(&reg->lock);
    if (f->registered)
        unregister(reg, f);
    pthread_mutex_unlock(&reg->lock);
}

enum flight_end
flight_wait_end(struct flight *f, int64_t deadline_ms)
{
    for (;;) {
        uint32_t seen = atomic_load(&f->changes);
        enum flight_end end = end_of(f);

        if (end != FLIGHT_RUNNING ||
            (deadline_ms >= 0 && util_mono_ms() >= deadline_ms))
            return end;
        await(f, seen, NEWS_END, deadline_ms);
    }
}

void
flight_stream(struct flight *f)
{
    if (atomic_exchange(&f->streaming, 1) == 0)
        publish(f, NEWS_STREAM);
}

enum flight_end
flight_wait_whole(struct flight *f, int64_t deadline_ms)
{
    for (;;) {
        uint32_t seen = atomic_load(&f->changes);
        enum flight_end end = end_of(f);

        if (end != FLIGHT_RUNNING || atomic_load(&f->streaming) ||
            util_mono_ms() >= deadline_ms)
            return end;
        await(f, seen, NEWS_END | NEWS_STREAM, deadline_ms);
    }
}

/* The end, and with head (not NULL) the head too: one wake-up for both. */
static void
finish(struct flight *f, const struct flight_head *head, enum flight_end end,
    const struct flight_result *result)
{
    unsigned news = NEWS_END;

    if (atomic_exchange(&f->ended, 1))
        return; /* ended once: readers copy the result without a lock */
    if (head != NULL &&
        !atomic_load_explicit(&f->has_head, memory_order_relaxed)) {
        f->head = *head;
        atomic_store_explicit(&f->has_head, 1, memory_order_release);
        news |= NEWS_HEAD;
    }
    if (result != NULL)
        f->result = *result;
    atomic_store(&f->end, end);
    publish(f, news);
    /* Sequentially consistent with flight_notify_end: one of us calls. */
    if (atomic_load(&f->end_hook))
        f->end_fn(f->end_arg);
}

void
flight_end(
    struct flight *f, enum flight_end end, const struct flight_result *result)
{
    finish(f, NULL, end, result);
}

void
flight_end_whole(struct flight *f, const struct flight_head *head,
    const struct flight_result *result)
{
    finish(f, head, FLIGHT_OK, result);
}

void
flight_notify_end(struct flight *f, flight_end_fn *fn, void *arg)
{
    f->end_fn = fn;
    f->end_arg = arg;
    atomic_store(&f->end_hook, 1);
    if (atomic_load(&f->end) != FLIGHT_RUNNING)
        fn(arg); /* ended already (fn may run twice: it only wakes) */
}

int
flight_wait_head(struct flight *f, int64_t deadline_ms,
    struct flight_head *head, struct flight_result *result)
{
    enum flight_end end;

    for (;;) {
        uint32_t seen = atomic_load(&f->changes);

        if (atomic_load_explicit(&f->has_head, memory_order_acquire)) {
            *head = f->head;
            return 0;
        }
        if ((end = end_of(f)) != FLIGHT_RUNNING ||
            util_mono_ms() >= deadline_ms)
            break;
        await(f, seen, NEWS_HEAD | NEWS_END, deadline_ms);
    }
    if (result != NULL) {
        if (end != FLIGHT_RUNNING) {
            *result = f->result;
        } else {
            memset(result, 0, sizeof(*result));
            util_strlcpy(result->error, "timed out waiting for HERE",
                sizeof(result->error));
        }
    }
    return -1;
}

/* The block holding offset, and how many published bytes it has there. */
static const void *
locate(struct flight *f, size_t offset, size_t published, size_t *len)
{
    struct block *b = f->first;
    size_t start = 0;

    while (offset - start >= FLIGHT_BLOCK_SIZE) {
        b = b->next;
        start += FLIGHT_BLOCK_SIZE;
    }
    *len = published - start < FLIGHT_BLOCK_SIZE
        ? published - offset
        : start + FLIGHT_BLOCK_SIZE - offset;
    return b->data + (offset - start);
}

const void *
flight_read(struct flight *f, size_t offset, size_t *len, enum flight_end *end)
{
    *len = 0;
    for (;;) {
        uint32_t seen = atomic_load(&f->changes);
        /* The end first: once it is seen, body_len is final. */
        enum flight_end e = end_of(f);
        size_t published =
            atomic_load_explicit(&f->body_len, memory_order_acquire);

        *end = e;
        if (published > offset)
            return locate(f, offset, published, len);
        if (e != FLIGHT_RUNNING)
            return NULL;
        await(f, seen, NEWS_DATA | NEWS_END, -1);
    }
}

const void *
flight_done_body(struct flight *f, size_t *len)
{
    size_t published;

    *len = 0;
    if (end_of(f) != FLIGHT_OK)
        return NULL;
    published = atomic_load_explicit(&f->body_len, memory_order_acquire);
    if (published > FLIGHT_BLOCK_SIZE)
        return NULL;
    *len = published;
    return published > 0 ? (const void *)f->first->data : (const void *)"";
}

size_t
flight_body_len(struct flight *f)
{
    return atomic_load_explicit(&f->body_len, memory_order_acquire);
}

void
flight_copy_body(struct flight *f, void *buf)
{
    unsigned char *out = buf;
    size_t left = atomic_load_explicit(&f->body_len, memory_order_acquire);
    struct block *b;

    for (b = f->first; b != NULL && left > 0; b = b->next) {
        size_t n = left < FLIGHT_BLOCK_SIZE ? left : FLIGHT_BLOCK_SIZE;

        memcpy(out, b->data, n);
        out += n;
        left -= n;
    }
}

void
flight_result(struct flight *f, struct flight_result *out)
{
    if (end_of(f) != FLIGHT_RUNNING)
        *out = f->result;
    else
        memset(out, 0, sizeof(*out));
}

int
flight_readers(struct flight *f)
{
    return atomic_load_explicit(&f->readers, memory_order_relaxed);
}
