/*
 * The signer under test, for tests/integration/test_oauth_reference.sh:
 * sign each case of a JSON file (see tests/oauth/reference.js) with
 * src/oauth.c and print one JSON line per case: {"id", "base", "header"}.
 * A test program only: the proxy has no way to sign what a client asks.
 *   oauth_sign CASES.json
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "oauth.h"

#define CASE_PARAMS 16

static const char *
str(const cJSON *c, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int
sign_case(const cJSON *c)
{
    struct oauth_param body[CASE_PARAMS];
    struct oauth_request r;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(c, "body"), *p;
    char header[4 * OAUTH_TEXT_MAX], err[256], *base = NULL, *line;
    cJSON *out;
    size_t n = 0;

    memset(&r, 0, sizeof(r));
    r.method_name = strcmp(str(c, "method"), "HMAC-SHA1") == 0
        ? OAUTH_HMAC_SHA1
        : OAUTH_HMAC_SHA256;
    r.http_method = str(c, "http_method");
    r.url = str(c, "url");
    r.consumer_key = str(c, "key");
    r.consumer_secret = str(c, "secret");
    r.token = str(c, "token");
    r.token_secret = str(c, "token_secret");
    r.nonce = str(c, "nonce");
    r.timestamp = str(c, "timestamp");
    cJSON_ArrayForEach(p, b)
    {
        if (n == CASE_PARAMS)
            return -1;
        body[n].name = cJSON_GetArrayItem(p, 0)->valuestring;
        body[n].value = cJSON_GetArrayItem(p, 1)->valuestring;
        n++;
    }
    r.body = body;
    r.nbody = n;
    if (oauth_authorization(
            &r, header, sizeof(header), &base, err, sizeof(err)) != 0) {
        fprintf(stderr, "case %s: %s\n", str(c, "id"), err);
        return -1;
    }
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "id", str(c, "id"));
    cJSON_AddStringToObject(out, "base", base);
    cJSON_AddStringToObject(out, "header", header);
    line = cJSON_PrintUnformatted(out);
    printf("%s\n", line);
    free(line);
    cJSON_Delete(out);
    free(base);
    return 0;
}

int
main(int argc, char **argv)
{
    FILE *fp;
    char *text;
    long len;
    cJSON *cases, *c;
    int rc = 0;

    if (argc != 2 || (fp = fopen(argv[1], "r")) == NULL) {
        fprintf(stderr, "usage: oauth_sign CASES.json\n");
        return 2;
    }
    fseek(fp, 0, SEEK_END);
    len = ftell(fp);
    rewind(fp);
    text = malloc((size_t)len + 1);
    if (text == NULL || fread(text, 1, (size_t)len, fp) != (size_t)len) {
        fclose(fp);
        return 2;
    }
    fclose(fp);
    text[len] = '\0';
    cases = cJSON_Parse(text);
    free(text);
    cJSON_ArrayForEach(c, cases)
    {
        if (sign_case(c) != 0)
            rc = 1;
    }
    cJSON_Delete(cases);
    return rc;
}
