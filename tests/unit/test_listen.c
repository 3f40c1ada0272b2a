#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listen.h"

static void
parses_host_port(void **state)
{
    struct listen_addr a;
    char err[128];

    (void)state;
    assert_int_equal(listen_parse("127.0.0.1:9000", &a, err, sizeof(err)), 0);
    assert_int_equal(a.kind, LISTEN_TCP);
    assert_string_equal(a.host, "127.0.0.1");
    assert_string_equal(a.port, "9000");
    assert_int_equal(listen_parse("localhost:1", &a, err, sizeof(err)), 0);
    assert_string_equal(a.host, "localhost");
    assert_string_equal(a.port, "1");
}

static void
parses_bracketed_ipv6(void **state)
{
    struct listen_addr a;
    char err[128];

    (void)state;
    assert_int_equal(listen_parse("[::1]:9000", &a, err, sizeof(err)), 0);
    assert_int_equal(a.kind, LISTEN_TCP);
    assert_string_equal(a.host, "::1");
    assert_string_equal(a.port, "9000");
}

/* ":port" is every IPv4 address, as it was with libfcgi. */
static void
parses_port_alone(void **state)
{
    struct listen_addr a;
    char err[128];

    (void)state;
    assert_int_equal(listen_parse(":9000", &a, err, sizeof(err)), 0);
    assert_int_equal(a.kind, LISTEN_TCP);
    assert_string_equal(a.host, "");
    assert_string_equal(a.port, "9000");
}

static void
parses_paths_with_a_slash(void **state)
{
    struct listen_addr a;
    char err[128];

    (void)state;
    assert_int_equal(
        listen_parse("/run/hereproxy/fcgi.sock", &a, err, sizeof(err)), 0);
    assert_int_equal(a.kind, LISTEN_UNIX);
    assert_string_equal(a.path, "/run/hereproxy/fcgi.sock");
    assert_int_equal(listen_parse("./fcgi.sock", &a, err, sizeof(err)), 0);
    assert_int_equal(a.kind, LISTEN_UNIX);
}

/* Nothing that is not clearly an address becomes a file name. */
static void
refuses_everything_else(void **state)
{
    static const char *const bad[] = {"", "fcgi.sock", "::1:9000", "[::1]9000",
        "[::1]:", "[::1", "host:", "host:0", "host:65536", "host:9000x",
        "host:-1", "a:b:c", NULL};
    struct listen_addr a;
    char err[128];
    size_t i;

    (void)state;
    for (i = 0; bad[i] != NULL; i++) {
        err[0] = '\0';
        if (listen_parse(bad[i], &a, err, sizeof(err)) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_true(err[0] != '\0');
    }
}

/* A refusal says what to write instead. */
static void
says_what_to_write(void **state)
{
    struct listen_addr a;
    char err[256];

    (void)state;
    assert_int_equal(listen_parse("fcgi.sock", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "Unix socket path (with a /"));
    assert_non_null(strstr(err, "./fcgi.sock"));
    assert_int_equal(listen_parse("::1:9000", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "an IPv6 address goes in brackets"));
    assert_int_equal(listen_parse("[::1]", &a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "[IPv6]:port"));
}

static void
refuses_a_path_too_long(void **state)
{
    char path[200];
    struct listen_addr a;
    char err[128];

    (void)state;
    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    assert_int_equal(listen_parse(path, &a, err, sizeof(err)), -1);
}

/* A stale socket file is replaced; the new one is 0666. */
static void
opens_a_unix_socket(void **state)
{
    char dir[] = "/tmp/test_listen.XXXXXX";
    struct listen_addr a;
    char path[256], err[128];
    struct stat st;
    FILE *f;
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/s.sock", dir);
    assert_non_null(f = fopen(path, "w")); /* stale, and not a socket */
    fclose(f);
    assert_int_equal(listen_parse(path, &a, err, sizeof(err)), 0);
    fd = listen_open(&a, 8, err, sizeof(err));
    assert_true(fd >= 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0666);
    close(fd);
    unlink(path);
    rmdir(dir);
}

/* A port nobody listens on: bound, looked up, let go. */
static int
free_port(int family)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = socket(family, SOCK_STREAM, 0), port = -1;

    memset(&ss, 0, sizeof(ss));
    ss.ss_family = (sa_family_t)family;
    if (family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
    if (fd >= 0 &&
        bind(fd, (struct sockaddr *)&ss,
            family == AF_INET ? sizeof(struct sockaddr_in)
                              : sizeof(struct sockaddr_in6)) == 0 &&
        getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        port =
            ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Each TCP form listens on the family it names. */
static void
opens_tcp_of_the_family_named(void **state)
{
    struct listen_addr a;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char addr[64], err[128];
    int fd, port;

    (void)state;
    assert_true((port = free_port(AF_INET)) > 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(listen_parse(addr, &a, err, sizeof(err)), 0);
    assert_true((fd = listen_open(&a, 8, err, sizeof(err))) >= 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    close(fd);

    if ((port = free_port(AF_INET6)) <= 0)
        skip(); /* no IPv6 loopback on this machine */
    snprintf(addr, sizeof(addr), "[::1]:%d", port);
    assert_int_equal(listen_parse(addr, &a, err, sizeof(err)), 0);
    assert_true((fd = listen_open(&a, 8, err, sizeof(err))) >= 0);
    len = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    close(fd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_host_port),
        cmocka_unit_test(parses_bracketed_ipv6),
        cmocka_unit_test(parses_port_alone),
        cmocka_unit_test(parses_paths_with_a_slash),
        cmocka_unit_test(refuses_everything_else),
        cmocka_unit_test(says_what_to_write),
        cmocka_unit_test(refuses_a_path_too_long),
        cmocka_unit_test(opens_a_unix_socket),
        cmocka_unit_test(opens_tcp_of_the_family_named),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
