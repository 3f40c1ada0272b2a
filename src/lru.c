#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lru.h"
#include "siphash.h"
#include "util.h"

#define LRU_SHARDS 16

struct node {
    struct node *prev, *next; /* recency list, most recent at head */
    struct node *chain;       /* hash bucket chain */
    uint64_t hash;
    struct entry *entry;
    size_t footprint;
    size_t keylen;
    char key[];
};

/*
 * How often each key was asked for lately, for lru_offer (TinyLFU, Einziger
 * and Friedman): a key's first lookup only sets its bits in a "doorkeeper"
 * bitmap, later ones count in a count-min sketch (4 counters per key, the
 * smallest is the estimate, 15 at most), so that a sweep of tiles asked for
 * once fills neither. Every SKETCH_AGE_FACTOR x max_entries lookups the
 * counters halve and the doorkeeper empties: yesterday's tiles fade.
 */
#define SKETCH_PROBES 4
#define SKETCH_MAX 15
#define SKETCH_AGE_FACTOR 10
#define DOOR_PROBES 2
#define DOOR_BITS_PER_ENTRY 16

struct shard {
    pthread_mutex_t lock;
    struct node **buckets;
    size_t nbuckets; /* a power of two */
    struct node *head, *tail;
    size_t entries, max_entries;
    uint64_t bytes, max_bytes;
    uint64_t evictions;
    uint64_t refused; /* offers turned down */
    uint8_t *sketch;  /* nsketch counters, a power of two */
    size_t nsketch;
    uint64_t *door; /* ndoor bits, a power of two */
    size_t ndoor;
    size_t lookups; /* since the last halving */
};

struct lru {
    int disabled;
    size_t nshards; /* a power of two, at most LRU_SHARDS */
    struct shard shards[LRU_SHARDS];
};

static size_t
pow2_at_least(size_t n)
{
    size_t p = 16;

    while (p < n && p < ((size_t)1 << 30))
        p <<= 1;
    return p;
}

struct lru *
lru_new(size_t max_entries, uint64_t max_bytes)
{
    struct lru *lru = calloc(1, sizeof(*lru));
    size_t i;

    if (lru == NULL)
        return NULL;
    lru->disabled = max_entries == 0 || max_bytes == 0;
    /*
     * Fewer shards than entries would leave some unable to hold anything;
     * the remainder is spread so that the shards add up to the bound exactly.
     */
    lru->nshards = LRU_SHARDS;
    while (lru->nshards > 1 && lru->nshards > max_entries)
        lru->nshards >>= 1;
    for (i = 0; i < LRU_SHARDS; i++) {
        struct shard *s = &lru->shards[i];
        size_t n = lru->nshards;

        pthread_mutex_init(&s->lock, NULL);
        if (i < n) {
            s->max_entries = max_entries / n + (i < max_entries % n);
            s->max_bytes = max_bytes / n + (i < max_bytes % n);
        }
        s->nbuckets = pow2_at_least(s->max_entries);
        if (lru->disabled)
            s->nbuckets = 16;
        s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
        /* Four counters per entry it can hold: few collisions, 4 bytes. */
        s->nsketch = pow2_at_least(s->max_entries * SKETCH_PROBES);
        s->sketch = calloc(s->nsketch, 1);
        s->ndoor = pow2_at_least(s->max_entries * DOOR_BITS_PER_ENTRY);
        if (s->ndoor < 64)
            s->ndoor = 64;
        s->door = calloc(s->ndoor / 64, sizeof(*s->door));
        if (s->buckets == NULL || s->sketch == NULL || s->door == NULL) {
            lru->disabled = 1;
            s->nbuckets = 0;
        }
    }
    return lru;
}

static void
list_unlink(struct shard *s, struct node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        s->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        s->tail = n->prev;
    n->prev = n->next = NULL;
}

static void
list_push_head(struct shard *s, struct node *n)
{
    n->prev = NULL;
    n->next = s->head;
    if (s->head)
        s->head->prev = n;
    s->head = n;
    if (s->tail == NULL)
        s->tail = n;
}

