#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "metrics.h"

/* ------------------------------------------------- exposition checker */

/*
 * A strict reader of the text format as metrics writes it: every line is
 * "# HELP name text", "# TYPE name type" or "name{labels} value"; every
 * family has HELP and TYPE before its samples and its samples are
 * contiguous; counters end in _total and are not negative; no series
 * appears twice; histogram buckets have increasing le, cumulative counts,
 * and end with le="+Inf" equal to _count. Fails the test on any breach.
 */

#define MAX_FAMILIES 64
#define MAX_GROUPS 64

struct family {
    char name[128];
    char type[16];
    int help, closed, samples;
};

struct hgroup {
    char fam[128];
    char labels[512]; /* without le */
    double last_le, last_count, inf, count;
    int buckets, has_inf, has_sum, has_count;
};

struct checker {
    struct family fam[MAX_FAMILIES];
    int nfam;
    struct hgroup grp[MAX_GROUPS];
    int ngrp;
    char **series;
    size_t nseries, capseries;
    struct family *current;
};

static struct family *
find_family(struct checker *c, const char *name, int create)
{
    int i;

    for (i = 0; i < c->nfam; i++)
        if (strcmp(c->fam[i].name, name) == 0)
            return &c->fam[i];
    if (!create)
        return NULL;
    assert_true(c->nfam < MAX_FAMILIES);
    assert_true(strlen(name) < sizeof(c->fam[0].name));
    strcpy(c->fam[c->nfam].name, name);
    return &c->fam[c->nfam++];
}

static struct hgroup *
find_group(struct checker *c, const char *fam, const char *labels)
{
    int i;

    for (i = 0; i < c->ngrp; i++)
        if (strcmp(c->grp[i].fam, fam) == 0 &&
            strcmp(c->grp[i].labels, labels) == 0)
            return &c->grp[i];
    assert_true(c->ngrp < MAX_GROUPS);
    memset(&c->grp[c->ngrp], 0, sizeof(c->grp[0]));
    strcpy(c->grp[c->ngrp].fam, fam);
    strcpy(c->grp[c->ngrp].labels, labels);
    c->grp[c->ngrp].last_le = -INFINITY;
    return &c->grp[c->ngrp++];
}

static int
is_name_char(char ch, int first, int colon)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
        (colon && ch == ':') || (!first && ch >= '0' && ch <= '9');
}

/* Reads a name at *p; returns its length (0: none). */
static size_t
read_name(const char **p, char *out, size_t size, int colon)
{
    size_t n = 0;

    while (is_name_char((*p)[n], n == 0, colon))
        n++;
    assert_true(n < size);
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
    return n;
}

static int
ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);

    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static double
parse_value(const char *v, const char *line)
{
    char *end;
    double d;

    if (strcmp(v, "+Inf") == 0)
        return INFINITY;
    if (strcmp(v, "-Inf") == 0)
        return -INFINITY;
    if (strcmp(v, "NaN") == 0)
        return NAN;
    d = strtod(v, &end);
    if (end == v || *end != '\0' || isnan(d) || isinf(d))
        fail_msg("bad value in: %s", line);
    return d;
}

static void
check_sample(struct checker *c, const char *line)
{
    char name[128], lname[128], labels_nole[512] = "", le[64] = "";
    char base[128];
    const char *p = line, *series_end;
    struct family *f;
    char seen_labels[16][128];
    int nlabels = 0, i;
    double value;

    if (read_name(&p, name, sizeof(name), 1) == 0)
        fail_msg("no metric name: %s", line);
    if (*p == '{') {
        p++;
        while (*p != '}') {
            char val[256];
            size_t vn = 0;

            if (read_name(&p, lname, sizeof(lname), 0) == 0)
                fail_msg("bad label name: %s", line);
            for (i = 0; i < nlabels; i++)
                if (strcmp(seen_labels[i], lname) == 0)
                    fail_msg("label %s twice: %s", lname, line);
            assert_true(nlabels < 16);
            strcpy(seen_labels[nlabels++], lname);
            if (p[0] != '=' || p[1] != '"')
                fail_msg("bad label syntax: %s", line);
            p += 2;
            while (*p != '"') {
                if (*p == '\0' || *p == '\n')
                    fail_msg("unterminated label value: %s", line);
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        fail_msg("bad escape: %s", line);
                }
                assert_true(vn < sizeof(val) - 1);
                val[vn++] = *p++;
            }
            val[vn] = '\0';
            p++;
            if (strcmp(lname, "le") == 0) {
                strcpy(le, val);
            } else {
                size_t l = strlen(labels_nole);
                snprintf(labels_nole + l, sizeof(labels_nole) - l, "%s=%s;",
                    lname, val);
            }
            if (*p == ',')
                p++;
            else if (*p != '}')
                fail_msg("expected , or }: %s", line);
        }
        p++;
    }
    series_end = p;
    if (*p != ' ')
        fail_msg("expected one space before the value: %s", line);
    p++;
    if (strchr(p, ' ') != NULL)
        fail_msg("timestamps or junk after the value: %s", line);
    value = parse_value(p, line);

    /* Which family? */
    f = find_family(c, name, 0);
    strcpy(base, name);
    if (f == NULL || strcmp(f->type, "histogram") == 0) {
        const char *suffixes[] = {"_bucket", "_sum", "_count"};
        for (i = 0; i < 3 && f == NULL; i++)
            if (ends_with(name, suffixes[i])) {
                base[strlen(name) - strlen(suffixes[i])] = '\0';
                f = find_family(c, base, 0);
                if (f != NULL && strcmp(f->type, "histogram") != 0)
                    f = NULL;
            }
    }
    if (f == NULL || f->type[0] == '\0')
        fail_msg("sample without a TYPE: %s", line);
    if (!f->help)
        fail_msg("sample without a HELP: %s", line);
    if (f->closed)
        fail_msg("family %s is not contiguous: %s", f->name, line);
    if (c->current != NULL && c->current != f)
        c->current->closed = 1;
    c->current = f;
    f->samples++;

    if (c->nseries == c->capseries) {
        c->capseries = c->capseries ? 2 * c->capseries : 256;
        c->series = realloc(c->series, c->capseries * sizeof(char *));
        assert_non_null(c->series);
    }
    c->series[c->nseries] = strndup(line, (size_t)(series_end - line));
    assert_non_null(c->series[c->nseries]);
    c->nseries++;

    if (strcmp(f->type, "counter") == 0) {
        if (!ends_with(name, "_total"))
            fail_msg("counter without _total: %s", line);
        if (!(value >= 0))
            fail_msg("negative counter: %s", line);
    }
    if (strcmp(f->type, "histogram") == 0) {
        struct hgroup *g = find_group(c, f->name, labels_nole);
        if (ends_with(name, "_bucket")) {
            double l;
            if (le[0] == '\0')
                fail_msg("bucket without le: %s", line);
            if (g->has_inf || g->has_count)
                fail_msg("bucket after +Inf or _count: %s", line);
            l = parse_value(le, line);
            if (!(l > g->last_le))
                fail_msg("le not increasing: %s", line);
            if (value < g->last_count)
                fail_msg("buckets not cumulative: %s", line);
            g->last_le = l;
            g->last_count = value;
            g->buckets++;
            if (isinf(l)) {
                g->has_inf = 1;
                g->inf = value;
            }
        } else if (ends_with(name, "_sum")) {
            g->has_sum = 1;
        } else {
            g->has_count = 1;
            g->count = value;
        }
    }
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void
check_exposition(const char *text)
{
    struct checker *c = calloc(1, sizeof(*c));
    const char *line = text, *nl;
    size_t i;
    int k;

    assert_non_null(c);
    assert_true(strlen(text) > 0);
    assert_int_equal(text[strlen(text) - 1], '\n');
    for (; *line != '\0'; line = nl + 1) {
        char buf[2048], name[128], rest[1024];
        size_t len;

        nl = strchr(line, '\n');
        assert_non_null(nl);
        len = (size_t)(nl - line);
        assert_true(len < sizeof(buf));
        memcpy(buf, line, len);
        buf[len] = '\0';
        if (len == 0)
            fail_msg("empty line");
        if (strncmp(buf, "# HELP ", 7) == 0) {
            const char *p = buf + 7;
            struct family *f;
            if (read_name(&p, name, sizeof(name), 1) == 0 || *p != ' ' ||
                p[1] == '\0')
                fail_msg("bad HELP: %s", buf);
            f = find_family(c, name, 1);
            if (f->help)
                fail_msg("HELP twice: %s", buf);
            f->help = 1;
        } else if (strncmp(buf, "# TYPE ", 7) == 0) {
            const char *p = buf + 7;
            struct family *f;
            if (read_name(&p, name, sizeof(name), 1) == 0 || *p != ' ')
                fail_msg("bad TYPE: %s", buf);
            snprintf(rest, sizeof(rest), "%s", p + 1);
            if (strcmp(rest, "counter") != 0 && strcmp(rest, "gauge") != 0 &&
                strcmp(rest, "histogram") != 0)
                fail_msg("unexpected type: %s", buf);
            f = find_family(c, name, 1);
            if (f->type[0] != '\0' || f->samples > 0)
                fail_msg("TYPE twice or after samples: %s", buf);
            strcpy(f->type, rest);
        } else if (buf[0] == '#') {
            fail_msg("unexpected comment: %s", buf);
        } else {
            check_sample(c, buf);
        }
    }
    for (k = 0; k < c->nfam; k++) {
        if (!c->fam[k].help || c->fam[k].type[0] == '\0')
            fail_msg("family %s lacks HELP or TYPE", c->fam[k].name);
        if (strcmp(c->fam[k].type, "counter") == 0 &&
            !ends_with(c->fam[k].name, "_total"))
            fail_msg("counter family %s lacks _total", c->fam[k].name);
    }
    for (k = 0; k < c->ngrp; k++) {
        struct hgroup *g = &c->grp[k];
        if (!g->has_inf || !g->has_sum || !g->has_count)
            fail_msg("histogram %s{%s} incomplete", g->fam, g->labels);
        if (g->inf != g->count)
            fail_msg("histogram %s{%s}: +Inf %g != _count %g", g->fam,
                g->labels, g->inf, g->count);
    }
    qsort(c->series, c->nseries, sizeof(char *), cmp_str);
    for (i = 1; i < c->nseries; i++)
        if (strcmp(c->series[i - 1], c->series[i]) == 0)
            fail_msg("series twice: %s", c->series[i]);
    for (i = 0; i < c->nseries; i++)
        free(c->series[i]);
    free(c->series);
    free(c);
}

