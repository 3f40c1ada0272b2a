#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi.h"
#include "request.h"

static const struct request_policy policy = {20, 0, NULL, 0};
static const struct request_policy policy_logistics = {20, 1, NULL, 0};

/* HERE's defaults as they appear, sorted, at the end of every tile key. */
#define DEF "ppi=100&scale=1&size=256&style=explore.day"
#define T "/here-proxy/base/mc/1/0/0/png"
#define TK "base/mc/1/0/0/png"
#define S "/here-proxy/mc/1/0/0/png"

/*
 * One request line. For status 0, want is the expected key; for an error
 * status, want (when not NULL) must appear in the error message.
 */
struct rcase {
    const char *method;
    const char *uri;
    int status;
    const char *want;
};

static const struct rcase cases[] = {
    /* ---- every resource and format, long form */
    {"GET", "/here-proxy/base/mc/1/0/0/png", 0, "base/mc/1/0/0/png?" DEF},
    {"GET", "/here-proxy/base/mc/1/0/0/png8", 0, "base/mc/1/0/0/png8?" DEF},
    {"GET", "/here-proxy/base/mc/1/0/0/jpeg", 0, "base/mc/1/0/0/jpeg?" DEF},
    {"GET", "/here-proxy/background/mc/1/1/1/png", 0,
        "background/mc/1/1/1/png?" DEF},
    {"GET", "/here-proxy/background/mc/2/3/0/png8", 0,
        "background/mc/2/3/0/png8?" DEF},
    {"GET", "/here-proxy/background/mc/2/0/3/jpeg", 0,
        "background/mc/2/0/3/jpeg?" DEF},
    {"GET", "/here-proxy/label/mc/3/7/7/png", 0, "label/mc/3/7/7/png?" DEF},
    {"GET", "/here-proxy/label/mc/3/5/2/png8", 0, "label/mc/3/5/2/png8?" DEF},
    {"GET", "/here-proxy/label/mc/3/0/0/jpeg", 0, "label/mc/3/0/0/jpeg?" DEF},
    {"GET", "/here-proxy/blank/mc/4/15/15/png", 0, "blank/mc/4/15/15/png?" DEF},
    {"GET", "/here-proxy/blank/mc/4/1/2/png8", 0, "blank/mc/4/1/2/png8?" DEF},
    {"GET", "/here-proxy/blank/mc/4/9/8/jpeg", 0, "blank/mc/4/9/8/jpeg?" DEF},
    {"HEAD", "/here-proxy/base/mc/1/0/0/png", 0, "base/mc/1/0/0/png?" DEF},
    /* ---- short form = base */
    {"GET", "/here-proxy/mc/1/0/0/png", 0, "base/mc/1/0/0/png?" DEF},
    {"GET", "/here-proxy/mc/0/0/0/png8", 0, "base/mc/0/0/0/png8?" DEF},
    {"HEAD", "/here-proxy/mc/20/1048575/1048575/jpeg", 0,
        "base/mc/20/1048575/1048575/jpeg?" DEF},
    {"GET", "/here-proxy/mc/12/2200/1343/png?style=lite.day", 0,
        "base/mc/12/2200/1343/png?ppi=100&scale=1&size=256&style=lite.day"},
    /* ---- bad resources and formats */
    {"GET", "/here-proxy/terrain/mc/1/0/0/png", 400, "resource"},
    {"GET", "/here-proxy/Base/mc/1/0/0/png", 400, "resource"},
    {"GET", "/here-proxy/bases/mc/1/0/0/png", 400, "resource"},
    {"GET", "/here-proxy/bas/mc/1/0/0/png", 400, "resource"},
    {"GET", "/here-proxy/mc/mc/1/0/0/png", 400, "resource"},
    {"GET", "/here-proxy/base/mc/1/0/0/gif", 400, "format"},
    {"GET", "/here-proxy/base/mc/1/0/0/PNG", 400, "format"},
    {"GET", "/here-proxy/base/mc/1/0/0/png32", 400, "format"},
    {"GET", "/here-proxy/base/mc/1/0/0/jpg", 400, "format"},
    {"GET", "/here-proxy/base/mc/1/0/0/pn", 400, "format"},
    {"GET", "/here-proxy/mc/1/0/0/webp", 400, "format"},
    {"GET", "/here-proxy/base/mc/1/0/0/png@evil.example", 400, "format"},
    {"GET", "/here-proxy/base/mc/1/0/0/png.png", 400, "format"},
    /* ---- wrong shapes: 404 */
    {"GET", "/here-proxy/base/mc/1/0/0", 404, NULL},
    {"GET", "/here-proxy/base/mc/1/0/0/png/extra", 404, NULL},
    {"GET", "/here-proxy/base/mc/1/0/0/png/", 404, NULL},
    {"GET", "/here-proxy/mc/1/0/0/png/", 404, NULL},
    {"GET", "/here-proxy/mc/1/0/0", 404, NULL},
    {"GET", "/here-proxy/base/tiles/1/0/0/png", 404, NULL},
    {"GET", "/here-proxy/base/MC/1/0/0/png", 404, NULL},
    {"GET", "/here-proxy/xx/1/0/0/png", 404, NULL},
    {"GET", "/here-proxy/base", 404, NULL},
    {"GET", "/here-proxy/", 404, NULL},
    {"GET", "/here-proxy", 404, NULL},
    {"GET", "/here-proxyx/mc/1/0/0/png", 404, NULL},
    {"GET", "/HERE-PROXY/mc/1/0/0/png", 404, NULL},
    {"GET", "/proxy/mc/1/0/0/png", 404, NULL},
    {"GET", "/mc/1/0/0/png", 404, NULL},
    {"GET", "/", 404, NULL},
    {"GET", "/index.html", 404, NULL},
    {"GET", "/healthz/", 404, NULL},
    {"GET", "/healthzz", 404, NULL},
    {"GET", "/readyz/x", 404, NULL},
    {"GET", "/here-proxy/healthz", 404, NULL},
    {"GET", "/v3/base/mc/1/0/0/png", 404, NULL},
    {"GET", "/here-proxy/...", 404, NULL},
    /* ---- z bounds and leading zeros */
    {"GET", "/here-proxy/mc/0/0/0/png", 0, "base/mc/0/0/0/png?" DEF},
    {"GET", "/here-proxy/mc/0/1/0/png", 400, "x:"},
    {"GET", "/here-proxy/mc/0/0/1/png", 400, "y:"},
    {"GET", "/here-proxy/mc/0/1/1/png", 400, "x:"},
    {"GET", "/here-proxy/mc/20/0/0/png", 0, "base/mc/20/0/0/png?" DEF},
    {"GET", "/here-proxy/mc/21/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/22/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/99/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/100/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/-1/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/+1/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/01/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/00/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/1/00/0/png", 400, "x:"},
    {"GET", "/here-proxy/mc/1/0/00/png", 400, "y:"},
    {"GET", "/here-proxy/mc/5/01/0/png", 400, "x:"},
    {"GET", "/here-proxy/mc/5/0/007/png", 400, "y:"},
    {"GET", "/here-proxy/mc/1.0/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/0x1/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/a/0/0/png", 400, "z:"},
    {"GET", "/here-proxy/mc/1/a/0/png", 400, "x:"},
    {"GET", "/here-proxy/mc/1/0/b/png", 400, "y:"},
    {"GET", "/here-proxy/mc/1/-0/0/png", 400, "x:"},
    {"GET", "/here-proxy/mc/1/1e0/0/png", 400, "x:"},
    {"GET", "/here-proxy/mc/10/99999999999999999999/0/png", 400, "x:"},
    {"GET", "/here-proxy/mc/10/0/18446744073709551616/png", 400, "y:"},
    {"GET", "/here-proxy/mc/1/2/0/png", 400, "x: must be 0 to 1 at zoom 1"},
    {"GET", "/here-proxy/mc/1/0/2/png", 400, "y: must be 0 to 1 at zoom 1"},
    {"GET", "/here-proxy/mc/20/1048576/0/png", 400, "x:"},
    {"GET", "/here-proxy/mc/20/0/1048576/png", 400, "y:"},
    /* ---- empty, '.', '..' and escaped segments */
    {"GET", "/here-proxy//mc/1/0/0/png", 400, "segment"},
    {"GET", "/here-proxy/mc//1/0/0/png", 400, "segment"},
    {"GET", "/here-proxy/mc/1//0/0/png", 400, "segment"},
    {"GET", "/here-proxy/mc/1/0/0//png", 400, "segment"},
    {"GET", "//here-proxy/mc/1/0/0/png", 400, "segment"},
    {"GET", "//evil.example/here-proxy/mc/1/0/0/png", 400, "segment"},
    {"GET", "/here-proxy/./mc/1/0/0/png", 400, "segment"},
    {"GET", "/here-proxy/mc/./1/0/0/png", 400, "segment"},
    {"GET", "/here-proxy/mc/1/0/0/./png", 400, "segment"},
    {"GET", "/here-proxy/mc/1/0/0/png/.", 400, "segment"},
    {"GET", "/here-proxy/../here-proxy/mc/1/0/0/png", 400, "segment"},
    {"GET", "/here-proxy/base/../mc/1/0/0/png", 400, "segment"},
    {"GET", "/here-proxy/mc/1/0/0/png/..", 400, "segment"},
    {"GET", "/../etc/passwd", 400, "segment"},
    {"GET", "/./healthz", 400, "segment"},
    {"GET", "/here-proxy/%2e%2e/mc/1/0/0/png", 400, "percent"},
    {"GET", "/here-proxy/%2E%2E/mc/1/0/0/png", 400, "percent"},
    {"GET", "/here-proxy/.%2e/mc/1/0/0/png", 400, "percent"},
    {"GET", "/here-proxy/mc/1/0/0%2Fpng", 400, "percent"},
    {"GET", "/here-proxy/mc%2F1/0/0/png", 400, "percent"},
    {"GET", "/here-proxy%2Fmc/1/0/0/png", 400, "percent"},
    {"GET", "/here-proxy/mc/1/0/0/png%00", 400, "percent"},
    {"GET", "/here-proxy/mc/1/0/0/%70ng", 400, "percent"},
    {"GET", "/here-proxy/info%00", 400, "percent"},
    {"GET", "/healthz%00", 400, "percent"},
    {"GET", "/here-proxy/mc/1/0/0/png%", 400, "percent"},
    /* ---- bytes that never belong in a request target */
    {"GET", "/here-proxy/mc/1/0/0/png\r\nX-Injected: 1", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png\n", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png\r", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png ", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png HTTP/1.1", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png\t", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png#frag", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png?style=lite.day#x", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png?indice=a\x7f", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png?indice=\xc3\xa9", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png?indice=\xff", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/\xffpng", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png?a\rb=1", 400, "byte"},
    {"GET", "/here-proxy/mc/1/0/0/png?x=\x01", 400, "byte"},
    /* ---- not an absolute path */
    {"GET", "http://evil.example/here-proxy/mc/1/0/0/png", 400, "absolute"},
    {"GET", "https://evil.example/here-proxy/mc/1/0/0/png", 400, "absolute"},
    {"GET", "here-proxy/mc/1/0/0/png", 400, "absolute"},
    {"GET", "@evil.example/here-proxy/mc/1/0/0/png", 400, "absolute"},
    {"GET", "*", 400, "absolute"},
    {"GET", "", 400, "absolute"},
    {"GET", "?style=lite.day", 400, "absolute"},
    {"GET", " /here-proxy/mc/1/0/0/png", 400, "absolute"},
    {"GET", "\\here-proxy\\mc\\1\\0\\0\\png", 400, "absolute"},
    /* ---- '@host' inside the path is just a bad segment value */
    {"GET", "/here-proxy/@evil.example/mc/1/0/0/png", 400, "resource"},
    {"GET", "/here-proxy/mc/1/0/0/png?@evil.example", 400, "unknown"},
    {"GET", "/here-proxy/mc/1/0/0/png?style=@evil.example", 400, "style"},
    /* ---- methods */
    {"POST", T, 405, "method"},
    {"PUT", T, 405, "method"},
    {"DELETE", T, 405, "method"},
    {"PATCH", T, 405, "method"},
    {"TRACE", T, 405, "method"},
    {"CONNECT", T, 405, "method"},
    {"get", T, 405, "method"},
    {"Get", T, 405, "method"},
    {"", T, 405, "method"},
    {"GET ", T, 405, "method"},
    {"POST", S, 405, "method"},
    {"POST", "/here-proxy/info", 405, "method"},
    {"DELETE", "/here-proxy/copyright?lang=en", 405, "method"},
    {"POST", "/healthz", 405, "method"},
    {"PUT", "/readyz", 405, "method"},
    {"OPTIONS", "/healthz", 405, "method"},
    {"POST", "/here-proxy/nothing", 404, NULL},
    {"DELETE", "/nothing", 404, NULL},
    {"OPTIONS", "/elsewhere", 404, NULL},
    {"OPTIONS", "/here-proxy/", 404, NULL},
    {"OPTIONS", "/here-proxy/../x", 400, "segment"},
    /* ---- health */
    {"GET", "/healthz", 0, ""},
    {"HEAD", "/healthz", 0, ""},
    {"GET", "/readyz", 0, ""},
    {"HEAD", "/readyz", 0, ""},
    {"GET", "/healthz?verbose=1", 0, ""},
    /* ---- metrics */
    {"GET", "/metrics", 0, ""},
    {"HEAD", "/metrics/prometheus", 0, ""},
    {"GET", "/metrics/prometheus?x=1", 0, ""},
    {"POST", "/metrics", 405, "method"},
    {"GET", "/metrics/", 404, NULL},
    {"GET", "/metrics/json", 404, NULL},
    {"GET", "/metrics/prometheusx", 404, NULL},
    /* ---- metadata endpoints */
    {"GET", "/here-proxy/info", 0, "info"},
    {"GET", "/here-proxy/copyright", 0, "copyright"},
    {"GET", "/here-proxy/languages", 0, "languages"},
    {"GET", "/here-proxy/features", 0, "features"},
    {"GET", "/here-proxy/politicalViews", 0, "politicalViews"},
    {"HEAD", "/here-proxy/info", 0, "info"},
    {"GET", "/here-proxy/info?", 0, "info"},
    {"GET", "/here-proxy/info?indice=team-a", 0, "info"},
    {"GET", "/here-proxy/info?apiKey=abc", 0, "info"},
    {"GET", "/here-proxy/copyright?lang=en", 0, "copyright?lang=en"},
    {"GET", "/here-proxy/copyright?lang2=pt-BR&lang=de", 0,
        "copyright?lang=de&lang2=pt-BR"},
    {"GET", "/here-proxy/politicalViews?pview=IND", 0,
        "politicalViews?pview=IND"},
    {"GET", "/here-proxy/features?features=pois:all", 0,
        "features?features=pois:all"},
    {"GET", "/here-proxy/languages?style=topo.day", 0,
        "languages?style=topo.day"},
    {"GET", "/here-proxy/copyright?style=lite.day&lang=fr&size=512", 0,
        "copyright?lang=fr&size=512&style=lite.day"},
    {"GET", "/here-proxy/info?bogus=1", 400, "unknown parameter 'bogus'"},
    {"GET", "/here-proxy/copyright?lang=english", 400, "lang"},
    {"GET", "/here-proxy/Info", 404, NULL},
    {"GET", "/here-proxy/politicalviews", 404, NULL},
    {"GET", "/here-proxy/info/", 404, NULL},
    {"GET", "/here-proxy/info/x", 404, NULL},
    {"GET", "/here-proxy/infos", 404, NULL},
    {"GET", "/here-proxy/copyrights", 404, NULL},
    {"GET", "/here-proxy/base/info", 404, NULL},
    /* ---- style */
    {"GET", T "?style=explore.day", 0, TK "?" DEF},
    {"GET", T "?style=explore.night", 0,
        TK "?ppi=100&scale=1&size=256&style=explore.night"},
    {"GET", T "?style=explore.satellite.day", 0,
        TK "?ppi=100&scale=1&size=256&style=explore.satellite.day"},
    {"GET", T "?style=lite.day", 0,
        TK "?ppi=100&scale=1&size=256&style=lite.day"},
    {"GET", T "?style=lite.night", 0,
        TK "?ppi=100&scale=1&size=256&style=lite.night"},
    {"GET", T "?style=lite.satellite.day", 0,
        TK "?ppi=100&scale=1&size=256&style=lite.satellite.day"},
    {"GET", T "?style=satellite.day", 0,
        TK "?ppi=100&scale=1&size=256&style=satellite.day"},
    {"GET", T "?style=topo.day", 0,
        TK "?ppi=100&scale=1&size=256&style=topo.day"},
    {"GET", T "?style=topo.night", 0,
        TK "?ppi=100&scale=1&size=256&style=topo.night"},
    {"GET", T "?style=logistics.day", 400, "style"},
    {"GET", T "?style=logistics.night", 400, "style"},
    {"GET", T "?style=logistics.satellite.day", 400, "style"},
    {"GET", T "?style=Explore.day", 400, "style"},
    {"GET", T "?style=explore", 400, "style"},
    {"GET", T "?style=explore.day.", 400, "style"},
    {"GET", T "?style=explore.day ", 400, "byte"},
    {"GET", T "?style=explore.day+", 400, "style"},
    {"GET", T "?style=", 400, "style"},
    {"GET", T "?style", 400, "style"},
    {"GET", T "?style=normal.day", 400, "style"},
    {"GET", T "?style=explore.day%00", 400, "style"},
    {"GET", T "?style=lite.day&style=lite.day", 400, "more than once"},
    {"GET", T "?style=lite.day&style=topo.day", 400, "more than once"},
    /* ---- size, ppi, scale */
    {"GET", T "?size=256", 0, TK "?" DEF},
    {"GET", T "?size=512", 0, TK "?ppi=100&scale=1&size=512&style=explore.day"},
    {"GET", T "?size=128", 400, "size: must be one of 256, 512"},
    {"GET", T "?size=1024", 400, "size"},
    {"GET", T "?size=0", 400, "size"},
    {"GET", T "?size=0256", 400, "size"},
    {"GET", T "?size=-256", 400, "size"},
    {"GET", T "?size=+256", 400, "size"},
    {"GET", T "?size=256.0", 400, "size"},
    {"GET", T "?size=256x", 400, "size"},
    {"GET", T "?size=", 400, "size"},
    {"GET", T "?size=99999999999999999999", 400, "size"},
    {"GET", T "?size=256&size=512", 400, "more than once"},
    {"GET", T "?ppi=100", 0, TK "?" DEF},
    {"GET", T "?ppi=200", 0, TK "?ppi=200&scale=1&size=256&style=explore.day"},
    {"GET", T "?ppi=400", 0, TK "?ppi=400&scale=1&size=256&style=explore.day"},
    {"GET", T "?ppi=300", 400, "ppi: must be one of 100, 200, 400"},
    {"GET", T "?ppi=72", 400, "ppi"},
    {"GET", T "?ppi=0100", 400, "ppi"},
    {"GET", T "?ppi=", 400, "ppi"},
    {"GET", T "?ppi=200&ppi=200", 400, "more than once"},
    {"GET", T "?scale=1", 0, TK "?" DEF},
    {"GET", T "?scale=2", 0, TK "?ppi=100&scale=2&size=256&style=explore.day"},
    {"GET", T "?scale=3", 400, "scale: must be one of 1, 2"},
    {"GET", T "?scale=0", 400, "scale"},
    {"GET", T "?scale=01", 400, "scale"},
    {"GET", T "?scale=1.5", 400, "scale"},
    {"GET", T "?scale=2&scale=1", 400, "more than once"},
    /* ---- lang, lang2 */
    {"GET", T "?lang=en", 0, TK "?lang=en&" DEF},
    {"GET", T "?lang=pt-BR", 0, TK "?lang=pt-BR&" DEF},
    {"GET", T "?lang=zh-Hant", 0, TK "?lang=zh-Hant&" DEF},
    {"GET", T "?lang=sr-l", 0, TK "?lang=sr-l&" DEF},
    {"GET", T "?lang=en&lang2=ar", 0, TK "?lang=en&lang2=ar&" DEF},
    {"GET", T "?lang2=de-at", 0, TK "?lang2=de-at&" DEF},
    {"GET", T "?lang=EN", 400, "lang"},
    {"GET", T "?lang=En", 400, "lang"},
    {"GET", T "?lang=e", 400, "lang"},
    {"GET", T "?lang=eng", 400, "lang"},
    {"GET", T "?lang=en-", 400, "lang"},
    {"GET", T "?lang=en-Hants", 400, "lang"},
    {"GET", T "?lang=en_US", 400, "lang"},
    {"GET", T "?lang=en-U5", 400, "lang"},
    {"GET", T "?lang=e1", 400, "lang"},
    {"GET", T "?lang=", 400, "lang"},
    {"GET", T "?lang=en%20", 400, "lang"},
    {"GET", T "?lang=en%00", 400, "lang"},
    {"GET", T "?lang2=EN", 400, "lang2"},
    {"GET", T "?lang2=", 400, "lang2"},
    {"GET", T "?lang=en&lang=de", 400, "lang: given more than once"},
    {"GET", T "?lang2=en&lang2=de", 400, "lang2: given more than once"},
    /* ---- pview */
    {"GET", T "?pview=IN", 0,
        TK "?ppi=100&pview=IN&scale=1&size=256"
           "&style=explore.day"},
    {"GET", T "?pview=ARG", 0,
        TK "?ppi=100&pview=ARG&scale=1&size=256"
           "&style=explore.day"},
    {"GET", T "?pview=A", 400, "pview"},
    {"GET", T "?pview=ABCD", 400, "pview"},
    {"GET", T "?pview=ind", 400, "pview"},
    {"GET", T "?pview=IN1", 400, "pview"},
    {"GET", T "?pview=", 400, "pview"},
    {"GET", T "?pview=IN&pview=CN", 400, "more than once"},
    /* ---- features */
    {"GET", T "?features=pois:disabled", 0, TK "?features=pois:disabled&" DEF},
    {"GET", T "?features=pois:all", 0, TK "?features=pois:all&" DEF},
    {"GET", T "?features=environmental_zones:all", 0,
        TK "?features=environmental_zones:all&" DEF},
    {"GET", T "?features=environmental_zones:disabled", 0,
        TK "?features=environmental_zones:disabled&" DEF},
    {"GET", T "?features=congestion_zones:all", 0,
        TK "?features=congestion_zones:all&" DEF},
    {"GET", T "?features=congestion_zones:disabled", 0,
        TK "?features=congestion_zones:disabled&" DEF},
    {"GET", T "?features=vehicle_restrictions:active_and_inactive", 0,
        TK "?features=vehicle_restrictions:active_and_inactive&" DEF},
    {"GET", T "?features=vehicle_restrictions:permanent_only", 0,
        TK "?features=vehicle_restrictions:permanent_only&" DEF},
    {"GET", T "?features=vehicle_restrictions:disabled", 0,
        TK "?features=vehicle_restrictions:disabled&" DEF},
    {"GET", T "?features=pois:disabled,congestion_zones:all", 0,
        TK "?features=congestion_zones:all,pois:disabled&" DEF},
    {"GET",
        T "?features=vehicle_restrictions:disabled,pois:all,"
          "environmental_zones:all,congestion_zones:disabled",
        0,
        TK "?features=congestion_zones:disabled,environmental_zones:all,"
           "pois:all,vehicle_restrictions:disabled&" DEF},
    /* every feature and mode of HERE's Raster Tile API 3.0.4 */
    {"GET",
        T "?features=vehicle_restrictions:active_and_inactive_differentiated",
        0,
        TK "?features=vehicle_restrictions:active_and_inactive_"
           "differentiated&" DEF},
    {"GET", T "?features=vehicle_restrictions:active_only", 0,
        TK "?features=vehicle_restrictions:active_only&" DEF},
    {"GET", T "?features=public_transit:asia_selected_systems", 0,
        TK "?features=public_transit:asia_selected_systems&" DEF},
    {"GET", T "?features=public_transit:all_systems", 0,
        TK "?features=public_transit:all_systems&" DEF},
    {"GET", T "?features=public_transit:disabled", 0,
        TK "?features=public_transit:disabled&" DEF},
    {"GET", T "?features=truck_preferred_roads:all", 0,
        TK "?features=truck_preferred_roads:all&" DEF},
    {"GET", T "?features=truck_preferred_roads:disabled", 0,
        TK "?features=truck_preferred_roads:disabled&" DEF},
    {"GET", T "?features=public_transit:all", 400,
        "unknown value for public_transit"},
    {"GET", T "?features=public_transit:asia", 400,
        "unknown value for public_transit"},
    {"GET", T "?features=truck_preferred_roads:active_only", 400,
        "unknown value for truck_preferred_roads"},
    {"GET", T "?features=vehicle_restrictions:active", 400,
        "unknown value for vehicle_restrictions"},
    {"GET", T "?features=truck_preferred_roads:all,public_transit:all_systems",
        0,
        TK
        "?features=public_transit:all_systems,truck_preferred_roads:all&" DEF},
    {"GET", T "?features=pois%3Adisabled", 0,
        TK "?features=pois:disabled&" DEF},
    {"GET", T "?features=pois%3adisabled%2Cenvironmental_zones%3Aall", 0,
        TK "?features=environmental_zones:all,pois:disabled&" DEF},
    {"GET", T "?features=pois:enabled", 400, "unknown value for pois"},
    {"GET", T "?features=pois:", 400, "unknown value for pois"},
    {"GET", T "?features=pois:all:all", 400, "unknown value"},
    {"GET", T "?features=vehicle_restrictions:all", 400, "unknown value"},
    {"GET", T "?features=POIS:all", 400, "unknown feature 'POIS'"},
    {"GET", T "?features=traffic:all", 400, "unknown feature 'traffic'"},
    {"GET", T "?features=:all", 400, "unknown feature"},
    {"GET", T "?features=pois", 400, "features"},
    {"GET", T "?features=", 400, "features"},
    {"GET", T "?features=,", 400, "features"},
    {"GET", T "?features=pois:all,", 400, "trailing comma"},
    {"GET", T "?features=,pois:all", 400, "features"},
    {"GET", T "?features=pois:all,,congestion_zones:all", 400, "features"},
    {"GET", T "?features=pois:all,pois:all", 400, "pois given twice"},
    {"GET", T "?features=pois:all,pois:disabled", 400, "pois given twice"},
    {"GET", T "?features=pois:all+", 400, "unknown value"},
    {"GET", T "?features=pois:all&features=pois:all", 400, "more than once"},
    {"GET", T "?features=pois:all&features=congestion_zones:all", 400,
        "more than once"},
    /* ---- startTime, endTime: with a time-based vehicle_restrictions */
    {"GET",
        T "?features=vehicle_restrictions:active_only"
          "&startTime=2025-12-03T08:00&endTime=2025-12-03T18:00",
        0,
        TK "?endTime=2025-12-03T18:00&features=vehicle_restrictions:"
           "active_only&ppi=100&scale=1&size=256&startTime=2025-12-03T08:00"
           "&style=explore.day"},
    {"GET",
        T "?startTime=2025-12-03T08:00&features=vehicle_restrictions:"
          "active_and_inactive_differentiated",
        0,
        TK "?features=vehicle_restrictions:active_and_inactive_differentiated"
           "&ppi=100&scale=1&size=256&startTime=2025-12-03T08:00"
           "&style=explore.day"},
    {"GET",
        T "?endTime=2025-12-03T18:00&features=vehicle_restrictions:"
          "active_only",
        0,
        TK "?endTime=2025-12-03T18:00&features=vehicle_restrictions:"
           "active_only&" DEF},
    {"GET",
        T "?features=vehicle_restrictions:active_only"
          "&startTime=2025-12-03T08:00&endTime=2025-12-03T08:00",
        0, NULL},
    {"GET",
        T "?features=vehicle_restrictions:active_only"
          "&startTime=2025-12-03T08%3A00",
        0, NULL},
    {"GET", T "?startTime=2025-12-03T08:00", 400, "startTime: only with"},
    {"GET", T "?endTime=2025-12-03T08:00", 400, "endTime: only with"},
    {"GET", T "?startTime=2025-12-03T08:00&features=pois:all", 400,
        "startTime: only with"},
    {"GET",
        T "?startTime=2025-12-03T08:00&features=vehicle_restrictions:"
          "active_and_inactive",
        400, "startTime: only with"},
    {"GET",
        T "?endTime=2025-12-03T08:00&features=vehicle_restrictions:"
          "permanent_only",
        400, "endTime: only with"},
    {"GET",
        T "?endTime=2025-12-03T08:00&features=vehicle_restrictions:disabled",
        400, "endTime: only with"},
    {"GET",
        T "?features=vehicle_restrictions:active_only"
          "&startTime=2025-12-03T18:00&endTime=2025-12-03T08:00",
        400, "endTime: before startTime"},
    {"GET",
        T "?features=vehicle_restrictions:active_only"
          "&startTime=2026-01-01T00:00&endTime=2025-12-31T23:59",
        400, "endTime: before startTime"},
    {"GET",
        T "?features=vehicle_restrictions:active_only"
          "&startTime=2025-12-03T08:00&startTime=2025-12-03T09:00",
        400, "startTime: given more than once"},
    {"GET",
        T "?features=vehicle_restrictions:active_only"
          "&endTime=2025-12-03T08:00&endTime=2025-12-03T08:00",
        400, "endTime: given more than once"},
    {"GET", T "?starttime=2025-12-03T08:00", 400,
        "unknown parameter 'starttime'"},
    {"GET", T "?start_time=2025-12-03T08:00", 400, "unknown parameter"},
    /* ---- indice: never in the key */
    {"GET", T "?indice=team-a", 0, TK "?" DEF},
    {"GET", T "?indice=A.b_c-9", 0, TK "?" DEF},
    {"GET", T "?indice=x", 0, TK "?" DEF},
    {"GET", T "?indice=", 400, "indice"},
    {"GET", T "?indice", 400, "indice"},
    {"GET", T "?indice=a%20b", 400, "indice"},
    {"GET", T "?indice=a+b", 400, "indice"},
    {"GET", T "?indice=a/b", 400, "indice"},
    {"GET", T "?indice=a%2Fb", 400, "indice"},
    {"GET", T "?indice=a:b", 400, "indice"},
    {"GET", T "?indice=%ff", 400, "indice"},
    {"GET", T "?indice=%c3%a9", 400, "indice"},
    {"GET", T "?indice=a%00", 400, "indice"},
    {"GET", T "?indice=a%0d%0aX:1", 400, "indice"},
    {"GET", T "?indice=%", 400, "indice"},
    {"GET", T "?indice=%4", 400, "indice"},
    {"GET", T "?indice=%zz", 400, "indice"},
    {"GET", T "?indice=a&indice=a", 400, "indice: given more than once"},
    {"GET", T "?indice=a&indice=b", 400, "more than once"},
    /* ---- dropped parameters: accepted, never in the key */
    {"GET", T "?apiKey=secret123", 0, TK "?" DEF},
    {"GET", T "?app_id=id&app_code=code", 0, TK "?" DEF},
    {"GET", T "?lg=eng&mv=1", 0, TK "?" DEF},
    {"GET", T "?apiKey=", 0, TK "?" DEF},
    {"GET", T "?apiKey", 0, TK "?" DEF},
    {"GET", T "?style=lite.day&apiKey=secret123", 0,
        TK "?ppi=100&scale=1&size=256&style=lite.day"},
    {"GET", T "?apiKey=secret%zz", 400, "apiKey"},
    {"GET", T "?apiKey=secret%00", 400, "apiKey"},
    {"GET", T "?apikey=secret123", 400, "unknown parameter 'apikey'"},
    {"GET", T "?APIKEY=secret123", 400, "unknown parameter 'APIKEY'"},
    /* ---- unknown parameters named; odd names */
    {"GET", T "?foo=bar", 400, "unknown parameter 'foo'"},
    {"GET", T "?foo", 400, "unknown parameter 'foo'"},
    {"GET", T "?Style=lite.day", 400, "unknown parameter 'Style'"},
    {"GET", T "?style =lite.day", 400, "byte"},
    {"GET", T "?style+=lite.day", 400, "unknown parameter 'style '"},
    {"GET", T "?=lite.day", 400, "unknown parameter ''"},
    {"GET", T "?=", 400, "unknown parameter ''"},
    {"GET", T "?callback=x", 400, "unknown parameter 'callback'"},
    {"GET", T "?url=http://evil.example/", 400, "unknown parameter 'url'"},
    {"GET", T "?style=lite.day&zoom=3", 400, "unknown parameter 'zoom'"},
    {"GET", T "?st%79le=lite.day", 0,
        TK "?ppi=100&scale=1&size=256&style=lite.day"},
    {"GET", T "?%73ize=512", 0,
        TK "?ppi=100&scale=1&size=512&style=explore.day"},
    {"GET", T "?foo%00=1", 400, "query parameter name"},
    {"GET", T "?%ff=1", 400, "query parameter name"},
    {"GET", T "?%=1", 400, "query parameter name"},
    /* ---- '+', percent-escapes, '&' noise */
    {"GET", T "?lang=en&&lang2=fr", 0, TK "?lang=en&lang2=fr&" DEF},
    {"GET", T "?&&&", 0, TK "?" DEF},
    {"GET", T "?", 0, TK "?" DEF},
    {"GET", T "?&style=lite.day&", 0,
        TK "?ppi=100&scale=1&size=256&style=lite.day"},
    {"GET", T "?style=lite%2Eday", 0,
        TK "?ppi=100&scale=1&size=256&style=lite.day"},
    {"GET", T "?lang=pt%2DBR", 0, TK "?lang=pt-BR&" DEF},
    {"GET", T "?style=lite.day%26size%3D512", 400, "style"},
    {"GET", T "?lang=pt+BR", 400, "lang"},
    {"GET", T "?lang=pt%2BBR", 400, "lang"},
    {"GET", T "?style=lite.day?size=512", 400, "style"},
    {"GET",
        T "?style=lite.day&size=512&ppi=200&scale=2&lang=en&lang2=de"
          "&pview=IND&features=pois:all&indice=t1&apiKey=k",
        0,
        TK "?features=pois:all&lang=en&lang2=de&ppi=200&pview=IND&scale=2"
           "&size=512&style=lite.day"},
    {"GET",
        T "?startTime=2024-02-29T23:59&style=lite.day&size=512&ppi=200"
          "&scale=2&lang=en&lang2=de&pview=IND&endTime=2024-03-01T00:00"
          "&features=truck_preferred_roads:all,vehicle_restrictions:"
          "active_only,public_transit:all_systems,pois:disabled,"
          "environmental_zones:all,congestion_zones:all&mv=x&indice=t1",
        0,
        TK "?endTime=2024-03-01T00:00&features=congestion_zones:all,"
           "environmental_zones:all,pois:disabled,public_transit:all_systems,"
           "truck_preferred_roads:all,vehicle_restrictions:active_only"
           "&lang=en&lang2=de&ppi=200&pview=IND&scale=2&size=512"
           "&startTime=2024-02-29T23:59&style=lite.day"},
};

static void
check_case(const struct rcase *c, const struct request_policy *pol)
{
    struct tile_req req;
    char err[256] = "";
    int rc = request_parse(c->method, c->uri, pol, &req, err, sizeof(err));

    if (rc != c->status)
        fail_msg("%s %s: got %d (%s), want %d", c->method, c->uri, rc, err,
            c->status);
    if (rc == 0) {
        if (c->want != NULL && strcmp(req.key, c->want) != 0)
            fail_msg("%s %s:\n  key  %s\n  want %s", c->method, c->uri, req.key,
                c->want);
        if (req.key_len != strlen(req.key))
            fail_msg("%s %s: key_len %zu", c->method, c->uri, req.key_len);
        if (strstr(req.key, "apiKey") || strstr(req.key, "indice") ||
            strstr(req.key, "app_") || strstr(req.key, "secret"))
            fail_msg("%s %s: key leaks %s", c->method, c->uri, req.key);
        if (req.key_has_query != (strchr(req.key, '?') != NULL))
            fail_msg("%s %s: key_has_query", c->method, c->uri);
    } else {
        if (c->want != NULL && strstr(err, c->want) == NULL)
            fail_msg("%s %s: error '%s' lacks '%s'", c->method, c->uri, err,
                c->want);
        /* Error messages go to clients: printable ASCII, no key. */
        if (strstr(err, "secret") != NULL)
            fail_msg("%s %s: error '%s' leaks", c->method, c->uri, err);
    }
    /* Whatever happened, path and indice are safe to log. */
    for (const char *p = req.path; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            fail_msg("%s: unsafe byte in path for logs", c->uri);
    for (const char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            fail_msg("%s: unsafe byte in error '%s'", c->uri, err);
    assert_true(strlen(req.indice) >= 1);
}

static void
test_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i], &policy);
    print_message("      %zu table cases\n", sizeof(cases) / sizeof(cases[0]));
}

