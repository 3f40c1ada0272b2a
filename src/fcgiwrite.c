#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <fastcgi.h>
#include <fcgiapp.h>

#include "fcgiwrite.h"

/* Content per record: the most a record holds, kept a multiple of 8. */
#define RECORD_MAX 65528
/* Up to this many records (about 1 MiB) in one writev. */
#define RECORDS_MAX 16

static void
record_header(unsigned char h[FCGI_HEADER_LEN], int request_id, size_t len)
{
    h[0] = FCGI_VERSION_1;
    h[1] = FCGI_STDOUT;
    h[2] = (unsigned char)((request_id >> 8) & 0xff);
    h[3] = (unsigned char)(request_id & 0xff);
    h[4] = (unsigned char)((len >> 8) & 0xff);
    h[5] = (unsigned char)(len & 0xff);
    h[6] = 0;                   /* no padding */
    h[7] = 0;
}

/* An empty FCGI_STDOUT (end of stream), then FCGI_END_REQUEST: status 0,
 * FCGI_REQUEST_COMPLETE. */
static void
end_records(unsigned char end[2 * FCGI_HEADER_LEN + 8], int request_id)
{
    memset(end, 0, 2 * FCGI_HEADER_LEN + 8);
    record_header(end, request_id, 0);
    record_header(end + FCGI_HEADER_LEN, request_id, 8);
    end[FCGI_HEADER_LEN + 1] = FCGI_END_REQUEST;
    end[2 * FCGI_HEADER_LEN + 4] = FCGI_REQUEST_COMPLETE;
}

/*
 * writev all of iov; a short write (a signal, the timeout) continues.
 * *written gets the bytes the socket took, also when it fails.
 */
static int
writev_all(int fd, struct iovec *iov, int n, size_t *written)
{
    *written = 0;
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        *written += (size_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Of the first `written` bytes of iov, those that were body (part 1). */
static size_t
body_written(
    const size_t *lens, const unsigned char *is_body, int n, size_t written)
{
    size_t sum = 0;
    int i;

    for (i = 0; i < n && written > 0; i++) {
        size_t take = lens[i] < written ? lens[i] : written;

        if (is_body[i])
            sum += take;
        written -= take;
    }
    return sum;
}

/* The web server is gone: the stream says so, as libfcgi's own writes do. */
static void
stream_failed(struct FCGX_Stream *out, int err)
{
    if (out->FCGI_errno == 0)
        out->FCGI_errno = err != 0 ? err : EPIPE;
}

int
fcgi_peer_gone(const struct fcgi_conn *c, struct FCGX_Stream *out)
{
    struct pollfd p = {c->fd, POLLRDHUP, 0};

    if (poll(&p, 1, 0) != 1 ||
        (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0)
        return 0;
    shutdown(c->fd, SHUT_RDWR);
    stream_failed(out, ECONNRESET);
    return 1;
}

int
fcgi_write_response(const struct fcgi_conn *c, struct FCGX_Stream *out,
    const void *head, size_t head_len, const void *body, size_t body_len,
    size_t *body_sent)
{
    unsigned char headers[RECORDS_MAX][FCGI_HEADER_LEN];
    unsigned char end[2 * FCGI_HEADER_LEN + 8];
    struct iovec iov[RECORDS_MAX * 3 + 1];
    size_t lens[RECORDS_MAX * 3 + 1], written;
    unsigned char is_body[RECORDS_MAX * 3 + 1];
    const char *part[2] = {head, body};
    size_t left[2] = {head_len, body_len}, total = head_len + body_len;
    int n = 0, r = 0, p = 0, i;

    if (body_sent != NULL)
        *body_sent = 0;
    if (total > (size_t)RECORDS_MAX * RECORD_MAX) {
        /* Flushed, so that a web server gone shows now, not at the end. */
        if ((head_len > 0 && FCGX_PutStr(head, (int)head_len, out) < 0) ||
            (body_len > 0 && FCGX_PutStr(body, (int)body_len, out) < 0) ||
            FCGX_FFlush(out) != 0)
            return -1;
        if (body_sent != NULL)
            *body_sent = body_len;
        return 0;
    }
    /* Whatever libfcgi holds goes first (nothing, on the paths that call). */
    if (FCGX_FFlush(out) != 0)
        return -1;
    while (total > 0) {
        size_t room = total < RECORD_MAX ? total : RECORD_MAX;

        record_header(headers[r], c->request_id, room);
        is_body[n] = 0;
        iov[n].iov_base = headers[r++];
        iov[n++].iov_len = FCGI_HEADER_LEN;
        total -= room;
        while (room > 0) {
            size_t take;

            while (left[p] == 0)
                p++;
            take = left[p] < room ? left[p] : room;
            is_body[n] = p == 1;
            iov[n].iov_base = (void *)(uintptr_t)part[p];
            iov[n++].iov_len = take;
            part[p] += take;
            left[p] -= take;
            room -= take;
        }
    }
    /*
     * The end of the request in the same writev: the empty FCGI_STDOUT and
     * FCGI_END_REQUEST that FCGX_Finish_r would write with a syscall of its
     * own. out is then marked closed as FCGX_FClose leaves it, so libfcgi
     * writes neither again (FCGI_STDERR, never written to, adds nothing).
     */
    end_records(end, c->request_id);
    is_body[n] = 0;
    iov[n].iov_base = end;
    iov[n++].iov_len = sizeof(end);
    for (i = 0; i < n; i++)
        lens[i] = iov[i].iov_len;
    if (writev_all(c->fd, iov, n, &written) != 0) {
        int err = errno;

        if (body_sent != NULL)
            *body_sent = body_written(lens, is_body, n, written);
        shutdown(c->fd, SHUT_RDWR);
        stream_failed(out, err);
        return -1;
    }
    if (body_sent != NULL)
        *body_sent = body_len;
    out->wasFCloseCalled = 1;
    out->isClosed = 1;
    out->rdNext = out->stop = out->wrNext;
    return 0;
}
