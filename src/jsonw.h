#ifndef HEREPROXY_JSONW_H
#define HEREPROXY_JSONW_H

#include <stddef.h>

/*
 * A JSON object writer for the hot path: fields are appended to a buffer
 * the caller owns (usually on its stack), growing onto the heap only when
 * a line does not fit. No allocation, no tree, no printf for the common
 * case: the access line of a cache hit costs a few thousand instructions
 * instead of a cJSON tree's thirty thousand.
 *
 * Strings may hold any byte: JSON needs UTF-8, so a byte that does not
 * start a valid UTF-8 sequence is written as U+FFFD, and control bytes are
 * escaped.
 *
 *     char stack[1024];
 *     struct jsonw w;
 *     jsonw_init(&w, stack, sizeof(stack));
 *     jsonw_str(&w, "event", "access");
 *     jsonw_int(&w, "status", 200);
 *     text = jsonw_finish(&w, &len);   // "{...}\n", NULL when out of memory
 *     ...
 *     jsonw_release(&w);
 */

struct jsonw {
    char *buf;
    size_t len;
    size_t cap;
    int on_heap; /* buf was malloc'd by the writer */
    int failed;  /* out of memory: finish returns NULL */
};

void jsonw_init(struct jsonw *w, char *buf, size_t cap);

/* value NULL: the field is left out. */
void jsonw_str(struct jsonw *w, const char *name, const char *value);
void jsonw_int(struct jsonw *w, const char *name, long long value);
void jsonw_null(struct jsonw *w, const char *name);

/* A number rounded to 3 decimals (milliseconds to the microsecond). */
void jsonw_ms(struct jsonw *w, const char *name, double value);

/*
 * Close the object and add a newline. Returns the text (not
 * NUL-terminated; *len excludes nothing: it is the whole line) or NULL.
 */
const char *jsonw_finish(struct jsonw *w, size_t *len);

void jsonw_release(struct jsonw *w);

#endif
