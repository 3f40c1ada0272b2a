#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "seed/http.h"
#include "seed/run.h"
#include "seed/tiles.h"
#include "util.h"

/* Exit statuses (the man page's EXIT STATUS). */
#define EXIT_TILES_FAILED 1
#define EXIT_USAGE 2
#define EXIT_STOPPED 3
/* SIGINT and SIGTERM: 128 + the signal, as a shell reports it. */

/* A tiles file's line, with room to see that it is too long. */
#define LINE_MAX_LEN 128

static volatile sig_atomic_t signalled;

static void
on_signal(int sig)
{
    signalled = sig;
}

/* clang-format off */
enum opt_id {
    OPT_URL = 256, OPT_BBOX, OPT_ZOOM, OPT_TILES, OPT_RESOURCE, OPT_STYLE,
    OPT_FORMAT, OPT_SIZE, OPT_PPI, OPT_LANG, OPT_INDICE, OPT_TOKEN,
    OPT_TOKEN_FILE, OPT_CONCURRENCY, OPT_RETRIES, OPT_MAX_WAIT, OPT_TIMEOUT,
    OPT_PROGRESS, OPT_DRY_RUN, OPT_END
};
/* clang-format on */

struct options {
    const char *url, *bbox_text, *zoom_text, *tiles, *resource, *style;
    const char *format, *lang, *indice, *token, *token_file;
    long size, ppi, concurrency, retries, max_wait_s, timeout_s;
    long progress_s;
    int dry_run;
    struct seed_bbox bbox;
    int zmin, zmax;
    char token_buf[SEED_TOKEN_MAX + 2];
};

static void
usage(FILE *fp)
{
    fprintf(fp,
        "usage: hereproxy-seed --url URL --bbox W,S,E,N --zoom MIN-MAX "
        "[options]\n"
        "       hereproxy-seed --url URL --tiles FILE [options]\n"
        "       hereproxy-seed --dry-run (--bbox W,S,E,N --zoom MIN-MAX | "
        "--tiles FILE)\n"
        "       hereproxy-seed --help | --version\n"
        "\n"
        "Warms hereproxy's cache: asks the proxy for every tile of an area.\n"
        "\n"
        "  --url URL            the proxy's prefix, "
        "http://host/here-proxy\n"
        "  --bbox W,S,E,N       degrees; W > E crosses the antimeridian\n"
        "  --zoom Z|MIN-MAX     zoom levels 0 to %d\n"
        "  --tiles FILE         one z/x/y a line instead ('-': stdin)\n"
        "  --resource R         base (default), background, label, blank\n"
        "  --style S            default explore.day\n"
        "  --format F           png (default), png8, jpeg\n"
        "  --size N             256 or 512\n"
        "  --ppi N              100, 200 or 400\n"
        "  --lang L             e.g. en, pt-BR\n"
        "  --indice I           whose quota and metrics the tiles count in\n"
        "  --token T            client token (X-Proxy-Token)\n"
        "  --token-file F       the token from a file\n"
        "  --concurrency N      requests at once, 1 to 64 (default 4)\n"
        "  --retries N          per tile after a 5xx or network error, "
        "0 to 10 (default 3)\n"
        "  --max-wait S         longest Retry-After to wait for, seconds "
        "(default 300)\n"
        "  --timeout S          per request, seconds (default 30)\n"
        "  --progress-interval S  progress line when stderr is not a "
        "terminal,\n"
        "                       seconds, 0 for none (default 5)\n"
        "  --dry-run            count the tiles and the most requests to "
        "HERE; ask nothing\n"
        "  -h, --help           this text\n"
        "  -V, --version        the version\n",
        SEED_ZMAX);
}

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* A usage error said on stderr; returns -1. */
static int
usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("hereproxy-seed: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (--help lists the options)\n", stderr);
    return -1;
}

