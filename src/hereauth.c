#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/rand.h>

#include "credentials.h"
#include "hereauth.h"
#include "log.h"
#include "oauth.h"
#include "upstream.h"
#include "util.h"

/* A refused token is replaced at most this often. */
#define FORCED_MIN_MS 5000
/* Failed token requests: retried after a delay doubling up to the max. */
#define RETRY_BASE_MS 1000
#define RETRY_MAX_MS 60000
/* A token is not sent in its last tenth of life (at most this long). */
#define MARGIN_MAX_MS 30000
#define NONCE_LEN 32

struct hereauth {
    /* Set at creation: restart-only settings. */
    const struct settings *cfg0;
    char user_agent[64];
    pthread_t thread;
    int started;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;  /* the renewer's: work or stop */
    int stopping;
    /* The credential in force; pointers into settings kept until exit. */
    const char *api_key; /* NULL: none */
    uint64_t key_gen;
    const struct here_credentials *creds; /* NULL: API-key mode */
    uint64_t creds_gen;
    /* The token, and what it was issued for. */
    char token[HEREAUTH_TOKEN_MAX + 1];
    uint64_t token_gen;       /* 0: none yet */
    uint64_t token_creds_gen; /* creds_gen it was issued under */
    int64_t token_usable_ms;  /* monotonic: sent until then */
    int64_t token_renew_ms;   /* monotonic: renewed from then */
    double token_expiry;      /* Unix seconds */
    int token_refused;        /* HERE answered 401 to it */
    int64_t forced_ms;        /* the last renewal for a 401 */
    /* Token requests. */
    uint64_t next_gen;   /* numbers keys and tokens */
    int failures;        /* since the last token */
    int64_t next_try_ms; /* not before (backoff) */
    char why[192];       /* the last failure, for clients and /readyz */
    uint64_t renewals[HEREAUTH_NOUTCOME];
    uint64_t refused;
};

const char *
hereauth_outcome_name(enum hereauth_outcome o)
{
    static const char *const names[] = {
#define HEREAUTH_NAME(id, name) name,
        HEREAUTH_OUTCOME_LIST(HEREAUTH_NAME)
#undef HEREAUTH_NAME
    };

    return (unsigned)o < HEREAUTH_NOUTCOME ? names[o] : "unknown";
}

/* ------------------------------------------------------ the answer */

/* RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" /
 * "/" ) *"=". Nothing that could end a header line. */
static int
b64token(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len &&
        ((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
            (s[i] >= '0' && s[i] <= '9') || strchr("-._~+/", s[i]) != NULL))
        i++;
    if (i == 0)
        return 0;
    while (i < len && s[i] == '=')
        i++;
    return i == len;
}

/* The one member named a or b; NULL (and *dup set) when both or twice. */
static const cJSON *
member(const cJSON *o, const char *a, const char *b, int *dup)
{
    const cJSON *found = NULL, *c;

    for (c = o->child; c != NULL; c = c->next) {
        if (c->string == NULL ||
            (strcmp(c->string, a) != 0 && strcmp(c->string, b) != 0))
            continue;
        if (found != NULL) {
            *dup = 1;
            return NULL;
        }
        found = c;
    }
    return found;
}

