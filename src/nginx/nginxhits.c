#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../log.h"
#include "nginxhits.h"
#include "nginxhits_format.h"
#include "../util.h"

#define STEP_MS 100
#define CHUNK_SLOTS 64 /* slots per pread: 32 KiB */

static const int hit_statuses[] = NGINXHITS_STATUSES;
static const unsigned ms_bounds[] = NGINXHITS_MS_BOUNDS;

/* What one slot held at the last look: the counters only. */
struct seen {
    uint64_t requests[NGINXHITS_NKIND][NGINXHITS_NSTATUS];
    uint64_t bytes;
    uint64_t duration_ms_sum[NGINXHITS_NKIND];
    uint64_t duration[NGINXHITS_NKIND][NGINXHITS_NCLASS];
};

struct nginxhits {
    char *path;
    struct metrics *metrics;
    int fd;      /* the file read; -1: none */
    size_t size; /* what it must measure */
    uint32_t nslots;
    dev_t dev;
    ino_t ino;
    struct seen *seen;            /* nslots of them */
    struct nginxhits_slot *chunk; /* CHUNK_SLOTS read at a time */
    int looked;     /* a first look was made: later files count whole */
    int complained; /* the path's trouble was logged */
};

struct nginxhits *
nginxhits_new(const char *path, struct metrics *m)
{
    struct nginxhits *nh = calloc(1, sizeof(*nh));

    if (nh == NULL)
        return NULL;
    nh->fd = -1;
    if ((nh->path = strdup(path)) == NULL ||
        (nh->chunk = calloc(CHUNK_SLOTS, sizeof(*nh->chunk))) == NULL) {
        free(nh->path);
        free(nh);
        return NULL;
    }
    nh->metrics = m;
    return nh;
}

/* Forget the file: the next one (or this one, whole again) starts over. */
static void
close_file(struct nginxhits *nh)
{
    if (nh->fd != -1)
        close(nh->fd);
    nh->fd = -1;
    free(nh->seen);
    nh->seen = NULL;
}

/* Growth of a counter since the last look; a smaller value starts over. */
static uint64_t
grown(uint64_t now, uint64_t *seen)
{
    uint64_t d = now >= *seen ? now - *seen : now;

    *seen = now;
    return d;
}

static void
complain(struct nginxhits *nh, const char *why)
{
    if (!nh->complained)
        log_warnx("NGINX_HITS_FILE: %s: %s (waiting for it)", nh->path, why);
    nh->complained = 1;
}

/* A header this reader can use, for a file of size bytes. */
static int
header_ok(const struct nginxhits_header *head, uint64_t size)
{
    return memcmp(head->magic, NGINXHITS_MAGIC, 8) == 0 &&
        head->version == NGINXHITS_VERSION &&
        head->slot_size == sizeof(struct nginxhits_slot) && head->nslots >= 1 &&
        head->nslots <= NGINXHITS_MAX_SLOTS &&
        size == NGINXHITS_FILE_SIZE(head->nslots);
}

/* Count what grew in one slot (a copy); with count 0, only note it. */
static uint64_t
read_slot(struct nginxhits *nh, const struct nginxhits_slot *s,
    struct seen *was, int count)
{
    uint64_t total = 0, grew[NGINXHITS_NCLASS], d;
    enum metrics_cache cache;
    char name[NGINXHITS_NAME_MAX + 1];
    int k, j, counted;

    if (!s->ready)
        return 0;
    /* The file is shared with another program: bound the name. */
    if (s->len == 0 || s->len > NGINXHITS_NAME_MAX)
        return 0;
    memcpy(name, s->name, s->len);
    name[s->len] = '\0';
    for (k = 0; k < NGINXHITS_NKIND; k++) {
        cache = k == NGINXHITS_KIND_HIT ? METRICS_HIT : METRICS_STALE;
        for (j = 0; j < NGINXHITS_NSTATUS; j++) {
            d = grown(s->requests[k][j], &was->requests[k][j]);
            if (count && d > 0) {
                metrics_requests_add(nh->metrics, name, cache,
                    j < NGINXHITS_NSTATUS - 1 ? hit_statuses[j] : 0, d);
                total += d;
            }
        }
        /* Classes before the sum: the module adds to the sum first,
         * so a class seen grown has its durations in the sum. */
        for (j = 0, counted = 0; j < NGINXHITS_NCLASS; j++)
            if ((grew[j] = grown(s->duration[k][j], &was->duration[k][j])) > 0)
                counted = 1;
        /* Without a class grown, what the sum gained waits for it. */
        if (!counted)
            continue;
        d = s->duration_ms_sum[k] >= was->duration_ms_sum[k]
            ? s->duration_ms_sum[k] - was->duration_ms_sum[k]
            : s->duration_ms_sum[k];
        was->duration_ms_sum[k] = s->duration_ms_sum[k];
        for (j = 0; count && j < NGINXHITS_NCLASS; j++) {
            if (grew[j] == 0)
                continue;
            /* The histograms keep one sum: all of it with the first. */
            metrics_durations_add(nh->metrics, name, cache,
                j < NGINXHITS_NCLASS - 1
                    ? ms_bounds[j] / 1000.0
                    : ms_bounds[NGINXHITS_NCLASS - 2] / 1000.0 + 1,
                grew[j], (double)d / 1000.0);
            d = 0;
        }
    }
    d = grown(s->bytes, &was->bytes);
    if (count)
        metrics_bytes_add(nh->metrics, name, d);
    return total;
}