/*
 * The value of one series, written exactly as rendered; -1 when the
 * series is absent.
 */
static double
sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

static char *
render(struct metrics *m)
{
    struct metrics_gauges g;
    char *text;

    memset(&g, 0, sizeof(g));
    g.start_time = 1700000000;
    g.now = 1700000100.5;
    text = metrics_render_prometheus(m, &g, "0.1.0");
    assert_non_null(text);
    check_exposition(text);
    return text;
}

/* ------------------------------------------------- json helpers */

static cJSON *
json(struct metrics *m)
{
    char *text = metrics_render_json(m);
    cJSON *root;

    assert_non_null(text);
    root = cJSON_Parse(text);
    free(text);
    assert_non_null(root);
    return root;
}

/* root.indices[indice][field] or root.totals[field] when indice is NULL. */
static double
jnum(cJSON *root, const char *indice, const char *field)
{
    cJSON *o = indice == NULL
        ? cJSON_GetObjectItemCaseSensitive(root, "totals")
        : cJSON_GetObjectItemCaseSensitive(
              cJSON_GetObjectItemCaseSensitive(root, "indices"), indice);
    cJSON *v;

    if (o == NULL)
        fail_msg("no indice %s", indice);
    v = cJSON_GetObjectItemCaseSensitive(o, field);
    if (v == NULL)
        fail_msg("no %s in %s", field, indice ? indice : "totals");
    if (cJSON_IsNull(v))
        return -1;
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static int
jhas(cJSON *root, const char *indice)
{
    return cJSON_GetObjectItemCaseSensitive(
               cJSON_GetObjectItemCaseSensitive(root, "indices"), indice) !=
        NULL;
}

/* ------------------------------------------------- tests */

static void
test_exact_workload(void **state)
{
    struct metrics *m = metrics_new(METRICS_DEFAULT_MAX_INDICES);
    char *text;
    cJSON *j;
    int i;

    (void)state;
    assert_non_null(m);
    metrics_request(m, "A", METRICS_MISS, 200, 0.120, 1000);
    metrics_upstream(m, "A", UPSTREAM_LABEL_OK, 20, 1, 1000, 0.110);
    for (i = 0; i < 4; i++)
        metrics_request(m, "A", METRICS_HIT, 200, 0.0003, 1000);
    for (i = 0; i < 3; i++) {
        metrics_request(m, "B", METRICS_MISS, 200, 0.2, 500);
        metrics_upstream(m, "B", UPSTREAM_LABEL_OK, 11, 1, 500, 0.19);
    }

    text = render(m);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"A\","
                         "cache=\"hit\",code=\"200\"}"),
        4);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"A\","
                         "cache=\"miss\",code=\"200\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"B\","
                         "cache=\"miss\",code=\"200\"}"),
        3);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"B\","
                         "cache=\"hit\",code=\"200\"}"),
        -1);
    assert_int_equal(
        sample(text, "hereproxy_response_bytes_total{indice=\"A\"}"), 5000);
    assert_int_equal(
        sample(text, "hereproxy_response_bytes_total{indice=\"B\"}"), 1500);
    assert_int_equal(sample(text,
                         "hereproxy_upstream_requests_total{"
                         "indice=\"A\",outcome=\"ok\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_upstream_requests_total{"
                         "indice=\"B\",outcome=\"ok\"}"),
        3);
    assert_int_equal(
        sample(text, "hereproxy_upstream_bytes_total{indice=\"B\"}"), 1500);
    assert_int_equal(sample(text,
                         "hereproxy_upstream_http_version_total{"
                         "version=\"2\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_upstream_http_version_total{"
                         "version=\"1.1\"}"),
        3);
    assert_int_equal(sample(text, "hereproxy_upstream_retries_total"), 0);
    assert_int_equal(sample(text, "hereproxy_upstream_stalls_total"), 0);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_count{"
                         "cache=\"hit\"}"),
        4);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_count{"
                         "cache=\"miss\"}"),
        4);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_count{"
                         "cache=\"stale\"}"),
        0);
    /* 0.0003 s lands in le=0.0005, not below. */
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_bucket{"
                         "cache=\"hit\",le=\"0.00025\"}"),
        0);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_bucket{"
                         "cache=\"hit\",le=\"0.0005\"}"),
        4);
    assert_true(fabs(sample(text,
                         "hereproxy_request_duration_seconds_sum{"
                         "cache=\"miss\"}") -
                    0.72) < 1e-9);
    assert_int_equal(
        sample(text, "hereproxy_upstream_duration_seconds_count"), 4);
    assert_int_equal(sample(text, "hereproxy_indices_tracked"), 2);
    assert_int_equal(sample(text, "hereproxy_indices_overflow_total"), 0);
    assert_int_equal(
        sample(text, "hereproxy_build_info{version=\"0.1.0\"}"), 1);
    assert_true(fabs(sample(text, "hereproxy_uptime_seconds") - 100.5) < 1e-6);
    assert_null(strstr(text, "{indice=\"_other\""));
    free(text);

    j = json(m);
    assert_int_equal(jnum(j, "A", "requests"), 5);
    assert_int_equal(jnum(j, "A", "hits"), 4);
    assert_int_equal(jnum(j, "A", "misses"), 1);
    assert_int_equal(jnum(j, "A", "stale"), 0);
    assert_int_equal(jnum(j, "A", "coalesced"), 0);
    assert_int_equal(jnum(j, "A", "bytes"), 5000);
    assert_int_equal(jnum(j, "A", "upstream_calls"), 1);
    assert_int_equal(jnum(j, "A", "upstream_bytes"), 1000);
    assert_int_equal(jnum(j, "A", "errors"), 0);
    assert_int_equal(jnum(j, "A", "rate_limited"), 0);
    assert_true(fabs(jnum(j, "A", "hit_ratio") - 0.8) < 1e-12);
    assert_int_equal(jnum(j, "B", "requests"), 3);
    assert_int_equal(jnum(j, "B", "hits"), 0);
    assert_int_equal(jnum(j, "B", "misses"), 3);
    assert_int_equal(jnum(j, "B", "upstream_calls"), 3);
    assert_true(jnum(j, "B", "hit_ratio") == 0);
    assert_int_equal(jnum(j, NULL, "requests"), 8);
    assert_int_equal(jnum(j, NULL, "hits"), 4);
    assert_int_equal(jnum(j, NULL, "misses"), 4);
    assert_int_equal(jnum(j, NULL, "upstream_calls"), 4);
    assert_true(fabs(jnum(j, NULL, "hit_ratio") - 0.5) < 1e-12);
    assert_false(jhas(j, "_other"));
    assert_false(jhas(j, "-"));
    cJSON_Delete(j);
    metrics_free(m);
}

