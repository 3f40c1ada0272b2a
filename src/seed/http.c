#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "seed/http.h"

/* The error bodies of the proxy are small JSON objects. */
#define BODY_PARSE_MAX 2048
/* A Retry-After past a day is as good as "not today". */
#define RETRY_AFTER_MAX_S (7L * 86400)

static const char *const resources[] = {
    "base", "background", "label", "blank", NULL};
static const char *const formats[] = {"png", "png8", "jpeg", NULL};

static int
in_table(const char *const *table, const char *s)
{
    for (; *table != NULL; table++)
        if (strcmp(*table, s) == 0)
            return 1;
    return 0;
}

int
seed_resource_valid(const char *s)
{
    return in_table(resources, s);
}

int
seed_format_valid(const char *s)
{
    return in_table(formats, s);
}

static int
is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static int
is_alpha(char c)
{
    return is_lower(c) || (c >= 'A' && c <= 'Z');
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int
seed_style_valid(const char *s)
{
    size_t i, len = strlen(s);

    if (len < 1 || len > 64)
        return 0;
    for (i = 0; i < len; i++)
        if (!is_lower(s[i]) && !is_digit(s[i]) && s[i] != '.' && s[i] != '_' &&
            s[i] != '-')
            return 0;
    return 1;
}

int
seed_indice_valid(const char *s)
{
    size_t i, len = strlen(s);

    if (len < 1 || len > 64)
        return 0;
    for (i = 0; i < len; i++)
        if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '_' && s[i] != '.' &&
            s[i] != '-')
            return 0;
    return 1;
}

int
seed_token_valid(const char *s)
{
    size_t i, len = strlen(s);

    if (len < 1 || len > SEED_TOKEN_MAX)
        return 0;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

int
seed_url_check(const char *url, char *err, size_t errlen)
{
    size_t len = strlen(url), i, skip;

    if (strncmp(url, "http://", 7) == 0)
        skip = 7;
    else if (strncmp(url, "https://", 8) == 0)
        skip = 8;
    else {
        snprintf(err, errlen,
            "--url: must start with http:// or https:// (the proxy's "
            "prefix, e.g. http://maps.example.com/here-proxy)");
        return -1;
    }
    if (len > SEED_URL_MAX - 64) {
        snprintf(err, errlen, "--url: longer than %d bytes", SEED_URL_MAX - 64);
        return -1;
    }
    if (url[skip] == '\0' || url[skip] == '/' || url[skip] == ':') {
        snprintf(err, errlen, "--url: no host after the scheme");
        return -1;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];

        if (c <= ' ' || c >= 0x7f) {
            snprintf(err, errlen,
                "--url: blanks, control and non-ASCII bytes are not "
                "allowed");
            return -1;
        }
        if (c == '?' || c == '#') {
            snprintf(err, errlen,
                "--url: no query or fragment: the tile parameters have "
                "options of their own");
            return -1;
        }
    }
    return 0;
}

/* Append to buf at *len; -1 when it would not fit. */
static int append(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*len >= size)
        return -1;
    va_start(ap, fmt);
    n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size - *len)
        return -1;
    *len += (size_t)n;
    return 0;
}

int
seed_query_build(char *buf, size_t size, const char *style, long size_px,
    long ppi, const char *lang, const char *indice)
{
    size_t len = 0;

    if (size == 0 || append(buf, size, &len, "style=%s", style) != 0)
        return -1;
    if (size_px > 0 && append(buf, size, &len, "&size=%ld", size_px) != 0)
        return -1;
    if (ppi > 0 && append(buf, size, &len, "&ppi=%ld", ppi) != 0)
        return -1;
    if (lang != NULL && append(buf, size, &len, "&lang=%s", lang) != 0)
        return -1;
    if (indice != NULL && append(buf, size, &len, "&indice=%s", indice) != 0)
        return -1;
    return 0;
}

int
seed_tile_url(char *buf, size_t size, const char *base, const char *resource,
    const struct seed_tile *t, const char *format, const char *query)
{
    size_t len = 0;

    if (size == 0)
        return -1;
    return append(buf, size, &len, "%s/%s/mc/%d/%ld/%ld/%s?%s", base, resource,
        t->z, t->x, t->y, format, query);
}

long
seed_retry_after_parse(const char *value, int64_t now_s)
{
    size_t i, len;
    long n = 0;
    time_t when;

    if (value == NULL)
        return -1;
    len = strlen(value);
    if (len > 0 && len <= 12 && strspn(value, "0123456789") == len) {
        for (i = 0; i < len && n <= RETRY_AFTER_MAX_S; i++)
            n = n * 10 + (value[i] - '0');
        return n > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : n;
    }
    /* An HTTP-date: the three forms RFC 9110 asks recipients to take. */
    if (len < 20 || len > 40)
        return -1;
    when = curl_getdate(value, NULL);
    if (when == (time_t)-1)
        return -1;
    if ((int64_t)when <= now_s)
        return 0;
    if ((int64_t)when - now_s > RETRY_AFTER_MAX_S)
        return RETRY_AFTER_MAX_S;
    return (long)((int64_t)when - now_s);
}

