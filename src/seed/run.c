#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "seed/http.h"
#include "seed/progress.h"
#include "seed/run.h"
#include "util.h"

/* The first bytes of a body: enough for the proxy's JSON errors. */
#define BODY_KEEP 2048
#define HEADER_VALUE_MAX 64
/* A terminal's bar is redrawn this often. */
#define BAR_MS 200
/* The longest the loop sleeps: how soon a signal is seen at worst. */
#define TICK_MS 200
#define CONNECT_TIMEOUT_MS 10000
/* A 5xx or network error: 0.5 s, doubling, at most 30 s, per tile. */
#define RETRY_BASE_MS 500
#define RETRY_MAX_MS 30000
/* 429 or 503 without Retry-After: 1 s, doubling, at most 60 s. */
#define PAUSE_BASE_MS 1000
#define PAUSE_MAX_MS 60000
#define PAUSE_MIN_MS 100
/* A tile paused on this often fails: the run always ends. */
#define PAUSES_MAX 30
/* So many failed tiles in a row stop the run: something is broken. */
#define FAILS_IN_A_ROW_MAX 20
/* Successes after which one more transfer may run again after a pause. */
#define GROW_AFTER 32
/* Failed tiles named on stderr; further ones are only counted. */
#define FAILS_SHOWN_MAX 50

/* clang-format off */
static const char *const stop_names[SEED_STOP_COUNT] = {
#define SEED_STOP_ROW(id, name) name,
    SEED_STOP_LIST(SEED_STOP_ROW)
#undef SEED_STOP_ROW
};
/* clang-format on */

const char *
seed_stop_name(enum seed_stop s)
{
    return (unsigned)s < SEED_STOP_COUNT ? stop_names[s] : "error";
}

enum slot_state { SLOT_IDLE, SLOT_RUNNING, SLOT_WAITING };

/* One transfer at a time: a tile, its retries and its answer. */
struct slot {
    CURL *easy;
    enum slot_state state;
    struct seed_tile tile;
    int attempts; /* retries after 5xx or network errors */
    int pauses;   /* retries after 429 or 503 with Retry-After */
    int64_t not_before_ms;
    char url[SEED_URL_MAX];
    char content_type[HEADER_VALUE_MAX];
    char x_cache[HEADER_VALUE_MAX];
    char x_cache_nginx[HEADER_VALUE_MAX];
    char retry_after[HEADER_VALUE_MAX];
    char body[BODY_KEEP];
    size_t body_len;
    uint64_t bytes;
    char errbuf[CURL_ERROR_SIZE];
};

struct run {
    const struct seed_run_opts *o;
    struct seed_source *src;
    CURLM *multi;
    struct curl_slist *headers;
    struct slot *slots;
    int nslots;
    int allowed; /* transfers that may hold a tile now (<= nslots) */
    int active;  /* slots running or waiting */
    int grow;    /* successes since allowed last changed */
    int fails_in_a_row;
    int pause_streak;
    int64_t start_ms, pause_until_ms;
    int64_t last_line_ms, last_bar_ms;
    int source_done;
    int bar_shown;
    uint64_t read, fetched, cached, failed;
    enum seed_stop stop;
};

/* ------------------------------------------------------------ output */

static void
progress_of(const struct run *r, struct seed_progress *p, int64_t now)
{
    memset(p, 0, sizeof(*p));
    p->fetched = r->fetched;
    p->cached = r->cached;
    p->failed = r->failed;
    p->done = r->fetched + r->cached + r->failed;
    p->total = r->src->total;
    p->elapsed_s = (double)(now - r->start_ms) / 1000.0;
}

