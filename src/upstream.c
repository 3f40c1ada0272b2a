#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "flight.h"
#include "hereauth.h"
#include "log.h"
#include "upstream.h"
#include "util.h"

#define URL_MAX 4096
#define POLL_MAX_MS 1000
/* How often a job waiting for a HERE token looks again. */
#define TOKEN_POLL_MS 20
/* What "&apiKey=" and the longest key add to a URL. */
#define KEY_ROOM (8 + 512)

struct job {
    struct job *next;
    struct upstream *up;
    struct flight *flight;
    struct curl_slist *headers;
    CURL *easy;
    int attempts;
    int started;                 /* left the queue at least once */
    enum upstream_expect expect; /* the Content-Types a 200 may have */
    int header_noted;            /* a dropped header was logged */
    size_t path_off;             /* url's path under HERE_BASE_URL */
    /* The credential of the attempt (hereauth.h). */
    size_t url_len;                     /* url without the key */
    int has_query;                      /* the apiKey joins with '&' */
    int token_wait;                     /* parked until a HERE token comes */
    int auth_retry;                     /* HERE refused the credential: again */
    int auth_retried;                   /* once only */
    struct curl_slist *attempt_headers; /* headers, and the token */
    struct hereauth_ticket auth;        /* wiped at free */
    int64_t submitted_ms, deadline_ms, not_before_ms;
    int stalls; /* attempts abandoned by the watchdog */
    int fresh;  /* the next attempt opens a connection of its own */
    /* The attempt in progress. */
    int64_t attempt_ms;  /* when it started */
    int64_t progress_ms; /* the last byte from HERE, or the connection */
    int connected;       /* a connection was ready for it */
    int stalled;         /* abandoned by the watchdog */
    struct flight_head head;
    int head_published;
    int holding; /* the head is kept back until the body is whole */
    int discard; /* a retryable error's body: dropped */
    size_t received;
    int too_big;
    int bad_response; /* a Content-Type not allowed */
    char detail[160]; /* why, for the log, not curl's text */
    long retry_after_s;
    long status;
    long http_version;
    char error[CURL_ERROR_SIZE];
    char url[URL_MAX]; /* may hold the key: wiped before free */
};

struct upstream {
    const struct settings *cfg;
    long attempt_timeout_ms; /* settings_attempt_timeout_ms */
    struct flights *flights;
    struct hereauth *auth;
    CURLM *multi;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock; /* guards incoming and stopping */
    struct job *incoming, *incoming_tail;
    int stopping;
    /* Engine thread only. */
    struct job *waiting, *waiting_tail;
    struct job *running_jobs; /* linked through next */
    size_t running;
    int halting;
    CURL **idle;
    size_t nidle, idle_cap;
    uint32_t rnd;
    char user_agent[64];
    /* Read by other threads: atomics. */
    uint64_t n_requests, n_retries, n_inflight, n_queued, n_bytes;
};

static void
stat_add(uint64_t *counter, int64_t delta)
{
    __atomic_add_fetch(counter, (uint64_t)delta, __ATOMIC_RELAXED);
}

int64_t
upstream_backoff_ms(int attempt, long base_ms, long max_ms, uint32_t rnd)
{
    int64_t ceiling = base_ms;
    int i;

    for (i = 1; i < attempt && ceiling < max_ms; i++)
        ceiling *= 2;
    if (ceiling > max_ms)
        ceiling = max_ms;
    if (ceiling <= 0)
        return 0;
    return (int64_t)(rnd % (uint32_t)(ceiling + 1));
}

enum upstream_stall
upstream_stall_check(int64_t now, int64_t started_ms, int64_t progress_ms,
    int retryable, long timeout_ms, int64_t *next_ms)
{
    int64_t idle_end = progress_ms + timeout_ms;
    int64_t all_end = started_ms + timeout_ms;

    if (now >= idle_end)
        return UPSTREAM_STALL_IDLE;
    if (retryable && now >= all_end)
        return UPSTREAM_STALL_SLOW;
    *next_ms = (retryable && all_end < idle_end ? all_end : idle_end) - now;
    return UPSTREAM_STALL_NONE;
}

int
upstream_holds(int64_t content_length, uint64_t buffer_max)
{
    return content_length < 0 || (uint64_t)content_length <= buffer_max;
}

long
upstream_parse_retry_after(const char *value, time_t now)
{
    long v;
    time_t when;

    if (value == NULL || *value == '\0')
        return -1;
    if (util_parse_long(value, 0, 86400 * 7, &v) == 0)
        return v;
    /* The other form RFC 9110 allows: an HTTP-date. */
    if ((when = curl_getdate(value, NULL)) == -1)
        return -1;
    if (when <= now)
        return 0;
    return when - now > 86400 * 7 ? 86400 * 7 : (long)(when - now);
}

