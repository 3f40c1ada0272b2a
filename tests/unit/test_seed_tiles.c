#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "seed/tiles.h"

static struct seed_bbox
bbox(const char *s)
{
    struct seed_bbox b;
    char err[SEED_ERR_MAX];

    if (seed_bbox_parse(s, &b, err, sizeof(err)) != 0)
        fail_msg("bbox %s: %s", s, err);
    return b;
}

static void
bbox_bad(const char *s, const char *why)
{
    struct seed_bbox b;
    char err[SEED_ERR_MAX] = "";

    if (seed_bbox_parse(s, &b, err, sizeof(err)) == 0)
        fail_msg("bbox '%s' was taken", s);
    if (strstr(err, why) == NULL)
        fail_msg("bbox '%s': '%s' does not say '%s'", s, err, why);
}

static void
test_bbox_parse(void **state)
{
    struct seed_bbox b;

    (void)state;
    b = bbox("13.0,52.3,13.8,52.7");
    assert_true(b.west == 13.0 && b.south == 52.3);
    assert_true(b.east == 13.8 && b.north == 52.7);
    b = bbox("-180,-90,180,90");
    /* Clamped to Web Mercator's square. */
    assert_true(b.south == -SEED_LAT_MAX && b.north == SEED_LAT_MAX);
    assert_true(b.west == -180 && b.east == 180);
    b = bbox("-0.5,-0,0,1"); /* "-0" is a number too */
    assert_true(b.west == -0.5);

    bbox_bad("1,2,3", "expected W,S,E,N");
    bbox_bad("1,2,3,4,5", "expected W,S,E,N");
    bbox_bad("", "expected W,S,E,N");
    bbox_bad("1,2,3,", "north is not");
    bbox_bad("1e1,2,3,4", "west is not");
    bbox_bad("nan,2,3,4", "west is not");
    bbox_bad("1,inf,3,4", "south is not");
    bbox_bad(" 1,2,3,4", "west is not");
    bbox_bad("+1,2,3,4", "west is not");
    bbox_bad("1.,2,3,4", "west is not");
    bbox_bad(".5,2,3,4", "west is not");
    bbox_bad("1,2,0x3,4", "east is not");
    bbox_bad("1,2,3,4 ", "north is not");
    bbox_bad("1,2,3,1234567890123456789012345", "north is not");
    bbox_bad("-180.5,2,3,4", "west -180.5 is outside -180..180");
    bbox_bad("1,2,180.01,4", "east 180.01 is outside");
    bbox_bad("1,-91,3,4", "south -91 is outside -90..90");
    bbox_bad("1,2,3,90.5", "north 90.5 is outside");
    bbox_bad("1,4,3,4", "south (4) must be below north (4)");
    bbox_bad("1,5,3,4", "must be below north");
    bbox_bad("3,2,3,4", "no width");
    bbox_bad("180,2,-180,4", "no width");
    bbox_bad("1,85.06,3,89", "beyond Web Mercator");
    bbox_bad("1,-89,3,-85.06", "beyond Web Mercator");
    (void)b;
}

static void
zoom_ok(const char *s, int lo, int hi)
{
    char err[SEED_ERR_MAX];
    int a = -1, b = -1;

    if (seed_zoom_parse(s, &a, &b, err, sizeof(err)) != 0)
        fail_msg("zoom %s: %s", s, err);
    assert_int_equal(a, lo);
    assert_int_equal(b, hi);
}

static void
zoom_bad(const char *s)
{
    char err[SEED_ERR_MAX];
    int a, b;

    if (seed_zoom_parse(s, &a, &b, err, sizeof(err)) == 0)
        fail_msg("zoom '%s' was taken", s);
}

static void
test_zoom_parse(void **state)
{
    (void)state;
    zoom_ok("0", 0, 0);
    zoom_ok("22", 22, 22);
    zoom_ok("10-14", 10, 14);
    zoom_ok("3-3", 3, 3);
    zoom_ok("0-22", 0, 22);
    zoom_bad("23");
    zoom_bad("0-23");
    zoom_bad("14-10");
    zoom_bad("");
    zoom_bad("-3");
    zoom_bad("3-");
    zoom_bad("1-2-3");
    zoom_bad("a");
    zoom_bad("100");
    zoom_bad(" 3");
    zoom_bad("+3");
}

static void
test_range_known_area(void **state)
{
    struct seed_bbox b = bbox("13.0,52.3,13.8,52.7");
    struct seed_range r;
    uint64_t per[SEED_ZMAX + 1], total;

    (void)state;
    /* Figures from the slippy-map formulas, computed independently. */
    seed_range_at(&b, 10, &r);
    assert_int_equal(r.nspans, 1);
    assert_int_equal(r.x0[0], 548);
    assert_int_equal(r.x1[0], 551);
    assert_int_equal(r.y0, 334);
    assert_int_equal(r.y1, 336);
    assert_int_equal(seed_range_count(&r), 12);
    seed_range_at(&b, 12, &r);
    assert_int_equal(r.x0[0], 2195);
    assert_int_equal(r.x1[0], 2205);
    assert_int_equal(r.y0, 1339);
    assert_int_equal(r.y1, 1347);
    assert_int_equal(seed_count(&b, 10, 12, per, &total), 0);
    assert_int_equal(per[10], 12);
    assert_int_equal(per[11], 30);
    assert_int_equal(per[12], 99);
    assert_int_equal(per[9], 0);
    assert_int_equal(per[13], 0);
    assert_int_equal(total, 141);
}