int
hereauth_parse_answer(const char *body, size_t len, char *token, size_t size,
    long *lifetime_s, char *err, size_t errlen)
{
    const cJSON *t, *type, *expires;
    const char *end = NULL;
    cJSON *root = NULL;
    size_t tlen;
    int dup = 0, rc = -1;

    if (len == 0 || len > HEREAUTH_ANSWER_MAX) {
        snprintf(err, errlen, "an answer of %zu bytes", len);
        return -1;
    }
    root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (root == NULL || !cJSON_IsObject(root)) {
        snprintf(err, errlen, "an answer that is not a JSON object");
        goto done;
    }
    while (end != NULL && end < body + len &&
        (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != body + len) {
        snprintf(err, errlen, "bytes after the JSON object");
        goto done;
    }
    t = member(root, "accessToken", "access_token", &dup);
    type = member(root, "tokenType", "token_type", &dup);
    expires = member(root, "expiresIn", "expires_in", &dup);
    if (dup) {
        snprintf(err, errlen, "a field given twice");
        goto done;
    }
    if (!cJSON_IsString(t)) {
        snprintf(err, errlen, "no accessToken string");
        goto done;
    }
    tlen = strlen(t->valuestring);
    if (tlen >= size || !b64token(t->valuestring, tlen)) {
        /* The length only: the token is never quoted. */
        snprintf(err, errlen,
            "an accessToken of %zu bytes that is not a bearer token "
            "(RFC 6750 characters, at most %zu bytes)",
            tlen, size - 1);
        goto done;
    }
    if (!cJSON_IsString(type) || strcasecmp(type->valuestring, "bearer")) {
        snprintf(err, errlen, "a tokenType that is not \"bearer\"");
        goto done;
    }
    /* In range first (NaN is not), then whole: the cast is defined. */
    if (!cJSON_IsNumber(expires) ||
        !(expires->valuedouble >= HEREAUTH_LIFETIME_MIN_S &&
            expires->valuedouble <= HEREAUTH_LIFETIME_MAX_S) ||
        expires->valuedouble != (double)(long)expires->valuedouble) {
        snprintf(err, errlen,
            "an expiresIn that is not a whole number of seconds within "
            "%d..%d",
            HEREAUTH_LIFETIME_MIN_S, HEREAUTH_LIFETIME_MAX_S);
        goto done;
    }
    memcpy(token, t->valuestring, tlen + 1);
    *lifetime_s = (long)expires->valuedouble;
    rc = 0;
done:
    if (root != NULL) {
        /* The token is in the tree: wipe it before it goes back. */
        t = cJSON_GetObjectItemCaseSensitive(root, "accessToken");
        if (t == NULL)
            t = cJSON_GetObjectItemCaseSensitive(root, "access_token");
        if (cJSON_IsString(t))
            explicit_bzero(t->valuestring, strlen(t->valuestring));
        cJSON_Delete(root);
    }
    return rc;
}

int64_t
hereauth_renew_at_ms(int64_t issued_ms, long lifetime_s)
{
    return issued_ms + (int64_t)lifetime_s * 800;
}

/* ------------------------------------------------------ the transfer */

struct answer {
    struct hereauth *a;
    char buf[HEREAUTH_ANSWER_MAX + 1];
    size_t len;
    int too_big;
    char retry_after[32];
};

static size_t
on_answer(char *data, size_t size, size_t nmemb, void *arg)
{
    struct answer *ans = arg;
    size_t n = size * nmemb;

    if (n > HEREAUTH_ANSWER_MAX - ans->len) {
        ans->too_big = 1;
        return 0; /* curl stops */
    }
    memcpy(ans->buf + ans->len, data, n);
    ans->len += n;
    return n;
}

static size_t
on_answer_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct answer *ans = arg;
    size_t n = size * nmemb;

    upstream_header_value(data, n, "Retry-After", ans->retry_after,
        sizeof(ans->retry_after), NULL);
    return n;
}

static int
on_progress(
    void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct answer *ans = arg;

    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    /* Non-zero aborts: a stopping process does not wait for the answer. */
    return __atomic_load_n(&ans->a->stopping, __ATOMIC_RELAXED);
}

/* What a refusal said, from HERE's error JSON: its code, never more. */
static void
error_code(const struct answer *ans, char *out, size_t size)
{
    cJSON *root = cJSON_ParseWithLength(ans->buf, ans->len);
    const cJSON *c;

    *out = '\0';
    if (root == NULL)
        return;
    c = cJSON_GetObjectItemCaseSensitive(root, "errorCode");
    if (cJSON_IsNumber(c) && c->valuedouble >= 0 && c->valuedouble < 1e9)
        snprintf(out, size, " (errorCode %ld)", (long)c->valuedouble);
    cJSON_Delete(root);
}

/*
 * One token request with credentials c. Fills token and *lifetime_s on
 * HEREAUTH_OK; else why, and *retry_after_s (-1 when none).
 */
