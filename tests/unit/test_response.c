#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <sys/socket.h>
#include <unistd.h>

#include "fcgi.h"
#include "response.h"

/*
 * The web server's end of a socket pair: what the proxy wrote, as the
 * FCGI_STDOUT records' content (text), after the records are read.
 */
static char sbuf[1 << 16];
static unsigned char raw[1 << 17];
static size_t raw_len, text_len;
static int peer = -1;
static struct fcgi_conn *conn;
static struct fcgi_out out;

static struct fcgi_out *
out_reset(void)
{
    int sv[2];

    if (conn != NULL)
        fcgi_conn_free(conn);
    if (peer >= 0)
        close(peer);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    peer = sv[1];
    conn = fcgi_conn_new(sv[0]);
    assert_non_null(conn);
    fcgi_out_init(&out, conn, 1);
    memset(sbuf, 0, sizeof(sbuf));
    raw_len = text_len = 0;
    return &out;
}

/* Everything written so far, records decoded: the HTTP text. */
static const char *
text(void)
{
    ssize_t n;
    size_t off = 0;

    while (raw_len < sizeof(raw) &&
        (n = recv(peer, raw + raw_len, sizeof(raw) - raw_len, MSG_DONTWAIT)) >
            0)
        raw_len += (size_t)n;
    text_len = 0;
    while (off + FCGI_HEADER_LEN <= raw_len) {
        size_t clen = (size_t)raw[off + 4] << 8 | raw[off + 5];

        if (off + FCGI_HEADER_LEN + clen + raw[off + 6] > raw_len)
            break;
        if (raw[off + 1] == FCGI_STDOUT && text_len + clen < sizeof(sbuf)) {
            memcpy(sbuf + text_len, raw + off + FCGI_HEADER_LEN, clen);
            text_len += clen;
        }
        off += FCGI_HEADER_LEN + clen + raw[off + 6];
    }
    sbuf[text_len] = '\0';
    return sbuf;
}

/* How many times the header line "line\r\n" was written. */
static int
header_lines(const char *line)
{
    char want[256];
    const char *p = text();
    int n = 0;

    snprintf(want, sizeof(want), "%s\r\n", line);
    while ((p = strstr(p, want)) != NULL) {
        if (p == sbuf || p[-1] == '\n')
            n++;
        p += strlen(want);
    }
    return n;
}

static const struct {
    const char *inm, *etag;
    int match;
} etag_cases[] = {
    /* exact */
    {"\"abc\"", "\"abc\"", 1},
    {"\"abc\"", "\"abd\"", 0},
    {"\"abc\"", "\"ab\"", 0},
    {"\"ab\"", "\"abc\"", 0},
    {"\"ABC\"", "\"abc\"", 0},
    {"abc", "\"abc\"", 0},
    {"\"\"", "\"\"", 1},
    /* weak comparison: W/ on either side */
    {"W/\"abc\"", "\"abc\"", 1},
    {"\"abc\"", "W/\"abc\"", 1},
    {"W/\"abc\"", "W/\"abc\"", 1},
    {"w/\"abc\"", "\"abc\"", 0},
    {"W/\"abd\"", "W/\"abc\"", 0},
    {"W/", "\"abc\"", 0},
    /* lists */
    {"\"x\", \"abc\"", "\"abc\"", 1},
    {"\"abc\", \"x\"", "\"abc\"", 1},
    {"\"x\",\"abc\",\"y\"", "\"abc\"", 1},
    {"\"x\" , W/\"abc\" , \"y\"", "\"abc\"", 1},
    {"\"x\",\t\"abc\"", "\"abc\"", 1},
    {"\"x\", \"y\"", "\"abc\"", 0},
    {", , \"abc\" ,", "\"abc\"", 1},
    {",,,", "\"abc\"", 0},
    {"\"abc\"\"abc\"", "\"abc\"", 0},
    {"\"x\", \"abc\"junk", "\"abc\"", 0},
    /* any */
    {"*", "\"abc\"", 1},
    {" * ", "\"abc\"", 1},
    {"*", "W/\"abc\"", 1},
    /* nothing to match */
    {"", "\"abc\"", 0},
    {"   ", "\"abc\"", 0},
    {"\"abc\"", "", 0},
    {"*", "", 0},
    {"", "", 0},
    {"W/", "W/", 0},
};

