#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acl.h"
#include "admit.h"
#include "cache.h"
#include "credentials.h"
#include "fcgi.h"
#include "flightjobs.h"
#include "handler.h"
#include "hereauth.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "nginx/counts.h"
#include "procstat.h"
#include "settings.h"
#include "siphash.h"
#include "upstream.h"
#include "util.h"

#define LISTEN_BACKLOG 1024
#define WORKER_STACK (512 * 1024)
/* How often a stopping main thread nudges the workers still waiting. */
#define WAKE_INTERVAL_MS 50
/* How long the watcher waits for a busy worker before it looks again. */
#define WATCH_POLL_MS 100
/* The time a worker asked to let its idle connection go is given. */
#define WATCH_RELEASE_WAIT_MS 20
/* At most one log line a minute about idle connections closed. */
#define WATCH_LOG_INTERVAL_MS 60000

extern char **environ;

struct worker {
    pthread_t thread;
    pthread_mutex_t lock; /* guards busy to release, for shutdown and watch */
    int busy;
    int fd;                /* the connection it serves, or -1 */
    int idle;              /* waiting on fd for its next request */
    int64_t idle_since_ms; /* since when (monotonic) */
    int release;           /* the watcher asks it to close fd while idle */
    int started;
    int done; /* atomic: the thread has returned */
    int listen_fd;
    struct handler *handler;
};

/* Set once by the main thread, read by the workers: atomic. */
static int stopping;

/*
 * The idle bound (HEREPROXY_IDLE_RELEASE_MS). A worker serves one
 * connection until it closes, and a web server keeps idle connections
 * open (NGINX: keepalive N per worker process, with fastcgi_keep_conn on):
 * when its pool is larger than HEREPROXY_THREADS, idle connections can
 * hold every worker while a new connection waits in the listen queue
 * forever. One thread watches for that: while no worker waits in
 * accept(), it polls the listening socket, and when a connection waits
 * there and no worker has come free for HEREPROXY_IDLE_RELEASE_MS, it asks
 * the worker whose connection has been idle longest (and at least that
 * long) to close it and accept the new one. Under a load that keeps
 * workers coming free (NGINX closing what its pool cannot keep), nothing
 * is closed: a connection closed under NGINX costs it a retry, at the
 * back of the queue.
 * NGINX sees the close, drops the connection from its pool, and a request
 * it sent at that very moment is sent again on a new connection. Nothing
 * polls while a worker is free: the last worker to leave accept() wakes
 * the watcher, and while every worker is taken it sleeps in ppoll() until a
 * connection comes.
 */
struct watch {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* no worker is left in accept(), or stop */
    int stop;
    struct worker *workers;
    long n;
    struct handler *h;
    int listen_fd;
    uint64_t logged;   /* idle_conns_closed at the last log line */
    int64_t logged_ms; /* and when */
    /* When a worker last went to accept(): a worker came free then. */
    _Atomic int64_t accept_ms;
};
static struct watch watch = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
};
/* TCP connections get the write timeout from the listening socket. */
static int options_inherited;

/*
 * SIGUSR1 only interrupts a worker's accept() or its wait for the next
 * request: it has no work to do, and is installed without SA_RESTART so
 * that the blocked call returns EINTR. Workers keep it blocked except
 * while they wait,
 * so a request in progress never sees EINTR.
 */
static void
on_wake(int sig)
{
    (void)sig;
}

static void
usage(FILE *fp)
{
    fprintf(fp,
        "usage: hereproxy.fcgi [--listen ADDR] [--check-config]\n"
        "       hereproxy.fcgi --help | --version\n"
        "\n"
        "A caching FastCGI proxy for HERE raster tiles.\n"
        "\n"
        "  -l, --listen ADDR    listen on HOST:PORT, [IPv6]:PORT or a Unix\n"
        "                       socket path with a / (default: the socket\n"
        "                       on fd 0, as handed over by spawn-fcgi)\n"
        "  -c, --check-config   validate the configuration, print it with\n"
        "                       the API key redacted, and exit\n"
        "  -h, --help           show this help\n"
        "  -V, --version        show the version\n"
        "\n"
        "Settings come from the environment and from the file named by\n"
        "HEREPROXY_CONFIG; see hereproxy.fcgi(8).\n");
}

