#include "config.h"

#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "acl.h"
#include "caps.h"
#include "credentials.h"
#include "settings.h"
#include "listen.h"
#include "log.h"
#include "ratelimit.h"
#include "request.h"
#include "util.h"

enum { RESTART, RELOAD };

struct setting {
    const char *name;
    size_t offset;
    enum setting_kind kind;
    const char *def;
    long min;
    long max;
    int reload;
};

#define SETTING_ROW(name, member, kind, def, min, max, reload)                 \
    {#name, offsetof(struct settings, member), kind, def, min, max, reload},

static const struct setting settings[] = {SETTINGS_LIST(SETTING_ROW)};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

#define MAX_TEXT_LEN 4096
/*
 * Client token lists may be long (10,000 tokens and more, from
 * HEREPROXY_CLIENT_TOKENS_FILE): the file's cap, not MAX_TEXT_LEN.
 */
#define TOKENS_TEXT_MAX (16 << 20)

/* Kinds held as text (the rest are numbers). */
static int
is_text(enum setting_kind kind)
{
    switch (kind) {
    case CFG_LONG:
    case CFG_BOOL:
    case CFG_SIZE:
    case CFG_LEVEL: return 0;
    default: return 1;
    }
}

/* ------------------------------------------------------------ name lists */

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
name_list_free(struct name_list *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof(*l));
}

/*
 * "a, b,c" into a sorted list (blanks around items dropped, empty items
 * skipped); "*" when star is allowed. 0 or -1 (out of memory).
 */
