#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "flight.h"
#include "flightjobs.h"
#include "util.h"

struct job {
    struct job *next;
    struct flight *flight;
    void *data;
};

struct flight_jobs {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* news: a flight ended, a job, a stop */
    pthread_cond_t done_cond;
    struct job *queue;
    int stopping, done;
    flight_job_fn *fn;
    void *ctx;
    pthread_t thread;
};

/* From the thread that ends a flight: wake ours to look. */
static void
flight_ended(void *arg)
{
    struct flight_jobs *fj = arg;

    pthread_mutex_lock(&fj->lock);
    pthread_cond_signal(&fj->cond);
    pthread_mutex_unlock(&fj->lock);
}

/* Unlink the queued jobs whose flights have ended; lock held. */
static struct job *
take_ended(struct flight_jobs *fj)
{
    struct job **p = &fj->queue, *ready = NULL;

    while (*p != NULL) {
        struct job *j = *p;

        if (flight_wait_end(j->flight, 0) != FLIGHT_RUNNING) {
            *p = j->next;
            j->next = ready;
            ready = j;
        } else {
            p = &j->next;
        }
    }
    return ready;
}

static void *
run(void *arg)
{
    struct flight_jobs *fj = arg;

    pthread_mutex_lock(&fj->lock);
    for (;;) {
        struct job *ready = take_ended(fj);

        if (ready != NULL) {
            pthread_mutex_unlock(&fj->lock);
            while (ready != NULL) {
                struct job *j = ready;

                ready = j->next;
                fj->fn(fj->ctx, j->data);
                free(j);
            }
            pthread_mutex_lock(&fj->lock);
            continue;
        }
        if (fj->stopping && fj->queue == NULL)
            break;
        pthread_cond_wait(&fj->cond, &fj->lock);
    }
    fj->done = 1;
    pthread_cond_broadcast(&fj->done_cond);
    pthread_mutex_unlock(&fj->lock);
    return NULL;
}

struct flight_jobs *
flight_jobs_start(flight_job_fn *fn, void *ctx)
{
    struct flight_jobs *fj = calloc(1, sizeof(*fj));
    pthread_condattr_t attr;

    if (fj == NULL)
        return NULL;
    fj->fn = fn;
    fj->ctx = ctx;
    pthread_mutex_init(&fj->lock, NULL);
    pthread_cond_init(&fj->cond, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&fj->done_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&fj->thread, NULL, run, fj) != 0) {
        pthread_mutex_destroy(&fj->lock);
        pthread_cond_destroy(&fj->cond);
        pthread_cond_destroy(&fj->done_cond);
        free(fj);
        return NULL;
    }
    return fj;
}

int
flight_jobs_add(struct flight_jobs *fj, struct flight *f, void *job)
{
    struct job *j = malloc(sizeof(*j));

    if (j == NULL)
        return -1;
    j->flight = f;
    j->data = job;
    pthread_mutex_lock(&fj->lock);
    if (fj->stopping) {
        pthread_mutex_unlock(&fj->lock);
        free(j);
        return -1;
    }
    j->next = fj->queue;
    fj->queue = j;
    pthread_mutex_unlock(&fj->lock);
    /* After the job is queued, so that the wake-up finds it. */
    flight_notify_end(f, flight_ended, fj);
    return 0;
}

int
flight_jobs_stop(struct flight_jobs *fj, int64_t deadline_ms)
{
    struct timespec ts;
    int rc = 0;

    util_ms_timespec(deadline_ms, &ts);
    pthread_mutex_lock(&fj->lock);
    fj->stopping = 1;
    pthread_cond_signal(&fj->cond);
    while (!fj->done && rc == 0)
        rc = pthread_cond_timedwait(&fj->done_cond, &fj->lock, &ts);
    rc = fj->done;
    pthread_mutex_unlock(&fj->lock);
    if (rc)
        pthread_join(fj->thread, NULL);
    return rc;
}

void
flight_jobs_free(struct flight_jobs *fj)
{
    if (fj == NULL)
        return;
    pthread_mutex_destroy(&fj->lock);
    pthread_cond_destroy(&fj->cond);
    pthread_cond_destroy(&fj->done_cond);
    free(fj);
}
