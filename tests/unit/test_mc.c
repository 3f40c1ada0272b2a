#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mc.h"

/*
 * Consistent hashing: which server each key goes to, without I/O (mc_new
 * connects lazily; these ports are never dialled).
 */

#define NKEYS 10000

static const char three[] = "127.0.0.1:21901,127.0.0.1:21902,127.0.0.1:21903";
static const char four[] =
    "127.0.0.1:21901,127.0.0.1:21902,127.0.0.1:21903,127.0.0.1:21904";

/* Cache keys shaped like the real ones. */
static size_t
tile_key(int i, char *out, size_t len)
{
    return (size_t)snprintf(out, len,
        "/maps/v3/base/mc/%d/%d/%d/png8?size=256&style=explore.day", 14,
        8000 + i % 100, 5000 + i / 100);
}

static int
count_moved(const char *before, const char *after, int *per_new)
{
    char err[256], key[256], a[300], b[300];
    struct mc *x = mc_new(before, 2, err, sizeof(err));
    struct mc *y = mc_new(after, 2, err, sizeof(err));
    int i, moved = 0;

    assert_non_null(x);
    assert_non_null(y);
    *per_new = 0;
    for (i = 0; i < NKEYS; i++) {
        size_t len = tile_key(i, key, sizeof(key));

        assert_int_equal(mc_server_for(x, key, len, a, sizeof(a)), 0);
        assert_int_equal(mc_server_for(y, key, len, b, sizeof(b)), 0);
        if (strcmp(a, b) != 0) {
            moved++;
            /* A key only ever moves to the added server. */
            if (strcmp(b, "127.0.0.1:21904") == 0)
                (*per_new)++;
        }
    }
    mc_free(x);
    mc_free(y);
    return moved;
}

static void
test_add_fourth_moves_a_quarter(void **state)
{
    int to_new, moved = count_moved(three, four, &to_new);

    (void)state;
    /* Ideal: 1/4 = 2500 keys. Ketama with 160 points per server: +-6 %. */
    print_message("moved %d of %d keys adding a 4th server\n", moved, NKEYS);
    assert_in_range(moved, NKEYS / 4 - 600, NKEYS / 4 + 600);
    assert_int_equal(to_new, moved);
}

static void
test_remove_one_moves_its_share(void **state)
{
    int to_new, moved = count_moved(four, three, &to_new);

    (void)state;
    /* Only the removed server's keys (about 1/4) move. */
    print_message(
        "moved %d of %d keys removing 1 of 4 servers\n", moved, NKEYS);
    assert_in_range(moved, NKEYS / 4 - 600, NKEYS / 4 + 600);
}

/* Keys spread over servers' three servers, each named names[i]. */
static void
assert_three_shares(const char *servers, const char *const names[3])
{
    char err[256], key[256], srv[300];
    struct mc *m = mc_new(servers, 2, err, sizeof(err));
    int counts[3] = {0, 0, 0}, i, j;

    assert_non_null(m);
    assert_int_equal(mc_server_count(m), 3);
    for (i = 0; i < NKEYS; i++) {
        size_t len = tile_key(i, key, sizeof(key));

        assert_int_equal(mc_server_for(m, key, len, srv, sizeof(srv)), 0);
        for (j = 0; j < 3 && strcmp(srv, names[j]) != 0; j++)
            ;
        if (j == 3)
            fail_msg("unexpected server name '%s'", srv);
        counts[j]++;
    }
    for (i = 0; i < 3; i++)
        assert_in_range(counts[i], NKEYS / 3 - 800, NKEYS / 3 + 800);
    mc_free(m);
}

static void
test_each_server_gets_a_share(void **state)
{
    static const char *const names[3] = {
        "127.0.0.1:21901", "127.0.0.1:21902", "127.0.0.1:21903"};

    (void)state;
    assert_three_shares(three, names);
}

/* Unix sockets beside TCP servers: each named by its path, each a share. */
static void
test_socket_paths_are_servers(void **state)
{
    static const char *const names[3] = {
        "/run/mc-a.sock", "/run/mc-b.sock", "127.0.0.1:21901"};

    (void)state;
    assert_three_shares("/run/mc-a.sock,/run/mc-b.sock,127.0.0.1:21901", names);
}

static void
test_modula_would_move_most(void **state)
{
    /*
     * The test can fail: modulo hashing over 3 then 4 servers keeps only
     * about 1/4 of keys in place. Ketama keeps 3/4: check the ketama
     * result is far from that.
     */
    int to_new, moved = count_moved(three, four, &to_new);

    (void)state;
    assert_true(moved < NKEYS / 2);
}

static void
test_ping_dead_servers(void **state)
{
    char err[256], down[256];
    struct mc *m = mc_new("127.0.0.1:1,127.0.0.1:2", 2, err, sizeof(err));

    (void)state;
    assert_non_null(m);
    /* Nothing listens on ports 1 and 2: both reported, each by name. */
    assert_int_equal(mc_ping(m, down, sizeof(down)), 2);
    assert_string_equal(down, "127.0.0.1:1,127.0.0.1:2");
    assert_int_equal(mc_healthy(m), 0);
    mc_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_fourth_moves_a_quarter),
        cmocka_unit_test(test_remove_one_moves_its_share),
        cmocka_unit_test(test_each_server_gets_a_share),
        cmocka_unit_test(test_socket_paths_are_servers),
        cmocka_unit_test(test_modula_would_move_most),
        cmocka_unit_test(test_ping_dead_servers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