static void
test_etag_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(etag_cases) / sizeof(etag_cases[0]); i++) {
        int got = response_etag_matches(etag_cases[i].inm, etag_cases[i].etag);
        if (got != etag_cases[i].match)
            fail_msg("If-None-Match '%s' vs ETag '%s': %d, want %d",
                etag_cases[i].inm, etag_cases[i].etag, got,
                etag_cases[i].match);
    }
    assert_int_equal(response_etag_matches(NULL, "\"abc\""), 0);
    assert_int_equal(response_etag_matches("\"abc\"", NULL), 0);
    assert_int_equal(response_etag_matches(NULL, NULL), 0);
}

/* RFC 9110 8.8.3: etagc includes ','; a list splits between tags only. */
static void
test_etag_with_comma(void **state)
{
    (void)state;
    assert_int_equal(response_etag_matches("\"a,b\"", "\"a,b\""), 1);
    assert_int_equal(response_etag_matches("\"x\", \"a,b\"", "\"a,b\""), 1);
    assert_int_equal(response_etag_matches("\"a,b\"", "\"a\""), 0);
}

static void
test_etag_long_list(void **state)
{
    char inm[8192];
    size_t len = 0;
    int i;

    (void)state;
    for (i = 0; i < 500; i++)
        len += (size_t)snprintf(
            inm + len, sizeof(inm) - len, "%s\"t%d\"", i ? ", " : "", i);
    assert_int_equal(response_etag_matches(inm, "\"t0\""), 1);
    assert_int_equal(response_etag_matches(inm, "\"t499\""), 1);
    assert_int_equal(response_etag_matches(inm, "W/\"t250\""), 1);
    assert_int_equal(response_etag_matches(inm, "\"t500\""), 0);
    assert_int_equal(response_etag_matches(inm, "\"t4\"x"), 0);
}

