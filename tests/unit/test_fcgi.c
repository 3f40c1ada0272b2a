#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fcgi.h"

/*
 * The FastCGI responder against a web server played by the test: records
 * written to the other end of a socket pair, as NGINX and Apache write
 * them, whole or a byte at a time; what the proxy writes back, decoded.
 */

struct pair {
    int web;                /* the web server's end */
    struct fcgi_conn *conn; /* the proxy's */
};

static void
pair_open(struct pair *p)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->web = sv[1];
    p->conn = fcgi_conn_new(sv[0]);
    assert_non_null(p->conn);
}

static void
pair_close(struct pair *p)
{
    fcgi_conn_free(p->conn);
    if (p->web >= 0)
        close(p->web);
}

/* A growing byte string of records. */
struct rec {
    unsigned char b[300000];
    size_t n;
};

static void
record(struct rec *r, int type, int id, const void *content, size_t len,
    size_t padding)
{
    assert_true(r->n + FCGI_HEADER_LEN + len + padding <= sizeof(r->b));
    fcgi_record_header(r->b + r->n, type, id, len, padding);
    r->n += FCGI_HEADER_LEN;
    if (len > 0)
        memcpy(r->b + r->n, content, len);
    r->n += len;
    memset(r->b + r->n, 0xee, padding);
    r->n += padding;
}

static void
begin(struct rec *r, int id, int role, int keep)
{
    unsigned char b[8] = {0};

    b[0] = (unsigned char)(role >> 8);
    b[1] = (unsigned char)role;
    b[2] = keep ? FCGI_KEEP_CONN : 0;
    record(r, FCGI_BEGIN_REQUEST, id, b, 8, 0);
}

/* One name-value pair, short or long lengths as the sizes need. */
static size_t
pair_bytes(unsigned char *out, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), o = 0;
    size_t lens[2] = {nl, vl};
    int i;

    for (i = 0; i < 2; i++) {
        if (lens[i] < 128) {
            out[o++] = (unsigned char)lens[i];
        } else {
            out[o++] = (unsigned char)(0x80 | (lens[i] >> 24));
            out[o++] = (unsigned char)(lens[i] >> 16);
            out[o++] = (unsigned char)(lens[i] >> 8);
            out[o++] = (unsigned char)lens[i];
        }
    }
    memcpy(out + o, name, nl);
    memcpy(out + o + nl, value, vl);
    return o + nl + vl;
}

/* A GET as NGINX sends it: begin, params (split over records), stdin. */
static void
get_request(struct rec *r, int id, int keep, const char *uri)
{
    static unsigned char p[70000];
    char big[300];
    size_t n = 0, off;

    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    n += pair_bytes(p + n, "REQUEST_METHOD", "GET");
    n += pair_bytes(p + n, "REQUEST_URI", uri);
    n += pair_bytes(p + n, "HTTP_USER_AGENT", big); /* 4-byte length */
    n += pair_bytes(p + n, "EMPTY", "");
    begin(r, id, FCGI_RESPONDER, keep);
    /* Records of 7 bytes: pairs and lengths split across records. */
    for (off = 0; off < n; off += 7)
        record(r, FCGI_PARAMS, id, p + off, n - off < 7 ? n - off : 7, off % 3);
    record(r, FCGI_PARAMS, id, NULL, 0, 0);
    record(r, FCGI_STDIN, id, NULL, 0, 0);
}

static void
send_all(int fd, const void *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);

        assert_true(w > 0);
        b = (const char *)b + w;
        n -= (size_t)w;
    }
}

static const char *
param(const struct fcgi_request *q, const char *name)
{
    size_t i;

    for (i = 0; i < q->nparams; i++)
        if (strcmp(q->params[i].name, name) == 0)
            return q->params[i].value;
    return NULL;
}

