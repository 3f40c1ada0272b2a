/*
 * response_etag_matches() with both the If-None-Match value and the
 * stored ETag from the input: the If-None-Match value up to the first NUL
 * byte, the ETag after it (up to the next NUL).
 *
 * Invariants: the answer is 0 or 1; an empty ETag never matches; when both
 * are well-formed (RFC 9110 8.8.3 and 13.1.2: "*" or a list of entity-tags)
 * the answer is that of weak comparison, computed here independently; a
 * well-formed ETag matches itself, its weak form and "*".
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "response.h"

#include "fuzz.h"

/* etagc = %x21 / %x23-7E / obs-text */
static int
etagc(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

/*
 * Length of the entity-tag at p ([W/] DQUOTE *etagc DQUOTE), 0 if there is
 * none; *opaque and *olen get the part inside the quotes.
 */
static size_t
entity_tag(const char *p, const char **opaque, size_t *olen)
{
    size_t i = 0, start;

    if (p[0] == 'W' && p[1] == '/')
        i = 2;
    if (p[i] != '"')
        return 0;
    start = ++i;
    while (p[i] != '\0' && etagc((unsigned char)p[i]))
        i++;
    if (p[i] != '"')
        return 0;
    *opaque = p + start;
    *olen = i - start;
    return i + 1;
}

static int
well_formed_etag(const char *etag, const char **opaque, size_t *olen)
{
    size_t n = entity_tag(etag, opaque, olen);

    return n > 0 && etag[n] == '\0';
}

static int
ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * The RFC answer for a well-formed If-None-Match: -1 when it is not
 * well-formed, else whether an element's opaque-tag equals the ETag's.
 */
static int
reference(const char *inm, const char *opaque, size_t olen)
{
    const char *p = inm;
    int match = 0, elements = 0;

    while (ows(*p))
        p++;
    if (*p == '*') {
        p++;
        while (ows(*p))
            p++;
        return *p == '\0' ? 1 : -1;
    }
    /* 1#entity-tag, empty elements allowed (RFC 9110 5.6.1.2) */
    for (;;) {
        const char *o;
        size_t ol, n;

        while (ows(*p) || *p == ',')
            p++;
        if (*p == '\0')
            break;
        if ((n = entity_tag(p, &o, &ol)) == 0)
            return -1;
        elements++;
        if (ol == olen && memcmp(o, opaque, olen) == 0)
            match = 1;
        p += n;
        while (ows(*p))
            p++;
        if (*p != ',' && *p != '\0')
            return -1;
    }
    return elements > 0 ? match : -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t ilen = nul ? (size_t)(nul - data) : size;
    char *inm = fuzz_strndup(data, ilen);
    char *etag =
        nul ? fuzz_strndup(nul + 1, size - ilen - 1) : fuzz_strndup(data, 0);
    const char *opaque;
    size_t olen;
    int r = response_etag_matches(inm, etag);

    FUZZ_CHECK(r == 0 || r == 1);
    if (*etag == '\0')
        FUZZ_CHECK(r == 0);
    FUZZ_CHECK(response_etag_matches(NULL, etag) == 0);
    FUZZ_CHECK(response_etag_matches(inm, NULL) == 0);
    if (well_formed_etag(etag, &opaque, &olen)) {
        int want = reference(inm, opaque, olen);
        char *weak = malloc(strlen(etag) + 3);

        if (want >= 0)
            FUZZ_CHECK(r == want);
        FUZZ_CHECK(response_etag_matches(etag, etag) == 1);
        FUZZ_CHECK(response_etag_matches("*", etag) == 1);
        FUZZ_CHECK(weak != NULL);
        memcpy(weak, "W/", 2);
        strcpy(weak + 2, etag[0] == 'W' ? etag + 2 : etag);
        FUZZ_CHECK(response_etag_matches(weak, etag) == 1);
        FUZZ_CHECK(response_etag_matches(weak + 2, etag) == 1);
        FUZZ_CHECK(response_etag_matches(etag, weak) == 1);
        free(weak);
    }
    free(inm);
    free(etag);
    return 0;
}
