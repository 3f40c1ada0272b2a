#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mcget.h"

/* A scripted memcached on loopback: how it answers the next get. */
enum mode {
    MISS,
    HIT_SPLIT,
    HIT_WHOLE,
    CLOSE_ONCE,
    GARBAGE,
    TRAILING,
    SLOW_ONCE
};

static struct {
    int listen_fd;
    unsigned port;
    int unix_fd; /* the same server on a Unix socket */
    char path[64];
    pthread_t unix_thread;
    _Atomic int mode;
    _Atomic size_t whole_len; /* HIT_WHOLE's value length */
    _Atomic int accepts;
    pthread_t thread;
} srv;

#define VLEN 5000

static char
pattern(size_t i)
{
    return (char)('a' + i % 23);
}

static void
send_str(int fd, const char *s, size_t n)
{
    struct timespec ts = {0, 2000000L};

    send(fd, s, n, MSG_NOSIGNAL);
    nanosleep(&ts, NULL); /* so the client sees it in pieces */
}

/* A value of n bytes in one send: head, value and END together. */
static void
send_whole(int fd, const char *key, size_t n, const char *after)
{
    size_t alen = strlen(after), hlen, i;
    char *msg = malloc(300 + n + 7 + alen);

    if (msg == NULL)
        return;
    hlen = (size_t)sprintf(msg, "VALUE %s 0 %zu\r\n", key, n);
    for (i = 0; i < n; i++)
        msg[hlen + i] = pattern(i);
    memcpy(msg + hlen + n, "\r\nEND\r\n", 7);
    memcpy(msg + hlen + n + 7, after, alen);
    send(fd, msg, hlen + n + 7 + alen, MSG_NOSIGNAL);
    free(msg);
}

/* Answer gets on one connection until the client goes or we hang up. */
static void
serve(int fd)
{
    char line[300], value[VLEN], head[400];
    size_t i;

    for (i = 0; i < VLEN; i++)
        value[i] = pattern(i);
    for (;;) {
        size_t have = 0;
        char *key;

        while (have < sizeof(line) - 1) {
            ssize_t n = recv(fd, line + have, 1, 0);
            if (n <= 0)
                return;
            have++;
            if (have >= 2 && line[have - 2] == '\r' && line[have - 1] == '\n')
                break;
        }
        line[have - 2] = '\0';
        key = line + 4;
        switch (srv.mode) {
        case MISS: send_str(fd, "END\r\n", 5); break;
        case HIT_SPLIT:
            snprintf(head, sizeof(head), "VALUE %s 0 %d\r\n", key, VLEN);
            send_str(fd, head, 3); /* "VAL" */
            send_str(fd, head + 3, strlen(head) - 3);
            send_str(fd, value, 100);
            send_str(fd, value + 100, VLEN - 100);
            send_str(fd, "\r\nEND\r\n", 7);
            break;
        case HIT_WHOLE: send_whole(fd, key, srv.whole_len, ""); break;
        case TRAILING: send_whole(fd, key, 10, "END\r\n"); break;
        case CLOSE_ONCE:
            srv.mode = HIT_SPLIT; /* the next connection is answered */
            return;
        case GARBAGE: send_str(fd, "SERVER_ERROR out of memory\r\n", 28); break;
        case SLOW_ONCE: {
            struct timespec slow = {0, 400000000L}; /* past the timeout */

            srv.mode = MISS;
            nanosleep(&slow, NULL);
            send_str(fd, "END\r\n", 5);
            break;
        }
        }
    }
}

static void *
server_main(void *arg)
{
    int listen_fd = *(int *)arg;

    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);

        if (fd < 0)
            return NULL;
        srv.accepts++;
        serve(fd);
        close(fd);
    }
}

