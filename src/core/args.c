/*
 * core/args.c - argument lists for targets, their wire form for a new
 * process, and the export/import of shareable objects.
 *
 * Wire form of a list (never leaves the machine; host byte order):
 *   u32 count, then per argument u32 type and
 *   INT u64 | DOUBLE 8 bytes | STR/BYTES u64 len + bytes |
 *   OBJECT ref(kind) u32 nfds u64 len + the kind's bytes.
 * fds travel beside the bytes (dup2'd for spawn, SCM_RIGHTS for forkserver)
 * in the order the kinds exported them.
 */
#include "core/core.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- argument lists ---------------------------------------------------- */

typedef struct arg {
    mproc_arg_type type;
    union {
        int64_t i;
        double d;
        struct {
            char *p; /* NUL-terminated for STR and BYTES alike */
            size_t n;
        } b;
        struct {
            const mproc_kind *kind;
            void *obj;
        } o;
    } u;
} arg;

struct mproc_args {
    size_t n, cap;
    arg *v;
    bool imported; /* objects were made by import_fn: free them */
};

mproc_args *mproc_args_new(void)
{
    return calloc(1, sizeof(mproc_args));
}

static void args_release(mproc_args *a, bool free_objects)
{
    for (size_t i = 0; i < a->n; i++) {
        arg *x = &a->v[i];
        if (x->type == MPROC_ARG_STR || x->type == MPROC_ARG_BYTES)
            free(x->u.b.p);
        else if (x->type == MPROC_ARG_OBJECT && free_objects && x->u.o.kind &&
                 x->u.o.kind->free_fn && x->u.o.obj)
            x->u.o.kind->free_fn(x->u.o.obj);
    }
    free(a->v);
    free(a);
}

void mproc_args_free(mproc_args *a)
{
    if (a)
        args_release(a, a->imported);
}

void mproc__args_free_imported(mproc_args *a)
{
    if (a)
        args_release(a, true);
}

static arg *args_push(mproc_args *a)
{
    if (MPROC__GROW(a->v, a->cap, a->n + 1) < 0)
        return NULL;
    arg *x = &a->v[a->n];
    memset(x, 0, sizeof *x);
    return x;
}

int mproc_args_add_int(mproc_args *a, int64_t v)
{
    if (!a)
        return -EINVAL;
    arg *x = args_push(a);
    if (!x)
        return -ENOMEM;
    x->type = MPROC_ARG_INT;
    x->u.i = v;
    a->n++;
    return 0;
}

int mproc_args_add_double(mproc_args *a, double v)
{
    if (!a)
        return -EINVAL;
    arg *x = args_push(a);
    if (!x)
        return -ENOMEM;
    x->type = MPROC_ARG_DOUBLE;
    x->u.d = v;
    a->n++;
    return 0;
}

static int add_blob(mproc_args *a, mproc_arg_type t, const void *p, size_t n)
{
    if (!a || (!p && n > 0))
        return -EINVAL;
    arg *x = args_push(a);
    if (!x)
        return -ENOMEM;
    char *c = malloc(n + 1);
    if (!c)
        return -ENOMEM;
    if (n)
        memcpy(c, p, n);
    c[n] = 0;
    x->type = t;
    x->u.b.p = c;
    x->u.b.n = n;
    a->n++;
    return 0;
}

int mproc_args_add_str(mproc_args *a, const char *s)
{
    if (!s)
        return -EINVAL;
    return add_blob(a, MPROC_ARG_STR, s, strlen(s));
}

int mproc_args_add_bytes(mproc_args *a, const void *p, size_t n)
{
    return add_blob(a, MPROC_ARG_BYTES, p, n);
}

int mproc_args_add_object(mproc_args *a, const mproc_kind *kind, void *obj)
{
    if (!a || !kind || !obj || !kind->export_fn || !kind->import_fn)
        return -EINVAL;
    arg *x = args_push(a);
    if (!x)
        return -ENOMEM;
    x->type = MPROC_ARG_OBJECT;
    x->u.o.kind = kind;
    x->u.o.obj = obj;
    a->n++;
    return 0;
}

mproc_args *mproc_args_of(const char *fmt, ...)
{
    if (!fmt)
        return NULL;
    mproc_args *a = mproc_args_new();
    if (!a)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = 0;
    for (const char *f = fmt; *f && r == 0; f++) {
        switch (*f) {
        case 'i':
            r = mproc_args_add_int(a, va_arg(ap, int));
            break;
        case 'l':
            r = mproc_args_add_int(a, va_arg(ap, int64_t));
            break;
        case 'd':
            r = mproc_args_add_double(a, va_arg(ap, double));
            break;
        case 's':
            r = mproc_args_add_str(a, va_arg(ap, const char *));
            break;
        case 'b': {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            r = mproc_args_add_bytes(a, p, n);
            break;
        }
        case 'o': {
            const mproc_kind *k = va_arg(ap, const mproc_kind *);
            void *o = va_arg(ap, void *);
            r = mproc_args_add_object(a, k, o);
            break;
        }
        default:
            r = -EINVAL;
        }
    }
    va_end(ap);
    if (r < 0) {
        mproc_args_free(a);
        return NULL;
    }
    return a;
}

