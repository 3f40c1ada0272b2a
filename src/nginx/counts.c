#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../settings.h"
#include "../util.h"
#include "counts.h"
#include "nginxhits.h"
#include "nginxlog.h"

#define STEP_MS 100

struct nginx_counts {
    struct nginxlog_follow *follow; /* NGINX_LOG_FILE, or NULL */
    struct nginxhits *hits;         /* NGINX_HITS_FILE, or NULL */
    int stop;                       /* atomic */
    pthread_t thread;
};

/* One look; 1 when there is more to read at once. */
static int
step(struct nginx_counts *nc)
{
    if (nc->follow != NULL) {
        nginxlog_follow_step(nc->follow, (uint64_t)util_mono_ms());
        return nginxlog_follow_more(nc->follow);
    }
    nginxhits_step(nc->hits);
    return 0;
}

static void *
counts_main(void *arg)
{
    struct nginx_counts *nc = arg;
    struct timespec pause = {0, STEP_MS * 1000000L};

    while (!__atomic_load_n(&nc->stop, __ATOMIC_ACQUIRE))
        if (!step(nc))
            nanosleep(&pause, NULL);
    return NULL;
}

static void
counts_free(struct nginx_counts *nc)
{
    nginxlog_follow_free(nc->follow);
    nginxhits_free(nc->hits);
    free(nc);
}

struct nginx_counts *
nginx_counts_start(
    const struct settings *cfg, struct metrics *m, char *err, size_t errlen)
{
    struct nginx_counts *nc;

    *err = '\0';
    if (*cfg->nginx_log_file == '\0' && *cfg->nginx_hits_file == '\0')
        return NULL;
    if ((nc = calloc(1, sizeof(*nc))) == NULL ||
        (*cfg->nginx_log_file != '\0' &&
            (nc->follow = nginxlog_follow_new(cfg->nginx_log_file, m)) ==
                NULL) ||
        (*cfg->nginx_hits_file != '\0' &&
            (nc->hits = nginxhits_new(cfg->nginx_hits_file, m)) == NULL)) {
        snprintf(err, errlen, "out of memory");
        if (nc != NULL)
            counts_free(nc);
        return NULL;
    }
    if (pthread_create(&nc->thread, NULL, counts_main, nc) != 0) {
        snprintf(err, errlen,
            "cannot start the thread counting NGINX's "
            "hits");
        counts_free(nc);
        return NULL;
    }
    return nc;
}

void
nginx_counts_stop(struct nginx_counts *nc)
{
    if (nc == NULL)
        return;
    __atomic_store_n(&nc->stop, 1, __ATOMIC_RELEASE);
    pthread_join(nc->thread, NULL);
    step(nc); /* what came in the last moments counts too */
    counts_free(nc);
}