static int
name_list_parse(const char *text, int star, struct name_list *out)
{
    const char *p = text;
    size_t cap = 0;

    memset(out, 0, sizeof(*out));
    if (star && strcmp(text, "*") == 0) {
        out->any = 1;
        return 0;
    }
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        const char *q = p;
        size_t n = len;

        while (n > 0 && (*q == ' ' || *q == '\t')) {
            q++;
            n--;
        }
        while (n > 0 && (q[n - 1] == ' ' || q[n - 1] == '\t'))
            n--;
        if (n > 0) {
            if (out->n == cap) {
                char **v =
                    realloc(out->names, (cap = cap ? cap * 2 : 8) * sizeof(*v));

                if (v == NULL)
                    goto oom;
                out->names = v;
            }
            if ((out->names[out->n] = strndup(q, n)) == NULL)
                goto oom;
            out->n++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    /* qsort(NULL, 0, ...) is undefined behaviour (UBSan says so). */
    if (out->n > 0)
        qsort(out->names, out->n, sizeof(*out->names), cmp_names);
    return 0;
oom:
    name_list_free(out);
    return -1;
}

int
name_list_has(const struct name_list *l, const char *name)
{
    if (l->any)
        return 1;
    /* bsearch(.., NULL, 0, ..) is undefined behaviour, as qsort's above. */
    return name != NULL && l->n > 0 &&
        bsearch(&name, l->names, l->n, sizeof(*l->names), cmp_names) != NULL;
}

static const struct setting *
find_setting(const char *name)
{
    size_t i;

    for (i = 0; i < NSETTINGS; i++)
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    return NULL;
}

static int
parse_bool(const char *v, long *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    size_t i;

    for (i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int
is_http_url(const char *v)
{
    const char *host;

    if (strncmp(v, "http://", 7) == 0)
        host = v + 7;
    else if (strncmp(v, "https://", 8) == 0)
        host = v + 8;
    else
        return 0;
    /* A scheme alone, or an empty host, is not somewhere to connect to. */
    return *host != '\0' && strchr("/:,@", *host) == NULL;
}

/* "*" or origins such as https://maps.example.com, comma separated. */
static int
valid_origins(const char *v)
{
    const char *p = v;

    if (strcmp(v, "*") == 0)
        return 1;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        size_t i;

        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
        if (len == 0 || !is_http_url(p))
            return 0;
        for (i = 0; i < len; i++)
            if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f)
                return 0;
        p += len;
        if (*p == ',' && *++p == '\0')
            return 0; /* a trailing comma names nobody */
    }
    return 1;
}

/*
 * host[:port] items, comma separated; host is a name or IPv4 address. An
 * item starting with '/' is the path of a Unix socket (memcached -s).
 */
static int
valid_servers(const char *v)
{
    const char *p = v;

    while (*p != '\0') {
        size_t hostlen = 0;
        long port;

        if (*p == '/') {
            size_t n = strcspn(p, ",");

            if (n >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return 0;
            for (hostlen = 0; hostlen < n; hostlen++)
                if ((unsigned char)p[hostlen] <= ' ' ||
                    (unsigned char)p[hostlen] >= 0x7f)
                    return 0;
            p += n;
            if (*p == ',' && *++p == '\0')
                return 0;
            continue;
        }
        while (isalnum((unsigned char)p[hostlen]) || p[hostlen] == '.' ||
            p[hostlen] == '-' || p[hostlen] == '_')
            hostlen++;
        if (hostlen == 0)
            return 0;
        p += hostlen;
        if (*p == ':') {
            char digits[8];
            size_t n = strcspn(p + 1, ",");
            if (n == 0 || n >= sizeof(digits))
                return 0;
            memcpy(digits, p + 1, n);
            digits[n] = '\0';
            if (util_parse_long(digits, 1, 65535, &port) != 0)
                return 0;
            p += 1 + n;
        }
        if (*p == ',') {
            p++;
            if (*p == '\0')
                return 0;
        } else if (*p != '\0') {
            return 0;
        }
    }
    return 1;
}

/* The key goes into a query string as it is: allow only unreserved bytes. */
static int
valid_key(const char *v)
{
    size_t len = strlen(v), i;

    if (len > 512)
        return 0;
    for (i = 0; i < len; i++)
        if (!isalnum((unsigned char)v[i]) && strchr("-._~", v[i]) == NULL)
            return 0;
    return 1;
}

static int
set_text(char **slot, const char *value)
{
    char *copy = strdup(value);

    if (copy == NULL)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

/* What a text setting means, parsed, until it is stored. */
struct parsed {
    struct token_table *tokens;
    struct name_list names;
    struct acl *acl;
    struct rate_spec spec;
    struct rate_overrides over;
};

static void
parsed_free(struct parsed *p)
{
    token_table_free(p->tokens);
    name_list_free(&p->names);
    acl_free(p->acl);
    rate_overrides_free(&p->over);
}

static int check_indice_entry(const char *s, size_t len, void *arg);
static int check_style_entry(const char *s, size_t len, void *arg);
static int each_entry(
    const char *list, int (*fn)(const char *, size_t, void *), void *arg);

/* Check value for s and parse what it means into *p. 0 or -1 (err set). */
static int
parse_text(const struct setting *s, const char *value, struct parsed *p,
    char *err, size_t errlen)
{
    char msg[256];

    switch (s->kind) {
    case CFG_STR:
    case CFG_SECRET:
        if (s->kind == CFG_SECRET && strcmp(s->name, "HERE_API_KEY") == 0 &&
            *value != '\0' && !valid_key(value)) {
            snprintf(err, errlen,
                "%s: only letters, digits and -._~ "
                "are allowed, at most 512",
                s->name);
            return -1;
        }
        return 0;
    case CFG_TOKENS:
        /* Parsed once, here: a request only looks its token up. */
        if (token_table_parse(value, &p->tokens, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "%s: %s", s->name, msg);
            return -1;
        }
        return 0;
    case CFG_INDICES:
        if (each_entry(value, check_indice_entry, NULL) != 0) {
            snprintf(err, errlen,
                "%s: each entry must be 1 to 64 of A-Z "
                "a-z 0-9 _ . -",
                s->name);
            return -1;
        }
        break;
    case CFG_URL:
        if (!is_http_url(value) || strpbrk(value, " ?#\t\r\n") != NULL) {
            snprintf(err, errlen,
                "%s: must be an http:// or https:// URL "
                "without query: '%s'",
                s->name, value);
            return -1;
        }
        return 0;
    case CFG_STYLES:
        /* The names go to HERE as they are: URL-safe by construction. */
        if (each_entry(value, check_style_entry, NULL) != 0) {
            snprintf(err, errlen,
                "%s: each style must be 1 to %d of a-z 0-9 . _ -, "
                "starting with a letter",
                s->name, REQUEST_STYLE_MAX);
            return -1;
        }
        if (strspn(value, " \t,") == strlen(value)) {
            snprintf(err, errlen, "%s: name at least one style", s->name);
            return -1;
        }
        break;
    case CFG_PUBLIC_URL:
        if (*value != '\0' && !caps_public_url_valid(value)) {
            snprintf(err, errlen,
                "%s: must be an http:// or https:// URL: a host name or "
                "address, an optional port and path (A-Z a-z 0-9 . _ ~ - /), "
                "no query, fragment or user: '%s'",
                s->name, value);
            return -1;
        }
        return 0;
    case CFG_ORIGINS:
        if (!valid_origins(value)) {
            snprintf(err, errlen,
                "%s: must be * or a comma list of "
                "http(s) origins",
                s->name);
            return -1;
        }
        break;
    case CFG_CIDRS:
        if (*value == '\0') /* no trusted proxies */
            return 0;
        /* FALLTHROUGH: the same address syntax */
        __attribute__((fallthrough));
    case CFG_ACL:
        if (acl_parse(&p->acl, value, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "%s: %s", s->name, msg);
            return -1;
        }
        return 0;
    case CFG_SERVERS:
        if (*value != '\0' && !valid_servers(value)) {
            snprintf(err, errlen,
                "%s: must be host:port or /socket/path, "
                "comma separated: '%s'",
                s->name, value);
            return -1;
        }
        return 0;
    case CFG_RATE:
    case CFG_QUOTA:
        if (rate_spec_parse(value, &p->spec, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "%s: %s: '%s'", s->name, msg, value);
            return -1;
        }
        if (s->kind == CFG_QUOTA && p->spec.burst != p->spec.limit) {
            snprintf(err, errlen, "%s: a quota takes no burst: '%s'", s->name,
                value);
            return -1;
        }
        return 0;
    case CFG_RATES:
    case CFG_QUOTAS:
        if (rate_overrides_parse(
                value, s->kind == CFG_RATES, &p->over, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen,
                "%s: %s (expected name:spec,name:spec "
                "such as mapa1:1000/minute,demo:off)",
                s->name, msg);
            return -1;
        }
        return 0;
    case CFG_SHARE:
        if (strcmp(value, "local") != 0 && strcmp(value, "memcached") != 0) {
            snprintf(err, errlen, "%s: must be local or memcached: '%s'",
                s->name, value);
            return -1;
        }
        return 0;
    default: return 0;
    }
    /* CFG_INDICES, CFG_STYLES and CFG_ORIGINS: a sorted list for lookups. */
    if (name_list_parse(value, s->kind == CFG_ORIGINS, &p->names) != 0) {
        snprintf(err, errlen, "%s: out of memory", s->name);
        return -1;
    }
    return 0;
}

#define SETTING_IS(s, member) ((s)->offset == offsetof(struct settings, member))

/* Hand what a text setting means over to cfg (p is left empty). */
static void
store_parsed(struct settings *cfg, const struct setting *s, struct parsed *p)
{
    struct parsed old;

    memset(&old, 0, sizeof(old));
    switch (s->kind) {
    case CFG_TOKENS:
        old.tokens = cfg->client_token_table;
        cfg->client_token_table = p->tokens;
        p->tokens = NULL;
        break;
    case CFG_INDICES:
    case CFG_STYLES:
    case CFG_ORIGINS: {
        struct name_list *l = s->kind == CFG_INDICES ? &cfg->indices_allowed
            : s->kind == CFG_STYLES                  ? &cfg->styles
                                                     : &cfg->origins;
        old.names = *l;
        *l = p->names;
        memset(&p->names, 0, sizeof(p->names));
        break;
    }
    case CFG_ACL:
    case CFG_CIDRS: {
        struct acl **a =
            s->kind == CFG_ACL ? &cfg->metrics_acl : &cfg->trusted_acl;
        old.acl = *a;
        *a = p->acl;
        p->acl = NULL;
        break;
    }
    case CFG_RATE:
        if (SETTING_IS(s, rate_limit_index))
            cfg->index_rate = p->spec;
        else
            cfg->ip_rate = p->spec;
        break;
    case CFG_QUOTA: cfg->quota = p->spec; break;
    case CFG_RATES:
    case CFG_QUOTAS: {
        struct rate_overrides *o =
            s->kind == CFG_RATES ? &cfg->index_rates : &cfg->quotas;
        old.over = *o;
        *o = p->over;
        memset(&p->over, 0, sizeof(p->over));
        break;
    }
    default: break;
    }
    parsed_free(&old);
}

int
settings_set(struct settings *cfg, const char *name, const char *value,
    char *err, size_t errlen)
{
    const struct setting *s = find_setting(name);
    char *base = (char *)cfg;
    struct parsed p;
    long num;
    uint64_t size;
    enum log_level level;

    if (s == NULL)
        return 1;
    if (strlen(value) >
        (s->kind == CFG_TOKENS ? TOKENS_TEXT_MAX : MAX_TEXT_LEN)) {
        snprintf(err, errlen, "%s: value too long", s->name);
        return -1;
    }
    switch (s->kind) {
    case CFG_LONG:
        if (util_parse_long(value, s->min, s->max, &num) != 0) {
            snprintf(err, errlen,
                "%s: must be a whole number from %ld to "
                "%ld: '%s'",
                s->name, s->min, s->max, value);
            return -1;
        }
        *(long *)(base + s->offset) = num;
        return 0;
    case CFG_BOOL:
        if (parse_bool(value, &num) != 0) {
            snprintf(err, errlen, "%s: must be 0 or 1: '%s'", s->name, value);
            return -1;
        }
        *(long *)(base + s->offset) = num;
        return 0;
    case CFG_SIZE:
        if (util_parse_size(value, &size) != 0 || size < (uint64_t)s->min) {
            snprintf(err, errlen,
                "%s: must be a byte count (K, M, G "
                "suffixes allowed) of at least %ld: '%s'",
                s->name, s->min, value);
            return -1;
        }
        *(uint64_t *)(base + s->offset) = size;
        return 0;
    case CFG_LEVEL:
        if (log_level_parse(value, &level) != 0) {
            snprintf(err, errlen,
                "%s: must be DEBUG, INFO, WARN or ERROR: "
                "'%s'",
                s->name, value);
            return -1;
        }
        *(long *)(base + s->offset) = (long)level;
        return 0;
    default: break;
    }
    memset(&p, 0, sizeof(p));
    if (parse_text(s, value, &p, err, errlen) != 0) {
        parsed_free(&p);
        return -1;
    }
    if (set_text((char **)(base + s->offset), value) != 0) {
        parsed_free(&p);
        snprintf(err, errlen, "%s: out of memory", s->name);
        return -1;
    }
    store_parsed(cfg, s, &p);
    if (s->kind == CFG_URL || s->kind == CFG_PUBLIC_URL) {
        char *url = *(char **)(base + s->offset);
        size_t len = strlen(url);
        while (len > 0 && url[len - 1] == '/')
            url[--len] = '\0';
    }
    return 0;
}

int
settings_init(struct settings *cfg)
{
    char err[256];
    size_t i;

    memset(cfg, 0, sizeof(*cfg));
    for (i = 0; i < NSETTINGS; i++)
        if (settings_set(
                cfg, settings[i].name, settings[i].def, err, sizeof(err)) != 0)
            return -1;
    return 0;
}

void
settings_cleanup(struct settings *cfg)
{
    struct parsed p;
    size_t i;

    for (i = 0; i < NSETTINGS; i++) {
        if (is_text(settings[i].kind)) {
            char **slot = (char **)((char *)cfg + settings[i].offset);
            free(*slot);
            *slot = NULL;
        }
    }
    memset(&p, 0, sizeof(p));
    p.tokens = cfg->client_token_table;
    parsed_free(&p);
    name_list_free(&cfg->indices_allowed);
    name_list_free(&cfg->styles);
    name_list_free(&cfg->origins);
    acl_free(cfg->metrics_acl);
    acl_free(cfg->trusted_acl);
    rate_overrides_free(&cfg->index_rates);
    rate_overrides_free(&cfg->quotas);
    if (cfg->here_credentials != NULL) {
        credentials_cleanup(cfg->here_credentials);
        free(cfg->here_credentials);
    }
    cfg->here_credentials = NULL;
    cfg->client_token_table = NULL;
    cfg->metrics_acl = cfg->trusted_acl = NULL;
}

static char *
trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    end = s + strlen(s);
    while (end > s &&
        (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' ||
            end[-1] == '\n'))
        *--end = '\0';
    return s;
}

/* The proxy variables libcurl reads (see proxy_from_env in main.c). */
static int
proxy_variable(const char *name)
{
    static const char *const names[] = {
        "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", NULL};
    size_t i;

    for (i = 0; names[i] != NULL; i++)
        if (strcasecmp(name, names[i]) == 0)
            return 1;
    return 0;
}

int
settings_apply_text(struct settings *cfg, const char *text, const char *origin,
    char *err, size_t errlen)
{
    char *copy = strdup(text), *line, *next;
    int lineno = 0, rc = -1;

    if (copy == NULL) {
        snprintf(err, errlen, "%s: out of memory", origin);
        return -1;
    }
    /* Split by hand: strtok_r would skip blank lines and the count with them. */
    for (line = copy; line != NULL; line = next) {
        char *name, *value, *eq, msg[512];
        int r;

        if ((next = strchr(line, '\n')) != NULL)
            *next++ = '\0';
        lineno++;
        name = trim(line);
        if (*name == '\0' || *name == '#')
            continue;
        if ((eq = strchr(name, '=')) == NULL) {
            snprintf(err, errlen, "%s:%d: expected KEY=value", origin, lineno);
            goto done;
        }
        *eq = '\0';
        name = trim(name);
        value = trim(eq + 1);
        /* Allow the value in matching quotes, as shells write it. */
        if (strlen(value) >= 2 && (value[0] == '"' || value[0] == '\'') &&
            value[strlen(value) - 1] == value[0]) {
            value[strlen(value) - 1] = '\0';
            value++;
        }
        r = settings_set(cfg, name, value, msg, sizeof(msg));
        if (r == 1 && proxy_variable(name)) {
            /* libcurl reads it from the environment; here it would be lost. */
            snprintf(err, errlen,
                "%s:%d: %s is read by libcurl from the environment only: "
                "set it where hereproxy.fcgi starts (spawn-fcgi's "
                "environment, systemd Environment= or EnvironmentFile=)",
                origin, lineno, name);
            goto done;
        }
        if (r == 1) {
            snprintf(
                err, errlen, "%s:%d: unknown setting %s", origin, lineno, name);
            goto done;
        }
        if (r != 0) {
            snprintf(err, errlen, "%s:%d: %s", origin, lineno, msg);
            goto done;
        }
    }
    rc = 0;
done:
    free(copy);
    return rc;
}

static const char *
env_get(char *const *envp, const char *name)
{
    size_t len = strlen(name);

    for (; envp != NULL && *envp != NULL; envp++)
        if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
            return *envp + len + 1;
    return NULL;
}

/* Read a small text file whole; returns malloc'd text or NULL. */
static char *
read_small_file(
    const char *path, size_t max, char *err, size_t errlen, const char *setting)
{
    FILE *fp = fopen(path, "r");
    char *buf = NULL;
    size_t n;

    if (fp == NULL) {
        snprintf(err, errlen, "%s: cannot open %s: %s", setting, path,
            strerror(errno));
        return NULL;
    }
    if ((buf = malloc(max + 1)) == NULL) {
        snprintf(err, errlen, "%s: out of memory", setting);
        goto fail;
    }
    n = fread(buf, 1, max + 1, fp);
    if (ferror(fp) || n > max) {
        snprintf(err, errlen,
            "%s: cannot read %s (or larger than %zu "
            "bytes)",
            setting, path, max);
        goto fail;
    }
    buf[n] = '\0';
    if (strlen(buf) != n) {
        snprintf(err, errlen, "%s: %s contains a NUL byte", setting, path);
        goto fail;
    }
    fclose(fp);
    return buf;
fail:
    free(buf);
    fclose(fp);
    return NULL;
}

/*
 * Settings that may come from a file instead (container and Kubernetes
 * secrets): read when the setting itself is unset. lines: one entry a
 * line, '#' comments allowed, joined with commas (a list).
 */
static const struct setting_file {
    const char *var; /* ..._FILE */
    const char *setting;
    size_t max;
    int lines;
} files[] = {
    {"HERE_API_KEY_FILE", "HERE_API_KEY", 4096, 0},
    {"HEREPROXY_ADMIN_TOKEN_FILE", "HEREPROXY_ADMIN_TOKEN", 4096, 0},
    {"CACHE_SECRET_FILE", "CACHE_SECRET", 4096, 0},
    {"HEREPROXY_CLIENT_TOKENS_FILE", "HEREPROXY_CLIENT_TOKENS", TOKENS_TEXT_MAX,
        1},
};

/* One entry a line ('#' comment lines and blank lines allowed), as a
 * comma list. */
static void
lines_to_list(char *text)
{
    char *c;

    for (c = text; *c; c++) {
        char *l = c;

        while (*l == ' ' || *l == '\t')
            l++;
        if (*l == '#')
            while (*c && *c != '\n')
                *c++ = ' ';
        else
            while (*c && *c != '\n')
                c++;
        if (*c == '\0')
            break;
        *c = ',';
    }
    for (c = text; *c; c++)
        if (*c == '\r')
            *c = ' ';
}

static int
read_setting_file(struct settings *cfg, char *const *envp,
    const struct setting_file *f, char *err, size_t errlen)
{
    const struct setting *s = find_setting(f->setting);
    const char *path = env_get(envp, f->var);
    char msg[320], *text;
    int rc;

    if (**(char **)((char *)cfg + s->offset) != '\0' || path == NULL ||
        *path == '\0')
        return 0;
    if ((text = read_small_file(path, f->max, err, errlen, f->var)) == NULL)
        return -1;
    if (f->lines)
        lines_to_list(text);
    rc = settings_set(
        cfg, f->setting, f->lines ? text : trim(text), msg, sizeof(msg));
    if (rc != 0)
        snprintf(err, errlen, "%s %s%s: %s", f->var, path,
            f->lines ? " (entry N is line N)" : "", msg);
    /* The only copy of a secret is now the setting's. */
    explicit_bzero(text, strlen(text));
    free(text);
    return rc;
}

/*
 * HERE_CREDENTIALS_FILE: read and parsed into cfg->here_credentials, every
 * load and reload. Messages name the file and the line, never the secret.
 */
static int
read_credentials(struct settings *cfg, char *err, size_t errlen)
{
    const char *path = cfg->here_credentials_file;
    struct here_credentials *c = NULL;
    char msg[400], *text;
    int rc = -1;

    if (*path == '\0')
        return 0;
    text = read_small_file(
        path, CREDENTIALS_FILE_MAX, err, errlen, "HERE_CREDENTIALS_FILE");
    if (text == NULL)
        return -1;
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        snprintf(err, errlen, "HERE_CREDENTIALS_FILE: out of memory");
        goto done;
    }
    if (credentials_parse(text, path, c, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "HERE_CREDENTIALS_FILE: %s", msg);
        free(c);
        goto done;
    }
    cfg->here_credentials = c;
    rc = 0;
done:
    explicit_bzero(text, strlen(text));
    free(text);
    return rc;
}

int
settings_load(struct settings *cfg, char *const *envp, char *err, size_t errlen)
{
    const char *path;
    size_t i;

    if (settings_init(cfg) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if ((path = env_get(envp, "HEREPROXY_CONFIG")) != NULL && *path) {
        char *text =
            read_small_file(path, 1 << 20, err, errlen, "HEREPROXY_CONFIG");
        int rc;

        if (text == NULL)
            return -1;
        rc = settings_apply_text(cfg, text, path, err, errlen);
        free(text);
        if (rc != 0)
            return -1;
    }
    for (i = 0; i < NSETTINGS; i++) {
        const char *v = env_get(envp, settings[i].name);
        if (v != NULL &&
            settings_set(cfg, settings[i].name, v, err, errlen) != 0)
            return -1;
    }
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (read_setting_file(cfg, envp, &files[i], err, errlen) != 0)
            return -1;
    if (read_credentials(cfg, err, errlen) != 0)
        return -1;
    return settings_validate(cfg, err, errlen);
}

/*
 * Walk "a,b" (indices); entries are trimmed of blanks, empty ones skipped.
 * Calls fn for each; stops when it returns non-zero and returns that.
 */
static int
each_entry(const char *list, int (*fn)(const char *, size_t, void *), void *arg)
{
    const char *p = list;

    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *q = p;
        int rc;

        while (len > 0 && (*q == ' ' || *q == '\t')) {
            q++;
            len--;
        }
        while (len > 0 && (q[len - 1] == ' ' || q[len - 1] == '\t'))
            len--;
        if (len > 0 && (rc = fn(q, len, arg)) != 0)
            return rc;
        if (e == NULL)
            break;
        p = e + 1;
    }
    return 0;
}

static int
check_indice_entry(const char *s, size_t len, void *arg)
{
    (void)arg;
    return request_indice_valid(s, len) ? 0 : 1;
}

static int
check_style_entry(const char *s, size_t len, void *arg)
{
    (void)arg;
    return request_style_valid(s, len) ? 0 : 1;
}

int
settings_token_indice(
    const struct settings *cfg, const char *token, char *indice, size_t size)
{
    return token_table_find(cfg->client_token_table, token, indice, size);
}

int
settings_indice_allowed(const struct settings *cfg, const char *indice)
{
    return cfg->indices_allowed.n == 0 ||
        name_list_has(&cfg->indices_allowed, indice);
}

/* Long enough not to be guessed; sendable in an Authorization header. */
static int
admin_token_ok(const char *t)
{
    size_t n = strlen(t), i;

    if (n < 16 || n > 256)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)t[i] <= ' ' || (unsigned char)t[i] >= 0x7f)
            return 0;
    return 1;
}

