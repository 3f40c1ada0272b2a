#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "jsonw.h"
#include "log.h"
#include "util.h"

/* Written by a reload, read by every thread that logs: atomic. */
static int log_threshold = LOG_LEVEL_INFO;

static enum log_level
threshold(void)
{
    return (enum log_level)__atomic_load_n(&log_threshold, __ATOMIC_RELAXED);
}

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
    __atomic_store_n(&log_threshold, (int)level, __ATOMIC_RELAXED);
}

/* Whole lines only, so that lines from threads never interleave. */
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

/*
 * Access lines wait here and go out together, when the buffer fills or
 * LOG_FLUSH_MS after the first of them came: a write(2) per line was about
 * a fifth of a cache hit's CPU. Any other line (events, warnings) goes out
 * at once with whatever waits before it, so the order is kept.
 */
#define PENDING_MAX (64 * 1024)

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the buffer got its first line, or stop */
    char buf[PENDING_MAX];
    size_t len;
    long flush_ms;
    int running; /* atomic: the flusher thread is there */
    int stop;
    pthread_t flusher;
} pending = {
    .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* Called with pending.lock held. */
static void
pending_write(void)
{
    if (pending.len > 0)
        write_all(pending.buf, pending.len);
    pending.len = 0;
}

/* A whole line, newline included; at_once: this one must not wait. */
static void
put_line(const char *line, size_t len, int at_once)
{
    int was_empty;

    if (!__atomic_load_n(&pending.running, __ATOMIC_ACQUIRE)) {
        write_all(line, len);
        return;
    }
    pthread_mutex_lock(&pending.lock);
    if (pending.len + len > sizeof(pending.buf))
        pending_write();
    if (len > sizeof(pending.buf)) {
        write_all(line, len);
    } else {
        was_empty = pending.len == 0;
        memcpy(pending.buf + pending.len, line, len);
        pending.len += len;
        if (at_once)
            pending_write();
        else if (was_empty)
            pthread_cond_signal(&pending.wake);
    }
    pthread_mutex_unlock(&pending.lock);
}

static void *
flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pending.lock);
    while (!pending.stop) {
        struct timespec until;

        if (pending.len == 0) {
            pthread_cond_wait(&pending.wake, &pending.lock);
            continue;
        }
        /* The first line came: give it LOG_FLUSH_MS of company. */
        util_timespec_in(CLOCK_MONOTONIC, pending.flush_ms, &until);
        while (!pending.stop &&
            pthread_cond_timedwait(&pending.wake, &pending.lock, &until) == 0)
            ;
        pending_write();
    }
    pending_write();
    pthread_mutex_unlock(&pending.lock);
    return NULL;
}

void
log_flush(void)
{
    pthread_mutex_lock(&pending.lock);
    pending_write();
    pthread_mutex_unlock(&pending.lock);
}

int
log_buffer_start(long flush_ms)
{
    pthread_condattr_t attr;

    if (flush_ms <= 0 || __atomic_load_n(&pending.running, __ATOMIC_ACQUIRE))
        return 0;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_destroy(&pending.wake);
    pthread_cond_init(&pending.wake, &attr);
    pthread_condattr_destroy(&attr);
    pending.flush_ms = flush_ms;
    pending.stop = 0;
    if (pthread_create(&pending.flusher, NULL, flusher_main, NULL) != 0)
        return -1;
    __atomic_store_n(&pending.running, 1, __ATOMIC_RELEASE);
    return 0;
}

void
log_buffer_stop(void)
{
    if (!__atomic_load_n(&pending.running, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&pending.lock);
    pending.stop = 1;
    pthread_cond_signal(&pending.wake);
    pthread_mutex_unlock(&pending.lock);
    pthread_join(pending.flusher, NULL);
    __atomic_store_n(&pending.running, 0, __ATOMIC_RELEASE);
    log_flush();
}

/* text has room for one more byte: its NUL becomes the newline. */
static void
write_line(char *text)
{
    size_t len = strlen(text);

    text[len++] = '\n';
    put_line(text, len, 1);
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

    if (level < threshold())
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

#define LOG_FN(name, level, with_errno)                                        \
    void name(const char *fmt, ...)                                            \
    {                                                                          \
        va_list ap;                                                            \
        va_start(ap, fmt);                                                     \
        vlog(level, with_errno, fmt, ap);                                      \
        va_end(ap);                                                            \
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

    if (level < threshold() || (obj = new_line(level)) == NULL) {
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
    /* The same fields on every line, so that log queries need no guard. */
    if (rec->upstream) {
        if (rec->upstream_status > 0)
            jsonw_int(w, "upstream_status", rec->upstream_status);
        else
            jsonw_null(w, "upstream_status");
        jsonw_int(w, "upstream_attempts", rec->upstream_attempts);
        jsonw_ms(w, "upstream_ms", rec->upstream_ms);
        jsonw_str(w, "upstream_http", rec->upstream_http);
        jsonw_str(w, "correlation_id", rec->correlation_id);
    } else {
        jsonw_null(w, "upstream_status");
        jsonw_int(w, "upstream_attempts", 0);
        jsonw_null(w, "upstream_http");
    }
    jsonw_str(w, "error", rec->error);
    jsonw_str(w, "aborted", rec->aborted);
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
        text[len - 1] = '\0'; /* without the newline */
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

    if (LOG_LEVEL_INFO < threshold())
        return;
    jsonw_init(&w, stack, sizeof(stack));
    if (access_write(rec, &w) == 0 && (line = jsonw_finish(&w, &len)))
        put_line(line, len, 0);
    jsonw_release(&w);
}
