#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admit.h"
#include "breaker.h"
#include "entry.h"
#include "flight.h"
#include "settings.h"
#include "tile.h"
#include "upstream.h"
#include "util.h"

/*
 * The tile flow with a fake cache and a fake HERE: no sockets, no
 * memcached, no engine thread. The store is a small table; the fetcher
 * either answers at once (a scripted response) or holds the flight for
 * the test to fill later, as HERE would while requests pile up.
 */

/* ------------------------------------------------------------ fake store */

#define SLOTS 16

struct fake_store {
    char keys[SLOTS][REQUEST_KEY_MAX];
    struct entry *entries[SLOTS];
    int puts, gets_rest, shared, locks, unlocks, lock_held_elsewhere;
};

static struct entry **
slot_of(struct fake_store *s, const char *key, size_t keylen, int create)
{
    int i;

    for (i = 0; i < SLOTS; i++)
        if (s->entries[i] != NULL && strlen(s->keys[i]) == keylen &&
            memcmp(s->keys[i], key, keylen) == 0)
            return &s->entries[i];
    for (i = 0; create && i < SLOTS; i++)
        if (s->entries[i] == NULL) {
            memcpy(s->keys[i], key, keylen);
            s->keys[i][keylen] = '\0';
            return &s->entries[i];
        }
    return NULL;
}

static struct entry *
fake_memory(void *ctx, const char *key, size_t keylen, int64_t now)
{
    struct entry **e = slot_of(ctx, key, keylen, 0);

    return e != NULL && (*e)->keep_until > now ? entry_ref(*e) : NULL;
}

static struct entry *
fake_rest(void *ctx, const char *key, size_t keylen, int64_t now,
    struct entry *memory)
{
    struct fake_store *s = ctx;

    (void)key;
    (void)keylen;
    (void)now;
    s->gets_rest++;
    return memory;
}

static struct entry *
fake_shared_get(void *ctx, const char *key, size_t keylen, int64_t now)
{
    (void)ctx;
    (void)key;
    (void)keylen;
    (void)now;
    return NULL;
}

static int
fake_is_shared(void *ctx)
{
    return ((struct fake_store *)ctx)->shared;
}

static int
fake_lock(void *ctx, const char *key, size_t keylen, long ttl_s)
{
    struct fake_store *s = ctx;

    (void)key;
    (void)keylen;
    (void)ttl_s;
    s->locks++;
    return !s->lock_held_elsewhere;
}

static void
fake_unlock(void *ctx, const char *key, size_t keylen)
{
    (void)key;
    (void)keylen;
    ((struct fake_store *)ctx)->unlocks++;
}

static void
fake_put(
    void *ctx, const char *key, size_t keylen, struct entry *e, int64_t now)
{
    struct fake_store *s = ctx;
    struct entry **slot = slot_of(s, key, keylen, 1);

    (void)now;
    s->puts++;
    assert_non_null(slot);
    entry_unref(*slot);
    *slot = entry_ref(e);
}

/* ----------------------------------------------------------- fake HERE */

struct fake_here {
    int hold; /* 1: keep the flight for the test to fill */
    int submits;
    struct flight *held;
    char last_inm[128];
    char last_path[REQUEST_KEY_MAX];
    /* The scripted answer. */
    int status;
    const char *ctype, *etag, *cache_control, *body;
};

static struct flights *flights;

static void
fill(struct flight *f, const struct fake_here *h)
{
    struct flight_head head;
    struct flight_result r;
    size_t len = strlen(h->body);

    memset(&head, 0, sizeof(head));
    head.status = h->status;
    head.content_length = (int64_t)len;
    snprintf(head.content_type, sizeof(head.content_type), "%s", h->ctype);
    snprintf(head.etag, sizeof(head.etag), "%s", h->etag);
    snprintf(
        head.cache_control, sizeof(head.cache_control), "%s", h->cache_control);
    /* As the engine does with a tile-sized body: the body, then the head
     * (whole) with the end. */
    if (len > 0)
        assert_int_equal(flight_append(f, h->body, len), 0);
    head.whole = 1;
    memset(&r, 0, sizeof(r));
    r.outcome = UPSTREAM_OK;
    r.attempts = 1;
    r.status = h->status;
    r.http_version = 20;
    flight_end_whole(f, &head, &r);
}

