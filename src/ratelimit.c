#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ratelimit.h"
#include "siphash.h"
#include "util.h"

#define SHARDS 16

struct bucket {
    struct bucket *chain;       /* hash chain */
    struct bucket *prev, *next; /* LRU list, most recent first */
    uint64_t hash;
    double tokens;
    int64_t last_ms;
    size_t keylen;
    char key[];
};

struct shard {
    pthread_mutex_t lock;
    struct bucket **table;
    size_t nslots; /* a power of two */
    struct bucket *head, *tail;
    size_t count, max;
};

struct ratelimiter {
    struct shard shards[SHARDS];
};

static const struct {
    const char *name;
    long seconds;
} periods[] = {
    {"s", 1},
    {"sec", 1},
    {"second", 1},
    {"m", 60},
    {"min", 60},
    {"minute", 60},
    {"h", 3600},
    {"hour", 3600},
    {"d", 86400},
    {"day", 86400},
};

int
rate_spec_parse(
    const char *text, struct rate_spec *out, char *err, size_t errlen)
{
    char buf[64], *slash, *comma, *unit;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (text == NULL || *text == '\0' || strcmp(text, "0") == 0 ||
        strcasecmp(text, "off") == 0)
        return 0;
    if (strlen(text) >= sizeof(buf))
        goto bad;
    util_strlcpy(buf, text, sizeof(buf));
    if ((comma = strchr(buf, ',')) != NULL) {
        *comma++ = '\0';
        if (strncmp(comma, "burst=", 6) != 0 ||
            util_parse_long(comma + 6, 1, 1000000000L, &out->burst) != 0)
            goto bad;
    }
    if ((slash = strchr(buf, '/')) == NULL)
        goto bad;
    *slash = '\0';
    unit = slash + 1;
    if (util_parse_long(buf, 1, 1000000000L, &out->limit) != 0)
        goto bad;
    for (i = 0; i < sizeof(periods) / sizeof(periods[0]); i++)
        if (strcasecmp(unit, periods[i].name) == 0)
            out->period_s = periods[i].seconds;
    if (out->period_s == 0)
        goto bad;
    if (out->burst == 0)
        out->burst = out->limit;
    return 0;
bad:
    memset(out, 0, sizeof(*out));
    snprintf(err, errlen,
        "must look like 100/minute or 10/second,burst=20 "
        "(units: second, minute, hour, day), or off");
    return -1;
}

void
rate_spec_format(const struct rate_spec *spec, char *buf, size_t size)
{
    const char *unit = spec->period_s == 1 ? "second"
        : spec->period_s == 60             ? "minute"
        : spec->period_s == 3600           ? "hour"
                                           : "day";

    if (spec->limit == 0)
        snprintf(buf, size, "off");
    else if (spec->burst == spec->limit)
        snprintf(buf, size, "%ld/%s", spec->limit, unit);
    else
        snprintf(buf, size, "%ld/%s,burst=%ld", spec->limit, unit, spec->burst);
}

struct ratelimiter *
ratelimiter_new(size_t max_keys)
{
    struct ratelimiter *rl = calloc(1, sizeof(*rl));
    size_t i, per = max_keys / SHARDS + 1;

    if (rl == NULL)
        return NULL;
    for (i = 0; i < SHARDS; i++) {
        struct shard *s = &rl->shards[i];

        pthread_mutex_init(&s->lock, NULL);
        s->max = per;
        for (s->nslots = 16; s->nslots < per && s->nslots < (1u << 24);)
            s->nslots <<= 1;
        if ((s->table = calloc(s->nslots, sizeof(*s->table))) == NULL) {
            ratelimiter_free(rl);
            return NULL;
        }
    }
    return rl;
}

void
ratelimiter_free(struct ratelimiter *rl)
{
    size_t i;

    if (rl == NULL)
        return;
    for (i = 0; i < SHARDS; i++) {
        struct shard *s = &rl->shards[i];
        struct bucket *b = s->head, *next;

        for (; b != NULL; b = next) {
            next = b->next;
            free(b);
        }
        free(s->table);
        pthread_mutex_destroy(&s->lock);
    }
    free(rl);
}

static void
lru_unlink(struct shard *s, struct bucket *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        s->head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        s->tail = b->prev;
}

static void
lru_push(struct shard *s, struct bucket *b)
{
    b->prev = NULL;
    b->next = s->head;
    if (s->head)
        s->head->prev = b;
    s->head = b;
    if (s->tail == NULL)
        s->tail = b;
}

static struct bucket **
slot_of(struct shard *s, uint64_t hash, const char *key, size_t keylen)
{
    struct bucket **p = &s->table[hash & (s->nslots - 1)];

    while (*p != NULL &&
        ((*p)->hash != hash || (*p)->keylen != keylen ||
            memcmp((*p)->key, key, keylen) != 0))
        p = &(*p)->chain;
    return p;
}

static void
forget_oldest(struct shard *s)
{
    struct bucket *b = s->tail;

    *slot_of(s, b->hash, b->key, b->keylen) = b->chain;
    lru_unlink(s, b);
    s->count--;
    free(b);
}

/* Seconds, rounded up, for `tokens` to come back at the spec's rate. */
static long
seconds_for(double tokens, const struct rate_spec *spec)
{
    double s = tokens * (double)spec->period_s / (double)spec->limit;
    long whole = (long)s;

    return whole + (s > (double)whole);
}

