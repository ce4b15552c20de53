/*
 * conn/auth.c - the authentication handshake of multiprocessing.connection,
 * byte for byte (both of CPython's forms are described in docs/wire.md).
 *
 * The challenger sends "#CHALLENGE#" + M, where M = "{sha256}" + 40 random
 * bytes, and expects "{name}" + HMAC-name(key, M) for an allowed name, or a
 * raw 16-byte HMAC-MD5(key, M) from a 3.6-3.11 peer; it answers "#WELCOME#"
 * or "#FAILURE#". The responder MACs a 20-byte challenge with raw MD5 (the
 * old form), a longer "{name}" one with that digest, and refuses anything
 * shorter. Every handshake read is limited to 256 bytes and the whole
 * exchange to a deadline, so a peer that never speaks (no key on its side)
 * cannot hang us. Digests come from OpenSSL; the comparison is constant-time
 * (CRYPTO_memcmp).
 */
#include "conn/conn_impl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#define CHALLENGE     "#CHALLENGE#"
#define WELCOME       "#WELCOME#"
#define FAILURE       "#FAILURE#"
#define CHALLENGE_LEN 11
#define HANDSHAKE_MAX 256
#define NONCE_LEN     40
#define MAX_NAME_LEN  8 /* "sha3_384": '}' must come within 10 bytes */

/*
 * libcrypto is loaded on first use, not linked: every process that links
 * libmproc (each spawn child, the fork server) would otherwise pay for
 * loading and relocating it (~0.5 ms per exec here), though only
 * processes that authenticate need it. The headers still give the types,
 * and the soname matches the headers' major version.
 */
#define CRYPTO_STR2(x) #x
#define CRYPTO_STR(x)  CRYPTO_STR2(x)
#ifdef OPENSSL_VERSION_MAJOR
#define CRYPTO_SONAME "libcrypto.so." CRYPTO_STR(OPENSSL_VERSION_MAJOR)
#else
#define CRYPTO_SONAME "libcrypto.so.1.1"
#endif

enum { MD_MD5, MD_SHA256, MD_SHA384, MD_SHA3_256, MD_SHA3_384, MD_COUNT };

static struct {
    const EVP_MD *(*md[MD_COUNT])(void);
    unsigned char *(*hmac)(const EVP_MD *, const void *, int,
                           const unsigned char *, size_t, unsigned char *,
                           unsigned int *);
    int (*memcmp)(const volatile void *, const volatile void *, size_t);
    int status; /* 0 loaded, -ELIBACC when libcrypto is not to be had */
} crypto;

static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;

static void crypto_load(void)
{
    static const char *const names[MD_COUNT] = {
        "EVP_md5", "EVP_sha256", "EVP_sha384", "EVP_sha3_256", "EVP_sha3_384"};
    void *h = dlopen(CRYPTO_SONAME, RTLD_NOW | RTLD_LOCAL);
    crypto.status = -ELIBACC;
    if (!h)
        return;
    /* The handle is kept for the life of the process on purpose. */
    for (int i = 0; i < MD_COUNT; i++) {
        void *f = dlsym(h, names[i]);
        if (!f)
            return;
        memcpy(&crypto.md[i], &f, sizeof f);
    }
    void *hm = dlsym(h, "HMAC"), *cm = dlsym(h, "CRYPTO_memcmp");
    if (!hm || !cm)
        return;
    memcpy(&crypto.hmac, &hm, sizeof hm);
    memcpy(&crypto.memcmp, &cm, sizeof cm);
    crypto.status = 0;
}

static int mproc__crypto_ready(void)
{
    pthread_once(&crypto_once, crypto_load);
    return crypto.status;
}

typedef struct digest {
    const char *name;
    int md; /* MD_* */
} digest;

static const digest digests[] = {
    {"md5", MD_MD5},           {"sha256", MD_SHA256},     {"sha384", MD_SHA384},
    {"sha3_256", MD_SHA3_256}, {"sha3_384", MD_SHA3_384},
};

/* Parses a "{name}" prefix of p[0..n). Returns the digest and the prefix
 * length in *plen, or NULL when there is none or the name is not allowed. */
static const digest *parse_prefix(const unsigned char *p, size_t n,
                                  size_t *plen)
{
    if (n < 2 || p[0] != '{')
        return NULL;
    size_t end = 0;
    for (size_t i = 1; i < n && i <= MAX_NAME_LEN + 1; i++)
        if (p[i] == '}') {
            end = i;
            break;
        }
    if (end < 2)
        return NULL;
    for (size_t i = 0; i < MPROC__ARRAY_LEN(digests); i++)
        if (strlen(digests[i].name) == end - 1 &&
            memcmp(digests[i].name, p + 1, end - 1) == 0) {
            *plen = end + 1;
            return &digests[i];
        }
    return NULL;
}

/* HMAC-d(key, msg) into out; returns the digest length or MPROC_EPROTO
 * when OpenSSL cannot provide the digest (a FIPS build without MD5). */
static int mac(const digest *d, const void *key, size_t keylen,
               const unsigned char *msg, size_t n,
               unsigned char out[EVP_MAX_MD_SIZE])
{
    static const unsigned char empty[1];
    unsigned int outlen = 0;
    if (keylen > INT32_MAX)
        return -EINVAL;
    int r = mproc__crypto_ready();
    if (r < 0)
        return r;
    if (!crypto.hmac(crypto.md[d->md](), keylen ? key : empty, (int)keylen, msg,
                     n, out, &outlen))
        return MPROC_EPROTO;
    return (int)outlen;
}

