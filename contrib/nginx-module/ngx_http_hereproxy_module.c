/*
 * ngx_http_hereproxy_module: what hereproxy's NGINX cache layer needs from
 * NGINX, done in C instead of an access log line, maps and add_header.
 *
 *   hereproxy_hits_file PATH [slots=N];   (http)
 *   hereproxy_hits on|off;                (http, server, location)
 *   hereproxy_hit_headers on|off;         (http, server, location)
 *   hereproxy_cache_status_header on|off; (http, server, location)
 *   hereproxy_indices NAME ...;           (http, server, location)
 *
 * hereproxy_hits counts each request the cache answered (status HIT,
 * STALE or UPDATING) per indice in PATH, a file mapped shared by every
 * worker and read by hereproxy (NGINX_HITS_FILE): a few atomic adds per
 * hit, no write, no syscall. The layout is src/nginx/nginxhits_format.h.
 *
 * hereproxy_hit_headers gives a cached answer the requester's X-Index
 * (its indice, "-" without one) and X-Request-ID (its own when hereproxy
 * would take it, else none) in place of those stored with the entry,
 * which are the request's that filled it. hereproxy_cache_status_header
 * adds X-Cache-NGINX, NGINX's cache status, to every answer that went
 * through the cache.
 *
 * $hereproxy_cache_key is the shipped conf's $hereproxy_cache_target map
 * without a regular expression: "i:" and the request target without its
 * first plain, valid indice= parameter, else "q:" and the whole target.
 *
 * $hereproxy_cache_bypass is "1" for a request NGINX's cache must leave
 * to hereproxy (a client token; an indice that is invalid, repeated,
 * encoded, or not in hereproxy_indices when that is set), else "0": the
 * shipped conf's token variables and $hereproxy_indice_uncacheable map
 * without a regular expression.
 *
 * A hit's costs beyond NGINX's plain fastcgi_cache are what this module
 * adds, so each request's query and headers are read once, into a context
 * the variables, the header filter and the counter share.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/mman.h>

#include "nginxhits_format.h"

typedef struct {
    ngx_str_t                     path;
    ngx_uint_t                    nslots;
    struct nginxhits_header      *header;   /* the mapping, NULL if none */
    size_t                        size;
} ngx_http_hereproxy_main_conf_t;

typedef struct {
    ngx_flag_t                    hits;
    ngx_flag_t                    hit_headers;
    ngx_flag_t                    status_header;
    ngx_array_t                  *indices;  /* hereproxy_indices, sorted */
} ngx_http_hereproxy_loc_conf_t;

/* What a request's query and headers say, read once (see above). */
typedef struct {
    ngx_str_t                     indice;   /* valid, else "-" */
    ngx_table_elt_t              *request_id;   /* X-Request-ID, or NULL */
    unsigned                      bypass:1;
} ngx_http_hereproxy_ctx_t;