/* stale counts as served from the cache, coalesced as not, none not at all. */
static void
test_hit_ratio_definition(void **state)
{
    struct metrics *m = metrics_new(10);
    cJSON *j;

    (void)state;
    metrics_request(m, "x", METRICS_HIT, 200, 0.001, 1);
    metrics_request(m, "x", METRICS_STALE, 200, 0.001, 1);
    metrics_request(m, "x", METRICS_MISS, 200, 0.001, 1);
    metrics_request(m, "x", METRICS_COALESCED, 200, 0.001, 1);
    metrics_request(m, "x", METRICS_NONE, 400, 0.001, 1);
    metrics_request(m, "y", METRICS_NONE, 404, 0.001, 1);
    j = json(m);
    assert_int_equal(jnum(j, "x", "requests"), 5);
    assert_true(fabs(jnum(j, "x", "hit_ratio") - 0.5) < 1e-12);
    assert_int_equal(jnum(j, "y", "requests"), 1);
    assert_int_equal(jnum(j, "y", "hit_ratio"), -1); /* null */
    cJSON_Delete(j);
    metrics_free(m);

    /* Nothing recorded: empty indices, null ratio, a valid exposition. */
    m = metrics_new(10);
    j = json(m);
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "indices")), 0);
    assert_int_equal(jnum(j, NULL, "requests"), 0);
    assert_int_equal(jnum(j, NULL, "hit_ratio"), -1);
    cJSON_Delete(j);
    free(render(m));
    metrics_free(m);
}

static void
test_status_codes(void **state)
{
    struct metrics *m = metrics_new(10);
    const int codes[] = {200, 204, 304, 400, 401, 403, 404, 405, 413, 429, 499,
        500, 502, 503, 504};
    char series[256], *text;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        metrics_request(m, "c", METRICS_NONE, codes[i], 0, 0);
    metrics_request(m, "c", METRICS_NONE, 501, 0, 0);
    metrics_request(m, "c", METRICS_NONE, 599, 0, 0);
    metrics_request(m, "c", METRICS_NONE, 206, 0, 0);
    metrics_request(m, "c", METRICS_NONE, 101, 0, 0);
    metrics_request(m, "c", METRICS_NONE, 302, 0, 0);
    metrics_request(m, "c", METRICS_NONE, 418, 0, 0);
    metrics_request(m, "c", METRICS_NONE, 0, 0, 0);
    metrics_request(m, "c", METRICS_NONE, 600, 0, 0);
    metrics_request(m, "c", METRICS_NONE, -1, 0, 0);
    /* An out-of-range cache value counts as none. */
    metrics_request(m, "c", (enum metrics_cache)42, 200, 0, 0);
    text = render(m);
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        snprintf(series, sizeof(series),
            "hereproxy_requests_total{"
            "indice=\"c\",cache=\"none\",code=\"%d\"}",
            codes[i]);
        assert_int_equal(sample(text, series), codes[i] == 200 ? 2 : 1);
    }
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"c\","
                         "cache=\"none\",code=\"5xx\"}"),
        2);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"c\","
                         "cache=\"none\",code=\"2xx\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"c\","
                         "cache=\"none\",code=\"1xx\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"c\","
                         "cache=\"none\",code=\"3xx\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"c\","
                         "cache=\"none\",code=\"4xx\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"c\","
                         "cache=\"none\",code=\"other\"}"),
        3);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_count{"
                         "cache=\"none\"}"),
        25);
    free(text);
    metrics_free(m);
}

