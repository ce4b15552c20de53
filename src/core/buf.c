/*
 * core/buf.c - the growable byte buffer that boot descriptions, argument
 * lists and pool messages are written into, the bounds-checked reader they
 * are parsed with, and the one growable-array helper every module's
 * dynamic arrays use.
 */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

void mproc__buf_put(mproc__buf *b, const void *p, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void mproc__buf_u32(mproc__buf *b, uint32_t v)
{
    mproc__buf_put(b, &v, sizeof v);
}

void mproc__buf_u64(mproc__buf *b, uint64_t v)
{
    mproc__buf_put(b, &v, sizeof v);
}

void mproc__buf_str(mproc__buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    mproc__buf_u64(b, n);
    mproc__buf_put(b, s, n);
}

void mproc__buf_free(mproc__buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

bool mproc__rd_get(mproc__reader *r, void *p, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = true;
        if (p && n)
            memset(p, 0, n);
        return false;
    }
    if (n)
        memcpy(p, r->p + r->pos, n);
    r->pos += n;
    return true;
}

uint32_t mproc__rd_u32(mproc__reader *r)
{
    uint32_t v = 0;
    mproc__rd_get(r, &v, sizeof v);
    return v;
}

uint64_t mproc__rd_u64(mproc__reader *r)
{
    uint64_t v = 0;
    mproc__rd_get(r, &v, sizeof v);
    return v;
}

bool mproc__rd_str(mproc__reader *r, char *out, size_t cap)
{
    uint64_t n = mproc__rd_u64(r);
    if (r->bad || n >= cap || n > r->len - r->pos) {
        r->bad = true;
        if (cap)
            out[0] = 0;
        return false;
    }
    mproc__rd_get(r, out, (size_t)n);
    out[n] = 0;
    return true;
}

int mproc__grow(void *arrp, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    if (elem == 0)
        return -EINVAL; /* realloc(p, 0) would free p */
    size_t n = *cap ? *cap : 8;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return -ENOMEM;
        n *= 2;
    }
    if (n > SIZE_MAX / elem)
        return -ENOMEM;
    void *old, *p;
    memcpy(&old, arrp, sizeof old);
    p = realloc(old, n * elem);
    if (!p)
        return -ENOMEM;
    memcpy(arrp, &p, sizeof p);
    *cap = n;
    return 0;
}
