#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "caps.h"
#include "request.h"

/* HERE's v3 copyright form, as tests/upstream/here_upstream.py serves it. */
static const char copyright[] =
    "{\"copyrights\":{"
    "\"here\":[{\"label\":\"HERE\",\"minLevel\":0,\"maxLevel\":22}],"
    "\"sat\":[{\"label\":\"Imagery Co\",\"minLevel\":10}],"
    "\"ign\":[{\"label\":\"IGN <b>\\\"x\\\"</b> & 'y'\"},"
    "{\"label\":\"IGN <b>\\\"x\\\"</b> & 'y'\"}]},"
    "\"resources\":{\"base\":{\"styles\":{"
    "\"explore.day\":[\"here\"],"
    "\"satellite.day\":[\"here\",\"sat\",\"nosuch\",7],"
    "\"lite.day\":[\"ign\"],"
    "\"topo.day\":\"here\"}}}}";

static struct policy_fixture {
    struct request_policy policy;
} fx = {{20, 0}};

static void
parse(const char *uri, struct tile_req *req)
{
    char err[256];
    int rc = request_parse("GET", uri, &fx.policy, req, err, sizeof(err));

    if (rc != 0)
        fail_msg("%s: %d %s", uri, rc, err);
}

static void
test_host(void **state)
{
    static const char *const good[] = {"example.com", "maps.example.com:8080",
        "localhost", "127.0.0.1", "127.0.0.1:1", "[::1]", "[::1]:65535",
        "[2001:db8::1]:443", "a-b.c1", "x", NULL};
    static const char *const bad[] = {"", ":80", "example.com:", "a..b", ".a",
        "a.", "-a.com", "a-.com", "a_b.com", "ex ample.com", "a.com:0",
        "a.com:65536", "a.com:080", "a.com:80:80", "a.com/x", "a.com?x",
        "a.com#x", "user@a.com", "[::1", "[]", "[::g]", "[::1]x",
        "[::1]:", "a\"<b>.com", "a.com\r\nX: y", "é.com", NULL};
    char longlabel[80];
    size_t i;

    (void)state;
    for (i = 0; good[i] != NULL; i++)
        if (!caps_host_valid(good[i], strlen(good[i])))
            fail_msg("should be valid: '%s'", good[i]);
    for (i = 0; bad[i] != NULL; i++)
        if (caps_host_valid(bad[i], strlen(bad[i])))
            fail_msg("should be refused: '%s'", bad[i]);
    memset(longlabel, 'a', 64);
    longlabel[64] = '\0';
    assert_false(caps_host_valid(longlabel, 64));
    assert_true(caps_host_valid(longlabel, 63));
    assert_false(caps_host_valid(NULL, 0));
}

static void
test_public_url(void **state)
{
    static const char *const good[] = {"https://maps.example.com",
        "http://127.0.0.1:8080", "https://example.com/maps",
        "https://example.com/a/b-c_d.e~f/", "http://[::1]:8080/x", NULL};
    static const char *const bad[] = {"", "maps.example.com",
        "ftp://example.com", "https://", "https:///x", "https://user@x.com",
        "https://x.com?a=1", "https://x.com/#f", "https://x.com/a?b",
        "https://x.com/../y", "https://x.com//y", "https://x.com/a b",
        "https://x.com/%41", "https://x.com/\"><b>", "HTTPS://x.com",
        "https://x_y.com", NULL};
    char big[CAPS_BASE_MAX + 8];
    size_t i;

    (void)state;
    for (i = 0; good[i] != NULL; i++)
        if (!caps_public_url_valid(good[i]))
            fail_msg("should be valid: '%s'", good[i]);
    for (i = 0; bad[i] != NULL; i++)
        if (caps_public_url_valid(bad[i]))
            fail_msg("should be refused: '%s'", bad[i]);
    memset(big, 'a', sizeof(big));
    memcpy(big, "https://a.com/", 14);
    big[sizeof(big) - 1] = '\0';
    assert_false(caps_public_url_valid(big));
}