static ngx_int_t ngx_http_hereproxy_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_hereproxy_init(ngx_conf_t *cf);
static void *ngx_http_hereproxy_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_hereproxy_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_hereproxy_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_hereproxy_hits_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_hereproxy_indices(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_hereproxy_init_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_hereproxy_listed(ngx_array_t *list, ngx_str_t *name);

static ngx_command_t ngx_http_hereproxy_commands[] = {

    { ngx_string("hereproxy_hits_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_hereproxy_hits_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("hereproxy_hits"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hereproxy_loc_conf_t, hits),
      NULL },

    { ngx_string("hereproxy_hit_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hereproxy_loc_conf_t, hit_headers),
      NULL },

    { ngx_string("hereproxy_cache_status_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_hereproxy_loc_conf_t, status_header),
      NULL },

    { ngx_string("hereproxy_indices"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_hereproxy_indices,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};

static ngx_http_module_t ngx_http_hereproxy_module_ctx = {
    ngx_http_hereproxy_add_variables,      /* preconfiguration */
    ngx_http_hereproxy_init,               /* postconfiguration */
    ngx_http_hereproxy_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    ngx_http_hereproxy_create_loc_conf,    /* create location configuration */
    ngx_http_hereproxy_merge_loc_conf      /* merge location configuration */
};

ngx_module_t ngx_http_hereproxy_module = {
    NGX_MODULE_V1,
    &ngx_http_hereproxy_module_ctx,        /* module context */
    ngx_http_hereproxy_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_hereproxy_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};

static ngx_http_output_header_filter_pt ngx_http_next_header_filter;

static const ngx_uint_t ngx_http_hereproxy_statuses[] = NGINXHITS_STATUSES;
static const ngx_msec_t ngx_http_hereproxy_ms_bounds[] = NGINXHITS_MS_BOUNDS;

/*
 * This worker's index of names to slots, open addressing, each entry with
 * its own copy of the name so that a lookup reads nothing shared. Names
 * that found the file full map to slot 0; they stop being remembered once
 * the index is a quarter full, and are then looked for in the file.
 */
typedef struct {
    uint32_t                      slot_plus1;   /* 0: empty entry */
    uint32_t                      len;
    u_char                        name[NGINXHITS_NAME_MAX];
} ngx_http_hereproxy_entry_t;

static ngx_http_hereproxy_entry_t  *ngx_http_hereproxy_index;
static ngx_uint_t                   ngx_http_hereproxy_index_size;
static ngx_uint_t                   ngx_http_hereproxy_index_used;

/*
 * The headers this module looks for, and the hashes of their lower-case
 * names: NGINX's parser gives every request header, and every header of
 * an upstream or cached response, that hash, so most headers are passed
 * over without a string comparison.
 */
static ngx_str_t   ngx_http_hereproxy_x_cache_nginx = ngx_string("X-Cache-NGINX");
static ngx_str_t   ngx_http_hereproxy_x_index = ngx_string("X-Index");
static ngx_str_t   ngx_http_hereproxy_x_request_id = ngx_string("X-Request-ID");
static ngx_str_t   ngx_http_hereproxy_x_proxy_token = ngx_string("X-Proxy-Token");
static ngx_uint_t  ngx_http_hereproxy_x_index_hash;
static ngx_uint_t  ngx_http_hereproxy_x_request_id_hash;
static ngx_uint_t  ngx_http_hereproxy_x_proxy_token_hash;


/*
 * Whether header h is named name (lc in lower case, whose hash is hash).
 * A parsed header has its lower-case name beside it; one another module
 * added (hash 1) may not, and is compared case-blind.
 */
static ngx_inline ngx_int_t
ngx_http_hereproxy_is(ngx_table_elt_t *h, ngx_str_t *name, const char *lc,
    ngx_uint_t hash)
{
    if (h->key.len != name->len) {
        return 0;
    }

    if (h->hash == hash && h->lowcase_key != NULL) {
        return ngx_memcmp(h->lowcase_key, lc, name->len) == 0;
    }

    return h->hash == 1
           && ngx_strncasecmp(h->key.data, name->data, name->len) == 0;
}


/* An indice as hereproxy takes it: 1 to 64 of A-Z a-z 0-9 _ . - */
static ngx_int_t
ngx_http_hereproxy_valid_indice(ngx_str_t *s)
{
    size_t  i;
    u_char  c;

    if (s->len == 0 || s->len > NGINXHITS_NAME_MAX) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/* What hereproxy takes as an X-Request-ID: 1 to 128 of A-Z a-z 0-9 . _ : - */
static ngx_int_t
ngx_http_hereproxy_valid_request_id(ngx_str_t *s)
{
    size_t  i;
    u_char  c;

    if (s->len < 1 || s->len > 128) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':'
              || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * The request's context, made on first use: one pass over the query
 * ($args, what hereproxy gets as QUERY_STRING) and one over the request
 * headers.
 *
 * bypass: a client token (token= or X-Proxy-Token, whatever the value:
 * hereproxy alone checks tokens); an indice= that is invalid or empty, or
 * given twice (hereproxy answers 400); a parameter name with "%" in it
 * (hereproxy decodes names: "%69ndice" is an indice NGINX cannot see);
 * with hereproxy_indices, an indice not listed ("-" for none).
 */
static ngx_http_hereproxy_ctx_t *
ngx_http_hereproxy_get_ctx(ngx_http_request_t *r)
{
    u_char                         *p, *q, *end, *eq;
    size_t                          nlen;
    ngx_uint_t                      i, seen, pct, valid;
    ngx_list_part_t                *part;
    ngx_table_elt_t                *h;
    ngx_http_hereproxy_ctx_t       *ctx;
    ngx_http_hereproxy_loc_conf_t  *lcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_hereproxy_module);
    if (ctx != NULL) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_hereproxy_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    seen = 0;
    valid = 0;
    end = r->args.data + r->args.len;

    /* Each parameter is [p, q): its name ends at eq, or q without "=". */
    for (p = r->args.data; p < end; p = q + 1) {
        eq = NULL;
        pct = 0;

        for (q = p; q < end && *q != '&'; q++) {
            if (eq == NULL) {
                if (*q == '=') {
                    eq = q;
                } else if (*q == '%') {
                    pct = 1;
                }
            }
        }

        nlen = (eq ? eq : q) - p;

        if (pct) {
            ctx->bypass = 1;

        } else if (nlen == 6 && ngx_strncmp(p, "indice", 6) == 0) {
            if (seen++ == 0) {
                ctx->indice.data = eq ? eq + 1 : q;
                ctx->indice.len = q - ctx->indice.data;
                valid = ngx_http_hereproxy_valid_indice(&ctx->indice);
                if (!valid) {
                    ctx->bypass = 1;
                }

            } else {
                ctx->bypass = 1;
            }

        } else if (nlen == 5 && ngx_strncmp(p, "token", 5) == 0) {
            ctx->bypass = 1;
        }
    }

    if (!valid) {
        ngx_str_set(&ctx->indice, "-");
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_hereproxy_is(&h[i], &ngx_http_hereproxy_x_proxy_token,
                                  "x-proxy-token",
                                  ngx_http_hereproxy_x_proxy_token_hash))
        {
            ctx->bypass = 1;

        } else if (ctx->request_id == NULL
                   && ngx_http_hereproxy_is(&h[i],
                                            &ngx_http_hereproxy_x_request_id,
                                            "x-request-id",
                                            ngx_http_hereproxy_x_request_id_hash))
        {
            ctx->request_id = &h[i];
        }
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_hereproxy_module);

    if (lcf->indices != NULL && !ctx->bypass
        && !ngx_http_hereproxy_listed(lcf->indices, &ctx->indice))
    {
        ctx->bypass = 1;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_hereproxy_module);

    return ctx;
}


static struct nginxhits_slot *
ngx_http_hereproxy_slot(struct nginxhits_header *h, ngx_uint_t i)
{
    return (struct nginxhits_slot *) ((u_char *) h + sizeof(*h)) + i;
}


/* The slot counting name, taken from the file's free ones if new. */
static struct nginxhits_slot *
ngx_http_hereproxy_find(struct nginxhits_header *h, ngx_str_t *name)
{
    uint32_t                     n, i;
    ngx_uint_t                   k, mask;
    struct nginxhits_slot       *s;
    ngx_http_hereproxy_entry_t  *e;

    if (ngx_http_hereproxy_index == NULL) {
        return ngx_http_hereproxy_slot(h, 0);
    }

    mask = ngx_http_hereproxy_index_size - 1;

    for (k = ngx_hash_key(name->data, name->len) & mask;
         ngx_http_hereproxy_index[k].slot_plus1 != 0;
         k = (k + 1) & mask)
    {
        e = &ngx_http_hereproxy_index[k];
        if (e->len == name->len
            && ngx_memcmp(e->name, name->data, name->len) == 0)
        {
            return ngx_http_hereproxy_slot(h, e->slot_plus1 - 1);
        }
    }

    /* Another worker may have taken a slot for it: look before adding. */
    n = ngx_min(__atomic_load_n(&h->used, __ATOMIC_ACQUIRE), h->nslots);
    s = NULL;

    for (i = 1; i < n; i++) {
        s = ngx_http_hereproxy_slot(h, i);
        if (__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE)
            && s->len == name->len
            && ngx_memcmp(s->name, name->data, name->len) == 0)
        {
            break;
        }
        s = NULL;
    }

    /*
     * Full: counted as "_other". Checked before the add so that used
     * passes nslots by at most one per worker and never wraps.
     */
    if (s == NULL && n < h->nslots) {
        i = __atomic_fetch_add(&h->used, 1, __ATOMIC_ACQ_REL);
        if (i < h->nslots) {
            s = ngx_http_hereproxy_slot(h, i);
            ngx_memcpy(s->name, name->data, name->len);
            s->name[name->len] = '\0';
            s->len = (uint32_t) name->len;
            __atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
        }
    }

    if (s == NULL) {
        s = ngx_http_hereproxy_slot(h, 0);
        if (ngx_http_hereproxy_index_used * 4
            >= ngx_http_hereproxy_index_size)
        {
            return s;
        }
    }

    e = &ngx_http_hereproxy_index[k];
    e->slot_plus1 = (uint32_t) (s - ngx_http_hereproxy_slot(h, 0)) + 1;
    e->len = (uint32_t) name->len;
    ngx_memcpy(e->name, name->data, name->len);
    ngx_http_hereproxy_index_used++;

    return s;
}


static ngx_int_t
ngx_http_hereproxy_count(ngx_http_request_t *r)
{
    off_t                            sent;
    ngx_uint_t                       kind, st, cl, status;
    ngx_msec_int_t                   ms;
    ngx_time_t                      *tp;
    struct nginxhits_slot           *s;
    ngx_http_hereproxy_ctx_t        *ctx;
    ngx_http_hereproxy_loc_conf_t   *lcf;
    ngx_http_hereproxy_main_conf_t  *mcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_hereproxy_module);
    if (!lcf->hits || r->upstream == NULL) {
        return NGX_OK;
    }

    switch (r->upstream->cache_status) {
    case NGX_HTTP_CACHE_HIT:
        kind = NGINXHITS_KIND_HIT;
        break;
    case NGX_HTTP_CACHE_STALE:
    case NGX_HTTP_CACHE_UPDATING:
        kind = NGINXHITS_KIND_STALE;
        break;
    default:
        /* It went on to hereproxy, which counted it. */
        return NGX_OK;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_hereproxy_module);
    ctx = ngx_http_hereproxy_get_ctx(r);
    if (mcf->header == NULL || ctx == NULL) {
        return NGX_OK;
    }

    s = ngx_http_hereproxy_find(mcf->header, &ctx->indice);

    /* The status $status logs: 499 when the client went away. */
    status = r->err_status ? r->err_status : r->headers_out.status;

    for (st = 0; st < NGINXHITS_NSTATUS - 1; st++) {
        if (ngx_http_hereproxy_statuses[st] == status) {
            break;
        }
    }

    /* As $request_time and $body_bytes_sent have them. */
    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));
    ms = ngx_max(ms, 0);

    for (cl = 0; cl < NGINXHITS_NCLASS - 1; cl++) {
        if ((ngx_msec_t) ms <= ngx_http_hereproxy_ms_bounds[cl]) {
            break;
        }
    }

    sent = r->connection->sent - r->header_size;
    sent = ngx_max(sent, 0);

    __atomic_fetch_add(&s->requests[kind][st], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->bytes, (uint64_t) sent, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->duration_ms_sum[kind], (uint64_t) ms,
                       __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->duration[kind][cl], 1, __ATOMIC_RELAXED);

    return NGX_OK;
}


static ngx_table_elt_t *
ngx_http_hereproxy_push_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key = *name;
    h->value = *value;

    return h;
}


/*
 * X-Cache-NGINX on every answer that went through the cache (as the
 * shipped conf's "add_header X-Cache-NGINX $upstream_cache_status
 * always"), and on an answer from the cache the requester's X-Index and
 * X-Request-ID in place of the stored ones: one pass over the response
 * headers for both.
 */
static ngx_int_t
ngx_http_hereproxy_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                      *id;
    ngx_uint_t                      i, st, have_index;
    ngx_list_part_t                *part;
    ngx_table_elt_t                *h;
    ngx_http_hereproxy_ctx_t       *ctx;
    ngx_http_hereproxy_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_hereproxy_module);

    /* Not for subrequests (a background update's), as add_header. */
    if (r != r->main || r->upstream == NULL) {
        return ngx_http_next_header_filter(r);
    }

    st = r->upstream->cache_status;
    if (lcf->status_header && st != 0
        && ngx_http_hereproxy_push_header(r, &ngx_http_hereproxy_x_cache_nginx,
                                          &ngx_http_cache_status[st - 1])
           == NULL)
    {
        return NGX_ERROR;
    }

    /* r->cached: this answer comes from the cache, not from hereproxy. */
    if (!lcf->hit_headers || !r->cached) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_hereproxy_get_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    id = NULL;
    if (ctx->request_id != NULL
        && ngx_http_hereproxy_valid_request_id(&ctx->request_id->value))
    {
        id = &ctx->request_id->value;
    }

    have_index = 0;
    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0) {
            continue;
        }

        if (ngx_http_hereproxy_is(&h[i], &ngx_http_hereproxy_x_index,
                                  "x-index", ngx_http_hereproxy_x_index_hash))
        {
            if (have_index) {
                h[i].hash = 0;          /* any repeat goes */
            } else {
                h[i].value = ctx->indice;
                have_index = 1;
            }

        } else if (ngx_http_hereproxy_is(&h[i],
                                         &ngx_http_hereproxy_x_request_id,
                                         "x-request-id",
                                         ngx_http_hereproxy_x_request_id_hash))
        {
            if (id == NULL) {
                h[i].hash = 0;
            } else {
                h[i].value = *id;
                id = NULL;
            }
        }
    }

    if ((!have_index
         && ngx_http_hereproxy_push_header(r, &ngx_http_hereproxy_x_index,
                                           &ctx->indice)
            == NULL)
        || (id != NULL
            && ngx_http_hereproxy_push_header(r,
                                              &ngx_http_hereproxy_x_request_id,
                                              id)
               == NULL))
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/*
 * As the map's "^([^?]*\?(?:[^&]*&)*?)indice=[A-Za-z0-9_.-]{1,64}(&.*)?$"
 * -> "i:$1$2", default "q:$request_uri": the first parameter that is
 * indice= with a valid value goes, the separators around it stay.
 */