/*
 * A web server that stops reading (its client stalls, and it does not
 * buffer) must not hold this worker forever: a write that makes no
 * progress for HEREPROXY_WRITE_TIMEOUT_MS fails, and the request ends.
 */
static void
set_write_timeout(int fd, long timeout_ms)
{
    struct timeval tv;

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    if (fd >= 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
        log_warn("setsockopt(SO_SNDTIMEO)");
}

/*
 * Linux copies a listening TCP socket's options to the connections it
 * accepts (not a Unix-domain socket's): set the write timeout there once,
 * and TCP_NODELAY, so that the small last record of a response (the end of
 * the body, FCGI_END_REQUEST) is not held back until NGINX acknowledges the
 * previous write. Returns 1 when accepted connections inherit them.
 */
static int
tune_listener(int fd, long write_timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int one = 1;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return 0;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        log_warn("setsockopt(TCP_NODELAY)");
    set_write_timeout(fd, write_timeout_ms);
    return 1;
}

/*
 * Wait for the next request on a connection or a new connection, with the
 * wake-up signal let through. A wake-up sent between the stopping check
 * and the call is lost; the main thread sends it again until the thread
 * has returned.
 */
static void
waiting(int on)
{
    sigset_t wake;

    sigemptyset(&wake);
    sigaddset(&wake, SIGUSR1);
    pthread_sigmask(on ? SIG_UNBLOCK : SIG_BLOCK, &wake, NULL);
}

/* Idle: not busy with a connection (fd >= 0) to wait on. */
static void
set_busy(struct worker *w, int busy, int fd)
{
    pthread_mutex_lock(&w->lock);
    w->busy = busy;
    w->fd = fd;
    w->idle = !busy && fd >= 0;
    if (w->idle)
        w->idle_since_ms = util_mono_ms();
    w->release = 0;
    pthread_mutex_unlock(&w->lock);
}

/*
 * The watcher asked this worker to let its idle connection go, and
 * nothing of a next request has come on it: 1, and it is counted.
 */
static int
released(struct worker *w, struct fcgi_conn *conn)
{
    int asked;

    pthread_mutex_lock(&w->lock);
    asked = w->release;
    pthread_mutex_unlock(&w->lock);
    if (!asked || !fcgi_conn_idle(conn))
        return 0;
    atomic_fetch_add_explicit(
        &w->handler->idle_conns_closed, 1, memory_order_relaxed);
    return 1;
}

/* A worker leaves accept(): the last one to do so wakes the watcher. */
static void
accept_left(struct handler *h)
{
    if (atomic_fetch_sub_explicit(
            &h->threads_accepting, 1, memory_order_relaxed) == 1) {
        pthread_mutex_lock(&watch.lock);
        pthread_cond_signal(&watch.cond);
        pthread_mutex_unlock(&watch.lock);
    }
}

/* The requests of one connection, until it closes or must be dropped. */
static void
serve_connection(struct worker *w, struct fcgi_conn *conn)
{
    struct request_params rp;
    struct fcgi_request req;
    struct fcgi_out out;

    for (;;) {
        int rc;

        set_busy(w, 0, fcgi_conn_fd(conn));
        waiting(1);
        /* A wake-up may have come before the wait: look first. */
        if (__atomic_load_n(&stopping, __ATOMIC_ACQUIRE) || released(w, conn)) {
            waiting(0);
            return;
        }
        atomic_fetch_add_explicit(
            &w->handler->threads_idle_conn, 1, memory_order_relaxed);
        rc = fcgi_read_request(conn, &req);
        atomic_fetch_sub_explicit(
            &w->handler->threads_idle_conn, 1, memory_order_relaxed);
        waiting(0);
        if (rc == -2) {
            /* A wake-up: stopping, the watcher, or a lost race. */
            if (released(w, conn))
                return;
            continue;
        }
        if (rc <= 0)
            return;
        set_busy(w, 1, fcgi_conn_fd(conn));
        atomic_fetch_add_explicit(
            &w->handler->threads_busy, 1, memory_order_relaxed);
        request_params_read(&rp, req.params, req.nparams);
        fcgi_out_init(&out, conn, req.id);
        handler_serve(w->handler, &rp, &out);
        if (!out.ended && !out.failed)
            fcgi_end(&out);
        atomic_fetch_sub_explicit(
            &w->handler->threads_busy, 1, memory_order_relaxed);
        if (out.failed || !req.keep_conn)
            return;
    }
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;

    for (;;) {
        struct fcgi_conn *conn;
        int fd;

        set_busy(w, 0, -1);
        waiting(1);
        if (__atomic_load_n(&stopping, __ATOMIC_ACQUIRE)) {
            waiting(0);
            break;
        }
        atomic_fetch_add_explicit(
            &w->handler->threads_accepting, 1, memory_order_relaxed);
        atomic_store_explicit(
            &watch.accept_ms, util_mono_ms(), memory_order_relaxed);
        fd = accept4(w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        accept_left(w->handler);
        waiting(0);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
                errno == ENOBUFS) {
                /* Out of descriptors: let the others finish some. */
                struct timespec ts = {0, 100 * 1000000L};

                nanosleep(&ts, NULL);
            } else if (errno != EINTR && errno != ECONNABORTED &&
                errno != EAGAIN && errno != EPROTO) {
                log_warn("accept");
                break;
            }
            continue;
        }
        if (!options_inherited)
            set_write_timeout(fd, handler_cfg(w->handler)->write_timeout_ms);
        if ((conn = fcgi_conn_new(fd)) == NULL)
            continue;
        serve_connection(w, conn);
        set_busy(w, 0, -1);
        fcgi_conn_free(conn);
    }
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/*
 * The worker whose connection has been idle longest, for bound_ms at
 * least; NULL when none has, and then *wait_ms is when the first will
 * (-1: no worker is idle). One asked already is asked again: the signal
 * may have come just before its wait.
 */
static struct worker *
watch_pick(int64_t now_ms, long bound_ms, int64_t *wait_ms)
{
    struct worker *best = NULL;
    int64_t best_since = 0;
    long i;

    *wait_ms = -1;
    for (i = 0; i < watch.n; i++) {
        struct worker *w = &watch.workers[i];
        int64_t left;

        pthread_mutex_lock(&w->lock);
        if (w->idle) {
            left = w->idle_since_ms + bound_ms - now_ms;
            if (left <= 0 && (best == NULL || w->idle_since_ms < best_since)) {
                best = w;
                best_since = w->idle_since_ms;
            } else if (left > 0 && (*wait_ms < 0 || left < *wait_ms)) {
                *wait_ms = left;
            }
        }
        pthread_mutex_unlock(&w->lock);
    }
    return best;
}

/* Ask w to close its idle connection (see serve_connection). */
static void
watch_release(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    if (w->idle) {
        w->release = 1;
        pthread_kill(w->thread, SIGUSR1);
    }
    pthread_mutex_unlock(&w->lock);
}

/* At most once a minute: how many idle connections were closed. */
static void
watch_log(long bound_ms)
{
    uint64_t n =
        atomic_load_explicit(&watch.h->idle_conns_closed, memory_order_relaxed);
    int64_t now = util_mono_ms();
    cJSON *f;

    if (n == watch.logged ||
        (watch.logged_ms != 0 && now - watch.logged_ms < WATCH_LOG_INTERVAL_MS))
        return;
    if ((f = cJSON_CreateObject()) != NULL) {
        cJSON_AddNumberToObject(f, "closed", (double)(n - watch.logged));
        cJSON_AddNumberToObject(f, "threads", (double)watch.n);
        cJSON_AddNumberToObject(f, "idle_release_ms", (double)bound_ms);
        cJSON_AddStringToObject(f, "hint",
            "every worker was busy or held by an idle kept-alive "
            "connection while new connections waited: raise "
            "HEREPROXY_THREADS above the web server's keep-alive pool");
    }
    log_event(LOG_LEVEL_WARN, "idle_connections_closed", f);
    watch.logged = n;
    watch.logged_ms = now;
}

/* Sleep on the watch's condition for ms at most; called locked. */
static void
watch_wait(long ms)
{
    struct timespec ts;

    util_timespec_in(CLOCK_MONOTONIC, ms, &ts);
    pthread_cond_timedwait(&watch.cond, &watch.lock, &ts);
}

static void *
watch_main(void *arg)
{
    struct handler *h = arg;
    sigset_t wake_only;

    /* Every signal blocked but SIGUSR1, which watch_stop sends. */
    sigfillset(&wake_only);
    sigdelset(&wake_only, SIGUSR1);

    pthread_mutex_lock(&watch.lock);
    while (!watch.stop) {
        long bound = handler_cfg(h)->idle_release_ms;
        struct pollfd p = {watch.listen_fd, POLLIN, 0};
        struct worker *w;
        int64_t wait_ms;
        int waiting_conn;

        if (bound <= 0 ||
            atomic_load_explicit(&h->threads_accepting, memory_order_relaxed) >
                0) {
            /* A worker is free (or the bound is off): nothing to do. */
            pthread_cond_wait(&watch.cond, &watch.lock);
            continue;
        }
        pthread_mutex_unlock(&watch.lock);
        /*
         * No worker in accept(): wait for a connection to come, with the
         * stop signal let through (ppoll unblocks it atomically, so one
         * sent before is not lost).
         */
        waiting_conn = ppoll(&p, 1, NULL, &wake_only) == 1 &&
            (p.revents & POLLIN) &&
            atomic_load_explicit(&h->threads_accepting, memory_order_relaxed) ==
                0;
        w = NULL;
        if (waiting_conn) {
            int64_t now = util_mono_ms();
            int64_t stuck = now -
                atomic_load_explicit(&watch.accept_ms, memory_order_relaxed);

            /* No worker came free for the bound: close an idle one. */
            if (stuck >= bound)
                w = watch_pick(now, bound, &wait_ms);
            else
                wait_ms = bound - stuck;
        }
        if (w != NULL)
            watch_release(w);
        watch_log(bound);
        pthread_mutex_lock(&watch.lock);
        if (!waiting_conn || watch.stop)
            continue;
        /*
         * Until the worker asked has taken the connection (the last to
         * leave accept() wakes us), or until an idle connection is old
         * enough, or a busy worker may be done.
         */
        watch_wait(w != NULL  ? WATCH_RELEASE_WAIT_MS
                : wait_ms > 0 ? (long)wait_ms
                              : WATCH_POLL_MS);
    }
    pthread_mutex_unlock(&watch.lock);
    return NULL;
}

/* Before the workers start: they signal its condition. */
static void
watch_init(struct worker *workers, long n, struct handler *h, int listen_fd)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&watch.cond, &ca);
    pthread_condattr_destroy(&ca);
    watch.workers = workers;
    watch.n = n;
    watch.h = h;
    watch.listen_fd = listen_fd;
}