static int
terminal_width(void)
{
    struct winsize ws;

    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

static void
bar_draw(struct run *r, int64_t now)
{
    struct seed_progress p;
    char line[512];

    progress_of(r, &p, now);
    seed_progress_bar(line, sizeof(line), &p, terminal_width());
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    r->bar_shown = 1;
    r->last_bar_ms = now;
}

static void
line_print(struct run *r, const char *what, int64_t now)
{
    struct seed_progress p;
    char line[512];

    progress_of(r, &p, now);
    seed_progress_line(line, sizeof(line), &p);
    fprintf(stderr, "hereproxy-seed: %s: %s\n", what, line);
    r->last_line_ms = now;
}

static void
progress_tick(struct run *r, int64_t now)
{
    if (r->o->tty) {
        if (now - r->last_bar_ms >= BAR_MS)
            bar_draw(r, now);
    } else if (r->o->progress_ms > 0 &&
        now - r->last_line_ms >= r->o->progress_ms) {
        line_print(r, "progress", now);
    }
}

/* A message on its own line, the bar redrawn under it at the next tick. */
static void say(struct run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
say(struct run *r, const char *fmt, ...)
{
    va_list ap;

    if (r->bar_shown) {
        fputs("\r\033[K", stderr);
        r->bar_shown = 0;
        r->last_bar_ms = 0;
    }
    fputs("hereproxy-seed: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* --------------------------------------------------------- callbacks */

static size_t
on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct slot *s = userp;
    size_t n = size * nmemb, keep;

    keep = BODY_KEEP - s->body_len;
    if (keep > n)
        keep = n;
    memcpy(s->body + s->body_len, data, keep);
    s->body_len += keep;
    s->bytes += n;
    return n;
}

/* The value of "Name: value" into out, when the name is name. */
static void
header_take(const char *line, size_t len, const char *name, char *out)
{
    size_t vlen;
    const char *v = util_header_field(line, len, name, &vlen);

    if (v == NULL)
        return;
    /* A value too long for us is none of the short ones we look for. */
    if (vlen >= HEADER_VALUE_MAX)
        vlen = 0;
    memcpy(out, v, vlen);
    out[vlen] = '\0';
}

static void
slot_clear_answer(struct slot *s)
{
    s->content_type[0] = s->x_cache[0] = s->x_cache_nginx[0] = '\0';
    s->retry_after[0] = s->errbuf[0] = '\0';
    s->body_len = 0;
    s->bytes = 0;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct slot *s = userp;
    size_t n = size * nmemb;

    /* A new status line (after a 100 Continue, say): a new response. */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        slot_clear_answer(s);
        return n;
    }
    header_take(data, n, "Content-Type", s->content_type);
    header_take(data, n, "X-Cache", s->x_cache);
    header_take(data, n, "X-Cache-NGINX", s->x_cache_nginx);
    header_take(data, n, "Retry-After", s->retry_after);
    return n;
}

/* ------------------------------------------------------------ slots */

static int
slot_setup(struct run *r, struct slot *s)
{
    CURL *e = curl_easy_init();

    if (e == NULL)
        return -1;
    s->easy = e;
    if (curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEDATA, s) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_HEADERDATA, s) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PRIVATE, s) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->o->timeout_ms) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
            (long)CONNECT_TIMEOUT_MS) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_USERAGENT,
            "hereproxy-seed/" PACKAGE_VERSION) != CURLE_OK ||
        /* HTTP/2 to the proxy: one connection carries every transfer. */
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L) != CURLE_OK ||
        (r->headers != NULL &&
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) != CURLE_OK))
        return -1;
    return 0;
}

static int
slot_start(struct run *r, struct slot *s)
{
    if (seed_tile_url(s->url, sizeof(s->url), r->o->base_url, r->o->resource,
            &s->tile, r->o->format, r->o->query) != 0) {
        say(r, "tile %d/%ld/%ld: its URL is too long", s->tile.z, s->tile.x,
            s->tile.y);
        return -1;
    }
    slot_clear_answer(s);
    if (curl_easy_setopt(s->easy, CURLOPT_URL, s->url) != CURLE_OK ||
        curl_multi_add_handle(r->multi, s->easy) != CURLM_OK) {
        say(r, "libcurl refused a transfer");
        return -1;
    }
    s->state = SLOT_RUNNING;
    return 0;
}