static enum hereauth_outcome
request_token(struct hereauth *a, const struct here_credentials *c, char *token,
    size_t size, long *lifetime_s, long *retry_after_s, char *why,
    size_t whylen)
{
    const struct settings *cfg = a->cfg0;
    struct oauth_param body[2] = {
        {"grant_type", "client_credentials"}, {"scope", c->scope}};
    size_t nbody = *c->scope != '\0' ? 2 : 1;
    char nonce[NONCE_LEN + 1], timestamp[24], form[2 * OAUTH_TEXT_MAX];
    char header[OAUTH_TEXT_MAX], err[160], code[48];
    struct curl_slist *headers = NULL, *h;
    struct oauth_request r;
    struct answer *ans = NULL;
    enum hereauth_outcome outcome = HEREAUTH_UNREACHABLE;
    CURL *easy = NULL;
    CURLcode cc;
    long status = 0;
    int w;

    *retry_after_s = -1;
    if ((ans = calloc(1, sizeof(*ans))) == NULL) {
        snprintf(why, whylen, "out of memory");
        goto done;
    }
    ans->a = a;
    w = snprintf(timestamp, sizeof(timestamp), "%lld", (long long)time(NULL));
    if (oauth_nonce(nonce, NONCE_LEN) != 0 || w < 0) {
        snprintf(why, whylen, "no random bytes for the OAuth nonce");
        goto done;
    }
    memset(&r, 0, sizeof(r));
    r.method_name = OAUTH_HMAC_SHA256;
    r.http_method = "POST";
    r.url = c->token_url;
    r.consumer_key = c->access_key_id;
    r.consumer_secret = c->access_key_secret;
    r.nonce = nonce;
    r.timestamp = timestamp;
    r.body = body;
    r.nbody = nbody;
    memcpy(header, "Authorization: ", 15);
    if (oauth_authorization(&r, header + 15, sizeof(header) - 15, NULL, err,
            sizeof(err)) != 0 ||
        oauth_form(body, nbody, form, sizeof(form)) < 0) {
        snprintf(why, whylen, "cannot sign the token request: %s", err);
        goto done;
    }
    if ((h = curl_slist_append(NULL, header)) == NULL ||
        (headers = curl_slist_append(
             h, "Content-Type: application/x-www-form-urlencoded")) == NULL ||
        curl_slist_append(headers, "Accept: application/json") == NULL ||
        (easy = curl_easy_init()) == NULL) {
        if (headers == NULL)
            curl_slist_free_all(h);
        snprintf(why, whylen, "out of memory");
        goto done;
    }
    curl_easy_setopt(easy, CURLOPT_URL, c->token_url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (*cfg->here_ca_file != '\0')
        curl_easy_setopt(easy, CURLOPT_CAINFO, cfg->here_ca_file);
    curl_easy_setopt(
        easy, CURLOPT_CONNECTTIMEOUT_MS, cfg->here_connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, cfg->here_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, a->user_agent);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, ans);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_answer_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, ans);
    curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(easy, CURLOPT_XFERINFODATA, ans);
    curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
    cc = curl_easy_perform(easy);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK && !(ans->too_big && cc == CURLE_WRITE_ERROR)) {
        /* curl's generic words: its own message may quote the URL. */
        snprintf(why, whylen, "the token endpoint is unreachable: %s",
            curl_easy_strerror(cc));
        goto done;
    }
    if (status != 200) {
        error_code(ans, code, sizeof(code));
        outcome = status == 401 || status == 403 ? HEREAUTH_REFUSED
                                                 : HEREAUTH_HTTP_ERROR;
        snprintf(why, whylen, "the token endpoint answered %ld%s%s", status,
            code,
            outcome == HEREAUTH_REFUSED ? ": check HERE_CREDENTIALS_FILE" : "");
        *retry_after_s =
            upstream_parse_retry_after(ans->retry_after, time(NULL));
        goto done;
    }
    outcome = HEREAUTH_BAD_RESPONSE;
    if (ans->too_big) {
        snprintf(why, whylen, "the token endpoint sent more than %d bytes",
            HEREAUTH_ANSWER_MAX);
        goto done;
    }
    if (hereauth_parse_answer(ans->buf, ans->len, token, size, lifetime_s, err,
            sizeof(err)) != 0) {
        snprintf(why, whylen, "the token endpoint sent %s", err);
        goto done;
    }
    outcome = HEREAUTH_OK;
