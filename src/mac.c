#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "mac.h"

#define KEY_LABEL "hereproxy memcached mac v1"
#define SECRET_LABEL "hereproxy cache secret v1"

struct mac {
    unsigned char key[32];
    pthread_key_t ctx_key; /* each thread's EVP_CIPHER_CTX, keyed once */
};

static void
ctx_free(void *ctx)
{
    EVP_CIPHER_CTX_free(ctx);
}

struct mac *
mac_new(const void *secret, size_t len)
{
    struct mac *m = calloc(1, sizeof(*m));
    unsigned int klen = sizeof(m->key);

    if (m == NULL)
        return NULL;
    if (len == 0 ||
        HMAC(EVP_sha256(), secret, (int)len, (const unsigned char *)KEY_LABEL,
            sizeof(KEY_LABEL) - 1, m->key, &klen) == NULL ||
        pthread_key_create(&m->ctx_key, ctx_free) != 0) {
        OPENSSL_cleanse(m->key, sizeof(m->key));
        free(m);
        return NULL;
    }
    return m;
}

void
mac_free(struct mac *m)
{
    EVP_CIPHER_CTX *ctx;

    if (m == NULL)
        return;
    /* This thread's; the others freed theirs when they exited. */
    if ((ctx = pthread_getspecific(m->ctx_key)) != NULL) {
        pthread_setspecific(m->ctx_key, NULL);
        EVP_CIPHER_CTX_free(ctx);
    }
    pthread_key_delete(m->ctx_key);
    OPENSSL_cleanse(m->key, sizeof(m->key));
    free(m);
}

/* The calling thread's context, keyed: setting the key expands it once. */
static EVP_CIPHER_CTX *
thread_ctx(struct mac *m)
{
    EVP_CIPHER_CTX *ctx = pthread_getspecific(m->ctx_key);

    if (ctx != NULL)
        return ctx;
    if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
        return NULL;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, m->key, NULL) != 1 ||
        pthread_setspecific(m->ctx_key, ctx) != 0) {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int
mac_nonce(unsigned char nonce[MAC_NONCE_LEN])
{
    return RAND_bytes(nonce, MAC_NONCE_LEN) == 1 ? 0 : -1;
}

int
mac_tag(struct mac *m, const unsigned char nonce[MAC_NONCE_LEN],
    const struct iovec *parts, int n, unsigned char tag[MAC_TAG_LEN])
{
    EVP_CIPHER_CTX *ctx = thread_ctx(m);
    unsigned char none[1];
    int i, outl;

    if (ctx == NULL || EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1)
        return -1;
    for (i = 0; i < n; i++)
        if (parts[i].iov_len > 0 &&
            (parts[i].iov_len > INT32_MAX ||
                EVP_EncryptUpdate(ctx, NULL, &outl, parts[i].iov_base,
                    (int)parts[i].iov_len) != 1))
            return -1;
    if (EVP_EncryptFinal_ex(ctx, none, &outl) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, MAC_TAG_LEN, tag) != 1)
        return -1;
    return 0;
}

int
mac_check(struct mac *m, const unsigned char nonce[MAC_NONCE_LEN],
    const struct iovec *parts, int n, const unsigned char tag[MAC_TAG_LEN])
{
    unsigned char want[MAC_TAG_LEN];

    return mac_tag(m, nonce, parts, n, want) == 0 &&
        CRYPTO_memcmp(want, tag, MAC_TAG_LEN) == 0;
}

/* The parts a sealed value's tag covers: key length, key, payload. */
static int
seal_parts(struct iovec parts[3], unsigned char klen[4], const char *key,
    size_t keylen, const void *payload, size_t len)
{
    klen[0] = (unsigned char)(keylen >> 24);
    klen[1] = (unsigned char)(keylen >> 16);
    klen[2] = (unsigned char)(keylen >> 8);
    klen[3] = (unsigned char)keylen;
    parts[0].iov_base = klen;
    parts[0].iov_len = 4;
    parts[1].iov_base = (void *)(uintptr_t)key;
    parts[1].iov_len = keylen;
    parts[2].iov_base = (void *)(uintptr_t)payload;
    parts[2].iov_len = len;
    return 3;
}

size_t
mac_seal(struct mac *m, const char *key, size_t keylen, const void *payload,
    size_t len, void *out, size_t outsize)
{
    unsigned char *o = out, klen[4];
    struct iovec parts[3];
    int n;

    if (outsize < MAC_SEAL_LEN || len > outsize - MAC_SEAL_LEN)
        return 0;
    memmove(o, payload, len);
    n = seal_parts(parts, klen, key, keylen, o, len);
    if (mac_nonce(o + len) != 0 ||
        mac_tag(m, o + len, parts, n, o + len + MAC_NONCE_LEN) != 0)
        return 0;
    return len + MAC_SEAL_LEN;
}

ssize_t
mac_open(struct mac *m, const char *key, size_t keylen, const void *sealed,
    size_t len)
{
    const unsigned char *s = sealed;
    unsigned char klen[4];
    struct iovec parts[3];
    size_t plen;
    int n;

    if (len < MAC_SEAL_LEN)
        return -1;
    plen = len - MAC_SEAL_LEN;
    n = seal_parts(parts, klen, key, keylen, s, plen);
    if (!mac_check(m, s + plen, parts, n, s + plen + MAC_NONCE_LEN))
        return -1;
    return (ssize_t)plen;
}

struct mac *
mac_new_fleet(const char *cache_secret, const char *credential)
{
    unsigned char derived[32];
    unsigned int len = sizeof(derived);
    struct mac *m = NULL;

    if (cache_secret != NULL && *cache_secret != '\0')
        return mac_new(cache_secret, strlen(cache_secret));
    if (credential == NULL || *credential == '\0')
        return NULL;
    if (HMAC(EVP_sha256(), SECRET_LABEL, sizeof(SECRET_LABEL) - 1,
            (const unsigned char *)credential, strlen(credential), derived,
            &len) != NULL)
        m = mac_new(derived, sizeof(derived));
    OPENSSL_cleanse(derived, sizeof(derived));
    return m;
}