static void
test_range_whole_world(void **state)
{
    struct seed_bbox b = bbox("-180,-90,180,90");
    struct seed_range r;
    uint64_t per[SEED_ZMAX + 1], total;
    int z;

    (void)state;
    for (z = 0; z <= SEED_ZMAX; z++) {
        seed_range_at(&b, z, &r);
        assert_int_equal(r.x0[0], 0);
        assert_int_equal(r.x1[0], (1L << z) - 1);
        assert_int_equal(r.y0, 0);
        assert_int_equal(r.y1, (1L << z) - 1);
        assert_int_equal(seed_range_count(&r), (uint64_t)1 << (2 * z));
    }
    /* Every tile of every zoom: (4^23 - 1) / 3, no overflow. */
    assert_int_equal(seed_count(&b, 0, SEED_ZMAX, per, &total), 0);
    assert_int_equal(total, UINT64_C(23456248059221));
    assert_int_equal(per[22], UINT64_C(17592186044416));
}

static void
test_range_edges(void **state)
{
    struct seed_bbox b;
    struct seed_range r;

    (void)state;
    /* A box ending on a tile's edge does not take the next tile. */
    b = bbox("-180,0,0,85.06");
    seed_range_at(&b, 1, &r);
    assert_int_equal(r.x0[0], 0);
    assert_int_equal(r.x1[0], 0);
    assert_int_equal(r.y0, 0);
    assert_int_equal(r.y1, 0);
    b = bbox("0,-85.06,180,0");
    seed_range_at(&b, 1, &r);
    assert_int_equal(r.x0[0], 1);
    assert_int_equal(r.x1[0], 1);
    assert_int_equal(r.y0, 1);
    assert_int_equal(r.y1, 1);
    /* ... but one a hair past it does. */
    b = bbox("-180,-0.000001,0.000001,85");
    seed_range_at(&b, 1, &r);
    assert_int_equal(seed_range_count(&r), 4);
    /* A box of a metre: one tile, or the 2 or 4 its corner touches. */
    b = bbox("2.3522,48.8566,2.352201,48.856601");
    seed_range_at(&b, 0, &r);
    assert_int_equal(seed_range_count(&r), 1);
    seed_range_at(&b, 22, &r);
    assert_true(seed_range_count(&r) >= 1 && seed_range_count(&r) <= 4);
    /* Latitudes past Web Mercator's are clamped, not wrapped. */
    b = bbox("-10,80,10,90");
    seed_range_at(&b, 3, &r);
    assert_int_equal(r.y0, 0);
    assert_int_equal(r.y1, 0);
    b = bbox("-10,-90,10,-80");
    seed_range_at(&b, 3, &r);
    assert_int_equal(r.y0, 7);
    assert_int_equal(r.y1, 7);
}

static void
test_range_antimeridian(void **state)
{
    struct seed_bbox b;
    struct seed_range r;
    uint64_t per[SEED_ZMAX + 1], total;

    (void)state;
    /* Fiji: 170E to 170W, two columns at each end of the map. */
    b = bbox("170,-20,-170,-10");
    seed_range_at(&b, 3, &r);
    assert_int_equal(r.nspans, 2);
    assert_int_equal(r.x0[0], 0);
    assert_int_equal(r.x1[0], 0);
    assert_int_equal(r.x0[1], 7);
    assert_int_equal(r.x1[1], 7);
    assert_int_equal(seed_range_count(&r), 2 * (r.y1 - r.y0 + 1));
    seed_range_at(&b, 0, &r); /* at zoom 0 both ends are the one tile */
    assert_int_equal(r.nspans, 1);
    assert_int_equal(seed_range_count(&r), 1);
    /* West of east by a little: almost the whole world, no tile twice. */
    b = bbox("10,-10,5,10");
    seed_range_at(&b, 1, &r);
    assert_int_equal(r.nspans, 1);
    assert_int_equal(r.x0[0], 0);
    assert_int_equal(r.x1[0], 1);
    seed_range_at(&b, 8, &r);
    assert_int_equal(r.nspans, 2);
    assert_int_equal(r.x1[0] + 1 + (255 - r.x0[1] + 1), 256 - 3);
    /* Starting on the antimeridian: only the east span. */
    b = bbox("180,-10,-170,10");
    seed_range_at(&b, 2, &r);
    assert_int_equal(r.nspans, 1);
    assert_int_equal(r.x0[0], 0);
    assert_int_equal(r.x1[0], 0);
    /* Ending on it: only the west span. */
    b = bbox("170,-10,-180,10");
    seed_range_at(&b, 2, &r);
    assert_int_equal(r.nspans, 1);
    assert_int_equal(r.x0[0], 3);
    assert_int_equal(r.x1[0], 3);
    b = bbox("170,-20,-170,-10");
    assert_int_equal(seed_count(&b, 0, 3, per, &total), 0);
    assert_int_equal(total, 1 + 2 + 2 + 2);
}

