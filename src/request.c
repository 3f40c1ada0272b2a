#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi.h"
#include "request.h"
#include "util.h"

#define PREFIX "/here-proxy/"
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define MAX_PARAMS 32
#define MAX_COMPONENT 1024
#define MAX_FEATURES 8

static const char *const resources[] = {
    "base", "background", "label", "blank", NULL};
static const char *const formats[] = {"png", "png8", "jpeg", NULL};
static const char *const endpoints[] = {
    "info", "copyright", "languages", "features", "politicalViews", NULL};
/*
 * The styles accepted when the policy names none (HERE_STYLES' default,
 * REQUEST_STYLES_DEFAULT), sorted by strcmp for the same binary search.
 */
static const char *const default_styles[] = {"explore.day", "explore.night",
    "explore.satellite.day", "lite.day", "lite.night", "lite.satellite.day",
    "satellite.day", "topo.day", "topo.night"};
#define NDEFAULT_STYLES (sizeof(default_styles) / sizeof(default_styles[0]))
/* HERE's style when a request names none. */
#define DEFAULT_STYLE "explore.day"
static const char *const logistics_styles[] = {
    "logistics.day", "logistics.night", "logistics.satellite.day", NULL};
/* Parameters a client may send that are dropped, never forwarded. */
static const char *const dropped[] = {
    "apiKey", "app_id", "app_code", "lg", "mv", NULL};

/*
 * HERE's feature names with their modes, every one of the Raster Tile API
 * 3.0.4. Sorted by name: the key lists the features in this order, so the
 * order a client gives them in does not split the cache.
 */
static const struct {
    const char *name;
    const char *values[6];
} feature_table[] = {
    {"congestion_zones", {"all", "disabled", NULL}},
    {"environmental_zones", {"all", "disabled", NULL}},
    {"pois", {"all", "disabled", NULL}},
    {"public_transit",
        {"asia_selected_systems", "all_systems", "disabled", NULL}},
    {"truck_preferred_roads", {"all", "disabled", NULL}},
    {"vehicle_restrictions",
        {"active_and_inactive", "permanent_only",
            "active_and_inactive_differentiated", "active_only", "disabled",
            NULL}},
};
#define NFEATURES (sizeof(feature_table) / sizeof(feature_table[0]))

/* "YYYY-MM-DDTHH:mm" */
#define LOCAL_TIME_LEN 16

/* Validated parameters; NULL or 0 means absent. */
struct params {
    const char *style;
    const char *format; /* capabilities: the tiles' format */
    long size, ppi, scale;
    char lang[16], lang2[16], pview[4];
    char start_time[LOCAL_TIME_LEN + 1], end_time[LOCAL_TIME_LEN + 1];
    const char *feature_value[NFEATURES];
    int has_features;
    int seen_indice;
    unsigned seen_dropped; /* bit i: dropped[i] was given */
};

static const char *
lookup(const char *const *table, const char *s, size_t len)
{
    for (; *table != NULL; table++)
        if (strlen(*table) == len && memcmp(*table, s, len) == 0)
            return *table;
    return NULL;
}

static int
lookup_index(const char *const *table, const char *entry)
{
    int i;

    for (i = 0; table[i] != entry; i++)
        ;
    return i;
}

static const char *style_accepted(
    const struct request_policy *policy, const char *v);
static int cmp_style(const void *key, const void *entry);

size_t
request_styles(
    const struct request_policy *policy, const char **out, size_t max)
{
    const char *const *list = policy->styles != NULL
        ? (const char *const *)policy->styles
        : default_styles;
    size_t nlist = policy->styles != NULL ? policy->nstyles : NDEFAULT_STYLES;
    size_t n = 0, i;

    /* HERE's default first: a client that takes the first layer gets it. */
    if (style_accepted(policy, DEFAULT_STYLE) != NULL && n < max)
        out[n++] = DEFAULT_STYLE;
    for (i = 0; i < nlist && n < max; i++)
        if (strcmp(list[i], DEFAULT_STYLE) != 0)
            out[n++] = list[i];
    for (i = 0;
         policy->allow_logistics && logistics_styles[i] != NULL && n < max; i++)
        if (policy->styles == NULL ||
            bsearch(logistics_styles[i], policy->styles, policy->nstyles,
                sizeof(*policy->styles), cmp_style) == NULL)
            out[n++] = logistics_styles[i];
    return n;
}

const char *const *
request_resources(void)
{
    return resources;
}

