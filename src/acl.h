#ifndef HEREPROXY_ACL_H
#define HEREPROXY_ACL_H

#include <stddef.h>

/*
 * Address allow-lists (METRICS_ALLOW): who may read /metrics. Immutable
 * after acl_parse, so any number of threads may call acl_allows at once.
 */

struct acl;

/*
 * Parse spec: a comma-separated list (spaces around items ignored) of
 * IPv4 or IPv6 addresses, CIDRs (10.0.0.0/8, fd00::/8), and the words
 * "loopback" (127.0.0.0/8 and ::1) and "any" (every address), in any
 * case. A CIDR with bits set past its prefix is refused rather than
 * guessed at. IPv4-mapped IPv6 entries (::ffff:10.0.0.0/104) match the
 * IPv4 addresses. Returns 0 and sets *out (free with acl_free), or -1 with a
 * message naming the bad item in err (NUL-terminated, if errlen > 0) and
 * *out untouched.
 */
int acl_parse(struct acl **out, const char *spec, char *err, size_t errlen);

/*
 * 1 when addr (a REMOTE_ADDR string: dotted IPv4, IPv6, IPv4-mapped IPv6
 * such as ::ffff:127.0.0.1, an optional %zone is ignored) matches an
 * entry, else 0. A NULL acl, a NULL or unparsable addr never matches.
 */
int acl_allows(const struct acl *acl, const char *addr);

void acl_free(struct acl *acl);

#endif
