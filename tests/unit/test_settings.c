#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "credentials.h"
#include "log.h"
#include "settings.h"

/* ------------------------------------------------------------- helpers */

/* A temporary file holding text; the path is written to path[64]. */
static void
temp_file(char *path, const char *text)
{
    int fd;
    size_t len = strlen(text);

    strcpy(path, "/tmp/hp-test-settings-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* settings_dump into a string; the caller frees. */
static char *
dump(const struct settings *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);

    assert_non_null(fp);
    settings_dump(cfg, fp);
    fclose(fp);
    return text;
}

/* --------------------------------------------------------------- tests */

static void
test_defaults(void **state)
{
    struct settings c;

    (void)state;
    assert_int_equal(settings_init(&c), 0);
    assert_string_equal(c.here_api_key, "");
    assert_string_equal(c.here_base_url, "https://maps.hereapi.com/v3");
    assert_string_equal(c.here_ca_file, "");
    assert_int_equal(c.here_connect_timeout_ms, 5000);
    assert_int_equal(c.here_timeout_ms, 30000);
    assert_int_equal(c.here_attempt_timeout_ms, 0);
    assert_int_equal(settings_attempt_timeout_ms(&c), 5000);
    assert_true(c.here_buffer_max_bytes == 65536ULL);
    assert_int_equal(c.here_allow_logistics, 0);
    assert_int_equal(c.threads, 64);
    assert_string_equal(c.listen, "");
    assert_string_equal(c.cors_origins, "*");
    assert_int_equal(c.zmax, 20);
    assert_int_equal(c.cache_maxsize, 50000);
    assert_true(c.cache_maxbytes == 268435456ULL);
    assert_int_equal(c.cache_ttl_default_s, 3600);
    assert_int_equal(c.cache_ttl_cap_s, 86400);
    assert_int_equal(c.cache_meta_ttl_s, 3600);
    assert_string_equal(c.memcached_servers, "");
    assert_true(c.upstream_max_bytes == 8388608ULL);
    assert_int_equal(c.log_level, LOG_LEVEL_INFO);
    settings_cleanup(&c);
    settings_cleanup(&c); /* twice is harmless */
}

#define PATH_10 "abcdefghi/"
/* 106 bytes: a path of 107 with its leading '/' */
#define LONG_PATH_106                                                          \
    PATH_10 PATH_10 PATH_10 PATH_10 PATH_10 PATH_10 PATH_10 PATH_10 PATH_10    \
        PATH_10 "abcdef"

/* One settings_set call. rc: 0 good, -1 bad, 1 unknown name. */
static const struct {
    const char *name, *value;
    int rc;
} set_cases[] = {
    /* numbers */
    {"HERE_CONNECT_TIMEOUT_MS", "1", 0},
    {"HERE_CONNECT_TIMEOUT_MS", "600000", 0},
    {"HERE_CONNECT_TIMEOUT_MS", "600001", -1},
    {"HERE_CONNECT_TIMEOUT_MS", "0", -1},
    {"HERE_CONNECT_TIMEOUT_MS", "-1", -1},
    {"HERE_CONNECT_TIMEOUT_MS", "+5", -1},
    {"HERE_CONNECT_TIMEOUT_MS", "5s", -1},
    {"HERE_CONNECT_TIMEOUT_MS", " 5", -1},
    {"HERE_CONNECT_TIMEOUT_MS", "", -1},
    {"HERE_CONNECT_TIMEOUT_MS", "1e3", -1},
    {"HERE_CONNECT_TIMEOUT_MS", "0x10", -1},
    {"HERE_CONNECT_TIMEOUT_MS", "99999999999999999999999", -1},
    {"HERE_TIMEOUT_MS", "3600000", 0},
    {"HERE_TIMEOUT_MS", "3600001", -1},
    {"HERE_ATTEMPT_TIMEOUT_MS", "1", 0},
    {"HERE_ATTEMPT_TIMEOUT_MS", "0", 0},
    {"HERE_ATTEMPT_TIMEOUT_MS", "-1", -1},
    {"HERE_ATTEMPT_TIMEOUT_MS", "3600001", -1},
    {"HERE_ATTEMPT_TIMEOUT_MS", "5s", -1},
    {"HERE_BUFFER_MAX_BYTES", "0", 0},
    {"HERE_BUFFER_MAX_BYTES", "256K", 0},
    {"HERE_BUFFER_MAX_BYTES", "-1", -1},
    {"HERE_BUFFER_MAX_BYTES", "64KiB", -1},
    {"HEREPROXY_THREADS", "1", 0},
    {"HEREPROXY_THREADS", "4096", 0},
    {"HEREPROXY_THREADS", "4097", -1},
    {"HEREPROXY_THREADS", "0", -1},
    {"HEREPROXY_ZMAX", "0", 0},
    {"HEREPROXY_ZMAX", "22", 0},
    {"HEREPROXY_ZMAX", "23", -1},
    {"HEREPROXY_ZMAX", "-1", -1},
    {"CACHE_MAXSIZE", "0", 0},
    {"CACHE_MAXSIZE", "100000000", 0},
    {"CACHE_MAXSIZE", "100000001", -1},
    {"CACHE_MAXSIZE", "10K", -1},
    {"CACHE_TTL_DEFAULT", "0", 0},
    {"CACHE_TTL_DEFAULT", "31536000", 0},
    {"CACHE_TTL_DEFAULT", "31536001", -1},
    {"CACHE_TTL_CAP", "31536001", -1},
    {"CACHE_META_TTL", "60", 0},
    {"CACHE_META_TTL", "sixty", -1},
    /* sizes */
    {"CACHE_MAXBYTES", "0", 0},
    {"CACHE_MAXBYTES", "1", 0},
    {"CACHE_MAXBYTES", "512K", 0},
    {"CACHE_MAXBYTES", "64M", 0},
    {"CACHE_MAXBYTES", "2G", 0},
    {"CACHE_MAXBYTES", "2g", 0},
    {"CACHE_MAXBYTES", "2GB", -1},
    {"CACHE_MAXBYTES", "2T", -1},
    {"CACHE_MAXBYTES", "-1", -1},
    {"CACHE_MAXBYTES", "1.5G", -1},
    {"CACHE_MAXBYTES", "", -1},
    {"CACHE_MAXBYTES", "M", -1},
    {"CACHE_MAXBYTES", "99999999999999999999", -1},
    {"CACHE_MAXBYTES", "99999999999G", -1},
    {"UPSTREAM_MAX_BYTES", "1024", 0},
    {"UPSTREAM_MAX_BYTES", "1K", 0},
    {"UPSTREAM_MAX_BYTES", "1023", -1},
    {"UPSTREAM_MAX_BYTES", "0", -1},
    {"UPSTREAM_MAX_BYTES", "8M", 0},
    /* booleans */
    {"HERE_ALLOW_LOGISTICS", "1", 0},
    {"HERE_ALLOW_LOGISTICS", "0", 0},
    {"HERE_ALLOW_LOGISTICS", "true", 0},
    {"HERE_ALLOW_LOGISTICS", "FALSE", 0},
    {"HERE_ALLOW_LOGISTICS", "Yes", 0},
    {"HERE_ALLOW_LOGISTICS", "no", 0},
    {"HERE_ALLOW_LOGISTICS", "on", 0},
    {"HERE_ALLOW_LOGISTICS", "OFF", 0},
    {"HERE_ALLOW_LOGISTICS", "2", -1},
    {"HERE_ALLOW_LOGISTICS", "", -1},
    {"HERE_ALLOW_LOGISTICS", "y", -1},
    {"HERE_ALLOW_LOGISTICS", "01", -1},
    {"HERE_ALLOW_LOGISTICS", "true ", -1},
    /* log levels */
    {"LOG_LEVEL", "DEBUG", 0},
    {"LOG_LEVEL", "info", 0},
    {"LOG_LEVEL", "Warn", 0},
    {"LOG_LEVEL", "WARNING", 0},
    {"LOG_LEVEL", "ERROR", 0},
    {"LOG_LEVEL", "TRACE", -1},
    {"LOG_LEVEL", "", -1},
    {"LOG_LEVEL", "3", -1},
    {"LOG_LEVEL", "INFO ", -1},
    /* URLs */
    {"HERE_BASE_URL", "https://maps.hereapi.com/v3", 0},
    {"HERE_BASE_URL", "http://127.0.0.1:8080/v3", 0},
    {"HERE_BASE_URL", "https://127.0.0.1:8443/v3/", 0},
    {"HERE_BASE_URL", "ftp://example.com/v3", -1},
    {"HERE_BASE_URL", "maps.hereapi.com/v3", -1},
    {"HERE_BASE_URL", "HTTPS://maps.hereapi.com", -1},
    {"HERE_BASE_URL", "https://maps.hereapi.com/v3?x=1", -1},
    {"HERE_BASE_URL", "https://maps.hereapi.com/v3#x", -1},
    {"HERE_BASE_URL", "https://maps.hereapi.com /v3", -1},
    {"HERE_BASE_URL", "https://maps.hereapi.com/v3\n", -1},
    {"HERE_BASE_URL", "", -1},
    {"HEREPROXY_PUBLIC_URL", "", 0},
    {"HEREPROXY_PUBLIC_URL", "https://maps.example.com", 0},
    {"HEREPROXY_PUBLIC_URL", "http://127.0.0.1:8080/maps/", 0},
    {"HEREPROXY_PUBLIC_URL", "https://[::1]:8443", 0},
    {"HEREPROXY_PUBLIC_URL", "maps.example.com", -1},
    {"HEREPROXY_PUBLIC_URL", "https://maps.example.com/?a=1", -1},
    {"HEREPROXY_PUBLIC_URL", "https://maps.example.com/#x", -1},
    {"HEREPROXY_PUBLIC_URL", "https://u:p@maps.example.com", -1},
    {"HEREPROXY_PUBLIC_URL", "https://maps.example.com/a\"b", -1},
    {"HEREPROXY_PUBLIC_URL", "https://maps.example.com:99999", -1},
    /* origins */
    {"HEREPROXY_CORS_ORIGINS", "*", 0},
    {"HEREPROXY_CORS_ORIGINS", "https://maps.example.com", 0},
    {"HEREPROXY_CORS_ORIGINS", "https://a.example,http://b.example:8080", 0},
    {"HEREPROXY_CORS_ORIGINS", "https://a.example, https://b.example", 0},
    {"HEREPROXY_CORS_ORIGINS", "a.example", -1},
    {"HEREPROXY_CORS_ORIGINS", ",https://a.example", -1},
    {"HEREPROXY_CORS_ORIGINS", "https://a.example,,https://b.example", -1},
    {"HEREPROXY_CORS_ORIGINS", "https://a.example,*", -1},
    {"HEREPROXY_CORS_ORIGINS", "**", -1},
    {"HEREPROXY_CORS_ORIGINS", "https://a.exa mple", -1},
    {"HEREPROXY_CORS_ORIGINS", "https://a.example,", -1},
    {"HEREPROXY_CORS_ORIGINS", "https://", -1},
    {"HEREPROXY_CORS_ORIGINS", "https://a.example\r\nX: 1", -1},
    {"HEREPROXY_CORS_ORIGINS", "javascript:alert(1)", -1},
    /* memcached servers */
    {"MEMCACHED_SERVERS", "", 0},
    {"MEMCACHED_SERVERS", "127.0.0.1:11211", 0},
    {"MEMCACHED_SERVERS", "localhost", 0},
    {"MEMCACHED_SERVERS", "mc1:11211,mc2:11212,mc-3.example_x:1", 0},
    {"MEMCACHED_SERVERS", "mc1:65535", 0},
    {"MEMCACHED_SERVERS", "mc1:65536", -1},
    {"MEMCACHED_SERVERS", "mc1:0", -1},
    {"MEMCACHED_SERVERS", "mc1:", -1},
    {"MEMCACHED_SERVERS", "mc1:-1", -1},
    {"MEMCACHED_SERVERS", "mc1:+1", -1},
    {"MEMCACHED_SERVERS", "mc1:port", -1},
    {"MEMCACHED_SERVERS", "mc1:11211x", -1},
    {"MEMCACHED_SERVERS", "mc1:1:2", -1},
    {"MEMCACHED_SERVERS", ":11211", -1},
    {"MEMCACHED_SERVERS", "mc1,", -1},
    {"MEMCACHED_SERVERS", ",mc1", -1},
    {"MEMCACHED_SERVERS", "mc1,,mc2", -1},
    {"MEMCACHED_SERVERS", "mc1 mc2", -1},
    {"MEMCACHED_SERVERS", "mc1, mc2", -1},
    {"MEMCACHED_SERVERS", "mc1;mc2", -1},
    {"MEMCACHED_SERVERS", "/run/memcached/memcached.sock", 0},
    {"MEMCACHED_SERVERS", "/run/mc.sock,mc2:11212", 0},
    {"MEMCACHED_SERVERS", "mc1,/run/mc.sock", 0},
    {"MEMCACHED_SERVERS", "/run/mc.sock,", -1},
    {"MEMCACHED_SERVERS", "/run/mc sock", -1},
    {"MEMCACHED_SERVERS", "/run/mc\tsock", -1},
    {"MEMCACHED_SERVERS", "run/mc.sock", -1},
    /* sun_path holds 107 bytes and the NUL */
    {"MEMCACHED_SERVERS", "/" LONG_PATH_106, 0},
    {"MEMCACHED_SERVERS", "/" LONG_PATH_106 "x", -1},
    /* the API key */
    {"HERE_API_KEY", "abcDEF123-._~", 0},
    {"HERE_API_KEY", "", 0},
    {"HERE_API_KEY", "key with space", -1},
    {"HERE_API_KEY", "key&x=1", -1},
    {"HERE_API_KEY", "key%20", -1},
    {"HERE_API_KEY", "key/", -1},
    {"HERE_API_KEY", "key+", -1},
    {"HERE_API_KEY", "key\n", -1},
    {"HERE_API_KEY", "k\xc3\xa9y", -1},
    {"HERE_API_KEY", "key#", -1},
    /* plain strings */
    {"HERE_CA_FILE", "/etc/ssl/certs/ca.pem", 0},
    {"HEREPROXY_LISTEN", "127.0.0.1:9000", 0},
    {"HEREPROXY_LISTEN", "/run/hereproxy.sock", 0},
    /* unknown names */
    {"HERE_STYLES", "explore.day,Explore.night", -1},
    {"HERE_STYLES", "explore.day,explore night", -1},
    {"HERE_STYLES", "explore.day&apiKey=x", -1},
    {"HERE_STYLES", ".day", -1},
    {"HERE_STYLES", "", -1},
    {"HERE_STYLES", " , ,", -1},
    {"HERE_STYLES", "topo.day", 0},
    {"HERE_STYLES", "explore.day, explore.dusk,", 0},
    {"HERE_APIKEY", "x", 1},
    {"here_api_key", "x", 1},
    {"", "x", 1},
    {"HEREPROXY_CONFIG", "/etc/x", 1},
    {"HERE_API_KEY_FILE", "/etc/x", 1},
};

static void
test_set_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(set_cases) / sizeof(set_cases[0]); i++) {
        struct settings c;
        char err[512] = "";
        char *before, *after;
        int rc;

        assert_int_equal(settings_init(&c), 0);
        before = dump(&c);
        rc = settings_set(
            &c, set_cases[i].name, set_cases[i].value, err, sizeof(err));
        if (rc != set_cases[i].rc)
            fail_msg("settings_set(%s, \"%s\") = %d (%s), want %d",
                set_cases[i].name, set_cases[i].value, rc, err,
                set_cases[i].rc);
        after = dump(&c);
        if (rc == -1) {
            /* The message names the setting; nothing changed. */
            if (strstr(err, set_cases[i].name) == NULL)
                fail_msg("error '%s' does not name %s", err, set_cases[i].name);
            assert_string_equal(before, after);
        }
        if (rc == 1)
            assert_string_equal(before, after);
        free(before);
        free(after);
        settings_cleanup(&c);
    }
}