enum req_method
request_method_parse(const char *method)
{
    if (method == NULL)
        return METHOD_OTHER;
    if (strcmp(method, "GET") == 0)
        return METHOD_GET;
    if (strcmp(method, "HEAD") == 0)
        return METHOD_HEAD;
    if (strcmp(method, "OPTIONS") == 0)
        return METHOD_OPTIONS;
    if (strcmp(method, "POST") == 0)
        return METHOD_POST;
    return METHOD_OTHER;
}

/* clang-format off */
static const char *const route_allow[ROUTE_COUNT] = {
#define REQUEST_ROUTE_ROW(id, allow) allow,
    REQUEST_ROUTES_LIST(REQUEST_ROUTE_ROW)
#undef REQUEST_ROUTE_ROW
};
/* clang-format on */

const char *
request_route_allow(enum req_route route)
{
    return (unsigned)route < ROUTE_COUNT ? route_allow[route]
                                         : route_allow[ROUTE_NONE];
}

static const struct {
    const char *name;
    size_t len;
    size_t offset;
    /* clang-format off */
} known_params[] = {
#define REQUEST_PARAM_ROW(field, name)                                       \
    {name, sizeof(name) - 1, offsetof(struct request_params, field)},
    REQUEST_PARAMS_LIST(REQUEST_PARAM_ROW)
#undef REQUEST_PARAM_ROW
};
/* clang-format on */

/* One parameter: where it goes, if we read it. The first wins. */
static void
take_param(
    struct request_params *p, const char *name, size_t nlen, const char *value)
{
    size_t i;

    for (i = 0; i < sizeof(known_params) / sizeof(known_params[0]); i++) {
        const char **slot;

        if (known_params[i].len != nlen ||
            memcmp(known_params[i].name, name, nlen) != 0)
            continue;
        slot = (const char **)(void *)((char *)p + known_params[i].offset);
        if (*slot == NULL)
            *slot = value;
        return;
    }
}

void
request_params_read(
    struct request_params *out, const struct fcgi_param *params, size_t n)
{
    size_t i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < n; i++)
        take_param(out, params[i].name, params[i].name_len, params[i].value);
}

void
request_params_from_env(struct request_params *out, char *const *envp)
{
    memset(out, 0, sizeof(*out));
    for (; envp != NULL && *envp != NULL; envp++) {
        const char *eq = strchr(*envp, '=');

        if (eq != NULL)
            take_param(out, *envp, (size_t)(eq - *envp), eq + 1);
    }
}

/* Copy for an error message: printable ASCII only, bounded. */
static void
safe_copy(char *dst, size_t size, const char *src, size_t len)
{
    size_t i, n = len < size - 1 ? len : size - 1;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[n] = '\0';
    if (len > n && n >= 3)
        memcpy(dst + n - 3, "...", 3);
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decode a query component (percent-escapes, '+' as space) into out.
 * Rejects bad escapes, control bytes and anything outside printable ASCII:
 * no parameter HERE knows needs them.
 */
static int
decode_component(
    const char *s, size_t len, char *out, size_t outsize, const char **why)
{
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        int c = (unsigned char)s[i];

        if (c == '%') {
            int hi, lo;
            if (len - i < 3) {
                *why = "malformed percent-escape";
                return -1;
            }
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) {
                *why = "malformed percent-escape";
                return -1;
            }
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c < 0x20 || c >= 0x7f) {
            *why = "control or non-ASCII byte";
            return -1;
        }
        if (o + 1 >= outsize) {
            *why = "too long";
            return -1;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int
is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

static int
is_alpha(char c)
{
    return is_lower(c) || (c >= 'A' && c <= 'Z');
}

/* ^[A-Z]{2,3}$ */
static int
valid_pview(const char *v)
{
    size_t len = strlen(v), i;

    if (len < 2 || len > 3)
        return 0;
    for (i = 0; i < len; i++)
        if (v[i] < 'A' || v[i] > 'Z')
            return 0;
    return 1;
}

int
request_style_valid(const char *v, size_t len)
{
    size_t i;

    if (len < 1 || len > REQUEST_STYLE_MAX || !is_lower(v[0]))
        return 0;
    for (i = 1; i < len; i++) {
        char c = v[i];
        if (!is_lower(c) && !(c >= '0' && c <= '9') && c != '.' && c != '_' &&
            c != '-')
            return 0;
    }
    return 1;
}

static int
cmp_style(const void *key, const void *entry)
{
    return strcmp((const char *)key, *(const char *const *)entry);
}

/*
 * The policy's own copy of style v when the deployment accepts it (so that
 * the key may point to it), else NULL. HERE_STYLES first, then the
 * logistics styles when HERE_ALLOW_LOGISTICS is on.
 */
static const char *
style_accepted(const struct request_policy *policy, const char *v)
{
    const char *const *found;

    if (policy->styles != NULL)
        found = bsearch(v, policy->styles, policy->nstyles,
            sizeof(*policy->styles), cmp_style);
    else
        found = bsearch(v, default_styles, NDEFAULT_STYLES,
            sizeof(*default_styles), cmp_style);
    if (found != NULL)
        return *found;
    if (policy->allow_logistics)
        return lookup(logistics_styles, v, strlen(v));
    return NULL;
}

/* Two decimal digits at s, or -1. */
static int
two_digits(const char *s)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/*
 * A local date and time as HERE takes it, YYYY-MM-DDTHH:mm, no zone, and
 * a real one: month 1 to 12, the day within its month (29 February only in
 * a Gregorian leap year), hour 0 to 23, minute 0 to 59.
 */
static int
valid_local_time(const char *v)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int century, year, month, day, hour, minute, leap;

    if (strlen(v) != LOCAL_TIME_LEN || v[4] != '-' || v[7] != '-' ||
        v[10] != 'T' || v[13] != ':')
        return 0;
    if ((century = two_digits(v)) < 0 || (year = two_digits(v + 2)) < 0 ||
        (month = two_digits(v + 5)) < 0 || (day = two_digits(v + 8)) < 0 ||
        (hour = two_digits(v + 11)) < 0 || (minute = two_digits(v + 14)) < 0)
        return 0;
    year += century * 100;
    leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month < 1 || month > 12 || hour > 23 || minute > 59 || day < 1)
        return 0;
    return day <= days[month - 1] + (month == 2 && leap);
}

