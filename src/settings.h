#ifndef HEREPROXY_SETTINGS_H
#define HEREPROXY_SETTINGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "ratelimit.h"
#include "request.h"
#include "tokens.h"

struct acl;
struct here_credentials;

/*
 * A list of names read from a comma list, sorted for a binary search:
 * índices, or CORS origins. any: the list was "*" (origins).
 */
struct name_list {
    int any;
    size_t n;
    char **names;
};

/* 1 when name is in the list (or the list is "*"). */
int name_list_has(const struct name_list *l, const char *name);

/*
 * Every setting, once: name, member, kind, default, lower and upper bound
 * (for numbers), and whether a reload (SIGHUP) applies it (RELOAD) or only
 * a restart does (RESTART). The table drives defaults, parsing,
 * validation, reloads and the --check-config dump. Secret settings are
 * never printed.
 */
/* clang-format off */
#define SETTINGS_LIST(X)                                                     \
    X(HERE_API_KEY, here_api_key, CFG_SECRET, "", 0, 0, RELOAD)              \
    X(HERE_CREDENTIALS_FILE, here_credentials_file, CFG_STR, "", 0, 0,       \
        RELOAD)                                                              \
    X(HERE_BASE_URL, here_base_url, CFG_URL, "https://maps.hereapi.com/v3",  \
        0, 0, RESTART)                                                       \
    X(HERE_CA_FILE, here_ca_file, CFG_STR, "", 0, 0, RESTART)                \
    X(HERE_CONNECT_TIMEOUT_MS, here_connect_timeout_ms, CFG_LONG, "5000",    \
        1, 600000, RESTART)                                                  \
    X(HERE_TIMEOUT_MS, here_timeout_ms, CFG_LONG, "30000",                   \
        1, 3600000, RESTART)                                                 \
    X(HERE_ATTEMPT_TIMEOUT_MS, here_attempt_timeout_ms, CFG_LONG, "0",       \
        0, 3600000, RESTART)                                                 \
    X(HERE_BUFFER_MAX_BYTES, here_buffer_max_bytes, CFG_SIZE, "65536",       \
        0, 0, RESTART)                                                       \
    X(HERE_ALLOW_LOGISTICS, here_allow_logistics, CFG_BOOL, "0",             \
        0, 1, RESTART)                                                       \
    X(HERE_STYLES, here_styles, CFG_STYLES, REQUEST_STYLES_DEFAULT,          \
        0, 0, RELOAD)                                                        \
    X(HERE_RETRIES, here_retries, CFG_LONG, "3", 1, 10, RESTART)             \
    X(HERE_RETRY_BASE_MS, here_retry_base_ms, CFG_LONG, "100",               \
        0, 60000, RESTART)                                                   \
    X(HERE_RETRY_MAX_MS, here_retry_max_ms, CFG_LONG, "2000",                \
        0, 600000, RESTART)                                                  \
    X(HERE_MAX_INFLIGHT, here_max_inflight, CFG_LONG, "64",                  \
        1, 100000, RESTART)                                                  \
    X(HERE_QUEUE_TIMEOUT_MS, here_queue_timeout_ms, CFG_LONG, "2000",        \
        1, 600000, RESTART)                                                  \
    X(HERE_MAX_CONNECTIONS, here_max_connections, CFG_LONG, "0",             \
        0, 100000, RESTART)                                                  \
    X(HERE_BREAKER_THRESHOLD, here_breaker_threshold, CFG_LONG, "5",         \
        0, 100000, RESTART)                                                  \
    X(HERE_BREAKER_COOLDOWN_MS, here_breaker_cooldown_ms, CFG_LONG, "10000", \
        1, 3600000, RESTART)                                                 \
    X(HEREPROXY_THREADS, threads, CFG_LONG, "64", 1, 4096, RESTART)          \
    X(HEREPROXY_LISTEN, listen, CFG_STR, "", 0, 0, RESTART)                  \
    X(HEREPROXY_WRITE_TIMEOUT_MS, write_timeout_ms, CFG_LONG, "30000",       \
        1, 3600000, RESTART)                                                 \
    X(HEREPROXY_IDLE_RELEASE_MS, idle_release_ms, CFG_LONG, "100",           \
        0, 3600000, RELOAD)                                                  \
    X(HEREPROXY_CORS_ORIGINS, cors_origins, CFG_ORIGINS, "*", 0, 0, RELOAD)  \
    X(HEREPROXY_CLIENT_TOKENS, client_tokens, CFG_TOKENS, "", 0, 0, RELOAD)  \
    X(HEREPROXY_INDICES, indices, CFG_INDICES, "", 0, 0, RELOAD)             \
    X(HEREPROXY_ADMIN_TOKEN, admin_token, CFG_SECRET, "", 0, 0, RELOAD)      \
    X(HEREPROXY_ZMAX, zmax, CFG_LONG, "20", 0, 22, RESTART)                  \
    X(HEREPROXY_PUBLIC_URL, public_url, CFG_PUBLIC_URL, "", 0, 0, RELOAD)    \
    X(SHUTDOWN_GRACE_MS, shutdown_grace_ms, CFG_LONG, "10000",               \
        0, 600000, RELOAD)                                                   \
    X(NGINX_LOG_FILE, nginx_log_file, CFG_STR, "", 0, 0, RESTART)            \
    X(NGINX_HITS_FILE, nginx_hits_file, CFG_STR, "", 0, 0, RESTART)          \
    X(CACHE_MAXSIZE, cache_maxsize, CFG_LONG, "50000",                       \
        0, 100000000, RESTART)                                               \
    X(CACHE_MAXBYTES, cache_maxbytes, CFG_SIZE, "268435456", 0, 0, RESTART)  \
    X(CACHE_TTL_DEFAULT, cache_ttl_default_s, CFG_LONG, "3600",              \
        0, 31536000, RELOAD)                                                 \
    X(CACHE_TTL_CAP, cache_ttl_cap_s, CFG_LONG, "86400",                     \
        0, 31536000, RELOAD)                                                 \
    X(CACHE_META_TTL, cache_meta_ttl_s, CFG_LONG, "3600",                    \
        0, 31536000, RELOAD)                                                 \
    X(CACHE_STALE_TTL, cache_stale_ttl_s, CFG_LONG, "86400",                 \
        0, 31536000, RELOAD)                                                 \
    X(CACHE_NEGATIVE_TTL, cache_negative_ttl_s, CFG_LONG, "60",              \
        0, 86400, RELOAD)                                                    \
    X(CACHE_COALESCE_WAIT_MS, cache_coalesce_wait_ms, CFG_LONG, "5000",      \
        0, 600000, RELOAD)                                                   \
    X(MEMCACHED_SERVERS, memcached_servers, CFG_SERVERS, "", 0, 0, RESTART)  \
    X(CACHE_SECRET, cache_secret, CFG_SECRET, "", 0, 0, RESTART)             \
    X(UPSTREAM_MAX_BYTES, upstream_max_bytes, CFG_SIZE, "8388608",           \
        1024, 0, RESTART)                                                    \
    X(RATE_LIMIT_INDEX, rate_limit_index, CFG_RATE, "off", 0, 0, RELOAD)     \
    X(RATE_LIMIT_INDEX_OVERRIDES, rate_limit_index_overrides, CFG_RATES, "", \
        0, 0, RELOAD)                                                        \
    X(RATE_LIMIT_IP, rate_limit_ip, CFG_RATE, "off", 0, 0, RELOAD)           \
    X(RATE_LIMIT_IPV6_PREFIX, rate_limit_ipv6_prefix, CFG_LONG, "64",        \
        1, 128, RELOAD)                                                      \
    X(RATE_TRUSTED_PROXIES, rate_trusted_proxies, CFG_CIDRS, "",             \
        0, 0, RELOAD)                                                        \
    X(RATE_LIMIT_SHARED, rate_limit_shared, CFG_SHARE, "local",              \
        0, 0, RELOAD)                                                        \
    X(QUOTA_UPSTREAM_INDEX, quota_upstream_index, CFG_QUOTA, "off",          \
        0, 0, RELOAD)                                                        \
    X(QUOTA_UPSTREAM_INDEX_OVERRIDES, quota_upstream_index_overrides,        \
        CFG_QUOTAS, "", 0, 0, RELOAD)                                        \
    X(HERE_DAILY_BUDGET, here_daily_budget, CFG_LONG, "0",                   \
        0, 1000000000, RELOAD)                                               \
    X(HERE_DENY_THRESHOLD, here_deny_threshold, CFG_LONG, "3",               \
        0, 100000, RELOAD)                                                   \
    X(HERE_CACHE_ONLY_S, here_cache_only_s, CFG_LONG, "300",                 \
        1, 604800, RELOAD)                                                   \
    X(LOG_LEVEL, log_level, CFG_LEVEL, "INFO", 0, 0, RELOAD)                 \
    X(LOG_FLUSH_MS, log_flush_ms, CFG_LONG, "100", 0, 10000, RESTART)        \
    X(METRICS_MAX_INDICES, metrics_max_indices, CFG_LONG, "1000",            \
        0, 100000, RESTART)                                                  \
    X(METRICS_ALLOW, metrics_allow, CFG_ACL, "loopback", 0, 0, RESTART)
