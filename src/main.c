#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "cache.h"
#include "handler.h"
#include "log.h"
#include "settings.h"
#include "upstream.h"

#define LISTEN_BACKLOG 1024
#define WORKER_STACK (512 * 1024)
#define SHUTDOWN_GRACE_S 10

extern char **environ;

struct worker {
    pthread_t thread;
    pthread_mutex_t lock;       /* guards busy against the shutdown path */
    int busy;
    int started;
    FCGX_Request req;
    struct handler *handler;
};

static volatile int stopping;

static void
usage(FILE *fp)
{
    fprintf(fp,
        "usage: hereproxy.fcgi [--listen ADDR] [--check-config]\n"
        "       hereproxy.fcgi --help | --version\n"
        "\n"
        "A caching FastCGI proxy for HERE raster tiles.\n"
        "\n"
        "  -l, --listen ADDR    listen on HOST:PORT or a Unix socket path\n"
        "                       (default: the socket on fd 0, as handed\n"
        "                       over by spawn-fcgi)\n"
        "  -c, --check-config   validate the configuration, print it with\n"
        "                       the API key redacted, and exit\n"
        "  -h, --help           show this help\n"
        "  -V, --version        show the version\n"
        "\n"
        "Settings come from the environment and from the file named by\n"
        "HEREPROXY_CONFIG; see hereproxy.fcgi(8).\n");
}

/*
 * The response was cut off after its head went out: the client must not
 * take what it got for the whole body. Neither an FCGI_END_REQUEST nor a
 * bare close tells every web server so: Apache ends a chunked body
 * normally on the former, unbuffered NGINX on the latter (and keeps the
 * client waiting for the rest of the Content-Length). Both drop the
 * client's connection on a protocol error: after the last whole record,
 * send a record header of FastCGI version 0, and close.
 */
static void
abort_request(FCGX_Request *req)
{
    static const unsigned char bogus[8];    /* version 0: invalid */

    /*
     * A stream in error (a write timed out: the peer stopped reading) gets
     * no more writes, each of which would wait the timeout again.
     */
    if (FCGX_GetError(req->out) == 0 && FCGX_FFlush(req->out) == 0 &&
        write(req->ipcFd, bogus, sizeof(bogus)) < 0) {
        /* The web server is gone already: nothing left to tell. */
    }
    shutdown(req->ipcFd, SHUT_RDWR);
    req->keepConnection = 0;
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

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct handler_later later;

    for (;;) {
        int rc;

        pthread_mutex_lock(&w->lock);
        w->busy = 0;
        pthread_mutex_unlock(&w->lock);
        if (stopping)
            break;
        rc = FCGX_Accept_r(&w->req);
        if (rc < 0)
            break;
        pthread_mutex_lock(&w->lock);
        w->busy = 1;
        pthread_mutex_unlock(&w->lock);
        set_write_timeout(w->req.ipcFd, w->handler->cfg->write_timeout_ms);
        if (handler_serve(w->handler, w->req.envp, w->req.out, &later) != 0)
            abort_request(&w->req);
        FCGX_Finish_r(&w->req);
        handler_finish_later(w->handler, &later);
    }
    FCGX_Free(&w->req, 1);
    return NULL;
}

/* A socket on fd 0 (spawn-fcgi), or one we open from --listen. */
static int
open_listener(const char *listen_addr, int *unix_path)
{
    struct stat st;
    int fd;

    *unix_path = 0;
    if (listen_addr != NULL && *listen_addr != '\0') {
        *unix_path = listen_addr[0] == '/';
        if (*unix_path)
            unlink(listen_addr);   /* a stale socket from a crash */
        fd = FCGX_OpenSocket(listen_addr, LISTEN_BACKLOG);
        if (fd < 0)
            fatalx("cannot listen on %s (in use, or no permission?)",
                listen_addr);
        /* Web servers run as another user; the directory guards access. */
        if (*unix_path && chmod(listen_addr, 0666) != 0)
            fatal("chmod %s", listen_addr);
        return fd;
    }
    if (fstat(0, &st) != 0 || !S_ISSOCK(st.st_mode))
        fatalx("fd 0 is not a listening socket: start under spawn-fcgi, "
            "or use --listen HOST:PORT or --listen /path/to.sock");
    return 0;
}

/*
 * Stop: no new connections, and wake the workers that wait on a kept-alive
 * FastCGI connection. Busy workers finish the request they have.
 */
static void
wake_workers(struct worker *workers, long n, int listen_fd)
{
    long i;

    stopping = 1;
    FCGX_ShutdownPending();
    shutdown(listen_fd, SHUT_RDWR);
    for (i = 0; i < n; i++) {
        pthread_mutex_lock(&workers[i].lock);
        if (!workers[i].busy && workers[i].req.ipcFd >= 0)
            shutdown(workers[i].req.ipcFd, SHUT_RD);
        pthread_mutex_unlock(&workers[i].lock);
    }
}

