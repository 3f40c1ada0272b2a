#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "mcget.h"
#include "util.h"

#define HEAD_MAX 512
/*
 * Each thread receives answers into a buffer of its own: the whole answer
 * to a get usually comes in one recv, and the caller decodes it from there
 * (no malloc'd copy per value). It starts at BUF_START; one grown past
 * BUF_KEEP for a rare big value goes back to BUF_START at the next get.
 */
#define BUF_START (64u * 1024)
#define BUF_KEEP (256u * 1024)

struct server {
    char *host;
    char port[8];
    _Atomic int64_t down_until_ms; /* skipped until then after a failure */
    _Atomic int strikes;           /* gets failed in a row, any thread */
};

struct mcget {
    size_t n;
    struct server *servers;
    int timeout_ms, retry_s;
    size_t value_max;
    pthread_key_t key; /* each thread's struct conns */
};

/* One thread's connections, fd1[i] = fd + 1 for server i (0: none). */
struct conns {
    size_t n;
    char *buf; /* the answer being read */
    size_t cap;
    int fd1[];
};

static void
conns_close(void *arg)
{
    struct conns *c = arg;
    size_t i;

    for (i = 0; i < c->n; i++)
        if (c->fd1[i] > 0)
            close(c->fd1[i] - 1);
    free(c->buf);
    free(c);
}

struct mcget *
mcget_new(size_t nservers, const char *const *hosts, const unsigned *ports,
    int timeout_ms, int retry_s, size_t value_max)
{
    struct mcget *g = calloc(1, sizeof(*g));
    size_t i;

    if (g == NULL)
        return NULL;
    g->n = nservers;
    g->timeout_ms = timeout_ms;
    g->retry_s = retry_s;
    g->value_max = value_max;
    if ((g->servers = calloc(nservers ? nservers : 1, sizeof(*g->servers))) ==
            NULL ||
        pthread_key_create(&g->key, conns_close) != 0) {
        free(g->servers);
        free(g);
        return NULL;
    }
    for (i = 0; i < nservers; i++) {
        if ((g->servers[i].host = strdup(hosts[i])) == NULL) {
            mcget_free(g);
            return NULL;
        }
        snprintf(
            g->servers[i].port, sizeof(g->servers[i].port), "%u", ports[i]);
    }
    return g;
}

void
mcget_free(struct mcget *g)
{
    size_t i;
    struct conns *c;

    if (g == NULL)
        return;
    /* This thread's; the others closed theirs when they exited. */
    if ((c = pthread_getspecific(g->key)) != NULL) {
        pthread_setspecific(g->key, NULL);
        conns_close(c);
    }
    pthread_key_delete(g->key);
    for (i = 0; i < g->n; i++)
        free(g->servers[i].host);
    free(g->servers);
    free(g);
}