/* Values that parse: what they become. */
static void
test_set_values(void **state)
{
    struct settings c;
    char err[512], big[5000];

    (void)state;
    assert_int_equal(settings_init(&c), 0);
    assert_int_equal(
        settings_set(&c, "CACHE_MAXBYTES", "512K", err, sizeof(err)), 0);
    assert_true(c.cache_maxbytes == 512 * 1024);
    assert_int_equal(
        settings_set(&c, "CACHE_MAXBYTES", "3G", err, sizeof(err)), 0);
    assert_true(c.cache_maxbytes == 3ULL << 30);
    assert_int_equal(
        settings_set(&c, "UPSTREAM_MAX_BYTES", "2m", err, sizeof(err)), 0);
    assert_true(c.upstream_max_bytes == 2ULL << 20);
    assert_int_equal(
        settings_set(&c, "HERE_ALLOW_LOGISTICS", "yes", err, sizeof(err)), 0);
    assert_int_equal(c.here_allow_logistics, 1);
    assert_int_equal(
        settings_set(&c, "HERE_ALLOW_LOGISTICS", "Off", err, sizeof(err)), 0);
    assert_int_equal(c.here_allow_logistics, 0);
    assert_int_equal(
        settings_set(&c, "LOG_LEVEL", "debug", err, sizeof(err)), 0);
    assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(
        settings_set(&c, "LOG_LEVEL", "WARNING", err, sizeof(err)), 0);
    assert_int_equal(c.log_level, LOG_LEVEL_WARN);
    assert_int_equal(
        settings_set(&c, "HEREPROXY_ZMAX", "18", err, sizeof(err)), 0);
    assert_int_equal(c.zmax, 18);
    /* A bad value leaves the previous one. */
    assert_int_equal(
        settings_set(&c, "HEREPROXY_ZMAX", "99", err, sizeof(err)), -1);
    assert_int_equal(c.zmax, 18);
    assert_non_null(strstr(err, "99"));
    /* Trailing slashes go from the URL. */
    assert_int_equal(settings_set(&c, "HERE_BASE_URL",
                         "http://127.0.0.1:8080/v3///", err, sizeof(err)),
        0);
    assert_string_equal(c.here_base_url, "http://127.0.0.1:8080/v3");
    /* Replacing a string frees the old one (valgrind checks). */
    assert_int_equal(
        settings_set(&c, "MEMCACHED_SERVERS", "a:1,b:2", err, sizeof(err)), 0);
    assert_int_equal(
        settings_set(&c, "MEMCACHED_SERVERS", "c:3", err, sizeof(err)), 0);
    assert_string_equal(c.memcached_servers, "c:3");
    assert_int_equal(
        settings_set(&c, "MEMCACHED_SERVERS", "", err, sizeof(err)), 0);
    assert_string_equal(c.memcached_servers, "");
    /* Keys up to 512 characters; too long text for anything. */
    memset(big, 'k', 512);
    big[512] = '\0';
    assert_int_equal(
        settings_set(&c, "HERE_API_KEY", big, err, sizeof(err)), 0);
    big[512] = 'k';
    big[513] = '\0';
    assert_int_equal(
        settings_set(&c, "HERE_API_KEY", big, err, sizeof(err)), -1);
    assert_null(strstr(err, big)); /* the key is not echoed */
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(
        settings_set(&c, "HEREPROXY_LISTEN", big, err, sizeof(err)), -1);
    /* A short err buffer is still terminated. */
    memset(err, 'x', sizeof(err));
    assert_int_equal(settings_set(&c, "HEREPROXY_THREADS", "0", err, 10), -1);
    assert_int_equal(strlen(err), 9);
    settings_cleanup(&c);
}

