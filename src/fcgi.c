#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fcgi.h"

#define FCGI_VERSION_1 1
/* Content per record we write: the most a record holds, a multiple of 8. */
#define RECORD_MAX 65528
/* Records per writev: about 1 MiB, well under IOV_MAX. */
#define RECORDS_MAX 16
/* Room for the largest record (content and padding) and its header. */
#define IN_MAX (FCGI_HEADER_LEN + 65535 + 255)
#define IN_START (16 * 1024)

#define END_REQUEST_COMPLETE 0
#define END_CANT_MPX_CONN 1
#define END_UNKNOWN_ROLE 3

static long capacity = 1;

struct fcgi_conn {
    int fd;
    unsigned char *in; /* what was read and not yet taken */
    size_t in_off, in_len, in_cap;
    /* The request being read. */
    int id; /* 0: none begun */
    int keep;
    int params_done, stdin_done;
    unsigned char *pbuf; /* the FCGI_PARAMS stream, raw */
    size_t plen, pcap;
    char *arena; /* "name\0value\0" per parameter */
    size_t arena_cap;
    struct fcgi_param params[FCGI_NPARAMS_MAX];
};

void
fcgi_set_capacity(long max_conns)
{
    capacity = max_conns > 0 ? max_conns : 1;
}

void
fcgi_record_header(unsigned char h[FCGI_HEADER_LEN], int type, int id,
    size_t len, size_t padding)
{
    h[0] = FCGI_VERSION_1;
    h[1] = (unsigned char)type;
    h[2] = (unsigned char)((id >> 8) & 0xff);
    h[3] = (unsigned char)(id & 0xff);
    h[4] = (unsigned char)((len >> 8) & 0xff);
    h[5] = (unsigned char)(len & 0xff);
    h[6] = (unsigned char)padding;
    h[7] = 0;
}

struct fcgi_conn *
fcgi_conn_new(int fd)
{
    struct fcgi_conn *c = calloc(1, sizeof(*c));

    if (c == NULL || (c->in = malloc(IN_START)) == NULL) {
        free(c);
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->in_cap = IN_START;
    return c;
}

void
fcgi_conn_free(struct fcgi_conn *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c->in);
    free(c->pbuf);
    free(c->arena);
    free(c);
}

int
fcgi_conn_fd(const struct fcgi_conn *c)
{
    return c->fd;
}

int
fcgi_conn_idle(const struct fcgi_conn *c)
{
    struct pollfd p = {c->fd, POLLIN, 0};

    return c->id == 0 && c->in_len == c->in_off && poll(&p, 1, 0) == 0;
}

/*
 * Send all of iov; a short write (a signal, the timeout) continues. No
 * SIGPIPE: a web server that is gone is an error to report, not a signal.
 */
static ssize_t
writev_all(int fd, struct iovec *iov, int n)
{
    ssize_t total = 0;

    while (n > 0) {
        struct msghdr msg;
        ssize_t w;

        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)n;
        w = sendmsg(fd, &msg, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        total += w;
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
    return total;
}

/* An FCGI_END_REQUEST record for id, preceded by an empty FCGI_STDOUT when
 * stdout_end: the end of a response. Returns its length. */
static size_t
end_records(unsigned char *p, int id, int protocol_status, int stdout_end)
{
    size_t n = 0;

    if (stdout_end) {
        fcgi_record_header(p, FCGI_STDOUT, id, 0, 0);
        n += FCGI_HEADER_LEN;
    }
    fcgi_record_header(p + n, FCGI_END_REQUEST, id, 8, 0);
    memset(p + n + FCGI_HEADER_LEN, 0, 8);
    p[n + FCGI_HEADER_LEN + 4] = (unsigned char)protocol_status;
    return n + 2 * FCGI_HEADER_LEN;
}

/* A record of our own (a refusal, a management answer): 0 or -1. */
static int
send_record(struct fcgi_conn *c, const unsigned char *rec, size_t len)
{
    struct iovec iov = {(void *)(uintptr_t)rec, len};

    return writev_all(c->fd, &iov, 1) < 0 ? -1 : 0;
}

static int
refuse(struct fcgi_conn *c, int id, int protocol_status)
{
    unsigned char rec[2 * FCGI_HEADER_LEN + 8];

    return send_record(c, rec, end_records(rec, id, protocol_status, 0));
}

/* Read more into c->in; 1 when bytes came, 0 at end, -1 error, -2 EINTR. */
static int
fill(struct fcgi_conn *c, size_t need)
{
    ssize_t n;

    if (c->in_off > 0 && c->in_len - c->in_off < need) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_cap < need) {
        unsigned char *p = realloc(c->in, IN_MAX);

        if (p == NULL)
            return -1;
        c->in = p;
        c->in_cap = IN_MAX;
    }
    n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n < 0)
        return errno == EINTR ? -2 : -1;
    if (n == 0)
        return 0;
    c->in_len += (size_t)n;
    return 1;
}