static void
set_timeouts(int fd, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/*
 * A blocking socket of family connected to addr, or -1; connecting waits
 * at most ms.
 */
static int
dial_addr(int family, const struct sockaddr *addr, socklen_t addrlen, int ms)
{
    struct pollfd p;
    int err = 0, flags, one = 1;
    socklen_t elen = sizeof(err);
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, addr, addrlen) != 0) {
        p.fd = fd;
        p.events = POLLOUT;
        /* A Unix socket's full backlog says EAGAIN: no waiting on that. */
        if (errno != EINPROGRESS || poll(&p, 1, ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 ||
            err != 0) {
            close(fd);
            return -1;
        }
    }
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    set_timeouts(fd, ms);
    if (family != AF_UNIX)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* A blocking connection to s, or -1; connecting waits at most ms. */
static int
dial(const struct server *s, int ms)
{
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1;

    if (s->host[0] == '/') {
        struct sockaddr_un un;
        size_t n = strlen(s->host);

        if (n >= sizeof(un.sun_path))
            return -1;
        memset(&un, 0, sizeof(un));
        un.sun_family = AF_UNIX;
        memcpy(un.sun_path, s->host, n + 1);
        return dial_addr(AF_UNIX, (struct sockaddr *)&un, sizeof(un), ms);
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(s->host, s->port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = dial_addr(ai->ai_family, ai->ai_addr, ai->ai_addrlen, ms);
    freeaddrinfo(res);
    return fd;
}

/* Read exactly len bytes; 0, or -1 (error, timeout, closed). */
static int
read_full(int fd, char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = recv(fd, p, len, MSG_WAITALL);

        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* c->buf resized to cap bytes, what it holds kept; 0 or -1. */
static int
buf_resize(struct conns *c, size_t cap)
{
    char *p = realloc(c->buf, cap);

    if (p == NULL)
        return -1;
    c->buf = p;
    c->cap = cap;
    return 0;
}

/*
 * Send the get and read its answer into c->buf. 1 hit (*val points into
 * c->buf), 0 miss, -1 error (why set): the connection must then be
 * closed, it may be out of step; -2 when the server had closed the
 * connection before answering (restarted, say); -3 when the value is
 * larger than value_max (not read: the connection must be closed too).
 */
static int
exchange(int fd, struct conns *c, size_t value_max, const char *key,
    size_t keylen, const char **val, size_t *len, const char **why)
{
    char line[HEAD_MAX + 1], *eol;
    char req[4 + 256 + 2];
    size_t have = 0, head, vlen, total;
    unsigned long long bytes;
    unsigned flags;
    int keyend;

    if (keylen > 250) {
        *why = "key too long";
        return -1;
    }
    memcpy(req, "get ", 4);
    memcpy(req + 4, key, keylen);
    memcpy(req + 4 + keylen, "\r\n", 2);
    if (send(fd, req, keylen + 6, MSG_NOSIGNAL) != (ssize_t)(keylen + 6)) {
        *why = "send failed or timed out";
        return errno == EPIPE || errno == ECONNRESET ? -2 : -1;
    }
    /* The first line, END or VALUE <key> <flags> <bytes>, and what came. */
    for (;;) {
        ssize_t n = recv(fd, c->buf + have, c->cap - have, 0);

        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            *why = n == 0 ? "connection closed" : "no answer in time";
            /* Closed before a byte came: a kept connection gone stale. */
            return have == 0 && (n == 0 || errno == ECONNRESET) ? -2 : -1;
        }
        have += (size_t)n;
        eol = memmem(c->buf, have < HEAD_MAX ? have : HEAD_MAX, "\r\n", 2);
        if (eol != NULL)
            break;
        if (have >= HEAD_MAX) {
            *why = "answer line too long";
            return -1;
        }
    }
    head = (size_t)(eol - c->buf) + 2;
    if (head == 5 && memcmp(c->buf, "END", 3) == 0) {
        if (have != head) {
            *why = "unexpected bytes after END";
            return -1;
        }
        return 0;
    }
    memcpy(line, c->buf, head - 2);
    line[head - 2] = '\0';
    keyend = 0;
    if (head < keylen + 11 || strncmp(line, "VALUE ", 6) != 0 ||
        memcmp(line + 6, key, keylen) != 0 || line[6 + keylen] != ' ' ||
        sscanf(line + 7 + keylen, "%u %llu%n", &flags, &bytes, &keyend) != 2 ||
        line[7 + keylen + keyend] != '\0') {
        *why = "unexpected answer";
        return -1;
    }
    if (bytes > value_max) {
        *why = "value larger than any the proxy writes";
        return -3;
    }
    vlen = (size_t)bytes;
    /* The value, then \r\nEND\r\n: usually all here already. */
    total = head + vlen + 7;
    if (have > total) {
        *why = "unexpected bytes after the value";
        return -1;
    }
    if (total > c->cap && buf_resize(c, total) != 0) {
        *why = "out of memory";
        return -1;
    }
    if (have < total && read_full(fd, c->buf + have, total - have) != 0) {
        *why = "value cut off or late";
        return -1;
    }
    if (memcmp(c->buf + head + vlen, "\r\nEND\r\n", 7) != 0) {
        *why = "value not followed by END";
        return -1;
    }
    c->buf[head + vlen] = '\0';
    *val = c->buf + head;
    *len = vlen;
    return 1;
}

enum mcget_result
mcget_get(struct mcget *g, uint32_t server, const char *key, size_t keylen,
    const char **val, size_t *len, const char **why)
{
    struct conns *c = pthread_getspecific(g->key);
    struct server *s;
    int64_t now = util_mono_ms();
    int fd, rc;

    if (server >= g->n) {
        *why = "no such server";
        return MCGET_ERROR;
    }
    s = &g->servers[server];
    if (c == NULL) {
        if ((c = calloc(1, sizeof(*c) + g->n * sizeof(int))) == NULL ||
            (c->buf = malloc(BUF_START)) == NULL) {
            free(c);
            *why = "out of memory";
            return MCGET_ERROR;
        }
        c->n = g->n;
        c->cap = BUF_START;
        pthread_setspecific(g->key, c);
    } else if (c->cap > BUF_KEEP) {
        buf_resize(c, BUF_START); /* failing, it stays as it is */
    }
    if (now < s->down_until_ms) {
        *why = "server marked down after a failure";
        return MCGET_ERROR;
    }
    for (;;) {
        int fresh = 0;

        if ((fd = c->fd1[server] - 1) < 0) {
            if ((fd = dial(s, g->timeout_ms)) < 0) {
                *why = "cannot connect";
                break;
            }
            c->fd1[server] = fd + 1;
            fresh = 1;
        }
        rc = exchange(fd, c, g->value_max, key, keylen, val, len, why);
        if (rc >= 0) {
            if (s->strikes != 0)
                s->strikes = 0;
            return rc == 1 ? MCGET_HIT : MCGET_MISS;
        }
        close(fd);
        c->fd1[server] = 0;
        /* The server answered; what it holds is refused, not its health. */
        if (rc == -3)
            return MCGET_TOO_LARGE;
        /* A kept connection the server closed: once more on a new one. */
        if (fresh || rc != -2) {
            /* Slow or garbled: down only after a run of them. */
            if (++s->strikes < MCGET_STRIKES)
                return MCGET_ERROR;
            break;
        }
    }
    /* Refused (or a run of failures): it is gone, skip it for a while. */
    s->strikes = 0;
    s->down_until_ms = util_mono_ms() + (int64_t)g->retry_s * 1000;
    return MCGET_ERROR;
}

int
mcget_server_down(struct mcget *g, uint32_t server)
{
    return server < g->n && util_mono_ms() < g->servers[server].down_until_ms;
}