/* A URL must name a host: "http://" is not a base URL. */
static void
test_set_url_needs_host(void **state)
{
    static const char *const bad[] = {
        "http://", "https://", "https:///", "http:///v3"};
    struct settings c;
    char err[512], failed[512] = "";
    size_t i, len = 0;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(settings_init(&c), 0);
        if (settings_set(&c, "HERE_BASE_URL", bad[i], err, sizeof(err)) != -1)
            len += (size_t)snprintf(failed + len, sizeof(failed) - len,
                " '%s' accepted as '%s';", bad[i], c.here_base_url);
        settings_cleanup(&c);
    }
    if (*failed != '\0')
        fail_msg("HERE_BASE_URL:%s", failed);
}

/* HEREPROXY_PUBLIC_URL: kept without its trailing slashes, and reloadable. */
static void
test_public_url(void **state)
{
    struct settings c;
    char err[512];

    (void)state;
    assert_int_equal(settings_init(&c), 0);
    assert_string_equal(c.public_url, "");
    assert_int_equal(settings_set(&c, "HEREPROXY_PUBLIC_URL",
                         "https://maps.example.com/tiles//", err, sizeof(err)),
        -1);
    assert_int_equal(settings_set(&c, "HEREPROXY_PUBLIC_URL",
                         "https://maps.example.com/tiles/", err, sizeof(err)),
        0);
    assert_string_equal(c.public_url, "https://maps.example.com/tiles");
    assert_int_equal(settings_set(&c, "HEREPROXY_PUBLIC_URL",
                         "http://x.example/?q", err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "HEREPROXY_PUBLIC_URL"));
    assert_string_equal(c.public_url, "https://maps.example.com/tiles");
    assert_true(settings_reloadable("HEREPROXY_PUBLIC_URL"));
    settings_cleanup(&c);
}