/* After the workers started: it reads their state. */
static void
watch_start(void)
{
    if (pthread_create(&watch.thread, NULL, watch_main, watch.h) != 0)
        fatalx("cannot start the idle connection watcher thread");
}

static void
watch_stop(void)
{
    pthread_mutex_lock(&watch.lock);
    watch.stop = 1;
    pthread_cond_signal(&watch.cond);
    pthread_mutex_unlock(&watch.lock);
    pthread_kill(watch.thread, SIGUSR1); /* out of ppoll */
    pthread_join(watch.thread, NULL);
    /* The condition stays: workers leaving accept() still signal it. */
}

/* A socket on fd 0 (spawn-fcgi), or one we open from --listen. */
static int
open_listener(const char *listen_addr, const char *what, int *unix_path)
{
    struct listen_addr a;
    struct stat st;
    char err[256];
    int fd;

    *unix_path = 0;
    if (listen_addr != NULL && *listen_addr != '\0') {
        if (listen_parse(listen_addr, &a, err, sizeof(err)) != 0)
            fatalx("%s %s: %s", what, listen_addr, err);
        *unix_path = a.kind == LISTEN_UNIX;
        if ((fd = listen_open(&a, LISTEN_BACKLOG, err, sizeof(err))) < 0)
            fatalx("%s (in use, or no permission?)", err);
        return fd;
    }
    if (fstat(0, &st) != 0 || !S_ISSOCK(st.st_mode))
        fatalx("fd 0 is not a listening socket: start under spawn-fcgi, "
               "or use --listen HOST:PORT or --listen /path/to.sock");
    return 0;
}