/* clang-format on */

enum setting_kind {
    CFG_STR,        /* any text */
    CFG_SECRET,     /* text never printed */
    CFG_TOKENS,     /* token:indice list, never printed, parsed into a table */
    CFG_INDICES,    /* a comma list of índices, parsed into a sorted list */
    CFG_STYLES,     /* a comma list of style names, parsed into a sorted list */
    CFG_URL,        /* http:// or https:// URL, trailing slash removed */
    CFG_PUBLIC_URL, /* "" or a URL caps.h accepts, trailing slash removed */
    CFG_ORIGINS,    /* "*" or a comma list of http(s) origins */
    CFG_SERVERS,    /* host[:port][,host[:port]...] */
    CFG_LONG,       /* decimal within bounds */
    CFG_BOOL,       /* 0/1, true/false, yes/no, on/off */
    CFG_SIZE,       /* bytes with optional K, M, G */
    CFG_LEVEL,      /* log level */
    CFG_ACL,        /* address list for acl_parse: loopback, any, CIDRs */
    CFG_RATE,       /* rate limit: 100/minute[,burst=N] or off */
    CFG_RATES,      /* per-índice rate limits: name:spec,name:spec */
    CFG_QUOTA,      /* a count per period without burst: 20000/day or off */
    CFG_QUOTAS,     /* per-índice quotas: name:count/period,... */
    CFG_CIDRS,      /* addresses and CIDRs, comma separated */
    CFG_SHARE       /* local or memcached */
};

