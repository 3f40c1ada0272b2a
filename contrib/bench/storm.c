/*
 * storm: HTTP/1.1 load client for contrib/bench/run (loopback only).
 *
 *   storm --mode storm --port P --tiles N --concurrency C [tile options]
 *       Cold storm: for each of N tiles in turn, C keep-alive connections
 *       (one thread each) send GET for the same tile at the same moment
 *       (a barrier), read the whole response, and meet again before the
 *       next tile. Latency is per request, from send to the last byte.
 *
 *   storm --mode list --port P --count N --concurrency C [tile options]
 *       Each of N distinct tiles once, C connections pulling the next
 *       index from a shared counter (the warm-up pass).
 *
 * Tile i is  PREFIX/Z/(X0 + i % WIDTH)/(Y0 + i / WIDTH)/FORMAT?QUERY
 * (i from START). Options: --host (127.0.0.1 only: loopback), --prefix
 * (/here-proxy/base/mc), --z 17, --x0 0, --y0 0, --width 256, --start 0,
 * --format png, --query indice=bench, --max-seconds 120 (a hard bound: the
 * run stops, and says so, when it is reached), --timeout-ms 30000.
 *
 * Output: one JSON object on stdout (requests, ok, errors, statuses,
 * elapsed_s, rps, latency_ms p50/p90/p99/max/mean, timed_out).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define MAX_STATUS 600

struct opts {
    const char *mode, *host, *prefix, *format, *query;
    int port, concurrency, timeout_ms;
    long z, x0, y0, width, start, count;
    double max_seconds;
};

struct conn {
    int fd;
    char buf[BUF_SIZE];
    size_t len, off;
};

struct worker {
    pthread_t thread;
    int id;
    double *lat; /* ms per request */
    long nlat, cap;
    long errors;
    long status[MAX_STATUS];
    unsigned long long bytes;
};

static struct opts o = {"storm", "127.0.0.1", "/here-proxy/base/mc", "png",
    "indice=bench", 0, 64, 30000, 17, 0, 0, 256, 0, 50, 120.0};
static pthread_barrier_t bar_start, bar_end;
static atomic_long next_index;
static volatile int stop_all;
static int timed_out;
static double deadline;

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = c->off = 0;
}

static int
conn_open(struct conn *c)
{
    struct sockaddr_in sa;
    struct timeval tv;
    int one = 1;

    conn_close(c);
    if ((c->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)o.port);
    inet_pton(AF_INET, o.host, &sa.sin_addr);
    tv.tv_sec = o.timeout_ms / 1000;
    tv.tv_usec = (o.timeout_ms % 1000) * 1000;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Make at least one more byte available; -1 on error or EOF. */
static int
fill(struct conn *c)
{
    ssize_t n;

    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == sizeof(c->buf))
        return -1;
    do
        n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    return 0;
}

/* A line ending in CRLF starting at c->off: its length, after filling. */
static long
line(struct conn *c)
{
    for (;;) {
        char *p = memmem(c->buf + c->off, c->len - c->off, "\r\n", 2);

        if (p != NULL)
            return p - (c->buf + c->off);
        if (fill(c) != 0)
            return -1;
    }
}

/* Skip n body bytes. */
static int
skip(struct conn *c, unsigned long long n)
{
    while (n > 0) {
        size_t have = c->len - c->off;

        if (have == 0) {
            c->off = c->len = 0;
            if (fill(c) != 0)
                return -1;
            continue;
        }
        if (have > n)
            have = (size_t)n;
        c->off += have;
        n -= have;
    }
    return 0;
}

/*
 * One GET on a kept-alive connection (reconnecting as needed). Returns the
 * HTTP status, or -1; *body gets the body length; *keep 0 when the server
 * closes.
 */