static int
join_workers(struct worker *workers, long n)
{
    struct timespec deadline;
    long i;
    int all = 1;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += SHUTDOWN_GRACE_S;
    for (i = 0; i < n; i++) {
        if (!workers[i].started)
            continue;
        if (pthread_timedjoin_np(workers[i].thread, NULL, &deadline) != 0)
            all = 0;
        else
            pthread_mutex_destroy(&workers[i].lock);
    }
    return all;
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
    cJSON_AddStringToObject(f, "cache", cache_backend(cache));
    cJSON_AddStringToObject(f, "here_base_url", cfg->here_base_url);
    cJSON_AddStringToObject(f, "here_api_key", "<redacted>");
    cJSON_AddNumberToObject(f, "dumpable",
        (double)prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    cJSON_AddNumberToObject(f, "cache_maxsize", (double)cfg->cache_maxsize);
    cJSON_AddNumberToObject(f, "cache_maxbytes",
        (double)cfg->cache_maxbytes);
    cJSON_AddStringToObject(f, "memcached_servers", cfg->memcached_servers);
    log_event(LOG_LEVEL_INFO, "start", f);
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"check-config", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    struct settings cfg;
    struct handler handler;
    struct worker *workers = NULL;
    pthread_attr_t attr;
    sigset_t sigs;
    const char *listen_addr = NULL;
    char err[512];
    int ch, check_only = 0, listen_fd, unix_path, sig = 0, clean;
    long i;

    /*
     * The API key lives in this process's memory: no core dump, and no
     * ptrace or /proc/PID/mem reading by other processes of the same user.
     */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fatal("prctl(PR_SET_DUMPABLE)");

    while ((ch = getopt_long(argc, argv, "l:chV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            listen_addr = optarg;
            break;
        case 'c':
            check_only = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("hereproxy.fcgi %s\n", PACKAGE_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (settings_load(&cfg, environ, err, sizeof(err)) != 0) {
        if (check_only)
            fprintf(stderr, "hereproxy.fcgi: configuration error: %s\n",
                err);
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
    if (listen_addr == NULL && *cfg.listen != '\0')
        listen_addr = cfg.listen;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    if (FCGX_Init() != 0)
        fatalx("FCGX_Init failed");
    listen_fd = open_listener(listen_addr, &unix_path);

    memset(&handler, 0, sizeof(handler));
    handler.cfg = &cfg;
    handler.policy.zmax = cfg.zmax;
    handler.policy.allow_logistics = (int)cfg.here_allow_logistics;
    breaker_init(&handler.breaker, cfg.here_breaker_threshold,
        cfg.here_breaker_cooldown_ms);
    if ((handler.cache = cache_new(&cfg, err, sizeof(err))) == NULL)
        fatalx("cache: %s", err);
    if ((handler.flights = flights_new()) == NULL)
        fatalx("out of memory");
    handler.upstream = upstream_new(&cfg, handler.flights, err, sizeof(err));
    if (handler.upstream == NULL)
        fatalx("upstream: %s", err);
    if ((workers = calloc((size_t)cfg.threads, sizeof(*workers))) == NULL)
        fatalx("out of memory");

    log_start(&cfg, listen_addr, handler.cache);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, WORKER_STACK);
    for (i = 0; i < cfg.threads; i++) {
        struct worker *w = &workers[i];

        pthread_mutex_init(&w->lock, NULL);
        w->handler = &handler;
        FCGX_InitRequest(&w->req, listen_fd, 0);
        if (pthread_create(&w->thread, &attr, worker_main, w) != 0)
            fatalx("cannot start worker thread %ld", i);
        w->started = 1;
    }
    pthread_attr_destroy(&attr);

    while (sigwait(&sigs, &sig) == 0) {
        if (sig != SIGHUP)
            break;
        log_warnx("SIGHUP: configuration reload is not supported; "
            "restart to apply changes");
    }
    log_event(LOG_LEVEL_INFO, "stopping", NULL);
    wake_workers(workers, cfg.threads, listen_fd);
    clean = join_workers(workers, cfg.threads);
    if (unix_path)
        unlink(listen_addr);
    if (!clean) {
        /* A worker still talks to a stuck client: do not wait forever. */
        log_warnx("workers still busy after %d s; exiting anyway",
            SHUTDOWN_GRACE_S);
        _exit(0);
    }
    log_event(LOG_LEVEL_INFO, "stop", NULL);
    free(workers);
    upstream_free(handler.upstream);
    flights_free(handler.flights);
    cache_free(handler.cache);
    breaker_cleanup(&handler.breaker);
    if (listen_fd != 0)
        close(listen_fd);
    settings_cleanup(&cfg);
    return 0;
}
