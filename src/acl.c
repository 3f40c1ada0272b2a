#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acl.h"
#include "util.h"

/* An item longer than any address with a prefix is wrong anyway. */
#define ITEM_MAX 64
#define ACL_MAX_RULES 1024

/*
 * Every rule is kept as IPv6: IPv4 as ::ffff:a.b.c.d with its prefix
 * plus 96, so that an IPv4 client and its mapped form match alike.
 */
struct rule {
    unsigned char addr[16];
    unsigned prefix; /* 0..128 */
};

struct acl {
    size_t n;
    struct rule rules[];
};

static const unsigned char v4mapped[12] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Parse an address without prefix; *is_v4 says which family it was. */
static int
parse_addr(const char *s, unsigned char addr[16], int *is_v4)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, s, &a4) == 1) {
        memcpy(addr, v4mapped, 12);
        memcpy(addr + 12, &a4, 4);
        *is_v4 = 1;
        return 0;
    }
    if (inet_pton(AF_INET6, s, &a6) == 1) {
        memcpy(addr, &a6, 16);
        *is_v4 = memcmp(addr, v4mapped, 12) == 0;
        return 0;
    }
    return -1;
}

static int
prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;

    if (memcmp(a, b, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((a[full] ^ b[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* 1 when bits past the prefix are set. */
static int
host_bits_set(const unsigned char *a, unsigned bits)
{
    unsigned i;

    for (i = bits; i < 128; i++)
        if (a[i / 8] & (0x80 >> (i % 8)))
            return 1;
    return 0;
}

static int
add_rule(struct acl *acl, const char *addr, unsigned prefix)
{
    int is_v4;

    if (parse_addr(addr, acl->rules[acl->n].addr, &is_v4) != 0)
        return -1;
    acl->rules[acl->n].prefix = prefix;
    acl->n++;
    return 0;
}

/* One list item into acl; -1 with err set. */
static int
parse_item(struct acl *acl, const char *item, char *err, size_t errlen)
{
    char buf[ITEM_MAX + 1];
    char *slash;
    struct rule *r = &acl->rules[acl->n];
    long prefix;
    int is_v4;

    if (strcasecmp(item, "any") == 0) {
        /* ::/0 covers the mapped IPv4 space too. */
        memset(r, 0, sizeof(*r));
        acl->n++;
        return 0;
    }
    if (strcasecmp(item, "loopback") == 0) {
        add_rule(acl, "127.0.0.0", 96 + 8);
        add_rule(acl, "::1", 128);
        return 0;
    }
    if (util_strlcpy(buf, item, sizeof(buf)) >= sizeof(buf)) {
        snprintf(
            err, errlen, "'%.*s...': too long for an address", ITEM_MAX, item);
        return -1;
    }
    if ((slash = strchr(buf, '/')) != NULL)
        *slash = '\0';
    if (parse_addr(buf, r->addr, &is_v4) != 0) {
        snprintf(err, errlen,
            "'%s': not an IPv4 or IPv6 address, CIDR, "
            "'loopback' or 'any'",
            item);
        return -1;
    }
    if (slash == NULL) {
        r->prefix = 128;
    } else {
        /* An IPv4 prefix counts the 32 bits after the mapped prefix. */
        long max = is_v4 && strchr(buf, ':') == NULL ? 32 : 128;
        if (util_parse_long(slash + 1, 0, max, &prefix) != 0) {
            snprintf(err, errlen, "'%s': the prefix length must be 0 to %ld",
                item, max);
            return -1;
        }
        r->prefix = (unsigned)prefix + (max == 32 ? 96 : 0);
        if (host_bits_set(r->addr, r->prefix)) {
            snprintf(err, errlen,
                "'%s': address has bits set past the "
                "/%ld prefix",
                item, prefix);
            return -1;
        }
    }
    acl->n++;
    return 0;
}

int
acl_parse(struct acl **out, const char *spec, char *err, size_t errlen)
{
    struct acl *acl = NULL;
    char *copy = NULL, *item, *next, *end;
    size_t items = 1;
    const char *p;

    if (errlen > 0)
        err[0] = '\0';
    if (spec == NULL)
        spec = "";
    for (p = spec; *p != '\0'; p++)
        items += *p == ',';
    if (items > ACL_MAX_RULES / 2) {
        snprintf(err, errlen, "more than %d entries", ACL_MAX_RULES / 2);
        goto fail;
    }
    /* "loopback" is two rules; nothing else is more than one. */
    acl = calloc(1, sizeof(*acl) + 2 * items * sizeof(acl->rules[0]));
    copy = strdup(spec);
    if (acl == NULL || copy == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (item = copy; item != NULL; item = next) {
        if ((next = strchr(item, ',')) != NULL)
            *next++ = '\0';
        while (*item == ' ' || *item == '\t')
            item++;
        end = item + strlen(item);
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*item == '\0') {
            snprintf(err, errlen,
                "empty entry in '%s' (use a comma "
                "between addresses, and 'loopback' or 'any' for the "
                "usual lists)",
                spec);
            goto fail;
        }
        if (parse_item(acl, item, err, errlen) != 0)
            goto fail;
    }
    free(copy);
    *out = acl;
    return 0;
fail:
    free(copy);
    free(acl);
    return -1;
}

int
acl_allows(const struct acl *acl, const char *addr)
{
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char a[16];
    char *zone;
    size_t i;
    int is_v4;

    if (acl == NULL || addr == NULL)
        return 0;
    if (util_strlcpy(buf, addr, sizeof(buf)) >= sizeof(buf))
        return 0;
    /* fe80::1%eth0: the zone says which link, not who. */
    if ((zone = strchr(buf, '%')) != NULL)
        *zone = '\0';
    if (parse_addr(buf, a, &is_v4) != 0)
        return 0;
    for (i = 0; i < acl->n; i++)
        if (prefix_match(a, acl->rules[i].addr, acl->rules[i].prefix))
            return 1;
    return 0;
}

void
acl_free(struct acl *acl)
{
    free(acl);
}
