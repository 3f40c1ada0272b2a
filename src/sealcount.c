#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mac.h"
#include "mc.h"
#include "sealcount.h"

/* Racing instances each retry their gets and cas this often at most. */
#define TRIES 16
#define VALUE_MAX (24 + MAC_SEAL_LEN)

/* The count in a sealed value, or -1 when it is not one of ours. */
static int
open_count(struct mac *m, const char *key, size_t keylen, const char *val,
    size_t len, uint64_t *count)
{
    char text[24], *end;
    ssize_t n = mac_open(m, key, keylen, val, len);

    if (n <= 0 || (size_t)n >= sizeof(text))
        return -1;
    memcpy(text, val, (size_t)n);
    text[n] = '\0';
    errno = 0;
    *count = strtoull(text, &end, 10);
    return errno == 0 && *end == '\0' && text[0] != '-' ? 0 : -1;
}

enum sealcount_result
sealcount_add(struct mc *mc, struct mac *m, const char *key, size_t keylen,
    uint64_t delta, int64_t ttl_s, uint64_t *value)
{
    char val[VALUE_MAX], sealed[VALUE_MAX], text[24];
    int replaced = 0, try;

    for (try = 0; try < TRIES; try++) {
        uint64_t cas = 0, count = 0;
        size_t len = 0, slen;
        enum mc_result r =
            mc_gets(mc, key, keylen, val, sizeof(val), &len, &cas);
        int n, rc;

        if (r == MC_ERROR)
            return SEALCOUNT_ERROR;
        if (r == MC_HIT && open_count(m, key, keylen, val, len, &count) == 0)
            count += delta;
        else if (r != MC_MISS)
            count = delta, replaced = 1; /* forged: count afresh */
        else
            count = delta;
        n = snprintf(text, sizeof(text), "%" PRIu64, count);
        slen =
            mac_seal(m, key, keylen, text, (size_t)n, sealed, sizeof(sealed));
        if (slen == 0)
            return SEALCOUNT_ERROR;
        rc = r == MC_MISS ? mc_add(mc, key, keylen, sealed, slen, ttl_s)
                          : mc_cas(mc, key, keylen, sealed, slen, ttl_s, cas);
        if (rc < 0)
            return SEALCOUNT_ERROR;
        if (rc == 0) {
            *value = count;
            return replaced ? SEALCOUNT_REPLACED : SEALCOUNT_OK;
        }
        /* Another instance counted meanwhile: read again. */
    }
    return SEALCOUNT_ERROR;
}
