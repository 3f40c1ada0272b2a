#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "nginxlog.h"
#include "util.h"

#define DGRAM_MAX 4096
#define POLL_MS 200
/* A line is a few hundred bytes; $arg_indice is bounded by NGINX's request
 * line (8k by default), 6 bytes per character once JSON-escaped. */
#define LINE_MAX_BYTES 65536
#define FOLLOW_POLL_MS 100
/* Reads per step, so that a long backlog does not delay a stop. */
#define FOLLOW_READS 64
/* After a rename, NGINX writes the old file until it reopens its logs
 * (flushing its buffer there, flush=1s): read it until this long idle. */
#define ROTATE_GRACE_MS 2000

struct nginxlog_follow {
    char *path;
    struct metrics *metrics;
    int fd;                    /* -1: not open (missing, or between files) */
    dev_t dev;
    ino_t ino;
    off_t pos;                 /* bytes read from fd */
    int from_start;            /* the next file opened is all ours */
    int rotated;               /* the path names another file: finish fd */
    int more;                  /* the last step stopped before EOF */
    int skipping;              /* inside a line longer than buf */
    int missing_logged, long_logged, bad;
    uint64_t last_data_ms;
    size_t len;                /* a partial line at buf's start */
    char buf[LINE_MAX_BYTES];
};