/* The iterator yields exactly the counted tiles, each once, in range. */
static void
iterate_and_check(const char *box, int zmin, int zmax)
{
    struct seed_bbox b = bbox(box);
    struct seed_iter it;
    struct seed_tile t;
    struct seed_range r;
    uint64_t per[SEED_ZMAX + 1], total, n = 0;
    unsigned char *seen = calloc(1, (size_t)1 << 20);
    int z, in, i;

    assert_non_null(seen);
    assert_true(zmax <= 9);
    assert_int_equal(seed_count(&b, zmin, zmax, per, &total), 0);
    seed_iter_init(&it, &b, zmin, zmax);
    z = zmin;
    while (seed_iter_next(&it, &t)) {
        size_t bit;

        assert_true(t.z >= z); /* by zoom */
        z = t.z;
        seed_range_at(&b, t.z, &r);
        in = 0;
        for (i = 0; i < r.nspans; i++)
            if (t.x >= r.x0[i] && t.x <= r.x1[i])
                in = 1;
        assert_true(in && t.y >= r.y0 && t.y <= r.y1);
        bit = ((size_t)t.z << 18) + ((size_t)t.y << 9) + (size_t)t.x;
        assert_false(seen[bit / 8] & (1u << (bit % 8)));
        seen[bit / 8] |= (unsigned char)(1u << (bit % 8));
        n++;
        assert_true(n <= total);
    }
    assert_int_equal(n, total);
    assert_false(seed_iter_next(&it, &t)); /* and stays ended */
    free(seen);
}

static void
test_iter(void **state)
{
    (void)state;
    iterate_and_check("13.0,52.3,13.8,52.7", 4, 9);
    iterate_and_check("-180,-90,180,90", 0, 5);
    iterate_and_check("170,-20,-170,-10", 0, 9);
    iterate_and_check("10,-10,5,10", 0, 6);
    iterate_and_check("-1,-1,1,1", 9, 9);
}

static void
line_ok(const char *s, int z, long x, long y)
{
    struct seed_tile t;
    char err[SEED_ERR_MAX];

    if (seed_tile_line_parse(s, strlen(s), &t, err, sizeof(err)) != 1)
        fail_msg("line '%s': %s", s, err);
    assert_int_equal(t.z, z);
    assert_int_equal(t.x, x);
    assert_int_equal(t.y, y);
}

static void
line_bad(const char *s, const char *why)
{
    struct seed_tile t;
    char err[SEED_ERR_MAX] = "";

    if (seed_tile_line_parse(s, strlen(s), &t, err, sizeof(err)) != -1)
        fail_msg("line '%s' was taken", s);
    if (strstr(err, why) == NULL)
        fail_msg("line '%s': '%s' does not say '%s'", s, err, why);
}

static void
test_tile_lines(void **state)
{
    struct seed_tile t;
    char err[SEED_ERR_MAX];

    (void)state;
    line_ok("0/0/0", 0, 0, 0);
    line_ok("3/2/1", 3, 2, 1);
    line_ok("  3/7/7\r", 3, 7, 7);
    line_ok("\t22/4194303/0 ", 22, 4194303, 0);
    assert_int_equal(seed_tile_line_parse("", 0, &t, err, sizeof(err)), 0);
    assert_int_equal(seed_tile_line_parse("  \r", 3, &t, err, sizeof(err)), 0);
    assert_int_equal(
        seed_tile_line_parse("# Berlin", 8, &t, err, sizeof(err)), 0);
    /* len bounds the line: what follows is not read. */
    assert_int_equal(seed_tile_line_parse("1/1/1junk", 5, &t, err, 64), 1);
    line_bad("3/8/1", "x 8 is beyond 0..7 at zoom 3");
    line_bad("3/1/8", "y 8 is beyond");
    line_bad("23/0/0", "zoom 23 is above 22");
    line_bad("22/4194304/0", "beyond");
    line_bad("3/2", "expected z/x/y");
    line_bad("3/2/1/0", "expected z/x/y");
    line_bad("3//1", "expected z/x/y");
    line_bad("a/b/c", "expected z/x/y");
    line_bad("-1/0/0", "expected z/x/y");
    line_bad("3/2/1 x", "expected z/x/y");
    line_bad("3 /2/1", "expected z/x/y");
    line_bad("3/+2/1", "expected z/x/y");
    line_bad("3/2/12345678", "expected z/x/y");
    assert_int_equal(seed_tile_line_parse("1/0\0/0", 6, &t, err, 64), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bbox_parse),
        cmocka_unit_test(test_zoom_parse),
        cmocka_unit_test(test_range_known_area),
        cmocka_unit_test(test_range_whole_world),
        cmocka_unit_test(test_range_edges),
        cmocka_unit_test(test_range_antimeridian),
        cmocka_unit_test(test_iter),
        cmocka_unit_test(test_tile_lines),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
