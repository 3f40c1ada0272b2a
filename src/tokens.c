#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "siphash.h"
#include "tokens.h"
#include "request.h"
#include "util.h"

struct token_entry {
    uint64_t hash;
    const char *token;  /* in the table's text */
    const char *indice; /* in the table's text */
    size_t number;      /* its place in the list, for messages */
};

struct token_table {
    struct token_entry *entries;
    size_t count;
    uint32_t *slots; /* entry index + 1; 0: empty (linear probing) */
    size_t mask;
    char *text; /* "token\0indice\0" for every entry */
    size_t text_size;
};

/* A token: 1 to TOKEN_MAX printable ASCII bytes other than ':' and ','. */
static int
token_ok(const char *s, size_t len)
{
    size_t i;

    if (len < 1 || len > TOKEN_MAX)
        return 0;
    for (i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == ':' || s[i] == ',')
            return 0;
    return 1;
}

/*
 * The keyed hash of s: SipHash-2-4 under the process key (siphash.h), which
 * no client can compute, so none can pick tokens that collide.
 */
static uint64_t
token_hash(const char *s, size_t len)
{
    return siphash_keyed(s, len);
}

/* Enter entry i; -1 when its token is already there. */
static int
insert(struct token_table *t, size_t i)
{
    const struct token_entry *e = &t->entries[i];
    size_t s = (size_t)e->hash & t->mask;

    while (t->slots[s] != 0) {
        const struct token_entry *o = &t->entries[t->slots[s] - 1];

        if (o->hash == e->hash && strcmp(o->token, e->token) == 0)
            return -1;
        s = (s + 1) & t->mask;
    }
    t->slots[s] = (uint32_t)(i + 1);
    return 0;
}

int
token_table_parse(
    const char *list, struct token_table **out, char *err, size_t errlen)
{
    struct token_table *t = NULL;
    const char *p;
    size_t upper = 1, nslots = 8, used = 0, number = 0, i;

    for (p = list; *p != '\0'; p++)
        upper += *p == ',';
    if ((t = calloc(1, sizeof(*t))) == NULL)
        goto oom;
    t->text_size = strlen(list) + 2;
    if ((t->text = malloc(t->text_size)) == NULL ||
        (t->entries = calloc(upper, sizeof(*t->entries))) == NULL)
        goto oom;
    /* Walk the entries: validate, copy as "token\0indice\0". */
    for (p = list; *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        const char *q = p, *colon;
        size_t tlen;

        while (len > 0 && (*q == ' ' || *q == '\t')) {
            q++;
            len--;
        }
        while (len > 0 && (q[len - 1] == ' ' || q[len - 1] == '\t'))
            len--;
        /* Empty places count: in a tokens file, entry N is line N. */
        number++;
        if (len > 0) {
            colon = memchr(q, ':', len);
            tlen = colon != NULL ? (size_t)(colon - q) : 0;
            /* Never quote the entry: it is secret. */
            if (colon == NULL || !token_ok(q, tlen) ||
                !request_indice_valid(colon + 1, len - tlen - 1)) {
                snprintf(err, errlen,
                    "entry %zu must be TOKEN:INDICE (a "
                    "token of 1 to %d printable bytes without ':' or ','; "
                    "an indice of 1 to %d of A-Z a-z 0-9 _ . -)",
                    number, TOKEN_MAX, TOKEN_INDICE_MAX);
                goto fail;
            }
            memcpy(t->text + used, q, len);
            t->text[used + tlen] = '\0';
            t->text[used + len] = '\0';
            t->entries[t->count].token = t->text + used;
            t->entries[t->count].indice = t->text + used + tlen + 1;
            t->entries[t->count].number = number;
            t->count++;
            used += len + 1;
        }
        if (e == NULL)
            break;
        p = e + 1;
    }
    if (t->count == 0) {
        token_table_free(t);
        *out = NULL;
        return 0;
    }
    if (t->count >= UINT32_MAX / 2) {
        snprintf(err, errlen, "too many tokens");
        goto fail;
    }
    while (nslots < 2 * t->count)
        nslots *= 2;
    if ((t->slots = calloc(nslots, sizeof(*t->slots))) == NULL)
        goto oom;
    t->mask = nslots - 1;
    for (i = 0; i < t->count; i++) {
        struct token_entry *en = &t->entries[i];

        en->hash = token_hash(en->token, strlen(en->token));
        if (insert(t, i) != 0) {
            snprintf(err, errlen,
                "entry %zu repeats the token of an "
                "earlier entry: each token must be unique",
                en->number);
            goto fail;
        }
    }
    *out = t;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    token_table_free(t);
    return -1;
}

int
token_table_find(
    const struct token_table *t, const char *token, char *indice, size_t size)
{
    uint64_t h;
    size_t len, s;

    if (t == NULL || token == NULL || size == 0)
        return 0;
    /* No entry holds a longer token: nothing to hash. */
    if ((len = strlen(token)) == 0 || len > TOKEN_MAX)
        return 0;
    h = token_hash(token, len);
    /*
     * The keyed hash picks the candidate; an attacker who cannot compute it
     * learns nothing from where the probe stops. The candidate is then
     * compared in constant time, whatever its bytes.
     */
    for (s = (size_t)h & t->mask; t->slots[s] != 0; s = (s + 1) & t->mask) {
        const struct token_entry *e = &t->entries[t->slots[s] - 1];

        if (e->hash == h && util_consttime_equal(e->token, token)) {
            util_strlcpy(indice, e->indice, size);
            return 1;
        }
    }
    return 0;
}

size_t
token_table_count(const struct token_table *t)
{
    return t != NULL ? t->count : 0;
}

void
token_table_free(struct token_table *t)
{
    if (t == NULL)
        return;
    if (t->text != NULL)
        OPENSSL_cleanse(t->text, t->text_size);
    free(t->text);
    free(t->entries);
    free(t->slots);
    free(t);
}