size_t mproc_args_count(const mproc_args *a)
{
    return a ? a->n : 0;
}

mproc_arg_type mproc_args_type(const mproc_args *a, size_t i)
{
    return a && i < a->n ? a->v[i].type : MPROC_ARG_NONE;
}

static const arg *get(const mproc_args *a, size_t i, mproc_arg_type t)
{
    return a && i < a->n && a->v[i].type == t ? &a->v[i] : NULL;
}

int64_t mproc_args_int(const mproc_args *a, size_t i)
{
    const arg *x = get(a, i, MPROC_ARG_INT);
    return x ? x->u.i : 0;
}

double mproc_args_double(const mproc_args *a, size_t i)
{
    const arg *x = get(a, i, MPROC_ARG_DOUBLE);
    return x ? x->u.d : 0.0;
}

const char *mproc_args_str(const mproc_args *a, size_t i)
{
    const arg *x = get(a, i, MPROC_ARG_STR);
    return x ? x->u.b.p : NULL;
}

const void *mproc_args_bytes(const mproc_args *a, size_t i, size_t *len)
{
    const arg *x = get(a, i, MPROC_ARG_BYTES);
    if (len)
        *len = x ? x->u.b.n : 0;
    return x ? x->u.b.p : NULL;
}

void *mproc_args_object(const mproc_args *a, size_t i, const mproc_kind *kind)
{
    const arg *x = get(a, i, MPROC_ARG_OBJECT);
    return x && x->u.o.kind == kind ? x->u.o.obj : NULL;
}

mproc_args *mproc__args_copy(const mproc_args *a)
{
    mproc_args *c = mproc_args_new();
    if (!c || !a)
        return c;
    for (size_t i = 0; i < a->n; i++) {
        const arg *x = &a->v[i];
        int r = 0;
        switch (x->type) {
        case MPROC_ARG_INT:
            r = mproc_args_add_int(c, x->u.i);
            break;
        case MPROC_ARG_DOUBLE:
            r = mproc_args_add_double(c, x->u.d);
            break;
        case MPROC_ARG_STR:
        case MPROC_ARG_BYTES:
            r = add_blob(c, x->type, x->u.b.p, x->u.b.n);
            break;
        case MPROC_ARG_OBJECT:
            r = mproc_args_add_object(c, x->u.o.kind, x->u.o.obj);
            break;
        default:
            r = -EINVAL;
        }
        if (r < 0) {
            mproc_args_free(c);
            return NULL;
        }
    }
    return c;
}

/* ---- export / import --------------------------------------------------- */

struct mproc_export {
    mproc__buf bytes;
    int *fds;
    size_t *nfds, maxfds, added;
    int err;
};

struct mproc_import {
    mproc__reader bytes;
    int *fds;
    size_t nfds, next;
};

int mproc_export_fd(mproc_export *ex, int fd)
{
    if (!ex || fd < 0)
        return -EINVAL;
    if (*ex->nfds >= ex->maxfds)
        return -EMFILE;
    ex->fds[(*ex->nfds)++] = fd;
    ex->added++;
    return 0;
}

int mproc_export_bytes(mproc_export *ex, const void *p, size_t n)
{
    if (!ex || (!p && n))
        return -EINVAL;
    mproc__buf_put(&ex->bytes, p, n);
    return ex->bytes.oom ? -ENOMEM : 0;
}

int mproc_import_fd(mproc_import *im)
{
    if (!im)
        return -EINVAL;
    if (im->next >= im->nfds)
        return MPROC_EPROTO;
    int fd = im->fds[im->next];
    im->fds[im->next++] = -1;
    return fd;
}

int mproc_import_bytes(mproc_import *im, void *p, size_t n)
{
    if (!im || (!p && n))
        return -EINVAL;
    return mproc__rd_get(&im->bytes, p, n) ? 0 : MPROC_EPROTO;
}

int mproc__args_export(const mproc_args *a, mproc__buf *b, int *fds,
                       size_t *nfds, size_t maxfds)
{
    size_t n = a ? a->n : 0;
    mproc__buf_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        const arg *x = &a->v[i];
        mproc__buf_u32(b, (uint32_t)x->type);
        switch (x->type) {
        case MPROC_ARG_INT:
            mproc__buf_u64(b, (uint64_t)x->u.i);
            break;
        case MPROC_ARG_DOUBLE:
            mproc__buf_put(b, &x->u.d, sizeof x->u.d);
            break;
        case MPROC_ARG_STR:
        case MPROC_ARG_BYTES:
            mproc__buf_u64(b, x->u.b.n);
            mproc__buf_put(b, x->u.b.p, x->u.b.n);
            break;
        case MPROC_ARG_OBJECT: {
            int r = mproc__ref_write(b, x->u.o.kind);
            if (r < 0)
                return r;
            mproc_export ex = {.fds = fds, .nfds = nfds, .maxfds = maxfds};
            r = x->u.o.kind->export_fn(x->u.o.obj, &ex);
            if (r < 0 || ex.bytes.oom) {
                mproc__buf_free(&ex.bytes);
                return r < 0 ? r : -ENOMEM;
            }
            mproc__buf_u32(b, (uint32_t)ex.added);
            mproc__buf_u64(b, ex.bytes.len);
            mproc__buf_put(b, ex.bytes.p, ex.bytes.len);
            mproc__buf_free(&ex.bytes);
            break;
        }
        default:
            return -EINVAL;
        }
    }
    return b->oom ? -ENOMEM : 0;
}