static void
test_base_url(void **state)
{
    char out[CAPS_BASE_MAX];
    int from_host = -1;

    (void)state;
    /* The setting wins over any Host. */
    assert_int_equal(caps_base_url("https://maps.example.com", "evil.example",
                         NULL, NULL, out, sizeof(out), &from_host),
        0);
    assert_string_equal(out, "https://maps.example.com");
    assert_int_equal(from_host, 0);
    assert_int_equal(caps_base_url("", "maps.example.com:8080", NULL, "http",
                         out, sizeof(out), &from_host),
        0);
    assert_string_equal(out, "http://maps.example.com:8080");
    assert_int_equal(from_host, 1);
    assert_int_equal(
        caps_base_url(NULL, "a.com", "on", NULL, out, sizeof(out), &from_host),
        0);
    assert_string_equal(out, "https://a.com");
    assert_int_equal(
        caps_base_url(NULL, "a.com", "1", NULL, out, sizeof(out), &from_host),
        0);
    assert_string_equal(out, "https://a.com");
    assert_int_equal(caps_base_url(NULL, "a.com", NULL, "https", out,
                         sizeof(out), &from_host),
        0);
    assert_string_equal(out, "https://a.com");
    assert_int_equal(
        caps_base_url(NULL, "a.com", "", "x", out, sizeof(out), &from_host), 0);
    assert_string_equal(out, "http://a.com");
    /* No Host, or one that is not a host: no document. */
    assert_int_equal(
        caps_base_url(NULL, NULL, NULL, NULL, out, sizeof(out), &from_host),
        -1);
    assert_int_equal(caps_base_url("", "a.com/x\"><script>", NULL, NULL, out,
                         sizeof(out), &from_host),
        -1);
    assert_int_equal(
        caps_base_url("", "a.com", NULL, NULL, out, 10, &from_host), -1);
}

static void
test_attribution(void **state)
{
    char out[CAPS_ATTRIBUTION_MAX];

    (void)state;
    assert_int_equal(caps_attribution(copyright, strlen(copyright), "base",
                         "explore.day", 2031, out, sizeof(out)),
        0);
    assert_string_equal(out, "\xc2\xa9 HERE");
    assert_int_equal(caps_attribution(copyright, strlen(copyright), "base",
                         "satellite.day", 2031, out, sizeof(out)),
        0);
    assert_string_equal(out, "\xc2\xa9 HERE, \xc2\xa9 Imagery Co");
    /* No label names HERE: HERE's own credit first; one label, once. */
    assert_int_equal(caps_attribution(copyright, strlen(copyright), "base",
                         "lite.day", 2031, out, sizeof(out)),
        0);
    assert_string_equal(
        out, "\xc2\xa9 2031 HERE, \xc2\xa9 IGN <b>\"x\"</b> & 'y'");
    /* Nothing for this layer, or ids that are not a list: HERE's credit. */
    assert_int_equal(caps_attribution(copyright, strlen(copyright), "label",
                         "explore.day", 2031, out, sizeof(out)),
        0);
    assert_string_equal(out, "\xc2\xa9 2031 HERE");
    assert_int_equal(caps_attribution(copyright, strlen(copyright), "base",
                         "topo.day", 2031, out, sizeof(out)),
        0);
    assert_string_equal(out, "\xc2\xa9 2031 HERE");
    /* No document, not JSON, not HERE's form: the fallback, said. */
    assert_int_equal(caps_attribution(NULL, 0, "base", "explore.day", 2031, out,
                         sizeof(out)),
        -1);
    assert_string_equal(out, "\xc2\xa9 2031 HERE");
    assert_int_equal(caps_attribution("{\"copyrights\":", 14, "base",
                         "explore.day", 2031, out, sizeof(out)),
        -1);
    assert_string_equal(out, "\xc2\xa9 2031 HERE");
    assert_int_equal(caps_attribution("{\"base\":[{\"label\":\"HERE\"}]}",
                         strlen("{\"base\":[{\"label\":\"HERE\"}]}"), "base",
                         "explore.day", 2031, out, sizeof(out)),
        -1);
    assert_int_equal(caps_attribution("[1,2]", 5, "base", "explore.day", 2031,
                         out, sizeof(out)),
        -1);
}

/* One label through the cleaning, as the whole attribution. */
static void
one_label(const char *label_json, char *out, size_t size)
{
    char doc[2048];

    snprintf(doc, sizeof(doc),
        "{\"copyrights\":{\"a\":[{\"label\":%s}]},\"resources\":{\"base\":{"
        "\"styles\":{\"explore.day\":[\"a\"]}}}}",
        label_json);
    assert_int_equal(caps_attribution(doc, strlen(doc), "base", "explore.day",
                         2031, out, size),
        0);
}

