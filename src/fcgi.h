#ifndef HEREPROXY_FCGI_H
#define HEREPROXY_FCGI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * The FastCGI responder side of the protocol (FastCGI 1.0), written wholly
 * here, as OpenBSD httpd writes its client side: records are read from the
 * web server's connection into one buffer per connection, and a response
 * goes out as FCGI_STDOUT records with the end of the request
 * (FCGI_END_REQUEST) in the same writev(2). The proxy knows how much of a
 * response the socket took, and pays no copy through a library's buffer.
 *
 * One request at a time per connection (NGINX and Apache never multiplex;
 * a second FCGI_BEGIN_REQUEST is answered FCGI_CANT_MPX_CONN). Management
 * records: FCGI_GET_VALUES is answered, others FCGI_UNKNOWN_TYPE. Roles
 * other than FCGI_RESPONDER are refused (FCGI_UNKNOWN_ROLE). The request
 * body (FCGI_STDIN) is read and dropped: no endpoint takes one.
 */

/* Parameters of one request: names and values, NUL-terminated. */
struct fcgi_param {
    const char *name;
    const char *value;
    size_t name_len;
    size_t value_len;
};

/* The most parameter bytes (names and values) one request may carry. */
#define FCGI_PARAMS_MAX (64 * 1024)
#define FCGI_NPARAMS_MAX 256

struct fcgi_request {
    int id;        /* the FastCGI request id */
    int keep_conn; /* FCGI_KEEP_CONN: the connection stays open */
    size_t nparams;
    const struct fcgi_param *params; /* valid until the next read */
};

/* A connection from the web server. */
struct fcgi_conn;

/*
 * Take over connected socket fd (blocking; closed by fcgi_conn_free).
 * NULL when out of memory (fd is closed then too).
 */
struct fcgi_conn *fcgi_conn_new(int fd);
void fcgi_conn_free(struct fcgi_conn *c);
int fcgi_conn_fd(const struct fcgi_conn *c);

/*
 * Wait for and read the next request. Returns 1 with *req filled, 0 when
 * the web server closed the connection between requests, -1 on a protocol
 * or I/O error (the connection is then done), -2 when a signal
 * interrupted the wait (call again to go on; what was read is kept).
 */
int fcgi_read_request(struct fcgi_conn *c, struct fcgi_request *req);

/*
 * 1 when nothing of a next request has come on c: no byte read and kept,
 * none waiting on the socket (one poll(2)). Such a connection may be
 * closed between requests without losing one; a request the web server
 * sends at that very moment meets a closed connection, and NGINX sends it
 * again on a new one (main.c, the idle bound).
 */
int fcgi_conn_idle(const struct fcgi_conn *c);

/* The FCGI_MAX_CONNS and FCGI_MAX_REQS answered to FCGI_GET_VALUES. */
void fcgi_set_capacity(long max_conns);

/*
 * The response of the request being served. Writes that fail (the web
 * server gone, or not reading within the socket's send timeout) mark it
 * failed; later writes do nothing.
 */
struct fcgi_out {
    struct fcgi_conn *conn;
    int id;
    int failed;
    int ended;
    uint64_t body_written; /* body bytes the socket took (see below) */
};

void fcgi_out_init(struct fcgi_out *out, struct fcgi_conn *c, int id);

/*
 * Write head then body as FCGI_STDOUT records, in one writev, and with
 * end, the end of the request too. body_written grows by the body bytes
 * the socket took. Returns 0, or -1 when the write failed.
 */
int fcgi_write(struct fcgi_out *out, const void *head, size_t head_len,
    const void *body, size_t body_len, int end);

/* End the request (empty FCGI_STDOUT, FCGI_END_REQUEST). 0 or -1. */
int fcgi_end(struct fcgi_out *out);

/*
 * The response was cut off after its head went out: the client must not
 * take what it got for the whole body. Neither an FCGI_END_REQUEST nor a
 * bare close tells every web server so (Apache ends a chunked body
 * normally on the former, unbuffered NGINX on the latter), but both drop
 * the client's connection on a protocol error: a record header of
 * version 0, then the connection is shut down.
 */
void fcgi_abort(struct fcgi_out *out);

/*
 * 1 when the web server has closed its side of the connection (it does
 * when its client went away): a response written now would be lost
 * unseen. One poll(2), for responses that waited on something.
 */
int fcgi_peer_gone(const struct fcgi_out *out);

/* Records, for tests and the bench: the header of one record. */
#define FCGI_HEADER_LEN 8
void fcgi_record_header(unsigned char h[FCGI_HEADER_LEN], int type, int id,
    size_t len, size_t padding);

enum fcgi_record_type {
    FCGI_BEGIN_REQUEST = 1,
    FCGI_ABORT_REQUEST = 2,
    FCGI_END_REQUEST = 3,
    FCGI_PARAMS = 4,
    FCGI_STDIN = 5,
    FCGI_STDOUT = 6,
    FCGI_STDERR = 7,
    FCGI_DATA = 8,
    FCGI_GET_VALUES = 9,
    FCGI_GET_VALUES_RESULT = 10,
    FCGI_UNKNOWN_TYPE = 11
};

#define FCGI_RESPONDER 1
#define FCGI_KEEP_CONN 1

#endif
