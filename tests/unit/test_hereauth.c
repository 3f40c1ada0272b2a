#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "credentials.h"
#include "hereauth.h"
#include "log.h"
#include "settings.h"

#define TOKEN "eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOiJ0ZXN0In0.c2ln-_+/=="

static void
test_answer_ok(void **state)
{
    static const char *const ok[] = {
        "{\"accessToken\":\"" TOKEN "\",\"tokenType\":\"bearer\","
        "\"expiresIn\":86399}",
        "{\"access_token\":\"" TOKEN "\",\"token_type\":\"Bearer\","
        "\"expires_in\":86399,\"scope\":\"hrn:x\"}\r\n",
        " {\"expiresIn\": 86399.0, \"tokenType\": \"BEARER\", "
        "\"accessToken\": \"" TOKEN "\"} ",
    };
    char token[HEREAUTH_TOKEN_MAX + 1], err[256];
    long life = 0;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(hereauth_parse_answer(ok[i], strlen(ok[i]), token,
                             sizeof(token), &life, err, sizeof(err)),
            0);
        assert_string_equal(token, TOKEN);
        assert_int_equal(life, 86399);
    }
    assert_int_equal(hereauth_renew_at_ms(1000, 100), 81000);
}

static void
test_answer_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[\"" TOKEN "\"]",
        "{\"accessToken\":\"" TOKEN "\",\"tokenType\":\"bearer\","
        "\"expiresIn\":3600} trailing",
        /* A token that would split the Authorization header. */
        "{\"accessToken\":\"abc\\r\\nX-Injected: 1\",\"tokenType\":\"bearer\","
        "\"expiresIn\":3600}",
        "{\"accessToken\":\"abc def\",\"tokenType\":\"bearer\","
        "\"expiresIn\":3600}",
        "{\"accessToken\":\"ab=c\",\"tokenType\":\"bearer\",\"expiresIn\":"
        "3600}",
        "{\"accessToken\":\"\",\"tokenType\":\"bearer\",\"expiresIn\":3600}",
        "{\"accessToken\":7,\"tokenType\":\"bearer\",\"expiresIn\":3600}",
        "{\"tokenType\":\"bearer\",\"expiresIn\":3600}",
        /* Twice, or in both spellings: which one? */
        "{\"accessToken\":\"a\",\"accessToken\":\"b\",\"tokenType\":\"bearer\","
        "\"expiresIn\":3600}",
        "{\"accessToken\":\"a\",\"access_token\":\"b\",\"tokenType\":"
        "\"bearer\",\"expiresIn\":3600}",
        "{\"accessToken\":\"" TOKEN "\",\"tokenType\":\"mac\","
        "\"expiresIn\":3600}",
        "{\"accessToken\":\"" TOKEN "\",\"expiresIn\":3600}",
        "{\"accessToken\":\"" TOKEN "\",\"tokenType\":\"bearer\","
        "\"expiresIn\":\"3600\"}",
        "{\"accessToken\":\"" TOKEN "\",\"tokenType\":\"bearer\","
        "\"expiresIn\":3600.5}",
        "{\"accessToken\":\"" TOKEN "\",\"tokenType\":\"bearer\","
        "\"expiresIn\":4}",
        "{\"accessToken\":\"" TOKEN "\",\"tokenType\":\"bearer\","
        "\"expiresIn\":-3600}",
        "{\"accessToken\":\"" TOKEN "\",\"tokenType\":\"bearer\","
        "\"expiresIn\":1e12}",
        "{\"accessToken\":\"" TOKEN "\",\"tokenType\":\"bearer\"}",
    };
    char token[HEREAUTH_TOKEN_MAX + 1], err[256], *big;
    long life = 0;
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        strcpy(token, "untouched");
        if (hereauth_parse_answer(bad[i], strlen(bad[i]), token, sizeof(token),
                &life, err, sizeof(err)) != -1)
            fail_msg("case %zu accepted: %s", i, bad[i]);
        assert_string_equal(token, "untouched");
        /* The message never quotes the token. */
        assert_null(strstr(err, "eyJ"));
        assert_null(strstr(err, "X-Injected"));
    }
    /* A token longer than the buffer is refused, not cut. */
    n = HEREAUTH_TOKEN_MAX + 200;
    big = malloc(n + 100);
    assert_non_null(big);
    i = (size_t)sprintf(big, "{\"accessToken\":\"");
    memset(big + i, 'a', HEREAUTH_TOKEN_MAX + 1);
    i += HEREAUTH_TOKEN_MAX + 1;
    sprintf(big + i, "\",\"tokenType\":\"bearer\",\"expiresIn\":3600}");
    assert_int_equal(hereauth_parse_answer(big, strlen(big), token,
                         sizeof(token), &life, err, sizeof(err)),
        -1);
    free(big);
    /* An answer over the cap is not even parsed. */
    assert_int_equal(hereauth_parse_answer("{}", HEREAUTH_ANSWER_MAX + 1, token,
                         sizeof(token), &life, err, sizeof(err)),
        -1);
}

