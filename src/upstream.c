#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "log.h"
#include "upstream.h"

#define URL_MAX 4096

struct upstream {
    const struct settings *cfg;
    CURLSH *share;
    pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
    pthread_mutex_t pool_lock;
    CURL **idle;                /* handles ready for reuse */
    size_t nidle, cap;
    char user_agent[64];
};

struct transfer {
    struct upstream_response *resp;
    int too_big;
};

static void
share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
    struct upstream *up = arg;

    (void)h;
    (void)access;
    pthread_mutex_lock(&up->share_locks[data]);
}

static void
share_unlock(CURL *h, curl_lock_data data, void *arg)
{
    struct upstream *up = arg;

    (void)h;
    pthread_mutex_unlock(&up->share_locks[data]);
}

struct upstream *
upstream_new(const struct settings *cfg, char *err, size_t errlen)
{
    struct upstream *up = calloc(1, sizeof(*up));
    size_t i;

    if (up == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init failed");
        free(up);
        return NULL;
    }
    up->cfg = cfg;
    for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&up->share_locks[i], NULL);
    pthread_mutex_init(&up->pool_lock, NULL);
    snprintf(up->user_agent, sizeof(up->user_agent), "hereproxy/%s",
        PACKAGE_VERSION);
    if ((up->share = curl_share_init()) == NULL) {
        snprintf(err, errlen, "curl_share_init failed");
        upstream_free(up);
        return NULL;
    }
    curl_share_setopt(up->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(up->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(up->share, CURLSHOPT_USERDATA, up);
    curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    return up;
}

void
upstream_free(struct upstream *up)
{
    size_t i;

    if (up == NULL)
        return;
    for (i = 0; i < up->nidle; i++)
        curl_easy_cleanup(up->idle[i]);
    free(up->idle);
    if (up->share != NULL)
        curl_share_cleanup(up->share);
    for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&up->share_locks[i]);
    pthread_mutex_destroy(&up->pool_lock);
    curl_global_cleanup();
    free(up);
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct transfer *t = arg;
    size_t n = size * nmemb;

    if (dynbuf_append(&t->resp->body, data, n) != 0) {
        t->too_big = 1;
        return 0;   /* makes curl stop with CURLE_WRITE_ERROR */
    }
    return n;
}

/* Copy a header's value (trimmed) when the line names it. */
static int
header_value(const char *line, size_t len, const char *name, char *out,
    size_t outsize)
{
    size_t nlen = strlen(name), vlen;
    const char *v;

    if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen))
        return 0;
    v = line + nlen + 1;
    vlen = len - nlen - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
                           v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (vlen >= outsize)
        vlen = outsize - 1;
    memcpy(out, v, vlen);
    out[vlen] = '\0';
    return 1;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct transfer *t = arg;
    struct upstream_response *r = t->resp;
    size_t n = size * nmemb;

    /* A new status line (after 100 Continue, say) starts over. */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        r->content_type[0] = r->etag[0] = r->cache_control[0] = '\0';
        r->correlation_id[0] = '\0';
        return n;
    }
    if (!header_value(data, n, "Content-Type", r->content_type,
            sizeof(r->content_type)) &&
        !header_value(data, n, "ETag", r->etag, sizeof(r->etag)) &&
        !header_value(data, n, "Cache-Control", r->cache_control,
            sizeof(r->cache_control)))
        header_value(data, n, "X-Correlation-Id", r->correlation_id,
            sizeof(r->correlation_id));
    return n;
}

static CURL *
handle_new(struct upstream *up)
{
    const struct settings *cfg = up->cfg;
    CURL *h = curl_easy_init();

    if (h == NULL)
        return NULL;
    curl_easy_setopt(h, CURLOPT_SHARE, up->share);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (*cfg->here_ca_file != '\0')
        curl_easy_setopt(h, CURLOPT_CAINFO, cfg->here_ca_file);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
        cfg->here_connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, cfg->here_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, up->user_agent);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    return h;
}

