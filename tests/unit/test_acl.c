#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"

static struct acl *
parse_ok(const char *spec)
{
    struct acl *acl = NULL;
    char err[256];

    if (acl_parse(&acl, spec, err, sizeof(err)) != 0)
        fail_msg("acl_parse(\"%s\"): %s", spec, err);
    assert_non_null(acl);
    return acl;
}

/* Parsing fails, leaves *out alone, and the message contains want. */
static void
parse_bad(const char *spec, const char *want)
{
    static char dummy;
    struct acl *const sentinel = (struct acl *)(void *)&dummy;
    struct acl *acl = sentinel; /* never freed */
    char err[256];

    memset(err, 'x', sizeof(err));
    if (acl_parse(&acl, spec, err, sizeof(err)) != -1)
        fail_msg("acl_parse(\"%s\") accepted", spec);
    assert_ptr_equal(acl, sentinel);
    assert_non_null(memchr(err, '\0', sizeof(err)));
    if (strstr(err, want) == NULL)
        fail_msg("acl_parse(\"%s\"): \"%s\" lacks \"%s\"", spec, err, want);
}

static void
test_loopback(void **state)
{
    struct acl *acl = parse_ok("loopback");

    (void)state;
    assert_true(acl_allows(acl, "127.0.0.1"));
    assert_true(acl_allows(acl, "127.255.255.254"));
    assert_true(acl_allows(acl, "::1"));
    assert_true(acl_allows(acl, "::ffff:127.0.0.1"));
    assert_true(acl_allows(acl, "::FFFF:127.1.2.3"));
    assert_true(acl_allows(acl, "0:0:0:0:0:0:0:1"));
    assert_false(acl_allows(acl, "128.0.0.1"));
    assert_false(acl_allows(acl, "126.255.255.255"));
    assert_false(acl_allows(acl, "10.0.0.1"));
    assert_false(acl_allows(acl, "::2"));
    assert_false(acl_allows(acl, "::"));
    assert_false(acl_allows(acl, "::ffff:10.0.0.1"));
    /* IPv4-compatible (deprecated, not mapped) is not loopback. */
    assert_false(acl_allows(acl, "::127.0.0.1"));
    assert_false(acl_allows(acl, "2001:db8::1"));
    acl_free(acl);

    acl = parse_ok(" LoopBack ");
    assert_true(acl_allows(acl, "127.0.0.1"));
    acl_free(acl);
}

static void
test_any(void **state)
{
    struct acl *acl = parse_ok("any");

    (void)state;
    assert_true(acl_allows(acl, "0.0.0.0"));
    assert_true(acl_allows(acl, "255.255.255.255"));
    assert_true(acl_allows(acl, "203.0.113.9"));
    assert_true(acl_allows(acl, "2001:db8::1"));
    assert_true(acl_allows(acl, "::ffff:203.0.113.9"));
    assert_true(acl_allows(acl, "fe80::1%eth0"));
    /* Even "any" needs an address. */
    assert_false(acl_allows(acl, ""));
    assert_false(acl_allows(acl, "localhost"));
    assert_false(acl_allows(acl, NULL));
    acl_free(acl);
}

static void
test_cidrs(void **state)
{
    struct acl *acl =
        parse_ok("10.0.0.0/8, 192.168.1.0/24,"
                 "172.16.0.0/12,fd00::/8,2001:db8:1::/48,198.51.100.7");

    (void)state;
    assert_true(acl_allows(acl, "10.0.0.0"));
    assert_true(acl_allows(acl, "10.255.255.255"));
    assert_false(acl_allows(acl, "11.0.0.0"));
    assert_false(acl_allows(acl, "9.255.255.255"));
    assert_true(acl_allows(acl, "192.168.1.200"));
    assert_false(acl_allows(acl, "192.168.2.1"));
    assert_true(acl_allows(acl, "172.16.0.1"));
    assert_true(acl_allows(acl, "172.31.255.255"));
    assert_false(acl_allows(acl, "172.32.0.0"));
    assert_false(acl_allows(acl, "172.15.255.255"));
    assert_true(acl_allows(acl, "fd12:3456::1"));
    assert_false(acl_allows(acl, "fe80::1"));
    assert_true(acl_allows(acl, "2001:db8:1:ffff::1"));
    assert_false(acl_allows(acl, "2001:db8:2::1"));
    assert_true(acl_allows(acl, "198.51.100.7"));
    assert_false(acl_allows(acl, "198.51.100.8"));
    assert_true(acl_allows(acl, "::ffff:10.1.2.3"));
    assert_true(acl_allows(acl, "::ffff:198.51.100.7"));
    assert_false(acl_allows(acl, "127.0.0.1"));
    assert_false(acl_allows(acl, "::1"));
    acl_free(acl);

    /* /0, /32, /128 and odd prefixes. */
    acl = parse_ok("0.0.0.0/0");
    assert_true(acl_allows(acl, "1.2.3.4"));
    assert_true(acl_allows(acl, "::ffff:1.2.3.4"));
    assert_false(acl_allows(acl, "2001:db8::1"));
    acl_free(acl);
    acl = parse_ok("::/0");
    assert_true(acl_allows(acl, "2001:db8::1"));
    assert_true(acl_allows(acl, "1.2.3.4"));
    acl_free(acl);
    acl = parse_ok("1.2.3.4/32,::1/128,100.64.0.0/10");
    assert_true(acl_allows(acl, "1.2.3.4"));
    assert_false(acl_allows(acl, "1.2.3.5"));
    assert_true(acl_allows(acl, "::1"));
    assert_true(acl_allows(acl, "100.127.255.255"));
    assert_false(acl_allows(acl, "100.128.0.0"));
    assert_false(acl_allows(acl, "100.63.255.255"));
    acl_free(acl);
}

