#ifndef HEREPROXY_LISTEN_H
#define HEREPROXY_LISTEN_H

#include <stddef.h>

/*
 * Where the proxy listens for its web server (--listen, HEREPROXY_LISTEN):
 * a Unix socket's path (anything with a '/'), "[IPv6]:port", or
 * "host:port" (an IPv4 address or a name; ":port" for every IPv4
 * address). Anything else is refused, never taken for a file name.
 */

enum listen_kind { LISTEN_UNIX, LISTEN_TCP };

struct listen_addr {
    enum listen_kind kind;
    char host[256]; /* TCP: the host, without brackets */
    char port[8];   /* TCP: 1..65535 */
    char path[108]; /* UNIX: the path */
};

/* Parse addr. 0, or -1 with a message in err. Pure. */
int listen_parse(
    const char *addr, struct listen_addr *out, char *err, size_t errlen);

/*
 * A listening socket on a (a stale Unix socket file is replaced, the new
 * one made 0666: the directory guards access). The fd, or -1 with err set.
 */
int listen_open(
    const struct listen_addr *a, int backlog, char *err, size_t errlen);

#endif