/* Copy for a person's eyes: printable ASCII only, bounded. */
static void
printable_copy(char *dst, size_t size, const char *src)
{
    size_t i;

    for (i = 0; i + 1 < size && src[i] != '\0'; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[i] = '\0';
}

/* The "error" of the proxy's JSON body into out ("" when there is none). */
static void
body_error(const struct seed_exchange *x, char *out, size_t size)
{
    char buf[BODY_PARSE_MAX + 1];
    size_t n = x->body_len < BODY_PARSE_MAX ? x->body_len : BODY_PARSE_MAX;
    cJSON *root = NULL;
    const cJSON *e;

    out[0] = '\0';
    if (x->body == NULL || n == 0)
        return;
    memcpy(buf, x->body, n);
    buf[n] = '\0';
    root = cJSON_Parse(buf);
    e = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsString(e) && e->valuestring != NULL)
        printable_copy(out, size, e->valuestring);
    cJSON_Delete(root);
}

/* "image/png" or "image/jpeg", with or without parameters. */
static int
tile_type(const char *ct)
{
    size_t len;

    if (ct == NULL)
        return 0;
    len = strcspn(ct, "; \t");
    return (len == 9 && strncasecmp(ct, "image/png", 9) == 0) ||
        (len == 10 && strncasecmp(ct, "image/jpeg", 10) == 0);
}

/* NGINX's cache layer answered from its own copy. */
static int
nginx_had_it(const char *v)
{
    return v != NULL &&
        (strcmp(v, "HIT") == 0 || strcmp(v, "STALE") == 0 ||
            strcmp(v, "UPDATING") == 0 || strcmp(v, "REVALIDATED") == 0);
}

/* hereproxy had it (HIT, STALE) or another request fetched it. */
static int
proxy_had_it(const char *v)
{
    return v != NULL &&
        (strcmp(v, "HIT") == 0 || strcmp(v, "STALE") == 0 ||
            strcmp(v, "COALESCED") == 0);
}

static void
judge_ok(const struct seed_exchange *x, struct seed_answer *a)
{
    char ct[64];

    if (x->status != 200) {
        snprintf(a->message, sizeof(a->message),
            "the proxy answered %ld, not 200", x->status);
        a->verdict = SEED_V_FAILED;
        return;
    }
    if (!tile_type(x->content_type) || x->bytes == 0) {
        printable_copy(
            ct, sizeof(ct), x->content_type != NULL ? x->content_type : "none");
        snprintf(a->message, sizeof(a->message),
            "200 with Content-Type %s and %llu bytes: not a tile", ct,
            (unsigned long long)x->bytes);
        a->verdict = SEED_V_FAILED;
        return;
    }
    /*
     * Without X-Cache (something in front of the proxy drops it) a tile
     * counts as fetched: the count of HERE's requests is then an upper
     * bound, never too low.
     */
    a->verdict = nginx_had_it(x->x_cache_nginx) || proxy_had_it(x->x_cache)
        ? SEED_V_CACHED
        : SEED_V_FETCHED;
}

void
seed_answer_judge(const struct seed_exchange *x, struct seed_answer *a)
{
    char err[200];
    long s = x->status;

    memset(a, 0, sizeof(*a));
    a->wait_s = -1;
    if (!x->transport_ok) {
        printable_copy(err, sizeof(err),
            x->transport_error ? x->transport_error : "transfer failed");
        snprintf(a->message, sizeof(a->message), "%s", err);
        a->verdict = SEED_V_RETRY;
        return;
    }
    if (s >= 200 && s < 300) {
        judge_ok(x, a);
        return;
    }
    body_error(x, err, sizeof(err));
    snprintf(a->message, sizeof(a->message), "%ld%s%s", s,
        *err != '\0' ? " " : "", err);
    if (s == 429 || s == 503) {
        /* The proxy's cache-only scopes: a quota, the budget, HERE's no. */
        if (s == 503 && strncmp(err, "cache-only", 10) == 0) {
            a->verdict = SEED_V_CACHE_ONLY;
            return;
        }
        a->wait_s = seed_retry_after_parse(x->retry_after, x->now_s);
        a->verdict = s == 429 || a->wait_s >= 0 ? SEED_V_PAUSE : SEED_V_RETRY;
        return;
    }
    if (s == 408 || s >= 500) {
        a->verdict = SEED_V_RETRY;
        return;
    }
    if (s == 404 && strncmp(err, "HERE answered", 13) == 0) {
        a->verdict = SEED_V_FAILED; /* HERE has no such tile */
        return;
    }
    if (s == 301 || s == 302 || s == 303 || s == 307 || s == 308)
        snprintf(a->message, sizeof(a->message),
            "%ld: --url redirects; give it the address it redirects to", s);
    else if (s == 404 && *err == '\0')
        snprintf(a->message, sizeof(a->message),
            "404: no tiles at --url; is it the proxy's prefix "
            "(.../here-proxy)?");
    /* 400, 401, 403, other 4xx, 3xx: the next tile gets the same. */
    a->verdict = s >= 300 ? SEED_V_REFUSED : SEED_V_FAILED;
}