static void
test_mapped_entries(void **state)
{
    struct acl *acl = parse_ok("::ffff:10.0.0.0/104,::ffff:192.0.2.1");

    (void)state;
    assert_true(acl_allows(acl, "10.9.8.7"));
    assert_true(acl_allows(acl, "::ffff:10.9.8.7"));
    assert_false(acl_allows(acl, "11.0.0.1"));
    assert_true(acl_allows(acl, "192.0.2.1"));
    assert_false(acl_allows(acl, "192.0.2.2"));
    acl_free(acl);
}

static void
test_remote_addr_forms(void **state)
{
    struct acl *acl = parse_ok("loopback,fe80::/10");
    char longaddr[300];

    (void)state;
    assert_true(acl_allows(acl, "fe80::1%eth0"));
    assert_true(acl_allows(acl, "fe80::1%25"));
    assert_false(acl_allows(acl, "127.0.0.1 "));
    assert_false(acl_allows(acl, " 127.0.0.1"));
    assert_false(acl_allows(acl, "127.0.0.1:8080"));
    assert_false(acl_allows(acl, "[::1]"));
    assert_false(acl_allows(acl, "127.1"));
    assert_false(acl_allows(acl, "127.0.0.256"));
    assert_false(acl_allows(acl, "unix:"));
    memset(longaddr, '1', sizeof(longaddr) - 1);
    longaddr[sizeof(longaddr) - 1] = '\0';
    assert_false(acl_allows(acl, longaddr));
    assert_false(acl_allows(NULL, "127.0.0.1"));
    acl_free(acl);
    acl_free(NULL);
}

static void
test_bad_specs(void **state)
{
    char big[4096];
    size_t i;

    (void)state;
    parse_bad("", "empty entry");
    parse_bad(NULL, "empty entry");
    parse_bad("  ", "empty entry");
    parse_bad("127.0.0.1,", "empty entry");
    parse_bad(",127.0.0.1", "empty entry");
    parse_bad("127.0.0.1,,::1", "empty entry");
    parse_bad("localhost", "'localhost': not an IPv4 or IPv6 address");
    parse_bad("loopback,anything", "'anything'");
    parse_bad("10.0.0.0/33",
        "'10.0.0.0/33': the prefix length must be "
        "0 to 32");
    parse_bad("::/129", "0 to 128");
    parse_bad("10.0.0.0/", "prefix length");
    parse_bad("10.0.0.0/-1", "prefix length");
    parse_bad("10.0.0.0/+8", "prefix length");
    parse_bad("10.0.0.0/8x", "prefix length");
    parse_bad("10.0.0.0/ 8", "prefix length");
    parse_bad("10.0.0.1/8",
        "'10.0.0.1/8': address has bits set past "
        "the /8 prefix");
    parse_bad("fd00::1/8", "bits set");
    parse_bad("::ffff:10.0.0.0/8", "bits set");
    parse_bad("256.0.0.1", "not an IPv4");
    parse_bad("1.2.3", "not an IPv4");
    parse_bad("[::1]", "not an IPv4");
    parse_bad("127.0.0.1;::1", "not an IPv4");
    parse_bad("127.0.0.1 ::1", "not an IPv4");
    parse_bad("fe80::1%eth0", "not an IPv4");
    parse_bad("10.0.0.0/8/8", "prefix length");
    memset(big, 'a', 200);
    big[200] = '\0';
    parse_bad(big, "too long");
    /* Too many entries is refused before any allocation of that size. */
    for (i = 0; i + 2 < sizeof(big); i += 2) {
        big[i] = '1';
        big[i + 1] = ',';
    }
    big[i] = '1';
    big[i + 1] = '\0';
    parse_bad(big, "more than");

    /* A NULL or zero-length err buffer is allowed. */
    {
        struct acl *acl = NULL;
        char one[1];
        assert_int_equal(acl_parse(&acl, "nope", NULL, 0), -1);
        assert_int_equal(acl_parse(&acl, "nope", one, 0), -1);
        assert_int_equal(acl_parse(&acl, "nope", one, 1), -1);
        assert_int_equal(one[0], '\0');
        assert_null(acl);
    }
}

static void
test_many_entries(void **state)
{
    char spec[8192], *p = spec;
    struct acl *acl;
    int i;

    (void)state;
    for (i = 0; i < 200; i++)
        p += sprintf(p, "%s10.%d.0.0/16", i ? ", " : "", i);
    acl = parse_ok(spec);
    assert_true(acl_allows(acl, "10.0.1.2"));
    assert_true(acl_allows(acl, "10.199.255.255"));
    assert_false(acl_allows(acl, "10.200.0.1"));
    acl_free(acl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_any),
        cmocka_unit_test(test_cidrs),
        cmocka_unit_test(test_mapped_entries),
        cmocka_unit_test(test_remote_addr_forms),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_many_entries),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
