#ifndef HEREPROXY_FCGIWRITE_H
#define HEREPROXY_FCGIWRITE_H

#include <stddef.h>

/*
 * A response written to the web server in one writev(2), past libfcgi's
 * stream. libfcgi copies what it is given into an 8 KiB buffer and writes
 * each time the buffer fills: a 16 KiB tile is a copy and three writes,
 * and FCGX_Finish_r a fourth for the end of the request. Here the same
 * FCGI_STDOUT records go out at once, straight from the cached entry,
 * with the end of the request (the empty FCGI_STDOUT and FCGI_END_REQUEST)
 * in the same writev.
 */

struct FCGX_Stream;

/* The connection a request came on: libfcgi's ipcFd and requestId. */
struct fcgi_conn {
    int fd;
    int request_id;
};

/*
 * Write head then body (either may be empty) as FCGI_STDOUT records of
 * c's request, after whatever out holds buffered, and end the request:
 * out is closed (FCGX_Finish_r writes nothing more; later writes to out
 * fail). Returns 0, or -1 when the web server is gone or stopped reading
 * (the connection is then shut down, so that libfcgi closes it and the
 * web server sees the response cut off; FCGX_GetError(out) is then not
 * 0). A response too large for one writev goes through out instead, and
 * libfcgi ends the request. *body_sent (may be NULL) gets how many body
 * bytes the socket took: body_len, or fewer on failure.
 */
int fcgi_write_response(const struct fcgi_conn *c, struct FCGX_Stream *out,
    const void *head, size_t head_len, const void *body, size_t body_len,
    size_t *body_sent);

/*
 * 1 when the web server has hung up c (NGINX does when its client goes
 * away, unless fastcgi_ignore_client_abort): a response written now would
 * be taken by the socket and lost, so the failure would show nowhere. The
 * connection is then shut down and out marked failed, as when a write
 * fails. One poll(2): for responses that waited on HERE, not for hits.
 */
int fcgi_peer_gone(const struct fcgi_conn *c, struct FCGX_Stream *out);

#endif
