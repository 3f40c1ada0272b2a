#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "oauth.h"
#include "util.h"

/* Parameters one base string may hold: the query's, the body's, oauth_. */
#define PARAMS_MAX 64

static int
unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

long
oauth_encode(const char *in, size_t len, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];

        if (unreserved(c)) {
            if (o + 1 >= size)
                return -1;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= size)
                return -1;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (o >= size)
        return -1;
    out[o] = '\0';
    return (long)o;
}

/* Append encode(s) to b. 0 or -1. */
static int
append_encoded(struct dynbuf *b, const char *s, size_t len)
{
    char tmp[3 * 256 + 1];

    while (len > 0) {
        size_t n = len < 256 ? len : 256;
        long w = oauth_encode(s, n, tmp, sizeof(tmp));

        if (w < 0 || dynbuf_append(b, tmp, (size_t)w) != 0)
            return -1;
        s += n;
        len -= n;
    }
    return 0;
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * Decode a form-encoded name or value (section 3.4.1.3.1 by way of HTML
 * 4.01 17.13.4: '+' is a space, %XX a byte) into out. -1 on a bad escape.
 */
static int
form_decode(const char *s, size_t len, char *out)
{
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%') {
            int hi, lo;

            if (i + 2 >= len || (hi = hexval(s[i + 1])) < 0 ||
                (lo = hexval(s[i + 2])) < 0)
                return -1;
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return (int)o;
}

int
oauth_base_uri(
    const char *url, char *out, size_t size, char *err, size_t errlen)
{
    const char *host, *end, *port = NULL, *path;
    size_t hostlen, i, o;
    int https;

    if (strncasecmp(url, "http://", 7) == 0) {
        https = 0;
        host = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        https = 1;
        host = url + 8;
    } else {
        snprintf(err, errlen, "not an http:// or https:// URL");
        return -1;
    }
    if (strchr(url, '#') != NULL) {
        snprintf(err, errlen, "a URL with a fragment");
        return -1;
    }
    end = host + strcspn(host, "/?");
    for (i = 0; host + i < end; i++) {
        unsigned char c = (unsigned char)host[i];

        if (c <= ' ' || c >= 0x7f || c == '@') {
            snprintf(err, errlen, "a URL with user information or spaces");
            return -1;
        }
    }
    /* The port follows the last ':' (after the ']' of an IPv6 literal). */
    for (i = (size_t)(end - host); i > 0 && host[i - 1] != ']'; i--)
        if (host[i - 1] == ':') {
            port = host + i;
            break;
        }
    hostlen = port != NULL ? (size_t)(port - 1 - host) : (size_t)(end - host);
    if (hostlen == 0) {
        snprintf(err, errlen, "a URL without a host");
        return -1;
    }
    if (port != NULL) {
        char digits[8];
        long p;
        size_t plen = (size_t)(end - port);

        if (plen == 0 || plen >= sizeof(digits)) {
            snprintf(err, errlen, "a URL with a bad port");
            return -1;
        }
        memcpy(digits, port, plen);
        digits[plen] = '\0';
        if (util_parse_long(digits, 1, 65535, &p) != 0) {
            snprintf(err, errlen, "a URL with a bad port");
            return -1;
        }
        if (p == (https ? 443 : 80))
            port = NULL; /* the default is left out */
    }
    path = end;
    o = (size_t)snprintf(out, size, "%s://", https ? "https" : "http");
    if (o >= size)
        goto small;
    if (o + hostlen >= size)
        goto small;
    for (i = 0; i < hostlen; i++)
        out[o++] = (char)tolower((unsigned char)host[i]);
    if (port != NULL) {
        size_t plen = (size_t)(path - port);

        if (o + 1 + plen >= size)
            goto small;
        out[o++] = ':';
        memcpy(out + o, port, plen);
        o += plen;
    }
    i = strcspn(path, "?");
    if (i == 0) {
        /* An empty path is "/" (RFC 3986 6.2.3). */
        path = "/";
        i = 1;
    }
    if (o + i >= size)
        goto small;
    memcpy(out + o, path, i);
    o += i;
    out[o] = '\0';
    return 0;
small:
    snprintf(err, errlen, "a URL longer than %zu bytes", size - 1);
    return -1;
}

/* One parameter encoded: "name=value" sorts as name, then value. */
struct encoded {
    char *name;
    char *value;
};

static int
cmp_encoded(const void *a, const void *b)
{
    const struct encoded *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c != 0 ? c : strcmp(x->value, y->value);
}

static char *
encode_dup(const char *s, size_t len)
{
    size_t size = 3 * len + 1;
    char *out = malloc(size);

    if (out != NULL && oauth_encode(s, len, out, size) < 0) {
        free(out);
        out = NULL;
    }
    return out;
}

/* Add name and value, decoded, to v encoded. 0 or -1. */
static int
add_param(struct encoded *v, size_t *n, const char *name, size_t nlen,
    const char *value, size_t vlen)
{
    if (*n >= PARAMS_MAX)
        return -1;
    v[*n].name = encode_dup(name, nlen);
    v[*n].value = encode_dup(value, vlen);
    if (v[*n].name == NULL || v[*n].value == NULL) {
        free(v[*n].name);
        free(v[*n].value);
        return -1;
    }
    (*n)++;
    return 0;
}

/* The query of url as decoded parameters, added to v. 0 or -1. */
static int
add_query(
    struct encoded *v, size_t *n, const char *url, char *err, size_t errlen)
{
    const char *q = strchr(url, '?'), *p;
    char name[OAUTH_TEXT_MAX], value[OAUTH_TEXT_MAX];

    if (q == NULL)
        return 0;
    for (p = q + 1; *p != '\0';) {
        size_t len = strcspn(p, "&"), nlen;
        const char *eq = memchr(p, '=', len);
        int dn, dv;

        nlen = eq != NULL ? (size_t)(eq - p) : len;
        if (len > 0) {
            dn = form_decode(p, nlen, name);
            dv = eq != NULL ? form_decode(eq + 1, len - nlen - 1, value)
                            : form_decode("", 0, value);
            if (dn < 0 || dv < 0) {
                snprintf(err, errlen, "a bad %%-escape in the URL's query");
                return -1;
            }
            if (add_param(v, n, name, (size_t)dn, value, (size_t)dv) != 0) {
                snprintf(err, errlen, "too many parameters");
                return -1;
            }
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return 0;
}

char *
oauth_base_string(const char *method, const char *url,
    const struct oauth_param *params, size_t n, char *err, size_t errlen)
{
    struct encoded v[PARAMS_MAX];
    char uri[OAUTH_TEXT_MAX];
    struct dynbuf b, ps;
    size_t nv = 0, i;
    char *out = NULL;

    dynbuf_init(&b, 4 * OAUTH_TEXT_MAX);
    dynbuf_init(&ps, 4 * OAUTH_TEXT_MAX);
    if (strlen(url) >= OAUTH_TEXT_MAX) {
        snprintf(err, errlen, "a URL longer than %d bytes", OAUTH_TEXT_MAX - 1);
        goto done;
    }
    if (oauth_base_uri(url, uri, sizeof(uri), err, errlen) != 0 ||
        add_query(v, &nv, url, err, errlen) != 0)
        goto done;
    for (i = 0; i < n; i++) {
        if (add_param(v, &nv, params[i].name, strlen(params[i].name),
                params[i].value, strlen(params[i].value)) != 0) {
            snprintf(err, errlen, "too many parameters, or out of memory");
            goto done;
        }
    }
    qsort(v, nv, sizeof(v[0]), cmp_encoded);
    /* The parameter string, then the whole base string encoding it. */
    for (i = 0; i < nv; i++)
        if ((i > 0 && dynbuf_append(&ps, "&", 1) != 0) ||
            dynbuf_append(&ps, v[i].name, strlen(v[i].name)) != 0 ||
            dynbuf_append(&ps, "=", 1) != 0 ||
            dynbuf_append(&ps, v[i].value, strlen(v[i].value)) != 0)
            goto long_text;
    for (i = 0; method[i] != '\0'; i++) {
        char c = (char)toupper((unsigned char)method[i]);

        if (dynbuf_append(&b, &c, 1) != 0)
            goto long_text;
    }
    if (dynbuf_append(&b, "&", 1) != 0 ||
        append_encoded(&b, uri, strlen(uri)) != 0 ||
        dynbuf_append(&b, "&", 1) != 0 ||
        (ps.len > 0 && append_encoded(&b, ps.data, ps.len) != 0) ||
        dynbuf_append(&b, "", 1) != 0)
        goto long_text;
    out = b.data;
    b.data = NULL;
    goto done;
long_text:
    snprintf(err, errlen, "the base string is too long, or out of memory");
done:
    for (i = 0; i < nv; i++) {
        free(v[i].name);
        free(v[i].value);
    }
    dynbuf_cleanup(&b);
    dynbuf_cleanup(&ps);
    return out;
}

int
oauth_signature(enum oauth_method m, const char *base,
    const char *consumer_secret, const char *token_secret, char *out,
    size_t size)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char key[2 * 3 * 512 + 2];
    long a, b = 0;
    int rc = -1;

    a = oauth_encode(
        consumer_secret, strlen(consumer_secret), key, sizeof(key) / 2);
    if (a < 0)
        goto done;
    key[a] = '&';
    if (token_secret != NULL &&
        (b = oauth_encode(token_secret, strlen(token_secret), key + a + 1,
             sizeof(key) - (size_t)a - 1)) < 0)
        goto done;
    if (HMAC(m == OAUTH_HMAC_SHA1 ? EVP_sha1() : EVP_sha256(), key,
            (int)(a + 1 + b), (const unsigned char *)base, strlen(base), mac,
            &maclen) == NULL)
        goto done;
    /* base64 of 32 bytes is 44 characters and a NUL. */
    if (size < 4 * ((maclen + 2) / 3) + 1)
        goto done;
    EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen);
    rc = 0;
done:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

/* Append ", name=\"encode(value)\"" (no comma first) to out at *o. */
static int
header_param(
    char *out, size_t size, size_t *o, const char *name, const char *value)
{
    int w = snprintf(out + *o, size - *o, "%s%s=\"", *o > 6 ? ", " : "", name);
    long e;

    if (w < 0 || (size_t)w >= size - *o)
        return -1;
    *o += (size_t)w;
    if ((e = oauth_encode(value, strlen(value), out + *o, size - *o)) < 0)
        return -1;
    *o += (size_t)e;
    if (*o + 2 > size - 1)
        return -1;
    out[(*o)++] = '"';
    out[*o] = '\0';
    return 0;
}

int
oauth_authorization(const struct oauth_request *r, char *out, size_t size,
    char **base, char *err, size_t errlen)
{
    struct oauth_param p[PARAMS_MAX];
    const char *method_name =
        r->method_name == OAUTH_HMAC_SHA1 ? "HMAC-SHA1" : "HMAC-SHA256";
    char signature[OAUTH_SIGNATURE_SIZE];
    char *text = NULL;
    size_t n = 0, i, o;
    int rc = -1;

    if (base != NULL)
        *base = NULL;
    if (r->nbody > PARAMS_MAX - 8) {
        snprintf(err, errlen, "too many parameters");
        return -1;
    }
    p[n++] = (struct oauth_param){"oauth_consumer_key", r->consumer_key};
    p[n++] = (struct oauth_param){"oauth_nonce", r->nonce};
    p[n++] = (struct oauth_param){"oauth_signature_method", method_name};
    p[n++] = (struct oauth_param){"oauth_timestamp", r->timestamp};
    if (r->token != NULL)
        p[n++] = (struct oauth_param){"oauth_token", r->token};
    p[n++] = (struct oauth_param){"oauth_version", "1.0"};
    for (i = 0; i < r->nbody; i++)
        p[n++] = r->body[i];
    text = oauth_base_string(r->http_method, r->url, p, n, err, errlen);
    if (text == NULL)
        return -1;
    if (oauth_signature(r->method_name, text, r->consumer_secret,
            r->token_secret, signature, sizeof(signature)) != 0) {
        snprintf(err, errlen, "cannot compute the HMAC");
        goto done;
    }
    if (size < 7)
        goto small;
    memcpy(out, "OAuth ", 7);
    o = 6;
    if (header_param(out, size, &o, "oauth_consumer_key", r->consumer_key) ||
        header_param(out, size, &o, "oauth_nonce", r->nonce) ||
        header_param(out, size, &o, "oauth_signature", signature) ||
        header_param(out, size, &o, "oauth_signature_method", method_name) ||
        header_param(out, size, &o, "oauth_timestamp", r->timestamp) ||
        (r->token != NULL &&
            header_param(out, size, &o, "oauth_token", r->token)) ||
        header_param(out, size, &o, "oauth_version", "1.0"))
        goto small;
    rc = 0;
    goto done;
small:
    snprintf(err, errlen, "the Authorization header is too long");
done:
    if (rc == 0 && base != NULL) {
        *base = text;
        text = NULL;
    }
    free(text);
    return rc;
}

long
oauth_form(const struct oauth_param *params, size_t n, char *out, size_t size)
{
    size_t i, o = 0;

    if (size == 0)
        return -1;
    out[0] = '\0';
    for (i = 0; i < n; i++) {
        long w;

        if (i > 0) {
            if (o + 1 >= size)
                return -1;
            out[o++] = '&';
        }
        w = oauth_encode(
            params[i].name, strlen(params[i].name), out + o, size - o);
        if (w < 0)
            return -1;
        o += (size_t)w;
        if (o + 1 >= size)
            return -1;
        out[o++] = '=';
        w = oauth_encode(
            params[i].value, strlen(params[i].value), out + o, size - o);
        if (w < 0)
            return -1;
        o += (size_t)w;
    }
    out[o] = '\0';
    return (long)o;
}

int
oauth_nonce(char *out, size_t len)
{
    static const char chars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[64];
    size_t i;

    if (len > sizeof(rnd) || RAND_bytes(rnd, (int)len) != 1)
        return -1;
    /* 62 characters: 256 % 62 skews a little; a nonce needs uniqueness. */
    for (i = 0; i < len; i++)
        out[i] = chars[rnd[i] % (sizeof(chars) - 1)];
    out[len] = '\0';
    return 0;
}
