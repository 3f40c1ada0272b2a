/*
 * fcgi_ceiling: the FastCGI ceiling for contrib/bench/run.
 *
 * The least a FastCGI responder can do per request, built like
 * hereproxy.fcgi (libfcgi, N threads each in an FCGX_Accept_r loop on the
 * socket spawn-fcgi hands over on fd 0): answer every request with one
 * tile held in memory and a header block of the same shape as a hereproxy
 * hit. No parsing, no cache, no log. SIGTERM or SIGINT ends it.
 *
 *   spawn-fcgi -a 127.0.0.1 -p PORT -n -- fcgi_ceiling TILE.png [THREADS]
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static char head[512], *body;
static int head_len, body_len;

static void *
worker(void *arg)
{
    FCGX_Request r;

    (void)arg;
    FCGX_InitRequest(&r, 0, 0);
    while (FCGX_Accept_r(&r) >= 0) {
        FCGX_PutStr(head, head_len, r.out);
        FCGX_PutStr(body, body_len, r.out);
        FCGX_Finish_r(&r);
    }
    return NULL;
}

int
main(int argc, char **argv)
{
    pthread_attr_t attr;
    pthread_t t;
    sigset_t sigs;
    FILE *fp;
    long size;
    int i, sig, n = argc > 2 ? atoi(argv[2]) : 64;

    if (argc < 2 || n < 1 || (fp = fopen(argv[1], "rb")) == NULL) {
        fprintf(
            stderr, "usage: fcgi_ceiling TILE [THREADS] (under spawn-fcgi)\n");
        return 2;
    }
    fseek(fp, 0, SEEK_END);
    size = ftell(fp);
    rewind(fp);
    body = malloc((size_t)size + 1);
    if (body == NULL || fread(body, 1, (size_t)size, fp) != (size_t)size)
        return 1;
    fclose(fp);
    body_len = (int)size;
    head_len = snprintf(head, sizeof(head),
        "Status: 200 OK\r\nX-Index: bench\r\n"
        "Access-Control-Allow-Origin: *\r\n"
        "Access-Control-Expose-Headers: X-Cache, X-Index, ETag\r\n"
        "Content-Type: image/png\r\nContent-Length: %d\r\n"
        "Cache-Control: public, max-age=3600\r\n"
        "ETag: \"0123456789abcdef\"\r\nX-Cache: HIT\r\n\r\n",
        body_len);
    if (FCGX_Init() != 0)
        return 1;
    /* libfcgi catches SIGTERM itself: wait for it here instead. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    for (i = 0; i < n; i++)
        if (pthread_create(&t, &attr, worker, NULL) != 0)
            return 1;
    sigwait(&sigs, &sig);
    return 0;
}