static int
parse_number(const char *name, const char *s, long min, long max, long *out)
{
    if (util_parse_long(s, min, max, out) == 0)
        return 0;
    return usage_error("%s: a whole number from %ld to %ld", name, min, max);
}

/* One of a, b or c (c 0: one of a or b). */
static int
parse_choice(const char *name, const char *s, long a, long b, long c, long *out)
{
    long v;

    if (util_parse_long(s, 0, 100000, &v) == 0 &&
        (v == a || v == b || v == c)) {
        *out = v;
        return 0;
    }
    if (c != 0)
        return usage_error("%s: must be %ld, %ld or %ld", name, a, b, c);
    return usage_error("%s: must be %ld or %ld", name, a, b);
}

/* The token from the first line of a file; never printed. */
static int
read_token_file(struct options *o)
{
    FILE *fp = fopen(o->token_file, "r");
    size_t len;
    int rc = -1;

    if (fp == NULL) {
        fprintf(stderr, "hereproxy-seed: --token-file %s: %s\n", o->token_file,
            strerror(errno));
        return -1;
    }
    if (fgets(o->token_buf, sizeof(o->token_buf), fp) == NULL) {
        fprintf(
            stderr, "hereproxy-seed: --token-file %s: empty\n", o->token_file);
        goto done;
    }
    len = strcspn(o->token_buf, "\r\n");
    o->token_buf[len] = '\0';
    if (!seed_token_valid(o->token_buf)) {
        fprintf(stderr,
            "hereproxy-seed: --token-file %s: the token must be 1 to %d "
            "printable bytes without blanks on the first line\n",
            o->token_file, SEED_TOKEN_MAX);
        goto done;
    }
    o->token = o->token_buf;
    rc = 0;
done:
    fclose(fp);
    return rc;
}

static const struct option longopts[] = {
    {"url", required_argument, NULL, OPT_URL},
    {"bbox", required_argument, NULL, OPT_BBOX},
    {"zoom", required_argument, NULL, OPT_ZOOM},
    {"tiles", required_argument, NULL, OPT_TILES},
    {"resource", required_argument, NULL, OPT_RESOURCE},
    {"style", required_argument, NULL, OPT_STYLE},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"size", required_argument, NULL, OPT_SIZE},
    {"ppi", required_argument, NULL, OPT_PPI},
    {"lang", required_argument, NULL, OPT_LANG},
    {"indice", required_argument, NULL, OPT_INDICE},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"max-wait", required_argument, NULL, OPT_MAX_WAIT},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"progress-interval", required_argument, NULL, OPT_PROGRESS},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* One option's value into o; each may be given once. */
static int
take_option(struct options *o, int id, const char *v, unsigned char *seen)
{
    const char *name = NULL;
    size_t i;

    for (i = 0; longopts[i].name != NULL; i++)
        if (longopts[i].val == id)
            name = longopts[i].name;
    if (seen[id - OPT_URL]++)
        return usage_error("--%s: given more than once", name);
    switch (id) {
    case OPT_URL: o->url = v; return 0;
    case OPT_BBOX: o->bbox_text = v; return 0;
    case OPT_ZOOM: o->zoom_text = v; return 0;
    case OPT_TILES: o->tiles = v; return 0;
    case OPT_RESOURCE:
        o->resource = v;
        return seed_resource_valid(v)
            ? 0
            : usage_error("--%s: base, background, label or blank", name);
    case OPT_STYLE:
        o->style = v;
        return seed_style_valid(v)
            ? 0
            : usage_error("--%s: 1 to 64 of a-z 0-9 . _ - "
                          "(e.g. explore.day)",
                  name);
    case OPT_FORMAT:
        o->format = v;
        return seed_format_valid(v)
            ? 0
            : usage_error("--%s: png, png8 or jpeg", name);
    case OPT_SIZE: return parse_choice("--size", v, 256, 512, 0, &o->size);
    case OPT_PPI: return parse_choice("--ppi", v, 100, 200, 400, &o->ppi);
    case OPT_LANG:
        o->lang = v;
        return util_lang_valid(v)
            ? 0
            : usage_error("--%s: a language such as en or pt-BR", name);
    case OPT_INDICE:
        o->indice = v;
        return seed_indice_valid(v)
            ? 0
            : usage_error("--%s: 1 to 64 of A-Z a-z 0-9 _ . -", name);
    case OPT_TOKEN:
        o->token = v;
        return seed_token_valid(v)
            ? 0
            : usage_error(
                  "--%s: 1 to 128 printable bytes without blanks", name);
    case OPT_TOKEN_FILE: o->token_file = v; return 0;
    case OPT_CONCURRENCY:
        return parse_number("--concurrency", v, 1, 64, &o->concurrency);
    case OPT_RETRIES: return parse_number("--retries", v, 0, 10, &o->retries);
    case OPT_MAX_WAIT:
        return parse_number("--max-wait", v, 1, 86400, &o->max_wait_s);
    case OPT_TIMEOUT:
        return parse_number("--timeout", v, 1, 600, &o->timeout_s);
    case OPT_PROGRESS:
        return parse_number("--progress-interval", v, 0, 3600, &o->progress_s);
    case OPT_DRY_RUN: o->dry_run = 1; return 0;
    }
    return -1;
}