static ngx_int_t
ngx_http_hereproxy_key_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char     *start, *end, *p, *next, *key;
    ngx_str_t   value;

    start = r->unparsed_uri.data;
    end = start + r->unparsed_uri.len;
    p = start ? memchr(start, '?', end - start) : NULL;
    next = NULL;

    if (p != NULL) {
        for (p++; p < end; p = next + 1) {
            next = memchr(p, '&', end - p);
            if (next == NULL) {
                next = end;
            }

            if (next - p > 7 && ngx_strncmp(p, "indice=", 7) == 0) {
                value.data = p + 7;
                value.len = next - value.data;
                if (ngx_http_hereproxy_valid_indice(&value)) {
                    break;
                }
            }

            if (next == end) {
                p = end;
                break;
            }
        }
    }

    key = ngx_pnalloc(r->pool, 2 + (end - start));
    if (key == NULL) {
        return NGX_ERROR;
    }

    if (p != NULL && p < end) {
        key[0] = 'i';
        v->len = 2 + (p - start) + (end - next);
        ngx_memcpy(ngx_cpymem(key + 2, start, p - start), next, end - next);

    } else {
        key[0] = 'q';
        v->len = 2 + (end - start);
        ngx_memcpy(key + 2, start, end - start);
    }

    key[1] = ':';
    v->data = key;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_hereproxy_bypass_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_hereproxy_ctx_t  *ctx;

    ctx = ngx_http_hereproxy_get_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    v->data = (u_char *) (ctx->bypass ? "1" : "0");
    v->len = 1;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_hereproxy_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    static ngx_str_t  key = ngx_string("hereproxy_cache_key");
    static ngx_str_t  bypass = ngx_string("hereproxy_cache_bypass");

    var = ngx_http_add_variable(cf, &key, 0);
    if (var == NULL) {
        return NGX_ERROR;
    }
    var->get_handler = ngx_http_hereproxy_key_variable;

    var = ngx_http_add_variable(cf, &bypass, 0);
    if (var == NULL) {
        return NGX_ERROR;
    }
    var->get_handler = ngx_http_hereproxy_bypass_variable;

    return NGX_OK;
}