static void
request_reset(struct fcgi_conn *c)
{
    c->id = 0;
    c->keep = 0;
    c->params_done = c->stdin_done = 0;
    c->plen = 0;
}

/* A name-value pair's length: one byte below 128, else four. */
static int
pair_len(const unsigned char *p, size_t avail, size_t *len, size_t *used)
{
    if (avail < 1)
        return -1;
    if (!(p[0] & 0x80)) {
        *len = p[0];
        *used = 1;
        return 0;
    }
    if (avail < 4)
        return -1;
    *len = ((size_t)(p[0] & 0x7f) << 24) | ((size_t)p[1] << 16) |
        ((size_t)p[2] << 8) | p[3];
    *used = 4;
    return 0;
}

/* The FCGI_PARAMS stream as NUL-terminated pairs. Returns the count or -1. */
static long
decode_params(struct fcgi_conn *c)
{
    size_t off = 0, a = 0, n = 0, need = c->plen + 2 * FCGI_NPARAMS_MAX;

    if (c->arena_cap < need) {
        char *p = realloc(c->arena, need);

        if (p == NULL)
            return -1;
        c->arena = p;
        c->arena_cap = need;
    }
    while (off < c->plen) {
        size_t nlen, vlen, u1, u2;
        struct fcgi_param *pp;

        if (n == FCGI_NPARAMS_MAX ||
            pair_len(c->pbuf + off, c->plen - off, &nlen, &u1) != 0 ||
            pair_len(c->pbuf + off + u1, c->plen - off - u1, &vlen, &u2) != 0)
            return -1;
        off += u1 + u2;
        if (nlen > c->plen - off || vlen > c->plen - off - nlen)
            return -1;
        pp = &c->params[n++];
        memcpy(c->arena + a, c->pbuf + off, nlen);
        c->arena[a + nlen] = '\0';
        pp->name = c->arena + a;
        pp->name_len = nlen;
        a += nlen + 1;
        memcpy(c->arena + a, c->pbuf + off + nlen, vlen);
        c->arena[a + vlen] = '\0';
        pp->value = c->arena + a;
        pp->value_len = vlen;
        a += vlen + 1;
        off += nlen + vlen;
    }
    return (long)n;
}

