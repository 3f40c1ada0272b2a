#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flight.h"
#include "util.h"

#define BLOCK_SIZE (64 * 1024)
#define REGISTRY_BUCKETS 256

struct block {
    struct block *next;
    size_t used;
    unsigned char data[BLOCK_SIZE];
};

struct flight {
    struct flight *chain;         /* registry bucket */
    int refs;                     /* guarded by the registry lock */
    int registered;
    int readers;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int has_head;
    struct flight_head head;
    enum flight_end end;
    struct flight_result result;
    struct block *first, *last;
    size_t body_len;              /* bytes published so far */
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
    pthread_condattr_t attr;

    if (f == NULL)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    /* Deadlines are monotonic, so is the condition variable's clock. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &attr);
    pthread_condattr_destroy(&attr);
    memcpy(f->key, key, keylen);
    f->keylen = keylen;
    f->hash = hash;
    f->end = FLIGHT_RUNNING;
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
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
    free(f);
}

struct flight *
flight_join(struct flights *reg, const char *key, size_t keylen,
    int *leader)
{
    uint64_t hash = util_hash64(key, keylen, 7);
    struct flight **slot, *f;

    *leader = 0;
    pthread_mutex_lock(&reg->lock);
    for (slot = bucket(reg, hash); *slot != NULL; slot = &(*slot)->chain) {
        f = *slot;
        if (f->hash == hash && f->keylen == keylen &&
            memcmp(f->key, key, keylen) == 0) {
            f->refs++;
            pthread_mutex_unlock(&reg->lock);
            pthread_mutex_lock(&f->lock);
            f->readers++;
            pthread_mutex_unlock(&f->lock);
            return f;
        }
    }
    if ((f = flight_new(key, keylen, hash)) != NULL) {
        f->refs = 1;
        f->readers = 1;
        f->registered = 1;
        f->chain = *bucket(reg, hash);
        *bucket(reg, hash) = f;
        *leader = 1;
    }
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

void
flight_set_head(struct flight *f, const struct flight_head *head)
{
    pthread_mutex_lock(&f->lock);
    f->head = *head;
    f->has_head = 1;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

int
flight_append(struct flight *f, const void *data, size_t len)
{
    const unsigned char *p = data;

    while (len > 0) {
        struct block *b = f->last;
        size_t n;

        /* Only the writer touches blocks' tails: no lock to fill them. */
        if (b == NULL || b->used == BLOCK_SIZE) {
            if ((b = malloc(sizeof(*b))) == NULL)
                return -1;
            b->next = NULL;
            b->used = 0;
            pthread_mutex_lock(&f->lock);
            if (f->last != NULL)
                f->last->next = b;
            else
                f->first = b;
            f->last = b;
            pthread_mutex_unlock(&f->lock);
        }
        n = BLOCK_SIZE - b->used;
        if (n > len)
            n = len;
        memcpy(b->data + b->used, p, n);
        pthread_mutex_lock(&f->lock);
        b->used += n;
        f->body_len += n;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        p += n;
        len -= n;
    }
    return 0;
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
flight_wait_end(struct flight *f)
{
    enum flight_end end;

    pthread_mutex_lock(&f->lock);
    while (f->end == FLIGHT_RUNNING)
        pthread_cond_wait(&f->cond, &f->lock);
    end = f->end;
    pthread_mutex_unlock(&f->lock);
    return end;
}

void
flight_end(struct flight *f, enum flight_end end,
    const struct flight_result *result)
{
    pthread_mutex_lock(&f->lock);
    f->end = end;
    if (result != NULL)
        f->result = *result;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

static void
deadline_ts(int64_t deadline_ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(deadline_ms / 1000);
    ts->tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
}

int
flight_wait_head(struct flight *f, int64_t deadline_ms,
    struct flight_head *head, struct flight_result *result)
{
    struct timespec ts;
    int rc = -1;

    deadline_ts(deadline_ms, &ts);
    pthread_mutex_lock(&f->lock);
    while (!f->has_head && f->end == FLIGHT_RUNNING) {
        if (pthread_cond_timedwait(&f->cond, &f->lock, &ts) != 0 &&
            util_mono_ms() >= deadline_ms)
            break;
    }
    if (f->has_head) {
        *head = f->head;
        rc = 0;
    } else if (result != NULL) {
        *result = f->result;
        if (f->end == FLIGHT_RUNNING)
            util_strlcpy(result->error, "timed out waiting for HERE",
                sizeof(result->error));
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

const void *
flight_read(struct flight *f, size_t offset, size_t *len,
    enum flight_end *end)
{
    const void *p = NULL;

    *len = 0;
    pthread_mutex_lock(&f->lock);
    while (f->body_len <= offset && f->end == FLIGHT_RUNNING)
        pthread_cond_wait(&f->cond, &f->lock);
    if (f->body_len > offset) {
        struct block *b = f->first;
        size_t skip = offset;

        while (skip >= BLOCK_SIZE) {
            b = b->next;
            skip -= BLOCK_SIZE;
        }
        *len = b->used - skip;
        p = b->data + skip;
    }
    *end = f->end;
    pthread_mutex_unlock(&f->lock);
    return p;
}

size_t
flight_body_len(struct flight *f)
{
    size_t n;

    pthread_mutex_lock(&f->lock);
    n = f->body_len;
    pthread_mutex_unlock(&f->lock);
    return n;
}

void
flight_copy_body(struct flight *f, void *buf)
{
    unsigned char *out = buf;
    struct block *b;

    pthread_mutex_lock(&f->lock);
    for (b = f->first; b != NULL; b = b->next) {
        memcpy(out, b->data, b->used);
        out += b->used;
    }
    pthread_mutex_unlock(&f->lock);
}

void
flight_result(struct flight *f, struct flight_result *out)
{
    pthread_mutex_lock(&f->lock);
    *out = f->result;
    pthread_mutex_unlock(&f->lock);
}

int
flight_readers(struct flight *f)
{
    int n;

    pthread_mutex_lock(&f->lock);
    n = f->readers;
    pthread_mutex_unlock(&f->lock);
    return n;
}