static void
test_upstream_errors_memcached(void **state)
{
    struct metrics *m = metrics_new(10);
    const enum upstream_label outcomes[] = {UPSTREAM_LABEL_OK,
        UPSTREAM_LABEL_NOT_MODIFIED, UPSTREAM_LABEL_HTTP_ERROR,
        UPSTREAM_LABEL_CONNECT, UPSTREAM_LABEL_TLS, UPSTREAM_LABEL_TIMEOUT,
        UPSTREAM_LABEL_TOO_BIG, UPSTREAM_LABEL_BROKEN, UPSTREAM_LABEL_BUSY,
        UPSTREAM_LABEL_BREAKER_OPEN};
    const enum error_kind kinds[] = {ERROR_BAD_REQUEST, ERROR_NOT_FOUND,
        ERROR_METHOD, ERROR_UPSTREAM_4XX, ERROR_UPSTREAM_5XX,
        ERROR_UPSTREAM_UNREACHABLE, ERROR_UPSTREAM_TIMEOUT, ERROR_BUSY,
        ERROR_BREAKER_OPEN, ERROR_INTERNAL};
    char series[256], *text;
    cJSON *j;
    size_t i;

    (void)state;
    for (i = 0; i < 10; i++) {
        metrics_upstream(m, "u", outcomes[i], 20, 3, 10, 0.5);
        metrics_error(m, "u", kinds[i]);
    }
    /* Out of the enum's range: ignored, never a series of its own. */
    metrics_upstream(m, "u", UPSTREAM_LABEL_COUNT, 0, 1, 0, 1.0);
    metrics_upstream(m, "u", (enum upstream_label) - 1, 10, 0, 0, 1.0);
    metrics_upstream(m, "u", UPSTREAM_LABEL_OK, 30, 1, 0, 1.0);
    metrics_upstream(m, "u", UPSTREAM_LABEL_OK, 99, 1, 0, 1.0);
    /* What HERE answered wrong: labels of their own, not "other". */
    metrics_upstream(m, "u", UPSTREAM_LABEL_BAD_RESPONSE, 0, 1, 0, 0.1);
    /* HERE stalled: the exchange's label, and each abandoned attempt. */
    metrics_upstream(m, "u", UPSTREAM_LABEL_STALLED, 0, 3, 0, 3.0);
    metrics_upstream_stalls(m, 3);
    metrics_upstream_stalls(m, 1); /* stalled once, then retried well */
    metrics_upstream_stalls(m, 0);
    metrics_upstream_stalls(NULL, 1);
    metrics_error(m, "u", ERROR_UPSTREAM_BAD_RESPONSE);
    metrics_error(m, "u", ERROR_UPSTREAM_3XX);
    metrics_error(m, "u", ERROR_OTHER);
    metrics_error(m, "u", ERROR_OTHER);
    metrics_error(m, "u", ERROR_NONE);       /* no error: not counted */
    metrics_error(m, "u", ERROR_KIND_COUNT); /* out of range: ignored */
    metrics_rate_limited(m, "u");
    metrics_rate_limited(m, "u");
    metrics_rate_limited(m, "v");
    metrics_memcached(m, 0.0002, 1);
    metrics_memcached(m, 0.002, 0);
    metrics_memcached(m, 0.5, 0);

    text = render(m);
    for (i = 0; i < 10; i++) {
        snprintf(series, sizeof(series),
            "hereproxy_upstream_requests_total{"
            "indice=\"u\",outcome=\"%s\"}",
            upstream_label_name(outcomes[i]));
        assert_int_equal(sample(text, series), i == 0 ? 3 : 1);
        snprintf(series, sizeof(series),
            "hereproxy_errors_total{"
            "indice=\"u\",kind=\"%s\"}",
            error_kind_name(kinds[i]));
        assert_int_equal(sample(text, series), 1);
    }
    assert_null(strstr(text, "outcome=\"other\""));
    assert_int_equal(sample(text,
                         "hereproxy_upstream_requests_total{"
                         "indice=\"u\",outcome=\"bad_response\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_errors_total{indice=\"u\","
                         "kind=\"upstream_bad_response\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_errors_total{indice=\"u\","
                         "kind=\"upstream_3xx\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_errors_total{indice=\"u\","
                         "kind=\"other\"}"),
        2);
    assert_int_equal(sample(text,
                         "hereproxy_upstream_requests_total{"
                         "indice=\"u\",outcome=\"stalled\"}"),
        1);
    assert_int_equal(sample(text, "hereproxy_upstream_stalls_total"), 4);
    /* Eleven exchanges of three attempts each. */
    assert_int_equal(sample(text, "hereproxy_upstream_retries_total"), 22);
    assert_int_equal(sample(text,
                         "hereproxy_upstream_http_version_total{"
                         "version=\"2\"}"),
        10);
    assert_int_equal(sample(text,
                         "hereproxy_upstream_http_version_total{"
                         "version=\"1.0\"}"),
        0); /* only the ignored one said 1.0 */
    assert_int_equal(sample(text,
                         "hereproxy_upstream_http_version_total{"
                         "version=\"3\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_upstream_http_version_total{"
                         "version=\"1.1\"}"),
        0);
    /* busy and breaker_open are counted but not timed; bad_response and
     * stalled are. */
    assert_int_equal(
        sample(text, "hereproxy_upstream_duration_seconds_count"), 12);
    assert_int_equal(
        sample(text, "hereproxy_upstream_bytes_total{indice=\"u\"}"), 100);
    assert_int_equal(
        sample(text, "hereproxy_rate_limited_total{indice=\"u\"}"), 2);
    assert_int_equal(
        sample(text, "hereproxy_rate_limited_total{indice=\"v\"}"), 1);
    assert_int_equal(sample(text, "hereproxy_memcached_errors_total"), 2);
    assert_int_equal(
        sample(text, "hereproxy_memcached_duration_seconds_count"), 3);
    assert_int_equal(
        sample(text,
            "hereproxy_memcached_duration_seconds_bucket{le=\"0.00025\"}"),
        1);
    assert_int_equal(
        sample(
            text, "hereproxy_memcached_duration_seconds_bucket{le=\"0.0025\"}"),
        2);
    /* No requests were recorded for u: no request series for it. */
    assert_null(strstr(text, "hereproxy_requests_total{"));
    free(text);

    j = json(m);
    /* 14 exchanges, busy and breaker_open made no call. */
    assert_int_equal(jnum(j, "u", "upstream_calls"), 12);
    assert_int_equal(jnum(j, "u", "errors"), 14);
    assert_int_equal(jnum(j, "u", "rate_limited"), 2);
    assert_int_equal(jnum(j, "u", "requests"), 0);
    assert_int_equal(jnum(j, "v", "rate_limited"), 1);
    assert_int_equal(jnum(j, NULL, "rate_limited"), 3);
    cJSON_Delete(j);
    metrics_free(m);
}

static void
test_histogram_buckets(void **state)
{
    struct metrics *m = metrics_new(10);
    char *text;

    (void)state;
    /* le is inclusive: a value equal to a bound is in that bucket. */
    metrics_request(m, "h", METRICS_HIT, 200, 0.0001, 0);
    metrics_request(m, "h", METRICS_HIT, 200, 0.00010001, 0);
    metrics_request(m, "h", METRICS_HIT, 200, 30, 0);
    metrics_request(m, "h", METRICS_HIT, 200, 31, 0);
    metrics_request(m, "h", METRICS_HIT, 200, 1e9, 0);
    /* Negative and NaN durations count as 0 and never poison the sum. */
    metrics_request(m, "h", METRICS_HIT, 200, -5, 0);
    metrics_request(m, "h", METRICS_HIT, 200, NAN, 0);
    text = render(m);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_bucket{"
                         "cache=\"hit\",le=\"0.0001\"}"),
        3);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_bucket{"
                         "cache=\"hit\",le=\"0.00025\"}"),
        4);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_bucket{"
                         "cache=\"hit\",le=\"10\"}"),
        4);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_bucket{"
                         "cache=\"hit\",le=\"30\"}"),
        5);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_bucket{"
                         "cache=\"hit\",le=\"+Inf\"}"),
        7);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_count{"
                         "cache=\"hit\"}"),
        7);
    assert_true(fabs(sample(text,
                         "hereproxy_request_duration_seconds_sum{"
                         "cache=\"hit\"}") -
                    (1e9 + 61.00020001)) < 1e-3);
    free(text);
    metrics_free(m);
}

static void
test_indice_values(void **state)
{
    struct metrics *m = metrics_new(10);
    char long64[65], long65[66], *text;
    cJSON *j;

    (void)state;
    memset(long64, 'a', 64);
    long64[64] = '\0';
    memset(long65, 'b', 65);
    long65[65] = '\0';
    metrics_request(m, NULL, METRICS_HIT, 200, 0, 0);
    metrics_request(m, "", METRICS_HIT, 200, 0, 0);
    metrics_request(m, "-", METRICS_HIT, 200, 0, 0);
    metrics_request(m, "ok_name-1.2", METRICS_HIT, 200, 0, 0);
    metrics_request(m, long64, METRICS_HIT, 200, 0, 0);
    /* Not valid indices: they share _other, and are not "overflow". */
    metrics_request(m, long65, METRICS_HIT, 200, 0, 0);
    metrics_request(m, "quo\"te", METRICS_HIT, 200, 0, 0);
    metrics_request(m, "back\\slash", METRICS_HIT, 200, 0, 0);
    metrics_request(m, "new\nline", METRICS_HIT, 200, 0, 0);
    metrics_request(m, "sp ace", METRICS_HIT, 200, 0, 0);
    metrics_request(m, "caf\xc3\xa9", METRICS_HIT, 200, 0, 0);
    metrics_request(m, "_other", METRICS_HIT, 200, 0, 0);
    text = render(m);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"-\","
                         "cache=\"hit\",code=\"200\"}"),
        3);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"ok_name-1.2\",cache=\"hit\",code=\"200\"}"),
        1);
    assert_non_null(strstr(text, long64));
    assert_null(strstr(text, long65));
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"_other\",cache=\"hit\",code=\"200\"}"),
        7);
    assert_null(strstr(text, "\"quo"));
    assert_null(strstr(text, "slash"));
    assert_null(strstr(text, "caf"));
    assert_int_equal(sample(text, "hereproxy_indices_tracked"), 3);
    assert_int_equal(sample(text, "hereproxy_indices_overflow_total"), 0);
    free(text);
    j = json(m);
    assert_int_equal(jnum(j, "-", "hits"), 3);
    assert_int_equal(jnum(j, "_other", "hits"), 7);
    assert_int_equal(jnum(j, NULL, "hits"), 12);
    cJSON_Delete(j);
    metrics_free(m);
}

