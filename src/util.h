#ifndef HEREPROXY_UTIL_H
#define HEREPROXY_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * Parse a plain decimal number: digits only (no sign, no spaces, no junk),
 * within [min, max]. Returns 0 and sets *out, or -1.
 */
int util_parse_long(const char *s, long min, long max, long *out);

/*
 * Parse a byte size: decimal digits with an optional K, M or G suffix
 * (powers of 1024). Returns 0 and sets *out, or -1 on junk or overflow.
 */
int util_parse_size(const char *s, uint64_t *out);

/* Copy at most size-1 bytes and terminate; returns strlen(src). */
size_t util_strlcpy(char *dst, const char *src, size_t size);

/*
 * FNV-1a, 64 bits, unkeyed: the same value on every instance (memcached
 * keys). Tables keyed by strings a client picks use siphash_keyed.
 */
uint64_t util_hash64(const void *data, size_t len, uint64_t seed);

/* Monotonic milliseconds and microseconds; wall-clock seconds and ms. */
int64_t util_mono_ms(void);
int64_t util_mono_us(void);
int64_t util_wall_ms(void);
/* The time ms from now on clock, for pthread_cond_timedwait. */
void util_timespec_in(clockid_t clock, long ms, struct timespec *ts);
/* A time in milliseconds (a util_mono_ms deadline, say) as a timespec. */
void util_ms_timespec(int64_t ms, struct timespec *ts);

/* Format wall-clock ms as RFC 3339 UTC with milliseconds; buf >= 32. */
void util_rfc3339_ms(int64_t wall_ms, char *buf, size_t size);

/*
 * A growable byte buffer with a hard cap. Appends past the cap fail and
 * leave the buffer unchanged.
 */
struct dynbuf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

void dynbuf_init(struct dynbuf *b, size_t max);
/* Returns 0, or -1 when the cap would be passed or memory ran out. */
int dynbuf_append(struct dynbuf *b, const void *p, size_t n);
void dynbuf_reset(struct dynbuf *b);
void dynbuf_cleanup(struct dynbuf *b);

/* Compare two strings in time that depends only on their lengths. */
int util_consttime_equal(const char *a, const char *b);

/*
 * url with its user information (user:password@ before the host) replaced
 * by "<redacted>@", for a log line: a proxy URL as HTTPS_PROXY has it,
 * with or without a scheme. Cut to fit out (size > 0). Pure.
 */
void util_redact_userinfo(const char *url, char *out, size_t size);

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0. */
size_t util_utf8_sequence(const unsigned char *s);

/*
 * The value of a header line "Name: value" (CR/LF and blanks around it
 * trimmed) when its name is name, any case: a pointer into line with its
 * length in *vlen, else NULL.
 */
const char *util_header_field(
    const char *line, size_t len, const char *name, size_t *vlen);

/* A language tag as HERE takes it: ^[a-z]{2}(-[A-Za-z]{1,4})?$. */
int util_lang_valid(const char *v);

#endif