/* Routes and fields besides the key. */
static void
test_routes(void **state)
{
    struct tile_req r;
    char err[256];

    (void)state;
    assert_int_equal(request_parse("GET",
                         "/here-proxy/label/mc/3/5/6/png8"
                         "?indice=team-7",
                         &policy, &r, err, sizeof(err)),
        0);
    assert_int_equal(r.route, ROUTE_TILE);
    assert_int_equal(r.method, METHOD_GET);
    assert_string_equal(r.resource, "label");
    assert_string_equal(r.format, "png8");
    assert_int_equal(r.z, 3);
    assert_int_equal(r.x, 5);
    assert_int_equal(r.y, 6);
    assert_string_equal(r.indice, "team-7");
    assert_string_equal(r.path, "/here-proxy/label/mc/3/5/6/png8");

    assert_int_equal(request_parse("HEAD", "/here-proxy/mc/2/1/3/jpeg", &policy,
                         &r, err, sizeof(err)),
        0);
    assert_int_equal(r.route, ROUTE_TILE);
    assert_int_equal(r.method, METHOD_HEAD);
    assert_string_equal(r.resource, "base");
    assert_string_equal(r.format, "jpeg");
    assert_string_equal(r.indice, "-");

    assert_int_equal(request_parse("GET", "/here-proxy/copyright?lang=en",
                         &policy, &r, err, sizeof(err)),
        0);
    assert_int_equal(r.route, ROUTE_META);
    assert_string_equal(r.endpoint, "copyright");
    assert_string_equal(r.path, "/here-proxy/copyright");

    assert_int_equal(
        request_parse("GET", "/healthz", &policy, &r, err, sizeof(err)), 0);
    assert_int_equal(r.route, ROUTE_HEALTHZ);
    assert_int_equal(
        request_parse("GET", "/readyz", &policy, &r, err, sizeof(err)), 0);
    assert_int_equal(r.route, ROUTE_READYZ);
    assert_int_equal(
        request_parse("GET", "/metrics", &policy, &r, err, sizeof(err)), 0);
    assert_int_equal(r.route, ROUTE_METRICS);
    assert_int_equal(request_parse("GET", "/metrics/prometheus", &policy, &r,
                         err, sizeof(err)),
        0);
    assert_int_equal(r.route, ROUTE_METRICS_PROMETHEUS);
    assert_string_equal(r.indice, "-");

    /* The purge endpoint: POST only; the tile after it is the handler's. */
    assert_int_equal(request_parse("POST", "/admin/purge?all=1", &policy, &r,
                         err, sizeof(err)),
        0);
    assert_int_equal(r.route, ROUTE_ADMIN_PURGE);
    assert_int_equal(r.method, METHOD_POST);
    assert_int_equal(
        request_parse("POST", "/admin/purge/here-proxy/base/mc/1/0/0/png",
            &policy, &r, err, sizeof(err)),
        0);
    assert_int_equal(r.route, ROUTE_ADMIN_PURGE);
    assert_int_equal(
        request_parse("GET", "/admin/purge", &policy, &r, err, sizeof(err)),
        405);
    assert_int_equal(r.route, ROUTE_ADMIN_PURGE);
    assert_int_equal(
        request_parse("POST", "/admin/purgeX", &policy, &r, err, sizeof(err)),
        404);
    assert_int_equal(request_parse("POST", "/admin/purge/../metrics", &policy,
                         &r, err, sizeof(err)),
        400);

    /* Preflight: OPTIONS anywhere under the prefix, before validation. */
    assert_int_equal(request_parse("OPTIONS", "/here-proxy/mc/1/0/0/png",
                         &policy, &r, err, sizeof(err)),
        0);
    assert_int_equal(r.route, ROUTE_PREFLIGHT);
    assert_int_equal(r.method, METHOD_OPTIONS);
    assert_int_equal(request_parse("OPTIONS", "/here-proxy/info", &policy, &r,
                         err, sizeof(err)),
        0);
    assert_int_equal(r.route, ROUTE_PREFLIGHT);
    assert_int_equal(request_parse("OPTIONS",
                         "/here-proxy/base/mc/1/0/0/png"
                         "?style=lite.day",
                         &policy, &r, err, sizeof(err)),
        0);
    assert_int_equal(r.route, ROUTE_PREFLIGHT);

    /* 405 still reports the route, for the Allow header. */
    assert_int_equal(request_parse("POST", "/here-proxy/mc/1/0/0/png", &policy,
                         &r, err, sizeof(err)),
        405);
    assert_int_equal(r.route, ROUTE_TILE);
    assert_int_equal(r.method, METHOD_POST);
    assert_int_equal(
        request_parse("PUT", "/here-proxy/info", &policy, &r, err, sizeof(err)),
        405);
    assert_int_equal(r.route, ROUTE_META);
    assert_int_equal(
        request_parse("DELETE", "/healthz", &policy, &r, err, sizeof(err)),
        405);
    assert_int_equal(r.route, ROUTE_HEALTHZ);

    /* NULL method and URI. */
    assert_int_equal(request_parse(NULL, "/here-proxy/mc/1/0/0/png", &policy,
                         &r, err, sizeof(err)),
        405);
    assert_int_equal(
        request_parse("GET", NULL, &policy, &r, err, sizeof(err)), 400);
    assert_string_equal(r.path, "-");
    assert_string_equal(r.indice, "-");
}