long
settings_attempt_timeout_ms(const struct settings *cfg)
{
    if (cfg->here_attempt_timeout_ms > 0)
        return cfg->here_attempt_timeout_ms;
    return cfg->here_timeout_ms < SETTINGS_ATTEMPT_TIMEOUT_MS
        ? cfg->here_timeout_ms
        : SETTINGS_ATTEMPT_TIMEOUT_MS;
}

int
settings_validate(const struct settings *cfg, char *err, size_t errlen)
{
    if (*cfg->here_api_key != '\0' && *cfg->here_credentials_file != '\0') {
        /* Which one would the proxy use? Say so rather than pick. */
        snprintf(err, errlen,
            "HERE_API_KEY (or HERE_API_KEY_FILE) and HERE_CREDENTIALS_FILE "
            "are both set: use an API key or HERE platform credentials, "
            "not both");
        return -1;
    }
    if (*cfg->here_api_key == '\0' && *cfg->here_credentials_file == '\0') {
        snprintf(err, errlen,
            "HERE_API_KEY is not set (or set HERE_API_KEY_FILE to a file "
            "holding it, or HERE_CREDENTIALS_FILE to the "
            "credentials.properties of HERE platform OAuth credentials)");
        return -1;
    }
    if (*cfg->here_credentials_file != '\0' && cfg->here_credentials == NULL) {
        snprintf(err, errlen, "HERE_CREDENTIALS_FILE was not read");
        return -1;
    }
    if (*cfg->admin_token != '\0' && !admin_token_ok(cfg->admin_token)) {
        snprintf(err, errlen,
            "HEREPROXY_ADMIN_TOKEN: use 16 to 256 "
            "printable bytes without spaces (a long random value)");
        return -1;
    }
    if (*cfg->cache_secret != '\0' && strlen(cfg->cache_secret) < 16) {
        /* Never quote it: it is secret. */
        snprintf(err, errlen,
            "CACHE_SECRET: use at least 16 bytes (a long "
            "random value, the same on every instance)");
        return -1;
    }
    if (cfg->cache_ttl_default_s > cfg->cache_ttl_cap_s) {
        snprintf(err, errlen,
            "CACHE_TTL_DEFAULT (%ld) is larger than "
            "CACHE_TTL_CAP (%ld)",
            cfg->cache_ttl_default_s, cfg->cache_ttl_cap_s);
        return -1;
    }
    if (cfg->here_attempt_timeout_ms > cfg->here_timeout_ms) {
        snprintf(err, errlen,
            "HERE_ATTEMPT_TIMEOUT_MS (%ld) is larger than HERE_TIMEOUT_MS "
            "(%ld): one attempt cannot outlast the whole fetch",
            cfg->here_attempt_timeout_ms, cfg->here_timeout_ms);
        return -1;
    }
    if (*cfg->nginx_hits_file != '\0' && *cfg->nginx_log_file != '\0') {
        /* One way per deployment: both would count NGINX's hits twice. */
        snprintf(err, errlen,
            "NGINX_HITS_FILE and NGINX_LOG_FILE are both "
            "set: use one (NGINX would count its hits twice)");
        return -1;
    }
    if (strcmp(cfg->rate_limit_shared, "memcached") == 0 &&
        *cfg->memcached_servers == '\0') {
        snprintf(err, errlen,
            "RATE_LIMIT_SHARED=memcached needs "
            "MEMCACHED_SERVERS");
        return -1;
    }
    if (*cfg->here_ca_file != '\0') {
        FILE *fp = fopen(cfg->here_ca_file, "r");
        if (fp == NULL) {
            snprintf(err, errlen, "HERE_CA_FILE: cannot open %s: %s",
                cfg->here_ca_file, strerror(errno));
            return -1;
        }
        fclose(fp);
    }
    if (*cfg->listen != '\0') {
        struct listen_addr a;
        char why[256];

        /* Refused here, so that --check-config says so too. */
        if (listen_parse(cfg->listen, &a, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "HEREPROXY_LISTEN=%s: %s", cfg->listen, why);
            return -1;
        }
    }
    return 0;
}

