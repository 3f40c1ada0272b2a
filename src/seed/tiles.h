#ifndef HEREPROXY_SEED_TILES_H
#define HEREPROXY_SEED_TILES_H

#include <stddef.h>
#include <stdint.h>

/*
 * The tiles of an area in Web Mercator (the XYZ scheme HERE and every web
 * map use): a box of longitudes and latitudes turned into tile ranges per
 * zoom, walked one tile at a time so that no list is ever built, and the
 * lines of a tiles file. Pure: no I/O, no allocation.
 */

/* The highest zoom any hereproxy accepts (its HEREPROXY_ZMAX is at most 22). */
#define SEED_ZMAX 22
/* Web Mercator's latitude limit, atan(sinh(pi)) in degrees. */
#define SEED_LAT_MAX 85.0511287798066
#define SEED_ERR_MAX 160

struct seed_tile {
    int z;
    long x, y;
};

/*
 * A box in degrees. west > east crosses the antimeridian (RFC 7946's
 * convention); south and north are already clamped to +-SEED_LAT_MAX.
 */
struct seed_bbox {
    double west, south, east, north;
};

/*
 * Parse "W,S,E,N" (plain decimals: an optional '-', digits, an optional
 * fraction). Longitudes -180 to 180, latitudes -90 to 90, S < N, W != E;
 * latitudes beyond Web Mercator's are clamped, and a box wholly beyond
 * them is an error. Returns 0, or -1 with a message in err.
 */
int seed_bbox_parse(
    const char *s, struct seed_bbox *out, char *err, size_t errlen);

/* Parse "Z" or "MIN-MAX", 0 to SEED_ZMAX, MIN <= MAX. 0, or -1 and err. */
int seed_zoom_parse(
    const char *s, int *zmin, int *zmax, char *err, size_t errlen);

/*
 * The tiles of a box at one zoom: one or two column spans (two when the
 * box crosses the antimeridian), each x0..x1 inclusive, and rows y0..y1.
 * A tile is in when the box overlaps it with some area: a box ending
 * exactly on a tile's edge does not take the next tile.
 */
struct seed_range {
    int z;
    int nspans;
    long x0[2], x1[2];
    long y0, y1;
};

void seed_range_at(const struct seed_bbox *b, int z, struct seed_range *r);

/* How many tiles a range holds. */
uint64_t seed_range_count(const struct seed_range *r);

/*
 * Tiles per zoom (per_zoom[z] for zmin..zmax, the rest 0) and their sum.
 * Returns 0, or -1 if the sum would overflow (it cannot below zoom 30).
 */
int seed_count(const struct seed_bbox *b, int zmin, int zmax,
    uint64_t per_zoom[SEED_ZMAX + 1], uint64_t *total);

/* Every tile of a box from zmin to zmax, by zoom, then row, then column. */
struct seed_iter {
    struct seed_bbox bbox;
    int zmax;
    struct seed_range r;
    int span;
    long x, y;
    int done;
};

void seed_iter_init(
    struct seed_iter *it, const struct seed_bbox *b, int zmin, int zmax);

/* The next tile: 1 with *t set, 0 at the end. */
int seed_iter_next(struct seed_iter *it, struct seed_tile *t);

/*
 * One line of a tiles file, without its newline: "z/x/y" with optional
 * blanks around it, or a blank line or "#" comment. Returns 1 with *t
 * set, 0 for a line without a tile, -1 with a message in err.
 */
int seed_tile_line_parse(const char *line, size_t len, struct seed_tile *t,
    char *err, size_t errlen);

#endif