static void
test_overflow(void **state)
{
    struct metrics *m = metrics_new(3);
    char *text;
    cJSON *j;

    (void)state;
    metrics_request(m, "A", METRICS_HIT, 200, 0, 1);
    metrics_request(m, "B", METRICS_HIT, 200, 0, 1);
    metrics_error(m, "C", ERROR_NOT_FOUND);
    metrics_request(m, "D", METRICS_MISS, 200, 0, 1);
    metrics_request(m, "E", METRICS_MISS, 502, 0, 1);
    metrics_error(m, "E", ERROR_UPSTREAM_5XX);
    metrics_rate_limited(m, "F");
    metrics_request(m, "A", METRICS_HIT, 200, 0, 1);
    metrics_request(m, "C", METRICS_HIT, 200, 0, 1);
    text = render(m);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"A\","
                         "cache=\"hit\",code=\"200\"}"),
        2);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{indice=\"C\","
                         "cache=\"hit\",code=\"200\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"_other\",cache=\"miss\",code=\"200\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"_other\",cache=\"miss\",code=\"502\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_errors_total{"
                         "indice=\"_other\",kind=\"upstream_5xx\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_rate_limited_total{"
                         "indice=\"_other\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_response_bytes_total{"
                         "indice=\"_other\"}"),
        2);
    assert_null(strstr(text, "indice=\"D\""));
    assert_null(strstr(text, "indice=\"E\""));
    assert_null(strstr(text, "indice=\"F\""));
    assert_int_equal(sample(text, "hereproxy_indices_tracked"), 3);
    assert_int_equal(sample(text, "hereproxy_indices_overflow_total"), 2);
    free(text);
    j = json(m);
    assert_int_equal(jnum(j, "_other", "requests"), 2);
    assert_int_equal(jnum(j, "_other", "misses"), 2);
    assert_int_equal(jnum(j, "_other", "errors"), 1);
    assert_int_equal(jnum(j, "_other", "rate_limited"), 1);
    assert_int_equal(jnum(j, NULL, "requests"), 6);
    assert_false(jhas(j, "D"));
    cJSON_Delete(j);
    metrics_free(m);

    /* max_indices 0: everything is _other. */
    m = metrics_new(0);
    assert_non_null(m);
    metrics_request(m, "A", METRICS_HIT, 200, 0, 1);
    text = render(m);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"_other\",cache=\"hit\",code=\"200\"}"),
        1);
    assert_int_equal(sample(text, "hereproxy_indices_overflow_total"), 1);
    free(text);
    metrics_free(m);

    assert_null(metrics_new(METRICS_MAX_INDICES_LIMIT + 1));
    m = metrics_new(METRICS_MAX_INDICES_LIMIT);
    assert_non_null(m);
    metrics_free(m);
}

/* 1000 distinct indices: the default bound is reached exactly. */
static void
test_full_table(void **state)
{
    struct metrics *m = metrics_new(METRICS_DEFAULT_MAX_INDICES);
    char name[32], *text;
    int i;

    (void)state;
    for (i = 0; i < METRICS_DEFAULT_MAX_INDICES + 50; i++) {
        snprintf(name, sizeof(name), "client-%04d", i);
        metrics_request(m, name, METRICS_HIT, 200, 0.001, 100);
        metrics_request(m, name, METRICS_MISS, 200, 0.1, 100);
    }
    text = render(m);
    assert_int_equal(
        sample(text, "hereproxy_indices_tracked"), METRICS_DEFAULT_MAX_INDICES);
    assert_int_equal(sample(text, "hereproxy_indices_overflow_total"), 100);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"client-0999\",cache=\"hit\",code=\"200\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"client-1000\",cache=\"hit\",code=\"200\"}"),
        -1);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"_other\",cache=\"hit\",code=\"200\"}"),
        50);
    free(text);
    metrics_free(m);
}

/*
 * Requests refused before admission count under one fixed label, whatever
 * índice they named and however full the table: they take no series, so
 * the admitted índice still gets its own. A client writing "_refused"
 * gets no share of it.
 */
static void
test_refused_label(void **state)
{
    struct metrics *m = metrics_new(2);
    char *text;
    cJSON *j;
    int i;

    (void)state;
    for (i = 0; i < 20; i++) {
        metrics_request(m, METRICS_REFUSED, METRICS_NONE, 400, 0.001, 10);
        metrics_error(m, METRICS_REFUSED, ERROR_BAD_REQUEST);
    }
    metrics_request(m, "_refused", METRICS_NONE, 200, 0.001, 10);
    metrics_request(m, "good", METRICS_HIT, 200, 0.001, 10);
    text = render(m);
    check_exposition(text);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"_refused\",cache=\"none\",code=\"400\"}"),
        20);
    assert_int_equal(sample(text,
                         "hereproxy_errors_total{"
                         "indice=\"_refused\",kind=\"bad_request\"}"),
        20);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"_other\",cache=\"none\",code=\"200\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_requests_total{"
                         "indice=\"good\",cache=\"hit\",code=\"200\"}"),
        1);
    assert_int_equal(sample(text, "hereproxy_indices_tracked"), 1);
    assert_int_equal(sample(text, "hereproxy_indices_overflow_total"), 0);
    free(text);
    j = json(m);
    assert_true(jnum(j, "_refused", "requests") == 20);
    assert_true(jnum(j, "_refused", "errors") == 20);
    assert_true(jnum(j, "good", "requests") == 1);
    cJSON_Delete(j);
    metrics_free(m);
}

static void
test_escaping(void **state)
{
    struct metrics *m = metrics_new(10);
    struct metrics_gauges g;
    char *text;

    (void)state;
    memset(&g, 0, sizeof(g));
    g.now = 1700000000;
    text = metrics_render_prometheus(m, &g, "1.0 \"rc\\1\"\nx");
    assert_non_null(text);
    check_exposition(text);
    assert_int_equal(sample(text,
                         "hereproxy_build_info{"
                         "version=\"1.0 \\\"rc\\\\1\\\"\\nx\"}"),
        1);
    free(text);

    /* NULL gauges and version. */
    text = metrics_render_prometheus(m, NULL, NULL);
    assert_non_null(text);
    check_exposition(text);
    assert_int_equal(sample(text,
                         "hereproxy_build_info{"
                         "version=\"unknown\"}"),
        1);
    assert_int_equal(sample(text, "hereproxy_uptime_seconds"), 0);
    free(text);
    metrics_free(m);
}

