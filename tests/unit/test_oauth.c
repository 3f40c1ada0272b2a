#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oauth.h"

/*
 * The signer against vectors not written by us: RFC 5849's own examples
 * (section 3.4.1.1's base string, section 1.2's HMAC-SHA1 signature),
 * OAuth Core 1.0's Appendix A, the percent-encoding examples of Twitter's
 * "Creating a signature" guide, and an HMAC-SHA256 token request signed by
 * the npm package oauth-1.0a 2.2.6 (the same comparison runs at test time
 * over many inputs in tests/integration/test_oauth_reference.sh).
 */

static void
test_encode(void **state)
{
    static const struct {
        const char *in, *out;
    } v[] = {
        {"Ladies + Gentlemen", "Ladies%20%2B%20Gentlemen"},
        {"An encoded string!", "An%20encoded%20string%21"},
        {"Dogs, Cats & Mice", "Dogs%2C%20Cats%20%26%20Mice"},
        {"\xe2\x98\x83", "%E2%98%83"},
        {"AZaz09-._~", "AZaz09-._~"},
        {"*'()/:=?@", "%2A%27%28%29%2F%3A%3D%3F%40"},
        {"", ""},
    };
    char out[64];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_int_equal(
            oauth_encode(v[i].in, strlen(v[i].in), out, sizeof(out)),
            (long)strlen(v[i].out));
        assert_string_equal(out, v[i].out);
    }
    /* Too small: -1, never a cut value. */
    assert_int_equal(oauth_encode("a b", 3, out, 5), -1);
    assert_int_equal(oauth_encode("a b", 3, out, 6), 5);
}

static void
test_base_uri(void **state)
{
    static const struct {
        const char *url, *uri;
    } v[] = {
        /* RFC 5849 3.4.1.2's examples. */
        {"http://EXAMPLE.COM:80/r%20v/X?id=123", "http://example.com/r%20v/X"},
        {"https://www.example.net:8080/?q=1", "https://www.example.net:8080/"},
        {"https://account.api.here.com/oauth2/token",
            "https://account.api.here.com/oauth2/token"},
        {"HTTPS://Account.API.here.com:443/oauth2/token",
            "https://account.api.here.com/oauth2/token"},
        {"http://127.0.0.1:8080", "http://127.0.0.1:8080/"},
        {"http://[::1]:80/t", "http://[::1]/t"},
        {"http://[::1]:81/t", "http://[::1]:81/t"},
    };
    static const char *const bad[] = {"ftp://example.com/",
        "https://user:pw@example.com/", "https://example.com/#frag",
        "https://:443/", "https://example.com:0/", "https://example.com:x/",
        "https://exa mple.com/", "example.com/oauth2/token"};
    char out[256], err[128];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_int_equal(
            oauth_base_uri(v[i].url, out, sizeof(out), err, sizeof(err)), 0);
        assert_string_equal(out, v[i].uri);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(
            oauth_base_uri(bad[i], out, sizeof(out), err, sizeof(err)), -1);
}

/* RFC 5849 3.4.1.1: the base string of its example request. */
static void
test_rfc5849_base_string(void **state)
{
    const struct oauth_param p[] = {
        {"oauth_consumer_key", "9djdj82h48djs9d2"},
        {"oauth_token", "kkk9d7dh3k39sjv7"},
        {"oauth_signature_method", "HMAC-SHA1"},
        {"oauth_timestamp", "137131201"},
        {"oauth_nonce", "7d8f3e4a"},
        {"c2", ""}, /* the body "c2&a3=2+q", decoded */
        {"a3", "2 q"},
    };
    char err[128], *base;

    (void)state;
    base = oauth_base_string("POST",
        "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b", p,
        sizeof(p) / sizeof(p[0]), err, sizeof(err));
    assert_non_null(base);
    assert_string_equal(base,
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q"
        "%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_"
        "key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_"
        "method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkk"
        "k9d7dh3k39sjv7");
    free(base);
    /* The query's '+' is a space there too, and a bad escape refused. */
    base = oauth_base_string(
        "post", "http://example.com/r?a3=2+q", NULL, 0, err, sizeof(err));
    assert_non_null(base);
    assert_string_equal(base, "POST&http%3A%2F%2Fexample.com%2Fr&a3%3D2%2520q");
    free(base);
    assert_null(oauth_base_string(
        "GET", "http://example.com/r?a=%zz", NULL, 0, err, sizeof(err)));
}

/* RFC 5849 1.2: the photos request, HMAC-SHA1 with a token secret. */
static void
test_rfc5849_signature(void **state)
{
    const struct oauth_param p[] = {
        {"oauth_consumer_key", "dpf43f3p2l4k3l03"},
        {"oauth_token", "nnch734d00sl2jdk"},
        {"oauth_signature_method", "HMAC-SHA1"},
        {"oauth_timestamp", "137131202"},
        {"oauth_nonce", "chapoH"},
    };
    char err[128], sig[OAUTH_SIGNATURE_SIZE], *base;

    (void)state;
    base = oauth_base_string("GET",
        "http://photos.example.net/photos?file=vacation.jpg&size=original", p,
        sizeof(p) / sizeof(p[0]), err, sizeof(err));
    assert_non_null(base);
    assert_int_equal(oauth_signature(OAUTH_HMAC_SHA1, base, "kd94hf93k423kf44",
                         "pfkkdhi9sl3r4s00", sig, sizeof(sig)),
        0);
    assert_string_equal(sig, "MdpQcU8iPSUjWoN/UDMsK2sui9I=");
    free(base);
}