static void
ngx_http_hereproxy_unmap(void *data)
{
    ngx_http_hereproxy_main_conf_t  *mcf = data;

    if (mcf->header != NULL) {
        munmap(mcf->header, mcf->size);
        mcf->header = NULL;
    }
}


/*
 * Open (or create, mode 0644) the counters file and map it. A file of
 * another layout or size is not touched: NGINX refuses to start, saying
 * why, rather than scribble over it.
 */
static char *
ngx_http_hereproxy_hits_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_hereproxy_main_conf_t *mcf = conf;

    int                      fd;
    void                    *p;
    ngx_str_t               *value;
    ngx_int_t                n;
    ngx_file_info_t          fi;
    ngx_pool_cleanup_t      *cln;
    struct nginxhits_header *h;

    if (mcf->path.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    mcf->path = value[1];
    mcf->nslots = NGINXHITS_DEFAULT_SLOTS;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "slots=", 6) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
        n = ngx_atoi(value[2].data + 6, value[2].len - 6);
        if (n < 2 || n > NGINXHITS_MAX_SLOTS) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\": slots must be 2 to %d",
                               &value[2], NGINXHITS_MAX_SLOTS);
            return NGX_CONF_ERROR;
        }
        mcf->nslots = (ngx_uint_t) n;
    }

    if (ngx_conf_full_name(cf->cycle, &mcf->path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    mcf->size = NGINXHITS_FILE_SIZE(mcf->nslots);

    fd = open((char *) mcf->path.data, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "hereproxy_hits_file: cannot open \"%V\"",
                           &mcf->path);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "hereproxy_hits_file: cannot stat \"%V\"",
                           &mcf->path);
        close(fd);
        return NGX_CONF_ERROR;
    }

    /* New (empty) files are sized; ftruncate fills them with zeros. */
    if (ngx_file_size(&fi) == 0 && ftruncate(fd, (off_t) mcf->size) == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "hereproxy_hits_file: cannot size \"%V\"",
                           &mcf->path);
        close(fd);
        return NGX_CONF_ERROR;
    }

    if (ngx_file_size(&fi) != 0 && (size_t) ngx_file_size(&fi) != mcf->size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "hereproxy_hits_file: \"%V\" has %O bytes, not "
                           "the %uz of %ui slots: remove it, or give its "
                           "slots=", &mcf->path, ngx_file_size(&fi),
                           mcf->size, mcf->nslots);
        close(fd);
        return NGX_CONF_ERROR;
    }

    p = mmap(NULL, mcf->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);

    if (p == MAP_FAILED) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "hereproxy_hits_file: cannot map \"%V\"",
                           &mcf->path);
        return NGX_CONF_ERROR;
    }

    h = p;

    if (h->magic[0] == '\0') {
        /* Fresh: slot 0 first, then the header that makes it valid. */
        struct nginxhits_slot *other = ngx_http_hereproxy_slot(h, 0);

        ngx_memcpy(other->name, NGINXHITS_OTHER, sizeof(NGINXHITS_OTHER));
        other->len = sizeof(NGINXHITS_OTHER) - 1;
        other->ready = 1;
        h->version = NGINXHITS_VERSION;
        h->slot_size = sizeof(struct nginxhits_slot);
        h->nslots = (uint32_t) mcf->nslots;
        h->used = 1;
        __atomic_thread_fence(__ATOMIC_RELEASE);
        ngx_memcpy(h->magic, NGINXHITS_MAGIC, 8);

    } else if (ngx_memcmp(h->magic, NGINXHITS_MAGIC, 8) != 0
               || h->version != NGINXHITS_VERSION
               || h->slot_size != sizeof(struct nginxhits_slot)
               || h->nslots != mcf->nslots)
    {
        munmap(p, mcf->size);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "hereproxy_hits_file: \"%V\" is not a counters "
                           "file of this layout: remove it", &mcf->path);
        return NGX_CONF_ERROR;
    }

    mcf->header = h;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }
    cln->handler = ngx_http_hereproxy_unmap;
    cln->data = mcf;

    return NGX_CONF_OK;
}


