#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "util.h"

static enum log_level log_threshold = LOG_LEVEL_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int
log_level_parse(const char *s, enum log_level *out)
{
    size_t i;

    for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return -1;
}

const char *
log_level_name(enum log_level level)
{
    return level_names[level];
}

void
log_set_level(enum log_level level)
{
    log_threshold = level;
}

/* One write(2) per line, so that lines from threads never interleave. */
static void
write_line(char *text)
{
    size_t len = strlen(text), off = 0;

    text[len++] = '\n';
    while (off < len) {
        ssize_t n = write(STDERR_FILENO, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
}

/* Print the object, reserving a byte for the newline; frees obj. */
static void
emit(cJSON *obj)
{
    char *text = cJSON_PrintBuffered(obj, 512, 0);
    char *line;
    size_t len;

    cJSON_Delete(obj);
    if (text == NULL)
        return;
    len = strlen(text);
    if ((line = realloc(text, len + 2)) == NULL) {
        free(text);
        return;
    }
    write_line(line);
    free(line);
}

static cJSON *
new_line(enum log_level level)
{
    char ts[32];
    cJSON *obj = cJSON_CreateObject();

    if (obj == NULL)
        return NULL;
    util_rfc3339_ms(util_wall_ms(), ts, sizeof(ts));
    cJSON_AddStringToObject(obj, "ts", ts);
    cJSON_AddStringToObject(obj, "level", level_names[level]);
    return obj;
}

static void vlog(enum log_level level, int with_errno, const char *fmt,
    va_list ap) __attribute__((format(printf, 3, 0)));

static void
vlog(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
    char msg[1024];
    int saved = errno;
    cJSON *obj;

    if (level < log_threshold)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (with_errno) {
        size_t len = strlen(msg);
        snprintf(msg + len, sizeof(msg) - len, ": %s", strerror(saved));
    }
    if ((obj = new_line(level)) == NULL)
        return;
    cJSON_AddStringToObject(obj, "msg", msg);
    emit(obj);
    errno = saved;
}

#define LOG_FN(name, level, with_errno)                                      \
    void name(const char *fmt, ...)                                          \
    {                                                                        \
        va_list ap;                                                          \
        va_start(ap, fmt);                                                   \
        vlog(level, with_errno, fmt, ap);                                    \
        va_end(ap);                                                          \
    }

LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_error, LOG_LEVEL_ERROR, 0)

void
fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(LOG_LEVEL_ERROR, 1, fmt, ap);
    va_end(ap);
    exit(1);
}

void
fatalx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(LOG_LEVEL_ERROR, 0, fmt, ap);
    va_end(ap);
    exit(1);
}

void
log_event(enum log_level level, const char *event, cJSON *fields)
{
    cJSON *obj;

    if (level < log_threshold || (obj = new_line(level)) == NULL) {
        cJSON_Delete(fields);
        return;
    }
    cJSON_AddStringToObject(obj, "event", event);
    if (fields != NULL) {
        cJSON *item = fields->child;
        while (item != NULL) {
            cJSON *next = item->next;
            cJSON_DetachItemViaPointer(fields, item);
            cJSON_AddItemToObject(obj, item->string, item);
            item = next;
        }
        cJSON_Delete(fields);
    }
    emit(obj);
}

int
log_request_id_valid(const char *id)
{
    size_t i;

    if (id == NULL || *id == '\0')
        return 0;
    for (i = 0; id[i] != '\0'; i++) {
        char c = id[i];
        if (i >= LOG_REQUEST_ID_MAX)
            return 0;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
                c == '-'))
            return 0;
    }
    return 1;
}

/* xorshift64*: unique enough for ids, one state per thread, no lock. */
static _Thread_local uint64_t id_state;