done:
    if (easy != NULL)
        curl_easy_cleanup(easy);
    for (h = headers; h != NULL; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(headers);
    if (ans != NULL) {
        explicit_bzero(ans->buf, sizeof(ans->buf));
        free(ans);
    }
    return outcome;
}

/* ------------------------------------------------------ the renewer */

/* Called with the lock held: does the token in force need a request? */
static int
token_needed(const struct hereauth *a, int64_t now, int64_t *wake_ms)
{
    if (a->creds == NULL)
        return 0;
    if (a->token_gen == 0 || a->token_refused ||
        a->token_creds_gen != a->creds_gen || now >= a->token_renew_ms)
        return 1;
    *wake_ms = a->token_renew_ms;
    return 0;
}

static const char *
reason_of(const struct hereauth *a, int64_t now)
{
    if (a->token_gen == 0)
        return "start";
    if (a->token_creds_gen != a->creds_gen)
        return "new_credentials";
    if (a->token_refused)
        return "refused";
    return now >= a->token_usable_ms ? "expired" : "scheduled";
}

static void
log_renewal(const struct hereauth *a, const char *reason, long lifetime_s,
    const char *key_id)
{
    cJSON *f = cJSON_CreateObject();

    if (f != NULL) {
        cJSON_AddStringToObject(f, "reason", reason);
        cJSON_AddNumberToObject(f, "expires_in_s", (double)lifetime_s);
        cJSON_AddNumberToObject(
            f, "renew_in_s", (double)(lifetime_s * 8) / 10.0);
        cJSON_AddStringToObject(f, "here_access_key_id", key_id);
    }
    (void)a;
    log_event(LOG_LEVEL_INFO, "here_token", f);
}

static void
log_failure(const char *reason, const char *why, int failures, int64_t retry_ms,
    int has_token)
{
    cJSON *f = cJSON_CreateObject();

    if (f != NULL) {
        cJSON_AddStringToObject(f, "reason", reason);
        cJSON_AddStringToObject(f, "error", why);
        cJSON_AddNumberToObject(f, "failures", (double)failures);
        cJSON_AddNumberToObject(f, "retry_in_ms", (double)retry_ms);
        cJSON_AddBoolToObject(f, "token_valid", has_token);
    }
    log_event(
        has_token ? LOG_LEVEL_WARN : LOG_LEVEL_ERROR, "here_token_failed", f);
}

static int64_t
retry_delay_ms(int failures, long retry_after_s)
{
    int64_t ceiling = RETRY_BASE_MS, d;
    uint32_t rnd = 0;
    int i;

    for (i = 1; i < failures && ceiling < RETRY_MAX_MS; i++)
        ceiling *= 2;
    if (ceiling > RETRY_MAX_MS)
        ceiling = RETRY_MAX_MS;
    (void)RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    /* Half fixed, half jitter: never at once, never in step. */
    d = ceiling / 2 + (int64_t)(rnd % (uint32_t)(ceiling / 2 + 1));
    if (retry_after_s > 0 && (int64_t)retry_after_s * 1000 > d)
        d = (int64_t)retry_after_s * 1000 > 10 * RETRY_MAX_MS
            ? 10 * RETRY_MAX_MS
            : (int64_t)retry_after_s * 1000;
    return d;
}

