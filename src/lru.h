#ifndef HEREPROXY_LRU_H
#define HEREPROXY_LRU_H

#include <stddef.h>
#include <stdint.h>

#include "entry.h"

/*
 * The in-process tier: a size-bounded LRU split into shards, each with its
 * own lock, list and hash table, so that lookups from many threads do not
 * queue on one lock. Bounds (entries and bytes) are split evenly across
 * shards. Entries are reference counted: a hit hands out a reference and
 * the caller writes the body after the shard lock is released.
 */

struct lru;

struct lru_stats {
    uint64_t entries;
    uint64_t bytes;
    uint64_t evictions;
    uint64_t refused; /* lru_offer declined */
};

/* max_entries 0 or max_bytes 0 disables the tier (every get misses). */
struct lru *lru_new(size_t max_entries, uint64_t max_bytes);
void lru_free(struct lru *lru);

/*
 * Look up key. Returns a referenced entry (entry_unref when done) or NULL.
 * Entries past keep_until at `now` (Unix seconds) are dropped and miss.
 */
struct entry *lru_get(
    struct lru *lru, const char *key, size_t keylen, int64_t now);

/*
 * Insert or replace key, taking a reference of its own to e. Evicts least
 * recently used entries to stay within bounds. An entry larger than a
 * shard's byte bound is not stored. Returns 0 when stored, -1 otherwise.
 */
int lru_put(struct lru *lru, const char *key, size_t keylen, struct entry *e);

/*
 * lru_put for a copy that lives elsewhere too (read from memcached): when
 * storing it would evict the least recently used entry, it is stored only
 * if its key was looked up more often lately than that entry's (TinyLFU
 * admission: every lru_get counts). A tile popular enough stays in process
 * while the long tail is served from memcached, and a sweep over many
 * tiles cannot flush the popular ones. Returns 0 when stored, 1 when
 * refused, -1 as lru_put.
 */
int lru_offer(struct lru *lru, const char *key, size_t keylen, struct entry *e);

/* Remove key if present. Returns 1 when it was there. */
int lru_delete(struct lru *lru, const char *key, size_t keylen);

/* Remove every entry (a purge); not counted as evictions. Returns how many. */
size_t lru_clear(struct lru *lru);

void lru_stats(struct lru *lru, struct lru_stats *out);

#endif