static void
test_reason(void **state)
{
    static const struct {
        int status;
        const char *reason;
    } cases[] = {
        {200, "OK"},
        {204, "No Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {410, "Gone"},
        {413, "Payload Too Large"},
        {414, "URI Too Long"},
        {429, "Too Many Requests"},
        {500, "Internal Server Error"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
    };
    size_t i;
    int s;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(response_reason(cases[i].status), cases[i].reason);
    /* Unknown codes still get a non-empty, header-safe reason. */
    for (s = 100; s < 600; s++) {
        const char *r = response_reason(s);
        const char *p;
        assert_non_null(r);
        assert_true(*r != '\0');
        for (p = r; *p; p++)
            assert_true(*p >= 0x20 && *p < 0x7f);
    }
    assert_string_equal(response_reason(300), "Redirection");
    assert_string_equal(response_reason(418), "Error");
    assert_string_equal(response_reason(599), "Error");
}

/*
 * A shared cache in front keeps clients apart only if told what a response
 * depends on. With an origin allow-list every response of a proxy route
 * varies on Origin, those without a grant too (else a cache hands the copy
 * a curl got, without Access-Control-Allow-Origin, to an allowed page);
 * with "*" nothing does.
 */
static void
test_vary_origin(void **state)
{
    struct response_meta meta;
    int st;

    (void)state;
    memset(&meta, 0, sizeof(meta));
    meta.vary_origin = 1; /* allow-list, no grant */
    response_body(out_reset(), 200, "image/png", "\"e\"", "x", 1, NULL, "HIT",
        60, &meta, &st);
    assert_int_equal(header_lines("Vary: Origin"), 1);
    assert_null(strstr(text(), "Access-Control-Allow-Origin"));
    response_error(out_reset(), 401, "no token", &meta);
    assert_int_equal(header_lines("Vary: Origin"), 1);
    assert_int_equal(response_begin(out_reset(), 200, "image/png", "", -1,
                         "MISS", 60, &meta),
        0);
    assert_int_equal(header_lines("Vary: Origin"), 1);
    response_preflight(out_reset(), &meta);
    assert_int_equal(header_lines("Vary: Origin"), 1);
    assert_null(strstr(text(), "Access-Control-Allow-Methods"));
    /* The grant: one Vary, not two. */
    meta.cors_origin = "https://maps.example.com";
    response_body(
        out_reset(), 200, "image/png", "", "x", 1, NULL, "HIT", 60, &meta, &st);
    assert_int_equal(header_lines("Vary: Origin"), 1);
    assert_int_equal(
        header_lines("Access-Control-Allow-Origin: https://maps.example.com"),
        1);
    response_preflight(out_reset(), &meta);
    assert_int_equal(header_lines("Vary: Origin"), 1);
    /* "*": the same for everyone, no Vary. */
    meta.vary_origin = 0;
    meta.cors_origin = "*";
    response_body(
        out_reset(), 200, "image/png", "", "x", 1, NULL, "HIT", 60, &meta, &st);
    assert_int_equal(header_lines("Vary: Origin"), 0);
    assert_int_equal(header_lines("Access-Control-Allow-Origin: *"), 1);
    response_error(out_reset(), 404, "nope", &meta);
    assert_int_equal(header_lines("Vary: Origin"), 0);
}

/*
 * Under client tokens tiles and metadata are private: no shared cache
 * stores them for a client without a token. Errors stay no-store; without
 * tokens, public.
 */
static void
test_private_under_tokens(void **state)
{
    struct response_meta meta;
    int st;

    (void)state;
    memset(&meta, 0, sizeof(meta));
    meta.client_tokens = 1;
    response_body(out_reset(), 200, "image/png", "\"e\"", "x", 1, NULL, "HIT",
        120, &meta, &st);
    assert_int_equal(header_lines("Cache-Control: private, max-age=120"), 1);
    assert_null(strstr(text(), "public"));
    response_body(out_reset(), 200, "image/png", "\"e\"", "x", 1, "\"e\"",
        "HIT", 120, &meta, &st);
    assert_int_equal(st, 304);
    assert_int_equal(header_lines("Cache-Control: private, max-age=120"), 1);
    assert_int_equal(response_begin(out_reset(), 200, "image/png", "", -1,
                         "MISS", 30, &meta),
        0);
    assert_int_equal(header_lines("Cache-Control: private, max-age=30"), 1);
    response_error(out_reset(), 401, "no token", &meta);
    assert_int_equal(header_lines("Cache-Control: no-store"), 1);
    meta.client_tokens = 0;
    response_body(out_reset(), 200, "image/png", "", "x", 1, NULL, "HIT", 120,
        &meta, &st);
    assert_int_equal(header_lines("Cache-Control: public, max-age=120"), 1);
    assert_int_equal(response_begin(out_reset(), 200, "image/png", "", -1,
                         "MISS", 30, &meta),
        0);
    assert_int_equal(header_lines("Cache-Control: public, max-age=30"), 1);
}

/* A page may send its token in X-Proxy-Token once tokens are on. */
static void
test_preflight_token_header(void **state)
{
    struct response_meta meta;

    (void)state;
    memset(&meta, 0, sizeof(meta));
    meta.cors_origin = "*";
    response_preflight(out_reset(), &meta);
    assert_int_equal(
        header_lines(
            "Access-Control-Allow-Headers: If-None-Match, X-Request-ID"),
        1);
    meta.client_tokens = 1;
    response_preflight(out_reset(), &meta);
    assert_int_equal(header_lines("Access-Control-Allow-Headers: "
                                  "If-None-Match, X-Request-ID, X-Proxy-Token"),
        1);
    assert_int_equal(header_lines("Status: 204 No Content"), 1);
}

/* Every kind of response says nosniff, once, among its headers. */
static void
test_nosniff(void **state)
{
    struct response_meta meta;
    struct entry e;
    int status, kind;

    (void)state;
    memset(&meta, 0, sizeof(meta));
    meta.indice = "a";
    meta.request_id = "r1";
    memset(&e, 0, sizeof(e));
    e.status = 200;
    e.content_type = "image/png";
    e.etag = "\"x\"";
    e.body = (const unsigned char *)"PNG";
    e.body_len = 3;
    for (kind = 0; kind < 6; kind++) {
        struct fcgi_out *o = out_reset();

        switch (kind) {
        case 0: response_error(o, 502, "HERE unreachable", &meta); break;
        case 1: response_json(o, 200, "{\"status\":\"ok\"}", &meta); break;
        case 2: response_entry(o, &e, NULL, "HIT", 60, &meta, &status); break;
        case 3:
            response_entry(o, &e, "\"x\"", "HIT", 60, &meta, &status);
            assert_int_equal(status, 304);
            break;
        case 4:
            response_begin(o, 200, "image/png", "", -1, "MISS", 60, &meta);
            break;
        default: response_preflight(o, &meta); break;
        }
        if (header_lines("X-Content-Type-Options: nosniff") != 1)
            fail_msg("response %d: %s", kind, text());
        /* Among the headers, not after them. */
        assert_true(strstr(text(), "X-Content-Type-Options") <
            strstr(text(), "\r\n\r\n"));
        assert_int_equal(response_client_gone(o), 0);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etag_table),
        cmocka_unit_test(test_etag_with_comma),
        cmocka_unit_test(test_etag_long_list),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_vary_origin),
        cmocka_unit_test(test_private_under_tokens),
        cmocka_unit_test(test_preflight_token_header),
        cmocka_unit_test(test_nosniff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
