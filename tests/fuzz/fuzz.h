#ifndef HEREPROXY_FUZZ_H
#define HEREPROXY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Shared by the libFuzzer targets: a failed invariant prints what broke
 * and aborts, which libFuzzer reports as a crash with the input saved.
 * Independent of NDEBUG, unlike assert().
 */
#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,         \
                __LINE__, #cond);                                              \
            abort();                                                           \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated heap copy of len bytes (embedded NULs end the string). */
static inline char *
fuzz_strndup(const uint8_t *data, size_t len)
{
    char *s = malloc(len + 1);

    if (s == NULL)
        abort();
    if (len > 0)
        memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/* True when s holds only bytes in [lo, hi]. */
static inline int
fuzz_all_in(const char *s, unsigned char lo, unsigned char hi)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < lo || (unsigned char)*s > hi)
            return 0;
    return 1;
}

/* True when the NUL-terminated s is within size bytes of its buffer. */
static inline int
fuzz_terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

#endif