static void
test_read_requests(void **state)
{
    static struct rec r;
    struct fcgi_request q;
    struct pair p;

    (void)state;
    pair_open(&p);
    r.n = 0;
    get_request(&r, 1, 1, "/here-proxy/base/mc/1/0/0/png");
    get_request(&r, 1, 0, "/second");
    send_all(p.web, r.b, r.n);
    assert_int_equal(fcgi_read_request(p.conn, &q), 1);
    assert_int_equal(q.id, 1);
    assert_int_equal(q.keep_conn, 1);
    assert_int_equal(q.nparams, 4);
    assert_string_equal(param(&q, "REQUEST_METHOD"), "GET");
    assert_string_equal(
        param(&q, "REQUEST_URI"), "/here-proxy/base/mc/1/0/0/png");
    assert_int_equal(strlen(param(&q, "HTTP_USER_AGENT")), 299);
    assert_string_equal(param(&q, "EMPTY"), "");
    assert_int_equal(fcgi_read_request(p.conn, &q), 1);
    assert_int_equal(q.keep_conn, 0);
    assert_string_equal(param(&q, "REQUEST_URI"), "/second");
    /* The web server closes between requests: a clean end. */
    shutdown(p.web, SHUT_WR);
    assert_int_equal(fcgi_read_request(p.conn, &q), 0);
    pair_close(&p);
}

/* Written a byte at a time by another thread: read across every split. */
struct trickle_arg {
    int fd;
    const struct rec *r;
};

static void *
trickle_bytes(void *arg)
{
    struct trickle_arg *t = arg;
    size_t i;

    for (i = 0; i < t->r->n; i++)
        send_all(t->fd, t->r->b + i, 1);
    return NULL;
}

static void
test_read_a_byte_at_a_time(void **state)
{
    static struct rec r;
    struct fcgi_request q;
    struct trickle_arg t;
    struct pair p;
    pthread_t th;

    (void)state;
    pair_open(&p);
    r.n = 0;
    get_request(&r, 3, 1, "/slow");
    t.fd = p.web;
    t.r = &r;
    assert_int_equal(pthread_create(&th, NULL, trickle_bytes, &t), 0);
    assert_int_equal(fcgi_read_request(p.conn, &q), 1);
    pthread_join(th, NULL);
    assert_int_equal(q.id, 3);
    assert_string_equal(param(&q, "REQUEST_URI"), "/slow");
    pair_close(&p);
}

/* Read the records the proxy wrote back, until one of type `until`. */
static size_t
read_back(int fd, unsigned char *b, size_t cap, int until)
{
    size_t n = 0, off = 0;

    for (;;) {
        while (off + FCGI_HEADER_LEN <= n) {
            size_t len = (size_t)b[off + 4] << 8 | b[off + 5];

            if (off + FCGI_HEADER_LEN + len + b[off + 6] > n)
                break;
            if (b[off + 1] == until)
                return n;
            off += FCGI_HEADER_LEN + len + b[off + 6];
        }
        {
            ssize_t got = recv(fd, b + n, cap - n, 0);

            if (got <= 0)
                return n;
            n += (size_t)got;
        }
    }
}

/*
 * What a web server never sends, or may: a second request on the same
 * connection (refused: one at a time), a role we do not play, a
 * management record we do not know, FCGI_GET_VALUES, an abort.
 */
static void
test_refusals_and_management(void **state)
{
    static struct rec r;
    unsigned char b[4096], q8[64];
    struct fcgi_request q;
    struct pair p;
    size_t n, qn = 0;

    (void)state;
    pair_open(&p);
    fcgi_set_capacity(64);
    r.n = 0;
    begin(&r, 5, 2 /* authorizer */, 1);
    qn += pair_bytes(q8 + qn, "FCGI_MPXS_CONNS", "");
    qn += pair_bytes(q8 + qn, "FCGI_MAX_CONNS", "");
    qn += pair_bytes(q8 + qn, "OTHER", "");
    record(&r, FCGI_GET_VALUES, 0, q8, qn, 0);
    record(&r, 99, 0, NULL, 0, 0); /* unknown management */
    begin(&r, 7, FCGI_RESPONDER, 1);
    begin(&r, 8, FCGI_RESPONDER, 1); /* multiplexed: refused */
    record(&r, FCGI_ABORT_REQUEST, 7, NULL, 0, 0);
    get_request(&r, 9, 1, "/after");
    send_all(p.web, r.b, r.n);
    assert_int_equal(fcgi_read_request(p.conn, &q), 1);
    assert_int_equal(q.id, 9);
    assert_string_equal(param(&q, "REQUEST_URI"), "/after");
    n = recv(p.web, b, sizeof(b), MSG_DONTWAIT);
    /* END_REQUEST(5, UNKNOWN_ROLE) */
    assert_true(n >= 16 + 20);
    assert_int_equal(b[1], FCGI_END_REQUEST);
    assert_int_equal(b[3], 5);
    assert_int_equal(b[FCGI_HEADER_LEN + 4], 3);
    /* GET_VALUES_RESULT with the two names we know, not OTHER */
    assert_int_equal(b[16 + 1], FCGI_GET_VALUES_RESULT);
    assert_non_null(memmem(b, n, "FCGI_MPXS_CONNS0", 16));
    assert_non_null(memmem(b, n, "FCGI_MAX_CONNS64", 16));
    assert_null(memmem(b, n, "OTHER", 5));
    /* UNKNOWN_TYPE naming 99, END_REQUEST(8, CANT_MPX_CONN), and the
     * aborted request 7 ended */
    {
        const unsigned char unknown[] = {1, FCGI_UNKNOWN_TYPE, 0, 0, 0, 8};
        const unsigned char mpx[] = {1, FCGI_END_REQUEST, 0, 8, 0, 8};
        const unsigned char ended7[] = {1, FCGI_END_REQUEST, 0, 7, 0, 8};
        unsigned char *u = memmem(b, n, unknown, sizeof(unknown));
        unsigned char *m = memmem(b, n, mpx, sizeof(mpx));

        assert_non_null(u);
        assert_int_equal(u[FCGI_HEADER_LEN], 99);
        assert_non_null(m);
        assert_int_equal(m[FCGI_HEADER_LEN + 4], 1);
        assert_non_null(memmem(b, n, ended7, sizeof(ended7)));
    }
    pair_close(&p);
}

