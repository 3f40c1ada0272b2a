#include "config.h"

#include <errno.h>
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

/* writev all of iov; a short write (a signal, the timeout) continues. */
static int
writev_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
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

int
fcgi_write_response(const struct fcgi_conn *c, struct FCGX_Stream *out,
    const void *head, size_t head_len, const void *body, size_t body_len)
{
    unsigned char headers[RECORDS_MAX][FCGI_HEADER_LEN];
    unsigned char end[2 * FCGI_HEADER_LEN + 8];
    struct iovec iov[RECORDS_MAX * 3 + 1];
    const char *part[2] = {head, body};
    size_t left[2] = {head_len, body_len}, total = head_len + body_len;
    int n = 0, r = 0, p = 0;

    if (total > (size_t)RECORDS_MAX * RECORD_MAX) {
        if ((head_len > 0 && FCGX_PutStr(head, (int)head_len, out) < 0) ||
            (body_len > 0 && FCGX_PutStr(body, (int)body_len, out) < 0))
            return -1;
        return 0;
    }
    /* Whatever libfcgi holds goes first (nothing, on the paths that call). */
    if (FCGX_FFlush(out) != 0)
        return -1;
    while (total > 0) {
        size_t room = total < RECORD_MAX ? total : RECORD_MAX;

        record_header(headers[r], c->request_id, room);
        iov[n].iov_base = headers[r++];
        iov[n++].iov_len = FCGI_HEADER_LEN;
        total -= room;
        while (room > 0) {
            size_t take;

            while (left[p] == 0)
                p++;
            take = left[p] < room ? left[p] : room;
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
    iov[n].iov_base = end;
    iov[n++].iov_len = sizeof(end);
    if (writev_all(c->fd, iov, n) != 0) {
        shutdown(c->fd, SHUT_RDWR);
        return -1;
    }
    out->wasFCloseCalled = 1;
    out->isClosed = 1;
    out->rdNext = out->stop = out->wrNext;
    return 0;
}
