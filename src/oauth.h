#ifndef HEREPROXY_OAUTH_H
#define HEREPROXY_OAUTH_H

#include <stddef.h>

/*
 * OAuth 1.0a request signing (RFC 5849), as HERE's identity service wants
 * it for a token request: the signature base string (section 3.4.1), the
 * HMAC-SHA1 or HMAC-SHA256 signature over it (3.4.2; HERE takes SHA-256
 * only), and the Authorization header (3.5.1). Pure: the nonce and the
 * timestamp come in as arguments, so that tests can compare the result
 * with other implementations and with the RFC's examples.
 */

enum oauth_method { OAUTH_HMAC_SHA1, OAUTH_HMAC_SHA256 };

/* A request parameter, decoded (as a form or a query string holds it). */
struct oauth_param {
    const char *name;
    const char *value;
};

/* Longest URL and parameter text the signer takes. */
#define OAUTH_TEXT_MAX 8192
/* A base64 HMAC-SHA256 (or SHA-1) signature with its NUL. */
#define OAUTH_SIGNATURE_SIZE 48

/*
 * RFC 3986 percent-encoding as section 3.6 wants it: every byte but
 * ALPHA, DIGIT, '-', '.', '_', '~' as %XX (upper-case hex). Writes into
 * out (size bytes with the NUL). Returns the length, or -1 when out is
 * too small.
 */
long oauth_encode(const char *in, size_t len, char *out, size_t size);

/*
 * The base string URI of url (section 3.4.1.2): scheme and host in lower
 * case, the port only when it is not the scheme's default, the path, no
 * query or fragment. 0, or -1 with err set when url is not an http(s) URL
 * the signer takes (no user information, no fragment).
 */
int oauth_base_uri(
    const char *url, char *out, size_t size, char *err, size_t errlen);

/*
 * The signature base string (section 3.4.1): method (upper case), the
 * base string URI of url, and the normalized parameters: those of url's
 * query (decoded as a form) and params (the oauth_ ones and those of a
 * form body), each name and value encoded, sorted by name then value.
 * Returns a string the caller frees, or NULL with err set.
 */
char *oauth_base_string(const char *method, const char *url,
    const struct oauth_param *params, size_t n, char *err, size_t errlen);

/*
 * The signature (section 3.4.2): the HMAC of base under the key
 * encode(consumer_secret) "&" encode(token_secret) (token_secret NULL:
 * none), in base64, into out (OAUTH_SIGNATURE_SIZE bytes). 0 or -1. The
 * key is wiped from memory after use.
 */
int oauth_signature(enum oauth_method m, const char *base,
    const char *consumer_secret, const char *token_secret, char *out,
    size_t size);

/* What one signed request needs. token and token_secret may be NULL. */
struct oauth_request {
    enum oauth_method method_name; /* signature method */
    const char *http_method;       /* "POST" */
    const char *url;
    const char *consumer_key;
    const char *consumer_secret;
    const char *token;
    const char *token_secret;
    const char *nonce;              /* unique per request */
    const char *timestamp;          /* Unix seconds, decimal */
    const struct oauth_param *body; /* a form body's parameters */
    size_t nbody;
};

/*
 * The Authorization header's value for r: "OAuth " and the oauth_
 * parameters (consumer key, nonce, signature, signature method,
 * timestamp, token when given, version "1.0"), each as name="encoded
 * value", in that order, separated by ", ". Into out (size bytes). 0, or
 * -1 with err set. base, when not NULL, gets the base string signed (the
 * caller frees it), for tests.
 */
int oauth_authorization(const struct oauth_request *r, char *out, size_t size,
    char **base, char *err, size_t errlen);

/*
 * A form body (application/x-www-form-urlencoded) of params, each name
 * and value percent-encoded as above, into out. Returns the length or -1.
 */
long oauth_form(
    const struct oauth_param *params, size_t n, char *out, size_t size);

/*
 * A nonce: len random characters of [A-Za-z0-9] and a NUL into out
 * (len + 1 bytes). 0, or -1 when the system has no random bytes.
 */
int oauth_nonce(char *out, size_t len);

#endif
