#include "config.h"

#include <stddef.h>

#include "labels.h"

/* clang-format off */
static const char *const cache_statuses[CACHE_STATUS_COUNT] = {
#define LABELS_ROW(id, header) header,
    CACHE_STATUS_LIST(LABELS_ROW)
#undef LABELS_ROW
};
/* clang-format on */

static const struct {
    const char *name;
    int status;
    const char *message;
    /* clang-format off */
} error_kinds[ERROR_KIND_COUNT] = {
#define LABELS_ROW(id, name, status, message) {name, status, message},
    ERROR_KIND_LIST(LABELS_ROW)
#undef LABELS_ROW
};
/* clang-format on */

static const struct {
    const char *name;
    int called;
    /* clang-format off */
} upstream_labels[UPSTREAM_LABEL_COUNT] = {
#define LABELS_ROW(id, name, called) {name, called},
    UPSTREAM_LABEL_LIST(LABELS_ROW)
#undef LABELS_ROW
};
/* clang-format on */

const char *
cache_status_header(enum cache_status s)
{
    return (unsigned)s < CACHE_STATUS_COUNT ? cache_statuses[s] : "NONE";
}

const char *
error_kind_name(enum error_kind k)
{
    return (unsigned)k < ERROR_KIND_COUNT ? error_kinds[k].name : "other";
}

int
error_kind_status(enum error_kind k, int fallback)
{
    return (unsigned)k < ERROR_KIND_COUNT && error_kinds[k].status != 0
        ? error_kinds[k].status
        : fallback;
}

const char *
error_kind_message(enum error_kind k)
{
    return (unsigned)k < ERROR_KIND_COUNT ? error_kinds[k].message : NULL;
}

const char *
upstream_label_name(enum upstream_label l)
{
    return (unsigned)l < UPSTREAM_LABEL_COUNT ? upstream_labels[l].name
                                              : "other";
}

int
upstream_label_called(enum upstream_label l)
{
    return (unsigned)l < UPSTREAM_LABEL_COUNT && upstream_labels[l].called;
}