void
settings_dump(const struct settings *cfg, FILE *fp)
{
    const char *base = (const char *)cfg;
    size_t i;

    for (i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        const void *slot = base + s->offset;

        switch (s->kind) {
        case CFG_SECRET:
        case CFG_TOKENS:
            fprintf(fp, "%s=%s\n", s->name,
                **(char *const *)slot ? "<redacted>" : "");
            break;
        case CFG_LONG:
        case CFG_BOOL:
            fprintf(fp, "%s=%ld\n", s->name, *(const long *)slot);
            break;
        case CFG_SIZE:
            fprintf(fp, "%s=%llu\n", s->name,
                (unsigned long long)*(const uint64_t *)slot);
            break;
        case CFG_LEVEL:
            fprintf(fp, "%s=%s\n", s->name,
                log_level_name((enum log_level) * (const long *)slot));
            break;
        default: fprintf(fp, "%s=%s\n", s->name, *(char *const *)slot); break;
        }
    }
}

int
settings_origin_allowed(const struct settings *cfg, const char *origin)
{
    return name_list_has(&cfg->origins, origin);
}

const char *
settings_here_secret(const struct settings *cfg)
{
    if (*cfg->here_api_key != '\0')
        return cfg->here_api_key;
    return cfg->here_credentials != NULL
        ? cfg->here_credentials->access_key_secret
        : "";
}

