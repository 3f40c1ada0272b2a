#ifndef HEREPROXY_CREDENTIALS_H
#define HEREPROXY_CREDENTIALS_H

#include <stddef.h>

/*
 * HERE platform OAuth credentials: the credentials.properties file that
 * the HERE platform portal hands out (HERE_CREDENTIALS_FILE). Java
 * properties syntax, read strictly: "key = value" or "key: value" lines,
 * '#' and '!' comment lines, blank lines; no backslash escapes or
 * continued lines (HERE's values never need them), ASCII only. Keys the
 * proxy does not use (here.api.key, say) are skipped; a key it uses may
 * appear once.
 */

/* Longest values taken. */
#define CREDENTIALS_ID_MAX 256
#define CREDENTIALS_SECRET_MAX 512
#define CREDENTIALS_URL_MAX 1024
/* Largest file read. */
#define CREDENTIALS_FILE_MAX 65536

struct here_credentials {
    char *access_key_id;     /* here.access.key.id: oauth_consumer_key */
    char *access_key_secret; /* here.access.key.secret: never shown */
    char *token_url;         /* here.token.endpoint.url */
    char *client_id;         /* here.client.id ("" when absent) */
    char *user_id;           /* here.user.id ("" when absent) */
    char *scope;             /* here.token.scope ("" when absent) */
};

/*
 * Parse text, the file origin names in messages, into c (all members set,
 * owned by c, on success; c untouched on failure). here.access.key.id,
 * here.access.key.secret and here.token.endpoint.url are required; the URL
 * is https://, or http:// to a loopback address (a local test server).
 * Returns 0, or -1 with "origin:LINE: what" (or "origin: what") in err;
 * the secret is never quoted.
 */
int credentials_parse(const char *text, const char *origin,
    struct here_credentials *c, char *err, size_t errlen);

/* Free the members, the secret wiped first. c may be all NULL. */
void credentials_cleanup(struct here_credentials *c);

/* 1 when a and b hold the same values (the secret compared too). */
int credentials_equal(
    const struct here_credentials *a, const struct here_credentials *b);

#endif
