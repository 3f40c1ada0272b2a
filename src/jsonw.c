#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "util.h"

void
jsonw_init(struct jsonw *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->len = 0;
    w->cap = cap;
    w->on_heap = 0;
    w->failed = cap < 2;
    if (!w->failed)
        w->buf[w->len++] = '{';
}

/* Room for n more bytes; grows onto the heap. Returns 0 or -1. */
static int
reserve(struct jsonw *w, size_t n)
{
    size_t cap;
    char *p;

    if (w->failed)
        return -1;
    if (n <= w->cap - w->len)
        return 0;
    cap = w->cap * 2;
    while (cap - w->len < n)
        cap *= 2;
    if (w->on_heap) {
        if ((p = realloc(w->buf, cap)) == NULL)
            goto fail;
    } else {
        if ((p = malloc(cap)) == NULL)
            goto fail;
        memcpy(p, w->buf, w->len);
    }
    w->buf = p;
    w->cap = cap;
    w->on_heap = 1;
    return 0;
fail:
    w->failed = 1;
    return -1;
}

static void
put(struct jsonw *w, const char *s, size_t n)
{
    if (reserve(w, n) == 0) {
        memcpy(w->buf + w->len, s, n);
        w->len += n;
    }
}

/* ,"name": (names are the program's own: plain ASCII, no escaping) */
static void
put_name(struct jsonw *w, const char *name)
{
    size_t n = strlen(name);

    if (reserve(w, n + 4) != 0)
        return;
    if (w->len > 1)
        w->buf[w->len++] = ',';
    w->buf[w->len++] = '"';
    memcpy(w->buf + w->len, name, n);
    w->len += n;
    w->buf[w->len++] = '"';
    w->buf[w->len++] = ':';
}

void
jsonw_str(struct jsonw *w, const char *name, const char *value)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)value;
    size_t i = 0, len, n;

    if (value == NULL)
        return;
    put_name(w, name);
    /* Worst case 6 bytes out per byte in (\u00XX), plus the quotes. */
    len = strlen(value);
    if (reserve(w, len * 6 + 2) != 0)
        return;
    w->buf[w->len++] = '"';
    while (i < len) {
        unsigned char c = s[i];
        char *o = w->buf + w->len;

        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *o = (char)c;
            w->len++;
            i++;
        } else if (c == '"' || c == '\\') {
            o[0] = '\\';
            o[1] = (char)c;
            w->len += 2;
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            w->len += 6;
            i++;
        } else if ((n = util_utf8_sequence(s + i)) > 0) {
            memcpy(o, s + i, n);
            w->len += n;
            i += n;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD */
            w->len += 3;
            i++;
        }
    }
    w->buf[w->len++] = '"';
}

/* Decimal digits of v, written backwards from end; returns the start. */
static char *
digits(char *end, unsigned long long v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return end;
}

void
jsonw_int(struct jsonw *w, const char *name, long long value)
{
    char tmp[24], *p;
    unsigned long long v = value < 0 ? 0ULL - (unsigned long long)value
                                     : (unsigned long long)value;

    p = digits(tmp + sizeof(tmp), v);
    if (value < 0)
        *--p = '-';
    put_name(w, name);
    put(w, p, (size_t)(tmp + sizeof(tmp) - p));
}

void
jsonw_null(struct jsonw *w, const char *name)
{
    put_name(w, name);
    put(w, "null", 4);
}

void
jsonw_ms(struct jsonw *w, const char *name, double value)
{
    char tmp[32], *p, *end = tmp + sizeof(tmp);
    unsigned long long micro, whole;
    unsigned frac;
    int negative = value < 0;

    if (negative)
        value = -value;
    if (!(value < 9e12)) /* NaN, infinity, absurd: clamp */
        value = value != value ? 0 : 9e12;
    micro = (unsigned long long)(value * 1000.0 + 0.5);
    whole = micro / 1000;
    frac = (unsigned)(micro % 1000);
    if (frac != 0) {
        int ndig = 3;

        while (frac % 10 == 0) {
            frac /= 10;
            ndig--;
        }
        while (ndig-- > 0) {
            *--end = (char)('0' + frac % 10);
            frac /= 10;
        }
        *--end = '.';
    }
    p = digits(end, whole);
    if (negative && micro != 0)
        *--p = '-';
    put_name(w, name);
    put(w, p, (size_t)(tmp + sizeof(tmp) - p));
}

const char *
jsonw_finish(struct jsonw *w, size_t *len)
{
    put(w, "}\n", 2);
    if (w->failed)
        return NULL;
    *len = w->len;
    return w->buf;
}

void
jsonw_release(struct jsonw *w)
{
    if (w->on_heap)
        free(w->buf);
    w->buf = NULL;
    w->on_heap = 0;
}
