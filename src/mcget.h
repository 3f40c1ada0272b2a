#ifndef HEREPROXY_MCGET_H
#define HEREPROXY_MCGET_H

#include <stddef.h>
#include <stdint.h>

/*
 * memcached gets on blocking connections of each thread's own.
 *
 * libmemcached's sockets are non-blocking whatever NO_BLOCK says, so each
 * get costs send, recv (EAGAIN), poll and recv, and a handle comes from a
 * pool behind a mutex. A worker thread here keeps one blocking connection
 * per server (with send and receive timeouts on the socket): a get is one
 * send and the recvs of its answer. libmemcached still chooses the server
 * (mc.c) and does every other operation.
 *
 * A server that refuses a connection, or fails MCGET_STRIKES gets in a
 * row (timeouts, replies that do not parse), is skipped for retry_s
 * seconds: one slow answer on a busy machine must not hide every tile the
 * server holds from every thread while HERE may be failing too. The
 * failing thread's connection to it is closed either way.
 */
#define MCGET_STRIKES 3

struct mcget;

enum mcget_result {
    MCGET_HIT,
    MCGET_MISS,
    MCGET_TOO_LARGE, /* the value passed value_max: refused, not read */
    MCGET_ERROR
};

/*
 * hosts[i]:ports[i] for each server index, or hosts[i] alone when it is a
 * Unix socket's path (starts with '/'); timeout_ms for connect and I/O.
 * value_max: the largest value a get accepts (the largest the caller ever
 * writes); a larger one is MCGET_TOO_LARGE, its connection closed without
 * marking the server down.
 */
struct mcget *mcget_new(size_t nservers, const char *const *hosts,
    const unsigned *ports, int timeout_ms, int retry_s, size_t value_max);
/* Every thread that used it has exited, or will not use it again. */
void mcget_free(struct mcget *g);

/*
 * "get key" on server. On MCGET_HIT *val points into the calling thread's
 * receive buffer (a NUL after the *len bytes): read it before the thread's
 * next mcget_get. On MCGET_ERROR, why says what went wrong.
 */
enum mcget_result mcget_get(struct mcget *g, uint32_t server, const char *key,
    size_t keylen, const char **val, size_t *len, const char **why);

/* 1 while server is skipped after failures, else 0. */
int mcget_server_down(struct mcget *g, uint32_t server);

#endif