static uint32_t
next_random(struct upstream *up)
{
    /* xorshift32: jitter needs spread, not secrecy. */
    uint32_t x = up->rnd;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    up->rnd = x;
    return x;
}

enum upstream_header
upstream_header_value(const char *line, size_t len, const char *name, char *out,
    size_t outsize, size_t *value_len)
{
    size_t vlen, i;
    const char *v = util_header_field(line, len, name, &vlen);

    if (v == NULL)
        return UPSTREAM_HEADER_OTHER;
    if (value_len != NULL)
        *value_len = vlen;
    out[0] = '\0';
    /*
     * A value cut to fit would be another value: an ETag without its
     * closing quote, a Cache-Control without its last directive. Drop it
     * whole; the response goes on without it.
     */
    if (vlen >= outsize)
        return UPSTREAM_HEADER_TOO_LONG;
    /*
     * These values are copied into responses to clients: a CR, LF or
     * other control byte (a lone CR inside a line, a NUL) could split a
     * header there. Drop such a value whole rather than repair it.
     */
    for (i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)v[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return UPSTREAM_HEADER_BAD_BYTES;
    }
    memcpy(out, v, vlen);
    out[vlen] = '\0';
    return UPSTREAM_HEADER_KEPT;
}

const char *
upstream_media_type(const char *value, enum upstream_expect expect)
{
    static const struct {
        const char *name;
        enum upstream_expect expect;
    } allowed[] = {
        {"image/png", UPSTREAM_EXPECT_IMAGE},
        {"image/jpeg", UPSTREAM_EXPECT_IMAGE},
        {"application/json", UPSTREAM_EXPECT_JSON},
    };
    size_t len, i;

    if (value == NULL)
        return NULL;
    while (*value == ' ' || *value == '\t')
        value++;
    len = strcspn(value, ";");
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (allowed[i].expect == expect && strlen(allowed[i].name) == len &&
            strncasecmp(value, allowed[i].name, len) == 0)
            return allowed[i].name;
    return NULL;
}

static int
retryable_status(long status)
{
    return status == 429 || status >= 500;
}

/* More attempts allowed, and time left for one? */
static int
can_retry(const struct job *job, int64_t now)
{
    return job->attempts < job->up->cfg->here_retries && now < job->deadline_ms;
}

/*
 * A 200's Content-Type against the allow-list: the head then carries the
 * canonical media type. Returns -1, with the value (printable, bounded)
 * in job->detail for the log, when it is not allowed: the transfer stops
 * before anything reached a reader of the flight.
 */
static int
check_media_type(struct job *job)
{
    const char *type = upstream_media_type(job->head.content_type, job->expect);
    const char *v = job->head.content_type;
    char shown[72];
    size_t i;

    if (type != NULL) {
        util_strlcpy(
            job->head.content_type, type, sizeof(job->head.content_type));
        return 0;
    }
    job->bad_response = 1;
    if (*v == '\0') {
        util_strlcpy(
            job->detail, "HERE sent no Content-Type", sizeof(job->detail));
        return -1;
    }
    for (i = 0; v[i] != '\0' && i < 64; i++)
        shown[i] = v[i] >= 0x20 && v[i] < 0x7f && v[i] != '"' ? v[i] : '?';
    shown[i] = '\0';
    snprintf(job->detail, sizeof(job->detail),
        "HERE sent Content-Type \"%s%s\" (allowed: %s)", shown,
        v[i] != '\0' ? "..." : "",
        job->expect == UPSTREAM_EXPECT_JSON ? "application/json"
                                            : "image/png, image/jpeg");
    return -1;
}

/* A body larger than a tile: readers have the head now, and stream. */
static void
publish_head(struct job *job)
{
    job->head.whole = 0;
    flight_set_head(job->flight, &job->head);
    job->head_published = 1;
    job->holding = 0;
}

/*
 * End of the head: publish it, unless the status will be retried, or the
 * body is small enough to wait for (then it goes out whole, at the end).
 * Returns -1 when the announced body is over UPSTREAM_MAX_BYTES: the
 * transfer stops before anything reached a client, which then gets a clean
 * 502.
 */