static int
fake_submit(void *ctx, struct flight *f, const char *path_and_query,
    int has_query, const char *if_none_match, enum upstream_expect expect)
{
    struct fake_here *h = ctx;

    (void)has_query;
    (void)expect;
    h->submits++;
    snprintf(h->last_path, sizeof(h->last_path), "%s", path_and_query);
    snprintf(h->last_inm, sizeof(h->last_inm), "%s",
        if_none_match ? if_none_match : "");
    if (h->hold) {
        /* Released: the test thread reads the flight this thread made. */
        __atomic_store_n(&h->held, flight_ref(flights, f), __ATOMIC_RELEASE);
        return 0;
    }
    fill(f, h);
    return 0;
}

/* ------------------------------------------------------------- fixture */

struct fixture {
    struct fake_store store;
    struct fake_here here;
    struct breaker breaker;
    struct settings cfg;
    struct tile_flow t;
    struct admit *limits;
};

static struct fixture fx;

/* The flight the fake HERE holds, as the thread that took it published it. */
static struct flight *
held(void)
{
    return __atomic_load_n(&fx.here.held, __ATOMIC_ACQUIRE);
}

static void
setup_with(const char *name, const char *value)
{
    char err[256];

    memset(&fx, 0, sizeof(fx));
    assert_int_equal(settings_init(&fx.cfg), 0);
    assert_int_equal(
        settings_set(&fx.cfg, "HERE_API_KEY", "k", err, sizeof(err)), 0);
    if (name != NULL)
        assert_int_equal(
            settings_set(&fx.cfg, name, value, err, sizeof(err)), 0);
    assert_non_null(flights = flights_new());
    breaker_init(&fx.breaker, 2, 60000);
    assert_non_null(fx.limits = admit_new(&fx.cfg, err, sizeof(err)));
    fx.t.store = (struct tile_store){&fx.store, fake_memory, fake_rest,
        fake_shared_get, fake_is_shared, fake_lock, fake_unlock, fake_put};
    fx.t.fetcher = (struct tile_fetcher){&fx.here, fake_submit};
    fx.t.flights = flights;
    fx.t.breaker = &fx.breaker;
    fx.t.limits = fx.limits;
    fx.here.status = 200;
    fx.here.ctype = "image/png";
    fx.here.etag = "\"v1\"";
    fx.here.cache_control = "max-age=600";
    fx.here.body = "PNG-bytes";
}

static int
setup(void **state)
{
    (void)state;
    setup_with(NULL, NULL);
    return 0;
}

static int
teardown(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < SLOTS; i++)
        entry_unref(fx.store.entries[i]);
    admit_free(fx.limits);
    breaker_cleanup(&fx.breaker);
    flights_free(flights);
    settings_cleanup(&fx.cfg);
    return 0;
}

static void
parse(struct tile_req *req, const char *uri)
{
    struct request_policy policy = {20, 0, NULL, 0};
    char err[256];

    assert_int_equal(
        request_parse("GET", uri, &policy, req, err, sizeof(err)), 0);
}

/* One request through the flow: the answer, then done. */
static void
get_done(const char *uri, struct tile_answer *a)
{
    struct tile_req req;

    parse(&req, uri);
    tile_get(&fx.t, &fx.cfg, &req, a);
    tile_done(&fx.t, &fx.cfg, &req, a);
}

/* ---------------------------------------------------------------- tests */

