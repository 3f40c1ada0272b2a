#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include "credentials.h"
#include "oauth.h"

/* The keys read, where they go, and their bounds. */
enum which { K_ID, K_SECRET, K_URL, K_CLIENT, K_USER, K_SCOPE, K_COUNT };

#define KEY(member) offsetof(struct here_credentials, member)

static const struct key {
    const char *name;
    size_t offset;
    size_t max;
    int required;
} keys[K_COUNT] = {
    [K_ID] = {"here.access.key.id", KEY(access_key_id), CREDENTIALS_ID_MAX, 1},
    [K_SECRET] = {"here.access.key.secret", KEY(access_key_secret),
        CREDENTIALS_SECRET_MAX, 1},
    [K_URL] = {"here.token.endpoint.url", KEY(token_url), CREDENTIALS_URL_MAX,
        1},
    [K_CLIENT] = {"here.client.id", KEY(client_id), CREDENTIALS_ID_MAX, 0},
    [K_USER] = {"here.user.id", KEY(user_id), CREDENTIALS_ID_MAX, 0},
    [K_SCOPE] = {"here.token.scope", KEY(scope), CREDENTIALS_URL_MAX, 0},
};

static char **
slot(struct here_credentials *c, int k)
{
    return (char **)((char *)c + keys[k].offset);
}

static const char *
value_of(const struct here_credentials *c, int k)
{
    return *(char *const *)((const char *)c + keys[k].offset);
}

static void
wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void
credentials_cleanup(struct here_credentials *c)
{
    int k;

    for (k = 0; k < K_COUNT; k++) {
        char **s = slot(c, k);

        wipe_free(*s);
        *s = NULL;
    }
}

static int
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\f';
}

/* An address of this host: the only place plain http:// may go. */
static int
loopback_host(const char *url)
{
    const char *host = strstr(url, "://") + 3;
    size_t len = strcspn(host, ":/?");
    char name[64];
    struct in_addr a4;

    if (*host == '[')
        return strncmp(host, "[::1]", 5) == 0;
    if (len == 0 || len >= sizeof(name))
        return 0;
    memcpy(name, host, len);
    name[len] = '\0';
    if (strcasecmp(name, "localhost") == 0)
        return 1;
    return inet_pton(AF_INET, name, &a4) == 1 &&
        (ntohl(a4.s_addr) >> 24) == 127;
}

/* What is wrong with a value, or NULL. Never quotes it. */
static const char *
value_problem(enum which k, const char *v)
{
    size_t len = strlen(v), i;
    char err[160], uri[CREDENTIALS_URL_MAX + 1];

    if (len == 0)
        return "is empty";
    if (len > keys[k].max)
        return "is too long";
    for (i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e)
            return "holds a space, a control byte or a non-ASCII byte";
    if (k != K_URL)
        return NULL;
    if (oauth_base_uri(v, uri, sizeof(uri), err, sizeof(err)) != 0)
        return "is not an http:// or https:// URL the proxy can sign for";
    if (strncasecmp(v, "https://", 8) != 0 && !loopback_host(v))
        return "must be https:// (plain http:// only to a loopback address)";
    return NULL;
}

int
credentials_parse(const char *text, const char *origin,
    struct here_credentials *c, char *err, size_t errlen)
{
    struct here_credentials out;
    int first[K_COUNT] = {0};
    const char *line = text;
    int lineno = 0, k, rc = -1;

    memset(&out, 0, sizeof(out));
    while (*line != '\0') {
        size_t len = strcspn(line, "\n"), i = 0, klen, vstart, vend;
        enum which which = K_COUNT;

        lineno++;
        vend = len;
        while (vend > 0 && (is_blank(line[vend - 1]) || line[vend - 1] == '\r'))
            vend--;
        while (i < vend && is_blank(line[i]))
            i++;
        if (i == vend || line[i] == '#' || line[i] == '!')
            goto next;
        if (memchr(line, '\\', vend) != NULL) {
            snprintf(err, errlen,
                "%s:%d: backslash escapes and continued lines are not "
                "supported",
                origin, lineno);
            goto fail;
        }
        for (vstart = i; vstart < vend; vstart++)
            if ((unsigned char)line[vstart] < 0x20 ||
                (unsigned char)line[vstart] > 0x7e) {
                if (line[vstart] == '\t')
                    continue;
                snprintf(err, errlen,
                    "%s:%d: a control byte or a non-ASCII byte", origin,
                    lineno);
                goto fail;
            }
        klen = i;
        while (klen < vend && !is_blank(line[klen]) && line[klen] != '=' &&
            line[klen] != ':')
            klen++;
        vstart = klen;
        while (vstart < vend && is_blank(line[vstart]))
            vstart++;
        if (vstart < vend && (line[vstart] == '=' || line[vstart] == ':'))
            vstart++;
        while (vstart < vend && is_blank(line[vstart]))
            vstart++;
        if (klen == i) {
            snprintf(
                err, errlen, "%s:%d: expected key = value", origin, lineno);
            goto fail;
        }
        for (k = 0; k < K_COUNT; k++)
            if (strlen(keys[k].name) == klen - i &&
                strncmp(line + i, keys[k].name, klen - i) == 0)
                which = k;
        if (which == K_COUNT)
            goto next; /* a key the proxy does not use */
        if (first[which] != 0) {
            snprintf(err, errlen, "%s:%d: %s is set again (first on line %d)",
                origin, lineno, keys[which].name, first[which]);
            goto fail;
        }
        first[which] = lineno;
        if ((*slot(&out, which) = strndup(line + vstart, vend - vstart)) ==
            NULL) {
            snprintf(err, errlen, "%s: out of memory", origin);
            goto fail;
        }
        {
            const char *why = value_problem(which, *slot(&out, which));

            if (why != NULL) {
                snprintf(err, errlen, "%s:%d: %s %s", origin, lineno,
                    keys[which].name, why);
                goto fail;
            }
        }
next:
        line += len;
        if (*line == '\n')
            line++;
    }
    for (k = 0; k < K_COUNT; k++) {
        if (*slot(&out, k) != NULL)
            continue;
        if (keys[k].required) {
            snprintf(err, errlen,
                "%s: no %s (is it HERE's credentials.properties?)", origin,
                keys[k].name);
            goto fail;
        }
        if ((*slot(&out, k) = strdup("")) == NULL) {
            snprintf(err, errlen, "%s: out of memory", origin);
            goto fail;
        }
    }
    *c = out;
    return 0;
fail:
    credentials_cleanup(&out);
    return rc;
}

int
credentials_equal(
    const struct here_credentials *a, const struct here_credentials *b)
{
    int k;

    for (k = 0; k < K_COUNT; k++) {
        const char *x = value_of(a, k), *y = value_of(b, k);

        if ((x == NULL) != (y == NULL) || (x != NULL && strcmp(x, y) != 0))
            return 0;
    }
    return 1;
}