/* FCGI_GET_VALUES: what we know of, in one FCGI_GET_VALUES_RESULT. */
static int
answer_values(struct fcgi_conn *c, const unsigned char *q, size_t qlen)
{
    unsigned char rec[FCGI_HEADER_LEN + 256];
    size_t off = 0, out = FCGI_HEADER_LEN;

    while (off < qlen) {
        size_t nlen, vlen, u1, u2;
        const char *name;
        char value[24];
        int vl;

        if (pair_len(q + off, qlen - off, &nlen, &u1) != 0 ||
            pair_len(q + off + u1, qlen - off - u1, &vlen, &u2) != 0)
            return -1;
        off += u1 + u2;
        if (nlen > qlen - off || vlen > qlen - off - nlen)
            return -1;
        name = (const char *)q + off;
        off += nlen + vlen;
        if (nlen == 15 && memcmp(name, "FCGI_MPXS_CONNS", 15) == 0)
            vl = snprintf(value, sizeof(value), "0");
        else if ((nlen == 14 && memcmp(name, "FCGI_MAX_CONNS", 14) == 0) ||
            (nlen == 13 && memcmp(name, "FCGI_MAX_REQS", 13) == 0))
            vl = snprintf(value, sizeof(value), "%ld", capacity);
        else
            continue;
        if (out + 2 + nlen + (size_t)vl > sizeof(rec))
            break;
        rec[out++] = (unsigned char)nlen;
        rec[out++] = (unsigned char)vl;
        memcpy(rec + out, name, nlen);
        memcpy(rec + out + nlen, value, (size_t)vl);
        out += nlen + (size_t)vl;
    }
    fcgi_record_header(
        rec, FCGI_GET_VALUES_RESULT, 0, out - FCGI_HEADER_LEN, 0);
    return send_record(c, rec, out);
}

/*
 * One record: content p of len bytes. Returns 1 when the request is
 * complete, 0 to read on, -1 when the connection is done.
 */
static int
take_record(
    struct fcgi_conn *c, int type, int id, const unsigned char *p, size_t len)
{
    switch (type) {
    case FCGI_BEGIN_REQUEST:
        if (len != 8 || id == 0)
            return -1;
        if (c->id != 0) /* one at a time: never multiplexed */
            return c->id == id ? -1 : refuse(c, id, END_CANT_MPX_CONN);
        if (((int)p[0] << 8 | p[1]) != FCGI_RESPONDER)
            return refuse(c, id, END_UNKNOWN_ROLE);
        request_reset(c);
        c->id = id;
        c->keep = p[2] & FCGI_KEEP_CONN;
        return 0;
    case FCGI_ABORT_REQUEST:
        if (c->id == 0 || id != c->id)
            return 0;
        /* Nothing was answered yet: end it, as the protocol asks. */
        if (refuse(c, id, END_REQUEST_COMPLETE) != 0 || !c->keep)
            return -1;
        request_reset(c);
        return 0;
    case FCGI_PARAMS:
        if (c->id == 0 || id != c->id || c->params_done)
            return 0;
        if (len == 0) {
            c->params_done = 1;
            break;
        }
        if (c->plen + len > FCGI_PARAMS_MAX)
            return -1;
        if (c->pcap < c->plen + len) {
            size_t cap = c->pcap ? c->pcap : 4096;
            unsigned char *q;

            while (cap < c->plen + len)
                cap *= 2;
            if ((q = realloc(c->pbuf, cap)) == NULL)
                return -1;
            c->pbuf = q;
            c->pcap = cap;
        }
        memcpy(c->pbuf + c->plen, p, len);
        c->plen += len;
        return 0;
    case FCGI_STDIN:
        if (c->id != 0 && id == c->id && len == 0)
            c->stdin_done = 1;
        break; /* a body is read and dropped */
    case FCGI_GET_VALUES:
        return id == 0 && answer_values(c, p, len) == 0 ? 0 : -1;
    default:
        if (id == 0) { /* a management record we do not know */
            unsigned char rec[2 * FCGI_HEADER_LEN];

            fcgi_record_header(rec, FCGI_UNKNOWN_TYPE, 0, 8, 0);
            memset(rec + FCGI_HEADER_LEN, 0, 8);
            rec[FCGI_HEADER_LEN] = (unsigned char)type;
            return send_record(c, rec, sizeof(rec)) == 0 ? 0 : -1;
        }
        return 0; /* FCGI_DATA, or what a web server never sends */
    }
    return c->id != 0 && c->params_done && c->stdin_done ? 1 : 0;
}