/* A miss fetches, answers the whole body, stores it; then a hit. */
static void
test_miss_then_hit(void **state)
{
    struct tile_req req;
    struct tile_answer a;

    (void)state;
    parse(&req, "/here-proxy/base/mc/3/1/2/png?indice=i1");
    tile_get(&fx.t, &fx.cfg, &req, &a);
    assert_int_equal(a.body, TILE_WHOLE);
    assert_int_equal(a.cache, CACHE_STATUS_MISS);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.len, 9);
    assert_memory_equal(a.data, "PNG-bytes", 9);
    assert_string_equal(a.content_type, "image/png");
    assert_string_equal(a.etag, "\"v1\"");
    assert_int_equal(a.max_age_s, 600);
    assert_true(a.waited);
    assert_int_equal(fx.here.submits, 1);
    assert_string_equal(fx.here.last_inm, "");
    tile_done(&fx.t, &fx.cfg, &req, &a);
    /* The leader stored it, took and gave back the lock, logged HERE's
     * exchange for the access line. */
    assert_int_equal(fx.store.puts, 1);
    assert_int_equal(fx.store.locks, 1);
    assert_int_equal(fx.store.unlocks, 0); /* no shared tier: no lock */
    assert_int_equal(a.upstream.attempts, 1);
    assert_int_equal(a.upstream.status, 200);

    get_done("/here-proxy/base/mc/3/1/2/png?indice=i2", &a);
    assert_int_equal(a.body, TILE_ENTRY);
    assert_int_equal(a.cache, CACHE_STATUS_HIT);
    assert_int_equal(a.status, 200);
    assert_memory_equal(a.data, "PNG-bytes", 9);
    assert_true(a.max_age_s > 590 && a.max_age_s <= 600);
    assert_false(a.waited);
    assert_int_equal(fx.here.submits, 1); /* not asked again */
}

/* A shared tier: the leader takes the lock and lets it go. */
static void
test_lock_with_a_shared_tier(void **state)
{
    struct tile_answer a;

    (void)state;
    fx.store.shared = 1;
    get_done("/here-proxy/base/mc/3/1/3/png", &a);
    assert_int_equal(a.cache, CACHE_STATUS_MISS);
    assert_int_equal(fx.store.locks, 1);
    assert_int_equal(fx.store.unlocks, 1);
}

struct follower {
    struct tile_answer a;
    struct tile_req req;
};

static void *
follow(void *arg)
{
    struct follower *f = arg;

    tile_get(&fx.t, &fx.cfg, &f->req, &f->a);
    return NULL;
}

/* Run tile_get in a thread and wait until the fake HERE holds the flight. */
static void
lead_in_thread(pthread_t *th, struct follower *leader)
{
    int i;

    assert_int_equal(pthread_create(th, NULL, follow, leader), 0);
    for (i = 0; i < 2000 && held() == NULL; i++) {
        struct timespec ts = {0, 1000000L};

        nanosleep(&ts, NULL);
    }
    assert_non_null(held());
}

/* A request that finds the tile being fetched follows: one fetch. */
static void
test_coalesced_follower(void **state)
{
    struct tile_req req;
    struct tile_answer a;
    struct follower f;
    pthread_t th;
    int i;

    (void)state;
    fx.here.hold = 1;
    parse(&req, "/here-proxy/base/mc/4/2/2/png?indice=lead");
    parse(&f.req, "/here-proxy/base/mc/4/2/2/png?indice=follow");
    /* The leader's answer waits for the head: fetch in a thread. */
    {
        struct follower leader = {.req = req};

        lead_in_thread(&th, &leader);
        {
            pthread_t th2;

            assert_int_equal(pthread_create(&th2, NULL, follow, &f), 0);
            /* The follower joined the running flight (no second fetch). */
            for (i = 0; i < 2000 && flight_readers(fx.here.held) < 2; i++) {
                struct timespec ts = {0, 1000000L};

                nanosleep(&ts, NULL);
            }
            assert_int_equal(flight_readers(fx.here.held), 2);
            fill(fx.here.held, &fx.here);
            flight_release(flights, fx.here.held);
            fx.here.held = NULL;
            pthread_join(th2, NULL);
        }
        pthread_join(th, NULL);
        a = leader.a;
    }
    assert_int_equal(fx.here.submits, 1);
    assert_int_equal(a.cache, CACHE_STATUS_MISS);
    assert_int_equal(f.a.cache, CACHE_STATUS_COALESCED);
    assert_int_equal(f.a.status, 200);
    assert_int_equal(f.a.body, TILE_WHOLE);
    assert_memory_equal(f.a.data, "PNG-bytes", 9);
    tile_done(&fx.t, &fx.cfg, &f.req, &f.a);
    assert_int_equal(f.a.upstream.attempts, 0); /* it led nothing */
    tile_done(&fx.t, &fx.cfg, &req, &a);
    assert_int_equal(fx.store.puts, 1); /* the leader stored */
}