/* OAuth Core 1.0 Appendix A.5: the whole header, oauth_version included. */
static void
test_core_appendix_a(void **state)
{
    struct oauth_request r;
    char header[1024], err[128], *base = NULL;

    (void)state;
    memset(&r, 0, sizeof(r));
    r.method_name = OAUTH_HMAC_SHA1;
    r.http_method = "GET";
    r.url = "http://photos.example.net/photos?file=vacation.jpg&size=original";
    r.consumer_key = "dpf43f3p2l4k3l03";
    r.consumer_secret = "kd94hf93k423kf44";
    r.token = "nnch734d00sl2jdk";
    r.token_secret = "pfkkdhi9sl3r4s00";
    r.nonce = "kllo9940pd9333jh";
    r.timestamp = "1191242096";
    assert_int_equal(oauth_authorization(
                         &r, header, sizeof(header), &base, err, sizeof(err)),
        0);
    assert_string_equal(base,
        "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26"
        "oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3Dkllo9940pd9333"
        "jh%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D11912420"
        "96%26oauth_token%3Dnnch734d00sl2jdk%26oauth_version%3D1.0%26size%3Do"
        "riginal");
    assert_non_null(strstr(
        header, "oauth_signature=\"tR3%2BTy81lMeYAr%2FFid0kMTYa%2FWM%3D\""));
    free(base);
}

/*
 * HERE's token request, HMAC-SHA256: header and base string as the npm
 * package oauth-1.0a 2.2.6 makes them (node's crypto HMAC) for the same
 * inputs; a secret with '/', '+', '=' and '&' tests the signing key.
 */
static void
test_here_request(void **state)
{
    const struct oauth_param body[] = {{"grant_type", "client_credentials"}};
    struct oauth_request r;
    char header[1024], err[128], form[128], *base = NULL;

    (void)state;
    memset(&r, 0, sizeof(r));
    r.method_name = OAUTH_HMAC_SHA256;
    r.http_method = "POST";
    r.url = "https://account.api.here.com/oauth2/token";
    r.consumer_key = "access-key-id-1234";
    r.consumer_secret = "s3cr3t/+=&key";
    r.nonce = "LIIpk4";
    r.timestamp = "1456945283";
    r.body = body;
    r.nbody = 1;
    assert_int_equal(oauth_authorization(
                         &r, header, sizeof(header), &base, err, sizeof(err)),
        0);
    assert_string_equal(base,
        "POST&https%3A%2F%2Faccount.api.here.com%2Foauth2%2Ftoken&grant_type"
        "%3Dclient_credentials%26oauth_consumer_key%3Daccess-key-id-1234%26oa"
        "uth_nonce%3DLIIpk4%26oauth_signature_method%3DHMAC-SHA256%26oauth_ti"
        "mestamp%3D1456945283%26oauth_version%3D1.0");
    assert_string_equal(header,
        "OAuth oauth_consumer_key=\"access-key-id-1234\", "
        "oauth_nonce=\"LIIpk4\", "
        "oauth_signature=\"RuP2XEmdSquZ8Vq9p6os7agXrxFkLXE5mtiOp4%2BsW%2Fs%3D\""
        ", oauth_signature_method=\"HMAC-SHA256\", "
        "oauth_timestamp=\"1456945283\", oauth_version=\"1.0\"");
    free(base);
    /* The secret is not in what is sent. */
    assert_null(strstr(header, "s3cr3t"));
    /* Too small a buffer: -1, no header cut short. */
    assert_int_equal(
        oauth_authorization(&r, header, 64, NULL, err, sizeof(err)), -1);
    assert_int_equal(oauth_form(body, 1, form, sizeof(form)), 29);
    assert_string_equal(form, "grant_type=client_credentials");
}

static void
test_form_and_nonce(void **state)
{
    const struct oauth_param p[] = {{"grant_type", "client_credentials"},
        {"scope", "hrn:here:authorization::org1:project/p 1"}};
    char form[128], a[33], b[33];
    size_t i;

    (void)state;
    assert_true(oauth_form(p, 2, form, sizeof(form)) > 0);
    assert_string_equal(form,
        "grant_type=client_credentials&scope=hrn%3Ahere%3Aauthorization%3A%3A"
        "org1%3Aproject%2Fp%201");
    assert_int_equal(oauth_form(p, 2, form, 20), -1);
    assert_int_equal(oauth_nonce(a, 32), 0);
    assert_int_equal(oauth_nonce(b, 32), 0);
    assert_int_equal(strlen(a), 32);
    for (i = 0; i < 32; i++)
        assert_true((a[i] >= 'a' && a[i] <= 'z') ||
            (a[i] >= 'A' && a[i] <= 'Z') || (a[i] >= '0' && a[i] <= '9'));
    assert_string_not_equal(a, b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_base_uri),
        cmocka_unit_test(test_rfc5849_base_string),
        cmocka_unit_test(test_rfc5849_signature),
        cmocka_unit_test(test_core_appendix_a),
        cmocka_unit_test(test_here_request),
        cmocka_unit_test(test_form_and_nonce),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