static void
slot_release(struct run *r, struct slot *s)
{
    s->state = SLOT_IDLE;
    r->active--;
}

static void
stop_run(struct run *r, enum seed_stop why)
{
    if (r->stop == SEED_STOP_NONE)
        r->stop = why;
}

static void
tile_failed(struct run *r, struct slot *s, const char *why)
{
    r->failed++;
    if (r->failed <= FAILS_SHOWN_MAX)
        say(r, "tile %d/%ld/%ld failed: %s%s", s->tile.z, s->tile.x, s->tile.y,
            why,
            r->failed == FAILS_SHOWN_MAX ? " (further failures are only "
                                           "counted)"
                                         : "");
    slot_release(r, s);
    if (++r->fails_in_a_row >= FAILS_IN_A_ROW_MAX) {
        if (r->stop == SEED_STOP_NONE)
            say(r, "stopped: %d tiles in a row failed", r->fails_in_a_row);
        stop_run(r, SEED_STOP_FAILURES);
    }
}

static void
tile_done(struct run *r, struct slot *s, int fetched)
{
    if (fetched)
        r->fetched++;
    else
        r->cached++;
    r->fails_in_a_row = 0;
    r->pause_streak = 0;
    slot_release(r, s);
    if (r->allowed < r->nslots && ++r->grow >= GROW_AFTER) {
        r->allowed++;
        r->grow = 0;
    }
}

static int64_t
capped_double(int64_t base, int n, int64_t max)
{
    int64_t v = base;

    while (n-- > 0 && v < max)
        v *= 2;
    return v < max ? v : max;
}

/* 429 or 503: the whole run waits, then this tile is asked again. */
static void
tile_pause(
    struct run *r, struct slot *s, const struct seed_answer *a, int64_t now)
{
    int64_t wait_ms;

    if (++s->pauses > PAUSES_MAX) {
        tile_failed(r, s, a->message);
        return;
    }
    if (a->wait_s > r->o->max_wait_s) {
        if (r->stop == SEED_STOP_NONE)
            say(r,
                "stopped: the proxy answered %s and asks to wait %ld s, "
                "more than --max-wait %ld s",
                a->message, a->wait_s, r->o->max_wait_s);
        stop_run(r, SEED_STOP_WAIT);
        slot_release(r, s);
        return;
    }
    wait_ms = a->wait_s >= 0
        ? a->wait_s * 1000
        : capped_double(PAUSE_BASE_MS, r->pause_streak, PAUSE_MAX_MS);
    if (wait_ms < PAUSE_MIN_MS)
        wait_ms = PAUSE_MIN_MS;
    r->pause_streak++;
    if (now >= r->pause_until_ms)
        say(r, "the proxy answered %s; pausing %.1f s%s", a->message,
            (double)wait_ms / 1000.0,
            a->wait_s >= 0 ? " as its Retry-After asks" : "");
    if (now + wait_ms > r->pause_until_ms)
        r->pause_until_ms = now + wait_ms;
    /* Fewer at once after a pause; one more every GROW_AFTER tiles. */
    r->allowed = r->allowed > 1 ? r->allowed / 2 : 1;
    r->grow = 0;
    s->state = SLOT_WAITING;
    s->not_before_ms = now + wait_ms;
}

static void
tile_retry(
    struct run *r, struct slot *s, const struct seed_answer *a, int64_t now)
{
    char why[SEED_MESSAGE_MAX + 32];

    if (++s->attempts > r->o->retries) {
        snprintf(
            why, sizeof(why), "%s (%d retries)", a->message, r->o->retries);
        tile_failed(r, s, why);
        return;
    }
    s->state = SLOT_WAITING;
    s->not_before_ms =
        now + capped_double(RETRY_BASE_MS, s->attempts - 1, RETRY_MAX_MS);
}