static void
test_method_parse(void **state)
{
    (void)state;
    assert_int_equal(request_method_parse("GET"), METHOD_GET);
    assert_int_equal(request_method_parse("HEAD"), METHOD_HEAD);
    assert_int_equal(request_method_parse("OPTIONS"), METHOD_OPTIONS);
    assert_int_equal(request_method_parse("POST"), METHOD_POST);
    assert_int_equal(request_method_parse("PUT"), METHOD_OTHER);
    assert_int_equal(request_method_parse("get"), METHOD_OTHER);
    assert_int_equal(request_method_parse("GETX"), METHOD_OTHER);
    assert_int_equal(request_method_parse(""), METHOD_OTHER);
    assert_int_equal(request_method_parse(NULL), METHOD_OTHER);
}

static void
test_request_param(void **state)
{
    char *envp[] = {"REQUEST_URIX=no", "REQUEST_URI=/x", "REQUEST_METHOD=GET",
        "HTTP_ORIGIN=https://a.example", "HTTP_HOST=", "NOEQUALS",
        "REQUEST_URI=/second-wins-not", "HTTP_X_PROXY_TOKEN=t", NULL};
    struct fcgi_param fp[3] = {
        {"REMOTE_ADDR", "10.0.0.1", 11, 8},
        {"HTTP_IF_NONE_MATCH", "\"e\"", 18, 3},
        {"HTTP_IF_NONE_MATC", "x", 17, 1},
    };
    struct request_params p;

    (void)state;
    /* The parameters the proxy reads, found in one walk; the first of a
     * name wins, near misses and unknown names are ignored. */
    request_params_from_env(&p, envp);
    assert_string_equal(p.uri, "/x");
    assert_string_equal(p.method, "GET");
    assert_string_equal(p.origin, "https://a.example");
    assert_string_equal(p.host, "");
    assert_string_equal(p.proxy_token, "t");
    assert_null(p.remote_addr);
    assert_null(p.if_none_match);
    request_params_from_env(&p, NULL);
    assert_null(p.uri);
    request_params_read(&p, fp, 3);
    assert_string_equal(p.remote_addr, "10.0.0.1");
    assert_string_equal(p.if_none_match, "\"e\"");
    assert_null(p.uri);
}

