#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokens.h"
#include "util.h"

/*
 * Linked with -Wl,--wrap=util_consttime_equal: every comparison the table
 * makes comes through here, counted, with its arguments kept.
 */
int __real_util_consttime_equal(const char *a, const char *b);
int __wrap_util_consttime_equal(const char *a, const char *b);

static _Atomic long compares;
static _Thread_local char last_stored[TOKEN_MAX + 1];
static _Thread_local char last_given[TOKEN_MAX + 1];

int
__wrap_util_consttime_equal(const char *a, const char *b)
{
    compares++;
    util_strlcpy(last_stored, a, sizeof(last_stored));
    util_strlcpy(last_given, b, sizeof(last_given));
    return __real_util_consttime_equal(a, b);
}

static struct token_table *
parse_ok(const char *list)
{
    struct token_table *t = NULL;
    char err[256];

    if (token_table_parse(list, &t, err, sizeof(err)) != 0)
        fail_msg("token_table_parse: %s", err);
    return t;
}

/* Parsing fails, leaves *out alone; the message holds want, not secret. */
static void
parse_bad(const char *list, const char *want, const char *secret)
{
    static char dummy;
    struct token_table *const sentinel = (void *)&dummy;
    struct token_table *t = sentinel;
    char err[256];

    if (token_table_parse(list, &t, err, sizeof(err)) != -1)
        fail_msg("accepted: %s", list);
    assert_ptr_equal(t, sentinel);
    if (strstr(err, want) == NULL)
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", list, err, want);
    if (secret != NULL && strstr(err, secret) != NULL)
        fail_msg("the message quotes the token: %s", err);
}

static void
test_lookup(void **state)
{
    struct token_table *t;
    char ind[65], small[4], tok[TOKEN_MAX + 2];

    (void)state;
    t = parse_ok(" tokA:indiceA,\ttok.B~x:indiceB , ,last:z-9_.");
    assert_int_equal(token_table_count(t), 3);
    assert_int_equal(token_table_find(t, "tokA", ind, sizeof(ind)), 1);
    assert_string_equal(ind, "indiceA");
    assert_int_equal(token_table_find(t, "tok.B~x", ind, sizeof(ind)), 1);
    assert_string_equal(ind, "indiceB");
    assert_int_equal(token_table_find(t, "last", ind, sizeof(ind)), 1);
    assert_string_equal(ind, "z-9_.");
    /* Misses: a prefix, an extension, an indice, case, nothing. */
    assert_int_equal(token_table_find(t, "tok", ind, sizeof(ind)), 0);
    assert_int_equal(token_table_find(t, "tokAA", ind, sizeof(ind)), 0);
    assert_int_equal(token_table_find(t, "toka", ind, sizeof(ind)), 0);
    assert_int_equal(token_table_find(t, "indiceA", ind, sizeof(ind)), 0);
    assert_int_equal(token_table_find(t, "tokA:indiceA", ind, sizeof(ind)), 0);
    assert_int_equal(token_table_find(t, "", ind, sizeof(ind)), 0);
    assert_int_equal(token_table_find(t, NULL, ind, sizeof(ind)), 0);
    assert_int_equal(token_table_find(t, "tokA", ind, 0), 0);
    memset(tok, 'a', sizeof(tok) - 1);
    tok[sizeof(tok) - 1] = '\0'; /* TOKEN_MAX + 1 bytes */
    assert_int_equal(token_table_find(t, tok, ind, sizeof(ind)), 0);
    /* The indice is cut to the caller's buffer. */
    assert_int_equal(token_table_find(t, "tokA", small, sizeof(small)), 1);
    assert_string_equal(small, "ind");
    token_table_free(t);
    /* The longest token and indice fit. */
    {
        char list[TOKEN_MAX + TOKEN_INDICE_MAX + 2];

        memset(list, 'T', TOKEN_MAX);
        list[TOKEN_MAX] = ':';
        memset(list + TOKEN_MAX + 1, 'i', TOKEN_INDICE_MAX);
        list[TOKEN_MAX + 1 + TOKEN_INDICE_MAX] = '\0';
        t = parse_ok(list);
        list[TOKEN_MAX] = '\0';
        assert_int_equal(token_table_find(t, list, ind, sizeof(ind)), 1);
        assert_int_equal(strlen(ind), TOKEN_INDICE_MAX);
        token_table_free(t);
    }
    /* No entries: no table, and nothing is found in none. */
    t = (void *)small;
    assert_int_equal(token_table_parse("", &t, ind, sizeof(ind)), 0);
    assert_null(t);
    t = (void *)small;
    assert_int_equal(token_table_parse(" , ,\t", &t, ind, sizeof(ind)), 0);
    assert_null(t);
    assert_int_equal(token_table_find(NULL, "tokA", ind, sizeof(ind)), 0);
    assert_int_equal(token_table_count(NULL), 0);
    token_table_free(NULL);
}