struct nginxlog {
    int fd;                    /* NGINX_LOG_SOCKET; -1 in file mode */
    int stop;                  /* atomic */
    pthread_t thread;
    struct metrics *metrics;
    struct nginxlog_follow *follow; /* NGINX_LOG_FILE, else NULL */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
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
        rc = 0;                 /* hereproxy answered: counted there */
        goto done;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "status");
    if (!cJSON_IsNumber(v) || v->valuedouble < 100 || v->valuedouble > 599)
        goto done;
    e->status = (int)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(root, "bytes");
    e->bytes = cJSON_IsNumber(v) && v->valuedouble > 0
        ? (uint64_t)v->valuedouble : 0;
    v = cJSON_GetObjectItemCaseSensitive(root, "request_time");
    e->seconds = cJSON_IsNumber(v) && v->valuedouble > 0 ? v->valuedouble
                                                          : 0.0;
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
handle_line(struct metrics *m, const char *buf, size_t len,
    const char *setting, int *bad)
{
    struct nginxlog_entry e;

    switch (nginxlog_parse(buf, len, &e)) {
    case 1:
        metrics_request(m, e.indice, e.cache, e.status, e.seconds, e.bytes);
        return 1;
    case -1:
        if (!(*bad)++)          /* once: the log_format is wrong */
            log_warnx("%s: a line that is not the hereproxy_cache "
                "log_format", setting);
        return 0;
    default:
        return 0;
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
            f->skipping = 0;    /* the end of a line too long to count */
        else if (nl > p)
            counted += handle_line(f->metrics, p, (size_t)(nl - p),
                "NGINX_LOG_FILE", &f->bad);
        p = nl + 1;
    }
    f->len = (size_t)(end - p);
    if (f->len == sizeof(f->buf)) {
        /* No newline in a full buffer: drop the line up to its end. */
        if (!f->long_logged++)
            log_warnx("NGINX_LOG_FILE: a line longer than %d bytes, "
                "skipped", LINE_MAX_BYTES);
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
            return counted;     /* EOF, or an error the next step retries */
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
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
            (!f->from_start && (pos = lseek(fd, 0, SEEK_END)) < 0))) {
        close(fd);
        fd = -1;
        errno = EINVAL;
    }
    if (fd < 0) {
        if (!f->missing_logged++)
            log_warn("NGINX_LOG_FILE: cannot read %s yet, retrying",
                f->path);
        f->from_start = 1;      /* when it appears, all of it is new */
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
    follow_open(f);             /* a missing file is retried each step */
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

/* A file has no queue to overflow: NGINX's lines wait there for us. */
static void *
follow_main(void *arg)
{
    struct nginxlog *nl = arg;
    struct timespec pause = {0, FOLLOW_POLL_MS * 1000000L};

    while (!__atomic_load_n(&nl->stop, __ATOMIC_ACQUIRE)) {
        nginxlog_follow_step(nl->follow, (uint64_t)util_mono_ms());
        if (!nl->follow->more)
            nanosleep(&pause, NULL);
    }
    return NULL;
}

struct nginxlog *
nginxlog_start_file(const char *path, struct metrics *m, char *err,
    size_t errlen)
{
    struct nginxlog *nl = calloc(1, sizeof(*nl));

    if (nl == NULL || (nl->follow = nginxlog_follow_new(path, m)) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(nl);
        return NULL;
    }
    nl->fd = -1;
    nl->metrics = m;
    if (pthread_create(&nl->thread, NULL, follow_main, nl) != 0) {
        snprintf(err, errlen, "NGINX_LOG_FILE: cannot start the thread");
        nginxlog_follow_free(nl->follow);
        free(nl);
        return NULL;
    }
    return nl;
}

/* ---------------------------------------------------- NGINX_LOG_SOCKET */

/*
 * NGINX sends its syslog datagrams non-blocking and drops a line when the
 * socket's queue is full (net.unix.max_dgram_qlen datagrams, 10 by default
 * on Linux), so the queue is drained whole each time poll wakes us: one
 * poll per datagram left the queue full under load.
 */
static void *
reader_main(void *arg)
{
    struct nginxlog *nl = arg;
    char buf[DGRAM_MAX];
    int bad = 0;

    while (!__atomic_load_n(&nl->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd p = {nl->fd, POLLIN, 0};
        ssize_t n;

        if (poll(&p, 1, POLL_MS) <= 0)
            continue;
        while (!__atomic_load_n(&nl->stop, __ATOMIC_ACQUIRE)) {
            n = recv(nl->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                break;          /* EAGAIN: drained; else poll again */
            }
            if (n == 0)         /* an empty datagram: nothing to count */
                continue;
            handle_line(nl->metrics, buf, (size_t)n, "NGINX_LOG_SOCKET",
                &bad);
        }
    }
    return NULL;
}

struct nginxlog *
nginxlog_start(const char *path, struct metrics *m, char *err, size_t errlen)
{
    struct nginxlog *nl = calloc(1, sizeof(*nl));
    struct sockaddr_un sa;
    int rcvbuf = 1 << 20;

    if (nl == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    nl->fd = -1;
    nl->metrics = m;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "NGINX_LOG_SOCKET: path too long");
        goto fail;
    }
    snprintf(nl->path, sizeof(nl->path), "%s", path);
    if ((nl->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
        snprintf(err, errlen, "NGINX_LOG_SOCKET: socket: %s",
            strerror(errno));
        goto fail;
    }
    /* Bursts of hits must not be dropped while the thread catches up. */
    setsockopt(nl->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    unlink(path);               /* a stale socket from a crash */
    if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(err, errlen, "NGINX_LOG_SOCKET: bind %s: %s", path,
            strerror(errno));
        goto fail;
    }
    /* NGINX's workers run as another user; the directory guards access. */
    if (chmod(path, 0666) != 0) {
        snprintf(err, errlen, "NGINX_LOG_SOCKET: chmod %s: %s", path,
            strerror(errno));
        goto fail;
    }
    if (pthread_create(&nl->thread, NULL, reader_main, nl) != 0) {
        snprintf(err, errlen, "NGINX_LOG_SOCKET: cannot start the thread");
        goto fail;
    }
    return nl;
fail:
    if (nl->fd >= 0) {
        close(nl->fd);
        if (nl->path[0] != '\0')
            unlink(nl->path);
    }
    free(nl);
    return NULL;
}

void
nginxlog_stop(struct nginxlog *nl)
{
    if (nl == NULL)
        return;
    __atomic_store_n(&nl->stop, 1, __ATOMIC_RELEASE);
    pthread_join(nl->thread, NULL);
    if (nl->follow != NULL)
        nginxlog_follow_free(nl->follow);
    else {
        close(nl->fd);
        unlink(nl->path);
    }
    free(nl);
}
