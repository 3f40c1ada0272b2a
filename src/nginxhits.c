#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "nginxhits.h"
#include "nginxhits_format.h"
#include "util.h"

#define STEP_MS 100

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
    struct nginxhits_header *map;           /* read-only; NULL: none */
    size_t size;
    uint32_t nslots;
    dev_t dev;
    ino_t ino;
    struct seen *seen;                      /* nslots of them */
    int looked;             /* a first look was made: later files count whole */
    int complained;         /* the path's trouble was logged */
    int stop;               /* atomic */
    pthread_t thread;
};

struct nginxhits *
nginxhits_new(const char *path, struct metrics *m)
{
    struct nginxhits *nh = calloc(1, sizeof(*nh));

    if (nh == NULL || (nh->path = strdup(path)) == NULL) {
        free(nh);
        return NULL;
    }
    nh->metrics = m;
    return nh;
}

static void
unmap(struct nginxhits *nh)
{
    if (nh->map != NULL)
        munmap(nh->map, nh->size);
    nh->map = NULL;
    free(nh->seen);
    nh->seen = NULL;
}

static const struct nginxhits_slot *
slot_at(const struct nginxhits_header *h, uint32_t i)
{
    return (const struct nginxhits_slot *)(h + 1) + i;
}

static uint64_t
load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Growth of a counter since the last look; a smaller value starts over. */
static uint64_t
grown(const uint64_t *now, uint64_t *seen)
{
    uint64_t v = load(now), d = v >= *seen ? v - *seen : v;

    *seen = v;
    return d;
}

static void
complain(struct nginxhits *nh, const char *why)
{
    if (!nh->complained)
        log_warnx("NGINX_HITS_FILE: %s: %s (waiting for it)", nh->path, why);
    nh->complained = 1;
}

/*
 * Count what grew in every ready slot; with count 0, only note the counts
 * (the baseline of a file that was there before us).
 */
static uint64_t
read_slots(struct nginxhits *nh, int count)
{
    const struct nginxhits_header *h = nh->map;
    uint32_t used = __atomic_load_n(&h->used, __ATOMIC_ACQUIRE), i;
    uint64_t total = 0, grew[NGINXHITS_NCLASS], sum;
    int k, j, counted;

    if (used > nh->nslots)
        used = nh->nslots;
    for (i = 0; i < used; i++) {
        const struct nginxhits_slot *s = slot_at(h, i);
        struct seen *was = &nh->seen[i];
        enum metrics_cache cache;
        char name[NGINXHITS_NAME_MAX + 1];
        uint64_t d;

        if (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE))
            continue;
        /* The file is shared with another program: bound the name. */
        if (s->len == 0 || s->len > NGINXHITS_NAME_MAX)
            continue;
        memcpy(name, s->name, s->len);
        name[s->len] = '\0';
        for (k = 0; k < NGINXHITS_NKIND; k++) {
            cache = k == NGINXHITS_KIND_HIT ? METRICS_HIT : METRICS_STALE;
            for (j = 0; j < NGINXHITS_NSTATUS; j++) {
                d = grown(&s->requests[k][j], &was->requests[k][j]);
                if (count && d > 0) {
                    metrics_requests_add(nh->metrics, name, cache,
                        j < NGINXHITS_NSTATUS - 1 ? hit_statuses[j] : 0, d);
                    total += d;
                }
            }
            /* Classes before the sum: the module adds to the sum first,
             * so a class seen grown has its durations in the sum. */
            for (j = 0, counted = 0; j < NGINXHITS_NCLASS; j++)
                if ((grew[j] = grown(&s->duration[k][j],
                        &was->duration[k][j])) > 0)
                    counted = 1;
            sum = load(&s->duration_ms_sum[k]);
            /* Without a class grown, what the sum gained waits for it. */
            if (!counted)
                continue;
            d = sum >= was->duration_ms_sum[k] ?
                sum - was->duration_ms_sum[k] : sum;
            was->duration_ms_sum[k] = sum;
            for (j = 0; count && j < NGINXHITS_NCLASS; j++) {
                if (grew[j] == 0)
                    continue;
                /* The histograms keep one sum: all of it with the first. */
                metrics_durations_add(nh->metrics, name, cache,
                    j < NGINXHITS_NCLASS - 1 ? ms_bounds[j] / 1000.0 :
                    ms_bounds[NGINXHITS_NCLASS - 2] / 1000.0 + 1,
                    grew[j], (double)d / 1000.0);
                d = 0;
            }
        }
        d = grown(&s->bytes, &was->bytes);
        if (count)
            metrics_bytes_add(nh->metrics, name, d);
    }
    return total;
}