static void
test_attribution_hostile(void **state)
{
    char out[CAPS_ATTRIBUTION_MAX], label[1200];
    size_t i;

    (void)state;
    /* Control characters, bidirectional overrides, zero-width and BOM go;
     * blanks shrink to one; the rest is HERE's text. */
    one_label("\"HERE\\u0000x\"", out, sizeof(out));
    assert_string_equal(out, "\xc2\xa9 HERE");
    one_label("\"  HERE\\t\\n\\r \\u00a0 Maps\\u0007\\u001b[31m \"", out,
        sizeof(out));
    assert_string_equal(out, "\xc2\xa9 HERE Maps[31m");
    one_label("\"\\u202eEREH\\u202c \\u200bHERE\\ufeff\\u2066x\\u0085\"", out,
        sizeof(out));
    assert_string_equal(out,
        "\xc2\xa9 EREH HERE"
        "x");
    /* Bytes that are not UTF-8 are dropped (cJSON passes them through). */
    one_label("\"HERE \xff\xfe\xc3\x28 ok \xc3\xa9\"", out, sizeof(out));
    assert_string_equal(out, "\xc2\xa9 HERE ( ok \xc3\xa9");
    /* A label that signs itself keeps its own sign. */
    one_label("\"\xc2\xa9 2030 HERE\"", out, sizeof(out));
    assert_string_equal(out, "\xc2\xa9 2030 HERE");
    one_label("\"(c) HERE\"", out, sizeof(out));
    assert_string_equal(out, "(c) HERE");
    /* A long label is cut at 120 bytes, on a character's boundary. */
    label[0] = '"';
    memcpy(label + 1, "HERE ", 5);
    for (i = 6; i < 6 + 300; i += 2)
        memcpy(label + i, "\xc3\xa9", 2);
    memcpy(label + i, "\"", 2);
    one_label(label, out, sizeof(out));
    assert_true(strlen(out) <= 2 + 1 + 120);
    assert_true(strlen(out) >= 2 + 1 + 119);
    assert_int_equal(((unsigned char)out[strlen(out) - 1] & 0xc0), 0x80);
}

static void
test_attribution_bounds(void **state)
{
    char doc[16384], out[CAPS_ATTRIBUTION_MAX], small[40];
    size_t n, i;

    (void)state;
    /* 40 distinct long labels: at most 16 kept, whole ones that fit. */
    n = (size_t)snprintf(doc, sizeof(doc), "{\"copyrights\":{\"a\":[");
    for (i = 0; i < 40; i++)
        n += (size_t)snprintf(doc + n, sizeof(doc) - n,
            "%s{\"label\":\"HERE label %02zu "
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
            i ? "," : "", i);
    snprintf(doc + n, sizeof(doc) - n,
        "]},\"resources\":{\"base\":{\"styles\":{\"explore.day\":[\"a\"]}}}}");
    assert_int_equal(caps_attribution(doc, strlen(doc), "base", "explore.day",
                         2031, out, sizeof(out)),
        0);
    assert_true(strlen(out) < sizeof(out));
    assert_non_null(strstr(out, "HERE label 00 "));
    assert_null(strstr(out, "HERE label 16 "));
    /* Ends after a whole label: never a cut one. */
    assert_int_equal(out[strlen(out) - 1], 'x');
    /* A tiny buffer: HERE's credit or nothing, never half a label. */
    caps_attribution(
        doc, strlen(doc), "base", "explore.day", 2031, small, sizeof(small));
    assert_true(strlen(small) < sizeof(small));
    assert_null(strstr(small, "xxxx"));
}

static void
doc_init(struct caps_doc *d, const struct tile_req *req, const char **styles,
    size_t n)
{
    memset(d, 0, sizeof(*d));
    d->req = req;
    d->base = "https://maps.example.com";
    d->zmax = 20;
    d->styles = styles;
    d->nstyles = n;
    d->copyright = copyright;
    d->copyright_len = strlen(copyright);
    d->year = 2031;
}

