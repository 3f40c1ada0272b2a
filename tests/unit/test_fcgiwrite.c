#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <fastcgi.h>
#include <fcgiapp.h>

#include "fcgiwrite.h"

/* A stand-in for libfcgi's output stream: counts flushes, keeps bytes. */
static unsigned char sbuf[1 << 20];
static int flushes;

static void
no_fill(FCGX_Stream *s)
{
    (void)s;
}

static void
count_flush(FCGX_Stream *s, int do_close)
{
    (void)s;
    (void)do_close;
    flushes++;
}

static FCGX_Stream fake;

static void
fake_reset(void)
{
    FCGX_Stream s = {sbuf, sbuf, sbuf + sizeof(sbuf), NULL, 0, 0, 0, 0,
        no_fill, count_flush, NULL};

    fake = s;
    flushes = 0;
}

static unsigned char *
pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n ? n : 1);
    size_t i;

    assert_non_null(p);
    for (i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 131 + seed) & 0xff);
    return p;
}

static void
read_exact(int fd, unsigned char *buf, size_t n)
{
    size_t off = 0;

    while (off < n) {
        ssize_t r = read(fd, buf + off, n - off);
        assert_true(r > 0);
        off += (size_t)r;
    }
}

/*
 * Reads FCGI_STDOUT records of request_id from fd until want bytes of
 * content came; checks every header. Returns the records read.
 */
static int
read_records(int fd, int request_id, unsigned char *content, size_t want)
{
    size_t got = 0;
    int records = 0;

    while (got < want) {
        unsigned char h[FCGI_HEADER_LEN], pad[256];
        size_t len;

        read_exact(fd, h, sizeof(h));
        assert_int_equal(h[0], FCGI_VERSION_1);
        assert_int_equal(h[1], FCGI_STDOUT);
        assert_int_equal((h[2] << 8) | h[3], request_id);
        len = (size_t)((h[4] << 8) | h[5]);
        assert_true(len > 0);
        assert_true(got + len <= want);
        read_exact(fd, content + got, len);
        if (h[6] > 0)
            read_exact(fd, pad, h[6]);
        got += len;
        records++;
    }
    return records;
}