static void *
renewer_main(void *arg)
{
    struct hereauth *a = arg;
    char *token = malloc(HEREAUTH_TOKEN_MAX + 1);

    if (token == NULL)
        return NULL;
    pthread_mutex_lock(&a->lock);
    while (!a->stopping) {
        const struct here_credentials *c;
        int64_t now = util_mono_ms(), wake = now + 3600 * 1000, issued;
        enum hereauth_outcome o;
        uint64_t gen;
        long lifetime_s = 0, retry_after_s = -1;
        char why[sizeof(a->why)];
        const char *reason;
        struct timespec ts;

        if (!token_needed(a, now, &wake) || now < a->next_try_ms) {
            if (token_needed(a, now, &wake) && a->next_try_ms < wake)
                wake = a->next_try_ms;
            util_ms_timespec(wake, &ts);
            pthread_cond_timedwait(&a->wake, &a->lock, &ts);
            continue;
        }
        c = a->creds;
        gen = a->creds_gen;
        reason = reason_of(a, now);
        pthread_mutex_unlock(&a->lock);
        o = request_token(a, c, token, HEREAUTH_TOKEN_MAX + 1, &lifetime_s,
            &retry_after_s, why, sizeof(why));
        issued = util_mono_ms();
        pthread_mutex_lock(&a->lock);
        a->renewals[o]++;
        if (o == HEREAUTH_OK && gen == a->creds_gen) {
            int64_t margin = (int64_t)lifetime_s * 100;

            if (margin > MARGIN_MAX_MS)
                margin = MARGIN_MAX_MS;
            memcpy(a->token, token, strlen(token) + 1);
            a->token_gen = ++a->next_gen;
            a->token_creds_gen = gen;
            a->token_usable_ms = issued + (int64_t)lifetime_s * 1000 - margin;
            a->token_renew_ms = hereauth_renew_at_ms(issued, lifetime_s);
            a->token_expiry =
                (double)util_wall_ms() / 1000.0 + (double)lifetime_s;
            a->token_refused = 0;
            a->failures = 0;
            a->next_try_ms = 0;
            a->why[0] = '\0';
            /* The key a reload replaced by these credentials: done. */
            a->api_key = NULL;
            log_renewal(a, reason, lifetime_s, c->access_key_id);
        } else if (o != HEREAUTH_OK) {
            int64_t delay;
            int has_token;

            a->failures++;
            delay = retry_delay_ms(a->failures, retry_after_s);
            a->next_try_ms = issued + delay;
            util_strlcpy(a->why, why, sizeof(a->why));
            has_token = a->token_gen != 0 && !a->token_refused &&
                issued < a->token_usable_ms;
            log_failure(reason, why, a->failures, delay, has_token);
        }
        /* else: the credentials changed while it was asked for. */
        explicit_bzero(token, HEREAUTH_TOKEN_MAX + 1);
    }
    pthread_mutex_unlock(&a->lock);
    free(token);
    return NULL;
}

/* ------------------------------------------------------ the API */

static void
take_settings(struct hereauth *a, const struct settings *cfg)
{
    if (cfg->here_credentials != NULL) {
        a->creds = cfg->here_credentials;
        a->creds_gen = ++a->next_gen;
    } else {
        a->creds = NULL;
        a->api_key = cfg->here_api_key;
        a->key_gen = ++a->next_gen;
        /* A token of credentials no longer configured is not sent. */
        explicit_bzero(a->token, sizeof(a->token));
        a->token_gen = 0;
    }
    a->failures = 0;
    a->next_try_ms = 0;
    a->why[0] = '\0';
}

struct hereauth *
hereauth_new(const struct settings *cfg, char *err, size_t errlen)
{
    struct hereauth *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init failed");
        free(a);
        return NULL;
    }
    a->cfg0 = cfg;
    snprintf(
        a->user_agent, sizeof(a->user_agent), "hereproxy/%s", PACKAGE_VERSION);
    pthread_mutex_init(&a->lock, NULL);
    {
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&a->wake, &ca);
        pthread_condattr_destroy(&ca);
    }
    take_settings(a, cfg);
    if (pthread_create(&a->thread, NULL, renewer_main, a) != 0) {
        snprintf(err, errlen, "cannot start the token renewal thread");
        hereauth_free(a);
        return NULL;
    }
    a->started = 1;
    return a;
}

void
hereauth_free(struct hereauth *a)
{
    if (a == NULL)
        return;
    if (a->started) {
        pthread_mutex_lock(&a->lock);
        __atomic_store_n(&a->stopping, 1, __ATOMIC_RELAXED);
        pthread_cond_signal(&a->wake);
        pthread_mutex_unlock(&a->lock);
        pthread_join(a->thread, NULL);
    }
    explicit_bzero(a->token, sizeof(a->token));
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->lock);
    curl_global_cleanup();
    free(a);
}

