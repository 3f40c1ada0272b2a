#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "seed/http.h"
#include "util.h"

static void
test_values(void **state)
{
    (void)state;
    assert_true(seed_resource_valid("base"));
    assert_true(seed_resource_valid("blank"));
    assert_false(seed_resource_valid("Base"));
    assert_false(seed_resource_valid(""));
    assert_true(seed_format_valid("png8"));
    assert_false(seed_format_valid("gif"));
    assert_true(seed_style_valid("explore.day"));
    assert_true(seed_style_valid("logistics.satellite.day"));
    assert_false(seed_style_valid(""));
    assert_false(seed_style_valid("Explore.day"));
    assert_false(seed_style_valid("a&b=c"));
    assert_false(seed_style_valid("a b"));
    assert_false(seed_style_valid(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    assert_true(util_lang_valid("en"));
    assert_true(util_lang_valid("pt-BR"));
    assert_true(util_lang_valid("zh-Hant"));
    assert_false(util_lang_valid("EN"));
    assert_false(util_lang_valid("e"));
    assert_false(util_lang_valid("en-"));
    assert_false(util_lang_valid("en_US"));
    assert_false(util_lang_valid("en-Hanto"));
    assert_true(seed_indice_valid("map-1_a.b"));
    assert_false(seed_indice_valid(""));
    assert_false(seed_indice_valid("a b"));
    assert_false(seed_indice_valid("a&b"));
    assert_false(seed_indice_valid(
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    assert_true(seed_token_valid("s3cr3t:-_!"));
    assert_false(seed_token_valid(""));
    assert_false(seed_token_valid("a b"));
    assert_false(seed_token_valid("a\nb"));
    assert_false(seed_token_valid("\xc3\xa9"));
}

static void
url_ok(const char *u)
{
    char err[SEED_MESSAGE_MAX];

    if (seed_url_check(u, err, sizeof(err)) != 0)
        fail_msg("url %s: %s", u, err);
}

static void
url_bad(const char *u, const char *why)
{
    char err[SEED_MESSAGE_MAX] = "";

    if (seed_url_check(u, err, sizeof(err)) == 0)
        fail_msg("url '%s' was taken", u);
    if (strstr(err, why) == NULL)
        fail_msg("url '%s': '%s' does not say '%s'", u, err, why);
}

static void
test_url_check(void **state)
{
    char longer[SEED_URL_MAX + 8];

    (void)state;
    url_ok("http://127.0.0.1:8080/here-proxy");
    url_ok("https://maps.example.com/here-proxy/");
    url_ok("http://[::1]:8080/here-proxy");
    url_bad("ftp://x/here-proxy", "http:// or https://");
    url_bad("HTTP://x", "http:// or https://");
    url_bad("127.0.0.1/here-proxy", "http:// or https://");
    url_bad("http://", "no host");
    url_bad("http:///here-proxy", "no host");
    url_bad("http://:80/here-proxy", "no host");
    url_bad("http://x/here-proxy?style=a", "no query");
    url_bad("http://x/here-proxy#a", "no query");
    url_bad("http://x/here proxy", "blanks");
    url_bad("http://x/\x7f", "blanks");
    memset(longer, 'a', sizeof(longer) - 1);
    memcpy(longer, "http://", 7);
    longer[sizeof(longer) - 1] = '\0';
    url_bad(longer, "longer than");
}

static void
test_query_and_url(void **state)
{
    char q[SEED_QUERY_MAX], u[SEED_URL_MAX], small[16];
    struct seed_tile t = {12, 2200, 1343};

    (void)state;
    assert_int_equal(
        seed_query_build(q, sizeof(q), "explore.day", 0, 0, NULL, NULL), 0);
    assert_string_equal(q, "style=explore.day");
    /* The demo page's order: style first, indice last. */
    assert_int_equal(
        seed_query_build(q, sizeof(q), "topo.night", 512, 200, "pt-BR", "m1"),
        0);
    assert_string_equal(q,
        "style=topo.night&size=512&ppi=200&lang=pt-BR&"
        "indice=m1");
    assert_int_equal(seed_query_build(small, sizeof(small), "explore.day", 512,
                         0, NULL, NULL),
        -1);
    assert_int_equal(seed_tile_url(u, sizeof(u), "http://h:1/here-proxy",
                         "base", &t, "png", "style=explore.day&indice=x"),
        0);
    assert_string_equal(u,
        "http://h:1/here-proxy/base/mc/12/2200/1343/png?"
        "style=explore.day&indice=x");
    assert_int_equal(
        seed_tile_url(small, sizeof(small), "http://h", "base", &t, "png", ""),
        -1);
}

static void
test_retry_after(void **state)
{
    /* Sun, 06 Nov 1994 08:49:37 GMT */
    const int64_t date = 784111777;

    (void)state;
    assert_int_equal(seed_retry_after_parse("5", 0), 5);
    assert_int_equal(seed_retry_after_parse("0", 0), 0);
    assert_int_equal(seed_retry_after_parse("120", 0), 120);
    /* Absurd waits are capped (a week), never overflow. */
    assert_int_equal(seed_retry_after_parse("99999999999", 0), 7 * 86400);
    assert_int_equal(seed_retry_after_parse("9999999999999999999999", 0), -1);
    assert_int_equal(seed_retry_after_parse(NULL, 0), -1);
    assert_int_equal(seed_retry_after_parse("", 0), -1);
    assert_int_equal(seed_retry_after_parse("-1", 0), -1);
    assert_int_equal(seed_retry_after_parse("1.5", 0), -1);
    assert_int_equal(seed_retry_after_parse(" 5", 0), -1);
    assert_int_equal(seed_retry_after_parse("soon", 0), -1);
    /* The three HTTP-date forms. */
    assert_int_equal(
        seed_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", date - 10), 10);
    assert_int_equal(
        seed_retry_after_parse("Sunday, 06-Nov-94 08:49:37 GMT", date - 10),
        10);
    assert_int_equal(
        seed_retry_after_parse("Sun Nov  6 08:49:37 1994", date - 10), 10);
    /* A date gone by: no wait. */
    assert_int_equal(
        seed_retry_after_parse("Sun, 06 Nov 1994 08:49:37 GMT", date + 60), 0);
    assert_int_equal(seed_retry_after_parse(
                         "Sun, 06 Nov 1994 08:49:37 GMT", date - 30 * 86400),
        7 * 86400);
}

/* A 200 tile answer with these cache headers. */
static enum seed_verdict
tile_verdict(
    const char *ct, const char *x_cache, const char *x_nginx, uint64_t bytes)
{
    struct seed_exchange x;
    struct seed_answer a;

    memset(&x, 0, sizeof(x));
    x.transport_ok = 1;
    x.status = 200;
    x.content_type = ct;
    x.x_cache = x_cache;
    x.x_cache_nginx = x_nginx;
    x.bytes = bytes;
    seed_answer_judge(&x, &a);
    return a.verdict;
}

static void
test_judge_tiles(void **state)
{
    (void)state;
    assert_int_equal(
        tile_verdict("image/png", "MISS", NULL, 100), SEED_V_FETCHED);
    assert_int_equal(
        tile_verdict("image/png", "HIT", NULL, 100), SEED_V_CACHED);
    assert_int_equal(
        tile_verdict("image/jpeg", "STALE", NULL, 100), SEED_V_CACHED);
    assert_int_equal(
        tile_verdict("image/png", "COALESCED", NULL, 100), SEED_V_CACHED);
    /* Without X-Cache nobody can tell: counted as fetched. */
    assert_int_equal(
        tile_verdict("image/png", NULL, NULL, 100), SEED_V_FETCHED);
    assert_int_equal(
        tile_verdict("IMAGE/PNG; q=1", "HIT", NULL, 100), SEED_V_CACHED);
    /* NGINX's cache layer: its own hit keeps the stored X-Cache. */
    assert_int_equal(
        tile_verdict("image/png", "MISS", "HIT", 100), SEED_V_CACHED);
    assert_int_equal(
        tile_verdict("image/png", "MISS", "UPDATING", 100), SEED_V_CACHED);
    assert_int_equal(
        tile_verdict("image/png", "MISS", "MISS", 100), SEED_V_FETCHED);
    assert_int_equal(
        tile_verdict("image/png", "HIT", "EXPIRED", 100), SEED_V_CACHED);
    /* Not a tile. */
    assert_int_equal(
        tile_verdict("text/html", "MISS", NULL, 100), SEED_V_FAILED);
    assert_int_equal(
        tile_verdict("image/pngx", "MISS", NULL, 100), SEED_V_FAILED);
    assert_int_equal(tile_verdict(NULL, "MISS", NULL, 100), SEED_V_FAILED);
    assert_int_equal(tile_verdict("image/png", "MISS", NULL, 0), SEED_V_FAILED);
}

static void
judge(long status, const char *body, const char *retry_after,
    struct seed_answer *a)
{
    struct seed_exchange x;

    memset(&x, 0, sizeof(x));
    x.transport_ok = 1;
    x.status = status;
    x.content_type = "application/json";
    x.body = body;
    x.body_len = body != NULL ? strlen(body) : 0;
    x.bytes = x.body_len;
    x.retry_after = retry_after;
    x.now_s = 1000000;
    seed_answer_judge(&x, a);
}

static void
test_judge_errors(void **state)
{
    struct seed_answer a;
    struct seed_exchange x;

    (void)state;
    /* The proxy's rate limit: pause as long as it asks. */
    judge(429,
        "{\"error\":\"rate limit exceeded for indice a\",\"status\":429}", "7",
        &a);
    assert_int_equal(a.verdict, SEED_V_PAUSE);
    assert_int_equal(a.wait_s, 7);
    assert_string_equal(a.message, "429 rate limit exceeded for indice a");
    judge(429, NULL, NULL, &a);
    assert_int_equal(a.verdict, SEED_V_PAUSE);
    assert_int_equal(a.wait_s, -1);
    /* A spent quota or budget: stop, and say the proxy's words. */
    judge(503,
        "{\"error\":\"cache-only: the upstream quota of indice small (3/day) "
        "is spent; cached tiles are still served\",\"status\":503}",
        "40000", &a);
    assert_int_equal(a.verdict, SEED_V_CACHE_ONLY);
    assert_non_null(strstr(a.message, "quota of indice small"));
    judge(503,
        "{\"error\":\"cache-only: HERE_DAILY_BUDGET (4 requests to HERE a "
        "day) is spent\",\"status\":503}",
        "40000", &a);
    assert_int_equal(a.verdict, SEED_V_CACHE_ONLY);
    /* Busy, breaker open, HERE's 429: wait and retry. */
    judge(503,
        "{\"error\":\"too many requests to HERE in flight\",\"status\":503}",
        "1", &a);
    assert_int_equal(a.verdict, SEED_V_PAUSE);
    assert_int_equal(a.wait_s, 1);
    judge(503, "{\"error\":\"x\",\"status\":503}",
        "Mon, 12 Jan 1970 13:46:50 GMT", &a); /* 1000010 */
    assert_int_equal(a.verdict, SEED_V_PAUSE);
    assert_int_equal(a.wait_s, 10);
    judge(503, NULL, NULL, &a);
    assert_int_equal(a.verdict, SEED_V_RETRY);
    judge(503, NULL, "soon", &a);
    assert_int_equal(a.verdict, SEED_V_RETRY);
    judge(502, "{\"error\":\"HERE unreachable\",\"status\":502}", NULL, &a);
    assert_int_equal(a.verdict, SEED_V_RETRY);
    assert_string_equal(a.message, "502 HERE unreachable");
    judge(504, NULL, NULL, &a);
    assert_int_equal(a.verdict, SEED_V_RETRY);
    assert_string_equal(a.message, "504");
    judge(408, NULL, NULL, &a);
    assert_int_equal(a.verdict, SEED_V_RETRY);
    /* Every tile would get these: stop. */
    judge(400,
        "{\"error\":\"style: unknown or not enabled style\",\"status\":400}",
        NULL, &a);
    assert_int_equal(a.verdict, SEED_V_REFUSED);
    assert_string_equal(a.message, "400 style: unknown or not enabled style");
    judge(401, "{\"error\":\"a client token is required\"}", NULL, &a);
    assert_int_equal(a.verdict, SEED_V_REFUSED);
    judge(403, "{\"error\":\"indice not allowed\"}", NULL, &a);
    assert_int_equal(a.verdict, SEED_V_REFUSED);
    judge(404, "<html>Not Found</html>", NULL, &a);
    assert_int_equal(a.verdict, SEED_V_REFUSED);
    assert_non_null(strstr(a.message, "is it the proxy's prefix"));
    judge(301, NULL, NULL, &a);
    assert_int_equal(a.verdict, SEED_V_REFUSED);
    assert_non_null(strstr(a.message, "redirects"));
    /* HERE has no such tile: this tile only. */
    judge(404, "{\"error\":\"HERE answered 404 Not Found\"}", NULL, &a);
    assert_int_equal(a.verdict, SEED_V_FAILED);
    judge(304, NULL, NULL, &a);
    assert_int_equal(a.verdict, SEED_V_REFUSED);
    /* The proxy's words reach a terminal as printable ASCII only. */
    judge(400, "{\"error\":\"a\\u001b[2Jb\\n\"}", NULL, &a);
    assert_string_equal(a.message, "400 a?[2Jb?");
    judge(400, "{\"error\":", NULL, &a);
    assert_string_equal(a.message, "400");
    /* The network failed: retry. */
    memset(&x, 0, sizeof(x));
    x.transport_error = "Connection refused";
    seed_answer_judge(&x, &a);
    assert_int_equal(a.verdict, SEED_V_RETRY);
    assert_string_equal(a.message, "Connection refused");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_url_check),
        cmocka_unit_test(test_query_and_url),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_judge_tiles),
        cmocka_unit_test(test_judge_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