static void
test_apply_text(void **state)
{
    struct settings c;
    char err[512];

    (void)state;
    assert_int_equal(settings_init(&c), 0);
    assert_int_equal(settings_apply_text(&c,
                         "# a comment\n"
                         "\n"
                         "   \n"
                         "\t# indented comment\n"
                         "HEREPROXY_ZMAX=18\n"
                         "  HEREPROXY_THREADS = 8  \n"
                         "LOG_LEVEL=\"debug\"\n"
                         "HERE_BASE_URL='http://127.0.0.1:1/v3/'\n"
                         "MEMCACHED_SERVERS=\"\"\n"
                         "HEREPROXY_LISTEN=\"127.0.0.1:9000'\n"
                         "CACHE_MAXBYTES=1M\r\n"
                         "HERE_API_KEY=abc=def\n",
                         "test.conf", err, sizeof(err)),
        -1);
    /* The '=' inside the key value is not allowed by the key charset. */
    assert_non_null(strstr(err, "test.conf:")); /* line: see below */
    assert_non_null(strstr(err, "HERE_API_KEY"));
    assert_int_equal(c.zmax, 18);
    assert_int_equal(c.threads, 8);
    assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
    assert_string_equal(c.here_base_url, "http://127.0.0.1:1/v3");
    assert_string_equal(c.memcached_servers, "");
    /* Unbalanced quotes stay. */
    assert_string_equal(c.listen, "\"127.0.0.1:9000'");
    assert_true(c.cache_maxbytes == 1 << 20);
    settings_cleanup(&c);

    /* Empty text, only comments: fine. */
    assert_int_equal(settings_init(&c), 0);
    assert_int_equal(settings_apply_text(&c, "", "e", err, sizeof(err)), 0);
    assert_int_equal(
        settings_apply_text(&c, "#x\n\n#y", "e", err, sizeof(err)), 0);
    assert_int_equal(
        settings_apply_text(&c, "HEREPROXY_ZMAX=3", "e", err, sizeof(err)), 0);
    assert_int_equal(c.zmax, 3);
    settings_cleanup(&c);
}

/* Errors name origin:line, counting every line, blank ones too. */
static void
test_apply_text_errors(void **state)
{
    static const struct {
        const char *text;
        const char *want[2];
    } cases[] = {
        {"BOGUS=1\n", {"f.conf:1:", "unknown setting BOGUS"}},
        {"HEREPROXY_ZMAX=1\nBOGUS=1\n", {"f.conf:2:", "BOGUS"}},
        {"# c\nHEREPROXY_ZMAX=1\n# c\nNOPE=2\n", {"f.conf:4:", "NOPE"}},
        {"HEREPROXY_ZMAX=1\njust words\n", {"f.conf:2:", "KEY=value"}},
        {"HEREPROXY_ZMAX=99\n", {"f.conf:1:", "HEREPROXY_ZMAX"}},
        {"LOG_LEVEL=loud", {"f.conf:1:", "LOG_LEVEL"}},
        {"=1\n", {"f.conf:1:", "unknown setting"}},
        {"here_api_key=x\n", {"f.conf:1:", "here_api_key"}},
        /* libcurl's proxy variables: the environment's, said so. */
        {"HTTPS_PROXY=http://u:p@proxy:3128\n",
            {"f.conf:1:",
                "HTTPS_PROXY is read by libcurl from the environment"}},
        {"no_proxy=localhost\n", {"f.conf:1:", "no_proxy is read by libcurl"}},
        /* Blank lines count as lines. */
        {"\nBOGUS=1\n", {"f.conf:2:", "BOGUS"}},
        {"# c\n\nBOGUS=1\n", {"f.conf:3:", "BOGUS"}},
        {"HEREPROXY_ZMAX=1\n\n\n\nHEREPROXY_ZMAX=x\n",
            {"f.conf:5:", "HEREPROXY_ZMAX"}},
    };
    size_t i;
    int failures = 0;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct settings c;
        char err[512] = "";
        int rc;

        assert_int_equal(settings_init(&c), 0);
        rc = settings_apply_text(&c, cases[i].text, "f.conf", err, sizeof(err));
        settings_cleanup(&c);
        assert_int_equal(rc, -1);
        if (strstr(err, cases[i].want[0]) == NULL ||
            strstr(err, cases[i].want[1]) == NULL) {
            print_error("text %zu: error '%s', want '%s' and '%s'\n", i, err,
                cases[i].want[0], cases[i].want[1]);
            failures++;
        }
    }
    if (failures > 0)
        fail_msg("%d of %zu texts: wrong error", failures,
            sizeof(cases) / sizeof(cases[0]));
}