struct settings {
    char *here_api_key;
    char *here_credentials_file; /* credentials.properties ("" = none) */
    char *here_base_url;
    char *here_ca_file;
    long here_connect_timeout_ms;
    long here_timeout_ms;
    long here_attempt_timeout_ms;   /* 0: settings_attempt_timeout_ms */
    uint64_t here_buffer_max_bytes; /* bodies up to this go out whole */
    long here_allow_logistics;
    char *here_styles; /* the styles accepted, comma list */
    long here_retries;
    long here_retry_base_ms;
    long here_retry_max_ms;
    long here_max_inflight;
    long here_queue_timeout_ms;
    long here_max_connections;
    long here_breaker_threshold;
    long here_breaker_cooldown_ms;
    long threads;
    char *listen;
    long write_timeout_ms; /* SO_SNDTIMEO on the FastCGI connection */
    long idle_release_ms;  /* a kept-alive connection idle this long goes
                              when a new one waits for a worker; 0: never */
    char *cors_origins;
    char *client_tokens; /* token:indice,... ("" = no tokens needed) */
    char *indices;       /* allowed indices, comma list ("" = any) */
    char *admin_token;   /* Bearer token of /admin/ ("" = no admin) */
    long zmax;
    char *public_url; /* the capabilities' base URL ("": the Host's) */
    long shutdown_grace_ms;
    char *nginx_log_file;  /* NGINX's access log to follow ("" = none) */
    char *nginx_hits_file; /* the NGINX module's counters ("" = none) */
    long cache_maxsize;
    uint64_t cache_maxbytes;
    long cache_ttl_default_s;
    long cache_ttl_cap_s;
    long cache_meta_ttl_s;
    long cache_stale_ttl_s;
    long cache_negative_ttl_s;
    long cache_coalesce_wait_ms;
    char *memcached_servers;
    char *cache_secret; /* MAC key of memcached values ("": derived) */
    uint64_t upstream_max_bytes;
    char *rate_limit_index;
    char *rate_limit_index_overrides;
    char *rate_limit_ip;
    long rate_limit_ipv6_prefix; /* bits of an IPv6 client that count */
    char *rate_trusted_proxies;
    char *rate_limit_shared;
    char *quota_upstream_index;
    char *quota_upstream_index_overrides;
    long here_daily_budget;
    long here_deny_threshold;
    long here_cache_only_s;
    long log_level;           /* enum log_level */
    long log_flush_ms;        /* 0: every access line written at once */
    long metrics_max_indices; /* METRICS_DEFAULT_MAX_INDICES */
    char *metrics_allow;      /* checked with acl_parse */