static int
on_head_end(struct job *job)
{
    curl_off_t cl = -1;

    curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &job->status);
    if (job->status < 200)
        return 0; /* 100 Continue and friends */
    /*
     * HERE refused the key or token this attempt sent: once, when a newer
     * one is there or on its way (a rotation, a token HERE dropped), try
     * again with it rather than pass the 401 on.
     */
    if (job->status == 401 && !job->auth_retried &&
        util_mono_ms() < job->deadline_ms &&
        hereauth_refused(job->up->auth, &job->auth)) {
        job->auth_retry = 1;
        job->discard = 1;
        return 0;
    }
    if (retryable_status(job->status) && can_retry(job, util_mono_ms())) {
        job->discard = 1;
        return 0;
    }
    if (job->status == 200 && check_media_type(job) != 0)
        return -1;
    curl_easy_getinfo(job->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (cl > 0 && (uint64_t)cl > job->up->cfg->upstream_max_bytes) {
        job->too_big = 1;
        return -1;
    }
    job->head.status = (int)job->status;
    job->head.content_length = cl >= 0 ? (int64_t)cl : -1;
    /*
     * A tile-sized body: keep the head back until the body is whole, so
     * that a stall or a cut part way is retried instead of reaching the
     * clients as a 200 cut short. A larger one streams from here.
     */
    if (upstream_holds(
            job->head.content_length, job->up->cfg->here_buffer_max_bytes)) {
        job->holding = 1;
        return 0;
    }
    publish_head(job);
    return 0;
}

/*
 * A header value from HERE was dropped: say which and how long (never the
 * value), once per transfer.
 */
static void
note_dropped(struct job *job, const char *name, size_t len,
    enum upstream_header why, size_t max)
{
    const char *path = job->url + job->path_off;
    cJSON *f;

    if (job->header_noted)
        return;
    job->header_noted = 1;
    if ((f = cJSON_CreateObject()) != NULL) {
        char p[256];
        size_t plen = strcspn(path, "?");

        /* The path only: the query holds the key. */
        if (plen >= sizeof(p))
            plen = sizeof(p) - 1;
        memcpy(p, path, plen);
        p[plen] = '\0';
        cJSON_AddStringToObject(f, "header", name);
        cJSON_AddNumberToObject(f, "length", (double)len);
        cJSON_AddNumberToObject(f, "max", (double)max);
        cJSON_AddStringToObject(f, "reason",
            why == UPSTREAM_HEADER_TOO_LONG ? "too_long" : "control_bytes");
        cJSON_AddStringToObject(f, "path", p);
    }
    log_event(LOG_LEVEL_WARN, "upstream_header_dropped", f);
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct job *job = arg;
    struct flight_head *h = &job->head;
    size_t n = size * nmemb, vlen = 0, i;
    char retry_after[32];
    const struct {
        const char *name;
        char *out;
        size_t size;
    } fields[] = {
        {"Content-Type", h->content_type, sizeof(h->content_type)},
        {"ETag", h->etag, sizeof(h->etag)},
        {"Cache-Control", h->cache_control, sizeof(h->cache_control)},
        {"X-Correlation-Id", h->correlation_id, sizeof(h->correlation_id)},
        {"Retry-After", retry_after, sizeof(retry_after)},
    };

    job->progress_ms = util_mono_ms();
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        memset(h, 0, sizeof(*h));
        h->content_length = -1;
        job->retry_after_s = -1;
        return n;
    }
    if ((n == 2 && data[0] == '\r') || (n == 1 && data[0] == '\n'))
        return on_head_end(job) == 0 ? n : 0; /* 0: curl stops */
    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        enum upstream_header rc = upstream_header_value(
            data, n, fields[i].name, fields[i].out, fields[i].size, &vlen);

        if (rc == UPSTREAM_HEADER_OTHER)
            continue;
        if (rc != UPSTREAM_HEADER_KEPT)
            note_dropped(job, fields[i].name, vlen, rc, fields[i].size - 1);
        if (fields[i].out == retry_after)
            job->retry_after_s = rc == UPSTREAM_HEADER_KEPT
                ? upstream_parse_retry_after(retry_after, time(NULL))
                : -1;
        break;
    }
    return n;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct job *job = arg;
    size_t n = size * nmemb;

    job->progress_ms = util_mono_ms();
    if (job->discard || (!job->head_published && !job->holding))
        return n;
    if (n > job->up->cfg->upstream_max_bytes - job->received) {
        job->too_big = 1;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    /* Held back, the bytes go into the flight unseen: none reads them
     * before the head. */
    if (flight_append(job->flight, data, n) != 0)
        return 0;
    job->received += n;
    stat_add(&job->up->n_bytes, (int64_t)n);
    /* Without a Content-Length, larger than a tile: it streams now. */
    if (job->holding && job->received > job->up->cfg->here_buffer_max_bytes)
        publish_head(job);
    return n;
}

/* A connection is ready for the attempt (new or reused): progress. */
static int
on_prereq(void *arg, char *conn_primary_ip, char *conn_local_ip,
    int conn_primary_port, int conn_local_port)
{
    struct job *job = arg;

    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    job->connected = 1;
    job->progress_ms = util_mono_ms();
    return CURL_PREREQFUNC_OK;
}

