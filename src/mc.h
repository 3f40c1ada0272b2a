#ifndef HEREPROXY_MC_H
#define HEREPROXY_MC_H

#include <stddef.h>
#include <stdint.h>

/*
 * The memcached tier (libmemcached). One pool of connections shared by the
 * worker threads; behaviours are set once on the master handle, before the
 * pool clones it. Servers are picked by consistent hashing (ketama).
 * A server that fails is marked dead for a few seconds so that an outage
 * costs requests almost nothing; each server's first failure and its
 * recovery are logged once each (memcached_lost, memcached_back).
 */

struct mc;
struct metrics;

enum mc_result {
    MC_HIT,
    MC_MISS,
    MC_TOO_LARGE, /* larger than any value the proxy writes: refused */
    MC_ERROR
};

/* memcached's default item limit; larger values are not stored. */
#define MC_ITEM_MAX (1024 * 1024 - 512)
#define MC_KEY_MAX 250

/*
 * servers: "host:port,host:port". Returns NULL with err set when the list
 * cannot be used. Connecting happens lazily.
 */
struct mc *mc_new(
    const char *servers, size_t pool_size, char *err, size_t errlen);
void mc_free(struct mc *mc);

/*
 * Get key. On MC_HIT *val and *len are the value, in the calling thread's
 * receive buffer: good until the thread's next mc_get (see mcget.h).
 */
enum mc_result mc_get(struct mc *mc, const char *key, size_t keylen,
    const char **val, size_t *len);

/* Store with an expiry in seconds from now. Returns 0 or -1. */
int mc_set(struct mc *mc, const char *key, size_t keylen, const void *val,
    size_t len, int64_t ttl_s);

/*
 * Store only if absent (a short lock). Returns 0 when stored, 1 when the
 * key exists, -1 on error.
 */
int mc_add(struct mc *mc, const char *key, size_t keylen, const void *val,
    size_t len, int64_t ttl_s);

/*
 * Add delta to the counter at key, creating it at 0 with an expiry of ttl_s
 * when absent (memcached add, then incr: atomic, so concurrent callers on
 * every instance see distinct values). Returns 0 with *value the new count,
 * or -1 on error.
 */
int mc_count(struct mc *mc, const char *key, size_t keylen, uint32_t delta,
    int64_t ttl_s, uint64_t *value);

/*
 * Get key with its CAS id, copying the value into buf: MC_HIT (*len,
 * *cas set), MC_MISS, MC_TOO_LARGE (longer than bufsize; *len says how
 * long) or MC_ERROR. Goes through the pool: not for the hot path.
 */
enum mc_result mc_gets(struct mc *mc, const char *key, size_t keylen, void *buf,
    size_t bufsize, size_t *len, uint64_t *cas);

/*
 * Store val only if key still has CAS id cas. Returns 0 when stored, 1
 * when it changed or went meanwhile (read it again), -1 on error.
 */
int mc_cas(struct mc *mc, const char *key, size_t keylen, const void *val,
    size_t len, int64_t ttl_s, uint64_t cas);

/* Delete key. Returns 0 when deleted, 1 when it was not there, -1 on error. */
int mc_delete(struct mc *mc, const char *key, size_t keylen);

/*
 * Readiness: a real round trip to every server (a get of a probe key, found
 * or not found both count), each within a short timeout. Writes the
 * servers that did not answer as "host:port,host:port" into down (cut to
 * downlen). Returns how many did not answer; equal to mc_server_count()
 * when memcached is wholly unreachable.
 */
int mc_ping(struct mc *mc, char *down, size_t downlen);

/* How many servers MEMCACHED_SERVERS named. */
int mc_server_count(const struct mc *mc);

/*
 * The server ("host:port" into out) that consistent hashing picks for a
 * cache key; no I/O. Not safe against concurrent calls on one mc (tests
 * and tools). Returns 0 or -1.
 */
int mc_server_for(
    struct mc *mc, const char *key, size_t keylen, char *out, size_t outlen);

/*
 * Time every operation into metrics_memcached (m outlives mc; NULL: off).
 * Call before other threads use mc.
 */
void mc_set_metrics(struct mc *mc, struct metrics *m);

/* 1 while some server's last exchange succeeded, 0 when none did. */
int mc_healthy(struct mc *mc);

/*
 * Server i (0 .. mc_server_count() - 1): its name as MEMCACHED_SERVERS gave
 * it (NULL past the end), and 1 while its last exchange (a request's or a
 * readiness probe's) succeeded.
 */
const char *mc_server_name(const struct mc *mc, int i);
int mc_server_up(struct mc *mc, int i);

/*
 * The memcached key for a cache key: "hp1:" + key when it fits and holds
 * no space or control byte, else "hp1:#" + 32 hex digits of two hashes.
 * out must hold MC_KEY_MAX + 1 bytes. Returns the length.
 */
size_t mc_key(const char *key, size_t keylen, char *out);

#endif