/* A transfer ended: what its answer means. */
static void
transfer_done(struct run *r, struct slot *s, CURLcode result, int64_t now)
{
    struct seed_exchange x;
    struct seed_answer a;
    long status = 0;

    curl_multi_remove_handle(r->multi, s->easy);
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    memset(&x, 0, sizeof(x));
    x.transport_ok = result == CURLE_OK;
    x.transport_error =
        s->errbuf[0] != '\0' ? s->errbuf : curl_easy_strerror(result);
    x.status = status;
    x.content_type = s->content_type[0] ? s->content_type : NULL;
    x.x_cache = s->x_cache[0] ? s->x_cache : NULL;
    x.x_cache_nginx = s->x_cache_nginx[0] ? s->x_cache_nginx : NULL;
    x.retry_after = s->retry_after[0] ? s->retry_after : NULL;
    x.body = s->body;
    x.body_len = s->body_len;
    x.bytes = s->bytes;
    x.now_s = (int64_t)time(NULL);
    seed_answer_judge(&x, &a);
    switch (a.verdict) {
    case SEED_V_FETCHED: tile_done(r, s, 1); break;
    case SEED_V_CACHED: tile_done(r, s, 0); break;
    case SEED_V_FAILED: tile_failed(r, s, a.message); break;
    case SEED_V_RETRY: tile_retry(r, s, &a, now); break;
    case SEED_V_PAUSE: tile_pause(r, s, &a, now); break;
    case SEED_V_CACHE_ONLY:
    case SEED_V_REFUSED:
        if (r->stop == SEED_STOP_NONE)
            say(r, "stopped: the proxy answered %s", a.message);
        stop_run(r,
            a.verdict == SEED_V_CACHE_ONLY ? SEED_STOP_CACHE_ONLY
                                           : SEED_STOP_REFUSED);
        slot_release(r, s);
        break;
    }
}

/* Start what may start now: retries due, then new tiles. */
static void
start_due(struct run *r, int64_t now)
{
    char err[SEED_ERR_MAX];
    int i, got;

    if (now < r->pause_until_ms)
        return;
    for (i = 0; i < r->nslots && r->stop == SEED_STOP_NONE; i++) {
        struct slot *s = &r->slots[i];

        if (s->state == SLOT_WAITING && now >= s->not_before_ms &&
            slot_start(r, s) != 0)
            stop_run(r, SEED_STOP_ERROR);
    }
    for (i = 0; i < r->nslots && r->stop == SEED_STOP_NONE && !r->source_done &&
         r->active < r->allowed;
         i++) {
        struct slot *s = &r->slots[i];

        if (s->state != SLOT_IDLE)
            continue;
        got = r->src->next(r->src->ctx, &s->tile, err, sizeof(err));
        if (got <= 0) {
            r->source_done = 1;
            if (got < 0) {
                say(r, "stopped: %s", err);
                stop_run(r, SEED_STOP_INPUT);
            }
            break;
        }
        r->read++;
        s->attempts = s->pauses = 0;
        r->active++;
        if (slot_start(r, s) != 0) {
            slot_release(r, s);
            stop_run(r, SEED_STOP_ERROR);
        }
    }
}

/* How long the loop may sleep: until a retry is due, TICK_MS at most. */
static long
sleep_ms(const struct run *r, int64_t now)
{
    int64_t t = TICK_MS;
    int i;

    for (i = 0; i < r->nslots; i++) {
        const struct slot *s = &r->slots[i];
        int64_t due;

        if (s->state != SLOT_WAITING)
            continue;
        due = s->not_before_ms > r->pause_until_ms ? s->not_before_ms
                                                   : r->pause_until_ms;
        if (due - now < t)
            t = due - now;
    }
    return t > 0 ? (long)t : 0;
}

static int
anything_running(const struct run *r)
{
    int i;

    for (i = 0; i < r->nslots; i++)
        if (r->slots[i].state == SLOT_RUNNING)
            return 1;
    return 0;
}

