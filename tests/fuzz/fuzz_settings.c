/*
 * settings_apply_text() on arbitrary configuration text, from fresh
 * defaults each run (settings_init / settings_cleanup: LeakSanitizer sees
 * anything left behind).
 *
 * Invariants: 0 or -1; on -1 a NUL-terminated message naming the origin;
 * whatever happened, every setting still holds a value its own parser
 * accepts (the text members are set, numbers within their bounds, the URL
 * without a trailing slash), so that settings_set() of the dumped value
 * succeeds again.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "settings.h"

#include "fuzz.h"

#define ORIGIN "fuzz.conf"

/* Bounds from the table, so that they cannot drift from settings.h. */
#define CHECK_ROW(name, member, kind, def, min, max, reload)                   \
    check_member(#name, kind, &cfg->member, sizeof(cfg->member), min, max);

static void
check_member(const char *name, enum setting_kind kind, const void *slot,
    size_t size, long min, long max)
{
    switch (kind) {
    case CFG_STR:
    case CFG_SECRET:
    case CFG_URL:
    case CFG_ORIGINS:
    case CFG_SERVERS: {
        const char *s = *(char *const *)slot;
        FUZZ_CHECK(size == sizeof(char *));
        FUZZ_CHECK(s != NULL);
        FUZZ_CHECK(strlen(s) <= 4096);
        if (kind == CFG_URL) {
            FUZZ_CHECK(strncmp(s, "http://", 7) == 0 ||
                strncmp(s, "https://", 8) == 0);
            FUZZ_CHECK(s[strlen(s) - 1] != '/');
        }
        /*
         * The HERE key goes into upstream URLs: settings_set refuses what
         * would change their meaning. The other secrets (client and admin
         * tokens) are checked by settings_validate, which this does not call.
         */
        if (kind == CFG_SECRET && strcmp(name, "HERE_API_KEY") == 0)
            FUZZ_CHECK(strpbrk(s, " \t\r\n&?#=%") == NULL);
        break;
    }
    case CFG_TOKENS:
    case CFG_INDICES:
    case CFG_STYLES:
    case CFG_PUBLIC_URL:
    case CFG_ACL:
    case CFG_RATE:
    case CFG_RATES:
    case CFG_QUOTA:
    case CFG_QUOTAS:
    case CFG_CIDRS:
    case CFG_SHARE:
        /* Held as text (the meaning parsed beside it). */
        FUZZ_CHECK(size == sizeof(char *));
        FUZZ_CHECK(*(char *const *)slot != NULL);
        break;
    case CFG_LONG:
    case CFG_BOOL:
    case CFG_LEVEL: {
        long v = *(const long *)slot;
        FUZZ_CHECK(size == sizeof(long));
        if (kind == CFG_LONG)
            FUZZ_CHECK(v >= min && v <= max);
        else if (kind == CFG_BOOL)
            FUZZ_CHECK(v == 0 || v == 1);
        else
            FUZZ_CHECK(v >= 0 && v <= 3);
        break;
    }
    case CFG_SIZE:
        FUZZ_CHECK(size == sizeof(uint64_t));
        FUZZ_CHECK(*(const uint64_t *)slot >= (uint64_t)min);
        break;
    }
}

static void
check_all(const struct settings *cfg)
{
    size_t commas = 0;
    const char *p;

    SETTINGS_LIST(CHECK_ROW)
    /* The token list is parsed when set: a table of its entries, or none. */
    for (p = cfg->client_tokens; *p != '\0'; p++)
        commas += *p == ',';
    FUZZ_CHECK(token_table_count(cfg->client_token_table) <= commas + 1);
    if (*cfg->client_tokens == '\0')
        FUZZ_CHECK(cfg->client_token_table == NULL);
}

/* Every dumped line is accepted again: what is stored is valid. */
static void
check_dump_reloads(const struct settings *cfg)
{
    struct settings again;
    char *buf = NULL, *line, *next, err[512];
    size_t len = 0;
    int rc;
    FILE *fp = open_memstream(&buf, &len);

    FUZZ_CHECK(fp != NULL);
    settings_dump(cfg, fp);
    FUZZ_CHECK(fclose(fp) == 0);
    FUZZ_CHECK(settings_init(&again) == 0);
    for (line = buf; line != NULL && *line != '\0'; line = next) {
        char *eq;

        if ((next = strchr(line, '\n')) != NULL)
            *next++ = '\0';
        eq = strchr(line, '=');
        FUZZ_CHECK(eq != NULL);
        *eq = '\0';
        if (strcmp(eq + 1, "<redacted>") == 0)
            continue;
        rc = settings_set(&again, line, eq + 1, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "dumped %s=%s refused: %s\n", line, eq + 1, err);
        FUZZ_CHECK(rc == 0);
    }
    check_all(&again);
    settings_cleanup(&again);
    free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct settings cfg;
    char *text = fuzz_strndup(data, size), err[512];
    int rc;

    FUZZ_CHECK(settings_init(&cfg) == 0);
    check_all(&cfg);
    memset(err, 'x', sizeof(err));
    rc = settings_apply_text(&cfg, text, ORIGIN, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
        FUZZ_CHECK(strncmp(err, ORIGIN ":", strlen(ORIGIN) + 1) == 0);
    }
    check_all(&cfg);
    check_dump_reloads(&cfg);
    /* The origin check must cope with whatever list was accepted. */
    (void)settings_origin_allowed(&cfg, "https://maps.example.com");
    (void)settings_origin_allowed(&cfg, text);
    settings_cleanup(&cfg);
    /* cleanup leaves nothing dangling: a second one is harmless */
    settings_cleanup(&cfg);
    free(text);
    return 0;
}