static enum upstream_outcome
classify(CURLcode code, const struct job *job)
{
    /* Abandoned by the watchdog: before a connection, it never had one. */
    if (job->stalled)
        return job->connected ? UPSTREAM_STALLED : UPSTREAM_CONNECT;
    switch (code) {
    case CURLE_OK:
        /* A body that is not as long as announced was cut off. */
        if ((job->head_published || job->holding) &&
            job->head.content_length >= 0 &&
            (int64_t)job->received != job->head.content_length &&
            job->status != 304)
            return UPSTREAM_BROKEN;
        return UPSTREAM_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: return UPSTREAM_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return job->connected ? UPSTREAM_TIMEOUT : UPSTREAM_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER: return UPSTREAM_TLS;
    case CURLE_WRITE_ERROR:
        if (job->too_big)
            return UPSTREAM_TOO_BIG;
        return job->bad_response ? UPSTREAM_BAD_RESPONSE : UPSTREAM_BROKEN;
    default: return UPSTREAM_BROKEN;
    }
}

static void
queue_append(struct job **head, struct job **tail, struct job *job)
{
    job->next = NULL;
    if (*tail != NULL)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}

/* A header list that may hold a token: wiped, then freed. */
static void
headers_free(struct curl_slist *list)
{
    struct curl_slist *h;

    for (h = list; h != NULL; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(list);
}

/* Finish a job: end its flight with what happened, and free it. */
static void
job_finish(struct job *job, enum upstream_outcome outcome)
{
    struct upstream *up = job->up;
    struct flight_result r;
    enum flight_end end;

    memset(&r, 0, sizeof(r));
    if (outcome == UPSTREAM_OK && job->discard)
        outcome = UPSTREAM_HTTP_ERROR; /* retried status, out of tries */
    r.outcome = (int)outcome;
    r.attempts = job->attempts;
    r.stalls = job->stalls;
    r.status = (int)job->status;
    r.http_version = job->http_version;
    r.upstream_ms = (double)(util_mono_ms() - job->submitted_ms);
    r.retry_after_s = job->retry_after_s > 0 ? (int)job->retry_after_s : 0;
    /* Ours says more than curl's "Failed writing header". */
    util_strlcpy(
        r.error, *job->detail ? job->detail : job->error, sizeof(r.error));
    if (*r.error == '\0' && outcome != UPSTREAM_OK)
        util_strlcpy(r.error, upstream_outcome_name(outcome), sizeof(r.error));
    /* A body held back is whole: head, body and end reach the readers
     * now, at once. A failed one never reaches them: a clean error. */
    if (outcome == UPSTREAM_OK && job->holding) {
        job->head.whole = 1;
        flight_end_whole(job->flight, &job->head, &r);
    } else {
        end = outcome == UPSTREAM_OK && job->head_published ? FLIGHT_OK
                                                            : FLIGHT_FAILED;
        flight_end(job->flight, end, &r);
    }
    flight_release(up->flights, job->flight);
    curl_slist_free_all(job->headers);
    headers_free(job->attempt_headers);
    explicit_bzero(job->url, sizeof(job->url));
    explicit_bzero(&job->auth, sizeof(job->auth));
    free(job);
}

/*
 * What this attempt sends to HERE: the credential in force now, as apiKey
 * in the URL or as a bearer token in a header. 0; 1 when there is no
 * token yet (the job waits); 2 when there is none to be had (why in
 * job->detail); -1 when out of memory.
 */
static int
attempt_auth(struct upstream *up, struct job *job)
{
    struct curl_slist *h, *list = NULL;
    enum hereauth_state st;
    char line[HEREAUTH_TOKEN_MAX + 32];
    int w, rc = -1;

    st = hereauth_take(up->auth, &job->auth, job->detail, sizeof(job->detail));
    if (st != HEREAUTH_READY)
        return st == HEREAUTH_WAIT ? 1 : 2;
    job->url[job->url_len] = '\0';
    headers_free(job->attempt_headers);
    job->attempt_headers = NULL;
    for (h = job->headers; h != NULL; h = h->next)
        if ((list = curl_slist_append(list, h->data)) == NULL)
            goto done;
    if (job->auth.mode == HEREAUTH_KEY) {
        w = snprintf(job->url + job->url_len, sizeof(job->url) - job->url_len,
            "%capiKey=%s", job->has_query ? '&' : '?', job->auth.value);
        if (w < 0 || (size_t)w >= sizeof(job->url) - job->url_len)
            goto done;
    } else {
        w = snprintf(
            line, sizeof(line), "Authorization: Bearer %s", job->auth.value);
        h = w > 0 && (size_t)w < sizeof(line) ? curl_slist_append(list, line)
                                              : NULL;
        explicit_bzero(line, sizeof(line));
        if (h == NULL)
            goto done;
        list = h;
    }
    job->attempt_headers = list;
    list = NULL;
    rc = 0;
done:
    headers_free(list);
    return rc;
}

static CURL *
easy_take(struct upstream *up)
{
    CURL *h = up->nidle > 0 ? up->idle[--up->nidle] : curl_easy_init();

    if (h != NULL)
        curl_easy_reset(h);
    return h;
}

static void
easy_give_back(struct upstream *up, CURL *h)
{
    if (up->nidle == up->idle_cap) {
        size_t cap = up->idle_cap ? up->idle_cap * 2 : 16;
        CURL **idle = realloc(up->idle, cap * sizeof(*idle));
        if (idle == NULL) {
            curl_easy_cleanup(h);
            return;
        }
        up->idle = idle;
        up->idle_cap = cap;
    }
    up->idle[up->nidle++] = h;
}

static int
attempt_start(struct upstream *up, struct job *job, int64_t now)
{
    const struct settings *cfg = up->cfg;
    long remaining = (long)(job->deadline_ms - now);
    long connect_ms = cfg->here_connect_timeout_ms;
    CURL *h;
    int rc;

    if ((rc = attempt_auth(up, job)) != 0)
        return rc;
    if ((h = easy_take(up)) == NULL)
        return -1;
    /* Connecting is part of the attempt, and of the fetch. */
    if (connect_ms > up->attempt_timeout_ms)
        connect_ms = up->attempt_timeout_ms;
    if (connect_ms > remaining)
        connect_ms = remaining;
    job->easy = h;
    job->attempts++;
    job->started = 1;
    job->attempt_ms = job->progress_ms = now;
    job->connected = 0;
    job->stalled = 0;
    job->holding = 0;
    /* What an earlier attempt appended, unseen: this one starts afresh. */
    flight_discard_body(job->flight);
    job->discard = 0;
    job->received = 0;
    job->too_big = 0;
    job->bad_response = 0;
    job->auth_retry = 0;
    job->token_wait = 0;
    job->detail[0] = '\0';
    job->status = 0;
    job->retry_after_s = -1;
    job->error[0] = '\0';
    memset(&job->head, 0, sizeof(job->head));
    job->head.content_length = -1;
    curl_easy_setopt(h, CURLOPT_URL, job->url);
    curl_easy_setopt(h, CURLOPT_PRIVATE, job);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /*
     * Wait for a connection that may multiplex rather than open more. Only
     * over TLS, where ALPN tells soon: plain http:// is HTTP/1.1 here, and
     * waiting would hold every new transfer until the first one is done.
     */
    curl_easy_setopt(h, CURLOPT_PIPEWAIT,
        strncmp(cfg->here_base_url, "https://", 8) == 0 ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (*cfg->here_ca_file != '\0')
        curl_easy_setopt(h, CURLOPT_CAINFO, cfg->here_ca_file);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    /*
     * The whole fetch's deadline. The attempt's own bound is the
     * watchdog's (watch_attempts): it holds only while nothing was
     * published, and a large body that keeps coming is not cut for
     * taking long.
     */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, remaining);
    /*
     * After a stall, not over the same connection: over HTTP/2 the retry
     * would be one more stream on a connection that may be what stalled.
     */
    curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, job->fresh ? 1L : 0L);
    job->fresh = 0;
    curl_easy_setopt(h, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(h, CURLOPT_PREREQDATA, job);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, up->user_agent);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, job->attempt_headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, job);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, job);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, job->error);
    if (curl_multi_add_handle(up->multi, h) != CURLM_OK) {
        easy_give_back(up, h);
        job->easy = NULL;
        return -1;
    }
    job->next = up->running_jobs;
    up->running_jobs = job;
    up->running++;
    stat_add(&up->n_inflight, 1);
    stat_add(&up->n_requests, 1);
    return 0;
}

