#ifndef HEREPROXY_FLIGHTJOBS_H
#define HEREPROXY_FLIGHTJOBS_H

#include <stdint.h>

/*
 * Work that waits for a flight to end, done by one thread of its own
 * instead of the worker that started it. A worker that served a stale
 * entry used to wait there for the revalidation from HERE, and with
 * fastcgi_keep_conn its FastCGI connection, back in NGINX's keep-alive
 * pool, held the next request for as long. Jobs run as their flights
 * end, in whatever order that is.
 */

struct flight;
struct flight_jobs;

typedef void flight_job_fn(void *ctx, void *job);

/* Start the thread; fn(ctx, job) runs each job. NULL when it cannot. */
struct flight_jobs *flight_jobs_start(flight_job_fn *fn, void *ctx);

/*
 * Run fn(ctx, job) once f has ended (the caller keeps its reference to f
 * for the job to release). Returns 0, or -1 when stopping or out of
 * memory: then the caller does the job itself.
 */
int flight_jobs_add(struct flight_jobs *fj, struct flight *f, void *job);

/*
 * Take no more jobs, run the queued ones as they end, and stop the
 * thread, waiting at most until deadline_ms (monotonic). Returns 1 when
 * all ran, 0 when time ran out (jobs and the thread are left as they are).
 */
int flight_jobs_stop(struct flight_jobs *fj, int64_t deadline_ms);

/* After flight_jobs_stop returned 1 and nothing can end a flight any more. */
void flight_jobs_free(struct flight_jobs *fj);

#endif