static int
get(struct conn *c, const char *path, unsigned long long *body)
{
    char req[1024];
    int n, status = -1, chunked = 0, keep = 1;
    long long clen = -1;
    long len;

    *body = 0;
    if (c->fd < 0 && conn_open(c) != 0)
        return -1;
    n = snprintf(req, sizeof(req),
        "GET %s HTTP/1.1\r\nHost: %s\r\n"
        "User-Agent: hereproxy-bench-storm\r\n\r\n",
        path, o.host);
    if (write(c->fd, req, (size_t)n) != n) {
        /* a kept connection the server closed meanwhile: once more */
        if (conn_open(c) != 0 || write(c->fd, req, (size_t)n) != n)
            goto fail;
    }
    if ((len = line(c)) < 12 || strncmp(c->buf + c->off, "HTTP/1.", 7) != 0)
        goto fail;
    status = atoi(c->buf + c->off + 9);
    c->off += (size_t)len + 2;
    for (;;) {
        char *h;

        if ((len = line(c)) < 0)
            goto fail;
        h = c->buf + c->off;
        if (len == 0) {
            c->off += 2;
            break;
        }
        if (len > 15 && strncasecmp(h, "Content-Length:", 15) == 0)
            clen = atoll(h + 15);
        else if (len > 18 && strncasecmp(h, "Transfer-Encoding:", 18) == 0 &&
            memmem(h, (size_t)len, "chunked", 7) != NULL)
            chunked = 1;
        else if (len > 11 && strncasecmp(h, "Connection:", 11) == 0 &&
            memmem(h, (size_t)len, "close", 5) != NULL)
            keep = 0;
        c->off += (size_t)len + 2;
    }
    if (chunked) {
        for (;;) {
            unsigned long long sz;

            if ((len = line(c)) < 0)
                goto fail;
            sz = strtoull(c->buf + c->off, NULL, 16);
            c->off += (size_t)len + 2;
            if (skip(c, sz + 2) != 0) /* data and its CRLF */
                goto fail;
            *body += sz;
            if (sz == 0)
                break;
        }
    } else if (clen >= 0) {
        if (skip(c, (unsigned long long)clen) != 0)
            goto fail;
        *body = (unsigned long long)clen;
    } else {
        goto fail; /* body until close: not from our servers */
    }
    if (!keep)
        conn_close(c);
    return status;
fail:
    conn_close(c);
    return -1;
}

static void
tile_path(long i, char *out, size_t outlen)
{
    long idx = o.start + i;

    snprintf(out, outlen, "%s/%ld/%ld/%ld/%s%s%s", o.prefix, o.z,
        o.x0 + idx % o.width, o.y0 + idx / o.width, o.format,
        *o.query ? "?" : "", o.query);
}

static void
record(struct worker *w, int status, double ms, unsigned long long bytes)
{
    if (w->nlat == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 1024;
        w->lat = realloc(w->lat, (size_t)w->cap * sizeof(double));
        if (w->lat == NULL)
            abort();
    }
    w->lat[w->nlat++] = ms;
    if (status < 0 || status >= MAX_STATUS) {
        w->errors++;
        return;
    }
    w->status[status]++;
    if (status >= 400)
        w->errors++;
    w->bytes += bytes;
}

static void
one(struct worker *w, struct conn *c, long i)
{
    char path[1024];
    unsigned long long bytes;
    double t0;
    int st;

    tile_path(i, path, sizeof(path));
    t0 = now_s();
    st = get(c, path, &bytes);
    record(w, st, (now_s() - t0) * 1000.0, bytes);
}

static void *
run_storm(void *arg)
{
    struct worker *w = arg;
    struct conn *c = calloc(1, sizeof(*c));
    long k;

    if (c == NULL)
        abort();
    c->fd = -1;
    conn_open(c); /* connections are open before the first tile */
    for (k = 0;; k++) {
        pthread_barrier_wait(&bar_start);
        if (stop_all)
            break;
        one(w, c, k);
        if (pthread_barrier_wait(&bar_end) == PTHREAD_BARRIER_SERIAL_THREAD) {
            if (now_s() > deadline) {
                timed_out = 1;
                stop_all = 1;
            } else if (k + 1 >= o.count) {
                stop_all = 1;
            }
        }
    }
    conn_close(c);
    free(c);
    return NULL;
}