/* curl's message may quote the URL, and so the key: use its generic text. */
static void
scrub_error(struct job *job, CURLcode code)
{
    if (*job->error == '\0' || strstr(job->error, "apiKey") != NULL ||
        strstr(job->error, "Bearer") != NULL ||
        strstr(job->error, job->auth.value) != NULL)
        util_strlcpy(job->error, curl_easy_strerror(code), sizeof(job->error));
}

static void
attempt_done(struct upstream *up, struct job *job, CURLcode code)
{
    enum upstream_outcome outcome = classify(code, job);
    int64_t now = util_mono_ms(), delay;
    long version = 0;
    struct job **link;
    int retry;

    curl_easy_getinfo(job->easy, CURLINFO_HTTP_VERSION, &version);
    job->http_version = version == CURL_HTTP_VERSION_2_0 ? 20
        : version == CURL_HTTP_VERSION_1_1               ? 11
        : version == CURL_HTTP_VERSION_1_0               ? 10
                                                         : 0;
    for (link = &up->running_jobs; *link != NULL; link = &(*link)->next) {
        if (*link == job) {
            *link = job->next;
            break;
        }
    }
    job->next = NULL;
    curl_multi_remove_handle(up->multi, job->easy);
    curl_easy_setopt(job->easy, CURLOPT_ERRORBUFFER, NULL);
    easy_give_back(up, job->easy);
    job->easy = NULL;
    up->running--;
    stat_add(&up->n_inflight, -1);
    if (code != CURLE_OK)
        scrub_error(job, code);
    if (job->auth_retry && !up->halting && !job->head_published &&
        outcome == UPSTREAM_OK && now < job->deadline_ms) {
        /* At once: the new credential is there, or the job waits for it. */
        job->auth_retried = 1;
        job->discard = 0;
        job->not_before_ms = now;
        stat_add(&up->n_retries, 1);
        stat_add(&up->n_queued, 1);
        queue_append(&up->waiting, &up->waiting_tail, job);
        return;
    }
    retry = !up->halting && !job->head_published && can_retry(job, now) &&
        ((outcome == UPSTREAM_OK && job->discard) ||
            outcome == UPSTREAM_CONNECT || outcome == UPSTREAM_TIMEOUT ||
            outcome == UPSTREAM_STALLED || outcome == UPSTREAM_BROKEN);
    if (!retry) {
        job_finish(job, outcome);
        return;
    }
    delay = upstream_backoff_ms(job->attempts, up->cfg->here_retry_base_ms,
        up->cfg->here_retry_max_ms, next_random(up));
    if (job->retry_after_s >= 0) {
        int64_t ra = (int64_t)job->retry_after_s * 1000;
        delay =
            ra < up->cfg->here_retry_max_ms ? ra : up->cfg->here_retry_max_ms;
    }
    if (now + delay >= job->deadline_ms) {
        job_finish(job, outcome);
        return;
    }
    job->not_before_ms = now + delay;
    job->fresh = outcome == UPSTREAM_STALLED;
    stat_add(&up->n_retries, 1);
    /* Waiting again: start_waiting takes it off the count when it starts. */
    stat_add(&up->n_queued, 1);
    queue_append(&up->waiting, &up->waiting_tail, job);
}