/* Parse and check everything; 0, 1 when done (help, version), or -1. */
static int
parse_options(int argc, char **argv, struct options *o)
{
    unsigned char seen[OPT_END - OPT_URL] = {0};
    char err[SEED_ERR_MAX];
    int ch;

    memset(o, 0, sizeof(*o));
    o->resource = "base";
    o->style = "explore.day";
    o->format = "png";
    o->concurrency = 4;
    o->retries = 3;
    o->max_wait_s = 300;
    o->timeout_s = 30;
    o->progress_s = 5;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': usage(stdout); return 1;
        case 'V': printf("hereproxy-seed %s\n", PACKAGE_VERSION); return 1;
        case ':': return usage_error("%s: needs a value", argv[optind - 1]);
        case '?': return usage_error("%s: unknown option", argv[optind - 1]);
        default:
            if (take_option(o, ch, optarg, seen) != 0)
                return -1;
        }
    }
    if (optind < argc)
        return usage_error("%s: unexpected argument", argv[optind]);
    if ((o->bbox_text != NULL) == (o->tiles != NULL))
        return usage_error("%s", "give either --bbox with --zoom, or --tiles");
    if (o->tiles != NULL && o->zoom_text != NULL)
        return usage_error(
            "%s", "--zoom goes with --bbox: a tiles file names its zooms");
    if (o->bbox_text != NULL && o->zoom_text == NULL)
        return usage_error("%s", "--bbox needs --zoom");
    if (o->token != NULL && o->token_file != NULL)
        return usage_error("%s", "give --token or --token-file, not both");
    if (o->url == NULL && !o->dry_run)
        return usage_error("%s",
            "--url is needed (the proxy's prefix, "
            "e.g. http://host/here-proxy)");
    if (o->bbox_text != NULL &&
        (seed_bbox_parse(o->bbox_text, &o->bbox, err, sizeof(err)) != 0 ||
            seed_zoom_parse(
                o->zoom_text, &o->zmin, &o->zmax, err, sizeof(err)) != 0))
        return usage_error("%s", err);
    if (o->url != NULL && seed_url_check(o->url, err, sizeof(err)) != 0)
        return usage_error("%s", err);
    if (o->token_file != NULL && read_token_file(o) != 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------- tile sources */

struct box_source {
    struct seed_iter it;
};

static int
box_next(void *ctx, struct seed_tile *t, char *err, size_t errlen)
{
    struct box_source *b = ctx;

    (void)err;
    (void)errlen;
    return seed_iter_next(&b->it, t);
}

struct file_source {
    FILE *fp;
    const char *name;
    unsigned long line;
};

static int
file_next(void *ctx, struct seed_tile *t, char *err, size_t errlen)
{
    struct file_source *f = ctx;
    char buf[LINE_MAX_LEN], why[SEED_ERR_MAX];
    size_t len;
    int got;

    for (;;) {
        if (fgets(buf, sizeof(buf), f->fp) == NULL) {
            if (ferror(f->fp) && !signalled) {
                snprintf(err, errlen, "%s: %s", f->name, strerror(errno));
                return -1;
            }
            return 0;
        }
        f->line++;
        len = strlen(buf);
        if (len > 0 && buf[len - 1] == '\n')
            len--;
        else if (!feof(f->fp)) {
            snprintf(err, errlen, "%s:%lu: longer than %d bytes", f->name,
                f->line, LINE_MAX_LEN - 2);
            return -1;
        }
        got = seed_tile_line_parse(buf, len, t, why, sizeof(why));
        if (got < 0) {
            snprintf(err, errlen, "%s:%lu: %s", f->name, f->line, why);
            return -1;
        }
        if (got > 0)
            return 1;
    }
}

/* Every tile of a file, counted per zoom; 0, or -1 said on stderr. */
static int
file_scan(struct file_source *f, uint64_t *per_zoom, uint64_t *total)
{
    struct seed_tile t;
    char err[SEED_ERR_MAX + 64];
    int got;

    *total = 0;
    while ((got = file_next(f, &t, err, sizeof(err))) > 0) {
        per_zoom[t.z]++;
        (*total)++;
    }
    if (got < 0) {
        fprintf(stderr, "hereproxy-seed: %s\n", err);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ dry run */

static void
dry_run_print(const uint64_t *per_zoom, uint64_t total)
{
    int z, first = 1;

    for (z = 0; z <= SEED_ZMAX; z++)
        if (per_zoom[z] > 0)
            printf(
                "zoom %2d: %llu tiles\n", z, (unsigned long long)per_zoom[z]);
    printf("total: %llu tiles; at most %llu requests to HERE (a tile "
           "already cached costs none)\n",
        (unsigned long long)total, (unsigned long long)total);
    printf("{\"dry_run\":true,\"tiles\":%llu,\"here_requests_max\":%llu,"
           "\"zooms\":{",
        (unsigned long long)total, (unsigned long long)total);
    for (z = 0; z <= SEED_ZMAX; z++) {
        if (per_zoom[z] == 0)
            continue;
        printf("%s\"%d\":%llu", first ? "" : ",", z,
            (unsigned long long)per_zoom[z]);
        first = 0;
    }
    printf("}}\n");
}

/* ---------------------------------------------------------------- run */

static void
summary_print(const struct seed_totals *t)
{
    const char *stopped = seed_stop_name(t->stopped);

    printf("{\"tiles\":%llu,\"fetched\":%llu,\"cached\":%llu,"
           "\"failed\":%llu,\"seconds\":%.3f,\"stopped\":%s%s%s}\n",
        (unsigned long long)t->tiles, (unsigned long long)t->fetched,
        (unsigned long long)t->cached, (unsigned long long)t->failed,
        t->seconds, stopped ? "\"" : "", stopped ? stopped : "null",
        stopped ? "\"" : "");
    fflush(stdout);
}

static int
exit_status(const struct seed_totals *t)
{
    switch (t->stopped) {
    case SEED_STOP_NONE: return t->failed > 0 ? EXIT_TILES_FAILED : 0;
    case SEED_STOP_SIGNAL: return 128 + (int)signalled;
    case SEED_STOP_INPUT: return EXIT_USAGE;
    case SEED_STOP_ERROR: return EXIT_TILES_FAILED;
    default: return EXIT_STOPPED;
    }
}

static void
signals_install(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a read of the tiles pipe returns at once. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int
main(int argc, char **argv)
{
    struct options o;
    struct seed_run_opts ro;
    struct seed_totals totals;
    struct seed_source src;
    struct box_source box;
    struct file_source file;
    uint64_t per_zoom[SEED_ZMAX + 1], total = 0;
    char query[SEED_QUERY_MAX], base[SEED_URL_MAX];
    struct stat st;
    size_t blen;
    int rc, curl_up = 0;

    memset(&file, 0, sizeof(file));
    memset(per_zoom, 0, sizeof(per_zoom));
    rc = parse_options(argc, argv, &o);
    if (rc != 0) {
        rc = rc > 0 ? 0 : EXIT_USAGE;
        goto done;
    }
    memset(&src, 0, sizeof(src));
    if (o.tiles != NULL) {
        file.name = strcmp(o.tiles, "-") == 0 ? "stdin" : o.tiles;
        file.fp = strcmp(o.tiles, "-") == 0 ? stdin : fopen(o.tiles, "r");
        if (file.fp == NULL) {
            fprintf(stderr, "hereproxy-seed: --tiles %s: %s\n", o.tiles,
                strerror(errno));
            rc = EXIT_USAGE;
            goto done;
        }
        /*
         * A regular file is read twice, checked and counted first, so
         * that a bad line stops nothing half-done and the bar has a
         * total; a pipe is read once, as it comes.
         */
        if (o.dry_run ||
            (fstat(fileno(file.fp), &st) == 0 && S_ISREG(st.st_mode))) {
            if (file_scan(&file, per_zoom, &total) != 0) {
                rc = EXIT_USAGE;
                goto done;
            }
            if (!o.dry_run && fseek(file.fp, 0, SEEK_SET) != 0) {
                fprintf(stderr, "hereproxy-seed: --tiles %s: %s\n", o.tiles,
                    strerror(errno));
                rc = EXIT_USAGE;
                goto done;
            }
            file.line = 0;
        }
        src.next = file_next;
        src.ctx = &file;
    } else {
        if (seed_count(&o.bbox, o.zmin, o.zmax, per_zoom, &total) != 0) {
            fprintf(stderr, "hereproxy-seed: too many tiles to count\n");
            rc = EXIT_USAGE;
            goto done;
        }
        seed_iter_init(&box.it, &o.bbox, o.zmin, o.zmax);
        src.next = box_next;
        src.ctx = &box;
    }
    src.total = total;
    if (o.dry_run) {
        dry_run_print(per_zoom, total);
        rc = 0;
        goto done;
    }
    if (seed_query_build(query, sizeof(query), o.style, o.size, o.ppi, o.lang,
            o.indice) != 0) {
        fprintf(stderr, "hereproxy-seed: the tile parameters are too long\n");
        rc = EXIT_USAGE;
        goto done;
    }
    /* "http://host/here-proxy/" and ".../here-proxy" are the same prefix. */
    util_strlcpy(base, o.url, sizeof(base));
    blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        base[--blen] = '\0';
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "hereproxy-seed: libcurl would not start\n");
        rc = EXIT_TILES_FAILED;
        goto done;
    }
    curl_up = 1;
    signals_install();
    memset(&ro, 0, sizeof(ro));
    ro.base_url = base;
    ro.resource = o.resource;
    ro.format = o.format;
    ro.query = query;
    ro.token = o.token;
    ro.concurrency = (int)o.concurrency;
    ro.retries = (int)o.retries;
    ro.max_wait_s = o.max_wait_s;
    ro.timeout_ms = o.timeout_s * 1000;
    ro.progress_ms = o.progress_s * 1000;
    ro.tty = isatty(STDERR_FILENO);
    ro.signalled = &signalled;
    if (seed_run(&ro, &src, &totals) != 0) {
        rc = EXIT_TILES_FAILED;
        goto done;
    }
    summary_print(&totals);
    rc = exit_status(&totals);
done:
    if (file.fp != NULL && file.fp != stdin)
        fclose(file.fp);
    if (curl_up)
        curl_global_cleanup();
    explicit_bzero(o.token_buf, sizeof(o.token_buf));
    return rc;
}
