#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "nginxlog.h"

#define DGRAM_MAX 4096
#define POLL_MS 200

struct nginxlog {
    int fd;
    int stop;                  /* atomic */
    pthread_t thread;
    struct metrics *metrics;
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

static void
handle_line(struct nginxlog *nl, const char *buf, size_t len, int *bad)
{
    struct nginxlog_entry e;

    switch (nginxlog_parse(buf, len, &e)) {
    case 1:
        metrics_request(nl->metrics, e.indice, e.cache, e.status, e.seconds,
            e.bytes);
        break;
    case -1:
        if (!(*bad)++)          /* once: the log_format is wrong */
            log_warnx("NGINX_LOG_SOCKET: a line that is not the "
                "hereproxy_cache log_format");
        break;
    default:
        break;
    }
}

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
            handle_line(nl, buf, (size_t)n, &bad);
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
    close(nl->fd);
    unlink(nl->path);
    free(nl);
}
