#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"

/* -------------------------------------------------------------- helpers */

static const char *
str_field(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);

    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static double
num_field(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);

    assert_true(cJSON_IsNumber(item));
    return item->valuedouble;
}

/* RFC 3629 UTF-8, no overlongs, no surrogates. */
static int
valid_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s, n, cp, i;

        if (c < 0x80) {
            s++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return 0;
        for (i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        s += n + 1;
    }
    return 1;
}

/* Render, check it is one line of JSON, return the parsed object. */
static cJSON *
render(const struct access_record *rec, char **text_out)
{
    char *text = log_access_render(rec);
    cJSON *obj;

    assert_non_null(text);
    assert_null(strchr(text, '\n'));
    assert_null(strchr(text, '\r'));
    obj = cJSON_Parse(text);
    if (obj == NULL)
        fail_msg("not JSON: %s", text);
    assert_true(cJSON_IsObject(obj));
    if (text_out != NULL)
        *text_out = text;
    else
        free(text);
    return obj;
}

/* ---------------------------------------------------------------- tests */

static void
test_access_fields(void **state)
{
    struct access_record rec = {
        .wall_ms = 1700000000123LL,
        .method = "GET",
        .path = "/here-proxy/mc/1/0/0/png",
        .indice = "team-a",
        .cache_status = "MISS",
        .request_id = "req-1",
        .remote_addr = "192.0.2.1",
        .status = 200,
        .latency_ms = 12.3456789,
        .bytes = 123456,
        .upstream = 1,
        .upstream_status = 200,
        .upstream_ms = 10.0004,
        .upstream_http = "2",
        .correlation_id = "corr-9",
        .error = NULL,
    };
    cJSON *obj = render(&rec, NULL);

    (void)state;
    assert_string_equal(str_field(obj, "ts"), "2023-11-14T22:13:20.123Z");
    assert_string_equal(str_field(obj, "level"), "info");
    assert_string_equal(str_field(obj, "event"), "access");
    assert_string_equal(str_field(obj, "method"), "GET");
    assert_string_equal(str_field(obj, "path"), "/here-proxy/mc/1/0/0/png");
    assert_string_equal(str_field(obj, "indice"), "team-a");
    assert_string_equal(str_field(obj, "cache_status"), "MISS");
    assert_string_equal(str_field(obj, "request_id"), "req-1");
    assert_string_equal(str_field(obj, "remote_addr"), "192.0.2.1");
    assert_string_equal(str_field(obj, "upstream_http"), "2");
    assert_string_equal(str_field(obj, "correlation_id"), "corr-9");
    assert_int_equal((int)num_field(obj, "status"), 200);
    assert_int_equal((int)num_field(obj, "upstream_status"), 200);
    assert_true(num_field(obj, "bytes") == 123456.0);
    assert_true(num_field(obj, "latency_ms") > 12.345 &&
        num_field(obj, "latency_ms") < 12.347);
    assert_true(num_field(obj, "upstream_ms") > 9.99 &&
        num_field(obj, "upstream_ms") < 10.01);
    assert_null(cJSON_GetObjectItemCaseSensitive(obj, "error"));
    assert_null(cJSON_GetObjectItemCaseSensitive(obj, "aborted"));
    cJSON_Delete(obj);
}

/* A response aborted on purpose says why, next to its error. */
static void
test_access_aborted(void **state)
{
    struct access_record rec;
    cJSON *obj;

    (void)state;
    memset(&rec, 0, sizeof(rec));
    rec.status = 200;
    rec.upstream = 1;
    rec.upstream_attempts = 1;
    rec.error = "response aborted on purpose: HERE's response was cut off "
                "after 100000 of 200000 bytes: HERE sent nothing for 5000 ms";
    rec.aborted = "upstream_stalled";
    obj = render(&rec, NULL);
    assert_string_equal(str_field(obj, "aborted"), "upstream_stalled");
    assert_non_null(strstr(str_field(obj, "error"), "aborted on purpose"));
    cJSON_Delete(obj);
}

