#ifndef HEREPROXY_SEALCOUNT_H
#define HEREPROXY_SEALCOUNT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Counts the fleet shares in memcached that only the fleet can set: the
 * value is sealed (mac.h) under its key, and changed with gets and cas,
 * so that a writer without CACHE_SECRET cannot push a count up (and make
 * an índice, or everything, cache-only) or set it to what it likes. It can
 * still delete it, as any memcached entry. For what matters enough to pay
 * two round trips: quotas and the daily budget, counted per fetch from
 * HERE, not per request.
 */

struct mac;
struct mc;

enum sealcount_result {
    SEALCOUNT_OK,
    SEALCOUNT_REPLACED, /* what was there did not verify: counted afresh */
    SEALCOUNT_ERROR     /* memcached failed, or too many racing writers */
};

/*
 * Add delta to the count at key, creating it (at delta, expiring after
 * ttl_s) when absent or when what is there does not verify. *value is the
 * count after this call on SEALCOUNT_OK and SEALCOUNT_REPLACED.
 */
enum sealcount_result sealcount_add(struct mc *mc, struct mac *m,
    const char *key, size_t keylen, uint64_t delta, int64_t ttl_s,
    uint64_t *value);

#endif