/* Map the file at the path if it is valid; 0 when mapped, else -1. */
static int
map_file(struct nginxhits *nh, const struct stat *st)
{
    struct nginxhits_header *h;
    struct nginxhits_header head;
    void *p;
    int fd;

    if ((size_t)st->st_size < sizeof(head)) {
        complain(nh, "not a counters file yet (too short)");
        return -1;
    }
    if ((fd = open(nh->path, O_RDONLY | O_CLOEXEC)) == -1) {
        complain(nh, strerror(errno));
        return -1;
    }
    if (pread(fd, &head, sizeof(head), 0) != (ssize_t)sizeof(head) ||
        memcmp(head.magic, NGINXHITS_MAGIC, 8) != 0 ||
        head.version != NGINXHITS_VERSION ||
        head.slot_size != sizeof(struct nginxhits_slot) ||
        head.nslots < 1 || head.nslots > NGINXHITS_MAX_SLOTS ||
        (uint64_t)st->st_size != NGINXHITS_FILE_SIZE(head.nslots)) {
        close(fd);
        complain(nh, "not a counters file of this version (is the NGINX "
            "module the one built with this hereproxy?)");
        return -1;
    }
    p = mmap(NULL, (size_t)st->st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        complain(nh, strerror(errno));
        return -1;
    }
    h = p;
    if ((nh->seen = calloc(head.nslots, sizeof(*nh->seen))) == NULL) {
        munmap(p, (size_t)st->st_size);
        return -1;
    }
    nh->map = h;
    nh->size = (size_t)st->st_size;
    nh->nslots = head.nslots;
    nh->dev = st->st_dev;
    nh->ino = st->st_ino;
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
        /* Gone: what NGINX still adds to the mapped one is counted. */
        if (nh->map == NULL)
            complain(nh, strerror(errno));
    } else if (nh->map == NULL || st.st_dev != nh->dev ||
        st.st_ino != nh->ino) {
        if (nh->map != NULL) {
            total += read_slots(nh, 1);     /* the last of the old file */
            unmap(nh);
        }
        if (map_file(nh, &st) == 0 && first)
            read_slots(nh, 0);              /* there before us: baseline */
    }
    if (nh->map != NULL)
        total += read_slots(nh, 1);
    return total;
}

void
nginxhits_free(struct nginxhits *nh)
{
    if (nh == NULL)
        return;
    unmap(nh);
    free(nh->path);
    free(nh);
}

static void *
step_main(void *arg)
{
    struct nginxhits *nh = arg;
    struct timespec pause = {0, STEP_MS * 1000000L};

    while (!__atomic_load_n(&nh->stop, __ATOMIC_ACQUIRE)) {
        nginxhits_step(nh);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

struct nginxhits *
nginxhits_start(const char *path, struct metrics *m, char *err,
    size_t errlen)
{
    struct nginxhits *nh = nginxhits_new(path, m);

    if (nh == NULL) {
        util_strlcpy(err, "out of memory", errlen);
        return NULL;
    }
    if (pthread_create(&nh->thread, NULL, step_main, nh) != 0) {
        util_strlcpy(err, "NGINX_HITS_FILE: cannot start the thread", errlen);
        nginxhits_free(nh);
        return NULL;
    }
    return nh;
}

void
nginxhits_stop(struct nginxhits *nh)
{
    if (nh == NULL)
        return;
    __atomic_store_n(&nh->stop, 1, __ATOMIC_RELEASE);
    pthread_join(nh->thread, NULL);
    nginxhits_step(nh);
    nginxhits_free(nh);
}
