#ifndef HEREPROXY_TESTS_TMPDIR_FIXTURE_H
#define HEREPROXY_TESTS_TMPDIR_FIXTURE_H

/*
 * What the tests of NGINX's counts (src/nginx/) share: a directory of the
 * test's own under /tmp with one file path in it, and a metrics registry
 * to count into. Include after cmocka.h.
 */

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"

struct tmpdir_fx {
    char dir[64];
    char path[128];
    struct metrics *m;
};

/* 0, or -1 when the directory or the registry could not be made. */
static int
tmpdir_fx_open(struct tmpdir_fx *t, const char *test, const char *file)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/%s.XXXXXX", test);
    if (mkdtemp(t->dir) == NULL || (t->m = metrics_new(100)) == NULL)
        return -1;
    snprintf(t->path, sizeof(t->path), "%s/%s", t->dir, file);
    log_set_level(LOG_LEVEL_ERROR); /* "waiting for it" is expected */
    return 0;
}

/* The registry freed, the directory removed: 0 or -1. */
static int
tmpdir_fx_close(struct tmpdir_fx *t)
{
    char cmd[128];

    metrics_free(t->m);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