/*
 * startTime and endTime bound the time window of HERE's time-based
 * vehicle restrictions: only with the two modes that use one, and the
 * window runs forwards (an empty one, start equal to end, is an instant).
 * The fixed-width format orders as text does.
 */
static int
check_time_window(const struct params *p, char *err, size_t errlen)
{
    const char *mode = NULL;
    const char *name = *p->start_time != '\0' ? "startTime" : "endTime";
    size_t i;

    if (*p->start_time == '\0' && *p->end_time == '\0')
        return 0;
    for (i = 0; i < NFEATURES; i++)
        if (strcmp(feature_table[i].name, "vehicle_restrictions") == 0)
            mode = p->feature_value[i];
    if (mode == NULL ||
        (strcmp(mode, "active_only") != 0 &&
            strcmp(mode, "active_and_inactive_differentiated") != 0)) {
        snprintf(err, errlen,
            "%s: only with features=vehicle_restrictions:active_only or "
            "vehicle_restrictions:active_and_inactive_differentiated",
            name);
        return -1;
    }
    if (*p->start_time != '\0' && *p->end_time != '\0' &&
        strcmp(p->end_time, p->start_time) < 0) {
        snprintf(err, errlen, "endTime: before startTime");
        return -1;
    }
    return 0;
}

int
request_indice_valid(const char *v, size_t len)
{
    size_t i;

    if (len < 1 || len > REQUEST_INDICE_MAX)
        return 0;
    for (i = 0; i < len; i++) {
        char c = v[i];
        if (!is_alpha(c) && !(c >= '0' && c <= '9') && c != '_' && c != '.' &&
            c != '-')
            return 0;
    }
    return 1;
}

static int
parse_features(const char *v, struct params *p, char *err, size_t errlen)
{
    const char *item = v;
    int count = 0;

    if (*v == '\0') {
        snprintf(err, errlen, "features: must be name:value pairs");
        return -1;
    }
    while (*item != '\0') {
        size_t len = strcspn(item, ","), i;
        const char *colon = memchr(item, ':', len);
        int found = 0;

        if (++count > MAX_FEATURES || colon == NULL) {
            snprintf(err, errlen,
                "features: must be name:value pairs "
                "separated by commas");
            return -1;
        }
        for (i = 0; i < NFEATURES && !found; i++) {
            const char *name = feature_table[i].name;
            const char *value;

            if (strlen(name) != (size_t)(colon - item) ||
                memcmp(name, item, (size_t)(colon - item)) != 0)
                continue;
            found = 1;
            value = lookup(feature_table[i].values, colon + 1,
                len - (size_t)(colon - item) - 1);
            if (value == NULL) {
                snprintf(err, errlen, "features: unknown value for %s", name);
                return -1;
            }
            if (p->feature_value[i] != NULL) {
                snprintf(err, errlen, "features: %s given twice", name);
                return -1;
            }
            p->feature_value[i] = value;
        }
        if (!found) {
            char name[48];
            safe_copy(name, sizeof(name), item, (size_t)(colon - item));
            snprintf(err, errlen, "features: unknown feature '%s'", name);
            return -1;
        }
        item += len;
        if (*item == ',') {
            item++;
            if (*item == '\0') {
                snprintf(err, errlen, "features: trailing comma");
                return -1;
            }
        }
    }
    p->has_features = 1;
    return 0;
}