static void
test_access_minimal(void **state)
{
    struct access_record rec;
    cJSON *obj;

    (void)state;
    memset(&rec, 0, sizeof(rec));
    rec.status = 404;
    rec.error = "no such endpoint";
    rec.upstream_status = 502; /* ignored without upstream */
    obj = render(&rec, NULL);
    assert_int_equal((int)num_field(obj, "status"), 404);
    assert_string_equal(str_field(obj, "error"), "no such endpoint");
    assert_string_equal(str_field(obj, "ts"), "1970-01-01T00:00:00.000Z");
    assert_true(num_field(obj, "bytes") == 0);
    /* NULL strings are left out; upstream fields are null, attempts 0. */
    assert_null(cJSON_GetObjectItemCaseSensitive(obj, "method"));
    assert_null(cJSON_GetObjectItemCaseSensitive(obj, "path"));
    assert_null(cJSON_GetObjectItemCaseSensitive(obj, "indice"));
    assert_null(cJSON_GetObjectItemCaseSensitive(obj, "request_id"));
    assert_true(
        cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, "upstream_status")));
    assert_true(
        cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, "upstream_http")));
    assert_true(num_field(obj, "upstream_attempts") == 0);
    assert_null(cJSON_GetObjectItemCaseSensitive(obj, "upstream_ms"));
    assert_null(cJSON_GetObjectItemCaseSensitive(obj, "correlation_id"));
    cJSON_Delete(obj);
}

/* Every hostile value comes back intact from the parsed line. */
static void
test_access_hostile(void **state)
{
    static const char *const hostile[] = {
        "\"",
        "\\",
        "\"}, \"status\": 999, \"x\": \"",
        "a\nb",
        "a\r\nb",
        "\t\b\f",
        "\x01\x02\x1f",
        "\x7f",
        "</script>",
        "{\"a\":1}",
        "line1\nline2\n\n",
        "\\u0000",
        "\\\"",
        "'",
        "%s%n%x",
        "",
        "\xe2\x80\xa8\xe2\x80\xa9",
        "caf\xc3\xa9",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        struct access_record rec;
        cJSON *obj;
        const char *h = hostile[i];

        memset(&rec, 0, sizeof(rec));
        rec.method = h;
        rec.path = h;
        rec.indice = h;
        rec.cache_status = h;
        rec.request_id = h;
        rec.remote_addr = h;
        rec.error = h;
        rec.upstream = 1;
        rec.upstream_http = h;
        rec.correlation_id = h;
        rec.status = 400;
        obj = render(&rec, NULL);
        assert_string_equal(str_field(obj, "method"), h);
        assert_string_equal(str_field(obj, "path"), h);
        assert_string_equal(str_field(obj, "request_id"), h);
        assert_string_equal(str_field(obj, "error"), h);
        assert_string_equal(str_field(obj, "correlation_id"), h);
        /* Injection did not add or replace fields. */
        assert_int_equal((int)num_field(obj, "status"), 400);
        assert_null(cJSON_GetObjectItemCaseSensitive(obj, "x"));
        assert_string_equal(str_field(obj, "event"), "access");
        cJSON_Delete(obj);
    }
}

/* Bytes that are not UTF-8 must not make the line invalid JSON text. */
static void
test_access_non_utf8(void **state)
{
    static const char *const bad[] = {
        "\xff", "\xc3", "a\x80z", "\xed\xa0\x80", "\xc0\xaf", "\xfe\xff"};
    size_t i;
    int failures = 0;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct access_record rec;
        cJSON *obj;
        char *text;

        memset(&rec, 0, sizeof(rec));
        rec.request_id = bad[i];
        rec.method = bad[i];
        rec.status = 200;
        obj = render(&rec, &text);
        if (!valid_utf8((const unsigned char *)text)) {
            print_error("case %zu: access line is not valid UTF-8\n", i);
            failures++;
        }
        free(text);
        cJSON_Delete(obj);
    }
    if (failures > 0)
        fail_msg("%d access lines with raw non-UTF-8 bytes", failures);
}

