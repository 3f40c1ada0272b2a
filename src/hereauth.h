#ifndef HEREPROXY_HEREAUTH_H
#define HEREPROXY_HEREAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "settings.h"

/*
 * How the proxy proves itself to HERE, for the whole process: an API key
 * (HERE_API_KEY, HERE_API_KEY_FILE) sent as apiKey, or HERE platform
 * OAuth credentials (HERE_CREDENTIALS_FILE) traded for a bearer token that
 * goes in the Authorization header.
 *
 * One thread, the renewer, asks the token endpoint for every token: at
 * start, when 80% of a token's lifetime has passed, when HERE refused one
 * (401), when the credentials changed; failures are retried with capped
 * backoff (Retry-After honoured). Transfers take the token in force and
 * never ask for one themselves, so however many run at once, there is one
 * token request at a time. Without a usable token a transfer waits while
 * a request is under way, and fails at once when the last one failed.
 *
 * A reload (SIGHUP) hands in the new settings: a new key or new
 * credentials apply to the attempts that start afterwards; attempts under
 * way finish with what they took. New credentials are used as soon as
 * their first token arrives; until then the previous credential stays.
 *
 * The key, the secret and the tokens appear in no log line or metric;
 * what the token endpoint answers is checked (size, JSON, the token's
 * characters, a lifetime within bounds) before anything of it is used.
 */

/* The longest token taken (HERE's are JWTs of one to two KiB). */
#define HEREAUTH_TOKEN_MAX 4096
/* The largest answer read from the token endpoint. */
#define HEREAUTH_ANSWER_MAX 16384
/* Token lifetimes taken, in seconds (HERE gives 86399). */
#define HEREAUTH_LIFETIME_MIN_S 5
#define HEREAUTH_LIFETIME_MAX_S (7 * 86400)

enum hereauth_mode { HEREAUTH_KEY, HEREAUTH_BEARER };

/* What one attempt sends: taken by hereauth_take, handed back on a 401. */
struct hereauth_ticket {
    enum hereauth_mode mode;
    uint64_t gen; /* which key or token: one number per process */
    char value[HEREAUTH_TOKEN_MAX + 1]; /* the key, or the token */
};

enum hereauth_state {
    HEREAUTH_READY,      /* the ticket is filled */
    HEREAUTH_WAIT,       /* no token yet: one is being asked for */
    HEREAUTH_UNAVAILABLE /* no token, and the last request failed */
};

/*
 * How token requests ended, for hereproxy_here_token_renewals_total:
 * one list drives the enum and the labels.
 */
/* clang-format off */
#define HEREAUTH_OUTCOME_LIST(X)                                             \
    X(OK, "ok")                     /* a token */                            \
    X(REFUSED, "refused")           /* 401 or 403: the credentials */        \
    X(HTTP_ERROR, "http_error")     /* any other status */                   \
    X(UNREACHABLE, "unreachable")   /* connect, TLS, timeout, reset */       \
    X(BAD_RESPONSE, "bad_response") /* a 200 without a usable token */
/* clang-format on */

/* clang-format off */
enum hereauth_outcome {
#define HEREAUTH_ENUM(id, name) HEREAUTH_##id,
    HEREAUTH_OUTCOME_LIST(HEREAUTH_ENUM)
#undef HEREAUTH_ENUM
    HEREAUTH_NOUTCOME
};
/* clang-format on */

const char *hereauth_outcome_name(enum hereauth_outcome o);

struct hereauth_stats {
    int bearer;          /* 1: OAuth credentials, 0: an API key */
    int token_valid;     /* 1: a token transfers may use now */
    double token_expiry; /* Unix seconds the token expires; 0: none */
    uint64_t renewals[HEREAUTH_NOUTCOME];
    uint64_t refused; /* tokens HERE answered 401 to, renewed for it */
    char why[192];    /* when there is no token: the last failure */
};

struct hereauth;

/*
 * From the settings (HERE_API_KEY or here_credentials, which must outlive
 * the object, and the restart-only HERE_CA_FILE and timeouts), and start
 * the renewer. NULL with err set on failure.
 */
struct hereauth *hereauth_new(
    const struct settings *cfg, char *err, size_t errlen);

/* Stop the renewer (ending a request under way) and free. NULL: nothing. */
void hereauth_free(struct hereauth *a);

/*
 * A reload: take the key or credentials of cfg (which must outlive the
 * object). Writes what changed ("here_api_key", "here_credentials", or
 * "") into what.
 */
void hereauth_update(
    struct hereauth *a, const struct settings *cfg, char *what, size_t len);

/*
 * The credential for an attempt starting now, into t. HEREAUTH_READY, or
 * WAIT/UNAVAILABLE without one (why, when not NULL, says why in words
 * for a client).
 */
enum hereauth_state hereauth_take(
    struct hereauth *a, struct hereauth_ticket *t, char *why, size_t whylen);

/*
 * HERE answered 401 to an attempt that sent t. Returns 1 when another
 * attempt may do better: a newer key or token is there, or this token is
 * dropped and a new one asked for (at most once per 5 seconds: HERE
 * refusing fresh tokens is not about the token); else 0.
 */
int hereauth_refused(struct hereauth *a, const struct hereauth_ticket *t);

void hereauth_stats(struct hereauth *a, struct hereauth_stats *out);

/*
 * The token endpoint's answer (len bytes, untrusted): a JSON object with
 * accessToken (or access_token) of [A-Za-z0-9-._~+/] and trailing '='
 * (RFC 6750's b64token, at most size - 1 bytes), tokenType (token_type)
 * "bearer", and expiresIn (expires_in) a whole number of seconds within
 * HEREAUTH_LIFETIME_MIN_S..MAX_S. Returns 0 with the token in token and
 * the lifetime in *lifetime_s, or -1 with err set (never quoting the
 * token). Pure, for tests.
 */
int hereauth_parse_answer(const char *body, size_t len, char *token,
    size_t size, long *lifetime_s, char *err, size_t errlen);

/* When a token of lifetime_s issued at issued_ms is renewed: at 80%. */
int64_t hereauth_renew_at_ms(int64_t issued_ms, long lifetime_s);

#endif