/* Broken input ends the connection: never a crash, never a request. */
static void
test_protocol_errors(void **state)
{
    static struct rec r;
    static unsigned char big[FCGI_PARAMS_MAX + 10];
    struct fcgi_request q;
    struct pair p;
    size_t off;

    (void)state;
    /* A version other than 1. */
    pair_open(&p);
    r.n = 0;
    get_request(&r, 1, 1, "/x");
    r.b[0] = 2;
    send_all(p.web, r.b, r.n);
    assert_int_equal(fcgi_read_request(p.conn, &q), -1);
    pair_close(&p);
    /* Parameters beyond FCGI_PARAMS_MAX. */
    pair_open(&p);
    r.n = 0;
    begin(&r, 1, FCGI_RESPONDER, 1);
    memset(big, 'a', sizeof(big));
    for (off = 0; off < sizeof(big); off += 60000)
        record(&r, FCGI_PARAMS, 1, big + off,
            sizeof(big) - off < 60000 ? sizeof(big) - off : 60000, 0);
    send_all(p.web, r.b, r.n);
    assert_int_equal(fcgi_read_request(p.conn, &q), -1);
    pair_close(&p);
    /* A pair whose length runs past the stream. */
    pair_open(&p);
    r.n = 0;
    begin(&r, 1, FCGI_RESPONDER, 1);
    record(&r, FCGI_PARAMS, 1, "\x05\x7fNAME", 6, 0);
    record(&r, FCGI_PARAMS, 1, NULL, 0, 0);
    record(&r, FCGI_STDIN, 1, NULL, 0, 0);
    send_all(p.web, r.b, r.n);
    assert_int_equal(fcgi_read_request(p.conn, &q), -1);
    pair_close(&p);
    /* Closed in the middle of a request. */
    pair_open(&p);
    r.n = 0;
    get_request(&r, 1, 1, "/x");
    send_all(p.web, r.b, r.n - 3);
    shutdown(p.web, SHUT_WR);
    assert_int_equal(fcgi_read_request(p.conn, &q), -1);
    pair_close(&p);
}

/* Decode the STDOUT content written back; returns its length. */
static size_t
stdout_of(const unsigned char *b, size_t n, unsigned char *out, int *ended)
{
    size_t off = 0, o = 0;

    *ended = 0;
    while (off + FCGI_HEADER_LEN <= n) {
        size_t len = (size_t)b[off + 4] << 8 | b[off + 5];

        assert_int_equal(b[off], 1);
        if (b[off + 1] == FCGI_STDOUT) {
            memcpy(out + o, b + off + FCGI_HEADER_LEN, len);
            o += len;
        } else if (b[off + 1] == FCGI_END_REQUEST) {
            assert_int_equal(b[off + FCGI_HEADER_LEN + 4], 0);
            *ended = 1;
        }
        off += FCGI_HEADER_LEN + len + b[off + 6];
    }
    assert_int_equal(off, n);
    return o;
}

struct reader {
    int fd;
    unsigned char *b;
    size_t cap, n;
};

