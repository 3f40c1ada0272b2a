#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util.h"

int
util_parse_long(const char *s, long min, long max, long *out)
{
    long v = 0;

    if (s == NULL || *s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (max - (*s - '0')) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int
util_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0, mult = 1;
    const char *p;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    for (p = s; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    switch (*p) {
    case '\0': break;
    case 'k':
    case 'K': mult = 1024; break;
    case 'm':
    case 'M': mult = 1024 * 1024; break;
    case 'g':
    case 'G': mult = 1024 * 1024 * 1024; break;
    default: return -1;
    }
    if (*p != '\0' && p[1] != '\0')
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

size_t
util_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);

    if (size > 0) {
        size_t c = n < size - 1 ? n : size - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

uint64_t
util_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    /* Final avalanche so that low bits are usable as a bucket index. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

int64_t
util_mono_ms(void)
{
    return util_mono_us() / 1000;
}

int64_t
util_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
util_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
util_timespec_in(clockid_t clock, long ms, struct timespec *ts)
{
    clock_gettime(clock, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void
util_ms_timespec(int64_t ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ms / 1000);
    ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

void
util_rfc3339_ms(int64_t wall_ms, char *buf, size_t size)
{
    /* gmtime_r and printf once per second per thread, not per line. */
    static __thread int64_t cached_sec = INT64_MIN;
    static __thread char cached[64]; /* "YYYY-MM-DDTHH:MM:SS." */
    int64_t sec = wall_ms / 1000;
    int ms = (int)(wall_ms % 1000);
    char whole[25];

    if (size < sizeof(whole)) { /* truncated, still terminated */
        util_rfc3339_ms(wall_ms, whole, sizeof(whole));
        if (size > 0) {
            memcpy(buf, whole, size - 1);
            buf[size - 1] = '\0';
        }
        return;
    }
    if (wall_ms < 0)
        sec = -1, ms = 0; /* before 1970: not a real clock */
    if (sec != cached_sec) {
        time_t secs = (time_t)sec;
        struct tm tm;

        gmtime_r(&secs, &tm);
        snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d.",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
            tm.tm_sec);
        cached_sec = sec;
    }
    memcpy(buf, cached, 20);
    buf[20] = (char)('0' + ms / 100);
    buf[21] = (char)('0' + ms / 10 % 10);
    buf[22] = (char)('0' + ms % 10);
    buf[23] = 'Z';
    buf[24] = '\0';
}

void
dynbuf_init(struct dynbuf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

int
dynbuf_append(struct dynbuf *b, const void *p, size_t n)
{
    if (n > b->max - b->len)
        return -1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        char *d;

        while (cap < b->len + n)
            cap *= 2;
        if (cap > b->max)
            cap = b->max;
        if ((d = realloc(b->data, cap)) == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void
dynbuf_reset(struct dynbuf *b)
{
    b->len = 0;
}

void
dynbuf_cleanup(struct dynbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int
util_consttime_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i;
    unsigned char diff = la != lb;

    for (i = 0; i < la; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i % (lb ? lb : 1)];
    return diff == 0;
}

void
util_redact_userinfo(const char *url, char *out, size_t size)
{
    const char *scheme = strstr(url, "://");
    const char *host = scheme != NULL ? scheme + 3 : url;
    size_t authority = strcspn(host, "/?#");
    const char *at = NULL, *p;

    /* The last '@' of the authority ends the user information. */
    for (p = host; p < host + authority; p++)
        if (*p == '@')
            at = p;
    if (at == NULL) {
        util_strlcpy(out, url, size);
        return;
    }
    snprintf(out, size, "%.*s<redacted>%s", (int)(host - url), url, at);
}

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0. */
size_t
util_utf8_sequence(const unsigned char *s)
{
    size_t n, i;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        n = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        n = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0; /* overlong, out of range or a surrogate */
    return n;
}

const char *
util_header_field(const char *line, size_t len, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name), n;
    const char *v;

    if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen) != 0)
        return NULL;
    v = line + nlen + 1;
    n = len - nlen - 1;
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 &&
        (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' ||
            v[n - 1] == '\t'))
        n--;
    *vlen = n;
    return v;
}

int
util_lang_valid(const char *v)
{
    size_t len = strlen(v), i;

    if (len != 2 && (len < 4 || len > 7))
        return 0;
    if (!(v[0] >= 'a' && v[0] <= 'z') || !(v[1] >= 'a' && v[1] <= 'z'))
        return 0;
    if (len == 2)
        return 1;
    if (v[2] != '-')
        return 0;
    for (i = 3; i < len; i++)
        if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z')))
            return 0;
    return 1;
}
