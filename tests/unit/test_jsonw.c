/* jsonw: every line it writes parses as JSON and says what was given. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "jsonw.h"

/* Finish w and parse the line; checks the newline. */
static cJSON *
finish_parse(struct jsonw *w)
{
    size_t len = 0;
    const char *line = jsonw_finish(w, &len);
    char *text;
    cJSON *obj;

    assert_non_null(line);
    assert_true(len >= 3);
    assert_int_equal(line[len - 1], '\n');
    text = malloc(len);
    assert_non_null(text);
    memcpy(text, line, len - 1);
    text[len - 1] = '\0';
    obj = cJSON_Parse(text);
    free(text);
    assert_non_null(obj);
    return obj;
}

static void
test_fields(void **state)
{
    char stack[256];
    struct jsonw w;
    cJSON *obj;

    (void)state;
    jsonw_init(&w, stack, sizeof(stack));
    jsonw_str(&w, "s", "plain");
    jsonw_str(&w, "absent", NULL);
    jsonw_int(&w, "zero", 0);
    jsonw_int(&w, "neg", -42);
    jsonw_int(&w, "big", 9007199254740991LL);
    jsonw_ms(&w, "ms", 12.3456789);
    jsonw_ms(&w, "whole", 7.0);
    jsonw_ms(&w, "tiny", 0.0004);
    obj = finish_parse(&w);
    assert_string_equal(cJSON_GetObjectItem(obj, "s")->valuestring, "plain");
    assert_null(cJSON_GetObjectItem(obj, "absent"));
    assert_int_equal(cJSON_GetObjectItem(obj, "zero")->valuedouble, 0);
    assert_int_equal(cJSON_GetObjectItem(obj, "neg")->valuedouble, -42);
    assert_true(
        cJSON_GetObjectItem(obj, "big")->valuedouble == 9007199254740991.0);
    assert_true(cJSON_GetObjectItem(obj, "ms")->valuedouble == 12.346);
    assert_true(cJSON_GetObjectItem(obj, "whole")->valuedouble == 7.0);
    assert_true(cJSON_GetObjectItem(obj, "tiny")->valuedouble == 0.0);
    assert_int_equal(cJSON_GetArraySize(obj), 7);
    cJSON_Delete(obj);
    jsonw_release(&w);
}

/* Quotes, backslashes, control bytes, valid and invalid UTF-8. */
static void
test_escaping(void **state)
{
    char stack[64];
    struct jsonw w;
    cJSON *obj;

    (void)state;
    jsonw_init(&w, stack, sizeof(stack));
    jsonw_str(&w, "q", "a\"b\\c\r\n\t\x01\x7f");
    jsonw_str(&w, "utf8", "\xc3\xadndice \xe2\x82\xac \xf0\x9f\x97\xba");
    jsonw_str(&w, "bad", "x\xff\xc0\xafy\xed\xa0\x80z\xe2\x82");
    obj = finish_parse(&w);
    assert_string_equal(
        cJSON_GetObjectItem(obj, "q")->valuestring, "a\"b\\c\r\n\t\x01\x7f");
    assert_string_equal(cJSON_GetObjectItem(obj, "utf8")->valuestring,
        "\xc3\xadndice \xe2\x82\xac \xf0\x9f\x97\xba");
    /* Each byte that starts no valid sequence is one U+FFFD. */
    assert_string_equal(cJSON_GetObjectItem(obj, "bad")->valuestring,
        "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy"
        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd");
    cJSON_Delete(obj);
    jsonw_release(&w);
}

/* A line larger than the stack buffer moves to the heap, intact. */
static void
test_grows(void **state)
{
    char stack[16], *big;
    struct jsonw w;
    cJSON *obj;

    (void)state;
    big = malloc(10001);
    assert_non_null(big);
    memset(big, 'k', 10000);
    big[10000] = '\0';
    jsonw_init(&w, stack, sizeof(stack));
    jsonw_int(&w, "n", 1);
    jsonw_str(&w, "big", big);
    jsonw_str(&w, "after", "ok");
    assert_int_equal(w.on_heap, 1);
    obj = finish_parse(&w);
    assert_string_equal(cJSON_GetObjectItem(obj, "big")->valuestring, big);
    assert_string_equal(cJSON_GetObjectItem(obj, "after")->valuestring, "ok");
    cJSON_Delete(obj);
    jsonw_release(&w);
    assert_null(w.buf);
    free(big);
}

static void
test_empty_object(void **state)
{
    char stack[8];
    struct jsonw w;
    size_t len;
    const char *line;

    (void)state;
    jsonw_init(&w, stack, sizeof(stack));
    line = jsonw_finish(&w, &len);
    assert_non_null(line);
    assert_int_equal(len, 3);
    assert_memory_equal(line, "{}\n", 3);
    jsonw_release(&w);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_grows),
        cmocka_unit_test(test_empty_object),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