/* Stale: served at once, revalidated after (If-None-Match), renewed. */
static void
test_stale_revalidation(void **state)
{
    struct tile_req req;
    struct tile_answer a;
    struct entry *e, **slot;
    int64_t now = (int64_t)time(NULL);

    (void)state;
    parse(&req, "/here-proxy/base/mc/5/1/1/png");
    e = entry_new(200, now - 10, now + 3600, "image/png", "\"old\"", "OLD", 3);
    fake_put(&fx.store, req.key, req.key_len, e, now);
    entry_unref(e);
    fx.store.puts = 0;
    fx.here.status = 304;
    fx.here.body = "";
    fx.here.etag = "\"old\"";
    tile_get(&fx.t, &fx.cfg, &req, &a);
    assert_int_equal(a.body, TILE_ENTRY);
    assert_int_equal(a.cache, CACHE_STATUS_STALE);
    assert_int_equal(a.max_age_s, 0);
    assert_memory_equal(a.data, "OLD", 3);
    assert_non_null(a.revalidation);
    assert_int_equal(fx.here.submits, 0); /* not before the answer */
    tile_done(&fx.t, &fx.cfg, &req, &a);
    /* HERE was asked conditionally, said not modified: fresh again. */
    assert_int_equal(fx.here.submits, 1);
    assert_string_equal(fx.here.last_inm, "\"old\"");
    assert_int_equal(fx.store.puts, 1);
    slot = slot_of(&fx.store, req.key, req.key_len, 0);
    assert_true((*slot)->fresh_until > now + 500);
    assert_memory_equal((*slot)->body, "OLD", 3);
    get_done("/here-proxy/base/mc/5/1/1/png", &a);
    assert_int_equal(a.cache, CACHE_STATUS_HIT);
}

/* HERE's 404: answered, remembered for CACHE_NEGATIVE_TTL, a HIT after. */
static void
test_negative(void **state)
{
    struct tile_answer a;

    (void)state;
    fx.here.status = 404;
    fx.here.ctype = "application/json";
    fx.here.body = "{}";
    get_done("/here-proxy/base/mc/6/0/0/png", &a);
    assert_int_equal(a.body, TILE_ERROR);
    assert_int_equal(a.status, 404);
    assert_int_equal(a.error, ERROR_UPSTREAM_4XX);
    assert_string_equal(a.message, "HERE answered 404 Not Found");
    assert_int_equal(fx.store.puts, 1);
    get_done("/here-proxy/base/mc/6/0/0/png", &a);
    assert_int_equal(a.body, TILE_ENTRY);
    assert_int_equal(a.cache, CACHE_STATUS_HIT);
    assert_int_equal(a.status, 404);
    assert_int_equal(a.error, ERROR_UPSTREAM_4XX);
    assert_true(a.max_age_s <= 60);
    assert_int_equal(fx.here.submits, 1);
}

/* An open breaker: no fetch, 503 with Retry-After; a cached tile still. */
static void
test_breaker_open(void **state)
{
    struct tile_answer a;

    (void)state;
    get_done("/here-proxy/base/mc/7/0/0/png", &a); /* cached */
    breaker_record(&fx.breaker, 0, util_mono_ms());
    breaker_record(&fx.breaker, 0, util_mono_ms()); /* threshold 2 */
    get_done("/here-proxy/base/mc/7/0/1/png", &a);
    assert_int_equal(a.body, TILE_ERROR);
    assert_int_equal(a.status, 503);
    assert_int_equal(a.error, ERROR_BREAKER_OPEN);
    assert_true(a.retry_after_s > 0);
    assert_int_equal(fx.here.submits, 1);
    get_done("/here-proxy/base/mc/7/0/0/png", &a);
    assert_int_equal(a.cache, CACHE_STATUS_HIT);
}