int
fcgi_read_request(struct fcgi_conn *c, struct fcgi_request *req)
{
    for (;;) {
        size_t avail = c->in_len - c->in_off, clen, pad;
        const unsigned char *h = c->in + c->in_off;
        int rc;

        if (avail >= FCGI_HEADER_LEN) {
            if (h[0] != FCGI_VERSION_1)
                return -1;
            clen = (size_t)h[4] << 8 | h[5];
            pad = h[6];
            if (avail >= FCGI_HEADER_LEN + clen + pad) {
                c->in_off += FCGI_HEADER_LEN + clen + pad;
                rc = take_record(
                    c, h[1], h[2] << 8 | h[3], h + FCGI_HEADER_LEN, clen);
                if (rc < 0)
                    return -1;
                if (rc > 0) {
                    long n = decode_params(c);

                    if (n < 0)
                        return -1;
                    req->id = c->id;
                    req->keep_conn = c->keep;
                    req->nparams = (size_t)n;
                    req->params = c->params;
                    request_reset(c);
                    return 1;
                }
                continue;
            }
            rc = fill(c, FCGI_HEADER_LEN + clen + pad);
        } else {
            rc = fill(c, FCGI_HEADER_LEN);
        }
        if (rc == 0) /* closed: cleanly only between requests */
            return c->id == 0 && c->in_len == c->in_off ? 0 : -1;
        if (rc < 0)
            return rc;
    }
}

void
fcgi_out_init(struct fcgi_out *out, struct fcgi_conn *c, int id)
{
    memset(out, 0, sizeof(*out));
    out->conn = c;
    out->id = id;
}

int
fcgi_write(struct fcgi_out *out, const void *head, size_t head_len,
    const void *body, size_t body_len, int end)
{
    unsigned char headers[RECORDS_MAX][FCGI_HEADER_LEN];
    unsigned char tail[3 * FCGI_HEADER_LEN + 8];
    struct iovec iov[RECORDS_MAX * 3 + 1];
    const char *part[2] = {head, body};
    size_t left[2] = {head_len, body_len};
    size_t total = head_len + body_len;
    int p = 0;

    if (out->failed || out->ended)
        return -1;
    /* At most RECORDS_MAX records per writev; the end with the last. */
    do {
        size_t body_in = 0;
        int n = 0, r = 0;
        ssize_t w;

        while (total > 0 && r < RECORDS_MAX) {
            size_t room = total < RECORD_MAX ? total : RECORD_MAX;

            fcgi_record_header(headers[r], FCGI_STDOUT, out->id, room, 0);
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
                if (p == 1)
                    body_in += take;
                part[p] += take;
                left[p] -= take;
                room -= take;
            }
        }
        if (total == 0 && end) {
            iov[n].iov_base = tail;
            iov[n++].iov_len =
                end_records(tail, out->id, END_REQUEST_COMPLETE, 1);
        }
        if (n == 0)
            break;
        w = writev_all(out->conn->fd, iov, n);
        if (w < 0) {
            out->failed = 1;
            return -1;
        }
        out->body_written += body_in;
    } while (total > 0);
    if (end)
        out->ended = 1;
    return 0;
}

int
fcgi_end(struct fcgi_out *out)
{
    return fcgi_write(out, NULL, 0, NULL, 0, 1);
}

void
fcgi_abort(struct fcgi_out *out)
{
    static const unsigned char bogus[FCGI_HEADER_LEN]; /* version 0 */

    if (!out->failed &&
        send(out->conn->fd, bogus, sizeof(bogus), MSG_NOSIGNAL) < 0) {
        /* The web server is gone already: nothing left to tell. */
    }
    shutdown(out->conn->fd, SHUT_RDWR);
    out->failed = 1;
}

int
fcgi_peer_gone(const struct fcgi_out *out)
{
    struct pollfd p = {out->conn->fd, POLLIN | POLLRDHUP, 0};
    char b;

    if (poll(&p, 1, 0) != 1)
        return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR))
        return 1;
    /* Readable: end of stream, or a record (never mind it now). */
    return recv(out->conn->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}