/* Every z: x and y up to 2^z - 1 pass, 2^z fails; z above zmax fails. */
static void
test_zoom_bounds(void **state)
{
    struct tile_req r;
    char uri[128], want[128], err[256];
    long z, max;
    int n = 0;

    (void)state;
    for (z = 0; z <= 22; z++) {
        max = (1L << z) - 1;
        snprintf(
            uri, sizeof(uri), "/here-proxy/mc/%ld/%ld/%ld/png", z, max, max);
        snprintf(
            want, sizeof(want), "base/mc/%ld/%ld/%ld/png?" DEF, z, max, max);
        if (z <= 20) {
            assert_int_equal(
                request_parse("GET", uri, &policy, &r, err, sizeof(err)), 0);
            assert_string_equal(r.key, want);
            assert_int_equal(r.x, max);
        } else {
            assert_int_equal(
                request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
            assert_non_null(strstr(err, "z:"));
            continue;
        }
        snprintf(uri, sizeof(uri), "/here-proxy/mc/%ld/%ld/0/png", z, max + 1);
        assert_int_equal(
            request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
        assert_non_null(strstr(err, "x:"));
        snprintf(
            uri, sizeof(uri), "/here-proxy/base/mc/%ld/0/%ld/png", z, max + 1);
        assert_int_equal(
            request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
        assert_non_null(strstr(err, "y:"));
        snprintf(uri, sizeof(uri), "/here-proxy/mc/%ld/0%ld/0/png", z, max);
        assert_int_equal(
            request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
        snprintf(uri, sizeof(uri), "/here-proxy/mc/0%ld/0/0/png", z);
        assert_int_equal(
            request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
        n += 5;
    }
    /* A policy with a smaller and a larger zmax. */
    {
        const struct request_policy small = {5, 0, NULL, 0},
                                    big = {22, 0, NULL, 0};
        assert_int_equal(request_parse("GET", "/here-proxy/mc/5/31/31/png",
                             &small, &r, err, sizeof(err)),
            0);
        assert_int_equal(request_parse("GET", "/here-proxy/mc/6/0/0/png",
                             &small, &r, err, sizeof(err)),
            400);
        assert_non_null(strstr(err, "0 to 5"));
        assert_int_equal(
            request_parse("GET", "/here-proxy/mc/22/4194303/4194303/png", &big,
                &r, err, sizeof(err)),
            0);
        assert_int_equal(request_parse("GET", "/here-proxy/mc/22/4194304/0/png",
                             &big, &r, err, sizeof(err)),
            400);
    }
    print_message("      %d zoom cases\n", n);
}

/* Every resource x format x a few coordinates, both forms. */
static void
test_resource_format_grid(void **state)
{
    static const char *const res[] = {"base", "background", "label", "blank"};
    static const char *const fmt[] = {"png", "png8", "jpeg"};
    struct tile_req r;
    char uri[128], want[160], err[256];
    size_t i, j;
    long z;

    (void)state;
    for (i = 0; i < 4; i++) {
        for (j = 0; j < 3; j++) {
            for (z = 0; z <= 20; z += 4) {
                long c = (1L << z) / 3;
                snprintf(uri, sizeof(uri),
                    "/here-proxy/%s/mc/%ld/%ld/%ld/%s"
                    "?scale=2",
                    res[i], z, c, c, fmt[j]);
                snprintf(want, sizeof(want),
                    "%s/mc/%ld/%ld/%ld/%s?ppi=100"
                    "&scale=2&size=256&style=explore.day",
                    res[i], z, c, c, fmt[j]);
                assert_int_equal(
                    request_parse("GET", uri, &policy, &r, err, sizeof(err)),
                    0);
                assert_string_equal(r.key, want);
                assert_string_equal(r.resource, res[i]);
                assert_string_equal(r.format, fmt[j]);
                if (i == 0) { /* short form: same key */
                    snprintf(uri, sizeof(uri),
                        "/here-proxy/mc/%ld/%ld/%ld/"
                        "%s?scale=2",
                        z, c, c, fmt[j]);
                    assert_int_equal(request_parse("HEAD", uri, &policy, &r,
                                         err, sizeof(err)),
                        0);
                    assert_string_equal(r.key, want);
                }
            }
        }
    }
}

static void
test_logistics_policy(void **state)
{
    static const char *const ls[] = {
        "logistics.day", "logistics.night", "logistics.satellite.day"};
    struct tile_req r;
    char uri[128], want[160], err[256];
    size_t i;

    (void)state;
    for (i = 0; i < 3; i++) {
        snprintf(uri, sizeof(uri), T "?style=%s", ls[i]);
        snprintf(
            want, sizeof(want), TK "?ppi=100&scale=1&size=256&style=%s", ls[i]);
        assert_int_equal(
            request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
        assert_int_equal(
            request_parse("GET", uri, &policy_logistics, &r, err, sizeof(err)),
            0);
        assert_string_equal(r.key, want);
    }
    /* The ordinary styles stay, unknown ones stay out. */
    assert_int_equal(request_parse("GET", T "?style=topo.night",
                         &policy_logistics, &r, err, sizeof(err)),
        0);
    assert_int_equal(request_parse("GET", T "?style=logistics.dusk",
                         &policy_logistics, &r, err, sizeof(err)),
        400);
    assert_int_equal(request_parse("GET", T "?style=logistics",
                         &policy_logistics, &r, err, sizeof(err)),
        400);
}

/* Equivalent requests, one key. */
static void
test_canonical_keys(void **state)
{
    static const char *const groups[][8] = {
        {T, T "?", S, T "?style=explore.day", T "?size=256&ppi=100",
            T "?scale=1&style=explore.day&ppi=100&size=256",
            S "?indice=a&apiKey=zz&app_id=1&app_code=2&lg=x&mv=y",
            T "?%73tyle=explore%2Eday&&"},
        {T "?features=pois:all,congestion_zones:disabled&lang=en",
            T "?lang=en&features=congestion_zones:disabled,pois:all",
            S "?features=congestion_zones%3Adisabled%2Cpois%3Aall&lang=en",
            T "?lang=en&features=pois:all,congestion_zones:disabled"
              "&style=explore.day&scale=1",
            T "?indice=zz&lang=en&features=congestion_zones:disabled,"
              "pois:all",
            NULL},
        {T "?lang2=de&lang=en&pview=IND&size=512",
            T "?size=512&pview=IND&lang=en&lang2=de&ppi=100",
            S "?pview=IND&size=512&lang2=de&lang=en&indice=q", NULL},
        {"/here-proxy/copyright?lang=en&pview=ARG",
            "/here-proxy/copyright?pview=ARG&lang=en",
            "/here-proxy/copyright?indice=z&pview=ARG&apiKey=k&lang=en", NULL},
    };
    size_t g, i;

    (void)state;
    for (g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
        struct tile_req first, r;
        char err[256];

        assert_int_equal(request_parse("GET", groups[g][0], &policy, &first,
                             err, sizeof(err)),
            0);
        for (i = 1; i < 8 && groups[g][i] != NULL; i++) {
            if (request_parse(
                    "GET", groups[g][i], &policy, &r, err, sizeof(err)) != 0)
                fail_msg("%s: %s", groups[g][i], err);
            assert_int_equal(r.key_len, first.key_len);
            if (memcmp(r.key, first.key, first.key_len + 1) != 0)
                fail_msg("%s -> %s\n%s -> %s", groups[g][0], first.key,
                    groups[g][i], r.key);
        }
    }
    /* ... and different requests, different keys. */
    {
        static const char *const distinct[] = {T, S "?style=lite.day",
            "/here-proxy/mc/1/0/1/png", "/here-proxy/mc/1/1/0/png",
            "/here-proxy/mc/1/0/0/png8", "/here-proxy/label/mc/1/0/0/png",
            T "?size=512", T "?ppi=200", T "?scale=2", T "?lang=en",
            T "?lang2=en", T "?pview=IN", T "?features=pois:all",
            T "?features=pois:disabled", "/here-proxy/info",
            "/here-proxy/copyright", "/here-proxy/info?lang=en"};
        char keys[sizeof(distinct) / sizeof(distinct[0])][REQUEST_KEY_MAX];
        size_t n = sizeof(distinct) / sizeof(distinct[0]), a, b;
        struct tile_req r;
        char err[256];

        for (a = 0; a < n; a++) {
            assert_int_equal(request_parse("GET", distinct[a], &policy, &r, err,
                                 sizeof(err)),
                0);
            strcpy(keys[a], r.key);
        }
        for (a = 0; a < n; a++)
            for (b = a + 1; b < n; b++)
                if (strcmp(keys[a], keys[b]) == 0)
                    fail_msg("%s and %s share key %s", distinct[a], distinct[b],
                        keys[a]);
    }
}

/* One order of the six features (and of the times): the one key. */
static void
check_features_order(const int *idx, int times_first)
{
    static const char *const items[] = {"vehicle_restrictions:active_only",
        "truck_preferred_roads:all", "public_transit:all_systems",
        "pois:disabled", "environmental_zones:all", "congestion_zones:all"};
    static const char *const want =
        TK "?endTime=2025-12-03T18:00&features=congestion_zones:all,"
           "environmental_zones:all,pois:disabled,public_transit:all_systems,"
           "truck_preferred_roads:all,vehicle_restrictions:active_only"
           "&ppi=100&scale=1&size=256&startTime=2025-12-03T08:00"
           "&style=explore.day";
    struct tile_req r;
    char uri[512], err[256];
    size_t len;
    int k;

    len = (size_t)snprintf(uri, sizeof(uri), "%s",
        times_first ? T "?startTime=2025-12-03T08:00&features="
                    : T "?endTime=2025-12-03T18:00&features=");
    for (k = 0; k < 6; k++)
        len += (size_t)snprintf(
            uri + len, sizeof(uri) - len, "%s%s", k ? "," : "", items[idx[k]]);
    snprintf(uri + len, sizeof(uri) - len, "%s",
        times_first ? "&endTime=2025-12-03T18:00"
                    : "&startTime=2025-12-03T08:00");
    if (request_parse("GET", uri, &policy, &r, err, sizeof(err)) != 0)
        fail_msg("%s: %s", uri, err);
    if (strcmp(r.key, want) != 0)
        fail_msg("%s\n  key  %s\n  want %s", uri, r.key, want);
}

/*
 * The order of the features items never splits the cache: every one of the
 * 720 orders of all six features gives one key (Heap's algorithm), and so
 * do the places of startTime and endTime among the parameters.
 */
static void
test_features_any_order(void **state)
{
    int idx[6] = {0, 1, 2, 3, 4, 5}, c[6] = {0, 0, 0, 0, 0, 0};
    int n = 1, i = 1, j, t;

    (void)state;
    check_features_order(idx, 0);
    while (i < 6) {
        if (c[i] < i) {
            j = i % 2 ? c[i] : 0;
            t = idx[j];
            idx[j] = idx[i];
            idx[i] = t;
            check_features_order(idx, n % 2);
            n++;
            c[i]++;
            i = 1;
        } else {
            c[i] = 0;
            i++;
        }
    }
    assert_int_equal(n, 720);
}

/* startTime and endTime: HERE's format, and real dates only. */
static void
test_local_times(void **state)
{
    static const struct {
        const char *v;
        int ok;
    } t[] = {
        {"2025-12-03T08:00", 1},
        {"2025-01-01T00:00", 1},
        {"2025-12-31T23:59", 1},
        {"2024-02-29T12:00", 1}, /* leap year */
        {"2000-02-29T12:00", 1}, /* divisible by 400: leap */
        {"1900-02-29T12:00", 0}, /* by 100, not by 400: not leap */
        {"2023-02-29T12:00", 0},
        {"2023-02-28T12:00", 1},
        {"2025-04-30T00:00", 1},
        {"2025-04-31T00:00", 0},
        {"2025-06-31T00:00", 0},
        {"2025-09-31T00:00", 0},
        {"2025-11-31T00:00", 0},
        {"2025-01-31T00:00", 1},
        {"2025-07-31T00:00", 1},
        {"2025-08-31T00:00", 1},
        {"2025-12-32T00:00", 0},
        {"2025-00-10T00:00", 0},
        {"2025-13-10T00:00", 0},
        {"2025-12-00T00:00", 0},
        {"2025-12-03T24:00", 0},
        {"2025-12-03T23:60", 0},
        {"2025-12-03T99:99", 0},
        {"0000-01-01T00:00", 1},
        {"9999-12-31T23:59", 1},
        {"2025-12-03T08:00:00", 0}, /* seconds */
        {"2025-12-03T08:00Z", 0},   /* a zone */
        {"2025-12-03T08:00+01:00", 0},
        {"2025-12-03t08:00", 0},
        {"2025-12-03+08:00", 0}, /* a space */
        {"2025-12-3T08:00", 0},
        {"2025-12-03T8:00", 0},
        {"25-12-03T08:00", 0},
        {"+2025-12-03T08:00", 0},
        {"2025/12/03T08:00", 0},
        {"2025-12-03T08.00", 0},
        {"2025-1a-03T08:00", 0},
        {"2025-12-03", 0},
        {"", 0},
    };
    struct tile_req r;
    char uri[256], err[256];
    size_t i;
    int w;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        for (w = 0; w < 2; w++) {
            const char *name = w ? "endTime" : "startTime";
            int rc;

            snprintf(uri, sizeof(uri),
                T "?features=vehicle_restrictions:active_only&%s=%s", name,
                t[i].v);
            rc = request_parse("GET", uri, &policy, &r, err, sizeof(err));
            if (t[i].ok && rc != 0)
                fail_msg("%s refused: %s", uri, err);
            if (!t[i].ok && (rc != 400 || strncmp(err, name, strlen(name))))
                fail_msg(
                    "%s: %d '%s', want a 400 naming %s", uri, rc, err, name);
        }
    }
}

/*
 * HERE_STYLES: the policy's list is the styles accepted; one it adds is
 * taken, one it leaves out is refused, and HERE's default (no style) only
 * when the list has it. HERE_ALLOW_LOGISTICS still adds the logistics ones.
 */
static void
test_styles_policy(void **state)
{
    /* sorted, as the settings hold them */
    static char *const mine[] = {"explore.day", "explore.dusk", "topo.day"};
    static char *const no_default[] = {"lite.day", "topo.day"};
    const struct request_policy custom = {20, 0, mine, 3};
    const struct request_policy custom_logistics = {20, 1, mine, 3};
    const struct request_policy without = {20, 0, no_default, 2};
    struct tile_req r;
    char err[256];

    (void)state;
    assert_int_equal(request_parse("GET", T "?style=explore.dusk", &custom, &r,
                         err, sizeof(err)),
        0);
    assert_string_equal(
        r.key, TK "?ppi=100&scale=1&size=256&style=explore.dusk");
    assert_string_equal(r.plan, "style=explore.dusk");
    /* The built-in list does not know it. */
    assert_int_equal(request_parse("GET", T "?style=explore.dusk", &policy, &r,
                         err, sizeof(err)),
        400);
    assert_non_null(strstr(err, "style"));
    /* lite.day is in the default list, not in this one. */
    assert_int_equal(request_parse("GET", T "?style=lite.day", &policy, &r, err,
                         sizeof(err)),
        0);
    assert_int_equal(request_parse("GET", T "?style=lite.day", &custom, &r, err,
                         sizeof(err)),
        400);
    assert_non_null(strstr(err, "style"));
    assert_int_equal(request_parse("GET", T "?style=topo.day", &custom, &r, err,
                         sizeof(err)),
        0);
    assert_int_equal(request_parse("GET", T, &custom, &r, err, sizeof(err)), 0);
    assert_string_equal(r.key, TK "?" DEF);
    /* Prefixes and longer names of a listed style are other styles. */
    assert_int_equal(request_parse("GET", T "?style=explore.dus", &custom, &r,
                         err, sizeof(err)),
        400);
    assert_int_equal(request_parse("GET", T "?style=explore.dusky", &custom, &r,
                         err, sizeof(err)),
        400);
    /* Logistics: by the flag, whatever the list. */
    assert_int_equal(request_parse("GET", T "?style=logistics.day", &custom, &r,
                         err, sizeof(err)),
        400);
    assert_int_equal(request_parse("GET", T "?style=logistics.day",
                         &custom_logistics, &r, err, sizeof(err)),
        0);
    /* Without explore.day, a tile must name a style; metadata need not. */
    assert_int_equal(
        request_parse("GET", T, &without, &r, err, sizeof(err)), 400);
    assert_non_null(strstr(err, "style: the default, explore.day"));
    assert_int_equal(request_parse("GET", T "?style=explore.day", &without, &r,
                         err, sizeof(err)),
        400);
    assert_int_equal(request_parse("GET", T "?style=lite.day", &without, &r,
                         err, sizeof(err)),
        0);
    assert_int_equal(request_parse("GET", "/here-proxy/info", &without, &r, err,
                         sizeof(err)),
        0);
    /* Names a setting may hold. */
    assert_true(request_style_valid("explore.day", 11));
    assert_true(request_style_valid("a", 1));
    assert_true(request_style_valid("x9_a-b.c", 8));
    assert_false(request_style_valid("", 0));
    assert_false(request_style_valid("Explore.day", 11));
    assert_false(request_style_valid(".day", 4));
    assert_false(request_style_valid("9day", 4));
    assert_false(request_style_valid("a b", 3));
    assert_false(request_style_valid("a&b=c", 5));
    assert_false(request_style_valid("a%20", 4));
    {
        char longest[REQUEST_STYLE_MAX + 2];

        memset(longest, 'a', sizeof(longest));
        assert_true(request_style_valid(longest, REQUEST_STYLE_MAX));
        assert_false(request_style_valid(longest, REQUEST_STYLE_MAX + 1));
    }
}

/* REQUEST_STYLES_DEFAULT (HERE_STYLES' default) is the built-in list. */
static void
test_styles_default(void **state)
{
    char text[] = REQUEST_STYLES_DEFAULT;
    char *item, *save = NULL;
    struct tile_req r;
    char uri[128], err[256];
    int n = 0;

    (void)state;
    for (item = strtok_r(text, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save), n++) {
        snprintf(uri, sizeof(uri), T "?style=%s", item);
        if (request_parse("GET", uri, &policy, &r, err, sizeof(err)) != 0)
            fail_msg("%s: %s", uri, err);
    }
    assert_int_equal(n, 9);
}

/* Every pair of HERE parameters given twice fails, in either order. */
static void
test_repeated_params(void **state)
{
    static const char *const one[] = {"style=lite.day", "size=512", "ppi=200",
        "scale=2", "lang=en", "lang2=de", "pview=IND", "features=pois:all",
        "indice=abc", "startTime=2025-12-03T08:00", "endTime=2025-12-03T18:00"};
    struct tile_req r;
    char uri[256], err[256];
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        for (j = 0; j < sizeof(one) / sizeof(one[0]); j++) {
            snprintf(uri, sizeof(uri), T "?%s&%s&%s", one[i], one[j],
                i == j ? "scale=1" : one[i]);
            if (i == j) /* one[i] twice already */
                snprintf(uri, sizeof(uri), T "?%s&%s", one[i], one[i]);
            assert_int_equal(
                request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
            assert_non_null(strstr(err, "more than once"));
        }
    }
}

/* SPEC: "Each at most once" also holds for the dropped parameters. */
static void
test_repeated_dropped_params(void **state)
{
    static const char *const dropped[] = {
        "apiKey", "app_id", "app_code", "lg", "mv"};
    struct tile_req r;
    char uri[256], err[256];
    size_t i;
    int accepted = 0;

    (void)state;
    for (i = 0; i < 5; i++) {
        snprintf(uri, sizeof(uri), T "?%s=a&%s=b", dropped[i], dropped[i]);
        if (request_parse("GET", uri, &policy, &r, err, sizeof(err)) != 400) {
            print_error("%s: repeated %s accepted\n", uri, dropped[i]);
            accepted++;
        }
    }
    if (accepted > 0)
        fail_msg("%d repeated dropped parameters accepted", accepted);
}

static void
test_indice(void **state)
{
    struct tile_req r;
    char uri[12000], ind[11000], err[256];
    size_t n;

    (void)state;
    for (n = 1; n <= 70; n++) {
        memset(ind, 'a' + (int)(n % 26), n);
        ind[n] = '\0';
        snprintf(uri, sizeof(uri), S "?indice=%s", ind);
        if (n <= 64) {
            assert_int_equal(
                request_parse("GET", uri, &policy, &r, err, sizeof(err)), 0);
            assert_string_equal(r.indice, ind);
            assert_string_equal(r.key, TK "?" DEF);
        } else {
            assert_int_equal(
                request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
            assert_non_null(strstr(err, "indice"));
        }
    }
    /* Every allowed character, and every other printable one. */
    for (n = 0x21; n < 0x7f; n++) {
        int ok = (n >= '0' && n <= '9') || (n >= 'a' && n <= 'z') ||
            (n >= 'A' && n <= 'Z') || n == '_' || n == '.' || n == '-';
        snprintf(uri, sizeof(uri), S "?indice=x%%%02zXy", n);
        assert_int_equal(
            request_parse("GET", uri, &policy, &r, err, sizeof(err)),
            ok ? 0 : 400);
        if (ok)
            assert_int_equal(r.indice[1], (char)n);
    }
    /* Escaped bytes from 0x00 to 0xff beyond printable ASCII. */
    for (n = 0; n < 256; n++) {
        if (n >= 0x20 && n < 0x7f)
            continue;
        snprintf(uri, sizeof(uri), S "?indice=ab%%%02zx", n);
        assert_int_equal(
            request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
    }
    /* 2 KB: too long for a component; 10 KB: too long for a URI. */
    memset(ind, 'i', 2000);
    ind[2000] = '\0';
    snprintf(uri, sizeof(uri), S "?indice=%s", ind);
    assert_int_equal(
        request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
    assert_non_null(strstr(err, "indice"));
    assert_true(strlen(r.indice) <= REQUEST_INDICE_MAX);
    memset(ind, 'i', 10240);
    ind[10240] = '\0';
    snprintf(uri, sizeof(uri), S "?indice=%s", ind);
    assert_int_equal(
        request_parse("GET", uri, &policy, &r, err, sizeof(err)), 414);
    assert_true(strlen(r.indice) <= REQUEST_INDICE_MAX);
    /* The indice is read even when a later parameter fails, for logs. */
    assert_int_equal(request_parse("GET", S "?indice=team&bogus=1", &policy, &r,
                         err, sizeof(err)),
        400);
    assert_string_equal(r.indice, "team");
}

static void
test_uri_length(void **state)
{
    struct tile_req r;
    char *uri = malloc(REQUEST_URI_MAX + 2), err[256];
    size_t base = strlen(S "?");

    (void)state;
    assert_non_null(uri);
    /* Exactly the limit: fine ('&' padding is harmless). */
    memcpy(uri, S "?", base);
    memset(uri + base, '&', REQUEST_URI_MAX - base);
    uri[REQUEST_URI_MAX] = '\0';
    assert_int_equal(
        request_parse("GET", uri, &policy, &r, err, sizeof(err)), 0);
    assert_string_equal(r.key, TK "?" DEF);
    /* One more byte: 414. */
    uri[REQUEST_URI_MAX] = '&';
    uri[REQUEST_URI_MAX + 1] = '\0';
    assert_int_equal(
        request_parse("GET", uri, &policy, &r, err, sizeof(err)), 414);
    assert_non_null(strstr(err, "4096"));
    assert_true(strlen(r.path) <= REQUEST_PATH_LOG_MAX);
    /* A long path: 414 too, and the logged path is cut short. */
    memcpy(uri, "/here-proxy/", 12);
    memset(uri + 12, 'a', REQUEST_URI_MAX + 1 - 12);
    uri[REQUEST_URI_MAX + 1] = '\0';
    assert_int_equal(
        request_parse("GET", uri, &policy, &r, err, sizeof(err)), 414);
    assert_int_equal(strlen(r.path), REQUEST_PATH_LOG_MAX);
    assert_non_null(strstr(r.path, "..."));
    free(uri);
}

static void
test_param_count(void **state)
{
    static const char *const all[] = {"style=lite.day", "size=512", "ppi=200",
        "scale=2", "lang=en", "lang2=de", "pview=IND",
        "features=pois:all,vehicle_restrictions:active_only",
        "startTime=2025-12-03T08:00", "endTime=2025-12-03T18:00", "indice=abc",
        "apiKey=k", "app_id=i", "app_code=c", "lg=l", "mv=m"};
    struct tile_req r;
    char uri[1024], err[256];
    size_t len, i;

    (void)state;
    /* Every known parameter at once. */
    len = (size_t)snprintf(uri, sizeof(uri), "%s", S "?");
    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        len += (size_t)snprintf(uri + len, sizeof(uri) - len, "%s&", all[i]);
    assert_int_equal(
        request_parse("GET", uri, &policy, &r, err, sizeof(err)), 0);
    assert_string_equal(r.key,
        TK "?endTime=2025-12-03T18:00&features=pois:all,"
           "vehicle_restrictions:active_only&lang=en&lang2=de"
           "&ppi=200&pview=IND&scale=2&size=512&startTime=2025-12-03T08:00"
           "&style=lite.day");
    /* 33 parameters: refused (too many, or repeated). */
    len = (size_t)snprintf(uri, sizeof(uri), "%s", S "?");
    for (i = 0; i < 33; i++)
        len += (size_t)snprintf(uri + len, sizeof(uri) - len, "lg=%zu&", i);
    assert_int_equal(
        request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
    assert_true(strstr(err, "too many") || strstr(err, "more than once"));
    /* Empty items do not count. */
    len = (size_t)snprintf(uri, sizeof(uri), "%s", S "?");
    for (i = 0; i < 100; i++)
        len += (size_t)snprintf(uri + len, sizeof(uri) - len, "&");
    snprintf(uri + len, sizeof(uri) - len, "scale=2");
    assert_int_equal(
        request_parse("GET", uri, &policy, &r, err, sizeof(err)), 0);
}

/* A NUL escape, raw CR/LF, NUL-like bytes or '#' at any offset: 400. */
static void
test_insert_everywhere(void **state)
{
    static const char *const good =
        "/here-proxy/base/mc/3/2/1/png"
        "?style=lite.day&indice=a-1&apiKey=secret&features=pois:all";
    static const char *const inserts[] = {"%00", "\r\n", "\n", "\r", " ", "\t",
        "#", "%0a", "%0D%0A", "\x7f", "\x80", "\xff", "%"};
    struct tile_req r;
    char uri[256], err[256];
    size_t glen = strlen(good), off, i;
    int n = 0;

    (void)state;
    assert_int_equal(
        request_parse("GET", good, &policy, &r, err, sizeof(err)), 0);
    for (i = 0; i < sizeof(inserts) / sizeof(inserts[0]); i++) {
        for (off = 0; off <= glen; off++) {
            int rc;
            snprintf(uri, sizeof(uri), "%.*s%s%s", (int)off, good, inserts[i],
                good + off);
            rc = request_parse("GET", uri, &policy, &r, err, sizeof(err));
            /* '%' before two hex digits may form a valid escape. */
            if (rc == 0 && strcmp(inserts[i], "%") == 0)
                continue;
            if (rc != 400)
                fail_msg("insert %zu at %zu: %d (%s)", i, off, rc, err);
            if (strstr(err, "secret") != NULL)
                fail_msg("error leaks the key: %s", err);
            n++;
        }
    }
    print_message("      %d insertion cases\n", n);
}

/* The error message names a long or hostile parameter safely. */
/*
 * The plan class: every choice but the tile's position, HERE's defaults
 * left out, so that no client's choice passes for the defaults.
 */
static void
test_plan_class(void **state)
{
    static const struct {
        const char *uri, *want;
    } pc[] = {
        {"/here-proxy/mc/1/0/0/png", ""},
        {"/here-proxy/base/mc/12/5/7/png?indice=a&apiKey=x", ""},
        {"/here-proxy/mc/1/0/0/png?style=explore.day&size=256&ppi=100"
         "&scale=1",
            ""},
        {"/here-proxy/mc/1/0/0/png?style=satellite.day", "style=satellite.day"},
        {"/here-proxy/mc/3/1/2/png?style=satellite.day&indice=b",
            "style=satellite.day"},
        {"/here-proxy/mc/1/0/0/png?size=512&ppi=400&scale=2",
            "ppi=400&scale=2&size=512"},
        {"/here-proxy/mc/1/0/0/png?features=pois:all,"
         "congestion_zones:disabled",
            "features=congestion_zones:disabled,pois:all"},
        {"/here-proxy/label/mc/1/0/0/jpeg?lang=de&pview=IND",
            "resource=label&format=jpeg&lang=de&pview=IND"},
        {"/here-proxy/info", "endpoint=info"},
        {"/here-proxy/copyright?lang=pt-BR&style=explore.day",
            "endpoint=copyright&lang=pt-BR"},
        {"/here-proxy/mc/1/0/0/png?features=public_transit:all_systems,"
         "truck_preferred_roads:all",
            "features=public_transit:all_systems,truck_preferred_roads:all"},
        /* the time window is no class of its own: its mode is */
        {"/here-proxy/mc/1/0/0/png?features=vehicle_restrictions:active_only"
         "&startTime=2025-12-03T08:00&endTime=2025-12-03T18:00",
            "features=vehicle_restrictions:active_only"},
        {"/here-proxy/mc/1/0/0/png?features=vehicle_restrictions:active_only"
         "&startTime=2026-01-01T00:00",
            "features=vehicle_restrictions:active_only"},
    };
    struct tile_req req;
    char err[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(pc) / sizeof(pc[0]); i++) {
        assert_int_equal(
            request_parse("GET", pc[i].uri, &policy, &req, err, sizeof(err)),
            0);
        if (strcmp(req.plan, pc[i].want) != 0)
            fail_msg("%s: plan '%s', expected '%s'", pc[i].uri, req.plan,
                pc[i].want);
    }
    /*
     * The longest there is fits whole, with the longest mode of every
     * feature and a style as long as HERE_STYLES allows: two classes never
     * share a cut-off prefix.
     */
    {
        static char *const longest_style[] = {
            "s123456789012345678901234567890123456789012345678901234567890123"};
        const struct request_policy pol = {20, 0, longest_style, 1};
        char uri[1024];

        assert_int_equal(strlen(longest_style[0]), REQUEST_STYLE_MAX);
        snprintf(uri, sizeof(uri),
            "/here-proxy/background/mc/1/0/0/jpeg?style=%s&size=512&ppi=400"
            "&scale=2&lang=pt-BRAZ&lang2=pt-BRAZ&pview=IND"
            "&features=congestion_zones:disabled,"
            "environmental_zones:disabled,pois:disabled,"
            "public_transit:asia_selected_systems,"
            "truck_preferred_roads:disabled,vehicle_restrictions:"
            "active_and_inactive_differentiated"
            "&startTime=2025-12-03T08:00&endTime=2025-12-03T18:00",
            longest_style[0]);
        assert_int_equal(
            request_parse("GET", uri, &pol, &req, err, sizeof(err)), 0);
        assert_true(strlen(req.plan) < REQUEST_PLAN_MAX);
        assert_true(req.key_len < REQUEST_KEY_MAX);
        assert_non_null(strstr(req.plan, "&style=s12345"));
        assert_non_null(strstr(req.plan, "active_and_inactive_differentiated"));
        print_message("      longest plan class %zu bytes, key %zu\n",
            strlen(req.plan), req.key_len);
    }
}

static void
test_error_messages(void **state)
{
    struct tile_req r;
    char uri[2048], name[1200], err[128];

    (void)state;
    memset(name, 'n', 1000);
    name[1000] = '\0';
    snprintf(uri, sizeof(uri), S "?%s=1", name);
    assert_int_equal(
        request_parse("GET", uri, &policy, &r, err, sizeof(err)), 400);
    assert_non_null(strstr(err, "unknown parameter 'nnn"));
    assert_non_null(strstr(err, "..."));
    assert_true(strlen(err) < sizeof(err));

    assert_int_equal(request_parse("GET", S "?%22%3Cscript%3E=1", &policy, &r,
                         err, sizeof(err)),
        400);
    assert_non_null(strstr(err, "unknown parameter '\"<script>'"));

    /* A tiny error buffer is still terminated. */
    memset(err, 'x', sizeof(err));
    assert_int_equal(
        request_parse("GET", S "?foo=1", &policy, &r, err, 8), 400);
    assert_int_equal(strlen(err), 7);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_method_parse),
        cmocka_unit_test(test_request_param),
        cmocka_unit_test(test_zoom_bounds),
        cmocka_unit_test(test_resource_format_grid),
        cmocka_unit_test(test_logistics_policy),
        cmocka_unit_test(test_canonical_keys),
        cmocka_unit_test(test_features_any_order),
        cmocka_unit_test(test_local_times),
        cmocka_unit_test(test_styles_policy),
        cmocka_unit_test(test_styles_default),
        cmocka_unit_test(test_repeated_params),
        cmocka_unit_test(test_repeated_dropped_params),
        cmocka_unit_test(test_indice),
        cmocka_unit_test(test_uri_length),
        cmocka_unit_test(test_param_count),
        cmocka_unit_test(test_insert_everywhere),
        cmocka_unit_test(test_plan_class),
        cmocka_unit_test(test_error_messages),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
