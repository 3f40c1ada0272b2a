#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../log.h"
#include "nginxlog.h"
#include "../util.h"

/* A line is a few hundred bytes; $arg_indice is bounded by NGINX's request
 * line (8k by default), 6 bytes per character once JSON-escaped. */
#define LINE_MAX_BYTES 65536
/* Reads per step, so that a long backlog does not delay a stop. */
#define FOLLOW_READS 64
/* After a rename, NGINX writes the old file until it reopens its logs
 * (flushing its buffer there, flush=1s): read it until this long idle. */
#define ROTATE_GRACE_MS 2000

struct nginxlog_follow {
    char *path;
    struct metrics *metrics;
    int fd; /* -1: not open (missing, or between files) */
    dev_t dev;
    ino_t ino;
    off_t pos;      /* bytes read from fd */
    int from_start; /* the next file opened is all ours */
    int rotated;    /* the path names another file: finish fd */
    int more;       /* the last step stopped before EOF */
    int skipping;   /* inside a line longer than buf */
    int missing_logged, long_logged, bad;
    uint64_t last_data_ms;
    size_t len; /* a partial line at buf's start */
    char buf[LINE_MAX_BYTES];
};

/* The indice rule of request.c: 1 to 64 of [A-Za-z0-9_.-]. */
static int
indice_ok(const char *s)
{
    size_t n = strlen(s), i;

    if (n == 0 || n > 64)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int
nginxlog_parse(const char *buf, size_t len, struct nginxlog_entry *e)
{
    const char *brace = memchr(buf, '{', len);
    cJSON *root = NULL, *v;
    const char *cache;
    int rc = -1;

    /* Skip "<190>Nov 28 15:04:00 tag: " and anything else before '{'. */
    if (brace == NULL)
        return -1;
    root = cJSON_ParseWithLength(brace, len - (size_t)(brace - buf));
    if (root == NULL || !cJSON_IsObject(root))
        goto done;
    v = cJSON_GetObjectItemCaseSensitive(root, "cache");
    if (!cJSON_IsString(v))
        goto done;
    cache = v->valuestring;
    if (strcmp(cache, "HIT") == 0)
        e->cache = METRICS_HIT;
    else if (strcmp(cache, "STALE") == 0 || strcmp(cache, "UPDATING") == 0)
        e->cache = METRICS_STALE;
    else {
        rc = 0; /* hereproxy answered: counted there */
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "status");
    if (!cJSON_IsNumber(v) || v->valuedouble < 100 || v->valuedouble > 599)
        goto done;
    e->status = (int)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(root, "bytes");
    e->bytes =
        cJSON_IsNumber(v) && v->valuedouble > 0 ? (uint64_t)v->valuedouble : 0;
    v = cJSON_GetObjectItemCaseSensitive(root, "request_time");
    e->seconds = cJSON_IsNumber(v) && v->valuedouble > 0 ? v->valuedouble : 0.0;
    v = cJSON_GetObjectItemCaseSensitive(root, "indice");
    if (cJSON_IsString(v) && indice_ok(v->valuestring))
        snprintf(e->indice, sizeof(e->indice), "%s", v->valuestring);
    else
        snprintf(e->indice, sizeof(e->indice), "-");
    rc = 1;
done:
    cJSON_Delete(root);
    return rc;
}

/* Count one line if NGINX answered it; returns 1 when counted. */
static int
handle_line(struct metrics *m, const char *buf, size_t len, const char *setting,
    int *bad)
{
    struct nginxlog_entry e;

    switch (nginxlog_parse(buf, len, &e)) {
    case 1:
        metrics_request(m, e.indice, e.cache, e.status, e.seconds, e.bytes);
        return 1;
    case -1:
        if (!(*bad)++) /* once: the log_format is wrong */
            log_warnx("%s: a line that is not the hereproxy_cache "
                      "log_format",
                setting);
        return 0;
    default: return 0;
    }
}

/* ---------------------------------------------------- NGINX_LOG_FILE */

/* Count the complete lines in buf; keep a partial last line for later. */
static long
follow_lines(struct nginxlog_follow *f)
{
    char *p = f->buf, *end = f->buf + f->len, *nl;
    long counted = 0;

    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (f->skipping)
            f->skipping = 0; /* the end of a line too long to count */
        else if (nl > p)
            counted += handle_line(
                f->metrics, p, (size_t)(nl - p), "NGINX_LOG_FILE", &f->bad);
        p = nl + 1;
    }
    f->len = (size_t)(end - p);
    if (f->len == sizeof(f->buf)) {
        /* No newline in a full buffer: drop the line up to its end. */
        if (!f->long_logged++)
            log_warnx("NGINX_LOG_FILE: a line longer than %d bytes, "
                      "skipped",
                LINE_MAX_BYTES);
        f->skipping = 1;
        f->len = 0;
    } else if (f->len > 0 && p != f->buf)
        memmove(f->buf, p, f->len);
    return counted;
}