static void *
read_all(void *arg)
{
    struct reader *r = arg;

    r->n = read_back(r->fd, r->b, r->cap, FCGI_END_REQUEST);
    return NULL;
}

/* A response of any size: records of at most 64 KiB, the end with it. */
static void
test_write_responses(void **state)
{
    static const size_t sizes[] = {
        0, 1, 65527, 65528, 65529, 200000, 1100000, 3000000};
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        unsigned char *body = malloc(len + 1);
        unsigned char *back = malloc(len + 4096 + len / 8);
        unsigned char *text = malloc(len + 100);
        struct reader r = {0, back, len + 4096 + len / 8, 0};
        struct fcgi_out out;
        struct pair p;
        pthread_t th;
        int ended;

        for (j = 0; j < len; j++)
            body[j] = (unsigned char)(j * 31 + i);
        pair_open(&p);
        r.fd = p.web;
        assert_int_equal(pthread_create(&th, NULL, read_all, &r), 0);
        fcgi_out_init(&out, p.conn, 258);
        assert_int_equal(
            fcgi_write(&out, "Status: 200 OK\r\n\r\n", 18, body, len, 1), 0);
        assert_int_equal(out.body_written, len);
        assert_true(out.ended);
        pthread_join(th, NULL);
        assert_int_equal(stdout_of(back, r.n, text, &ended), 18 + len);
        assert_true(ended);
        assert_memory_equal(text, "Status: 200 OK\r\n\r\n", 18);
        if (len > 0)
            assert_memory_equal(text + 18, body, len);
        /* Each record says request 258. */
        assert_int_equal(back[2], 1);
        assert_int_equal(back[3], 2);
        pair_close(&p);
        free(body);
        free(back);
        free(text);
    }
}

/* A stream of chunks, then the end; a gone peer fails the writes. */
static void
test_stream_and_gone(void **state)
{
    unsigned char back[4096], text[4096];
    struct fcgi_out out;
    struct pair p;
    size_t n;
    int ended;

    (void)state;
    pair_open(&p);
    fcgi_out_init(&out, p.conn, 1);
    assert_int_equal(fcgi_peer_gone(&out), 0);
    assert_int_equal(fcgi_write(&out, "H\r\n\r\n", 5, NULL, 0, 0), 0);
    assert_int_equal(fcgi_write(&out, NULL, 0, "abc", 3, 0), 0);
    assert_int_equal(fcgi_write(&out, NULL, 0, "de", 2, 0), 0);
    assert_int_equal(fcgi_end(&out), 0);
    assert_int_equal(out.body_written, 5);
    n = read_back(p.web, back, sizeof(back), FCGI_END_REQUEST);
    assert_int_equal(stdout_of(back, n, text, &ended), 10);
    assert_memory_equal(text, "H\r\n\r\nabcde", 10);
    assert_true(ended);
    /* Ended: nothing more goes out for it. */
    assert_int_equal(fcgi_write(&out, NULL, 0, "x", 1, 0), -1);
    pair_close(&p);

    /* The web server hung up (its client went away). */
    pair_open(&p);
    fcgi_out_init(&out, p.conn, 1);
    close(p.web);
    p.web = -1;
    assert_int_equal(fcgi_peer_gone(&out), 1);
    assert_int_equal(fcgi_write(&out, "H\r\n\r\n", 5, "body", 4, 1), -1);
    assert_true(out.failed);
    assert_int_equal(out.body_written, 0);
    pair_close(&p);

    /* A cut stream: a record of version 0 tells the web server. */
    pair_open(&p);
    fcgi_out_init(&out, p.conn, 1);
    assert_int_equal(fcgi_write(&out, "H\r\n\r\n", 5, "ab", 2, 0), 0);
    fcgi_abort(&out);
    assert_true(out.failed);
    n = 0;
    for (;;) {
        ssize_t got = recv(p.web, back + n, sizeof(back) - n, 0);

        if (got <= 0)
            break;
        n += (size_t)got;
    }
    assert_int_equal(n, FCGI_HEADER_LEN + 7 + FCGI_HEADER_LEN);
    assert_int_equal(back[n - FCGI_HEADER_LEN], 0);
    pair_close(&p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_requests),
        cmocka_unit_test(test_read_a_byte_at_a_time),
        cmocka_unit_test(test_refusals_and_management),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_write_responses),
        cmocka_unit_test(test_stream_and_gone),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