/*
 * HERE stopped sending: say so for the log and the client's error (never
 * the URL: it holds the key), and mark the attempt to be abandoned.
 */
static void
note_stall(struct job *job, enum upstream_stall why, long timeout_ms)
{
    job->stalled = 1;
    if (!job->connected)
        snprintf(job->detail, sizeof(job->detail),
            "no connection to HERE within %ld ms (HERE_ATTEMPT_TIMEOUT_MS)",
            timeout_ms);
    else if (why == UPSTREAM_STALL_IDLE)
        snprintf(job->detail, sizeof(job->detail),
            "HERE sent nothing for %ld ms (HERE_ATTEMPT_TIMEOUT_MS) after "
            "%zu body bytes%s",
            timeout_ms, job->received,
            job->status == 0 ? ", before the head" : "");
    else
        snprintf(job->detail, sizeof(job->detail),
            "HERE took over %ld ms (HERE_ATTEMPT_TIMEOUT_MS) for %zu body "
            "bytes",
            timeout_ms, job->received);
    if (job->connected)
        job->stalls++;
}

/*
 * The watchdog: abandon the attempts HERE stopped feeding (they are
 * retried as attempt_done decides). Returns ms until it must look again.
 */
static long
watch_attempts(struct upstream *up, int64_t now)
{
    long timeout_ms = up->attempt_timeout_ms;
    int64_t next = POLL_MAX_MS, in = 0;
    struct job *job, *later;

    for (job = up->running_jobs; job != NULL; job = later) {
        enum upstream_stall why = upstream_stall_check(now, job->attempt_ms,
            job->progress_ms, !job->head_published, timeout_ms, &in);

        later = job->next; /* attempt_done unlinks this one only */
        if (why == UPSTREAM_STALL_NONE) {
            if (in < next)
                next = in;
            continue;
        }
        note_stall(job, why, timeout_ms);
        attempt_done(up, job, CURLE_OPERATION_TIMEDOUT);
    }
    return (long)next;
}

