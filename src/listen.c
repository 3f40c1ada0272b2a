#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"
#include "util.h"

int
listen_parse(
    const char *addr, struct listen_addr *out, char *err, size_t errlen)
{
    const char *colon, *host;
    size_t hlen;
    long port;

    memset(out, 0, sizeof(*out));
    if (addr == NULL || *addr == '\0') {
        snprintf(err, errlen, "empty address");
        return -1;
    }
    if (strchr(addr, '/') != NULL) {
        if (strlen(addr) >= sizeof(out->path)) {
            snprintf(err, errlen, "a Unix socket path of at most %zu bytes",
                sizeof(out->path) - 1);
            return -1;
        }
        out->kind = LISTEN_UNIX;
        memcpy(out->path, addr, strlen(addr) + 1);
        return 0;
    }
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');

        if (end == NULL || end[1] != ':') {
            snprintf(err, errlen, "expected [IPv6]:port");
            return -1;
        }
        host = addr + 1;
        hlen = (size_t)(end - host);
        colon = end + 1;
    } else {
        colon = strchr(addr, ':');
        if (colon == NULL) {
            snprintf(err, errlen,
                "expected host:port, [IPv6]:port or a "
                "Unix socket path (with a /, such as ./%s)",
                addr);
            return -1;
        }
        if (strchr(colon + 1, ':') != NULL) {
            snprintf(err, errlen,
                "an IPv6 address goes in brackets: [IPv6]:port, such as "
                "[::1]:9000");
            return -1;
        }
        host = addr;
        hlen = (size_t)(colon - addr);
    }
    if (hlen >= sizeof(out->host) ||
        util_parse_long(colon + 1, 1, 65535, &port) != 0) {
        snprintf(err, errlen, "expected host:port with a port of 1 to 65535");
        return -1;
    }
    out->kind = LISTEN_TCP;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    snprintf(out->port, sizeof(out->port), "%ld", port);
    return 0;
}

static int
open_unix(const struct listen_addr *a, int backlog, char *err, size_t errlen)
{
    struct sockaddr_un un;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    memcpy(un.sun_path, a->path, strlen(a->path) + 1);
    unlink(a->path); /* a stale socket from a crash */
    if (bind(fd, (struct sockaddr *)&un, sizeof(un)) != 0 ||
        listen(fd, backlog) != 0 ||
        /* Web servers run as another user; the directory guards access. */
        chmod(a->path, 0666) != 0) {
        snprintf(
            err, errlen, "cannot listen on %s: %s", a->path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int
open_tcp(const struct listen_addr *a, int backlog, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, one = 1, rc, saved = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    /* ":port" is every IPv4 address, as libfcgi's FCGX_OpenSocket had it. */
    if (a->host[0] == '\0')
        hints.ai_family = AF_INET;
    if ((rc = getaddrinfo(a->host[0] != '\0' ? a->host : NULL, a->port, &hints,
             &res)) != 0) {
        snprintf(
            err, errlen, "cannot resolve %s: %s", a->host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(
            ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, backlog) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "cannot listen on %s port %s: %s", a->host,
            a->port, strerror(saved ? saved : EADDRNOTAVAIL));
    return fd;
}

int
listen_open(const struct listen_addr *a, int backlog, char *err, size_t errlen)
{
    return a->kind == LISTEN_UNIX ? open_unix(a, backlog, err, errlen)
                                  : open_tcp(a, backlog, err, errlen);
}