/*
 * Count what grew in every ready slot; with count 0, only note the counts
 * (the baseline of a file that was there before us). The file is read
 * with pread, never mapped: another program may cut it short at any
 * moment, and a mapping would then fault. Returns 0 with *total added to,
 * or -1 when the file is no longer what was opened (cut short, or a
 * header that changed): the caller starts over.
 */
static int
read_slots(struct nginxhits *nh, int count, uint64_t *total)
{
    struct nginxhits_header head;
    uint32_t used, i, n, j;
    size_t len;
    off_t off;

    if (pread(nh->fd, &head, sizeof(head), 0) != (ssize_t)sizeof(head) ||
        !header_ok(&head, nh->size) || head.nslots != nh->nslots)
        return -1;
    if ((used = head.used) > nh->nslots)
        used = nh->nslots;
    for (i = 0; i < used; i += n) {
        n = used - i < CHUNK_SLOTS ? used - i : CHUNK_SLOTS;
        len = (size_t)n * sizeof(*nh->chunk);
        off = (off_t)(sizeof(head) + (size_t)i * sizeof(*nh->chunk));
        if (pread(nh->fd, nh->chunk, len, off) != (ssize_t)len)
            return -1;
        for (j = 0; j < n; j++)
            *total += read_slot(nh, &nh->chunk[j], &nh->seen[i + j], count);
    }
    return 0;
}

/* Open the file at the path if it is valid; 0 when open, else -1. */
static int
open_file(struct nginxhits *nh, const struct stat *st)
{
    struct nginxhits_header head;
    struct stat fst;
    int fd;

    if ((size_t)st->st_size < sizeof(head)) {
        complain(nh, "not a counters file yet (too short)");
        return -1;
    }
    if ((fd = open(nh->path, O_RDONLY | O_CLOEXEC)) == -1) {
        complain(nh, strerror(errno));
        return -1;
    }
    /* The inode opened, which may not be the one stat() saw. */
    if (fstat(fd, &fst) == -1 ||
        pread(fd, &head, sizeof(head), 0) != (ssize_t)sizeof(head) ||
        !header_ok(&head, (uint64_t)fst.st_size)) {
        close(fd);
        complain(nh,
            "not a counters file of this version (is the NGINX "
            "module the one built with this hereproxy?)");
        return -1;
    }
    if ((nh->seen = calloc(head.nslots, sizeof(*nh->seen))) == NULL) {
        close(fd);
        return -1;
    }
    nh->fd = fd;
    nh->size = (size_t)fst.st_size;
    nh->nslots = head.nslots;
    nh->dev = fst.st_dev;
    nh->ino = fst.st_ino;
    if (nh->complained)
        log_info("NGINX_HITS_FILE: %s: counting NGINX's hits", nh->path);
    nh->complained = 0;
    return 0;
}

uint64_t
nginxhits_step(struct nginxhits *nh)
{
    struct stat st;
    uint64_t total = 0;
    int first = !nh->looked;

    nh->looked = 1;
    if (stat(nh->path, &st) == -1) {
        /* Gone: what NGINX still adds to the open one is counted. */
        if (nh->fd == -1)
            complain(nh, strerror(errno));
    } else if (nh->fd == -1 || st.st_dev != nh->dev || st.st_ino != nh->ino) {
        if (nh->fd != -1) {
            read_slots(nh, 1, &total); /* the last of the old file */
            close_file(nh);
        }
        if (open_file(nh, &st) == 0 && first &&
            read_slots(nh, 0, &total) != 0) /* there before us: baseline */
            close_file(nh);
    }
    if (nh->fd != -1 && read_slots(nh, 1, &total) != 0) {
        /* Cut short or rewritten under us: once it is whole again, it
         * counts from zero, as a file NGINX created anew. */
        log_info("NGINX_HITS_FILE: %s: cut short or rewritten; counting "
                 "again from zero once it is whole",
            nh->path);
        close_file(nh);
    }
    return total;
}

void
nginxhits_free(struct nginxhits *nh)
{
    if (nh == NULL)
        return;
    close_file(nh);
    free(nh->chunk);
    free(nh->path);
    free(nh);
}
