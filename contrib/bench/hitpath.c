/*
 * hitpath: the CPU cost of one cache hit, for a figure that does not drift
 * with the machine's load. Run it under callgrind (contrib/bench/callgrind):
 *
 *   valgrind --tool=callgrind --toggle-collect=hit_once hitpath -n 10000
 *
 * counts the instructions of exactly N calls of hit_once(), nothing else.
 *
 * Modes (-m):
 *   handler  (default) handler_serve() itself, as a worker thread calls it:
 *            the request's FastCGI parameters as NGINX sends them for a wrk
 *            GET (fastcgi_params, Host) found once, request_parse and the
 *            cache key, the in-process LRU lookup through the tile flow,
 *            the response headers and the tile written as FastCGI records
 *            (one sendmsg into a socket pair, drained outside the count),
 *            and the JSON access line (written to /dev/null; only the
 *            write(2) itself is not counted).
 *   fcgi     the same plus reading the request: fcgi_read_request reading
 *            its records from a kept-alive connection (a Unix socket pair)
 *            and the parameters found in them.
 *
 * Options: -n hits (default 10000), -b tile bytes (default 16384), -v keep
 * the access lines on stderr. Prints the mode, the hits and a wall-clock
 * ns/hit (which does drift: callgrind's count is the stable figure).
 * Built by `make bench-hitpath` (not by `make`).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "entry.h"
#include "fcgi.h"
#include "handler.h"
#include "hereauth.h"
#include "log.h"
#include "request.h"
#include "settings.h"
#include "upstream.h"

#define TILE_PATH "/here-proxy/base/mc/16/34321/22987/png"
#define TILE_QUERY "indice=hot"

/* What NGINX's fastcgi_params make of `GET TILE_PATH?TILE_QUERY` from wrk. */
static char *envp_hot[] = {"QUERY_STRING=" TILE_QUERY, "REQUEST_METHOD=GET",
    "CONTENT_TYPE=", "CONTENT_LENGTH=", "SCRIPT_NAME=" TILE_PATH,
    "REQUEST_URI=" TILE_PATH "?" TILE_QUERY, "DOCUMENT_URI=" TILE_PATH,
    "DOCUMENT_ROOT=/usr/share/nginx/html", "SERVER_PROTOCOL=HTTP/1.1",
    "REQUEST_SCHEME=http", "GATEWAY_INTERFACE=CGI/1.1",
    "SERVER_SOFTWARE=nginx/1.22.1", "REMOTE_ADDR=127.0.0.1",
    "REMOTE_PORT=40000", "SERVER_ADDR=127.0.0.1", "SERVER_PORT=8080",
    "SERVER_NAME=_", "REDIRECT_STATUS=200", "HTTP_HOST=127.0.0.1:8080", NULL};

/* ------------------------------------------------ the counted functions */
static struct handler h;

__attribute__((noinline)) static void
serve_one(char *const *envp, struct fcgi_conn *conn)
{
    struct request_params rp;
    struct fcgi_out out;

    request_params_from_env(&rp, envp);
    fcgi_out_init(&out, conn, 1);
    handler_serve(&h, &rp, &out);
}

__attribute__((noinline)) void hit_once(
    char *const *envp, struct fcgi_conn *conn);

__attribute__((noinline)) void
hit_once(char *const *envp, struct fcgi_conn *conn)
{
    serve_one(envp, conn);
}

__attribute__((noinline)) static int
serve_one_fcgi(struct fcgi_conn *conn)
{
    struct request_params rp;
    struct fcgi_request req;
    struct fcgi_out out;

    if (fcgi_read_request(conn, &req) != 1)
        return -1;
    request_params_read(&rp, req.params, req.nparams);
    fcgi_out_init(&out, conn, req.id);
    handler_serve(&h, &rp, &out);
    return 0;
}

__attribute__((noinline)) int hit_once_fcgi(struct fcgi_conn *conn);

__attribute__((noinline)) int
hit_once_fcgi(struct fcgi_conn *conn)
{
    return serve_one_fcgi(conn);
}

/* ------------------------------------------------ FastCGI records */
static size_t
record(unsigned char *p, int type, const void *content, size_t len)
{
    fcgi_record_header(p, type, 1, len, 0); /* request id 1 */
    if (len > 0)
        memcpy(p + FCGI_HEADER_LEN, content, len);
    return FCGI_HEADER_LEN + len;
}