static void
run_loop(struct run *r)
{
    struct CURLMsg *msg;
    int64_t now;
    int still, left, ended;

    for (;;) {
        if (*r->o->signalled) {
            stop_run(r, SEED_STOP_SIGNAL);
            return; /* transfers in flight are abandoned */
        }
        now = util_mono_ms();
        if (r->stop == SEED_STOP_NONE)
            start_due(r, now);
        /* Stopping: let what runs end, start nothing, drop what waits. */
        if (r->stop != SEED_STOP_NONE ? !anything_running(r)
                                      : r->active == 0 && r->source_done)
            return;
        if (curl_multi_perform(r->multi, &still) != CURLM_OK) {
            say(r, "libcurl failed");
            stop_run(r, SEED_STOP_ERROR);
            return;
        }
        now = util_mono_ms();
        ended = 0;
        while ((msg = curl_multi_info_read(r->multi, &left)) != NULL) {
            char *priv = NULL;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            transfer_done(
                r, (struct slot *)(void *)priv, msg->data.result, now);
            ended++;
        }
        progress_tick(r, now);
        /* A slot came free: its next tile starts now, not after a poll. */
        if (ended > 0)
            continue;
        if (curl_multi_poll(r->multi, NULL, 0, (int)sleep_ms(r, now), NULL) !=
            CURLM_OK) {
            say(r, "libcurl failed");
            stop_run(r, SEED_STOP_ERROR);
            return;
        }
    }
}

int
seed_run(const struct seed_run_opts *o, struct seed_source *src,
    struct seed_totals *out)
{
    struct run r;
    char header[32 + SEED_TOKEN_MAX];
    int i, rc = -1;
    int64_t end;

    memset(&r, 0, sizeof(r));
    memset(out, 0, sizeof(*out));
    r.o = o;
    r.src = src;
    r.nslots = o->concurrency;
    r.allowed = o->concurrency;
    if ((r.multi = curl_multi_init()) == NULL)
        goto fail;
    curl_multi_setopt(
        r.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o->concurrency);
    curl_multi_setopt(r.multi, CURLMOPT_MAXCONNECTS, (long)o->concurrency);
    if (o->token != NULL) {
        snprintf(header, sizeof(header), "X-Proxy-Token: %s", o->token);
        r.headers = curl_slist_append(NULL, header);
        explicit_bzero(header, sizeof(header));
        if (r.headers == NULL)
            goto fail;
    }
    if ((r.slots = calloc((size_t)r.nslots, sizeof(*r.slots))) == NULL)
        goto fail;
    for (i = 0; i < r.nslots; i++)
        if (slot_setup(&r, &r.slots[i]) != 0)
            goto fail;
    r.start_ms = util_mono_ms();
    r.last_line_ms = r.start_ms;
    run_loop(&r);
    end = util_mono_ms();
    if (o->tty) {
        bar_draw(&r, end);
        fputc('\n', stderr);
    } else {
        line_print(&r, r.stop == SEED_STOP_NONE ? "done" : "stopped", end);
    }
    out->tiles = src->total > 0 ? src->total : r.read;
    out->fetched = r.fetched;
    out->cached = r.cached;
    out->failed = r.failed;
    out->seconds = (double)(end - r.start_ms) / 1000.0;
    out->stopped = r.stop;
    rc = 0;
fail:
    if (rc != 0)
        fprintf(stderr, "hereproxy-seed: cannot set up libcurl\n");
    if (r.slots != NULL) {
        for (i = 0; i < r.nslots; i++) {
            if (r.slots[i].easy == NULL)
                continue;
            if (r.slots[i].state == SLOT_RUNNING)
                curl_multi_remove_handle(r.multi, r.slots[i].easy);
            curl_easy_cleanup(r.slots[i].easy);
        }
        free(r.slots);
    }
    curl_slist_free_all(r.headers);
    if (r.multi != NULL)
        curl_multi_cleanup(r.multi);
    return rc;
}