static void
test_access_long_values(void **state)
{
    struct access_record rec;
    char *big = malloc(100001);
    cJSON *obj;

    (void)state;
    assert_non_null(big);
    memset(big, '"', 100000);
    big[100000] = '\0';
    memset(&rec, 0, sizeof(rec));
    rec.error = big;
    rec.status = 500;
    rec.latency_ms = 1e9;
    rec.bytes = (size_t)1 << 40;
    obj = render(&rec, NULL);
    assert_string_equal(str_field(obj, "error"), big);
    assert_true(num_field(obj, "bytes") == (double)((size_t)1 << 40));
    cJSON_Delete(obj);
    free(big);
}

static void
test_level_parse(void **state)
{
    static const struct {
        const char *s;
        int rc;
        enum log_level want;
    } cases[] = {
        {"DEBUG", 0, LOG_LEVEL_DEBUG},
        {"debug", 0, LOG_LEVEL_DEBUG},
        {"Debug", 0, LOG_LEVEL_DEBUG},
        {"INFO", 0, LOG_LEVEL_INFO},
        {"info", 0, LOG_LEVEL_INFO},
        {"WARN", 0, LOG_LEVEL_WARN},
        {"warn", 0, LOG_LEVEL_WARN},
        {"WARNING", 0, LOG_LEVEL_WARN},
        {"ERROR", 0, LOG_LEVEL_ERROR},
        {"error", 0, LOG_LEVEL_ERROR},
        {"", -1, 0},
        {"ERR", -1, 0},
        {"INF", -1, 0},
        {"INFO ", -1, 0},
        {" INFO", -1, 0},
        {"TRACE", -1, 0},
        {"FATAL", -1, 0},
        {"0", -1, 0},
        {"1", -1, 0},
        {"INFOX", -1, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum log_level out = LOG_LEVEL_ERROR;
        int rc = log_level_parse(cases[i].s, &out);

        if (rc != cases[i].rc)
            fail_msg("log_level_parse(\"%s\") = %d", cases[i].s, rc);
        if (rc == 0)
            assert_int_equal(out, cases[i].want);
    }
    /* Names parse back to their level. */
    for (i = LOG_LEVEL_DEBUG; i <= LOG_LEVEL_ERROR; i++) {
        enum log_level out;
        assert_int_equal(
            log_level_parse(log_level_name((enum log_level)i), &out), 0);
        assert_int_equal(out, i);
    }
}

static void
test_request_id_valid(void **state)
{
    char longest[LOG_REQUEST_ID_MAX + 2];

    (void)state;
    assert_true(log_request_id_valid("a"));
    assert_true(log_request_id_valid("req-1.2_3:abc"));
    assert_true(log_request_id_valid("0123456789abcdefABCDEF"));
    assert_false(log_request_id_valid(NULL));
    assert_false(log_request_id_valid(""));
    assert_false(log_request_id_valid("a b"));
    assert_false(log_request_id_valid("a\"b"));
    assert_false(log_request_id_valid("a\r\nX-Evil: 1"));
    assert_false(log_request_id_valid("caf\xc3\xa9"));
    assert_false(log_request_id_valid("a/b"));
    memset(longest, 'x', LOG_REQUEST_ID_MAX);
    longest[LOG_REQUEST_ID_MAX] = '\0';
    assert_true(log_request_id_valid(longest));
    longest[LOG_REQUEST_ID_MAX] = 'x';
    longest[LOG_REQUEST_ID_MAX + 1] = '\0';
    assert_false(log_request_id_valid(longest));
}

static void
test_request_id_new(void **state)
{
    char a[LOG_REQUEST_ID_GEN + 1], b[LOG_REQUEST_ID_GEN + 1], small[5];
    size_t i;
    int differ = 0;

    (void)state;
    assert_ptr_equal(log_request_id_new(a, sizeof(a)), a);
    assert_int_equal(strlen(a), LOG_REQUEST_ID_GEN);
    for (i = 0; a[i] != '\0'; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
    assert_true(log_request_id_valid(a));
    /* 100 ids in a row, none equal to the one before. */
    for (i = 0; i < 100; i++) {
        log_request_id_new(b, sizeof(b));
        if (strcmp(a, b) != 0)
            differ++;
        memcpy(a, b, sizeof(a));
    }
    assert_int_equal(differ, 100);
    /* A short buffer is filled and terminated, never overrun. */
    log_request_id_new(small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

/* ------------------------------------------------ the access-line buffer */

/* stderr into a temporary file; returns the saved descriptor. */
static int
stderr_to(FILE **fp)
{
    int saved = dup(STDERR_FILENO);

    assert_true(saved >= 0);
    *fp = tmpfile();
    assert_non_null(*fp);
    assert_true(dup2(fileno(*fp), STDERR_FILENO) >= 0);
    return saved;
}

static void
stderr_back(int saved)
{
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
}

/* Lines written so far, and whether the event line came after n access. */
static int
count_lines(FILE *fp, const char *needle, int *needle_at)
{
    char line[4096];
    int n = 0;

    fflush(fp);
    rewind(fp);
    *needle_at = -1;
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (needle != NULL && strstr(line, needle) != NULL)
            *needle_at = n;
        n++;
    }
    fseek(fp, 0, SEEK_END);
    return n;
}

static void
access_line(int i)
{
    char path[64];
    struct access_record rec;

    memset(&rec, 0, sizeof(rec));
    snprintf(path, sizeof(path), "/here-proxy/mc/1/0/%d/png", i);
    rec.wall_ms = 1700000000000LL;
    rec.method = "GET";
    rec.path = path;
    rec.indice = "a";
    rec.cache_status = "HIT";
    rec.request_id = "r";
    rec.remote_addr = "127.0.0.1";
    rec.status = 200;
    log_access(&rec);
}

static void
test_buffer_holds_access_lines(void **state)
{
    FILE *fp;
    int saved = stderr_to(&fp), i, at;

    (void)state;
    log_set_level(LOG_LEVEL_INFO);
    /* Long enough that the flusher cannot write before we look. */
    assert_int_equal(log_buffer_start(10000), 0);
    for (i = 0; i < 10; i++)
        access_line(i);
    assert_int_equal(count_lines(fp, NULL, &at), 0);
    /* Any other line goes out at once, after those waiting. */
    log_event(LOG_LEVEL_WARN, "something", NULL);
    assert_int_equal(count_lines(fp, "\"something\"", &at), 11);
    assert_int_equal(at, 10);
    access_line(10);
    log_flush();
    assert_int_equal(count_lines(fp, NULL, &at), 12);
    /* More than the buffer holds: the older lines are written, none lost. */
    for (i = 0; i < 2000; i++)
        access_line(i);
    assert_true(count_lines(fp, NULL, &at) > 12);
    log_buffer_stop();
    assert_int_equal(count_lines(fp, NULL, &at), 2012);
    /* Stopped: a line per write again. */
    access_line(0);
    assert_int_equal(count_lines(fp, NULL, &at), 2013);
    stderr_back(saved);
    fclose(fp);
}

static void
test_buffer_flushes_after_interval(void **state)
{
    FILE *fp;
    int saved = stderr_to(&fp), at, waited = 0;

    (void)state;
    log_set_level(LOG_LEVEL_INFO);
    assert_int_equal(log_buffer_start(50), 0);
    access_line(1);
    /* Written by the flusher thread within LOG_FLUSH_MS (5 s at most). */
    while (count_lines(fp, NULL, &at) == 0 && waited < 5000) {
        usleep(10000);
        waited += 10;
    }
    assert_int_equal(count_lines(fp, NULL, &at), 1);
    log_buffer_stop();
    stderr_back(saved);
    fclose(fp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_access_fields),
        cmocka_unit_test(test_access_minimal),
        cmocka_unit_test(test_access_aborted),
        cmocka_unit_test(test_access_hostile),
        cmocka_unit_test(test_access_non_utf8),
        cmocka_unit_test(test_access_long_values),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_request_id_valid),
        cmocka_unit_test(test_request_id_new),
        cmocka_unit_test(test_buffer_holds_access_lines),
        cmocka_unit_test(test_buffer_flushes_after_interval),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