/* Start what may start; end what waited too long. Returns ms to sleep. */
static long
start_waiting(struct upstream *up, int64_t now)
{
    struct job *job = up->waiting, *keep = NULL, *keep_tail = NULL, *next;
    int64_t wake = now + POLL_MAX_MS;
    long max_inflight = up->cfg->here_max_inflight;

    up->waiting = up->waiting_tail = NULL;
    for (; job != NULL; job = next) {
        next = job->next;
        if (now >= job->deadline_ms) {
            stat_add(&up->n_queued, -1);
            if (job->token_wait)
                util_strlcpy(job->detail,
                    "no HERE token within HERE_TIMEOUT_MS",
                    sizeof(job->detail));
            job_finish(job,
                job->token_wait    ? UPSTREAM_AUTH
                    : job->started ? UPSTREAM_TIMEOUT
                                   : UPSTREAM_BUSY);
            continue;
        }
        /* A wait for a token is not a wait for a slot. */
        if (!job->started && !job->token_wait &&
            now - job->submitted_ms >= up->cfg->here_queue_timeout_ms) {
            stat_add(&up->n_queued, -1);
            job_finish(job, UPSTREAM_BUSY);
            continue;
        }
        if (job->not_before_ms <= now && (long)up->running < max_inflight) {
            int rc = attempt_start(up, job, now);

            if (rc == 1) {
                /* No token yet: look again soon, without a slot. */
                job->token_wait = 1;
                job->not_before_ms = now + TOKEN_POLL_MS;
            } else {
                stat_add(&up->n_queued, -1);
                if (rc != 0)
                    job_finish(job, rc == 2 ? UPSTREAM_AUTH : UPSTREAM_BROKEN);
                continue;
            }
        }
        if (job->not_before_ms > now && job->not_before_ms < wake)
            wake = job->not_before_ms;
        if (job->deadline_ms < wake)
            wake = job->deadline_ms;
        queue_append(&keep, &keep_tail, job);
    }
    up->waiting = keep;
    up->waiting_tail = keep_tail;
    return (long)(wake > now ? wake - now : 0);
}

static void
fail_everything(struct upstream *up)
{
    struct job *job, *next;

    up->halting = 1;
    while (up->running_jobs != NULL)
        attempt_done(up, up->running_jobs, CURLE_ABORTED_BY_CALLBACK);
    for (job = up->waiting; job != NULL; job = next) {
        next = job->next;
        job_finish(job, UPSTREAM_STOPPED);
    }
    up->waiting = up->waiting_tail = NULL;
}

static void
drain_messages(struct upstream *up)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(up->multi, &left)) != NULL) {
        struct job *job = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&job);
        if (job != NULL)
            attempt_done(up, job, msg->data.result);
    }
}

static void *
engine_main(void *arg)
{
    struct upstream *up = arg;

    for (;;) {
        struct job *incoming;
        int stopping, still = 0;
        long wait_ms, watch;

        pthread_mutex_lock(&up->lock);
        incoming = up->incoming;
        up->incoming = up->incoming_tail = NULL;
        stopping = up->stopping;
        pthread_mutex_unlock(&up->lock);
        while (incoming != NULL) {
            struct job *next = incoming->next;
            queue_append(&up->waiting, &up->waiting_tail, incoming);
            incoming = next;
        }
        if (stopping)
            break;
        wait_ms = start_waiting(up, util_mono_ms());
        curl_multi_perform(up->multi, &still);
        drain_messages(up);
        watch = watch_attempts(up, util_mono_ms());
        if (watch < wait_ms)
            wait_ms = watch;
        /* A finished transfer may have freed a slot for a waiting one. */
        if (up->waiting != NULL) {
            long again = start_waiting(up, util_mono_ms());
            if (again < wait_ms)
                wait_ms = again;
        }
        curl_multi_poll(up->multi, NULL, 0, (int)wait_ms, NULL);
    }
    fail_everything(up);
    return NULL;
}

struct upstream *
upstream_new(const struct settings *cfg, struct flights *flights,
    struct hereauth *auth, char *err, size_t errlen)
{
    struct upstream *up = calloc(1, sizeof(*up));
    long conns;

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
    up->flights = flights;
    up->auth = auth;
    up->attempt_timeout_ms = settings_attempt_timeout_ms(cfg);
    up->rnd = (uint32_t)util_mono_us() ^ ((uint32_t)getpid() << 16) ^ 1u;
    pthread_mutex_init(&up->lock, NULL);
    snprintf(up->user_agent, sizeof(up->user_agent), "hereproxy/%s",
        PACKAGE_VERSION);
    if ((up->multi = curl_multi_init()) == NULL) {
        snprintf(err, errlen, "curl_multi_init failed");
        upstream_free(up);
        return NULL;
    }
    /*
     * 0 (the default): as many connections as transfers may run. Over
     * HTTP/2, PIPEWAIT makes libcurl multiplex onto the open connection
     * rather than open more; an HTTP/1.1 upstream needs one connection per
     * concurrent transfer, and a lower cap would queue misses behind it.
     */
    conns = cfg->here_max_connections > 0 ? cfg->here_max_connections
                                          : cfg->here_max_inflight;
    curl_multi_setopt(up->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, conns);
    if (pthread_create(&up->thread, NULL, engine_main, up) != 0) {
        snprintf(err, errlen, "cannot start the upstream thread");
        upstream_free(up);
        return NULL;
    }
    up->thread_started = 1;
    return up;
}