/* An API key, rotated by a reload: the next attempt takes the new one. */
static void
test_key_rotation(void **state)
{
    struct settings a, b, c;
    struct hereauth *auth;
    struct hereauth_ticket t1, t2, t3;
    struct hereauth_stats st;
    char err[256], what[32];

    (void)state;
    assert_int_equal(settings_init(&a), 0);
    assert_int_equal(settings_init(&b), 0);
    assert_int_equal(settings_init(&c), 0);
    assert_int_equal(settings_set(&a, "HERE_API_KEY", "key-1", err, 256), 0);
    assert_int_equal(settings_set(&b, "HERE_API_KEY", "key-2", err, 256), 0);
    assert_int_equal(settings_set(&c, "HERE_API_KEY", "key-2", err, 256), 0);
    auth = hereauth_new(&a, err, sizeof(err));
    assert_non_null(auth);
    assert_int_equal(hereauth_take(auth, &t1, NULL, 0), HEREAUTH_READY);
    assert_int_equal(t1.mode, HEREAUTH_KEY);
    assert_string_equal(t1.value, "key-1");
    /* HERE refusing the only key: nothing better to try. */
    assert_int_equal(hereauth_refused(auth, &t1), 0);
    hereauth_update(auth, &b, what, sizeof(what));
    assert_string_equal(what, "here_api_key");
    assert_int_equal(hereauth_take(auth, &t2, NULL, 0), HEREAUTH_READY);
    assert_string_equal(t2.value, "key-2");
    assert_true(t2.gen != t1.gen);
    /* A 401 to the old key: the new one is worth a try; to the new: not. */
    assert_int_equal(hereauth_refused(auth, &t1), 1);
    assert_int_equal(hereauth_refused(auth, &t2), 0);
    /* The same key again: nothing rotated. */
    hereauth_update(auth, &c, what, sizeof(what));
    assert_string_equal(what, "");
    assert_int_equal(hereauth_take(auth, &t3, NULL, 0), HEREAUTH_READY);
    assert_true(t3.gen == t2.gen);
    hereauth_stats(auth, &st);
    assert_int_equal(st.bearer, 0);
    hereauth_free(auth);
    settings_cleanup(&a);
    settings_cleanup(&b);
    settings_cleanup(&c);
}

/*
 * Credentials whose token endpoint refuses connections: transfers wait
 * while the first request runs, then fail at once with why; the secret is
 * in no message. A reload back to a key serves at once.
 */
static void
test_token_endpoint_down(void **state)
{
    static const char text[] =
        "here.access.key.id = id-1\n"
        "here.access.key.secret = Secret-Never-Shown\n"
        "here.token.endpoint.url = http://127.0.0.1:1/oauth2/token\n";
    struct settings a, b;
    struct hereauth *auth;
    struct hereauth_ticket t;
    struct hereauth_stats st;
    enum hereauth_state s = HEREAUTH_WAIT;
    char err[256], why[256] = "", what[32];
    int i;

    (void)state;
    assert_int_equal(settings_init(&a), 0);
    assert_int_equal(settings_init(&b), 0);
    a.here_credentials = calloc(1, sizeof(*a.here_credentials));
    assert_non_null(a.here_credentials);
    assert_int_equal(
        credentials_parse(text, "t", a.here_credentials, err, sizeof(err)), 0);
    assert_int_equal(settings_set(&b, "HERE_API_KEY", "key-b", err, 256), 0);
    auth = hereauth_new(&a, err, sizeof(err));
    assert_non_null(auth);
    for (i = 0; i < 500 && s != HEREAUTH_UNAVAILABLE; i++) {
        struct timespec ts = {0, 10 * 1000000L};

        s = hereauth_take(auth, &t, why, sizeof(why));
        assert_int_not_equal(s, HEREAUTH_READY);
        nanosleep(&ts, NULL);
    }
    assert_int_equal(s, HEREAUTH_UNAVAILABLE);
    assert_non_null(strstr(why, "no valid HERE token"));
    assert_non_null(strstr(why, "unreachable"));
    assert_null(strstr(why, "Secret"));
    hereauth_stats(auth, &st);
    assert_int_equal(st.bearer, 1);
    assert_int_equal(st.token_valid, 0);
    assert_true(st.renewals[HEREAUTH_UNREACHABLE] >= 1);
    assert_int_equal(st.renewals[HEREAUTH_OK], 0);
    assert_non_null(strstr(st.why, "unreachable"));
    hereauth_update(auth, &b, what, sizeof(what));
    assert_string_equal(what, "here_api_key");
    assert_int_equal(hereauth_take(auth, &t, NULL, 0), HEREAUTH_READY);
    assert_int_equal(t.mode, HEREAUTH_KEY);
    assert_string_equal(t.value, "key-b");
    hereauth_free(auth);
    settings_cleanup(&a);
    settings_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_ok),
        cmocka_unit_test(test_answer_refused),
        cmocka_unit_test(test_key_rotation),
        cmocka_unit_test(test_token_endpoint_down),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