/*
 * Stop: no new connections, and wake the workers that wait on a kept-alive
 * FastCGI connection or in accept(). The listening socket may be shared
 * with other processes (inherited as fd 0 from spawn-fcgi or systemd, or a
 * new instance started beside this one): shutdown() on it would stop them
 * all, so it is left alone and the waiting workers are interrupted with
 * SIGUSR1 instead. Busy workers finish the request they have.
 * Called again (again = 1) until every worker has returned, since a
 * wake-up can come just before a worker enters accept(); only the signal
 * is repeated: a descriptor number read again later could by then belong
 * to a new request or to another module.
 */
static void
wake_workers(struct worker *workers, long n, int again)
{
    long i;

    __atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
    for (i = 0; i < n; i++) {
        struct worker *w = &workers[i];

        if (!w->started || __atomic_load_n(&w->done, __ATOMIC_ACQUIRE))
            continue;
        pthread_mutex_lock(&w->lock);
        /* An idle kept-alive connection is ours alone: end it. */
        if (!again && !w->busy && w->fd >= 0)
            shutdown(w->fd, SHUT_RD);
        pthread_mutex_unlock(&w->lock);
        pthread_kill(w->thread, SIGUSR1);
    }
}

/*
 * Wait up to grace_ms for every worker, nudging the idle ones. Returns 1
 * when all have returned.
 */
