#ifndef HEREPROXY_LOG_H
#define HEREPROXY_LOG_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR
};

/* Parse DEBUG|INFO|WARN|ERROR (any case); returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_set_level(enum log_level level);

/*
 * With flush_ms > 0, access lines wait in a buffer (64 KiB) and are
 * written together when it fills or flush_ms after the first came; every
 * other line is written at once, after those waiting. log_buffer_stop
 * writes what waits and ends the buffering (before exit); log_flush only
 * writes what waits. Without log_buffer_start every line is written at
 * once. Returns 0, or -1 when the flusher thread cannot start.
 */
int log_buffer_start(long flush_ms);
void log_buffer_stop(void);
void log_flush(void);

/*
 * Diagnostics: each is one JSON line on stderr {"ts","level","msg"}.
 * log_warn appends strerror(errno). fatal and fatalx exit(1): startup only.
 */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/*
 * A lifecycle event ("start", "stop", "memcached_lost", ...): adds "ts",
 * "level" and "event" to fields (which may be NULL) and writes one line.
 * Takes ownership of fields.
 */
void log_event(enum log_level level, const char *event, cJSON *fields);

/*
 * Request ids (X-Request-ID). A given id is used when it is 1 to
 * LOG_REQUEST_ID_MAX bytes of [A-Za-z0-9._:-]; anything else could forge
 * log fields or headers, and a new one is generated instead.
 */
#define LOG_REQUEST_ID_MAX 128

/* 1 when id (NULL allowed) may be used as it is. */
int log_request_id_valid(const char *id);

/*
 * Write a new random id (LOG_REQUEST_ID_GEN hex digits) into buf, which
 * must hold at least LOG_REQUEST_ID_GEN + 1 bytes; returns buf. No
 * allocation, no lock: a per-thread generator seeded from getrandom(2).
 */
#define LOG_REQUEST_ID_GEN 16
char *log_request_id_new(char *buf, size_t size);

/* What one request did; strings may be NULL. Logged at INFO. */
struct access_record {
    int64_t wall_ms;
    const char *method;
    const char *path; /* without the query: no key can be in it */
    const char *indice;
    const char *cache_status;
    const char *request_id;
    const char *remote_addr;
    int status;
    double latency_ms;
    size_t bytes;
    int upstream;        /* 1 when it went upstream; else the
                                upstream_status and upstream_http fields
                                are null and upstream_attempts 0 */
    int upstream_status; /* HTTP status, 0 when none came */
    int upstream_attempts;
    double upstream_ms;
    const char *upstream_http;
    const char *correlation_id;
    const char *error;
    const char *aborted; /* the response aborted on purpose: why, or NULL */
};

void log_access(const struct access_record *rec);

/*
 * Render an access record as one JSON line, without the newline.
 * Returns a malloc'd string the caller frees, or NULL. For tests.
 */
char *log_access_render(const struct access_record *rec);

#endif
