#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "jsonw.h"
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
write_all(const char *text, size_t len)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n = write(STDERR_FILENO, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
}

/* text has room for one more byte: its NUL becomes the newline. */
static void
write_line(char *text)
{
    size_t len = strlen(text);

    text[len++] = '\n';
    write_all(text, len);
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

/*
 * The access line is written with jsonw, not cJSON: it is on every
 * request's path, and a tree of cJSON nodes cost a cache hit more than
 * everything else it does together.
 */
static int
access_write(const struct access_record *rec, struct jsonw *w)
{
    char ts[32];

    util_rfc3339_ms(rec->wall_ms, ts, sizeof(ts));
    jsonw_str(w, "ts", ts);
    jsonw_str(w, "level", "info");
    jsonw_str(w, "event", "access");
    jsonw_str(w, "request_id", rec->request_id);
    jsonw_str(w, "remote_addr", rec->remote_addr);
    jsonw_str(w, "method", rec->method);
    jsonw_str(w, "path", rec->path);
    jsonw_str(w, "indice", rec->indice);
    jsonw_str(w, "cache_status", rec->cache_status);
    jsonw_int(w, "status", rec->status);
    jsonw_ms(w, "latency_ms", rec->latency_ms);
    jsonw_int(w, "bytes", (long long)rec->bytes);
    if (rec->upstream) {
        jsonw_int(w, "upstream_status", rec->upstream_status);
        jsonw_int(w, "upstream_attempts", rec->upstream_attempts);
        jsonw_ms(w, "upstream_ms", rec->upstream_ms);
        jsonw_str(w, "upstream_http", rec->upstream_http);
        jsonw_str(w, "correlation_id", rec->correlation_id);
    }
    jsonw_str(w, "error", rec->error);
    return w->failed ? -1 : 0;
}

char *
log_access_render(const struct access_record *rec)
{
    char stack[1024], *text = NULL;
    const char *line;
    struct jsonw w;
    size_t len;

    jsonw_init(&w, stack, sizeof(stack));
    if (access_write(rec, &w) == 0 && (line = jsonw_finish(&w, &len)) &&
        (text = malloc(len)) != NULL) {
        memcpy(text, line, len - 1);
        text[len - 1] = '\0';            /* without the newline */
    }
    jsonw_release(&w);
    return text;
}

void
log_access(const struct access_record *rec)
{
    char stack[1024];
    const char *line;
    struct jsonw w;
    size_t len;

    if (LOG_LEVEL_INFO < log_threshold)
        return;
    jsonw_init(&w, stack, sizeof(stack));
    if (access_write(rec, &w) == 0 && (line = jsonw_finish(&w, &len)))
        write_all(line, len);
    jsonw_release(&w);
}