static int
parse_choice_long(const char *name, const char *v, const long *allowed,
    long *out, char *err, size_t errlen)
{
    long n;
    size_t i;

    if (util_parse_long(v, 0, 100000, &n) == 0 && v[0] != '0') {
        for (i = 0; allowed[i] != 0; i++) {
            if (allowed[i] == n) {
                *out = n;
                return 0;
            }
        }
    }
    snprintf(err, errlen, "%s: must be one of", name);
    for (i = 0; allowed[i] != 0; i++) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l, "%s%ld", i ? ", " : " ", allowed[i]);
    }
    return -1;
}

/* Apply one decoded name=value; returns 0 or -1 with err set. */
static int
apply_param(const char *name, const char *value, struct params *p,
    struct tile_req *req, const struct request_policy *policy, char *err,
    size_t errlen)
{
    static const long sizes[] = {256, 512, 0};
    static const long ppis[] = {100, 200, 400, 0};
    static const long scales[] = {1, 2, 0};

    if (strcmp(name, "token") == 0) {
        size_t i, len = strlen(value);

        if (*req->token != '\0') {
            snprintf(err, errlen, "token: given more than once");
            return -1;
        }
        for (i = 0; i < len; i++)
            if (value[i] <= ' ' || value[i] >= 0x7f)
                break;
        if (len < 1 || len > REQUEST_TOKEN_MAX || i < len) {
            snprintf(err, errlen, "token: must be 1 to %d printable bytes",
                REQUEST_TOKEN_MAX);
            return -1;
        }
        util_strlcpy(req->token, value, sizeof(req->token));
        return 0;
    }
    if (strcmp(name, "indice") == 0) {
        if (p->seen_indice) {
            snprintf(err, errlen, "indice: given more than once");
            return -1;
        }
        if (!request_indice_valid(value, strlen(value))) {
            snprintf(err, errlen,
                "indice: must be 1 to 64 of "
                "A-Z a-z 0-9 _ . -");
            return -1;
        }
        p->seen_indice = 1;
        req->indice_given = 1;
        util_strlcpy(req->indice, value, sizeof(req->indice));
        return 0;
    }
    {
        const char *d = lookup(dropped, name, strlen(name));
        if (d != NULL) {
            /* Ignored, but still said once: a repeat is a malformed query. */
            unsigned bit = 1u << (unsigned)(lookup_index(dropped, d));
            if (p->seen_dropped & bit)
                goto twice;
            p->seen_dropped |= bit;
            return 0;
        }
    }
    if (strcmp(name, "format") == 0 &&
        (req->route == ROUTE_TILEJSON || req->route == ROUTE_WMTS)) {
        if (p->format != NULL)
            goto twice;
        if ((p->format = lookup(formats, value, strlen(value))) == NULL) {
            snprintf(err, errlen, "format: must be png, png8 or jpeg");
            return -1;
        }
        return 0;
    }
    if (strcmp(name, "style") == 0 && req->route == ROUTE_WMTS) {
        snprintf(err, errlen,
            "style: the capabilities have a layer for each style; leave "
            "style out");
        return -1;
    }
    if (strcmp(name, "style") == 0) {
        const char *s = style_accepted(policy, value);
        if (p->style != NULL)
            goto twice;
        if (s == NULL) {
            snprintf(err, errlen, "style: unknown or not enabled style");
            return -1;
        }
        p->style = s;
        return 0;
    }
    if (strcmp(name, "size") == 0) {
        if (p->size != 0)
            goto twice;
        return parse_choice_long(name, value, sizes, &p->size, err, errlen);
    }
    if (strcmp(name, "ppi") == 0) {
        if (p->ppi != 0)
            goto twice;
        return parse_choice_long(name, value, ppis, &p->ppi, err, errlen);
    }
    if (strcmp(name, "scale") == 0) {
        if (p->scale != 0)
            goto twice;
        return parse_choice_long(name, value, scales, &p->scale, err, errlen);
    }
    if (strcmp(name, "lang") == 0 || strcmp(name, "lang2") == 0) {
        char *slot = name[4] == '2' ? p->lang2 : p->lang;
        if (*slot != '\0')
            goto twice;
        if (!util_lang_valid(value)) {
            snprintf(err, errlen, "%s: must look like en or pt-BR", name);
            return -1;
        }
        util_strlcpy(slot, value, sizeof(p->lang));
        return 0;
    }
    if (strcmp(name, "pview") == 0) {
        if (*p->pview != '\0')
            goto twice;
        if (!valid_pview(value)) {
            snprintf(err, errlen, "pview: must be 2 or 3 capital letters");
            return -1;
        }
        util_strlcpy(p->pview, value, sizeof(p->pview));
        return 0;
    }
    if (strcmp(name, "features") == 0) {
        if (p->has_features)
            goto twice;
        return parse_features(value, p, err, errlen);
    }
    if (strcmp(name, "startTime") == 0 || strcmp(name, "endTime") == 0) {
        char *slot = name[0] == 's' ? p->start_time : p->end_time;
        if (*slot != '\0')
            goto twice;
        if (!valid_local_time(value)) {
            snprintf(err, errlen,
                "%s: must be a local date and time, YYYY-MM-DDTHH:mm "
                "(a real one, no time zone)",
                name);
            return -1;
        }
        util_strlcpy(slot, value, LOCAL_TIME_LEN + 1);
        return 0;
    }
    {
        char shown[72];
        safe_copy(shown, sizeof(shown), name, strlen(name));
        snprintf(err, errlen, "unknown parameter '%s'", shown);
    }
    return -1;
twice:
    snprintf(err, errlen, "%s: given more than once", name);
    return -1;
}