void
ratelimiter_take(struct ratelimiter *rl, const char *key, size_t keylen,
    const struct rate_spec *spec, int64_t now_ms, struct rate_decision *out)
{
    uint64_t hash = siphash_keyed(key, keylen);
    struct shard *s = &rl->shards[hash % SHARDS];
    struct bucket **slot, *b;
    double cap = (double)spec->burst;

    memset(out, 0, sizeof(*out));
    out->allowed = 1;
    if (spec->limit <= 0)
        return;
    out->limit = spec->burst;
    pthread_mutex_lock(&s->lock);
    slot = slot_of(s, hash, key, keylen);
    if ((b = *slot) == NULL) {
        if (s->count >= s->max)
            forget_oldest(s);
        /* Allocation under the lock: rare (a new key), and bounded. */
        if ((b = malloc(sizeof(*b) + keylen)) == NULL) {
            pthread_mutex_unlock(&s->lock);
            return; /* out of memory: serve rather than refuse */
        }
        memcpy(b->key, key, keylen);
        b->keylen = keylen;
        b->hash = hash;
        b->tokens = cap;
        b->last_ms = now_ms;
        slot = slot_of(s, hash, key, keylen);
        b->chain = NULL;
        *slot = b;
        s->count++;
    } else {
        lru_unlink(s, b);
        if (now_ms > b->last_ms) {
            b->tokens += (double)(now_ms - b->last_ms) * (double)spec->limit /
                ((double)spec->period_s * 1000.0);
            if (b->tokens > cap)
                b->tokens = cap;
            b->last_ms = now_ms;
        }
        if (b->tokens > cap) /* the spec shrank since */
            b->tokens = cap;
    }
    lru_push(s, b);
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
    } else {
        out->allowed = 0;
        out->retry_after_s = seconds_for(1.0 - b->tokens, spec);
        if (out->retry_after_s < 1)
            out->retry_after_s = 1;
    }
    out->remaining = (long)b->tokens;
    out->reset_s = seconds_for(cap - b->tokens, spec);
    pthread_mutex_unlock(&s->lock);
}

size_t
ratelimiter_size(struct ratelimiter *rl)
{
    size_t i, n = 0;

    for (i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&rl->shards[i].lock);
        n += rl->shards[i].count;
        pthread_mutex_unlock(&rl->shards[i].lock);
    }
    return n;
}

static int
valid_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* Trim spaces in place; returns the start. */
static char *
trim_spaces(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    return s;
}

int
rate_overrides_parse(const char *text, int allow_burst,
    struct rate_overrides *out, char *err, size_t errlen)
{
    char *copy = NULL, *p, *item, *next;
    struct rate_override *cur = NULL;
    size_t n = 0, i, cap = 1;
    char spec_text[128], msg[160];

    memset(out, 0, sizeof(*out));
    if (text == NULL)
        return 0;
    if ((copy = strdup(text)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (p = copy; *p != '\0'; p++)
        if (*p == ',')
            cap++;
    if ((out->items = calloc(cap, sizeof(*out->items))) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    spec_text[0] = '\0';
    for (item = copy; item != NULL; item = next) {
        char *colon, *name;

        if ((next = strchr(item, ',')) != NULL)
            *next++ = '\0';
        item = trim_spaces(item);
        if (*item == '\0') {
            if (next == NULL && n == 0 && cur == NULL)
                break; /* "" or only spaces: no overrides */
            snprintf(err, errlen, "empty item");
            goto fail;
        }
        if (strncmp(item, "burst=", 6) == 0) {
            if (cur == NULL) {
                snprintf(err, errlen, "'%s' follows no name:spec", item);
                goto fail;
            }
            if (!allow_burst) {
                snprintf(err, errlen, "%s: a quota takes no burst", cur->name);
                goto fail;
            }
            if (strlen(spec_text) + 1 + strlen(item) >= sizeof(spec_text)) {
                snprintf(err, errlen, "%s: spec too long", cur->name);
                goto fail;
            }
            strcat(spec_text, ",");
            strcat(spec_text, item);
            if (rate_spec_parse(spec_text, &cur->spec, msg, sizeof(msg)) != 0) {
                snprintf(err, errlen, "%s: %s", cur->name, msg);
                goto fail;
            }
            continue;
        }
        if ((colon = strchr(item, ':')) == NULL) {
            snprintf(err, errlen, "'%.80s' is not name:spec", item);
            goto fail;
        }
        *colon = '\0';
        name = trim_spaces(item);
        if (*name == '\0' || strlen(name) > RATE_NAME_MAX) {
            snprintf(err, errlen, "a name must be 1 to %d characters",
                RATE_NAME_MAX);
            goto fail;
        }
        for (p = name; *p != '\0'; p++)
            if (!valid_name_char(*p)) {
                snprintf(err, errlen,
                    "'%.80s': names are letters, digits "
                    "and _ . -",
                    name);
                goto fail;
            }
        for (i = 0; i < n; i++)
            if (strcmp(out->items[i].name, name) == 0) {
                snprintf(err, errlen, "%s given twice", name);
                goto fail;
            }
        cur = &out->items[n++];
        util_strlcpy(cur->name, name, sizeof(cur->name));
        util_strlcpy(spec_text, trim_spaces(colon + 1), sizeof(spec_text));
        if (*spec_text == '\0') {
            snprintf(err, errlen, "%s: no spec after ':'", name);
            goto fail;
        }
        if (rate_spec_parse(spec_text, &cur->spec, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "%s: %s", name, msg);
            goto fail;
        }
    }
    out->n = n;
    free(copy);
    return 0;
fail:
    free(copy);
    rate_overrides_free(out);
    return -1;
}

void
rate_overrides_free(struct rate_overrides *o)
{
    free(o->items);
    o->items = NULL;
    o->n = 0;
}

const struct rate_spec *
rate_overrides_find(const struct rate_overrides *o, const char *name,
    const struct rate_spec *def)
{
    size_t i;

    for (i = 0; i < o->n; i++)
        if (strcmp(o->items[i].name, name) == 0)
            return &o->items[i].spec;
    return def;
}