static int
join_workers(struct worker *workers, long n, long grace_ms)
{
    int64_t deadline = util_mono_ms() + grace_ms;
    long i;

    for (;;) {
        int all = 1;

        for (i = 0; i < n; i++)
            if (workers[i].started &&
                !__atomic_load_n(&workers[i].done, __ATOMIC_ACQUIRE))
                all = 0;
        if (all)
            break;
        if (util_mono_ms() >= deadline)
            return 0;
        wake_workers(workers, n, 1);
        {
            struct timespec ts = {0, WAKE_INTERVAL_MS * 1000000L};

            nanosleep(&ts, NULL);
        }
    }
    for (i = 0; i < n; i++) {
        if (!workers[i].started)
            continue;
        pthread_join(workers[i].thread, NULL);
        pthread_mutex_destroy(&workers[i].lock);
    }
    return 1;
}

/* Configurations a reload replaced: still read by late requests. */
struct retired {
    struct settings *cfg;
    struct retired *next;
};

/*
 * SIGHUP: load the configuration again (environment, HEREPROXY_CONFIG,
 * HERE_API_KEY_FILE, HERE_CREDENTIALS_FILE) and, when it is valid, swap in
 * the settings that can change while requests run, the HERE credential
 * among them (hereauth.h). The others need a restart: they keep their
 * values, and the reload says which of them changed. The replaced settings
 * are kept until exit, as a request may still read them.
 */
