#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "credentials.h"

#define SECRET "Zx9-Secret_Value-42"

/* What the HERE platform portal's download looks like. */
static const char portal[] =
    "here.user.id = HERE-12345678-9abc-def0-1234-56789abcdef0\n"
    "here.client.id = AbCdEfGhIjKlMnOpQrSt\n"
    "here.access.key.id = KeyIdKeyIdKeyId12345\n"
    "here.access.key.secret = " SECRET "\n"
    "here.token.endpoint.url = https://account.api.here.com/oauth2/token\n";

static void
test_portal_file(void **state)
{
    struct here_credentials c;
    char err[256];

    (void)state;
    assert_int_equal(credentials_parse(portal, "f", &c, err, sizeof(err)), 0);
    assert_string_equal(c.access_key_id, "KeyIdKeyIdKeyId12345");
    assert_string_equal(c.access_key_secret, SECRET);
    assert_string_equal(
        c.token_url, "https://account.api.here.com/oauth2/token");
    assert_string_equal(c.client_id, "AbCdEfGhIjKlMnOpQrSt");
    assert_string_equal(c.user_id, "HERE-12345678-9abc-def0-1234-56789abcdef0");
    assert_string_equal(c.scope, "");
    credentials_cleanup(&c);
    assert_null(c.access_key_secret);
    credentials_cleanup(&c); /* twice: nothing */
}

static void
test_syntax(void **state)
{
    /* ':' and '=' separators, no blanks, comments, CRLF, blank lines,
     * keys the proxy does not use, a scope, a loopback http URL. */
    static const char text[] =
        "# comment\r\n"
        "! another comment\r\n"
        "\r\n"
        "  here.access.key.id:id-1\r\n"
        "here.access.key.secret=" SECRET "   \r\n"
        "here.api.key = not-used\r\n"
        "\there.token.endpoint.url\t=\thttp://127.0.0.1:8080/oauth2/token\r\n"
        "here.token.scope = hrn:here:authorization::org1:project/p1\r\n";
    struct here_credentials c, d;
    char err[256];

    (void)state;
    assert_int_equal(credentials_parse(text, "f", &c, err, sizeof(err)), 0);
    assert_string_equal(c.access_key_id, "id-1");
    assert_string_equal(c.access_key_secret, SECRET);
    assert_string_equal(c.token_url, "http://127.0.0.1:8080/oauth2/token");
    assert_string_equal(c.scope, "hrn:here:authorization::org1:project/p1");
    assert_string_equal(c.client_id, "");
    assert_int_equal(credentials_parse(text, "g", &d, err, sizeof(err)), 0);
    assert_true(credentials_equal(&c, &d));
    credentials_cleanup(&d);
    assert_int_equal(credentials_parse(portal, "g", &d, err, sizeof(err)), 0);
    assert_false(credentials_equal(&c, &d));
    credentials_cleanup(&d);
    credentials_cleanup(&c);
}

static void
test_errors(void **state)
{
    static const struct {
        const char *text;
        const char *want; /* in the message */
    } v[] = {
        {"", "f: no here.access.key.id"},
        {"here.access.key.id=a\nhere.token.endpoint.url=https://h/t\n",
            "f: no here.access.key.secret"},
        {"here.access.key.id=a\nhere.access.key.secret=" SECRET "\n",
            "no here.token.endpoint.url"},
        {"here.access.key.id=a\nhere.access.key.id=b\n",
            "f:2: here.access.key.id is set again (first on line 1)"},
        {"here.access.key.id=a\\\n  b\n", "f:1: backslash"},
        {"here.access.key.id=\\u0041\n", "f:1: backslash"},
        {"\nhere.access.key.id=\n", "f:2: here.access.key.id is empty"},
        {"=value\n", "f:1: expected key = value"},
        {"here.access.key.id=caf\xc3\xa9\n", "f:1: a control byte or a non"},
        {"here.access.key.id=a\x01\n", "f:1: a control byte"},
        {"here.token.endpoint.url=http://example.com/oauth2/token\n",
            "f:1: here.token.endpoint.url must be https://"},
        {"here.token.endpoint.url=ftp://example.com/t\n",
            "f:1: here.token.endpoint.url is not an http"},
        {"here.token.endpoint.url=https://u@example.com/t\n",
            "f:1: here.token.endpoint.url is not"},
        {"here.access.key.secret=two words\n",
            "f:1: here.access.key.secret holds a space"},
    };
    struct here_credentials c;
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        memset(&c, 0, sizeof(c));
        assert_int_equal(
            credentials_parse(v[i].text, "f", &c, err, sizeof(err)), -1);
        if (strstr(err, v[i].want) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err, v[i].want);
        /* Nothing handed out on failure. */
        assert_null(c.access_key_id);
        /* Never the secret's value. */
        assert_null(strstr(err, "words"));
        assert_null(strstr(err, SECRET));
    }
    {
        /* A secret too long for the signer is refused, not cut. */
        char text[CREDENTIALS_SECRET_MAX + 64];
        int n = snprintf(text, sizeof(text), "here.access.key.secret=");

        memset(text + n, 'x', CREDENTIALS_SECRET_MAX + 1);
        text[n + CREDENTIALS_SECRET_MAX + 1] = '\0';
        assert_int_equal(
            credentials_parse(text, "f", &c, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "too long"));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_portal_file),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