static void
test_errors(void **state)
{
    char list[300];

    (void)state;
    parse_bad("secretonly", "entry 1 must be TOKEN:INDICE", "secretonly");
    parse_bad("a:b,,secretX:", "entry 3 must be", "secretX");
    parse_bad("a:b, :x", "entry 2 must be", NULL);
    parse_bad("sec ret:x", "entry 1 must be", "sec ret");
    parse_bad("secretY:bad/indice", "entry 1 must be", "secretY");
    parse_bad("secretZ:a:b", "entry 1 must be", "secretZ");
    memset(list, 't', TOKEN_MAX + 1);
    strcpy(list + TOKEN_MAX + 1, ":x");
    parse_bad(list, "entry 1 must be", NULL);
    strcpy(list, "t:");
    memset(list + 2, 'i', TOKEN_INDICE_MAX + 1);
    list[2 + TOKEN_INDICE_MAX + 1] = '\0';
    parse_bad(list, "entry 1 must be", NULL);
    /* A token twice is an error, whatever the indices. */
    parse_bad("dupSecret:a,b:b,dupSecret:a", "entry 3 repeats", "dupSecret");
    parse_bad("x:a, ,y:b,x:c", "entry 4 repeats", NULL);
    /* Case matters: these are two tokens. */
    token_table_free(parse_ok("Abc:a,abc:b"));
}

/*
 * Every hit is one constant-time comparison, between the stored token and
 * the candidate, however many tokens there are: a keyed-hash lookup, not a
 * scan. A miss compares nothing (no stored token has its hash).
 */
static void
test_one_consttime_compare(void **state)
{
    enum { N = 10000 };
    struct token_table *t;
    char *list, *p, ind[65], tok[64];
    int i;

    (void)state;
    assert_non_null(list = malloc((size_t)N * 48));
    p = list;
    for (i = 0; i < N; i++)
        p += sprintf(p, "%stoken-%05d-xyzzy:i%d", i ? "," : "", i, i % 10);
    t = parse_ok(list);
    assert_int_equal(token_table_count(t), N);
    for (i = 0; i < N; i += 101) {
        snprintf(tok, sizeof(tok), "token-%05d-xyzzy", i);
        compares = 0;
        assert_int_equal(token_table_find(t, tok, ind, sizeof(ind)), 1);
        assert_int_equal(compares, 1);
        assert_string_equal(last_stored, tok);
        assert_string_equal(last_given, tok);
    }
    compares = 0;
    for (i = 0; i < 1000; i++) {
        snprintf(tok, sizeof(tok), "token-%05d-xyzzY", i);
        assert_int_equal(token_table_find(t, tok, ind, sizeof(ind)), 0);
    }
    assert_true(compares <= 1); /* only a 64-bit hash collision */
    token_table_free(t);
    free(list);
}

/* Many readers at once: the keyed MAC is copied, never shared mutably. */
struct reader {
    const struct token_table *t;
    int failures;
};

static void *
read_many(void *arg)
{
    struct reader *r = arg;
    char tok[32], ind[65], want[8];
    int i;

    for (i = 0; i < 20000; i++) {
        snprintf(tok, sizeof(tok), "t%d", i % 500);
        snprintf(want, sizeof(want), "i%d", i % 500 % 7);
        if (token_table_find(r->t, tok, ind, sizeof(ind)) != 1 ||
            strcmp(ind, want) != 0)
            r->failures++;
        if (token_table_find(r->t, "nope", ind, sizeof(ind)) != 0)
            r->failures++;
    }
    return NULL;
}

static void
test_threads(void **state)
{
    struct reader r[4];
    pthread_t th[4];
    char list[500 * 16], *p = list;
    struct token_table *t;
    int i;

    (void)state;
    for (i = 0; i < 500; i++)
        p += sprintf(p, "%st%d:i%d", i ? "," : "", i, i % 7);
    t = parse_ok(list);
    for (i = 0; i < 4; i++) {
        r[i].t = t;
        r[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, read_many, &r[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].failures, 0);
    }
    token_table_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_one_consttime_compare),
        cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