static int
setup_quota(void **state)
{
    (void)state;
    setup_with("QUOTA_UPSTREAM_INDEX", "1/day");
    return 0;
}

/* Cache-only: a spent quota refuses misses (503), serves what is cached. */
static void
test_cache_only(void **state)
{
    struct tile_answer a;

    (void)state;
    get_done("/here-proxy/base/mc/8/0/0/png?indice=q", &a);
    assert_int_equal(a.cache, CACHE_STATUS_MISS);
    get_done("/here-proxy/base/mc/8/0/1/png?indice=q", &a);
    assert_int_equal(a.body, TILE_ERROR);
    assert_int_equal(a.status, 503);
    assert_int_equal(a.error, ERROR_CACHE_ONLY);
    assert_non_null(strstr(a.message, "cache-only"));
    assert_true(a.retry_after_s > 0);
    assert_int_equal(fx.here.submits, 1);
    get_done("/here-proxy/base/mc/8/0/0/png?indice=q", &a);
    assert_int_equal(a.cache, CACHE_STATUS_HIT);
    /* Another índice still fetches. */
    get_done("/here-proxy/base/mc/8/0/1/png?indice=r", &a);
    assert_int_equal(a.cache, CACHE_STATUS_MISS);
}

/* What HERE sent wrong never reaches the client, and is not stored. */
static void
test_errors_not_stored(void **state)
{
    struct tile_answer a;

    (void)state;
    fx.here.status = 503;
    get_done("/here-proxy/base/mc/9/0/0/png", &a);
    assert_int_equal(a.body, TILE_ERROR);
    assert_int_equal(a.status, 502);
    assert_int_equal(a.error, ERROR_UPSTREAM_5XX);
    fx.here.status = 301;
    get_done("/here-proxy/base/mc/9/0/1/png", &a);
    assert_int_equal(a.status, 502);
    assert_int_equal(a.error, ERROR_UPSTREAM_3XX);
    assert_non_null(strstr(a.message, "redirects are not followed"));
    assert_int_equal(fx.store.puts, 0);
}

/* Every attempt stalled: a clean 504 for the client, nothing stored. */
static void
test_stalled_fetch(void **state)
{
    struct follower leader;
    struct flight_result r;
    pthread_t th;

    (void)state;
    fx.here.hold = 1;
    memset(&leader, 0, sizeof(leader));
    parse(&leader.req, "/here-proxy/base/mc/9/1/1/png");
    lead_in_thread(&th, &leader);
    /* The engine kept the head back (a tile): the readers saw nothing. */
    assert_int_equal(flight_append(fx.here.held, "PNG", 3), 0);
    memset(&r, 0, sizeof(r));
    r.outcome = UPSTREAM_STALLED;
    r.attempts = 3;
    r.stalls = 3;
    snprintf(r.error, sizeof(r.error), "HERE sent nothing for 5000 ms");
    flight_end(fx.here.held, FLIGHT_FAILED, &r);
    flight_release(flights, fx.here.held);
    fx.here.held = NULL;
    pthread_join(th, NULL);
    assert_int_equal(leader.a.body, TILE_ERROR);
    assert_int_equal(leader.a.status, 504);
    assert_int_equal(leader.a.error, ERROR_UPSTREAM_TIMEOUT);
    assert_non_null(strstr(leader.a.message, "stalled"));
    assert_non_null(strstr(leader.a.detail, "5000 ms"));
    tile_done(&fx.t, &fx.cfg, &leader.req, &leader.a);
    assert_int_equal(leader.a.upstream.stalls, 3);
    assert_int_equal(fx.store.puts, 0);
}

/*
 * A body larger than HERE_BUFFER_MAX_BYTES streams; when HERE stalls part
 * way, the reader sees it cut, and why.
 */