/* Counter i of a key: double hashing on two remixes of its hash. */
static size_t
sketch_index(const struct shard *s, uint64_t hash, int i)
{
    uint64_t a = hash * 0x9e3779b97f4a7c15ULL;
    uint64_t b = (hash ^ (hash >> 29)) * 0xbf58476d1ce4e5b9ULL;

    return (size_t)((a >> 32) + (uint64_t)i * ((b >> 32) | 1)) &
        (s->nsketch - 1);
}

static size_t
door_index(const struct shard *s, uint64_t hash, int i)
{
    uint64_t c = hash * 0xd6e8feb86659fd93ULL;

    return (size_t)(i == 0 ? c >> 40 : c >> 16) & (s->ndoor - 1);
}

/* 1 when every doorkeeper bit of hash is set; with set, sets them. */
static int
door_check(struct shard *s, uint64_t hash, int set)
{
    int i, all = 1;

    for (i = 0; i < DOOR_PROBES; i++) {
        size_t b = door_index(s, hash, i);
        uint64_t bit = (uint64_t)1 << (b & 63);

        if (!(s->door[b / 64] & bit)) {
            all = 0;
            if (set)
                s->door[b / 64] |= bit;
        }
    }
    return all;
}

static unsigned
sketch_min(const struct shard *s, uint64_t hash)
{
    unsigned least = SKETCH_MAX;
    int i;

    for (i = 0; i < SKETCH_PROBES; i++) {
        unsigned c = s->sketch[sketch_index(s, hash, i)];
        if (c < least)
            least = c;
    }
    return least;
}

/* Lookups of hash lately: the doorkeeper's one, and the sketch's. */
static unsigned
sketch_estimate(struct shard *s, uint64_t hash)
{
    return sketch_min(s, hash) + (unsigned)door_check(s, hash, 0);
}

/* One more lookup of hash (conservative update: only the smallest grow). */
static void
sketch_count(struct shard *s, uint64_t hash)
{
    unsigned least;
    size_t i;

    if (door_check(s, hash, 1) && (least = sketch_min(s, hash)) < SKETCH_MAX)
        for (i = 0; i < SKETCH_PROBES; i++) {
            uint8_t *c = &s->sketch[sketch_index(s, hash, (int)i)];
            if (*c == least)
                (*c)++;
        }
    if (++s->lookups >= SKETCH_AGE_FACTOR * (s->max_entries + 1)) {
        for (i = 0; i < s->nsketch; i++)
            s->sketch[i] >>= 1;
        memset(s->door, 0, s->ndoor / 64 * sizeof(*s->door));
        s->lookups = 0;
    }
}

static struct node **
bucket_slot(struct shard *s, uint64_t hash, const char *key, size_t keylen)
{
    struct node **slot = &s->buckets[(hash >> 4) & (s->nbuckets - 1)];

    while (*slot != NULL) {
        struct node *n = *slot;
        if (n->hash == hash && n->keylen == keylen &&
            memcmp(n->key, key, keylen) == 0)
            break;
        slot = &n->chain;
    }
    return slot;
}

/* Unlink from list and table and free; the entry loses our reference. */
static void
remove_node(struct shard *s, struct node **slot)
{
    struct node *n = *slot;

    *slot = n->chain;
    list_unlink(s, n);
    s->entries--;
    s->bytes -= n->footprint;
    entry_unref(n->entry);
    free(n);
}

static void
evict_tail(struct shard *s)
{
    struct node *n = s->tail;

    remove_node(s, bucket_slot(s, n->hash, n->key, n->keylen));
    s->evictions++;
}

void
lru_free(struct lru *lru)
{
    size_t i;

    if (lru == NULL)
        return;
    for (i = 0; i < LRU_SHARDS; i++) {
        struct shard *s = &lru->shards[i];
        while (s->tail != NULL)
            remove_node(s,
                bucket_slot(s, s->tail->hash, s->tail->key, s->tail->keylen));
        free(s->buckets);
        free(s->sketch);
        free(s->door);
        pthread_mutex_destroy(&s->lock);
    }
    free(lru);
}

static struct shard *
shard_for(struct lru *lru, uint64_t hash)
{
    return &lru->shards[hash & (lru->nshards - 1)];
}