int
settings_reloadable(const char *name)
{
    const struct setting *s = find_setting(name);

    return s != NULL && s->reload == RELOAD;
}

int
settings_keep_restart_only(struct settings *next, const struct settings *cur,
    char *changed, size_t len)
{
    char *nbase = (char *)next;
    const char *cbase = (const char *)cur;
    size_t i, used = 0;
    int n = 0;

    if (len > 0)
        *changed = '\0';
    for (i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        void *nslot = nbase + s->offset;
        const void *cslot = cbase + s->offset;
        int differs;

        if (s->reload == RELOAD)
            continue;
        switch (s->kind) {
        case CFG_SIZE:
            differs = *(uint64_t *)nslot != *(const uint64_t *)cslot;
            *(uint64_t *)nslot = *(const uint64_t *)cslot;
            break;
        case CFG_LONG:
        case CFG_BOOL:
        case CFG_LEVEL:
            differs = *(long *)nslot != *(const long *)cslot;
            *(long *)nslot = *(const long *)cslot;
            break;
        default: {
            /* Set again: what it means (a parsed list, an ACL) goes too. */
            const char *keep = *(char *const *)cslot;
            char msg[64];

            differs = strcmp(*(char **)nslot, keep) != 0;
            if (differs &&
                settings_set(next, s->name, keep, msg, sizeof(msg)) != 0)
                return -1;
            break;
        }
        }
        if (differs) {
            int w;

            n++;
            if (used < len) {
                w = snprintf(changed + used, len - used, "%s%s",
                    used > 0 ? "," : "", s->name);
                if (w > 0)
                    used += (size_t)w;
            }
        }
    }
    return n;
}