static void
test_stream_cut_by_stall(void **state)
{
    static char chunk[4096];
    struct follower leader;
    struct flight_head head;
    struct flight_result r;
    const void *p;
    size_t len, got = 0;
    pthread_t th;
    int cut = 0;

    (void)state;
    fx.here.hold = 1;
    memset(&leader, 0, sizeof(leader));
    parse(&leader.req, "/here-proxy/base/mc/9/1/2/png");
    lead_in_thread(&th, &leader);
    memset(&head, 0, sizeof(head));
    head.status = 200;
    head.content_length = 200000;
    snprintf(head.content_type, sizeof(head.content_type), "image/png");
    flight_set_head(fx.here.held, &head); /* not whole: it streams */
    assert_int_equal(flight_append(fx.here.held, chunk, sizeof(chunk)), 0);
    pthread_join(th, NULL);
    assert_int_equal(leader.a.body, TILE_STREAM);
    assert_int_equal(leader.a.content_length, 200000);
    p = tile_stream(&leader.a, &len, &cut);
    assert_non_null(p);
    got += len;
    memset(&r, 0, sizeof(r));
    r.outcome = UPSTREAM_STALLED;
    r.attempts = 1;
    r.stalls = 1;
    flight_end(fx.here.held, FLIGHT_FAILED, &r);
    flight_release(flights, fx.here.held);
    fx.here.held = NULL;
    while ((p = tile_stream(&leader.a, &len, &cut)) != NULL && len > 0)
        got += len;
    assert_int_equal(got, sizeof(chunk));
    assert_int_equal(cut, 1);
    assert_int_equal(leader.a.cut.outcome, UPSTREAM_STALLED);
    tile_done(&fx.t, &fx.cfg, &leader.req, &leader.a);
    assert_int_equal(fx.store.puts, 0);
}

/* Metadata: its own TTL, whatever HERE says. */
static void
test_metadata_ttl(void **state)
{
    struct tile_answer a;

    (void)state;
    fx.here.ctype = "application/json";
    fx.here.cache_control = "max-age=5";
    fx.here.body = "{\"copyrights\":{}}";
    get_done("/here-proxy/copyright", &a);
    assert_int_equal(a.cache, CACHE_STATUS_MISS);
    assert_int_equal(a.max_age_s, 3600); /* CACHE_META_TTL */
    assert_int_equal(tile_fresh_ttl(&fx.cfg, 0, 200, "max-age=5"), 5);
    assert_int_equal(tile_fresh_ttl(&fx.cfg, 0, 200, NULL), 3600);
    assert_int_equal(tile_fresh_ttl(&fx.cfg, 0, 200, "max-age=999999"),
        86400); /* CACHE_TTL_CAP */
    assert_int_equal(tile_fresh_ttl(&fx.cfg, 0, 404, NULL), 60);
}

/* A tile_doc's render: records what it got, writes "doc:" and it. */
struct render_log {
    int calls;
    int had_src;
    char src[64];
};

static char *
render_doc(void *ctx, const char *src, size_t src_len, size_t *len)
{
    struct render_log *r = ctx;
    char *out = malloc(80);

    r->calls++;
    r->had_src = src != NULL;
    snprintf(r->src, sizeof(r->src), "%.*s", (int)src_len, src ? src : "");
    snprintf(out, 80, "doc:%s", src ? src : "(none)");
    *len = strlen(out);
    return out;
}

/*
 * A document written from HERE's copyright: the copyright goes through
 * the flow (fetched once, then a hit), the document is kept under its own
 * key and is then a HIT without being written again.
 */
