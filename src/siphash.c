#include "config.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

#include "siphash.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                               \
    do {                                                                       \
        v0 += v1;                                                              \
        v1 = ROTL(v1, 13);                                                     \
        v1 ^= v0;                                                              \
        v0 = ROTL(v0, 32);                                                     \
        v2 += v3;                                                              \
        v3 = ROTL(v3, 16);                                                     \
        v3 ^= v2;                                                              \
        v0 += v3;                                                              \
        v3 = ROTL(v3, 21);                                                     \
        v3 ^= v0;                                                              \
        v2 += v1;                                                              \
        v1 = ROTL(v1, 17);                                                     \
        v1 ^= v2;                                                              \
        v2 = ROTL(v2, 32);                                                     \
    } while (0)

static uint64_t
load_le64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

/* The reference algorithm with c = 2 compression, d = 4 final rounds. */
static uint64_t
sip24(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    const unsigned char *end = in + len - (len % 8);
    uint64_t m, b = (uint64_t)len << 56;

    for (; in != end; in += 8) {
        m = load_le64(in);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    switch (len & 7) {
    case 7: b |= (uint64_t)in[6] << 48; /* fall through */
    case 6: b |= (uint64_t)in[5] << 40; /* fall through */
    case 5: b |= (uint64_t)in[4] << 32; /* fall through */
    case 4: b |= (uint64_t)in[3] << 24; /* fall through */
    case 3: b |= (uint64_t)in[2] << 16; /* fall through */
    case 2: b |= (uint64_t)in[1] << 8;  /* fall through */
    case 1: b |= (uint64_t)in[0]; break;
    case 0: break;
    }
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t
siphash24(const uint8_t key[SIPHASH_KEY_BYTES], const void *data, size_t len)
{
    return sip24(load_le64(key), load_le64(key + 8), data, len);
}

/* ------------------------------------------------------------ process key */

static struct {
    uint8_t bytes[SIPHASH_KEY_BYTES];
    uint64_t k0, k1;
    int ready;  /* atomic: bytes, k0 and k1 are set */
    int random; /* the bytes came from the system */
} pkey;

static pthread_once_t pkey_once = PTHREAD_ONCE_INIT;

static void
pkey_publish(const uint8_t key[SIPHASH_KEY_BYTES])
{
    memcpy(pkey.bytes, key, SIPHASH_KEY_BYTES);
    pkey.k0 = load_le64(pkey.bytes);
    pkey.k1 = load_le64(pkey.bytes + 8);
    __atomic_store_n(&pkey.ready, 1, __ATOMIC_RELEASE);
}

/* Fill buf from getrandom(), else /dev/urandom; 0 or -1. */
static int
random_bytes(uint8_t *buf, size_t len)
{
    size_t got = 0;
    ssize_t n;
    int fd;

    while (got < len) {
        n = getrandom(buf + got, len - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n == -1 && errno != EINTR)
            break;
    }
    if (got == len)
        return 0;
    if ((fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)) == -1)
        return -1;
    for (got = 0; got < len;) {
        n = read(fd, buf + got, len - got);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0 || errno != EINTR)
            break;
    }
    close(fd);
    return got == len ? 0 : -1;
}

static void
pkey_init(void)
{
    uint8_t key[SIPHASH_KEY_BYTES];
    struct timespec ts;
    uint64_t a, b;

    if (__atomic_load_n(&pkey.ready, __ATOMIC_ACQUIRE))
        return; /* set by siphash_set_process_key */
    if (random_bytes(key, sizeof(key)) == 0) {
        pkey.random = 1;
    } else {
        /* Better than a fixed key; siphash_process_init reports it. */
        clock_gettime(CLOCK_REALTIME, &ts);
        a = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        b = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)getpid() ^
            (uint64_t)(uintptr_t)&pkey;
        memcpy(key, &a, 8);
        memcpy(key + 8, &b, 8);
    }
    pkey_publish(key);
}

int
siphash_process_init(void)
{
    pthread_once(&pkey_once, pkey_init);
    return pkey.random ? 0 : -1;
}

const uint8_t *
siphash_process_key(void)
{
    if (!__atomic_load_n(&pkey.ready, __ATOMIC_ACQUIRE))
        pthread_once(&pkey_once, pkey_init);
    return pkey.bytes;
}

void
siphash_set_process_key(const uint8_t key[SIPHASH_KEY_BYTES])
{
    pkey.random = 1;
    pkey_publish(key);
}

uint64_t
siphash_keyed(const void *data, size_t len)
{
    if (!__atomic_load_n(&pkey.ready, __ATOMIC_ACQUIRE))
        pthread_once(&pkey_once, pkey_init);
    return sip24(pkey.k0, pkey.k1, data, len);
}
