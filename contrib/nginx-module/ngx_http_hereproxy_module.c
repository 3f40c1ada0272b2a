/*
 * ngx_http_hereproxy_module: what hereproxy's NGINX cache layer needs from
 * NGINX, done in C instead of an access log line and header maps.
 *
 *   hereproxy_hits_file PATH [slots=N];   (http)
 *   hereproxy_hits on|off;                (http, server, location)
 *   hereproxy_hit_headers on|off;         (http, server, location)
 *
 * hereproxy_hits counts each request the cache answered (status HIT,
 * STALE or UPDATING) per indice in PATH, a file mapped shared by every
 * worker and read by hereproxy (NGINX_HITS_FILE): a few atomic adds per
 * hit, no write, no syscall. The layout is src/nginx/nginxhits_format.h.
 *
 * hereproxy_hit_headers gives a cached answer the requester's X-Index (its
 * indice, "-" without one) and X-Request-ID (its own when hereproxy would
 * take it, else none) in place of those stored with the entry, which are
 * the request's that filled it.
 *
 * $hereproxy_cache_key is the shipped conf's $hereproxy_cache_target map
 * without a regular expression: "i:" and the request target without its
 * first plain, valid indice= parameter, else "q:" and the whole target.
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
} ngx_http_hereproxy_loc_conf_t;

static ngx_int_t ngx_http_hereproxy_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_hereproxy_init(ngx_conf_t *cf);
static void *ngx_http_hereproxy_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_hereproxy_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_hereproxy_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_hereproxy_hits_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_hereproxy_init_process(ngx_cycle_t *cycle);

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
    ngx_str_t                        indice;
    ngx_uint_t                       kind, st, cl, status;
    ngx_msec_int_t                   ms;
    ngx_time_t                      *tp;
    struct nginxhits_slot           *s;
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
    if (mcf->header == NULL) {
        return NGX_OK;
    }

    if (ngx_http_arg(r, (u_char *) "indice", 6, &indice) != NGX_OK
        || !ngx_http_hereproxy_valid_indice(&indice))
    {
        ngx_str_set(&indice, "-");
    }

    s = ngx_http_hereproxy_find(mcf->header, &indice);

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


/* Set header name to value, adding it when absent; value NULL removes it. */
static ngx_int_t
ngx_http_hereproxy_set_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

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

        if (h[i].hash == 0 || h[i].key.len != name->len
            || ngx_strncasecmp(h[i].key.data, name->data, name->len) != 0)
        {
            continue;
        }

        if (value == NULL) {
            h[i].hash = 0;
        } else {
            h[i].value = *value;
            value = NULL;           /* any repeat goes */
        }
    }

    if (value == NULL) {
        return NGX_OK;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key = *name;
    h->value = *value;

    return NGX_OK;
}


/* The requester's X-Request-ID if hereproxy would take it: 1 to 128 of
 * A-Z a-z 0-9 . _ : - */
static ngx_int_t
ngx_http_hereproxy_request_id(ngx_http_request_t *r, ngx_str_t *id)
{
    u_char            c;
    size_t            j;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("X-Request-ID") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Request-ID",
                               sizeof("X-Request-ID") - 1) == 0)
        {
            break;
        }
    }

    if (h[i].value.len < 1 || h[i].value.len > 128) {
        return 0;
    }

    for (j = 0; j < h[i].value.len; j++) {
        c = h[i].value.data[j];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':'
              || c == '-'))
        {
            return 0;
        }
    }

    *id = h[i].value;
    return 1;
}


static ngx_int_t
ngx_http_hereproxy_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                       indice, id;
    ngx_http_hereproxy_loc_conf_t  *lcf;

    static ngx_str_t  x_index = ngx_string("X-Index");
    static ngx_str_t  x_request_id = ngx_string("X-Request-ID");

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_hereproxy_module);

    /* r->cached: this answer comes from the cache, not from hereproxy. */
    if (!lcf->hit_headers || !r->cached || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    /* Only valid indices get here with the shipped bypass map; anything
     * else (another configuration) is "-", never a raw value. */
    if (ngx_http_arg(r, (u_char *) "indice", 6, &indice) != NGX_OK
        || !ngx_http_hereproxy_valid_indice(&indice))
    {
        ngx_str_set(&indice, "-");
    }

    if (ngx_http_hereproxy_set_header(r, &x_index, &indice) != NGX_OK
        || ngx_http_hereproxy_set_header(r, &x_request_id,
               ngx_http_hereproxy_request_id(r, &id) ? &id : NULL)
           != NGX_OK)
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
    p = start ? ngx_strlchr(start, end, '?') : NULL;
    next = NULL;

    if (p != NULL) {
        for (p++; p < end; p = next + 1) {
            next = ngx_strlchr(p, end, '&');
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
ngx_http_hereproxy_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    static ngx_str_t  name = ngx_string("hereproxy_cache_key");

    var = ngx_http_add_variable(cf, &name, 0);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_hereproxy_key_variable;

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

    return NGX_OK;
}