static void
roundtrip(size_t head_len, size_t body_len, int request_id, int records)
{
    unsigned char *head = pattern(head_len, 7), *body = pattern(body_len, 11);
    unsigned char *got = malloc(head_len + body_len + 1);
    struct fcgi_conn c;
    size_t sent = 12345;
    int sv[2];

    assert_non_null(got);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    /* Room for the whole response: the writer never waits on the reader. */
    {
        int size = 4 << 20;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    fake_reset();
    c.fd = sv[0];
    c.request_id = request_id;
    assert_int_equal(
        fcgi_write_response(&c, &fake, head, head_len, body, body_len, &sent),
        0);
    assert_int_equal(sent, body_len);
    assert_int_equal(fake.FCGI_errno, 0);
    assert_int_equal(flushes, 1);        /* what libfcgi held went first */
    assert_ptr_equal(fake.wrNext, sbuf); /* and nothing went through it */
    assert_int_equal(read_records(sv[1], request_id, got,
                         head_len + body_len), records);
    assert_memory_equal(got, head, head_len);
    if (body_len > 0)
        assert_memory_equal(got + head_len, body, body_len);
    {
        /* Then the end of the request, in the same writev: an empty
         * FCGI_STDOUT and FCGI_END_REQUEST (status 0, complete); out is
         * closed, so FCGX_Finish_r writes neither again. */
        unsigned char end[2 * FCGI_HEADER_LEN + 8], more;

        read_exact(sv[1], end, sizeof(end));
        assert_int_equal(end[0], FCGI_VERSION_1);
        assert_int_equal(end[1], FCGI_STDOUT);
        assert_int_equal((end[2] << 8) | end[3], request_id);
        assert_int_equal((end[4] << 8) | end[5], 0);
        assert_int_equal(end[8], FCGI_VERSION_1);
        assert_int_equal(end[9], FCGI_END_REQUEST);
        assert_int_equal((end[10] << 8) | end[11], request_id);
        assert_int_equal((end[12] << 8) | end[13], 8);
        assert_int_equal(end[14], 0);
        assert_int_equal(end[16] | end[17] | end[18] | end[19], 0);
        assert_int_equal(end[20], FCGI_REQUEST_COMPLETE);
        assert_int_equal(recv(sv[1], &more, 1, MSG_DONTWAIT), -1);
        assert_true(fake.isClosed && fake.wasFCloseCalled);
    }
    close(sv[0]);
    close(sv[1]);
    free(head);
    free(body);
    free(got);
}

static void
test_one_record(void **state)
{
    (void)state;
    roundtrip(412, 16384, 1, 1);       /* a tile with its headers */
    roundtrip(9000, 0, 258, 1);        /* headers only (HEAD), id > 255 */
    roundtrip(0, 65528, 65535, 1);     /* exactly one full record */
}

static void
test_many_records(void **state)
{
    (void)state;
    roundtrip(300, 65528, 3, 2);       /* spills 300 bytes into a second */
    roundtrip(65530, 70000, 9, 3);     /* head alone fills the first */
    roundtrip(500, 16 * 65528 - 500, 2, 16);   /* the most in one writev */
}

static void
test_too_large_goes_through_the_stream(void **state)
{
    size_t body_len = 16 * 65528;
    unsigned char *body = pattern(body_len, 3);
    struct fcgi_conn c = {-1, 1};      /* would fail if it were used */
    size_t sent = 0;

    (void)state;
    fake_reset();
    assert_int_equal(
        fcgi_write_response(&c, &fake, "H", 1, body, body_len, &sent), 0);
    assert_int_equal(sent, body_len);
    assert_int_equal(fake.wrNext - sbuf, (long)body_len + 1);
    assert_false(fake.isClosed);         /* libfcgi ends this request */
    assert_int_equal(sbuf[0], 'H');
    assert_memory_equal(sbuf + 1, body, body_len);
    free(body);
}

static void
test_peer_gone(void **state)
{
    unsigned char *body = pattern(20000, 5);
    struct fcgi_conn c;
    size_t sent = 12345;
    int sv[2];
    char byte;

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    fake_reset();
    c.fd = sv[0];
    c.request_id = 1;
    assert_int_equal(
        fcgi_write_response(&c, &fake, "H", 1, body, 20000, &sent), -1);
    /* Nothing went out, and the stream says so (FCGX_GetError). */
    assert_int_equal(sent, 0);
    assert_int_not_equal(FCGX_GetError(&fake), 0);
    /* Shut down: libfcgi's own last write fails too, and it closes. */
    assert_true(read(sv[0], &byte, 1) == 0);
    close(sv[0]);
    free(body);
}

/* A web server that hung up shows before anything is written. */
static void
test_peer_hung_up(void **state)
{
    struct fcgi_conn c;
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fake_reset();
    c.fd = sv[0];
    c.request_id = 1;
    /* Still there, even with a request waiting to be read. */
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(fcgi_peer_gone(&c, &fake), 0);
    assert_int_equal(FCGX_GetError(&fake), 0);
    close(sv[1]);
    assert_int_equal(fcgi_peer_gone(&c, &fake), 1);
    assert_int_not_equal(FCGX_GetError(&fake), 0);
    close(sv[0]);
}

/*
 * The web server takes part of the response, then stops reading until the
 * write timeout: the body bytes it took are told, not the whole body.
 */
static void
test_part_written(void **state)
{
    size_t body_len = 600000, sent = 0;
    unsigned char *body = pattern(body_len, 9);
    struct timeval tv = {0, 200000};
    struct fcgi_conn c;
    int sv[2], size = 4096;

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    assert_int_equal(
        setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
    fake_reset();
    c.fd = sv[0];
    c.request_id = 1;
    assert_int_equal(fcgi_write_response(&c, &fake, "Status: 200\r\n\r\n", 15,
                         body, body_len, &sent),
        -1);
    assert_true(sent > 0);
    assert_true(sent < body_len);
    assert_int_not_equal(FCGX_GetError(&fake), 0);
    close(sv[0]);
    close(sv[1]);
    free(body);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_record),
        cmocka_unit_test(test_many_records),
        cmocka_unit_test(test_too_large_goes_through_the_stream),
        cmocka_unit_test(test_peer_gone),
        cmocka_unit_test(test_part_written),
        cmocka_unit_test(test_peer_hung_up),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