static void
reload(struct handler *h, struct retired **retired)
{
    const struct settings *cur = __atomic_load_n(&h->cfg, __ATOMIC_ACQUIRE);
    struct settings *next = calloc(1, sizeof(*next));
    struct retired *r = calloc(1, sizeof(*r));
    char err[512], changed[512], rotated[32];
    cJSON *f = NULL;
    int n;

    if (next == NULL || r == NULL) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    if (settings_load(next, environ, err, sizeof(err)) != 0)
        goto fail;
    if ((n = settings_keep_restart_only(next, cur, changed, sizeof(changed))) <
        0) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    if (admit_reload(h->limits, next, err, sizeof(err)) != 0)
        goto fail;
    /* A new key or credentials: for the attempts that start from now. */
    hereauth_update(h->auth, next, rotated, sizeof(rotated));
    log_set_level((enum log_level)next->log_level);
    cache_set_bounds(h->cache, next);
    __atomic_store_n(&h->cfg, next, __ATOMIC_RELEASE);
    r->cfg = next;
    r->next = *retired;
    *retired = r;
    if ((f = cJSON_CreateObject()) != NULL) {
        cJSON_AddStringToObject(f, "cors_origins", next->cors_origins);
        cJSON_AddStringToObject(
            f, "log_level", log_level_name((enum log_level)next->log_level));
        cJSON_AddStringToObject(f, "rate_limit_index", next->rate_limit_index);
        cJSON_AddStringToObject(
            f, "quota_upstream_index", next->quota_upstream_index);
        if (n > 0)
            cJSON_AddStringToObject(f, "restart_needed", changed);
        if (*rotated != '\0')
            cJSON_AddStringToObject(f, "rotated", rotated);
        if (*rotated != '\0' && next->here_credentials != NULL)
            cJSON_AddStringToObject(
                f, "here_access_key_id", next->here_credentials->access_key_id);
    }
    log_event(LOG_LEVEL_INFO, "reload", f);
    return;
fail:
    if ((f = cJSON_CreateObject()) != NULL)
        cJSON_AddStringToObject(f, "error", err);
    log_event(LOG_LEVEL_ERROR, "reload_failed", f);
    if (next != NULL)
        settings_cleanup(next);
    free(next);
    free(r);
}

/*
 * The proxy libcurl takes from the environment for HERE, in its order
 * (curl's lib/url.c): for https, https_proxy then HTTPS_PROXY; for http,
 * http_proxy only; then all_proxy and ALL_PROXY. NULL when none; *name is
 * the variable it came from. Nothing here sets CURLOPT_PROXY: libcurl
 * reads these itself, NO_PROXY included, for each transfer.
 */
static const char *
proxy_from_env(const char *base_url, const char **name)
{
    static const char *const https[] = {
        "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", NULL};
    static const char *const http[] = {
        "http_proxy", "all_proxy", "ALL_PROXY", NULL};
    const char *const *n = strncmp(base_url, "https:", 6) == 0 ? https : http;

    for (; *n != NULL; n++) {
        const char *v = getenv(*n);

        if (v != NULL && *v != '\0') {
            *name = *n;
            return v;
        }
    }
    return NULL;
}

/* The proxy to HERE in the start event, its credentials redacted. */
static void
log_proxy(cJSON *f, const char *base_url)
{
    const char *name = NULL, *proxy = proxy_from_env(base_url, &name);
    const char *no = getenv("no_proxy");
    char shown[512];

    if (no == NULL || *no == '\0')
        no = getenv("NO_PROXY");
    if (proxy == NULL) {
        cJSON_AddNullToObject(f, "proxy");
    } else {
        util_redact_userinfo(proxy, shown, sizeof(shown));
        cJSON_AddStringToObject(f, "proxy", shown);
        cJSON_AddStringToObject(f, "proxy_from", name);
    }
    if (no != NULL && *no != '\0')
        cJSON_AddStringToObject(f, "no_proxy", no);
}

