#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seed/tiles.h"

/* "-180.123456" and the like: longer numbers are typing accidents. */
#define NUMBER_MAX 24
/* 2^22 - 1 has 7 digits. */
#define COORD_DIGITS_MAX 7

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * A plain decimal: -?[0-9]+(\.[0-9]+)? and nothing else (no exponent,
 * no "inf" or "nan", no blanks), so strtod cannot surprise us.
 */
static int
parse_degrees(const char *s, size_t len, double *out)
{
    char buf[NUMBER_MAX + 1];
    size_t i = 0, digits = 0;
    char *end;

    if (len == 0 || len > NUMBER_MAX)
        return -1;
    if (s[0] == '-')
        i++;
    for (; i < len && is_digit(s[i]); i++)
        digits++;
    if (digits == 0)
        return -1;
    if (i < len && s[i] == '.') {
        digits = 0;
        for (i++; i < len && is_digit(s[i]); i++)
            digits++;
        if (digits == 0)
            return -1;
    }
    if (i != len)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    *out = strtod(buf, &end);
    return *end == '\0' ? 0 : -1;
}

int
seed_bbox_parse(const char *s, struct seed_bbox *out, char *err, size_t errlen)
{
    static const char *const names[4] = {"west", "south", "east", "north"};
    double v[4];
    const char *p = s;
    int i;

    for (i = 0; i < 4; i++) {
        size_t len = strcspn(p, ",");

        if (p[len] == '\0' && i < 3) {
            snprintf(err, errlen,
                "--bbox: expected W,S,E,N (four numbers in degrees)");
            return -1;
        }
        if (parse_degrees(p, len, &v[i]) != 0) {
            snprintf(err, errlen,
                "--bbox: %s is not a plain decimal number of degrees",
                names[i]);
            return -1;
        }
        p += len;
        if (i < 3)
            p++;
    }
    if (*p != '\0') {
        snprintf(
            err, errlen, "--bbox: expected W,S,E,N (four numbers in degrees)");
        return -1;
    }
    for (i = 0; i < 4; i++) {
        double lim = i % 2 == 0 ? 180 : 90;
        if (v[i] < -lim || v[i] > lim) {
            snprintf(err, errlen, "--bbox: %s %g is outside -%g..%g", names[i],
                v[i], lim, lim);
            return -1;
        }
    }
    if (v[1] >= v[3]) {
        snprintf(err, errlen, "--bbox: south (%g) must be below north (%g)",
            v[1], v[3]);
        return -1;
    }
    /* West above east crosses the antimeridian; equal has no width. */
    if (v[0] == v[2] || (v[0] > v[2] && v[2] + 360 - v[0] <= 0)) {
        snprintf(err, errlen,
            "--bbox: west and east are the same meridian: the box has "
            "no width");
        return -1;
    }
    if (v[1] >= SEED_LAT_MAX || v[3] <= -SEED_LAT_MAX) {
        snprintf(err, errlen,
            "--bbox: the box lies beyond Web Mercator's latitudes "
            "(-%.4f..%.4f): no tile covers it",
            SEED_LAT_MAX, SEED_LAT_MAX);
        return -1;
    }
    out->west = v[0];
    out->south = v[1] < -SEED_LAT_MAX ? -SEED_LAT_MAX : v[1];
    out->east = v[2];
    out->north = v[3] > SEED_LAT_MAX ? SEED_LAT_MAX : v[3];
    return 0;
}

/* Digits only, at most max_digits of them; -1 otherwise. */
static int
parse_small(const char *s, size_t len, size_t max_digits, long *out)
{
    size_t i;
    long n = 0;

    if (len == 0 || len > max_digits)
        return -1;
    for (i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        n = n * 10 + (s[i] - '0');
    }
    *out = n;
    return 0;
}

int
seed_zoom_parse(const char *s, int *zmin, int *zmax, char *err, size_t errlen)
{
    const char *dash = strchr(s, '-');
    size_t len = strlen(s);
    long lo, hi;

    if (dash == NULL) {
        if (parse_small(s, len, 2, &lo) != 0)
            goto bad;
        hi = lo;
    } else if (parse_small(s, (size_t)(dash - s), 2, &lo) != 0 ||
        parse_small(dash + 1, strlen(dash + 1), 2, &hi) != 0) {
        goto bad;
    }
    if (lo > SEED_ZMAX || hi > SEED_ZMAX) {
        snprintf(err, errlen, "--zoom: zoom levels are 0 to %d", SEED_ZMAX);
        return -1;
    }
    if (lo > hi) {
        snprintf(
            err, errlen, "--zoom: %ld-%ld: the lower zoom comes first", lo, hi);
        return -1;
    }
    *zmin = (int)lo;
    *zmax = (int)hi;
    return 0;
bad:
    snprintf(err, errlen, "--zoom: expected Z or MIN-MAX, e.g. 10-14");
    return -1;
}

static double
lon_frac(double lon)
{
    return (lon + 180.0) / 360.0;
}

/* 0 at the north edge of the map, 1 at the south. */
static double
lat_frac(double lat)
{
    double r = lat * M_PI / 180.0;

    return (1.0 - asinh(tan(r)) / M_PI) / 2.0;
}

/*
 * Tiles from fraction lo to fraction hi (0..1) of n: the first is the one
 * holding lo, the last the one holding hi - epsilon. Returns 0 when the
 * span is empty.
 */