/* Names in the order of hereproxy_indices' binary search. */
static int ngx_libc_cdecl
ngx_http_hereproxy_cmp_names(const void *one, const void *two)
{
    const ngx_str_t  *a = one, *b = two;

    if (a->len != b->len) {
        return a->len < b->len ? -1 : 1;
    }

    return ngx_memcmp(a->data, b->data, a->len);
}


/* Whether hereproxy_indices lists name (exactly: indices keep their case). */
static ngx_int_t
ngx_http_hereproxy_listed(ngx_array_t *list, ngx_str_t *name)
{
    ngx_int_t   c;
    ngx_str_t  *names;
    ngx_uint_t  lo, hi, mid;

    names = list->elts;
    lo = 0;
    hi = list->nelts;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = ngx_http_hereproxy_cmp_names(name, &names[mid]);
        if (c == 0) {
            return 1;
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }

    return 0;
}


/*
 * hereproxy_indices NAME ...: the indices NGINX's cache may answer for,
 * "-" for requests without one; the others bypass it and reach
 * hereproxy, which refuses those HEREPROXY_INDICES does not list. Not an
 * NGINX hash: those fold case, and hereproxy's indices do not.
 */
static char *
ngx_http_hereproxy_indices(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_hereproxy_loc_conf_t *lcf = conf;

    ngx_str_t   *value, *name;
    ngx_uint_t   i;

    if (lcf->indices != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    lcf->indices = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                    sizeof(ngx_str_t));
    if (lcf->indices == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (!ngx_http_hereproxy_valid_indice(&value[i])
            && !(value[i].len == 1 && value[i].data[0] == '-'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid indice \"%V\": 1 to 64 of "
                               "A-Z a-z 0-9 _ . -, or \"-\" for none",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        name = ngx_array_push(lcf->indices);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }
        *name = value[i];
    }

    ngx_qsort(lcf->indices->elts, lcf->indices->nelts, sizeof(ngx_str_t),
              ngx_http_hereproxy_cmp_names);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_hereproxy_init_process(ngx_cycle_t *cycle)
{
    ngx_http_hereproxy_main_conf_t  *mcf;

    if (ngx_http_cycle_get_module_main_conf(cycle, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_hereproxy_module);
    if (mcf == NULL || mcf->header == NULL) {
        return NGX_OK;
    }

    /*
     * A power of two at least four times the slots: the file's names take
     * a quarter at most, the "_other" ones another, so probes end.
     */
    ngx_http_hereproxy_index_size = 1;
    while (ngx_http_hereproxy_index_size < 4 * mcf->nslots) {
        ngx_http_hereproxy_index_size <<= 1;
    }

    ngx_http_hereproxy_index = ngx_calloc(ngx_http_hereproxy_index_size
                                          * sizeof(ngx_http_hereproxy_entry_t),
                                          cycle->log);

    /* Without it every hit counts as "_other": better than no NGINX. */
    return NGX_OK;
}


static void *
ngx_http_hereproxy_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_hereproxy_main_conf_t));
}