static void
test_doc_kept(void **state)
{
    struct render_log r = {0, 0, ""};
    struct tile_req source;
    struct tile_answer a;
    struct tile_doc doc;

    (void)state;
    fx.here.ctype = "application/json";
    fx.here.body = "{\"copyrights\":{}}";
    parse(&source, "/here-proxy/copyright?indice=docs");
    memset(&doc, 0, sizeof(doc));
    doc.source = &source;
    doc.key = "tilejson/base/png?x|https://a.example";
    doc.key_len = strlen(doc.key);
    doc.content_type = "application/json";
    doc.render = render_doc;
    doc.ctx = &r;
    tile_get_doc(&fx.t, &fx.cfg, &doc, &a);
    assert_int_equal(a.body, TILE_ENTRY);
    assert_int_equal(a.cache, CACHE_STATUS_MISS); /* HERE's copyright */
    assert_int_equal(a.upstream.attempts, 1);
    assert_int_equal(a.max_age_s, 3600); /* CACHE_META_TTL */
    assert_string_equal(a.detail, "");
    assert_int_equal(a.len, strlen("doc:{\"copyrights\":{}}"));
    assert_memory_equal(a.data, "doc:{\"copyrights\":{}}", a.len);
    assert_string_equal(a.content_type, "application/json");
    assert_int_equal(a.etag[0], '"');
    assert_int_equal(r.calls, 1);
    assert_string_equal(r.src, "{\"copyrights\":{}}");
    tile_done(&fx.t, &fx.cfg, &source, &a);
    assert_int_equal(fx.store.puts, 2); /* the copyright, the document */
    assert_non_null(slot_of(&fx.store, doc.key, doc.key_len, 0));

    tile_get_doc(&fx.t, &fx.cfg, &doc, &a);
    assert_int_equal(a.cache, CACHE_STATUS_HIT);
    assert_int_equal(r.calls, 1); /* not written again */
    assert_int_equal(fx.here.submits, 1);
    tile_done(&fx.t, &fx.cfg, &source, &a);

    /* Not kept (key NULL: a Host-made document): written each time, from
     * the copyright the cache holds. */
    doc.key = NULL;
    tile_get_doc(&fx.t, &fx.cfg, &doc, &a);
    assert_int_equal(a.cache, CACHE_STATUS_HIT);
    assert_int_equal(r.calls, 2);
    tile_done(&fx.t, &fx.cfg, &source, &a);
    assert_int_equal(fx.store.puts, 2);
    assert_int_equal(fx.here.submits, 1);
}

/* HERE's copyright fails: written without it, fresh briefly, kept nowhere. */
static void
test_doc_fallback(void **state)
{
    struct render_log r = {0, 0, ""};
    struct tile_req source;
    struct tile_answer a;
    struct tile_doc doc;

    (void)state;
    fx.here.status = 503;
    fx.here.ctype = "application/json";
    fx.here.body = "{}";
    parse(&source, "/here-proxy/copyright");
    memset(&doc, 0, sizeof(doc));
    doc.source = &source;
    doc.key = "wmts/1.0.0/png?x|https://a.example";
    doc.key_len = strlen(doc.key);
    doc.content_type = "application/xml";
    doc.render = render_doc;
    doc.ctx = &r;
    tile_get_doc(&fx.t, &fx.cfg, &doc, &a);
    assert_int_equal(a.body, TILE_ENTRY);
    assert_int_equal(a.status, 200);
    assert_int_equal(r.calls, 1);
    assert_false(r.had_src);
    assert_memory_equal(a.data, "doc:(none)", a.len);
    assert_int_equal(a.max_age_s, 60); /* CACHE_NEGATIVE_TTL */
    assert_non_null(strstr(a.detail, "HERE's copyright document unavailable"));
    assert_non_null(strstr(a.detail, "503"));
    tile_done(&fx.t, &fx.cfg, &source, &a);
    assert_int_equal(fx.store.puts, 0);
    assert_null(slot_of(&fx.store, doc.key, doc.key_len, 0));

    /* HERE answers again: the document is HERE's, and kept. */
    fx.here.status = 200;
    tile_get_doc(&fx.t, &fx.cfg, &doc, &a);
    assert_true(r.had_src);
    assert_string_equal(a.detail, "");
    tile_done(&fx.t, &fx.cfg, &source, &a);
    assert_non_null(slot_of(&fx.store, doc.key, doc.key_len, 0));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_miss_then_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_lock_with_a_shared_tier, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_coalesced_follower, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_stale_revalidation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negative, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breaker_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_only, setup_quota, teardown),
        cmocka_unit_test_setup_teardown(
            test_errors_not_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doc_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_fetch, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_stream_cut_by_stall, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