static int
span_of(double lo, double hi, long n, long *a, long *b)
{
    double dn = (double)n;

    *a = (long)floor(lo * dn);
    *b = (long)ceil(hi * dn) - 1;
    if (*a < 0)
        *a = 0;
    if (*b > n - 1)
        *b = n - 1;
    return *a <= *b;
}

void
seed_range_at(const struct seed_bbox *b, int z, struct seed_range *r)
{
    long n = 1L << z;

    memset(r, 0, sizeof(*r));
    r->z = z;
    if (b->west < b->east) {
        /* Empty only for a box thinner than the rounding: its column. */
        if (!span_of(
                lon_frac(b->west), lon_frac(b->east), n, &r->x0[0], &r->x1[0]))
            r->x1[0] = r->x0[0];
        r->nspans = 1;
    } else {
        /* Across the antimeridian: from 0 to east, and west to the end. */
        long a0, a1, b0, b1;
        int has_a = span_of(0.0, lon_frac(b->east), n, &a0, &a1);
        int has_b = span_of(lon_frac(b->west), 1.0, n, &b0, &b1);

        if (has_a && has_b && b0 <= a1 + 1) {
            r->x0[0] = 0; /* the two meet: the whole row */
            r->x1[0] = n - 1;
            r->nspans = 1;
        } else {
            if (has_a) {
                r->x0[r->nspans] = a0;
                r->x1[r->nspans++] = a1;
            }
            if (has_b) {
                r->x0[r->nspans] = b0;
                r->x1[r->nspans++] = b1;
            }
        }
    }
    if (!span_of(lat_frac(b->north), lat_frac(b->south), n, &r->y0, &r->y1)) {
        /* A box thinner than the rounding: its one row. */
        r->y0 = r->y0 > n - 1 ? n - 1 : r->y0;
        r->y1 = r->y0;
    }
}

uint64_t
seed_range_count(const struct seed_range *r)
{
    uint64_t cols = 0;
    int i;

    for (i = 0; i < r->nspans; i++)
        cols += (uint64_t)(r->x1[i] - r->x0[i] + 1);
    return cols * (uint64_t)(r->y1 - r->y0 + 1);
}

int
seed_count(const struct seed_bbox *b, int zmin, int zmax,
    uint64_t per_zoom[SEED_ZMAX + 1], uint64_t *total)
{
    struct seed_range r;
    int z;

    memset(per_zoom, 0, sizeof(uint64_t) * (SEED_ZMAX + 1));
    *total = 0;
    for (z = zmin; z <= zmax; z++) {
        seed_range_at(b, z, &r);
        per_zoom[z] = seed_range_count(&r);
        if (__builtin_add_overflow(*total, per_zoom[z], total))
            return -1;
    }
    return 0;
}

void
seed_iter_init(
    struct seed_iter *it, const struct seed_bbox *b, int zmin, int zmax)
{
    memset(it, 0, sizeof(*it));
    it->bbox = *b;
    it->zmax = zmax;
    seed_range_at(b, zmin, &it->r);
    it->x = it->r.x0[0];
    it->y = it->r.y0;
    it->done = it->r.nspans == 0;
}

int
seed_iter_next(struct seed_iter *it, struct seed_tile *t)
{
    if (it->done)
        return 0;
    t->z = it->r.z;
    t->x = it->x;
    t->y = it->y;
    if (++it->x <= it->r.x1[it->span])
        return 1;
    if (++it->span < it->r.nspans) {
        it->x = it->r.x0[it->span];
        return 1;
    }
    it->span = 0;
    if (++it->y <= it->r.y1) {
        it->x = it->r.x0[0];
        return 1;
    }
    if (it->r.z >= it->zmax) {
        it->done = 1;
        return 1;
    }
    seed_range_at(&it->bbox, it->r.z + 1, &it->r);
    it->x = it->r.x0[0];
    it->y = it->r.y0;
    return 1;
}

static int
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int
seed_tile_line_parse(
    const char *line, size_t len, struct seed_tile *t, char *err, size_t errlen)
{
    const char *s = line, *p1, *p2;
    long z, x, y, max;

    while (len > 0 && is_blank(*s)) {
        s++;
        len--;
    }
    while (len > 0 && is_blank(s[len - 1]))
        len--;
    if (len == 0 || s[0] == '#')
        return 0;
    if (memchr(s, '\0', len) != NULL)
        goto bad;
    p1 = memchr(s, '/', len);
    p2 = p1 ? memchr(p1 + 1, '/', len - (size_t)(p1 + 1 - s)) : NULL;
    if (p1 == NULL || p2 == NULL ||
        parse_small(s, (size_t)(p1 - s), 2, &z) != 0 ||
        parse_small(p1 + 1, (size_t)(p2 - p1 - 1), COORD_DIGITS_MAX, &x) != 0 ||
        parse_small(p2 + 1, len - (size_t)(p2 + 1 - s), COORD_DIGITS_MAX, &y) !=
            0)
        goto bad;
    if (z > SEED_ZMAX) {
        snprintf(err, errlen, "zoom %ld is above %d", z, SEED_ZMAX);
        return -1;
    }
    max = (1L << z) - 1;
    if (x > max || y > max) {
        snprintf(err, errlen, "%s %ld is beyond 0..%ld at zoom %ld",
            x > max ? "x" : "y", x > max ? x : y, max, z);
        return -1;
    }
    t->z = (int)z;
    t->x = x;
    t->y = y;
    return 1;
bad:
    snprintf(err, errlen, "expected z/x/y (three whole numbers)");
    return -1;
}