static void *
ngx_http_hereproxy_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_hereproxy_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_hereproxy_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->hits = NGX_CONF_UNSET;
    conf->hit_headers = NGX_CONF_UNSET;
    conf->status_header = NGX_CONF_UNSET;
    conf->indices = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_hereproxy_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_hereproxy_loc_conf_t  *prev = parent;
    ngx_http_hereproxy_loc_conf_t  *conf = child;

    ngx_http_hereproxy_main_conf_t  *mcf;

    ngx_conf_merge_value(conf->hits, prev->hits, 0);
    ngx_conf_merge_value(conf->hit_headers, prev->hit_headers, 0);
    ngx_conf_merge_value(conf->status_header, prev->status_header, 0);
    ngx_conf_merge_ptr_value(conf->indices, prev->indices, NULL);

    if (conf->hits) {
        mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_hereproxy_module);
        if (mcf->path.data == NULL) {
            return "needs \"hereproxy_hits_file\" in the http block";
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_hereproxy_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_hereproxy_count;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_hereproxy_header_filter;

    ngx_http_hereproxy_x_index_hash =
        ngx_hash_key_lc(ngx_http_hereproxy_x_index.data,
                        ngx_http_hereproxy_x_index.len);
    ngx_http_hereproxy_x_request_id_hash =
        ngx_hash_key_lc(ngx_http_hereproxy_x_request_id.data,
                        ngx_http_hereproxy_x_request_id.len);
    ngx_http_hereproxy_x_proxy_token_hash =
        ngx_hash_key_lc(ngx_http_hereproxy_x_proxy_token.data,
                        ngx_http_hereproxy_x_proxy_token.len);

    return NGX_OK;
}