static void
test_load(void **state)
{
    struct settings c;
    char conf[64], keyfile[64], env1[128], env2[128], err[512];

    (void)state;
    temp_file(conf,
        "# test\nHERE_API_KEY=fromfile\nHEREPROXY_ZMAX=10\n"
        "HEREPROXY_THREADS=4\nLOG_LEVEL=WARN\n");
    snprintf(env1, sizeof(env1), "HEREPROXY_CONFIG=%s", conf);

    /* The file alone. */
    {
        char *envp[] = {env1, "PATH=/bin", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        assert_string_equal(c.here_api_key, "fromfile");
        assert_int_equal(c.zmax, 10);
        assert_int_equal(c.threads, 4);
        assert_int_equal(c.log_level, LOG_LEVEL_WARN);
        assert_int_equal(c.cache_maxsize, 50000); /* default kept */
        settings_cleanup(&c);
    }
    /* The environment wins over the file. */
    {
        char *envp[] = {"HEREPROXY_ZMAX=12", env1, "HERE_API_KEY=fromenv",
            "HEREPROXY_CORS_ORIGINS=https://a.example", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        assert_string_equal(c.here_api_key, "fromenv");
        assert_int_equal(c.zmax, 12);
        assert_int_equal(c.threads, 4);
        assert_string_equal(c.cors_origins, "https://a.example");
        settings_cleanup(&c);
    }
    /* A bad value in the environment names it. */
    {
        char *envp[] = {env1, "HEREPROXY_THREADS=lots", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HEREPROXY_THREADS"));
        settings_cleanup(&c);
    }
    /* A missing config file. */
    {
        char *envp[] = {"HEREPROXY_CONFIG=/nonexistent/hereproxy.conf",
            "HERE_API_KEY=k", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "/nonexistent/hereproxy.conf"));
        settings_cleanup(&c);
    }
    /* An empty HEREPROXY_CONFIG means none. */
    {
        char *envp[] = {"HEREPROXY_CONFIG=", "HERE_API_KEY=k", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        settings_cleanup(&c);
    }

    /* HERE_API_KEY_FILE: read and trimmed. */
    temp_file(keyfile, "  keyFromFile-1_~ \r\n\n");
    snprintf(env2, sizeof(env2), "HERE_API_KEY_FILE=%s", keyfile);
    {
        char *envp[] = {env2, NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        assert_string_equal(c.here_api_key, "keyFromFile-1_~");
        settings_cleanup(&c);
    }
    /* The key itself wins over the key file. */
    {
        char *envp[] = {env2, "HERE_API_KEY=direct", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        assert_string_equal(c.here_api_key, "direct");
        settings_cleanup(&c);
    }
    {
        char *envp[] = {"HERE_API_KEY_FILE=/nonexistent/key", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HERE_API_KEY_FILE"));
        settings_cleanup(&c);
    }
    unlink(keyfile);
    temp_file(keyfile, "bad key with spaces\n");
    snprintf(env2, sizeof(env2), "HERE_API_KEY_FILE=%s", keyfile);
    {
        char *envp[] = {env2, NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HERE_API_KEY"));
        assert_null(strstr(err, "spaces")); /* not echoed */
        settings_cleanup(&c);
    }
    unlink(keyfile);

    /* No key anywhere. */
    {
        char *envp[] = {"HEREPROXY_ZMAX=5", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HERE_API_KEY"));
        settings_cleanup(&c);
    }
    {
        char *envp[] = {"HERE_API_KEY=", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HERE_API_KEY"));
        settings_cleanup(&c);
    }
    {
        assert_int_equal(settings_load(&c, NULL, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HERE_API_KEY"));
        settings_cleanup(&c);
    }
    /* Cross checks. */
    {
        char *envp[] = {"HERE_API_KEY=k", "CACHE_TTL_DEFAULT=90000", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "CACHE_TTL_DEFAULT"));
        assert_non_null(strstr(err, "CACHE_TTL_CAP"));
        settings_cleanup(&c);
    }
    {
        /* Unset, the attempt timeout follows a shorter HERE_TIMEOUT_MS. */
        char *envp[] = {"HERE_API_KEY=k", "HERE_TIMEOUT_MS=800", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        assert_int_equal(settings_attempt_timeout_ms(&c), 800);
        settings_cleanup(&c);
    }
    {
        /* Set longer than the whole fetch: refused, both named. */
        char *envp[] = {"HERE_API_KEY=k", "HERE_TIMEOUT_MS=800",
            "HERE_ATTEMPT_TIMEOUT_MS=5000", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HERE_ATTEMPT_TIMEOUT_MS (5000)"));
        assert_non_null(strstr(err, "HERE_TIMEOUT_MS (800)"));
        settings_cleanup(&c);
    }
    {
        char *envp[] = {"HERE_API_KEY=k", "HERE_TIMEOUT_MS=800",
            "HERE_ATTEMPT_TIMEOUT_MS=800", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        assert_int_equal(settings_attempt_timeout_ms(&c), 800);
        settings_cleanup(&c);
    }
    {
        char *envp[] = {"HERE_API_KEY=k", "HERE_ATTEMPT_TIMEOUT_MS=1500", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        assert_int_equal(settings_attempt_timeout_ms(&c), 1500);
        settings_cleanup(&c);
    }
    {
        char *envp[] = {"HERE_API_KEY=k", "CACHE_TTL_DEFAULT=100",
            "CACHE_TTL_CAP=100", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        settings_cleanup(&c);
    }
    {
        char *envp[] = {"HERE_API_KEY=k", "CACHE_TTL_DEFAULT=101",
            "CACHE_TTL_CAP=100", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        settings_cleanup(&c);
    }
    {
        char *envp[] = {
            "HERE_API_KEY=k", "HERE_CA_FILE=/nonexistent/ca.pem", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HERE_CA_FILE"));
        settings_cleanup(&c);
    }
    {
        char ca[80];
        char *envp[] = {"HERE_API_KEY=k", ca, NULL};
        snprintf(ca, sizeof(ca), "HERE_CA_FILE=%s", conf);
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        settings_cleanup(&c);
    }
    unlink(conf);

    /* A bad line in the file names the file and line. */
    temp_file(conf, "HERE_API_KEY=k\nHEREPROXY_ZMAX=1\nCACHE_MAXSIZE=-5\n");
    snprintf(env1, sizeof(env1), "HEREPROXY_CONFIG=%s", conf);
    {
        char *envp[] = {env1, NULL};
        char want[96];
        snprintf(want, sizeof(want), "%s:3:", conf);
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, want));
        assert_non_null(strstr(err, "CACHE_MAXSIZE"));
        settings_cleanup(&c);
    }
    unlink(conf);
}

/* HERE_CREDENTIALS_FILE: read at load, exclusive with a key, reloadable. */
static void
test_credentials_file(void **state)
{
    static const char good[] =
        "# from the HERE platform portal\n"
        "here.user.id = HERE-user-1\n"
        "here.client.id = app-1\n"
        "here.access.key.id = KEYID-1\n"
        "here.access.key.secret = S3cr3t-Cred-Value_1\n"
        "here.token.endpoint.url = https://account.api.here.com/oauth2/token\n";
    struct settings c;
    char path[64], keyfile[64], env[128], kenv[128], err[512], *text;

    (void)state;
    temp_file(path, good);
    snprintf(env, sizeof(env), "HERE_CREDENTIALS_FILE=%s", path);
    {
        char *envp[] = {env, NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), 0);
        assert_non_null(c.here_credentials);
        assert_string_equal(c.here_credentials->access_key_id, "KEYID-1");
        assert_string_equal(c.here_credentials->client_id, "app-1");
        assert_string_equal(settings_here_secret(&c), "S3cr3t-Cred-Value_1");
        /* --check-config prints the path, never the secret. */
        text = dump(&c);
        assert_non_null(strstr(text, path));
        assert_null(strstr(text, "S3cr3t"));
        free(text);
        settings_cleanup(&c);
        assert_null(c.here_credentials);
    }
    /* A key and credentials: which? A configuration error. */
    {
        char *envp[] = {env, "HERE_API_KEY=k", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HERE_API_KEY"));
        assert_non_null(strstr(err, "HERE_CREDENTIALS_FILE"));
        assert_non_null(strstr(err, "both"));
        assert_null(strstr(err, "S3cr3t"));
        settings_cleanup(&c);
    }
    temp_file(keyfile, "keyInAFile\n");
    snprintf(kenv, sizeof(kenv), "HERE_API_KEY_FILE=%s", keyfile);
    {
        char *envp[] = {kenv, env, NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "both"));
        assert_null(strstr(err, "keyInAFile"));
        settings_cleanup(&c);
    }
    unlink(keyfile);
    unlink(path);
    /* A bad file: the file and line named, the secret not quoted. */
    temp_file(path,
        "here.access.key.id = KEYID-1\n"
        "here.access.key.secret = S3cr3t with spaces\n"
        "here.token.endpoint.url = "
        "https://account.api.here.com/oauth2/token\n");
    snprintf(env, sizeof(env), "HERE_CREDENTIALS_FILE=%s", path);
    {
        char *envp[] = {env, NULL};
        char want[96];

        snprintf(want, sizeof(want), "%s:2:", path);
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HERE_CREDENTIALS_FILE"));
        assert_non_null(strstr(err, want));
        assert_non_null(strstr(err, "here.access.key.secret"));
        assert_null(strstr(err, "S3cr3t"));
        settings_cleanup(&c);
    }
    unlink(path);
    {
        char *envp[] = {"HERE_CREDENTIALS_FILE=/nonexistent/creds", NULL};
        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "HERE_CREDENTIALS_FILE"));
        assert_non_null(strstr(err, "/nonexistent/creds"));
        settings_cleanup(&c);
    }
}

static void
test_dump(void **state)
{
    struct settings c;
    char err[256], *text;

    (void)state;
    assert_int_equal(settings_init(&c), 0);
    text = dump(&c);
    assert_non_null(strstr(text, "HERE_API_KEY=\n"));
    assert_non_null(
        strstr(text, "HERE_BASE_URL=https://maps.hereapi.com/v3\n"));
    assert_non_null(strstr(text, "HEREPROXY_ZMAX=20\n"));
    assert_non_null(strstr(text, "HEREPROXY_PUBLIC_URL=\n"));
    assert_non_null(strstr(text, "CACHE_MAXBYTES=268435456\n"));
    assert_non_null(strstr(text, "UPSTREAM_MAX_BYTES=8388608\n"));
    assert_non_null(strstr(text, "HERE_ALLOW_LOGISTICS=0\n"));
    assert_non_null(strstr(text, "HEREPROXY_CORS_ORIGINS=*\n"));
    assert_non_null(strstr(text, "LOG_LEVEL="));
    free(text);

    assert_int_equal(
        settings_set(&c, "HERE_API_KEY", "Sup3rS3cretKey", err, sizeof(err)),
        0);
    assert_int_equal(
        settings_set(&c, "MEMCACHED_SERVERS", "mc:11211", err, sizeof(err)), 0);
    text = dump(&c);
    assert_null(strstr(text, "Sup3rS3cretKey"));
    assert_null(strstr(text, "S3cret"));
    assert_non_null(strstr(text, "HERE_API_KEY=<redacted>\n"));
    assert_non_null(strstr(text, "MEMCACHED_SERVERS=mc:11211\n"));
    {
        /* One line per setting, each KEY=value. */
        int lines = 0;
        char *p;
        for (p = text; *p; p++)
            lines += *p == '\n';
#define COUNT_SETTING(name, field, kind, def, lo, hi, when) +1
        assert_int_equal(lines, 0 SETTINGS_LIST(COUNT_SETTING));
#undef COUNT_SETTING
    }
    free(text);
    settings_cleanup(&c);
}

/* CACHE_SECRET: at least 16 bytes, from a file too, never printed. */
static void
test_cache_secret(void **state)
{
    struct settings c;
    char err[256], path[] = "/tmp/hereproxy-secret-XXXXXX", *text;
    char envfile[300];
    char *env[4];
    int fd;

    (void)state;
    env[0] = "HERE_API_KEY=k";
    env[1] = "CACHE_SECRET=short";
    env[2] = NULL;
    assert_int_equal(settings_load(&c, env, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "CACHE_SECRET"));
    assert_null(strstr(err, "short"));
    settings_cleanup(&c);

    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "  a-fleet-secret-of-24-b\n", 25), 25);
    close(fd);
    snprintf(envfile, sizeof(envfile), "CACHE_SECRET_FILE=%s", path);
    env[1] = envfile;
    assert_int_equal(settings_load(&c, env, err, sizeof(err)), 0);
    assert_string_equal(c.cache_secret, "a-fleet-secret-of-24-b");
    text = dump(&c);
    assert_null(strstr(text, "fleet-secret"));
    assert_non_null(strstr(text, "CACHE_SECRET=<redacted>\n"));
    free(text);
    settings_cleanup(&c);
    unlink(path);
}

/* The admin token: long, printable, from a file too, never printed. */
static void
test_admin_token(void **state)
{
    struct settings c;
    char err[256], path[] = "/tmp/hereproxy-admin-XXXXXX", *text;
    char *env[4];
    char envfile[300];
    int fd;

    (void)state;
    assert_int_equal(settings_init(&c), 0);
    assert_int_equal(
        settings_set(&c, "HERE_API_KEY", "k", err, sizeof(err)), 0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(
        settings_set(&c, "HEREPROXY_ADMIN_TOKEN", "short", err, sizeof(err)),
        0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "HEREPROXY_ADMIN_TOKEN"));
    assert_null(strstr(err, "short"));
    assert_int_equal(settings_set(&c, "HEREPROXY_ADMIN_TOKEN",
                         "sixteen bytes ok", err, sizeof(err)),
        0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), -1);
    assert_int_equal(settings_set(&c, "HEREPROXY_ADMIN_TOKEN",
                         "Adm1n-T0ken-0123456789", err, sizeof(err)),
        0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), 0);
    text = dump(&c);
    assert_null(strstr(text, "Adm1n"));
    assert_non_null(strstr(text, "HEREPROXY_ADMIN_TOKEN=<redacted>\n"));
    free(text);
    assert_true(settings_reloadable("HEREPROXY_ADMIN_TOKEN"));
    assert_true(settings_reloadable("HEREPROXY_CLIENT_TOKENS"));
    settings_cleanup(&c);

    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "fr0m-a-file-0123456789\n", 23), 23);
    close(fd);
    snprintf(envfile, sizeof(envfile), "HEREPROXY_ADMIN_TOKEN_FILE=%s", path);
    env[0] = "HERE_API_KEY=k";
    env[1] = envfile;
    env[2] = NULL;
    assert_int_equal(settings_load(&c, env, err, sizeof(err)), 0);
    assert_string_equal(c.admin_token, "fr0m-a-file-0123456789");
    settings_cleanup(&c);
    unlink(path);
}

/* Rate limits and quotas: checked when set, kept as given. */
static void
test_limit_settings(void **state)
{
    static const struct {
        const char *name, *value;
        int rc;
    } cases[] = {
        {"RATE_LIMIT_INDEX", "100/minute,burst=20", 0},
        {"RATE_LIMIT_INDEX", "off", 0},
        {"RATE_LIMIT_INDEX", "100/fortnight", -1},
        {"RATE_LIMIT_IP", "10/second", 0},
        {"RATE_LIMIT_IP", "ten/second", -1},
        {"RATE_LIMIT_IPV6_PREFIX", "48", 0},
        {"RATE_LIMIT_IPV6_PREFIX", "128", 0},
        {"RATE_LIMIT_IPV6_PREFIX", "0", -1},
        {"RATE_LIMIT_IPV6_PREFIX", "129", -1},
        {"RATE_LIMIT_INDEX_OVERRIDES", "mapa1:1000/minute,demo:off", 0},
        {"RATE_LIMIT_INDEX_OVERRIDES", "a:5/s,burst=9,b:1/m", 0},
        {"RATE_LIMIT_INDEX_OVERRIDES", "mapa1=1000/minute", -1},
        {"RATE_LIMIT_INDEX_OVERRIDES", "a:1/m,a:2/m", -1},
        {"RATE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1", 0},
        {"RATE_TRUSTED_PROXIES", "10.0.0.1/8", -1},
        {"RATE_TRUSTED_PROXIES", "proxy.example", -1},
        {"RATE_LIMIT_SHARED", "memcached", 0},
        {"RATE_LIMIT_SHARED", "redis", -1},
        {"QUOTA_UPSTREAM_INDEX", "20000/day", 0},
        {"QUOTA_UPSTREAM_INDEX", "20000/day,burst=30000", -1},
        {"QUOTA_UPSTREAM_INDEX_OVERRIDES", "demo:100/hour,big:off", 0},
        {"QUOTA_UPSTREAM_INDEX_OVERRIDES", "demo:100/hour,burst=5", -1},
        {"HERE_DAILY_BUDGET", "250000", 0},
        {"HERE_DAILY_BUDGET", "-1", -1},
        {"HERE_DENY_THRESHOLD", "0", 0},
        {"HERE_CACHE_ONLY_S", "0", -1},
    };
    struct settings c;
    char err[256], *text;
    size_t i;

    (void)state;
    assert_int_equal(settings_init(&c), 0);
    assert_string_equal(c.rate_limit_index, "off");
    assert_string_equal(c.rate_limit_shared, "local");
    assert_int_equal(c.here_deny_threshold, 3);
    assert_int_equal(c.here_cache_only_s, 300);
    assert_int_equal(c.rate_limit_ipv6_prefix, 64);
    assert_true(settings_reloadable("RATE_LIMIT_IPV6_PREFIX"));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc =
            settings_set(&c, cases[i].name, cases[i].value, err, sizeof(err));
        if (rc != cases[i].rc)
            fail_msg("%s=%s: rc %d, expected %d", cases[i].name, cases[i].value,
                rc, cases[i].rc);
        if (rc != 0)
            assert_non_null(strstr(err, cases[i].name));
    }
    text = dump(&c);
    assert_non_null(
        strstr(text, "QUOTA_UPSTREAM_INDEX_OVERRIDES=demo:100/hour,big:off\n"));
    free(text);
    /* Counters shared through memcached need one. */
    assert_int_equal(
        settings_set(&c, "HERE_API_KEY", "k", err, sizeof(err)), 0);
    assert_int_equal(
        settings_set(&c, "RATE_LIMIT_SHARED", "memcached", err, sizeof(err)),
        0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "MEMCACHED_SERVERS"));
    assert_int_equal(settings_set(&c, "MEMCACHED_SERVERS", "127.0.0.1:11211",
                         err, sizeof(err)),
        0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), 0);
    /* One way to count NGINX's hits at a time: both would count twice. */
    assert_int_equal(
        settings_set(&c, "NGINX_LOG_FILE", "/tmp/x.log", err, sizeof(err)), 0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(
        settings_set(&c, "NGINX_HITS_FILE", "/tmp/hits", err, sizeof(err)), 0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "NGINX_HITS_FILE and NGINX_LOG_FILE"));
    assert_int_equal(
        settings_set(&c, "NGINX_LOG_FILE", "", err, sizeof(err)), 0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), 0);
    /* The lossy syslog socket is gone. */
    assert_int_equal(
        settings_set(&c, "NGINX_LOG_SOCKET", "/tmp/x.sock", err, sizeof(err)),
        1);
    settings_cleanup(&c);
}

static void
test_dump_roundtrip(void **state)
{
    struct settings a, b;
    char err[512], *ta, *tb;

    (void)state;
    /* What --check-config prints loads back to the same (bar the key). */
    assert_int_equal(settings_init(&a), 0);
    assert_int_equal(
        settings_apply_text(&a,
            "HEREPROXY_ZMAX=7\n"
            "LOG_LEVEL=ERROR\nCACHE_MAXBYTES=2M\nHERE_ALLOW_LOGISTICS=yes\n",
            "x", err, sizeof(err)),
        0);
    ta = dump(&a);
    assert_int_equal(settings_init(&b), 0);
    if (settings_apply_text(&b, ta, "dump", err, sizeof(err)) != 0)
        fail_msg("dump does not load back: %s", err);
    tb = dump(&b);
    assert_string_equal(ta, tb);
    free(ta);
    free(tb);
    settings_cleanup(&a);
    settings_cleanup(&b);
}

/*
 * A tokens file far past the 4 KiB every other value is held to: 10,000
 * entries (with comments, blank lines and CRLF) load, each token finds
 * its indice, and an error names the line, never the token.
 */
static void
test_client_tokens_file(void **state)
{
    enum { N = 10000 };
    struct settings c;
    char path[64], env1[128], err[512], ind[65], tok[64];
    char *text, *p;
    size_t size = (size_t)N * 64 + 64;
    int i;

    (void)state;
    assert_non_null(text = malloc(size));
    p = text + sprintf(text, "# clients\n\n");
    for (i = 0; i < N; i++)
        p += sprintf(p, "client-token-%06d-abcdefghij:ind%d\r\n", i, i % 7);
    assert_true(strlen(text) > 4096 * 50);
    temp_file(path, text);
    snprintf(env1, sizeof(env1), "HEREPROXY_CLIENT_TOKENS_FILE=%s", path);
    {
        char *envp[] = {"HERE_API_KEY=k", env1, NULL};

        if (settings_load(&c, envp, err, sizeof(err)) != 0)
            fail_msg("10,000 tokens do not load: %s", err);
    }
    assert_int_equal(token_table_count(c.client_token_table), N);
    for (i = 0; i < N; i += 997) {
        char want[16];

        snprintf(tok, sizeof(tok), "client-token-%06d-abcdefghij", i);
        snprintf(want, sizeof(want), "ind%d", i % 7);
        assert_int_equal(settings_token_indice(&c, tok, ind, sizeof(ind)), 1);
        assert_string_equal(ind, want);
    }
    assert_int_equal(settings_token_indice(&c, "client-token-009999-abcdefghij",
                         ind, sizeof(ind)),
        1);
    assert_int_equal(settings_token_indice(&c, "client-token-010000-abcdefghij",
                         ind, sizeof(ind)),
        0);
    {
        char *d = dump(&c);

        assert_null(strstr(d, "client-token-"));
        free(d);
    }
    settings_cleanup(&c);
    unlink(path);
    /* Line 5 (after the comment and the blank line) repeats line 3. */
    temp_file(path, "# c\n\nsecretDUP:a\nother:b\nsecretDUP:c\n");
    snprintf(env1, sizeof(env1), "HEREPROXY_CLIENT_TOKENS_FILE=%s", path);
    {
        char *envp[] = {"HERE_API_KEY=k", env1, NULL};

        assert_int_equal(settings_load(&c, envp, err, sizeof(err)), -1);
    }
    assert_non_null(strstr(err, "entry 5 repeats"));
    assert_non_null(strstr(err, path));
    assert_null(strstr(err, "secretDUP"));
    settings_cleanup(&c);
    unlink(path);
    free(text);
}

static void
test_client_tokens(void **state)
{
    struct settings c;
    char err[256], ind[65];

    (void)state;
    assert_int_equal(settings_init(&c), 0);
    assert_true(settings_indice_allowed(&c, "anything"));
    assert_int_equal(settings_set(&c, "HEREPROXY_CLIENT_TOKENS",
                         "tokA:indiceA, tok.B~x:indiceB ,", err, sizeof(err)),
        0);
    assert_int_equal(
        settings_set(&c, "HERE_API_KEY", "k", err, sizeof(err)), 0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), 0);
    assert_int_equal(settings_token_indice(&c, "tokA", ind, sizeof(ind)), 1);
    assert_string_equal(ind, "indiceA");
    assert_int_equal(settings_token_indice(&c, "tok.B~x", ind, sizeof(ind)), 1);
    assert_string_equal(ind, "indiceB");
    assert_int_equal(settings_token_indice(&c, "tok", ind, sizeof(ind)), 0);
    assert_int_equal(settings_token_indice(&c, "tokAA", ind, sizeof(ind)), 0);
    assert_int_equal(settings_token_indice(&c, "indiceA", ind, sizeof(ind)), 0);
    assert_int_equal(settings_token_indice(&c, "", ind, sizeof(ind)), 0);
    assert_int_equal(settings_token_indice(&c, NULL, ind, sizeof(ind)), 0);
    /*
     * Entries without an indice, or with a bad one, and a token given
     * twice are refused when set, naming the entry, never its text; the
     * table in force stays.
     */
    assert_int_equal(settings_set(&c, "HEREPROXY_CLIENT_TOKENS", "secretonly",
                         err, sizeof(err)),
        -1);
    assert_null(strstr(err, "secretonly"));
    assert_non_null(strstr(err, "HEREPROXY_CLIENT_TOKENS: entry 1 "));
    assert_int_equal(settings_set(&c, "HEREPROXY_CLIENT_TOKENS", "t:bad indice",
                         err, sizeof(err)),
        -1);
    assert_int_equal(settings_set(&c, "HEREPROXY_CLIENT_TOKENS",
                         "dupTok:a,other:b,dupTok:c", err, sizeof(err)),
        -1);
    assert_null(strstr(err, "dupTok"));
    assert_non_null(strstr(err, "entry 3 repeats"));
    assert_int_equal(settings_token_indice(&c, "tokA", ind, sizeof(ind)), 1);
    assert_string_equal(ind, "indiceA");
    assert_int_equal(
        settings_set(&c, "HEREPROXY_CLIENT_TOKENS", "", err, sizeof(err)), 0);
    assert_int_equal(settings_token_indice(&c, "tokA", ind, sizeof(ind)), 0);
    assert_int_equal(
        settings_set(&c, "HEREPROXY_INDICES", "a, b.c", err, sizeof(err)), 0);
    assert_int_equal(settings_validate(&c, err, sizeof(err)), 0);
    assert_true(settings_indice_allowed(&c, "a"));
    assert_true(settings_indice_allowed(&c, "b.c"));
    assert_false(settings_indice_allowed(&c, "b"));
    assert_false(settings_indice_allowed(&c, "-"));
    /* Checked and parsed when set, once. */
    assert_int_equal(
        settings_set(&c, "HEREPROXY_INDICES", "a,b/c", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "HEREPROXY_INDICES"));
    assert_true(settings_indice_allowed(&c, "a")); /* the old list stays */
    settings_cleanup(&c);
}

/* HERE_STYLES: parsed once into the sorted list requests search. */
static void
test_styles(void **state)
{
    struct settings c;
    char err[256];

    (void)state;
    assert_int_equal(settings_init(&c), 0);
    /* The default is the built-in list (request.h), sorted. */
    assert_string_equal(c.here_styles, REQUEST_STYLES_DEFAULT);
    assert_int_equal(c.styles.n, 9);
    assert_string_equal(c.styles.names[0], "explore.day");
    assert_string_equal(c.styles.names[8], "topo.night");
    assert_int_equal(
        settings_set(&c, "HERE_STYLES", " topo.day ,explore.dusk,, explore.day",
            err, sizeof(err)),
        0);
    assert_int_equal(c.styles.n, 3);
    assert_string_equal(c.styles.names[0], "explore.day");
    assert_string_equal(c.styles.names[1], "explore.dusk");
    assert_string_equal(c.styles.names[2], "topo.day");
    assert_true(name_list_has(&c.styles, "explore.dusk"));
    assert_false(name_list_has(&c.styles, "lite.day"));
    /* A bad list names the setting and keeps the old one. */
    assert_int_equal(settings_set(&c, "HERE_STYLES", "lite.day,LITE.night", err,
                         sizeof(err)),
        -1);
    assert_non_null(strstr(err, "HERE_STYLES"));
    assert_int_equal(c.styles.n, 3);
    assert_true(settings_reloadable("HERE_STYLES"));
    settings_cleanup(&c);
}

static void
test_origin_allowed(void **state)
{
    struct settings c;
    char err[256];

    (void)state;
    assert_int_equal(settings_init(&c), 0);
    assert_true(settings_origin_allowed(&c, "https://any.example"));
    assert_true(settings_origin_allowed(&c, NULL));
    assert_int_equal(
        settings_set(&c, "HEREPROXY_CORS_ORIGINS",
            "https://a.example, http://b.example:8080,https://c.example", err,
            sizeof(err)),
        0);
    assert_true(settings_origin_allowed(&c, "https://a.example"));
    assert_true(settings_origin_allowed(&c, "http://b.example:8080"));
    assert_true(settings_origin_allowed(&c, "https://c.example"));
    assert_false(settings_origin_allowed(&c, "http://a.example"));
    assert_false(settings_origin_allowed(&c, "https://a.example.evil"));
    assert_false(settings_origin_allowed(&c, "https://a.exampl"));
    assert_false(settings_origin_allowed(&c, "https://evil.a.example"));
    assert_false(settings_origin_allowed(&c, "http://b.example"));
    assert_false(settings_origin_allowed(&c, "https://A.example"));
    assert_false(settings_origin_allowed(&c, " https://a.example"));
    assert_false(settings_origin_allowed(&c, "*"));
    assert_false(settings_origin_allowed(&c, ""));
    assert_false(settings_origin_allowed(&c, "null"));
    assert_false(settings_origin_allowed(&c, NULL));
    assert_false(
        settings_origin_allowed(&c, "https://a.example,https://c.example"));
    settings_cleanup(&c);
}

static void
test_keep_restart_only(void **state)
{
    struct settings cur, next;
    char err[256], changed[256];

    (void)state;
    assert_int_equal(settings_init(&cur), 0);
    assert_int_equal(settings_init(&next), 0);
    assert_int_equal(settings_apply_text(&cur,
                         "HERE_API_KEY=old\nMEMCACHED_SERVERS=127.0.0.1:1\n",
                         "cur", err, sizeof(err)),
        0);
    assert_int_equal(
        settings_apply_text(&next,
            "HERE_API_KEY=new\nMEMCACHED_SERVERS=127.0.0.1:1\n"
            "HEREPROXY_THREADS=8\nCACHE_MAXBYTES=1M\n"
            "HEREPROXY_CORS_ORIGINS=https://a.example\nLOG_LEVEL=DEBUG\n"
            "CACHE_TTL_DEFAULT=60\nSHUTDOWN_GRACE_MS=500\n",
            "next", err, sizeof(err)),
        0);
    assert_int_equal(
        settings_keep_restart_only(&next, &cur, changed, sizeof(changed)), 2);
    assert_string_equal(changed, "HEREPROXY_THREADS,CACHE_MAXBYTES");
    /* Restart-only settings keep the running values ... */
    assert_int_equal(next.threads, 64);
    assert_true(next.cache_maxbytes == 268435456ULL);
    assert_string_equal(next.memcached_servers, "127.0.0.1:1");
    /* ... the reloadable ones take the new: the HERE key rotates. */
    assert_string_equal(next.here_api_key, "new");
    assert_true(settings_reloadable("HERE_API_KEY"));
    assert_true(settings_reloadable("HERE_CREDENTIALS_FILE"));
    assert_string_equal(next.cors_origins, "https://a.example");
    assert_int_equal(next.log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(next.cache_ttl_default_s, 60);
    assert_int_equal(next.shutdown_grace_ms, 500);
    assert_true(settings_reloadable("HEREPROXY_CORS_ORIGINS"));
    assert_false(settings_reloadable("MEMCACHED_SERVERS"));
    /* Nothing restart-only changed: nothing listed. */
    assert_int_equal(
        settings_keep_restart_only(&next, &cur, changed, sizeof(changed)), 0);
    assert_string_equal(changed, "");
    settings_cleanup(&cur);
    settings_cleanup(&next);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set_table),
        cmocka_unit_test(test_set_values),
        cmocka_unit_test(test_set_url_needs_host),
        cmocka_unit_test(test_public_url),
        cmocka_unit_test(test_apply_text),
        cmocka_unit_test(test_apply_text_errors),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_credentials_file),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_dump_roundtrip),
        cmocka_unit_test(test_limit_settings),
        cmocka_unit_test(test_admin_token),
        cmocka_unit_test(test_cache_secret),
        cmocka_unit_test(test_styles),
        cmocka_unit_test(test_origin_allowed),
        cmocka_unit_test(test_keep_restart_only),
        cmocka_unit_test(test_client_tokens),
        cmocka_unit_test(test_client_tokens_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