struct entry *
lru_get(struct lru *lru, const char *key, size_t keylen, int64_t now)
{
    uint64_t hash;
    struct shard *s;
    struct node **slot;
    struct entry *e = NULL;

    if (lru->disabled)
        return NULL;
    hash = siphash_keyed(key, keylen);
    s = shard_for(lru, hash);
    pthread_mutex_lock(&s->lock);
    sketch_count(s, hash);
    slot = bucket_slot(s, hash, key, keylen);
    if (*slot != NULL) {
        struct node *n = *slot;
        if (n->entry->keep_until <= now) {
            remove_node(s, slot);
        } else {
            if (s->head != n) {
                list_unlink(s, n);
                list_push_head(s, n);
            }
            e = entry_ref(n->entry);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return e;
}

/* gated: refuse an entry that would evict one asked for as often or more. */
static int
put(struct lru *lru, const char *key, size_t keylen, struct entry *e, int gated)
{
    uint64_t hash;
    struct shard *s;
    struct node **slot, *n;
    size_t footprint;

    if (lru->disabled)
        return -1;
    hash = siphash_keyed(key, keylen);
    s = shard_for(lru, hash);
    footprint = sizeof(*n) + keylen + 1 + entry_footprint(e);
    if (footprint > s->max_bytes || s->max_entries == 0)
        return -1;
    /* Allocate before locking: nothing slow under the shard lock. */
    if ((n = malloc(sizeof(*n) + keylen + 1)) == NULL)
        return -1;
    memcpy(n->key, key, keylen);
    n->key[keylen] = '\0';
    n->keylen = keylen;
    n->hash = hash;
    n->footprint = footprint;
    n->chain = NULL;
    n->entry = entry_ref(e);
    pthread_mutex_lock(&s->lock);
    slot = bucket_slot(s, hash, key, keylen);
    if (*slot != NULL) {
        remove_node(s, slot);
    } else if (gated && s->tail != NULL &&
        (s->entries + 1 > s->max_entries ||
            s->bytes + footprint > s->max_bytes) &&
        sketch_estimate(s, hash) <= sketch_estimate(s, s->tail->hash)) {
        s->refused++;
        pthread_mutex_unlock(&s->lock);
        entry_unref(n->entry);
        free(n);
        return 1;
    }
    while (s->entries > 0 &&
        (s->entries + 1 > s->max_entries ||
            s->bytes + footprint > s->max_bytes))
        evict_tail(s);
    slot = bucket_slot(s, hash, key, keylen);
    *slot = n;
    list_push_head(s, n);
    s->entries++;
    s->bytes += footprint;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int
lru_put(struct lru *lru, const char *key, size_t keylen, struct entry *e)
{
    return put(lru, key, keylen, e, 0);
}

int
lru_offer(struct lru *lru, const char *key, size_t keylen, struct entry *e)
{
    return put(lru, key, keylen, e, 1);
}

int
lru_delete(struct lru *lru, const char *key, size_t keylen)
{
    uint64_t hash;
    struct shard *s;
    struct node **slot;
    int found;

    if (lru->disabled)
        return 0;
    hash = siphash_keyed(key, keylen);
    s = shard_for(lru, hash);
    pthread_mutex_lock(&s->lock);
    slot = bucket_slot(s, hash, key, keylen);
    if ((found = *slot != NULL))
        remove_node(s, slot);
    pthread_mutex_unlock(&s->lock);
    return found;
}

size_t
lru_clear(struct lru *lru)
{
    size_t i, n = 0;

    for (i = 0; !lru->disabled && i < lru->nshards; i++) {
        struct shard *s = &lru->shards[i];

        pthread_mutex_lock(&s->lock);
        while (s->tail != NULL) {
            remove_node(s,
                bucket_slot(s, s->tail->hash, s->tail->key, s->tail->keylen));
            n++;
        }
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}

void
lru_stats(struct lru *lru, struct lru_stats *out)
{
    size_t i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < LRU_SHARDS; i++) {
        struct shard *s = &lru->shards[i];
        pthread_mutex_lock(&s->lock);
        out->entries += s->entries;
        out->bytes += s->bytes;
        out->evictions += s->evictions;
        out->refused += s->refused;
        pthread_mutex_unlock(&s->lock);
    }
}