static int send_msg(mproc_conn *c, const void *p, size_t n,
                    const mproc__deadline *dl)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    return mproc__conn_sendv(c, &iov, 1, dl);
}

/* Checks a response to challenge M: 0, MPROC_EAUTH (a well-formed answer
 * with the wrong MAC) or MPROC_EPROTO (not an answer at all). */
static int verify(const void *key, size_t keylen, const unsigned char *m,
                  size_t mlen, const unsigned char *resp, size_t rlen)
{
    unsigned char want[EVP_MAX_MD_SIZE];
    const digest *d = &digests[0]; /* legacy: raw HMAC-MD5, no prefix */
    size_t plen = 0;
    if (rlen != 16 && rlen != 20) {
        d = parse_prefix(resp, rlen, &plen);
        if (!d)
            return MPROC_EPROTO;
    }
    int n = mac(d, key, keylen, m, mlen, want);
    if (n < 0)
        return n;
    if (rlen - plen != (size_t)n ||
        crypto.memcmp(want, resp + plen, (size_t)n) != 0)
        return MPROC_EAUTH;
    return 0;
}

int mproc__conn_deliver(mproc_conn *c, const void *key, size_t keylen,
                        const mproc__deadline *dl)
{
    unsigned char msg[CHALLENGE_LEN + 8 + NONCE_LEN];
    memcpy(msg, CHALLENGE "{sha256}", CHALLENGE_LEN + 8);
    int rc = mproc__random(msg + CHALLENGE_LEN + 8, NONCE_LEN);
    if (rc < 0)
        return rc;
    rc = send_msg(c, msg, sizeof(msg), dl);
    if (rc < 0)
        return rc;
    void *resp = NULL;
    size_t rlen = 0;
    rc = mproc__conn_recv(c, &resp, &rlen, HANDSHAKE_MAX, dl);
    if (rc == MPROC_EPROTO || rc == MPROC_ETOOBIG) {
        /* Garbage or an over-long answer: refused like a wrong digest. */
        (void)send_msg(c, FAILURE, strlen(FAILURE), dl);
        return rc;
    }
    if (rc < 0)
        return rc;
    rc = verify(key, keylen, msg + CHALLENGE_LEN, sizeof(msg) - CHALLENGE_LEN,
                resp, rlen);
    free(resp);
    if (rc == 0)
        return send_msg(c, WELCOME, strlen(WELCOME), dl);
    /* Tell the peer, as CPython does; our own verdict is what counts. */
    (void)send_msg(c, FAILURE, strlen(FAILURE), dl);
    return rc;
}

int mproc__conn_answer(mproc_conn *c, const void *key, size_t keylen,
                       const mproc__deadline *dl)
{
    void *in = NULL;
    size_t n = 0;
    int rc = mproc__conn_recv(c, &in, &n, HANDSHAKE_MAX, dl);
    if (rc < 0)
        return rc;
    const unsigned char *p = in;
    unsigned char out[10 + EVP_MAX_MD_SIZE];
    size_t outlen = 0, plen = 0;
    const digest *d = &digests[0];
    rc = MPROC_EPROTO;
    if (n < CHALLENGE_LEN || memcmp(p, CHALLENGE, CHALLENGE_LEN) != 0)
        goto out_free; /* not a challenge */
    p += CHALLENGE_LEN;
    n -= CHALLENGE_LEN;
    /* CPython refuses challenges under 20 bytes (a weak nonce); 16 and
     * 20 bytes would be the old raw-MD5 form, 20 is the one in use. */
    if (n < 20)
        goto out_free;
    if (n != 20) {
        d = parse_prefix(p, n, &plen);
        if (!d)
            goto out_free;
        memcpy(out, p, plen);
        outlen = plen;
    }
    rc = mac(d, key, keylen, p, n, out + outlen);
    if (rc < 0)
        goto out_free;
    outlen += (size_t)rc;
    free(in);
    in = NULL;
    rc = send_msg(c, out, outlen, dl);
    if (rc < 0)
        return rc;
    rc = mproc__conn_recv(c, &in, &n, HANDSHAKE_MAX, dl);
    if (rc < 0)
        return rc;
    if (n == strlen(WELCOME) && memcmp(in, WELCOME, n) == 0)
        rc = 0;
    else if (n == strlen(FAILURE) && memcmp(in, FAILURE, n) == 0)
        rc = MPROC_EAUTH;
    else
        rc = MPROC_EPROTO;
out_free:
    free(in);
    return rc;
}

int mproc_conn_deliver_challenge(mproc_conn *c, const void *key, size_t keylen,
                                 double timeout)
{
    if (!c || (!key && keylen))
        return -EINVAL;
    mproc__deadline dl = mproc__deadline_from(timeout);
    return mproc__conn_deliver(c, key, keylen, &dl);
}

int mproc_conn_answer_challenge(mproc_conn *c, const void *key, size_t keylen,
                                double timeout)
{
    if (!c || (!key && keylen))
        return -EINVAL;
    mproc__deadline dl = mproc__deadline_from(timeout);
    return mproc__conn_answer(c, key, keylen, &dl);
}
