/*
 * cache_ttl() on arbitrary Cache-Control values.
 *
 * Input: 8 bytes pick CACHE_TTL_CAP and CACHE_TTL_DEFAULT within the bounds
 * settings.c enforces (0 <= default <= cap <= 31536000); the rest, up to a
 * NUL, is the header value (shorter inputs: no header at all).
 *
 * Invariants: the TTL is within [0, cap]; without a header it is the
 * default; with no-store, no-cache or private as a whole directive it is 0;
 * with an unbounded cap it never exceeds 2^31 (RFC 9111 5.2) unless the
 * default does, and is never negative.
 */
#include "config.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache.h"

#include "fuzz.h"

#define TTL_LIMIT 31536000L

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
        (uint32_t)p[3] << 24;
}

/* A directive that forbids storing, spelled exactly, as its own element. */
static int
forbids_store(const char *v)
{
    static const char *const names[] = {
        "no-store", "no-cache", "private", NULL};
    const char *p = v;

    while (*p != '\0') {
        size_t len, i;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        len = strcspn(p, ",");
        for (i = 0; names[i] != NULL; i++) {
            size_t n = strlen(names[i]);
            if (strncasecmp(p, names[i], n) == 0 &&
                (p[n] == ',' || p[n] == '\0' || p[n] == '='))
                return 1;
        }
        p += len;
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long cap, def, ttl;
    char *value;

    if (size < 8) {
        ttl = cache_ttl(NULL, 3600, 86400);
        FUZZ_CHECK(ttl == 3600);
        return 0;
    }
    cap = (long)(get32(data) % (uint32_t)(TTL_LIMIT + 1));
    def = (long)(get32(data + 4) % (uint32_t)(cap + 1));
    value = fuzz_strndup(data + 8, size - 8);

    ttl = cache_ttl(value, def, cap);
    FUZZ_CHECK(ttl >= 0 && ttl <= cap);
    if (forbids_store(value))
        FUZZ_CHECK(ttl == 0);

    ttl = cache_ttl(value, def, LONG_MAX);
    FUZZ_CHECK(ttl >= 0);
    FUZZ_CHECK(ttl <= 0x80000000L);

    ttl = cache_ttl(NULL, def, cap);
    FUZZ_CHECK(ttl == def);

    free(value);
    return 0;
}