static int
parse_query(const char *q, size_t qlen, struct params *p, struct tile_req *req,
    const struct request_policy *policy, char *err, size_t errlen)
{
    size_t pos = 0;
    int count = 0;

    while (pos < qlen) {
        size_t len = 0, nlen;
        const char *item = q + pos, *eq;
        char name[MAX_COMPONENT], value[MAX_COMPONENT];
        const char *why = NULL;

        while (pos + len < qlen && item[len] != '&')
            len++;
        pos += len + 1;
        if (len == 0)
            continue; /* "a=1&&b=2" and a trailing '&' are harmless */
        if (++count > MAX_PARAMS) {
            snprintf(err, errlen, "too many query parameters (at most %d)",
                MAX_PARAMS);
            return -1;
        }
        eq = memchr(item, '=', len);
        nlen = eq ? (size_t)(eq - item) : len;
        if (decode_component(item, nlen, name, sizeof(name), &why) != 0) {
            snprintf(err, errlen, "query parameter name: %s", why);
            return -1;
        }
        if (decode_component(eq ? eq + 1 : item + len, eq ? len - nlen - 1 : 0,
                value, sizeof(value), &why) != 0) {
            char shown[72];
            safe_copy(shown, sizeof(shown), name, strlen(name));
            snprintf(err, errlen, "%s: %s", shown, why);
            return -1;
        }
        if (apply_param(name, value, p, req, policy, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* "0" or [1-9][0-9]{0,6} */
static int
parse_coord(const char *s, size_t len, long max, long *out)
{
    char buf[8];

    if (len == 0 || len >= sizeof(buf) || (len > 1 && s[0] == '0'))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return util_parse_long(buf, 0, max, out);
}

/* Append text to the key; -1 when it would not fit. */
static int
key_put(struct tile_req *req, const char *s)
{
    size_t len = strlen(s);

    if (len >= sizeof(req->key) - req->key_len)
        return -1;
    memcpy(req->key + req->key_len, s, len + 1);
    req->key_len += len;
    return 0;
}

/* "%ld" without printf, which cost more than the rest of the key. */
static const char *
format_long(char buf[24], long n)
{
    char *p = buf + 23;
    unsigned long v = n < 0 ? 0UL - (unsigned long)n : (unsigned long)n;

    *p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (n < 0)
        *--p = '-';
    return p;
}

static int
key_put_long(struct tile_req *req, long n)
{
    char buf[24];

    return key_put(req, format_long(buf, n));
}

static void
key_sep(struct tile_req *req)
{
    req->key[req->key_len++] = req->key_has_query ? '&' : '?';
    req->key[req->key_len] = '\0';
    req->key_has_query = 1;
}

static int
key_param_str(struct tile_req *req, const char *name, const char *value)
{
    if (value == NULL || *value == '\0')
        return 0;
    if (req->key_len + 2 >= sizeof(req->key))
        return -1;
    key_sep(req);
    if (key_put(req, name) != 0 || key_put(req, "=") != 0)
        return -1;
    return key_put(req, value);
}

static int
key_param_long(struct tile_req *req, const char *name, long value)
{
    char buf[24];

    if (value == 0)
        return 0;
    return key_param_str(req, name, format_long(buf, value));
}

/*
 * The canonical query: names in byte order (endTime, features, lang,
 * lang2, ppi, pview, scale, size, startTime, style), features sorted by
 * name.
 */
static int
build_key(struct tile_req *req, struct params *p)
{
    size_t i;

    if (req->route == ROUTE_TILEJSON || req->route == ROUTE_WMTS) {
        req->format = p->format != NULL ? p->format : formats[0];
        if (key_put(req,
                req->route == ROUTE_WMTS ? "wmts/1.0.0" : "tilejson/") != 0 ||
            (req->route == ROUTE_TILEJSON &&
                key_put(req, req->resource) != 0) ||
            key_put(req, "/") != 0 || key_put(req, req->format) != 0)
            return -1;
    } else if (req->route == ROUTE_TILE &&
        (key_put(req, req->resource) != 0 || key_put(req, "/mc/") != 0 ||
            key_put_long(req, req->z) != 0 || key_put(req, "/") != 0 ||
            key_put_long(req, req->x) != 0 || key_put(req, "/") != 0 ||
            key_put_long(req, req->y) != 0 || key_put(req, "/") != 0 ||
            key_put(req, req->format) != 0)) {
        return -1;
    }
    if (req->route != ROUTE_META) {
        /* HERE's defaults, so that explicit and implied ones match; a
         * capabilities document has a layer for each style instead. */
        if (p->style == NULL && req->route != ROUTE_WMTS)
            p->style = DEFAULT_STYLE;
        if (p->size == 0)
            p->size = 256;
        if (p->ppi == 0)
            p->ppi = 100;
        if (p->scale == 0)
            p->scale = 1;
        req->size = p->size;
        req->style = p->style;
    } else if (key_put(req, req->endpoint) != 0) {
        return -1;
    }
    if (key_param_str(req, "endTime", p->end_time) != 0)
        return -1;
    if (p->has_features) {
        if (req->key_len + 2 >= sizeof(req->key))
            return -1;
        key_sep(req);
        if (key_put(req, "features=") != 0)
            return -1;
        for (i = 0; i < NFEATURES; i++) {
            if (p->feature_value[i] == NULL)
                continue;
            if (req->key[req->key_len - 1] != '=' && key_put(req, ",") != 0)
                return -1;
            if (key_put(req, feature_table[i].name) != 0 ||
                key_put(req, ":") != 0 ||
                key_put(req, p->feature_value[i]) != 0)
                return -1;
        }
    }
    if (key_param_str(req, "lang", p->lang) != 0 ||
        key_param_str(req, "lang2", p->lang2) != 0 ||
        key_param_long(req, "ppi", p->ppi) != 0 ||
        key_param_str(req, "pview", p->pview) != 0 ||
        key_param_long(req, "scale", p->scale) != 0 ||
        key_param_long(req, "size", p->size) != 0 ||
        key_param_str(req, "startTime", p->start_time) != 0 ||
        key_param_str(req, "style", p->style) != 0)
        return -1;
    return 0;
}

/* Append "&name=value" (no '&' first) to the plan class, if it fits. */
static void
plan_put(struct tile_req *req, const char *name, const char *value)
{
    size_t len = strlen(req->plan);

    snprintf(req->plan + len, sizeof(req->plan) - len, "%s%s=%s",
        len > 0 ? "&" : "", name, value);
}

static void
plan_put_long(struct tile_req *req, const char *name, long value)
{
    char buf[24];

    plan_put(req, name, format_long(buf, value));
}

/*
 * What a plan may lack, HERE's defaults left out: only the position of a
 * tile does not count. Everything else a client may choose does, so that
 * no choice of one client can pass for the defaults every client uses.
 * Every request pays for it, hits too: the defaults cost a few tests.
 */
static void
build_plan(struct tile_req *req, const struct params *p)
{
    size_t i, len;

    req->plan[0] = '\0';
    if (req->route == ROUTE_TILE) {
        if (req->resource != resources[0])
            plan_put(req, "resource", req->resource);
        if (req->format != formats[0])
            plan_put(req, "format", req->format);
    } else {
        plan_put(req, "endpoint", req->endpoint);
    }
    if (p->has_features) {
        len = strlen(req->plan);
        snprintf(req->plan + len, sizeof(req->plan) - len,
            "%sfeatures=", len > 0 ? "&" : "");
        for (i = 0; i < NFEATURES; i++) {
            if (p->feature_value[i] == NULL)
                continue;
            len = strlen(req->plan);
            snprintf(req->plan + len, sizeof(req->plan) - len, "%s%s:%s",
                req->plan[len - 1] == '=' ? "" : ",", feature_table[i].name,
                p->feature_value[i]);
        }
    }
    if (*p->lang != '\0')
        plan_put(req, "lang", p->lang);
    if (*p->lang2 != '\0')
        plan_put(req, "lang2", p->lang2);
    if (p->ppi != 0 && p->ppi != 100)
        plan_put_long(req, "ppi", p->ppi);
    if (*p->pview != '\0')
        plan_put(req, "pview", p->pview);
    if (p->scale != 0 && p->scale != 1)
        plan_put_long(req, "scale", p->scale);
    if (p->size != 0 && p->size != 256)
        plan_put_long(req, "size", p->size);
    if (p->style != NULL && strcmp(p->style, DEFAULT_STYLE) != 0)
        plan_put(req, "style", p->style);
    /*
     * startTime and endTime stay out: they come only with a
     * vehicle_restrictions mode, which is in the class already, and a plan
     * that lacks the mode lacks it at any time (one class, not one per
     * window).
     */
}

/* Split the path after the prefix into at most 6 segments. */
static int
split_segments(
    const char *s, size_t len, const char **seg, size_t *seglen, int max)
{
    int n = 0;
    size_t start = 0, i;

    for (i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            if (n == max)
                return -1;
            seg[n] = s + start;
            seglen[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    return n;
}

static int
route_tile(struct tile_req *req, const char **seg, const size_t *seglen, int n,
    const struct request_policy *policy, char *err, size_t errlen)
{
    int i = 0;
    long max;

    if (n == 6) {
        if ((req->resource = lookup(resources, seg[0], seglen[0])) == NULL) {
            snprintf(err, errlen,
                "unknown resource: use base, background, "
                "label or blank");
            return 400;
        }
        i = 1;
    } else {
        req->resource = "base";
    }
    if (parse_coord(seg[i + 1], seglen[i + 1], policy->zmax, &req->z) != 0) {
        snprintf(err, errlen, "z: must be 0 to %ld, without leading zeros",
            policy->zmax);
        return 400;
    }
    max = (1L << req->z) - 1;
    if (parse_coord(seg[i + 2], seglen[i + 2], max, &req->x) != 0) {
        snprintf(err, errlen,
            "x: must be 0 to %ld at zoom %ld, without "
            "leading zeros",
            max, req->z);
        return 400;
    }
    if (parse_coord(seg[i + 3], seglen[i + 3], max, &req->y) != 0) {
        snprintf(err, errlen,
            "y: must be 0 to %ld at zoom %ld, without "
            "leading zeros",
            max, req->z);
        return 400;
    }
    if ((req->format = lookup(formats, seg[i + 4], seglen[i + 4])) == NULL) {
        snprintf(err, errlen, "format: must be png, png8 or jpeg");
        return 400;
    }
    req->route = ROUTE_TILE;
    return 0;
}

/* Empty segments, "." and ".." segments have no place in our paths. */
static int
has_bad_segment(const char *path, size_t len)
{
    size_t i, start = 1;

    for (i = 1; i <= len; i++) {
        if (i == len || path[i] == '/') {
            size_t l = i - start;
            const char *seg = path + start;
            if ((l == 0 && i != len) || (l == 1 && seg[0] == '.') ||
                (l == 2 && seg[0] == '.' && seg[1] == '.'))
                return 1;
            start = i + 1;
        }
    }
    return 0;
}

int
request_parse(const char *method, const char *uri,
    const struct request_policy *policy, struct tile_req *req, char *err,
    size_t errlen)
{
    struct params p;
    const char *q, *seg[6];
    size_t ulen, plen, seglen[6], i;
    int n, rc;

    memset(req, 0, sizeof(*req));
    memset(&p, 0, sizeof(p));
    util_strlcpy(req->indice, "-", sizeof(req->indice));
    req->method = request_method_parse(method);
    if (uri == NULL || *uri != '/') {
        util_strlcpy(req->path, "-", sizeof(req->path));
        snprintf(err, errlen, "request target must be an absolute path");
        return 400;
    }
    ulen = strlen(uri);
    q = strchr(uri, '?');
    plen = q ? (size_t)(q - uri) : ulen;
    safe_copy(req->path, sizeof(req->path), uri, plen);
    if (ulen > REQUEST_URI_MAX) {
        snprintf(
            err, errlen, "request URI longer than %d bytes", REQUEST_URI_MAX);
        return 414;
    }
    for (i = 0; i < ulen; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c <= 0x20 || c >= 0x7f || c == '#') {
            snprintf(err, errlen,
                "request URI contains a byte that is not "
                "allowed");
            return 400;
        }
    }
    if (memchr(uri, '%', plen) != NULL) {
        snprintf(err, errlen, "percent-escapes are not allowed in the path");
        return 400;
    }
    if (has_bad_segment(uri, plen)) {
        snprintf(err, errlen,
            "empty, '.' or '..' path segments are not "
            "allowed");
        return 400;
    }
    if ((plen == 8 && memcmp(uri, "/healthz", 8) == 0) ||
        (plen == 7 && memcmp(uri, "/readyz", 7) == 0)) {
        req->route = plen == 8 ? ROUTE_HEALTHZ : ROUTE_READYZ;
        if (req->method != METHOD_GET && req->method != METHOD_HEAD) {
            snprintf(err, errlen, "method not allowed");
            return 405;
        }
        return 0;
    }
    if ((plen == 8 && memcmp(uri, "/metrics", 8) == 0) ||
        (plen == 19 && memcmp(uri, "/metrics/prometheus", 19) == 0)) {
        req->route = plen == 8 ? ROUTE_METRICS : ROUTE_METRICS_PROMETHEUS;
        if (req->method != METHOD_GET && req->method != METHOD_HEAD) {
            snprintf(err, errlen, "method not allowed");
            return 405;
        }
        return 0;
    }
    /* The tile to purge, if any, follows: the handler parses it. */
    if (plen >= 12 && memcmp(uri, "/admin/purge", 12) == 0 &&
        (plen == 12 || uri[12] == '/')) {
        req->route = ROUTE_ADMIN_PURGE;
        if (req->method != METHOD_POST) {
            snprintf(err, errlen, "method not allowed");
            return 405;
        }
        return 0;
    }
    if (plen <= PREFIX_LEN || memcmp(uri, PREFIX, PREFIX_LEN) != 0) {
        snprintf(err, errlen, "no such endpoint");
        return 404;
    }
    if (req->method == METHOD_OPTIONS) {
        req->route = ROUTE_PREFLIGHT;
        return 0;
    }
    n = split_segments(uri + PREFIX_LEN, plen - PREFIX_LEN, seg, seglen, 6);
    if (n == 1 && (req->endpoint = lookup(endpoints, seg[0], seglen[0]))) {
        req->route = ROUTE_META;
    } else if (n == 2 && seglen[0] == 8 && memcmp(seg[0], "tilejson", 8) == 0 &&
        seglen[1] > 5 && memcmp(seg[1] + seglen[1] - 5, ".json", 5) == 0) {
        req->route = ROUTE_TILEJSON;
    } else if (n == 3 && seglen[0] == 4 && memcmp(seg[0], "wmts", 4) == 0 &&
        seglen[1] == 5 && memcmp(seg[1], "1.0.0", 5) == 0 && seglen[2] == 20 &&
        memcmp(seg[2], "WMTSCapabilities.xml", 20) == 0) {
        req->route = ROUTE_WMTS;
    } else if ((n == 5 && seglen[0] == 2 && memcmp(seg[0], "mc", 2) == 0) ||
        (n == 6 && seglen[1] == 2 && memcmp(seg[1], "mc", 2) == 0)) {
        req->route = ROUTE_TILE;
    } else {
        snprintf(err, errlen, "no such endpoint");
        return 404;
    }
    if (req->method != METHOD_GET && req->method != METHOD_HEAD) {
        snprintf(err, errlen, "method not allowed");
        return 405;
    }
    if (req->route == ROUTE_TILE &&
        (rc = route_tile(req, seg, seglen, n, policy, err, errlen)) != 0)
        return rc;
    if (req->route == ROUTE_TILEJSON &&
        (req->resource = lookup(resources, seg[1], seglen[1] - 5)) == NULL) {
        snprintf(err, errlen,
            "unknown resource: use base, background, label or blank");
        return 400;
    }
    if (q != NULL &&
        parse_query(q + 1, ulen - plen - 1, &p, req, policy, err, errlen) != 0)
        return 400;
    if (check_time_window(&p, err, errlen) != 0)
        return 400;
    /* No style asks HERE for its default: one the deployment may refuse. */
    if (req->route == ROUTE_TILE && p.style == NULL &&
        style_accepted(policy, DEFAULT_STYLE) == NULL) {
        snprintf(err, errlen,
            "style: the default, " DEFAULT_STYLE
            ", is not enabled here: name a style");
        return 400;
    }
    if (build_key(req, &p) != 0) {
        snprintf(err, errlen, "request too long");
        return 414;
    }
    if (req->route == ROUTE_TILE || req->route == ROUTE_META)
        build_plan(req, &p);
    return 0;
}