static void
test_tilejson(void **state)
{
    static struct tile_req req;
    const char *styles[32];
    struct caps_doc d;
    cJSON *root, *v;
    size_t len = 0;
    char *text;

    (void)state;
    parse("/here-proxy/tilejson/base.json?style=lite.day&lang=de&indice=web&"
          "token=SECRETTOKEN&size=512",
        &req);
    assert_int_equal(req.route, ROUTE_TILEJSON);
    doc_init(&d, &req, styles, request_styles(&fx.policy, styles, 32));
    d.indice = "web";
    d.zmax = 17;
    text = caps_tilejson(&d, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_null(strstr(text, "SECRETTOKEN"));
    root = cJSON_Parse(text);
    assert_non_null(root);
    assert_string_equal(
        cJSON_GetObjectItem(root, "tilejson")->valuestring, "3.0.0");
    assert_string_equal(
        cJSON_GetObjectItem(root, "scheme")->valuestring, "xyz");
    v = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "tiles"), 0);
    assert_string_equal(v->valuestring,
        "https://maps.example.com/here-proxy/base/mc/{z}/{x}/{y}/png?lang=de&"
        "ppi=100&scale=1&size=512&style=lite.day&indice=web");
    assert_int_equal(cJSON_GetObjectItem(root, "minzoom")->valueint, 0);
    assert_int_equal(cJSON_GetObjectItem(root, "maxzoom")->valueint, 17);
    assert_int_equal(cJSON_GetObjectItem(root, "tileSize")->valueint, 512);
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItem(root, "bounds")), 4);
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItem(root, "center")), 3);
    /* HTML to its clients: HERE's label is escaped text. */
    assert_string_equal(cJSON_GetObjectItem(root, "attribution")->valuestring,
        "\xc2\xa9 2031 HERE, \xc2\xa9 IGN &lt;b&gt;&quot;x&quot;&lt;/b&gt; "
        "&amp; &#39;y&#39;");
    cJSON_Delete(root);
    free(text);

    /* HERE's document unavailable: the fallback; no índice: none. */
    parse("/here-proxy/tilejson/label.json?format=png8", &req);
    doc_init(&d, &req, styles, 1);
    d.copyright = NULL;
    text = caps_tilejson(&d, &len);
    root = cJSON_Parse(text);
    assert_string_equal(cJSON_GetObjectItem(root, "attribution")->valuestring,
        "\xc2\xa9 2031 HERE");
    v = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "tiles"), 0);
    assert_string_equal(v->valuestring,
        "https://maps.example.com/here-proxy/label/mc/{z}/{x}/{y}/png8?ppi=100&"
        "scale=1&size=256&style=explore.day");
    cJSON_Delete(root);
    free(text);
}

/* How many times needle occurs in s. */
static size_t
count(const char *s, const char *needle)
{
    size_t n = 0;

    while ((s = strstr(s, needle)) != NULL) {
        n++;
        s += strlen(needle);
    }
    return n;
}