void
upstream_free(struct upstream *up)
{
    size_t i;

    if (up == NULL)
        return;
    if (up->thread_started) {
        pthread_mutex_lock(&up->lock);
        up->stopping = 1;
        pthread_mutex_unlock(&up->lock);
        curl_multi_wakeup(up->multi);
        pthread_join(up->thread, NULL);
    }
    for (i = 0; i < up->nidle; i++)
        curl_easy_cleanup(up->idle[i]);
    free(up->idle);
    if (up->multi != NULL)
        curl_multi_cleanup(up->multi);
    pthread_mutex_destroy(&up->lock);
    curl_global_cleanup();
    free(up);
}

int
upstream_submit(struct upstream *up, struct flight *f,
    const char *path_and_query, int has_query, const char *if_none_match,
    enum upstream_expect expect)
{
    struct job *job = calloc(1, sizeof(*job));
    struct flight_result r;
    int w, stopping;

    memset(&r, 0, sizeof(r));
    if (job == NULL)
        goto fail;
    /* The credential joins at each attempt (attempt_auth). */
    w = snprintf(job->url, sizeof(job->url), "%s/%s", up->cfg->here_base_url,
        path_and_query);
    if (w < 0 || (size_t)w + KEY_ROOM >= sizeof(job->url))
        goto fail;
    job->url_len = (size_t)w;
    job->has_query = has_query;
    if (if_none_match != NULL && *if_none_match != '\0') {
        char line[300];
        snprintf(line, sizeof(line), "If-None-Match: %s", if_none_match);
        if ((job->headers = curl_slist_append(NULL, line)) == NULL)
            goto fail;
    }
    job->up = up;
    job->expect = expect;
    job->path_off = strlen(up->cfg->here_base_url);
    job->flight = flight_ref(up->flights, f);
    job->submitted_ms = util_mono_ms();
    job->deadline_ms = job->submitted_ms + up->cfg->here_timeout_ms;
    job->retry_after_s = -1;
    pthread_mutex_lock(&up->lock);
    stopping = up->stopping;
    if (!stopping)
        queue_append(&up->incoming, &up->incoming_tail, job);
    pthread_mutex_unlock(&up->lock);
    if (stopping) {
        flight_release(up->flights, job->flight);
        goto fail;
    }
    stat_add(&up->n_queued, 1);
    curl_multi_wakeup(up->multi);
    return 0;
fail:
    if (job != NULL) {
        curl_slist_free_all(job->headers);
        memset(job->url, 0, sizeof(job->url));
        free(job);
    }
    r.outcome = UPSTREAM_STOPPED;
    util_strlcpy(r.error, "cannot start the upstream request", sizeof(r.error));
    flight_end(f, FLIGHT_FAILED, &r);
    return -1;
}

void
upstream_stats(struct upstream *up, struct upstream_stats *out)
{
    out->requests = __atomic_load_n(&up->n_requests, __ATOMIC_RELAXED);
    out->retries = __atomic_load_n(&up->n_retries, __ATOMIC_RELAXED);
    out->inflight = __atomic_load_n(&up->n_inflight, __ATOMIC_RELAXED);
    out->queued = __atomic_load_n(&up->n_queued, __ATOMIC_RELAXED);
    out->bytes = __atomic_load_n(&up->n_bytes, __ATOMIC_RELAXED);
}

const char *
upstream_http_name(long http_version)
{
    switch (http_version) {
    case 10: return "HTTP/1.0";
    case 11: return "HTTP/1.1";
    case 20: return "HTTP/2";
    default: return "-";
    }
}

const char *
upstream_outcome_name(int outcome)
{
    static const char *const names[] = {"ok", "connect", "tls", "timeout",
        "stalled", "too_big", "broken", "busy", "http_error", "stopped", "shed",
        "cache_only", "auth", "bad_response"};
    _Static_assert(
        sizeof(names) / sizeof(names[0]) == UPSTREAM_BAD_RESPONSE + 1,
        "a name for each enum upstream_outcome");

    if (outcome < 0 || (size_t)outcome >= sizeof(names) / sizeof(names[0]))
        return "unknown";
    return names[outcome];
}
