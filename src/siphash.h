#ifndef HEREPROXY_SIPHASH_H
#define HEREPROXY_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/*
 * SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF"),
 * 64-bit output, as the reference implementation computes it: a keyed
 * hash for tables whose keys a client chooses (índices, addresses, tile
 * keys), so that nobody who does not know the key can pick keys that
 * collide. Not for anything that must be equal on every instance of a
 * fleet (memcached keys use util_hash64).
 */

#define SIPHASH_KEY_BYTES 16

/* SipHash-2-4 of data under key. Pure. */
uint64_t siphash24(
    const uint8_t key[SIPHASH_KEY_BYTES], const void *data, size_t len);

/*
 * Read the process key from getrandom() (or /dev/urandom) now. Called once
 * at startup; siphash_keyed does it on first use otherwise. Returns 0, or
 * -1 when the system gave no random bytes (a key from the clock and the
 * process id is used then: the caller should stop).
 */
int siphash_process_init(void);

/* The process key, read at the first call. */
const uint8_t *siphash_process_key(void);

/* For tests: use key from now on instead of a random one. */
void siphash_set_process_key(const uint8_t key[SIPHASH_KEY_BYTES]);

/* SipHash-2-4 of data under the process key. Thread-safe. */
uint64_t siphash_keyed(const void *data, size_t len);

#endif