static void *
run_list(void *arg)
{
    struct worker *w = arg;
    struct conn *c = calloc(1, sizeof(*c));
    long i;

    if (c == NULL)
        abort();
    c->fd = -1;
    while ((i = atomic_fetch_add(&next_index, 1)) < o.count) {
        if (now_s() > deadline) {
            timed_out = 1;
            break;
        }
        one(w, c, i);
    }
    conn_close(c);
    free(c);
    return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double
pct(const double *v, long n, double p)
{
    long i;

    if (n == 0)
        return 0;
    i = (long)(p / 100.0 * (double)n + 0.5) - 1;
    if (i < 0)
        i = 0;
    if (i >= n)
        i = n - 1;
    return v[i];
}

static void
usage(void)
{
    fprintf(stderr,
        "usage: storm --mode storm|list --port P [--tiles|--count N] "
        "[--concurrency C] [--host 127.0.0.1] [--prefix P] [--z Z] [--x0 X] "
        "[--y0 Y] [--width W] [--start S] [--format F] [--query Q] "
        "[--max-seconds S] [--timeout-ms MS]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    struct worker *w;
    double t0, elapsed, *all, sum = 0;
    long total = 0, errors = 0, status[MAX_STATUS] = {0}, i, j;
    unsigned long long bytes = 0;
    int k, first;

    for (k = 1; k < argc; k++) {
        const char *a = argv[k], *v = k + 1 < argc ? argv[k + 1] : NULL;

        if (v == NULL)
            usage();
        k++;
        if (!strcmp(a, "--mode"))
            o.mode = v;
        else if (!strcmp(a, "--host"))
            o.host = v;
        else if (!strcmp(a, "--port"))
            o.port = atoi(v);
        else if (!strcmp(a, "--tiles") || !strcmp(a, "--count"))
            o.count = atol(v);
        else if (!strcmp(a, "--concurrency"))
            o.concurrency = atoi(v);
        else if (!strcmp(a, "--prefix"))
            o.prefix = v;
        else if (!strcmp(a, "--format"))
            o.format = v;
        else if (!strcmp(a, "--query"))
            o.query = v;
        else if (!strcmp(a, "--z"))
            o.z = atol(v);
        else if (!strcmp(a, "--x0"))
            o.x0 = atol(v);
        else if (!strcmp(a, "--y0"))
            o.y0 = atol(v);
        else if (!strcmp(a, "--width"))
            o.width = atol(v);
        else if (!strcmp(a, "--start"))
            o.start = atol(v);
        else if (!strcmp(a, "--max-seconds"))
            o.max_seconds = atof(v);
        else if (!strcmp(a, "--timeout-ms"))
            o.timeout_ms = atoi(v);
        else
            usage();
    }
    if (o.port <= 0 || o.concurrency < 1 || o.count < 1 || o.width < 1 ||
        o.max_seconds <= 0 || o.timeout_ms < 1 ||
        (strcmp(o.mode, "storm") && strcmp(o.mode, "list")))
        usage();
    /* Loopback only: this is a load generator. */
    if (strncmp(o.host, "127.", 4) != 0) {
        fprintf(stderr, "storm: --host must be a 127.x.x.x address\n");
        return 2;
    }
    if ((w = calloc((size_t)o.concurrency, sizeof(*w))) == NULL)
        return 1;
    pthread_barrier_init(&bar_start, NULL, (unsigned)o.concurrency);
    pthread_barrier_init(&bar_end, NULL, (unsigned)o.concurrency);
    t0 = now_s();
    deadline = t0 + o.max_seconds;
    for (k = 0; k < o.concurrency; k++) {
        w[k].id = k;
        if (pthread_create(&w[k].thread, NULL,
                strcmp(o.mode, "storm") == 0 ? run_storm : run_list,
                &w[k]) != 0)
            return 1;
    }
    for (k = 0; k < o.concurrency; k++)
        pthread_join(w[k].thread, NULL);
    elapsed = now_s() - t0;
    for (k = 0; k < o.concurrency; k++)
        total += w[k].nlat;
    if ((all = malloc((size_t)(total ? total : 1) * sizeof(double))) == NULL)
        return 1;
    for (k = 0, j = 0; k < o.concurrency; k++) {
        for (i = 0; i < w[k].nlat; i++) {
            all[j++] = w[k].lat[i];
            sum += w[k].lat[i];
        }
        errors += w[k].errors;
        bytes += w[k].bytes;
        for (i = 0; i < MAX_STATUS; i++)
            status[i] += w[k].status[i];
    }
    qsort(all, (size_t)total, sizeof(double), cmp_double);
    printf("{\"mode\": \"%s\", \"requests\": %ld, \"errors\": %ld, "
           "\"concurrency\": %d, \"tiles\": %ld, \"elapsed_s\": %.3f, "
           "\"rps\": %.1f, \"bytes\": %llu, \"timed_out\": %s, \"status\": {",
        o.mode, total, errors, o.concurrency, o.count, elapsed,
        elapsed > 0 ? (double)total / elapsed : 0.0, bytes,
        timed_out ? "true" : "false");
    for (i = 0, first = 1; i < MAX_STATUS; i++) {
        if (status[i] == 0)
            continue;
        printf("%s\"%ld\": %ld", first ? "" : ", ", i, status[i]);
        first = 0;
    }
    printf("}, \"latency_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, "
           "\"max\": %.3f, \"mean\": %.3f}}\n",
        pct(all, total, 50), pct(all, total, 90), pct(all, total, 99),
        total ? all[total - 1] : 0.0, total ? sum / (double)total : 0.0);
    return 0;
}