void
hereauth_update(
    struct hereauth *a, const struct settings *cfg, char *what, size_t len)
{
    int creds_changed, key_changed;

    pthread_mutex_lock(&a->lock);
    creds_changed = (a->creds == NULL) != (cfg->here_credentials == NULL) ||
        (a->creds != NULL &&
            !credentials_equal(a->creds, cfg->here_credentials));
    key_changed = cfg->here_credentials == NULL &&
        (a->api_key == NULL || strcmp(a->api_key, cfg->here_api_key) != 0);
    if (creds_changed || key_changed) {
        take_settings(a, cfg);
        pthread_cond_signal(&a->wake);
    } else if (a->creds != NULL) {
        /* The same values: keep the token, point at the live copy. */
        a->creds = cfg->here_credentials;
    } else {
        a->api_key = cfg->here_api_key;
    }
    pthread_mutex_unlock(&a->lock);
    util_strlcpy(what,
        creds_changed && cfg->here_credentials != NULL ? "here_credentials"
            : creds_changed || key_changed             ? "here_api_key"
                                                       : "",
        len);
}

enum hereauth_state
hereauth_take(
    struct hereauth *a, struct hereauth_ticket *t, char *why, size_t whylen)
{
    enum hereauth_state st = HEREAUTH_READY;
    int64_t now = util_mono_ms();

    pthread_mutex_lock(&a->lock);
    if (a->creds != NULL && a->token_gen != 0 && !a->token_refused &&
        now < a->token_usable_ms) {
        t->mode = HEREAUTH_BEARER;
        t->gen = a->token_gen;
        memcpy(t->value, a->token, strlen(a->token) + 1);
    } else if (a->api_key != NULL) {
        /* API-key mode, or a key until the new credentials' token. */
        t->mode = HEREAUTH_KEY;
        t->gen = a->key_gen;
        util_strlcpy(t->value, a->api_key, sizeof(t->value));
    } else if (a->failures == 0) {
        st = HEREAUTH_WAIT;
    } else {
        st = HEREAUTH_UNAVAILABLE;
        if (why != NULL)
            snprintf(why, whylen, "no valid HERE token: %s", a->why);
    }
    pthread_mutex_unlock(&a->lock);
    return st;
}

int
hereauth_refused(struct hereauth *a, const struct hereauth_ticket *t)
{
    int64_t now = util_mono_ms();
    int again = 0;

    pthread_mutex_lock(&a->lock);
    if (t->mode == HEREAUTH_KEY) {
        /* A key replaced since, or credentials now in force. */
        again = (a->api_key != NULL && t->gen != a->key_gen) ||
            (a->creds != NULL && a->token_gen != 0);
    } else if (t->gen != a->token_gen) {
        again = 1; /* a newer token is there already */
    } else if (a->token_refused) {
        again = 1; /* another transfer saw it first */
    } else if (now - a->forced_ms >= FORCED_MIN_MS || a->forced_ms == 0) {
        a->token_refused = 1;
        a->forced_ms = now;
        a->refused++;
        pthread_cond_signal(&a->wake);
        again = 1;
    }
    pthread_mutex_unlock(&a->lock);
    return again;
}

void
hereauth_stats(struct hereauth *a, struct hereauth_stats *out)
{
    int64_t now = util_mono_ms();

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&a->lock);
    out->bearer = a->creds != NULL;
    out->token_valid = a->creds != NULL && a->token_gen != 0 &&
        !a->token_refused && now < a->token_usable_ms;
    out->token_expiry = a->token_gen != 0 ? a->token_expiry : 0;
    memcpy(out->renewals, a->renewals, sizeof(out->renewals));
    out->refused = a->refused;
    if (a->creds != NULL && !out->token_valid)
        util_strlcpy(out->why,
            *a->why != '\0' ? a->why : "the first token is being asked for",
            sizeof(out->why));
    pthread_mutex_unlock(&a->lock);
}