static void
test_gauges(void **state)
{
    struct metrics *m = metrics_new(10);
    struct metrics_gauges g;
    char *text;

    (void)state;
    memset(&g, 0, sizeof(g));
    g.lru_entries = 123;
    g.lru_bytes = 456789;
    g.lru_max_bytes = 268435456;
    g.lru_evictions = 7;
    g.lru_refused = 5;
    g.memcached_configured = 1;
    g.memcached_up = 5; /* any true value renders as 1 */
    g.memcached_servers = 3;
    g.memcached_servers_down = 1;
    g.upstream_inflight = 3;
    g.upstream_queued = 2;
    g.breaker_open = 1;
    g.threads_busy = 9;
    g.threads_total = 64;
    g.start_time = 1700000000.25;
    g.now = 1700003600.75;
    {
        static const char *const co[] = {"spent", "we\"ird"};
        static const char *const params[] = {"style=satellite.day&size=512"};

        g.cache_only_all = 1;
        g.cache_only_indices = co;
        g.cache_only_count = 2;
        g.cache_only_params = params;
        g.cache_only_params_count = 1;
        g.quota_table_full = 4;
        g.cache_only_evicted = 5;
    }
    metrics_purge(m, 0);
    metrics_purge(m, 0);
    metrics_purge(m, 1);
    text = metrics_render_prometheus(m, &g, "0.1.0");
    assert_non_null(text);
    check_exposition(text);
    assert_int_equal(sample(text, "hereproxy_cache_only{scope=\"all\"}"), 1);
    assert_int_equal(
        sample(text, "hereproxy_cache_only{scope=\"indice\",indice=\"spent\"}"),
        1);
    assert_int_equal(
        sample(text,
            "hereproxy_cache_only{scope=\"indice\",indice=\"we\\\"ird\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_cache_only{scope=\"params\","
                         "params=\"style=satellite.day&size=512\"}"),
        1);
    assert_int_equal(sample(text, "hereproxy_quota_table_full_total"), 4);
    assert_int_equal(sample(text, "hereproxy_cache_only_evictions_total"), 5);
    assert_int_equal(
        sample(text, "hereproxy_cache_purges_total{scope=\"tile\"}"), 2);
    assert_int_equal(
        sample(text, "hereproxy_cache_purges_total{scope=\"all\"}"), 1);
    assert_int_equal(sample(text, "hereproxy_cache_entries"), 123);
    assert_int_equal(sample(text, "hereproxy_cache_bytes"), 456789);
    assert_int_equal(sample(text, "hereproxy_cache_max_bytes"), 268435456);
    assert_int_equal(sample(text, "hereproxy_cache_evictions_total"), 7);
    assert_int_equal(
        sample(text, "hereproxy_cache_admissions_refused_total"), 5);
    assert_int_equal(sample(text, "hereproxy_memcached_configured"), 1);
    assert_int_equal(sample(text, "hereproxy_memcached_up"), 1);
    assert_int_equal(sample(text, "hereproxy_memcached_servers"), 3);
    assert_int_equal(sample(text, "hereproxy_memcached_servers_down"), 1);
    assert_int_equal(sample(text, "hereproxy_upstream_inflight"), 3);
    assert_int_equal(sample(text, "hereproxy_upstream_queued"), 2);
    assert_int_equal(sample(text, "hereproxy_breaker_open"), 1);
    assert_int_equal(sample(text, "hereproxy_threads_busy"), 9);
    assert_int_equal(sample(text, "hereproxy_threads"), 64);
    assert_true(fabs(sample(text, "hereproxy_start_time_seconds") -
                    1700000000.25) < 1e-3);
    assert_true(fabs(sample(text, "hereproxy_uptime_seconds") - 3600.5) < 1e-3);
    free(text);
    metrics_free(m);
}

static void
test_null(void **state)
{
    (void)state;
    metrics_free(NULL);
    metrics_request(NULL, "A", METRICS_HIT, 200, 0, 0);
    metrics_upstream(NULL, "A", UPSTREAM_LABEL_OK, 20, 1, 0, 0);
    metrics_error(NULL, "A", ERROR_INTERNAL);
    metrics_rate_limited(NULL, "A");
    metrics_memcached(NULL, 0, 1);
}

/* ------------------------------------------------- threads */

#define NTHREADS 8
#define NITER 20000
#define NSHARED 10

struct worker {
    struct metrics *m;
    int id;
    pthread_barrier_t *start;
};

static void *
hammer(void *arg)
{
    struct worker *w = arg;
    char name[32];
    int i;

    pthread_barrier_wait(w->start);
    for (i = 0; i < NITER; i++) {
        /*
         * Every thread meets every new indice at about the same time, so
         * first sights race for the insert.
         */
        snprintf(name, sizeof(name), "s%d", (i / 7) % NSHARED);
        metrics_request(w->m, name, i % 5 == 0 ? METRICS_MISS : METRICS_HIT,
            200, 0.001, 10);
        if (i % 5 == 0)
            metrics_upstream(w->m, name, UPSTREAM_LABEL_OK, 20, 2, 10, 0.05);
        if (i % 100 == 0) {
            snprintf(name, sizeof(name), "n%d", i / 100);
            metrics_error(w->m, name, ERROR_NOT_FOUND);
        }
        snprintf(name, sizeof(name), "own%d", w->id);
        metrics_rate_limited(w->m, name);
    }
    return NULL;
}