static uint64_t
id_next(void)
{
    uint64_t x = id_state;

    if (x == 0) {
        if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != (ssize_t)sizeof(x))
            x = (uint64_t)util_mono_us() ^ (uint64_t)(uintptr_t)&x;
        x ^= (uint64_t)util_wall_ms() << 20;
        if (x == 0)
            x = 0x9e3779b97f4a7c15ULL;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    id_state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

char *
log_request_id_new(char *buf, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = id_next();
    size_t i;

    if (size == 0)
        return buf;
    for (i = 0; i < LOG_REQUEST_ID_GEN && i + 1 < size; i++) {
        buf[i] = hex[v & 15];
        v >>= 4;
    }
    buf[i] = '\0';
    return buf;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0. */
static size_t
utf8_sequence(const unsigned char *s)
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
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 ||
        cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;               /* overlong, out of range or a surrogate */
    return n;
}

/*
 * Access lines are built once per request, on the hit path too: keys are
 * string literals added without a copy (cJSON_AddItemToObjectCS), short
 * values are cleaned in a stack buffer, and whole numbers are printed here
 * rather than by cJSON (whose number printer formats, then parses back).
 */
static void
add_item(cJSON *obj, const char *name, cJSON *item)
{
    if (item != NULL && !cJSON_AddItemToObjectCS(obj, name, item))
        cJSON_Delete(item);
}

/*
 * Client strings may hold any byte; JSON text must be UTF-8, so each byte
 * that does not start a valid sequence becomes U+FFFD. name must be a
 * string literal (it is not copied).
 */
static void
add_str(cJSON *obj, const char *name, const char *value)
{
    const unsigned char *s = (const unsigned char *)value;
    char small[1024], *clean = small;
    size_t len, i, o = 0;

    if (value == NULL)
        return;
    len = strlen(value);
    if (len * 3 + 1 > sizeof(small) && (clean = malloc(len * 3 + 1)) == NULL)
        return;
    for (i = 0; i < len;) {
        size_t n = utf8_sequence(s + i);
        if (n == 0) {
            memcpy(clean + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(clean + o, s + i, n);
            o += n;
            i += n;
        }
    }
    clean[o] = '\0';
    add_item(obj, name, cJSON_CreateString(clean));
    if (clean != small)
        free(clean);
}

/* A whole number, exactly as cJSON would print it. */
static void
add_int(cJSON *obj, const char *name, long long v)
{
    char buf[24];

    snprintf(buf, sizeof(buf), "%lld", v);
    add_item(obj, name, cJSON_CreateRaw(buf));
}

static void
add_null(cJSON *obj, const char *name)
{
    add_item(obj, name, cJSON_CreateNull());
}

/* Milliseconds rounded to microseconds, so lines stay short. */
static double
round_ms(double ms)
{
    return (double)(long long)(ms * 1000.0 + 0.5) / 1000.0;
}

static cJSON *
access_object(const struct access_record *rec)
{
    char ts[32];
    cJSON *obj = cJSON_CreateObject();

    if (obj == NULL)
        return NULL;
    util_rfc3339_ms(rec->wall_ms, ts, sizeof(ts));
    add_item(obj, "ts", cJSON_CreateString(ts));
    add_item(obj, "level", cJSON_CreateStringReference("info"));
    add_item(obj, "event", cJSON_CreateStringReference("access"));
    add_str(obj, "request_id", rec->request_id);
    add_str(obj, "remote_addr", rec->remote_addr);
    add_str(obj, "method", rec->method);
    add_str(obj, "path", rec->path);
    add_str(obj, "indice", rec->indice);
    add_str(obj, "cache_status", rec->cache_status);
    add_int(obj, "status", rec->status);
    add_item(obj, "latency_ms",
        cJSON_CreateNumber(round_ms(rec->latency_ms)));
    add_int(obj, "bytes", (long long)rec->bytes);
    /* The same fields on every line, so that log queries need no guard. */
    if (rec->upstream) {
        if (rec->upstream_status > 0)
            add_int(obj, "upstream_status", rec->upstream_status);
        else
            add_null(obj, "upstream_status");
        add_int(obj, "upstream_attempts", rec->upstream_attempts);
        add_item(obj, "upstream_ms",
            cJSON_CreateNumber(round_ms(rec->upstream_ms)));
        add_str(obj, "upstream_http", rec->upstream_http);
        add_str(obj, "correlation_id", rec->correlation_id);
    } else {
        add_null(obj, "upstream_status");
        add_int(obj, "upstream_attempts", 0);
        add_null(obj, "upstream_http");
    }
    add_str(obj, "error", rec->error);
    return obj;
}

char *
log_access_render(const struct access_record *rec)
{
    cJSON *obj = access_object(rec);
    char *text;

    if (obj == NULL)
        return NULL;
    text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return text;
}

void
log_access(const struct access_record *rec)
{
    cJSON *obj;

    if (LOG_LEVEL_INFO < log_threshold)
        return;
    if ((obj = access_object(rec)) != NULL)
        emit(obj);
}