    /*
     * What the text settings above mean, parsed once when they are set
     * (at load and at each reload), so that no request parses a setting
     * again. Owned by the settings; settings_cleanup frees them.
     */
    struct token_table *client_token_table; /* NULL when none */
    struct name_list indices_allowed;       /* HEREPROXY_INDICES */
    struct name_list styles;                /* HERE_STYLES */
    struct name_list origins;               /* HEREPROXY_CORS_ORIGINS */
    struct acl *metrics_acl;                /* METRICS_ALLOW */
    struct acl *trusted_acl;                /* RATE_TRUSTED_PROXIES */
    struct rate_spec index_rate;            /* RATE_LIMIT_INDEX */
    struct rate_spec ip_rate;               /* RATE_LIMIT_IP */
    struct rate_spec quota;                 /* QUOTA_UPSTREAM_INDEX */
    struct rate_overrides index_rates;      /* ..._INDEX_OVERRIDES */
    struct rate_overrides quotas;           /* QUOTA_..._OVERRIDES */
    /* HERE_CREDENTIALS_FILE's content, read by settings_load; NULL: none */
    struct here_credentials *here_credentials;
};

/* Fill every member with its default. Call settings_cleanup later. */
int settings_init(struct settings *cfg);
void settings_cleanup(struct settings *cfg);

/*
 * Set one setting by name from text. Returns 0; -1 with a message in err
 * naming the setting when the value is bad; 1 when the name is unknown.
 */
int settings_set(struct settings *cfg, const char *name, const char *value,
    char *err, size_t errlen);

/*
 * Apply KEY=value lines (blank lines and # comments allowed); origin names
 * the source in messages. Returns 0 or -1 with err set.
 */
int settings_apply_text(struct settings *cfg, const char *text,
    const char *origin, char *err, size_t errlen);

/*
 * Load the whole configuration: defaults, then the file named by
 * HEREPROXY_CONFIG, then the environment (which wins), then
 * HERE_API_KEY_FILE when HERE_API_KEY is still unset, and
 * HEREPROXY_CLIENT_TOKENS_FILE (one token:indice a line) when
 * HEREPROXY_CLIENT_TOKENS is, HEREPROXY_ADMIN_TOKEN_FILE when
 * HEREPROXY_ADMIN_TOKEN is, CACHE_SECRET_FILE when CACHE_SECRET is, and
 * HERE_CREDENTIALS_FILE when set (credentials.h); then validate.
 * envp is a NULL-terminated environment. Returns 0 or -1 with err set.
 */
int settings_load(
    struct settings *cfg, char *const *envp, char *err, size_t errlen);

/*
 * HERE_ATTEMPT_TIMEOUT_MS when set; unset (0), SETTINGS_ATTEMPT_TIMEOUT_MS
 * or HERE_TIMEOUT_MS when that is shorter: a configuration that shortened
 * HERE_TIMEOUT_MS alone keeps working. A value set larger than
 * HERE_TIMEOUT_MS is refused by settings_validate.
 */
#define SETTINGS_ATTEMPT_TIMEOUT_MS 5000
long settings_attempt_timeout_ms(const struct settings *cfg);

/*
 * Cross-setting checks, and the required credential: an API key or HERE
 * platform credentials, not both. Returns 0 or -1.
 */
int settings_validate(const struct settings *cfg, char *err, size_t errlen);

/* Print every setting as KEY=value, secrets as <redacted>. */
void settings_dump(const struct settings *cfg, FILE *fp);

/*
 * The secret HERE credential (the API key, or the credentials' access key
 * secret), from which the fleet's MAC key is derived when CACHE_SECRET is
 * unset (mac_new_fleet); "" when none.
 */
const char *settings_here_secret(const struct settings *cfg);

/* True when a reload (SIGHUP) applies the named setting. */
int settings_reloadable(const char *name);

/*
 * For a reload: copy every setting that needs a restart from cur into next
 * (which then differs from cur only in reloadable settings). Writes the
 * names of the restart-only settings that had changed, comma separated,
 * into changed. Returns how many, or -1 when out of memory.
 */
int settings_keep_restart_only(struct settings *next,
    const struct settings *cur, char *changed, size_t len);

/*
 * With HEREPROXY_CLIENT_TOKENS set: copy the indice of the token into
 * indice (size bytes) and return 1, or return 0 for an unknown token. One
 * keyed-hash lookup in the table parsed when the setting was set, and a
 * constant-time comparison with the one candidate it finds (tokens.h).
 */
int settings_token_indice(
    const struct settings *cfg, const char *token, char *indice, size_t size);

/* True when HEREPROXY_INDICES is unset or lists indice. */
int settings_indice_allowed(const struct settings *cfg, const char *indice);

/* True when the origin is granted by HEREPROXY_CORS_ORIGINS. */
int settings_origin_allowed(const struct settings *cfg, const char *origin);

#endif