static void
test_wmts(void **state)
{
    static struct tile_req req;
    const char *styles[32];
    struct caps_doc d;
    size_t len = 0, n;
    char *text;

    (void)state;
    parse(
        "/here-proxy/wmts/1.0.0/WMTSCapabilities.xml?indice=gis&ppi=200", &req);
    assert_int_equal(req.route, ROUTE_WMTS);
    n = request_styles(&fx.policy, styles, 32);
    assert_int_equal(n, 9);
    doc_init(&d, &req, styles, n);
    d.indice = "gis";
    d.zmax = 5;
    text = caps_wmts(&d, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    /* A layer for each resource and style, every one with a template. */
    assert_int_equal(count(text, "<Layer>"), 4 * 9);
    assert_int_equal(count(text, "resourceType=\"tile\""), 4 * 9);
    assert_non_null(
        strstr(text, "<ows:Identifier>background-topo.night</ows:Identifier>"));
    assert_non_null(strstr(text,
        "template=\"https://maps.example.com/here-proxy/base/mc/{TileMatrix}/"
        "{TileCol}/{TileRow}/png?ppi=200&amp;scale=1&amp;size=256&amp;"
        "style=satellite.day&amp;indice=gis\""));
    /* z0 to HEREPROXY_ZMAX, GoogleMapsCompatible's scales. */
    assert_int_equal(count(text, "<TileMatrix>"), 6);
    assert_non_null(strstr(text,
        "<ows:Identifier>0</ows:Identifier><ScaleDenominator>"
        "559082264.0287178</ScaleDenominator><TopLeftCorner>"
        "-20037508.3427892 20037508.3427892</TopLeftCorner><TileWidth>256"));
    assert_non_null(
        strstr(text, "<ScaleDenominator>17471320.75089743</ScaleDenominator>"));
    assert_non_null(strstr(
        text, "<MatrixWidth>32</MatrixWidth><MatrixHeight>32</MatrixHeight>"));
    assert_non_null(
        strstr(text, "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible"));
    /* HERE's words, XML-escaped; and nothing raw. */
    assert_non_null(strstr(text,
        "\xc2\xa9 IGN &lt;b&gt;&quot;x&quot;&lt;/b&gt; &amp; &#39;y&#39;"));
    assert_null(strstr(text, "<b>"));
    assert_null(strstr(text, "& "));
    free(text);

    /* 512-pixel jpeg tiles: their own set, half the scale. */
    parse("/here-proxy/wmts/1.0.0/WMTSCapabilities.xml?size=512&format=jpeg",
        &req);
    doc_init(&d, &req, styles, 1);
    d.zmax = 2;
    d.copyright = NULL;
    text = caps_wmts(&d, &len);
    assert_int_equal(count(text, "<Layer>"), 4);
    assert_int_equal(count(text, "<Format>image/jpeg</Format>"), 4);
    assert_non_null(strstr(
        text, "<ows:Identifier>GoogleMapsCompatible512</ows:Identifier>"));
    assert_null(strstr(text, "WellKnownScaleSet"));
    assert_non_null(strstr(text,
        "<ScaleDenominator>279541132.0143589</ScaleDenominator>"
        "<TopLeftCorner>-20037508.3427892 20037508.3427892</TopLeftCorner>"
        "<TileWidth>512</TileWidth>"));
    assert_non_null(strstr(text, "WMTSCapabilities.xml?format=jpeg&amp;ppi="));
    free(text);
}

static void
test_requests(void **state)
{
    static struct tile_req req;
    struct request_policy logistics = {20, 1};
    const char *styles[32];
    char err[256];

    (void)state;
    parse("/here-proxy/tilejson/background.json", &req);
    assert_string_equal(req.key,
        "tilejson/background/png?ppi=100&scale=1&size=256&style=explore.day");
    assert_int_equal(req.indice_given, 0);
    assert_string_equal(req.plan, "");
    parse("/here-proxy/wmts/1.0.0/WMTSCapabilities.xml?format=png8&indice=a",
        &req);
    assert_string_equal(req.key, "wmts/1.0.0/png8?ppi=100&scale=1&size=256");
    assert_int_equal(req.indice_given, 1);
    assert_string_equal(req.indice, "a");
#define REFUSED(uri, status, words)                                            \
    do {                                                                       \
        assert_int_equal(                                                      \
            request_parse("GET", uri, &fx.policy, &req, err, sizeof(err)),     \
            status);                                                           \
        assert_non_null(strstr(err, words));                                   \
    } while (0)
    REFUSED("/here-proxy/tilejson/nosuch.json", 400, "unknown resource");
    REFUSED("/here-proxy/tilejson/base.json?style=logistics.day", 400, "style");
    REFUSED("/here-proxy/tilejson/base.json?format=gif", 400, "format");
    REFUSED("/here-proxy/tilejson/base.json?format=png&format=png", 400,
        "more than once");
    REFUSED("/here-proxy/tilejson/base.json?x=1", 400, "unknown parameter");
    REFUSED("/here-proxy/tilejson/base", 404, "no such endpoint");
    REFUSED("/here-proxy/tilejson/.json", 404, "no such endpoint");
    REFUSED("/here-proxy/tilejson/base.json/x", 404, "no such endpoint");
    REFUSED("/here-proxy/wmts/1.0.0/WMTSCapabilities.xml?style=lite.day", 400,
        "layer for each style");
    REFUSED("/here-proxy/wmts/1.0.0/Capabilities.xml", 404, "no such");
    REFUSED("/here-proxy/wmts/1.0.1/WMTSCapabilities.xml", 404, "no such");
    /* format is the capabilities' only: a tile's is in its path. */
    REFUSED("/here-proxy/base/mc/1/0/0/png?format=png", 400, "unknown");
    REFUSED("/here-proxy/copyright?format=png", 400, "unknown");
    assert_int_equal(request_parse("POST", "/here-proxy/tilejson/base.json",
                         &fx.policy, &req, err, sizeof(err)),
        405);
    assert_string_equal(
        request_route_allow(ROUTE_TILEJSON), "GET, HEAD, OPTIONS");
    /* The styles: HERE's default first; logistics only when allowed. */
    assert_int_equal(request_styles(&fx.policy, styles, 32), 9);
    assert_string_equal(styles[0], "explore.day");
    assert_int_equal(request_styles(&logistics, styles, 32), 12);
    assert_string_equal(styles[11], "logistics.satellite.day");
    assert_int_equal(request_styles(&logistics, styles, 3), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_public_url),
        cmocka_unit_test(test_base_url),
        cmocka_unit_test(test_attribution),
        cmocka_unit_test(test_attribution_hostile),
        cmocka_unit_test(test_attribution_bounds),
        cmocka_unit_test(test_tilejson),
        cmocka_unit_test(test_wmts),
        cmocka_unit_test(test_requests),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