int mproc__args_validate(mproc__reader *r, size_t nfds)
{
    size_t used = 0;
    uint32_t n = mproc__rd_u32(r);
    if (r->bad || n > 1u << 20)
        return MPROC_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = mproc__rd_u32(r);
        uint64_t len;
        switch (t) {
        case MPROC_ARG_INT:
        case MPROC_ARG_DOUBLE:
            (void)mproc__rd_u64(r);
            break;
        case MPROC_ARG_STR:
        case MPROC_ARG_BYTES:
            len = mproc__rd_u64(r);
            if (r->bad || len > r->len - r->pos)
                return MPROC_EPROTO;
            r->pos += (size_t)len;
            break;
        case MPROC_ARG_OBJECT: {
            void *kind;
            int rc = mproc__ref_read(r, &kind);
            if (rc < 0)
                return rc;
            uint32_t k = mproc__rd_u32(r);
            len = mproc__rd_u64(r);
            if (r->bad || k > nfds - used || len > r->len - r->pos)
                return MPROC_EPROTO;
            used += k;
            r->pos += (size_t)len;
            break;
        }
        default:
            return MPROC_EPROTO;
        }
        if (r->bad)
            return MPROC_EPROTO;
    }
    return 0;
}

int mproc__args_import(mproc__reader *r, int *fds, size_t nfds,
                       mproc_args **out)
{
    size_t next = 0;
    int rc = 0;
    mproc_args *a = mproc_args_new();
    if (!a) {
        rc = -ENOMEM;
        goto out_close;
    }
    a->imported = true;
    uint32_t n = mproc__rd_u32(r);
    if (r->bad || n > 1u << 20) {
        rc = MPROC_EPROTO;
        goto out_free;
    }
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        uint32_t t = mproc__rd_u32(r);
        switch (t) {
        case MPROC_ARG_INT:
            rc = mproc_args_add_int(a, (int64_t)mproc__rd_u64(r));
            break;
        case MPROC_ARG_DOUBLE: {
            double d = 0;
            mproc__rd_get(r, &d, sizeof d);
            rc = mproc_args_add_double(a, d);
            break;
        }
        case MPROC_ARG_STR:
        case MPROC_ARG_BYTES: {
            uint64_t len = mproc__rd_u64(r);
            if (r->bad || len > r->len - r->pos) {
                rc = MPROC_EPROTO;
                break;
            }
            rc = add_blob(a, (mproc_arg_type)t, r->p + r->pos, (size_t)len);
            r->pos += (size_t)len;
            break;
        }
        case MPROC_ARG_OBJECT: {
            void *kaddr = NULL;
            rc = mproc__ref_read(r, &kaddr);
            if (rc < 0)
                break;
            const mproc_kind *kind = kaddr;
            uint32_t k = mproc__rd_u32(r);
            uint64_t len = mproc__rd_u64(r);
            if (r->bad || k > nfds - next || len > r->len - r->pos) {
                rc = MPROC_EPROTO;
                break;
            }
            mproc_import im = {.bytes = {.p = r->p + r->pos, .len = len},
                               .fds = fds + next,
                               .nfds = k};
            r->pos += (size_t)len;
            void *obj = NULL;
            rc = kind->import_fn(&im, &obj);
            for (size_t j = 0; j < k; j++) /* fds the kind left alone */
                if (fds[next + j] >= 0) {
                    close(fds[next + j]);
                    fds[next + j] = -1;
                }
            next += k;
            if (rc < 0)
                break;
            if (!obj) {
                rc = MPROC_EPROTO;
                break;
            }
            rc = mproc_args_add_object(a, kind, obj);
            if (rc < 0 && kind->free_fn)
                kind->free_fn(obj);
            break;
        }
        default:
            rc = MPROC_EPROTO;
        }
        if (rc == 0 && r->bad)
            rc = MPROC_EPROTO;
    }
    if (rc == 0) {
        *out = a;
        a = NULL;
    }
out_free:
    mproc__args_free_imported(a);
out_close:
    for (size_t j = next; j < nfds; j++)
        if (fds[j] >= 0) {
            close(fds[j]);
            fds[j] = -1;
        }
    return rc;
}