static void
test_threads(void **state)
{
    /* Room for s*, own* and 200 n* but not all of them: some overflow. */
    struct metrics *m = metrics_new(NSHARED + NTHREADS + 150);
    struct worker w[NTHREADS];
    pthread_t t[NTHREADS];
    pthread_barrier_t start;
    char name[32], *text;
    double sum;
    cJSON *j;
    int i;

    (void)state;
    /*
     * s* and own* exist before the race, so that a thread scheduled late
     * (valgrind runs one at a time) still finds them; the n* indices race
     * for the insert and for the last free slots.
     */
    for (i = 0; i < NSHARED; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        metrics_error(m, name, ERROR_INTERNAL);
    }
    for (i = 0; i < NTHREADS; i++) {
        snprintf(name, sizeof(name), "own%d", i);
        metrics_error(m, name, ERROR_INTERNAL);
    }
    pthread_barrier_init(&start, NULL, NTHREADS);
    for (i = 0; i < NTHREADS; i++) {
        w[i].m = m;
        w[i].id = i;
        w[i].start = &start;
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    for (i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);

    j = json(m);
    assert_int_equal(jnum(j, NULL, "requests"), NTHREADS * NITER);
    assert_int_equal(jnum(j, NULL, "misses"), NTHREADS * NITER / 5);
    assert_int_equal(jnum(j, NULL, "hits"), NTHREADS * NITER * 4 / 5);
    assert_int_equal(jnum(j, NULL, "bytes"), NTHREADS * NITER * 10);
    assert_int_equal(jnum(j, NULL, "upstream_calls"), NTHREADS * NITER / 5);
    assert_int_equal(
        jnum(j, NULL, "errors"), NTHREADS * NITER / 100 + NSHARED + NTHREADS);
    assert_int_equal(jnum(j, NULL, "rate_limited"), NTHREADS * NITER);
    sum = 0;
    for (i = 0; i < NSHARED; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        sum += jnum(j, name, "requests");
    }
    assert_int_equal(sum, NTHREADS * NITER);
    for (i = 0; i < NTHREADS; i++) {
        snprintf(name, sizeof(name), "own%d", i);
        assert_int_equal(jnum(j, name, "rate_limited"), NITER);
    }
    cJSON_Delete(j);

    text = render(m); /* the checker also finds duplicate series */
    assert_int_equal(
        sample(text, "hereproxy_indices_tracked"), NSHARED + NTHREADS + 150);
    assert_int_equal(sample(text,
                         "hereproxy_request_duration_seconds_count{"
                         "cache=\"hit\"}"),
        NTHREADS * NITER * 4 / 5);
    assert_true(fabs(sample(text,
                         "hereproxy_request_duration_seconds_sum{"
                         "cache=\"hit\"}") -
                    NTHREADS * NITER * 4 / 5 * 0.001) < 1e-6);
    assert_int_equal(
        sample(text, "hereproxy_upstream_retries_total"), NTHREADS * NITER / 5);
    assert_int_equal(sample(text,
                         "hereproxy_upstream_http_version_total{"
                         "version=\"2\"}"),
        NTHREADS * NITER / 5);
    assert_int_equal(sample(text,
                         "hereproxy_errors_total{indice=\"n0\","
                         "kind=\"not_found\"}"),
        NTHREADS);
    /* Errors are not requests: overflowing ones do not count as overflow. */
    assert_int_equal(sample(text, "hereproxy_indices_overflow_total"), 0);
    free(text);
    metrics_free(m);
}

/*
 * Renders while workers record: every scrape stays well-formed. The
 * checker runs on this thread, where cmocka can report a failure.
 */
struct racer {
    struct worker w;
    atomic_int *done;
};

static void *
hammer_then_done(void *arg)
{
    struct racer *r = arg;

    hammer(&r->w);
    atomic_fetch_add(r->done, 1);
    return NULL;
}

static void
test_render_while_recording(void **state)
{
    struct metrics *m = metrics_new(50);
    pthread_barrier_t start;
    struct racer r[4];
    pthread_t t[4];
    atomic_int done = 0;
    int i, renders = 0;

    (void)state;
    pthread_barrier_init(&start, NULL, 4);
    for (i = 0; i < 4; i++) {
        r[i].w.m = m;
        r[i].w.id = i;
        r[i].w.start = &start;
        r[i].done = &done;
        assert_int_equal(
            pthread_create(&t[i], NULL, hammer_then_done, &r[i]), 0);
    }
    while (atomic_load(&done) < 4 || renders == 0) {
        char *text = metrics_render_prometheus(m, NULL, "x");
        char *js = metrics_render_json(m);
        assert_non_null(text);
        assert_non_null(js);
        check_exposition(text);
        free(text);
        free(js);
        renders++;
    }
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    assert_true(renders > 0);
    metrics_free(m);
}

/* The process families: present with what is known, absent otherwise. */
static void
test_process(void **state)
{
    struct metrics *m = metrics_new(10);
    struct metrics_gauges g;
    char *text;

    (void)state;
    memset(&g, 0, sizeof(g));
    g.start_time = 1700000000.5;
    g.now = 1700000100;
    text = metrics_render_prometheus(m, &g, "0.1.0");
    assert_non_null(text);
    check_exposition(text);
    /* Without have_process: none of them, not zeros. */
    assert_null(strstr(text, "process_"));
    assert_null(strstr(text, "hereproxy_cpus_available"));
    assert_int_equal(
        sample(text, "hereproxy_build_info{version=\"0.1.0\"}"), 1);
    free(text);

    g.have_process = 1;
    g.process.have_stat = 1;
    g.process.cpu_seconds = 12.34;
    g.process.resident_bytes = 52428800;
    g.process.virtual_bytes = 1073741824;
    g.process.open_fds = 17;
    g.process.max_fds = 65536;
    g.process.cpus = 1.5;
    g.libcurl_version = "8.1.2";
    text = metrics_render_prometheus(m, &g, "0.1.0");
    assert_non_null(text);
    check_exposition(text);
    assert_true(fabs(sample(text, "process_cpu_seconds_total") - 12.34) < 1e-9);
    assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    assert_int_equal(sample(text, "process_resident_memory_bytes"), 52428800);
    assert_int_equal(sample(text, "process_virtual_memory_bytes"), 1073741824);
    assert_int_equal(sample(text, "process_open_fds"), 17);
    assert_int_equal(sample(text, "process_max_fds"), 65536);
    assert_true(
        fabs(sample(text, "process_start_time_seconds") - 1700000000.5) < 1e-3);
    assert_true(fabs(sample(text, "hereproxy_cpus_available") - 1.5) < 1e-9);
    assert_int_equal(sample(text,
                         "hereproxy_build_info{version=\"0.1.0\","
                         "libcurl=\"8.1.2\"}"),
        1);
    free(text);

    /* What could not be read is left out, the rest stays. */
    g.process.have_stat = 0;
    g.process.open_fds = -1;
    g.process.max_fds = -1;
    g.process.cpus = 0;
    text = metrics_render_prometheus(m, &g, "0.1.0");
    assert_non_null(text);
    check_exposition(text);
    assert_null(strstr(text, "process_cpu_seconds_total"));
    assert_null(strstr(text, "process_resident_memory_bytes"));
    assert_null(strstr(text, "process_open_fds"));
    assert_null(strstr(text, "process_max_fds"));
    assert_null(strstr(text, "hereproxy_cpus_available"));
    assert_true(
        fabs(sample(text, "process_start_time_seconds") - 1700000000.5) < 1e-3);
    free(text);
    metrics_free(m);
}

/* A render with every family populated, for promtool check metrics. */
static int
print_render(void)
{
    struct metrics *m = metrics_new(METRICS_DEFAULT_MAX_INDICES);
    struct metrics_gauges g;
    char *text;

    memset(&g, 0, sizeof(g));
    g.lru_entries = 10;
    g.lru_bytes = 1000;
    g.lru_max_bytes = 268435456;
    g.memcached_configured = 1;
    g.memcached_up = 1;
    g.threads_total = 64;
    g.start_time = 1700000000;
    g.have_process = 1;
    g.process.have_stat = 1;
    g.process.cpu_seconds = 12.5;
    g.process.resident_bytes = 52428800;
    g.process.virtual_bytes = 1073741824;
    g.process.open_fds = 40;
    g.process.max_fds = 65536;
    g.process.cpus = 2;
    g.libcurl_version = "8.1.2";
    metrics_request(m, "A", METRICS_MISS, 200, 0.12, 1000);
    metrics_request(m, "A", METRICS_HIT, 200, 0.0003, 1000);
    metrics_request(m, "A", METRICS_STALE, 200, 0.0004, 1000);
    metrics_request(m, "B", METRICS_COALESCED, 200, 0.1, 1000);
    metrics_request(m, NULL, METRICS_NONE, 400, 0.00001, 50);
    metrics_request(m, "B", METRICS_MISS, 502, 0.3, 60);
    metrics_upstream(m, "A", UPSTREAM_LABEL_OK, 20, 1, 1000, 0.11);
    metrics_upstream(m, "B", UPSTREAM_LABEL_HTTP_ERROR, 11, 2, 60, 0.29);
    metrics_error(m, NULL, ERROR_BAD_REQUEST);
    metrics_error(m, "B", ERROR_UPSTREAM_5XX);
    metrics_rate_limited(m, "C");
    metrics_memcached(m, 0.0002, 1);
    text = metrics_render_prometheus(m, &g, "0.1.0");
    if (text == NULL)
        return 1;
    fputs(text, stdout);
    free(text);
    metrics_free(m);
    return 0;
}

/* ------------------------------------------------- latency quantiles */

/* root.indices[indice].latency_ms[q] (or totals), -1 for null. */
static double
jlat(cJSON *root, const char *indice, const char *q)
{
    cJSON *o = indice == NULL
        ? cJSON_GetObjectItemCaseSensitive(root, "totals")
        : cJSON_GetObjectItemCaseSensitive(
              cJSON_GetObjectItemCaseSensitive(root, "indices"), indice);
    cJSON *lat = cJSON_GetObjectItemCaseSensitive(o, "latency_ms");
    cJSON *v = cJSON_GetObjectItemCaseSensitive(lat, q);

    if (v == NULL)
        fail_msg("no latency_ms.%s in %s", q, indice ? indice : "totals");
    if (cJSON_IsNull(v))
        return -1;
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void
test_quantile(void **state)
{
    size_t n = metrics_nbuckets(), i;
    uint64_t c[64];

    (void)state;
    assert_true(n >= 2 && n <= 64);
    /* The buckets reach from 100 us to 30 s. */
    assert_true(fabs(metrics_bucket_bound(0) - 0.0001) < 1e-12);
    assert_true(fabs(metrics_bucket_bound(n - 2) - 30) < 1e-12);
    assert_true(metrics_bucket_bound(n - 1) < 0);
    for (i = 1; i + 1 < n; i++)
        assert_true(metrics_bucket_bound(i) > metrics_bucket_bound(i - 1));

    memset(c, 0, sizeof(c));
    assert_true(metrics_quantile(c, n, 0.5) == -1); /* nothing yet */
    /* Ten in the first bucket [0, 0.1 ms]: linear from 0. */
    c[0] = 10;
    assert_true(fabs(metrics_quantile(c, n, 0.5) - 0.00005) < 1e-12);
    assert_true(fabs(metrics_quantile(c, n, 1.0) - 0.0001) < 1e-12);
    /* One in (0.5 ms, 1 ms]: p50 halfway, p95 near its top. */
    memset(c, 0, sizeof(c));
    c[3] = 1;
    assert_true(fabs(metrics_quantile(c, n, 0.5) - 0.00075) < 1e-12);
    assert_true(fabs(metrics_quantile(c, n, 0.95) - 0.000975) < 1e-12);
    /* Nine fast, one slow: p50 among the fast, p95 in the slow bucket. */
    memset(c, 0, sizeof(c));
    c[1] = 9;  /* (0.1 ms, 0.25 ms] */
    c[13] = 1; /* (1 s, 2.5 s] */
    assert_true(fabs(metrics_quantile(c, n, 0.5) -
                    (0.0001 + 0.00015 * 5.0 / 9.0)) < 1e-12);
    assert_true(fabs(metrics_quantile(c, n, 0.95) - 1.75) < 1e-12);
    /* Past the last bound: the highest finite bound. */
    memset(c, 0, sizeof(c));
    c[n - 1] = 3;
    assert_true(metrics_quantile(c, n, 0.5) == 30);
    /* Bad arguments. */
    c[0] = 1;
    assert_true(metrics_quantile(c, n - 1, 0.5) == -1);
    assert_true(metrics_quantile(c, n, -0.1) == -1);
    assert_true(metrics_quantile(c, n, 1.1) == -1);
    assert_true(metrics_quantile(c, n, NAN) == -1);
}

static void
test_json_latency(void **state)
{
    struct metrics *m = metrics_new(2);
    cJSON *j;
    int i;

    (void)state;
    assert_non_null(m);
    j = json(m);
    /* No request at all: null quantiles in the totals. */
    assert_true(jlat(j, NULL, "p50") == -1);
    assert_true(jlat(j, NULL, "p95") == -1);
    cJSON_Delete(j);

    for (i = 0; i < 9; i++)
        metrics_request(m, "A", METRICS_HIT, 200, 0.0002, 10);
    metrics_request(m, "A", METRICS_MISS, 200, 2.0, 10);
    /* An indice with errors but no request has no latency. */
    metrics_error(m, "B", ERROR_INTERNAL);
    /* Past max_indices: _other has its own histogram. */
    metrics_request(m, "C", METRICS_MISS, 502, 0.0007, 10);

    j = json(m);
    /* p50: rank 5 of 9 in (0.1, 0.25] ms; p95: rank 9.5 in (1, 2.5] s. */
    assert_true(fabs(jlat(j, "A", "p50") - 0.183) < 1e-9);
    assert_true(fabs(jlat(j, "A", "p95") - 1750) < 1e-9);
    assert_true(jlat(j, "B", "p50") == -1);
    assert_true(jlat(j, "B", "p95") == -1);
    assert_true(jhas(j, "_other"));
    assert_true(fabs(jlat(j, "_other", "p50") - 0.75) < 1e-9);
    /* Totals: 11 requests; rank 5.5 and 10.45. */
    assert_true(fabs(jlat(j, NULL, "p50") - (0.1 + 0.15 * 5.5 / 9.0)) < 1e-3);
    assert_true(fabs(jlat(j, NULL, "p95") - (1000 + 1500 * 0.45)) < 1e-6);
    cJSON_Delete(j);
    metrics_free(m);
}

/* The exact JSON shape the live demo panel reads. */
static void
test_json_shape(void **state)
{
    static const char *const fields[] = {"requests", "hits", "misses", "stale",
        "coalesced", "bytes", "upstream_calls", "upstream_bytes", "errors",
        "rate_limited", "hit_ratio", "latency_ms"};
    struct metrics *m = metrics_new(10);
    cJSON *j, *o, *item;
    const char *where[] = {"A", NULL};
    size_t i, k, n;

    (void)state;
    metrics_request(m, "A", METRICS_HIT, 200, 0.001, 10);
    j = json(m);
    n = 0;
    for (item = j->child; item != NULL; item = item->next)
        n++;
    assert_int_equal(n, 2);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(j, "indices"));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(j, "totals"));
    for (i = 0; i < 2; i++) {
        o = where[i] == NULL
            ? cJSON_GetObjectItemCaseSensitive(j, "totals")
            : cJSON_GetObjectItemCaseSensitive(
                  cJSON_GetObjectItemCaseSensitive(j, "indices"), where[i]);
        assert_non_null(o);
        /* Those fields, in that order, and nothing else. */
        item = o->child;
        for (k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
            assert_non_null(item);
            assert_string_equal(item->string, fields[k]);
            item = item->next;
        }
        assert_null(item);
        item = cJSON_GetObjectItemCaseSensitive(o, "latency_ms");
        assert_true(cJSON_IsObject(item));
        assert_string_equal(item->child->string, "p50");
        assert_string_equal(item->child->next->string, "p95");
        assert_null(item->child->next->next);
    }
    cJSON_Delete(j);
    metrics_free(m);
}

static void
test_forbidden_kind(void **state)
{
    struct metrics *m = metrics_new(10);
    char *text;

    (void)state;
    metrics_error(m, "-", ERROR_FORBIDDEN);
    metrics_error(m, "-", ERROR_OTHER);
    text = render(m);
    assert_int_equal(sample(text,
                         "hereproxy_errors_total{indice=\"-\","
                         "kind=\"forbidden\"}"),
        1);
    assert_int_equal(sample(text,
                         "hereproxy_errors_total{indice=\"-\","
                         "kind=\"other\"}"),
        1);
    free(text);
    metrics_free(m);
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_workload),
        cmocka_unit_test(test_hit_ratio_definition),
        cmocka_unit_test(test_status_codes),
        cmocka_unit_test(test_upstream_errors_memcached),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_indice_values),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_full_table),
        cmocka_unit_test(test_refused_label),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_gauges),
        cmocka_unit_test(test_null),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_render_while_recording),
        cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_json_latency),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_forbidden_kind),
        cmocka_unit_test(test_process),
    };

    /* test_metrics --render: a sample exposition on stdout. */
    if (argc == 2 && strcmp(argv[1], "--render") == 0)
        return print_render();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