/* Read what was appended, up to FOLLOW_READS reads (f->more if cut). */
static long
follow_read(struct nginxlog_follow *f, uint64_t now_ms)
{
    long counted = 0;
    int i;

    for (i = 0; i < FOLLOW_READS; i++) {
        ssize_t n = read(f->fd, f->buf + f->len, sizeof(f->buf) - f->len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return counted; /* EOF, or an error the next step retries */
        f->pos += n;
        f->len += (size_t)n;
        f->last_data_ms = now_ms;
        counted += follow_lines(f);
    }
    f->more = 1;
    return counted;
}

/* Open the path: from its end at start, from its start afterwards. */
static int
follow_open(struct nginxlog_follow *f)
{
    struct stat st;
    off_t pos = 0;
    int fd;

    /* O_NONBLOCK: a FIFO at the path must not hang the thread. */
    fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0 &&
        (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
            (!f->from_start && (pos = lseek(fd, 0, SEEK_END)) < 0))) {
        close(fd);
        fd = -1;
        errno = EINVAL;
    }
    if (fd < 0) {
        if (!f->missing_logged++)
            log_warn("NGINX_LOG_FILE: cannot read %s yet, retrying", f->path);
        f->from_start = 1; /* when it appears, all of it is new */
        return -1;
    }
    if (f->missing_logged)
        log_info("NGINX_LOG_FILE: following %s", f->path);
    f->fd = fd;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->pos = pos;
    f->len = 0;
    f->skipping = 0;
    f->rotated = 0;
    f->missing_logged = 0;
    f->from_start = 1;
    return 0;
}

static void
follow_close(struct nginxlog_follow *f)
{
    /* NGINX writes whole lines: a partial one here is not coming back. */
    close(f->fd);
    f->fd = -1;
    f->len = 0;
    f->skipping = 0;
}

/*
 * Rotation: the path names another file (rename, then a new file), or ours
 * shrank (copytruncate; NGINX appends, so its writes start again at 0).
 */
static long
follow_check(struct nginxlog_follow *f, uint64_t now_ms)
{
    struct stat st;

    if (stat(f->path, &st) == 0 &&
        (st.st_ino != f->ino || st.st_dev != f->dev)) {
        f->rotated = 1;
        f->last_data_ms = now_ms;
        return 0;
    }
    if (fstat(f->fd, &st) == 0 && st.st_size < f->pos &&
        lseek(f->fd, 0, SEEK_SET) == 0) {
        f->pos = 0;
        f->len = 0;
        f->skipping = 0;
        return follow_read(f, now_ms);
    }
    return 0;
}

struct nginxlog_follow *
nginxlog_follow_new(const char *path, struct metrics *m)
{
    struct nginxlog_follow *f = calloc(1, sizeof(*f));

    if (f == NULL || (f->path = strdup(path)) == NULL) {
        free(f);
        return NULL;
    }
    f->metrics = m;
    f->fd = -1;
    follow_open(f); /* a missing file is retried each step */
    return f;
}

long
nginxlog_follow_step(struct nginxlog_follow *f, uint64_t now_ms)
{
    long counted = 0;

    f->more = 0;
    if (f->fd >= 0) {
        counted += follow_read(f, now_ms);
        if (!f->more && !f->rotated)
            counted += follow_check(f, now_ms);
        if (!f->more && f->rotated &&
            now_ms - f->last_data_ms >= ROTATE_GRACE_MS)
            follow_close(f);
    }
    if (f->fd < 0 && follow_open(f) == 0)
        counted += follow_read(f, now_ms);
    return counted;
}

int
nginxlog_follow_more(const struct nginxlog_follow *f)
{
    return f->more;
}

void
nginxlog_follow_free(struct nginxlog_follow *f)
{
    if (f == NULL)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    free(f);
}