static void
log_start(const struct settings *cfg, const char *listen_addr,
    const struct cache *cache)
{
    cJSON *f = cJSON_CreateObject();

    if (f == NULL)
        return;
    cJSON_AddStringToObject(f, "version", PACKAGE_VERSION);
    cJSON_AddNumberToObject(f, "pid", (double)getpid());
    cJSON_AddStringToObject(f, "listen", listen_addr ? listen_addr : "fd 0");
    cJSON_AddNumberToObject(f, "threads", (double)cfg->threads);
    cJSON_AddNumberToObject(f, "idle_release_ms", (double)cfg->idle_release_ms);
    cJSON_AddStringToObject(f, "cache", cache_backend(cache));
    cJSON_AddStringToObject(f, "here_base_url", cfg->here_base_url);
    if (cfg->here_credentials != NULL) {
        /* The key's id is no secret: it names which credentials run. */
        cJSON_AddStringToObject(f, "here_auth", "oauth");
        cJSON_AddStringToObject(
            f, "here_access_key_id", cfg->here_credentials->access_key_id);
    } else {
        cJSON_AddStringToObject(f, "here_auth", "api_key");
        cJSON_AddStringToObject(f, "here_api_key", "<redacted>");
    }
    log_proxy(f, cfg->here_base_url);
    cJSON_AddNumberToObject(
        f, "dumpable", (double)prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    cJSON_AddNumberToObject(f, "cache_maxsize", (double)cfg->cache_maxsize);
    cJSON_AddNumberToObject(f, "cache_maxbytes", (double)cfg->cache_maxbytes);
    cJSON_AddStringToObject(f, "memcached_servers", cfg->memcached_servers);
    cJSON_AddNumberToObject(
        f, "metrics_max_indices", (double)cfg->metrics_max_indices);
    cJSON_AddStringToObject(f, "metrics_allow", cfg->metrics_allow);
    log_event(LOG_LEVEL_INFO, "start", f);
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"check-config", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    struct settings cfg;
    struct handler handler;
    struct worker *workers = NULL;
    pthread_attr_t attr;
    sigset_t sigs;
    const char *listen_addr = NULL, *listen_what = "--listen";
    char err[512];
    struct retired *retired = NULL;
    struct nginx_counts *nginx_counts = NULL;
    int ch, check_only = 0, listen_fd, unix_path, sig = 0, clean;
    long i, grace_ms;
    int64_t stop_by;

    /*
     * The API key lives in this process's memory: no core dump, and no
     * ptrace or /proc/PID/mem reading by other processes of the same user.
     */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fatal("prctl(PR_SET_DUMPABLE)");

    while ((ch = getopt_long(argc, argv, "l:chV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l': listen_addr = optarg; break;
        case 'c': check_only = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("hereproxy.fcgi %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (settings_load(&cfg, environ, err, sizeof(err)) != 0) {
        if (check_only)
            fprintf(stderr, "hereproxy.fcgi: configuration error: %s\n", err);
        else
            log_error("configuration error: %s", err);
        settings_cleanup(&cfg);
        return 1;
    }
    if (check_only) {
        printf("# configuration OK\n");
        settings_dump(&cfg, stdout);
        settings_cleanup(&cfg);
        return 0;
    }
    log_set_level((enum log_level)cfg.log_level);
    /* The key of every table a client picks the keys of: before any. */
    if (siphash_process_init() != 0)
        fatalx("no random bytes from getrandom() or /dev/urandom for the "
               "hash tables' key");
    if (listen_addr == NULL && *cfg.listen != '\0') {
        listen_addr = cfg.listen;
        listen_what = "HEREPROXY_LISTEN";
    }

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    {
        struct sigaction sa;
        sigset_t wake;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_wake;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0; /* no SA_RESTART: accept() must return */
        sigaction(SIGUSR1, &sa, NULL);
        sigemptyset(&wake);
        sigaddset(&wake, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &wake, NULL);
    }
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    listen_fd = open_listener(listen_addr, listen_what, &unix_path);
    options_inherited = tune_listener(listen_fd, cfg.write_timeout_ms);

    memset(&handler, 0, sizeof(handler));
    handler.cfg = &cfg;
    /* From /proc, as process_start_time_seconds; the clock otherwise. */
    handler.start_time = procstat_start_time();
    if (handler.start_time <= 0)
        handler.start_time = (double)util_wall_ms() / 1000.0;
    handler.metrics = metrics_new((size_t)cfg.metrics_max_indices);
    if (handler.metrics == NULL)
        fatalx("out of memory");
    handler.policy.zmax = cfg.zmax;
    handler.policy.allow_logistics = (int)cfg.here_allow_logistics;
    breaker_init(&handler.breaker, cfg.here_breaker_threshold,
        cfg.here_breaker_cooldown_ms);
    if ((handler.cache = cache_new(&cfg, err, sizeof(err))) == NULL)
        fatalx("cache: %s", err);
    cache_set_metrics(handler.cache, handler.metrics);
    nginx_counts = nginx_counts_start(&cfg, handler.metrics, err, sizeof(err));
    if (nginx_counts == NULL && *err != '\0')
        fatalx("%s", err);
    if ((handler.flights = flights_new()) == NULL)
        fatalx("out of memory");
    if ((handler.limits = admit_new(&cfg, err, sizeof(err))) == NULL)
        fatalx("%s", err);
    admit_set_metrics(handler.limits, handler.metrics);
    if ((handler.auth = hereauth_new(&cfg, err, sizeof(err))) == NULL)
        fatalx("%s", err);
    handler.upstream =
        upstream_new(&cfg, handler.flights, handler.auth, err, sizeof(err));
    if (handler.upstream == NULL)
        fatalx("upstream: %s", err);
    handler.revalidations =
        flight_jobs_start(tile_revalidation_done, &handler.tiles);
    if (handler.revalidations == NULL)
        fatalx("cannot start the revalidation thread");
    handler_init_tiles(&handler);
    fcgi_set_capacity(cfg.threads);
    if ((workers = calloc((size_t)cfg.threads, sizeof(*workers))) == NULL)
        fatalx("out of memory");

    if (log_buffer_start(cfg.log_flush_ms) != 0)
        fatalx("cannot start the log flusher thread");
    log_start(&cfg, listen_addr, handler.cache);
    watch_init(workers, cfg.threads, &handler, listen_fd);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, WORKER_STACK);
    for (i = 0; i < cfg.threads; i++) {
        struct worker *w = &workers[i];

        pthread_mutex_init(&w->lock, NULL);
        w->handler = &handler;
        w->fd = -1;
        w->listen_fd = listen_fd;
        if (pthread_create(&w->thread, &attr, worker_main, w) != 0)
            fatalx("cannot start worker thread %ld", i);
        w->started = 1;
    }
    pthread_attr_destroy(&attr);
    watch_start();
    if (cfg.idle_release_ms == 0)
        log_warnx("HEREPROXY_IDLE_RELEASE_MS=0: a kept-alive FastCGI "
                  "connection keeps its worker until the web server closes "
                  "it, so HEREPROXY_THREADS (%ld) must exceed the web "
                  "server's keep-alive pool (NGINX: keepalive times its "
                  "worker processes) or new connections wait for good",
            cfg.threads);

    while (sigwait(&sigs, &sig) == 0) {
        if (sig != SIGHUP)
            break;
        reload(&handler, &retired);
    }
    grace_ms =
        __atomic_load_n(&handler.cfg, __ATOMIC_ACQUIRE)->shutdown_grace_ms;
    log_event(LOG_LEVEL_INFO, "stopping", NULL);
    stop_by = util_mono_ms() + grace_ms;
    watch_stop();
    wake_workers(workers, cfg.threads, 0);
    clean = join_workers(workers, cfg.threads, grace_ms);
    if (unix_path)
        unlink(listen_addr);
    if (!clean) {
        /* A worker still talks to a stuck client: do not wait forever. */
        log_warnx("workers still busy after %ld ms; exiting anyway", grace_ms);
        _exit(0);
    }
    /* Revalidations under way store what HERE answers, within the grace. */
    if (!flight_jobs_stop(handler.revalidations, stop_by)) {
        log_warnx("revalidations still waiting on HERE after %ld ms; "
                  "exiting anyway",
            grace_ms);
        _exit(0);
    }
    log_event(LOG_LEVEL_INFO, "stop", NULL);
    free(workers);
    pthread_cond_destroy(&watch.cond); /* every worker has returned */
    upstream_free(handler.upstream);
    hereauth_free(handler.auth);
    flight_jobs_free(handler.revalidations); /* nothing ends flights now */
    flights_free(handler.flights);
    admit_free(handler.limits);
    cache_free(handler.cache);
    nginx_counts_stop(nginx_counts);
    metrics_free(handler.metrics);
    breaker_cleanup(&handler.breaker);
    /* Our descriptor only: other holders of the socket keep accepting. */
    close(listen_fd);
    while (retired != NULL) {
        struct retired *r = retired;

        retired = r->next;
        settings_cleanup(r->cfg);
        free(r->cfg);
        free(r);
    }
    settings_cleanup(&cfg);
    log_buffer_stop();
    return 0;
}