static int
setup(void **state)
{
    struct sockaddr_in a;
    struct sockaddr_un u;
    socklen_t alen = sizeof(a);

    (void)state;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (srv.listen_fd < 0 ||
        bind(srv.listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(srv.listen_fd, 8) != 0 ||
        getsockname(srv.listen_fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    srv.port = ntohs(a.sin_port);
    if (pthread_create(&srv.thread, NULL, server_main, &srv.listen_fd) != 0)
        return -1;

    memset(&u, 0, sizeof(u));
    u.sun_family = AF_UNIX;
    snprintf(
        srv.path, sizeof(srv.path), "/tmp/test_mcget.%ld.sock", (long)getpid());
    snprintf(u.sun_path, sizeof(u.sun_path), "%s", srv.path);
    unlink(srv.path);
    srv.unix_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (srv.unix_fd < 0 ||
        bind(srv.unix_fd, (struct sockaddr *)&u, sizeof(u)) != 0 ||
        listen(srv.unix_fd, 8) != 0)
        return -1;
    return pthread_create(&srv.unix_thread, NULL, server_main, &srv.unix_fd);
}

static int
teardown(void **state)
{
    (void)state;
    shutdown(srv.listen_fd, SHUT_RDWR);
    close(srv.listen_fd);
    pthread_join(srv.thread, NULL);
    shutdown(srv.unix_fd, SHUT_RDWR);
    close(srv.unix_fd);
    pthread_join(srv.unix_thread, NULL);
    unlink(srv.path);
    return 0;
}

static void
test_get_against_a_scripted_server(void **state)
{
    const char *hosts[1] = {"127.0.0.1"};
    unsigned ports[1] = {srv.port};
    struct mcget *g = mcget_new(1, hosts, ports, 250, 1, 1u << 20);
    const char *why = NULL, *val = NULL;
    size_t len = 0, i;
    int bad = 0;
    struct timespec wait = {1, 100000000L};

    (void)state;
    assert_non_null(g);
    srv.mode = MISS;
    assert_int_equal(mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_MISS);

    /* A value in pieces, its first line split too. */
    srv.mode = HIT_SPLIT;
    assert_int_equal(mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_HIT);
    assert_int_equal(len, VLEN);
    for (i = 0; i < VLEN; i++)
        bad += val[i] != pattern(i);
    assert_int_equal(bad, 0);
    assert_int_equal(val[VLEN], '\0');
    assert_int_equal(srv.accepts, 1); /* one kept connection so far */

    /* The server hung up the kept connection: a new one, transparently. */
    srv.mode = CLOSE_ONCE;
    assert_int_equal(mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_HIT);
    assert_int_equal(srv.accepts, 2);

    /*
     * One answer too slow: an error for that get, on a connection closed,
     * but the server is not skipped: the next get is asked (and answered).
     */
    srv.mode = SLOW_ONCE;
    assert_int_equal(
        mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_ERROR);
    assert_string_equal(why, "no answer in time");
    assert_int_equal(mcget_server_down(g, 0), 0);
    assert_int_equal(mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_MISS);
    assert_int_equal(srv.accepts, 3);

    /* Answers that are not ones, MCGET_STRIKES in a row: skipped. */
    srv.mode = GARBAGE;
    for (i = 0; i < MCGET_STRIKES; i++) {
        assert_int_equal(mcget_server_down(g, 0), 0);
        assert_int_equal(
            mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_ERROR);
        assert_string_equal(why, "unexpected answer");
    }
    assert_int_equal(mcget_server_down(g, 0), 1);
    srv.mode = MISS;
    assert_int_equal(
        mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_ERROR);
    assert_string_equal(why, "server marked down after a failure");
    nanosleep(&wait, NULL); /* retry_s = 1 */
    assert_int_equal(mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_MISS);
    assert_int_equal(srv.accepts, 3 + MCGET_STRIKES);

    /* A success between failures starts the count again. */
    srv.mode = GARBAGE;
    for (i = 0; i + 1 < MCGET_STRIKES; i++)
        mcget_get(g, 0, "hp1:k", 5, &val, &len, &why);
    srv.mode = MISS;
    assert_int_equal(mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_MISS);
    srv.mode = GARBAGE;
    mcget_get(g, 0, "hp1:k", 5, &val, &len, &why);
    assert_int_equal(mcget_server_down(g, 0), 0);
    srv.mode = MISS;

    /* No such server index. */
    assert_int_equal(
        mcget_get(g, 1, "hp1:k", 5, &val, &len, &why), MCGET_ERROR);
    mcget_free(g);
}

static int
value_is_pattern(const char *val, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (val[i] != pattern(i))
            return 0;
    return val[len] == '\0';
}

/*
 * Values larger than the thread's receive buffer (it grows, and shrinks
 * back after one past its keep size), and bytes after END (an error: the
 * connection is out of step).
 */
static void
test_values_of_every_size(void **state)
{
    static const size_t sizes[] = {
        0, 1, 60000, 70000, 200000, 300000, 5000, 1200000, 16384};
    const char *hosts[1] = {"127.0.0.1"};
    unsigned ports[1] = {srv.port};
    struct mcget *g = mcget_new(1, hosts, ports, 1000, 1, 2u << 20);
    const char *why = NULL, *val = NULL;
    size_t len = 0, i;

    (void)state;
    assert_non_null(g);
    srv.mode = HIT_WHOLE;
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        srv.whole_len = sizes[i];
        assert_int_equal(
            mcget_get(g, 0, "hp1:big", 7, &val, &len, &why), MCGET_HIT);
        assert_int_equal(len, sizes[i]);
        assert_true(value_is_pattern(val, len));
    }
    srv.mode = TRAILING;
    assert_int_equal(
        mcget_get(g, 0, "hp1:big", 7, &val, &len, &why), MCGET_ERROR);
    assert_string_equal(why, "unexpected bytes after the value");
    mcget_free(g);
}

/*
 * A value larger than value_max (more than the proxy ever writes) is
 * refused without being read; the server is not marked down for it: the
 * next get on a new connection is answered.
 */
static void
test_value_over_max_refused(void **state)
{
    const char *hosts[1] = {"127.0.0.1"};
    unsigned ports[1] = {srv.port};
    struct mcget *g = mcget_new(1, hosts, ports, 1000, 60, 100000);
    const char *why = NULL, *val = NULL;
    size_t len = 0;

    (void)state;
    assert_non_null(g);
    srv.mode = HIT_WHOLE;
    srv.whole_len = 100001;
    assert_int_equal(
        mcget_get(g, 0, "hp1:big", 7, &val, &len, &why), MCGET_TOO_LARGE);
    srv.whole_len = 100000;
    assert_int_equal(
        mcget_get(g, 0, "hp1:big", 7, &val, &len, &why), MCGET_HIT);
    assert_int_equal(len, 100000);
    assert_true(value_is_pattern(val, len));
    mcget_free(g);
}

/* Nobody listening: an error at once, then skipped. */
static void
test_unreachable_server(void **state)
{
    const char *hosts[1] = {"127.0.0.1"};
    unsigned ports[1];
    struct mcget *g;
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    const char *why = NULL;
    const char *val = NULL;
    size_t len = 0;

    (void)state;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    ports[0] = ntohs(a.sin_port);
    close(fd); /* a port nobody listens on */
    g = mcget_new(1, hosts, ports, 250, 2, 1u << 20);
    assert_non_null(g);
    assert_int_equal(
        mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_ERROR);
    assert_string_equal(why, "cannot connect");
    assert_int_equal(
        mcget_get(g, 0, "hp1:k", 5, &val, &len, &why), MCGET_ERROR);
    assert_string_equal(why, "server marked down after a failure");
    mcget_free(g);
}

/* A server named by its socket's path: the same gets over AF_UNIX. */
static void
test_get_over_a_unix_socket(void **state)
{
    const char *hosts[2] = {srv.path, "/nonexistent/memcached.sock"};
    unsigned ports[2] = {0, 0};
    struct mcget *g = mcget_new(2, hosts, ports, 250, 1, 1u << 20);
    const char *why = NULL, *val = NULL;
    size_t len = 0;
    int accepts = srv.accepts;

    (void)state;
    assert_non_null(g);
    srv.mode = MISS;
    assert_int_equal(mcget_get(g, 0, "hp1:u", 5, &val, &len, &why), MCGET_MISS);
    srv.mode = HIT_WHOLE;
    srv.whole_len = 70000;
    assert_int_equal(mcget_get(g, 0, "hp1:u", 5, &val, &len, &why), MCGET_HIT);
    assert_int_equal(len, 70000);
    assert_true(value_is_pattern(val, len));
    assert_int_equal(srv.accepts, accepts + 1); /* one kept connection */

    /* A path nobody listens on: cannot connect, then skipped. */
    assert_int_equal(
        mcget_get(g, 1, "hp1:u", 5, &val, &len, &why), MCGET_ERROR);
    assert_string_equal(why, "cannot connect");
    assert_int_equal(
        mcget_get(g, 1, "hp1:u", 5, &val, &len, &why), MCGET_ERROR);
    assert_string_equal(why, "server marked down after a failure");
    mcget_free(g);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_against_a_scripted_server),
        cmocka_unit_test(test_values_of_every_size),
        cmocka_unit_test(test_value_over_max_refused),
        cmocka_unit_test(test_unreachable_server),
        cmocka_unit_test(test_get_over_a_unix_socket),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