/* The records NGINX sends for one request, with keep_conn. */
static size_t
build_request(unsigned char *out, size_t cap)
{
    unsigned char params[4096], begin[8] = {0, FCGI_RESPONDER, FCGI_KEEP_CONN};
    size_t n = 0, len = 0;
    int i;

    for (i = 0; envp_hot[i] != NULL; i++) {
        const char *eq = strchr(envp_hot[i], '=');
        size_t nl = (size_t)(eq - envp_hot[i]), vl = strlen(eq + 1);

        params[len++] = (unsigned char)nl; /* all names and values < 128 */
        params[len++] = (unsigned char)vl;
        memcpy(params + len, envp_hot[i], nl);
        len += nl;
        memcpy(params + len, eq + 1, vl);
        len += vl;
    }
    if (len + 64 > cap)
        abort();
    n += record(out + n, FCGI_BEGIN_REQUEST, begin, sizeof(begin));
    n += record(out + n, FCGI_PARAMS, params, len);
    n += record(out + n, FCGI_PARAMS, NULL, 0);
    n += record(out + n, FCGI_STDIN, NULL, 0);
    return n;
}

static void
drain(int fd)
{
    char buf[65536];

    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

/* The FCGI_STDOUT content the web server's end got: the HTTP response. */
static size_t
response_text(int fd, unsigned char *out, size_t cap)
{
    static unsigned char raw[1 << 21];
    size_t n = 0, off = 0, o = 0;
    ssize_t got;

    while (n < sizeof(raw) &&
        (got = recv(fd, raw + n, sizeof(raw) - n, MSG_DONTWAIT)) > 0)
        n += (size_t)got;
    while (off + FCGI_HEADER_LEN <= n) {
        size_t len = (size_t)raw[off + 4] << 8 | raw[off + 5];

        if (raw[off + 1] == FCGI_STDOUT && o + len <= cap) {
            memcpy(out + o, raw + off + FCGI_HEADER_LEN, len);
            o += len;
        }
        off += FCGI_HEADER_LEN + len + raw[off + 6];
    }
    return o;
}

static double
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void
die(const char *msg)
{
    fprintf(stderr, "hitpath: %s\n", msg);
    exit(1);
}

int
main(int argc, char **argv)
{
    static struct settings cfg;
    struct tile_req req;
    struct entry *e;
    unsigned char *tile;
    char err[512];
    const char *mode = "handler";
    long n = 10000, i, bytes = 16384;
    int ch, verbose = 0, out_fd, sv[2];
    struct fcgi_conn *conn;
    double t0, t1;

    while ((ch = getopt(argc, argv, "n:m:b:v")) != -1) {
        switch (ch) {
        case 'n': n = atol(optarg); break;
        case 'm': mode = optarg; break;
        case 'b': bytes = atol(optarg); break;
        case 'v': verbose = 1; break;
        default:
            fprintf(stderr,
                "usage: hitpath [-n hits] [-m handler|fcgi] "
                "[-b tile-bytes] [-v]\n");
            return 2;
        }
    }
    if (n < 1 || bytes < 1 || bytes > 8 * 1024 * 1024 ||
        (strcmp(mode, "handler") != 0 && strcmp(mode, "fcgi") != 0))
        die("bad arguments");

    /* The proxy's defaults, with a key and an upstream never contacted. */
    if (settings_init(&cfg) != 0 ||
        settings_set(&cfg, "HERE_API_KEY", "hitpath-key", err, sizeof(err)) ||
        settings_set(
            &cfg, "HERE_BASE_URL", "http://127.0.0.1:9/v3", err, sizeof(err)) ||
        settings_validate(&cfg, err, sizeof(err)) != 0)
        die(err);
    log_set_level((enum log_level)cfg.log_level);
    h.cfg = &cfg;
    h.policy.zmax = cfg.zmax;
    h.policy.allow_logistics = (int)cfg.here_allow_logistics;
    if ((h.cache = cache_new(&cfg, err, sizeof(err))) == NULL)
        die(err);
    breaker_init(
        &h.breaker, cfg.here_breaker_threshold, cfg.here_breaker_cooldown_ms);
    if ((h.flights = flights_new()) == NULL)
        die("flights_new failed");
    if ((h.auth = hereauth_new(&cfg, err, sizeof(err))) == NULL ||
        (h.upstream = upstream_new(
             &cfg, h.flights, h.auth, err, sizeof(err))) == NULL)
        die(err);
    handler_init_tiles(&h);
    /* The web server's end (sv[1]) and the proxy's connection. */
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 ||
        (conn = fcgi_conn_new(sv[0])) == NULL)
        die("cannot make a socket pair");

    /* The tile in the in-process cache under the key the request makes. */
    if (request_parse("GET", TILE_PATH "?" TILE_QUERY, &h.policy, &req, err,
            sizeof(err)) != 0)
        die(err);
    if ((tile = malloc((size_t)bytes)) == NULL)
        die("out of memory");
    for (i = 0; i < bytes; i++)
        tile[i] = (unsigned char)(i * 131 + 7);
    e = entry_new(200, (int64_t)time(NULL) + 86400, (int64_t)time(NULL) + 86400,
        "image/png", "\"0123456789abcdef\"", tile, (size_t)bytes);
    if (e == NULL)
        die("entry_new failed");
    cache_put(h.cache, req.key, req.key_len, e, (int64_t)time(NULL));
    entry_unref(e);

    /* Access lines go to /dev/null; messages to the real stderr. */
    out_fd = dup(STDERR_FILENO);
    if (!verbose) {
        int null_fd = open("/dev/null", O_WRONLY);

        if (null_fd < 0 || dup2(null_fd, STDERR_FILENO) < 0)
            die("cannot open /dev/null");
        close(null_fd);
    }

    /* One checked response: a 200 HIT with the whole tile. */
    serve_one(envp_hot, conn);
    {
        static unsigned char check_buf[1 << 20];
        size_t len = response_text(sv[1], check_buf, sizeof(check_buf));
        const char *hdr_end = memmem(check_buf, len, "\r\n\r\n", 4);

        if (strncmp((char *)check_buf, "Status: 200", 11) != 0 ||
            memmem(check_buf, len, "X-Cache: HIT", 12) == NULL ||
            hdr_end == NULL ||
            len - (size_t)(hdr_end + 4 - (char *)check_buf) != (size_t)bytes) {
            dprintf(out_fd, "hitpath: the request is not a hit:\n%.*s\n",
                (int)(len < 600 ? len : 600), check_buf);
            return 1;
        }
    }

    if (strcmp(mode, "handler") == 0) {
        for (i = 0; i < 100; i++) { /* warm caches, not counted */
            serve_one(envp_hot, conn);
            drain(sv[1]);
        }
        t0 = now_ns();
        t1 = 0;
        for (i = 0; i < n; i++) {
            double a = now_ns();

            hit_once(envp_hot, conn);
            t1 += now_ns() - a;
            drain(sv[1]);
        }
        t1 += t0;
    } else {
        unsigned char reqbytes[8192];
        size_t reqlen = build_request(reqbytes, sizeof(reqbytes));

        for (i = 0; i < 100; i++) { /* warm caches, not counted */
            if (write(sv[1], reqbytes, reqlen) != (ssize_t)reqlen ||
                serve_one_fcgi(conn) != 0)
                die("FastCGI exchange failed");
            drain(sv[1]);
        }
        t0 = now_ns();
        t1 = 0;
        for (i = 0; i < n; i++) {
            double a;

            if (write(sv[1], reqbytes, reqlen) != (ssize_t)reqlen)
                die("write failed");
            a = now_ns();
            if (hit_once_fcgi(conn) != 0)
                die("fcgi_read_request failed");
            t1 += now_ns() - a;
            drain(sv[1]);
        }
        t1 += t0;
    }
    fcgi_conn_free(conn);
    close(sv[1]);
    dprintf(out_fd,
        "hitpath: mode %s, %ld hits of a %ld-byte tile, "
        "%.0f ns/hit wall (drifts; count instructions with callgrind)\n",
        mode, n, bytes, (t1 - t0) / (double)n);
    cache_free(h.cache);
    upstream_free(h.upstream);
    hereauth_free(h.auth);
    settings_cleanup(&cfg);
    free(tile);
    return 0;
}
