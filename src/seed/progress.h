#ifndef HEREPROXY_SEED_PROGRESS_H
#define HEREPROXY_SEED_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

/*
 * How far a run is, as a bar for a terminal or a line for a log. Pure:
 * the caller writes the text where it belongs.
 */

struct seed_progress {
    uint64_t done;  /* fetched + cached + failed */
    uint64_t total; /* 0: not known (tiles read from a pipe) */
    uint64_t fetched, cached, failed;
    double elapsed_s;
};

/*
 * "[#####     ]  45% 1234/2730 52.1 tiles/s ETA 0:28 fetched 1000 cached
 * 234" (and "failed N" once some failed), at most width - 1 columns (no
 * wrapping); the bar is left out when the terminal is too narrow for it.
 */
void seed_progress_bar(
    char *buf, size_t size, const struct seed_progress *p, int width);

/*
 * "1234/2730 tiles (45%), 52.1 tiles/s, ETA 28 s, fetched 1000, cached
 * 234, failed 0" for stderr that is not a terminal.
 */
void seed_progress_line(char *buf, size_t size, const struct seed_progress *p);

#endif