static CURL *
handle_take(struct upstream *up)
{
    CURL *h = NULL;

    pthread_mutex_lock(&up->pool_lock);
    if (up->nidle > 0)
        h = up->idle[--up->nidle];
    pthread_mutex_unlock(&up->pool_lock);
    return h != NULL ? h : handle_new(up);
}

static void
handle_give_back(struct upstream *up, CURL *h)
{
    pthread_mutex_lock(&up->pool_lock);
    if (up->nidle == up->cap) {
        size_t cap = up->cap ? up->cap * 2 : 16;
        CURL **idle = realloc(up->idle, cap * sizeof(*idle));
        if (idle == NULL) {
            pthread_mutex_unlock(&up->pool_lock);
            curl_easy_cleanup(h);
            return;
        }
        up->idle = idle;
        up->cap = cap;
    }
    up->idle[up->nidle++] = h;
    pthread_mutex_unlock(&up->pool_lock);
}

static enum upstream_outcome
classify(CURLcode code, int too_big)
{
    switch (code) {
    case CURLE_OK:
        return UPSTREAM_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return UPSTREAM_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return UPSTREAM_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
        return UPSTREAM_TLS;
    case CURLE_WRITE_ERROR:
        return too_big ? UPSTREAM_TOO_BIG : UPSTREAM_BROKEN;
    default:
        return UPSTREAM_BROKEN;
    }
}

int
upstream_fetch(struct upstream *up, const char *path_and_query,
    int has_query, struct upstream_response *resp)
{
    struct transfer t = {resp, 0};
    char url[URL_MAX];
    char errbuf[CURL_ERROR_SIZE] = "";
    CURL *h;
    CURLcode code;
    curl_off_t total_us = 0;
    int w;

    memset(resp, 0, sizeof(*resp));
    dynbuf_init(&resp->body, (size_t)up->cfg->upstream_max_bytes);
    resp->outcome = UPSTREAM_BROKEN;
    w = snprintf(url, sizeof(url), "%s/%s%capiKey=%s",
        up->cfg->here_base_url, path_and_query, has_query ? '&' : '?',
        up->cfg->here_api_key);
    if (w < 0 || (size_t)w >= sizeof(url)) {
        snprintf(resp->error, sizeof(resp->error), "upstream URL too long");
        return -1;
    }
    if ((h = handle_take(up)) == NULL) {
        snprintf(resp->error, sizeof(resp->error), "curl_easy_init failed");
        return -1;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    code = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &resp->http_version);
    curl_easy_getinfo(h, CURLINFO_TOTAL_TIME_T, &total_us);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    /* The URL holds the key: never leave it where a later use could leak. */
    curl_easy_setopt(h, CURLOPT_URL, "");
    handle_give_back(up, h);
    memset(url, 0, sizeof(url));
    resp->elapsed_ms = (double)total_us / 1000.0;
    resp->outcome = classify(code, t.too_big);
    switch (resp->http_version) {
    case CURL_HTTP_VERSION_1_0:
        resp->http_version = 10;
        break;
    case CURL_HTTP_VERSION_1_1:
        resp->http_version = 11;
        break;
    case CURL_HTTP_VERSION_2_0:
        resp->http_version = 20;
        break;
    default:
        resp->http_version = 0;
    }
    if (code == CURLE_OK)
        return 0;
    /* curl's message may quote the URL; fall back to its generic text. */
    if (*errbuf == '\0' || strstr(errbuf, up->cfg->here_api_key) != NULL ||
        strstr(errbuf, "apiKey") != NULL)
        util_strlcpy(resp->error, curl_easy_strerror(code),
            sizeof(resp->error));
    else
        util_strlcpy(resp->error, errbuf, sizeof(resp->error));
    return -1;
}

void
upstream_response_cleanup(struct upstream_response *resp)
{
    dynbuf_cleanup(&resp->body);
}

const char *
upstream_http_name(long http_version)
{
    switch (http_version) {
    case 10:
        return "HTTP/1.0";
    case 11:
        return "HTTP/1.1";
    case 20:
        return "HTTP/2";
    default:
        return "-";
    }
}
