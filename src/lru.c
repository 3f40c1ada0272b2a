#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lru.h"
#include "util.h"

#define LRU_SHARDS 16

struct node {
    struct node *prev, *next;   /* recency list, most recent at head */
    struct node *chain;         /* hash bucket chain */
    uint64_t hash;
    struct entry *entry;
    size_t footprint;
    size_t keylen;
    char key[];
};

struct shard {
    pthread_mutex_t lock;
    struct node **buckets;
    size_t nbuckets;            /* a power of two */
    struct node *head, *tail;
    size_t entries, max_entries;
    uint64_t bytes, max_bytes;
    uint64_t evictions;
};

struct lru {
    int disabled;
    size_t nshards;             /* a power of two, at most LRU_SHARDS */
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
        if (s->buckets == NULL) {
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
            remove_node(s, bucket_slot(s, s->tail->hash, s->tail->key,
                               s->tail->keylen));
        free(s->buckets);
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
    hash = util_hash64(key, keylen, 0);
    s = shard_for(lru, hash);
    pthread_mutex_lock(&s->lock);
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

int
lru_put(struct lru *lru, const char *key, size_t keylen, struct entry *e)
{
    uint64_t hash;
    struct shard *s;
    struct node **slot, *n;
    size_t footprint;

    if (lru->disabled)
        return -1;
    hash = util_hash64(key, keylen, 0);
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
    if (*slot != NULL)
        remove_node(s, slot);
    while (s->entries > 0 && (s->entries + 1 > s->max_entries ||
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
lru_delete(struct lru *lru, const char *key, size_t keylen)
{
    uint64_t hash;
    struct shard *s;
    struct node **slot;
    int found;

    if (lru->disabled)
        return 0;
    hash = util_hash64(key, keylen, 0);
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
            remove_node(s, bucket_slot(s, s->tail->hash, s->tail->key,
                s->tail->keylen));
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
        pthread_mutex_unlock(&s->lock);
    }
}
