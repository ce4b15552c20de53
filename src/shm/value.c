/*
 * shm/value.c - Value and Array, with and without their lock.
 *
 * A Value or Array is a block of the shared heap (heap.c): the lock first
 * when it has one (MPROC__VLOCK_SIZE bytes), then the elements. The
 * process-local handle records the type, the count and the creator's pid;
 * only the creator gives the block back to the heap, so a fork child or a
 * spawn child freeing its handle never pulls memory from under the others.
 * Element types and their formatting are ctype.c's.
 */
#include "shm/shm_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Value and Array --------------------------------------------------- */

typedef struct shobj {
    mproc__block blk;
    unsigned char *data;
    void *lock; /* NULL: raw */
    int type;
    size_t esize, count;
    pid_t creator;
} shobj;

struct mproc_value {
    shobj o;
};

struct mproc_array {
    shobj o;
};

static int obj_new(shobj **out, size_t handle_size, int type, size_t n,
                   bool lock, const void *init)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    int t = shm__norm_type(type);
    if (!t)
        return -EINVAL;
    size_t es = mproc_ctype_size(t);
    size_t hdr = lock ? MPROC__VLOCK_SIZE : 0;
    if (n > (SIZE_MAX / 4 - hdr) / es)
        return -ENOMEM;
    shobj *o = calloc(1, handle_size);
    if (!o)
        return -ENOMEM;
    int r = mproc__heap_alloc(hdr + es * n, &o->blk);
    if (r < 0) {
        free(o);
        return r;
    }
    if (lock) {
        o->lock = o->blk.p;
        r = mproc__vlock_init(o->lock);
        if (r < 0) {
            mproc__heap_free(&o->blk);
            free(o);
            return r;
        }
    }
    o->data = o->blk.p + hdr;
    o->type = t;
    o->esize = es;
    o->count = n;
    o->creator = getpid();
    if (init && n)
        memcpy(o->data, init, es * n);
    *out = o;
    return 0;
}

/* The locks this thread holds through acquire(), so that a get or set
 * inside acquire/release (the usual `with v.get_lock(): v.value += 1`)
 * skips re-locking: it keeps the critical section short, which is what
 * matters under contention. Only a hint: when the table is full the
 * recursive lock is simply taken again. A fork child starts with an empty
 * table (it holds none of its parent's locks). */
#define HELD_MAX 8
static __thread __attribute__((tls_model("initial-exec"))) struct {
    void *lock[HELD_MAX];
    unsigned depth[HELD_MAX];
    unsigned n;
} held;

static bool held_here(const void *lock)
{
    for (unsigned i = 0; i < held.n; i++)
        if (held.lock[i] == lock)
            return true;
    return false;
}

static void held_push(void *lock)
{
    for (unsigned i = 0; i < held.n; i++)
        if (held.lock[i] == lock) {
            held.depth[i]++;
            return;
        }
    if (held.n < HELD_MAX) {
        held.lock[held.n] = lock;
        held.depth[held.n++] = 1;
    }
}

static void held_pop(void *lock)
{
    for (unsigned i = 0; i < held.n; i++)
        if (held.lock[i] == lock) {
            if (--held.depth[i] == 0) {
                held.n--;
                held.lock[i] = held.lock[held.n];
                held.depth[i] = held.depth[held.n];
            }
            return;
        }
}

static void held_forget(void)
{
    memset(&held, 0, sizeof held);
}

/* A lock still held by the freeing thread is released first: its robust
 * list entry must not outlive the memory (which the heap may hand out
 * again), or the kernel would write into it when the thread exits. */
static void obj_free(shobj *o)
{
    if (!o)
        return;
    if (o->lock) {
        for (int n = mproc_rlock_count(o->lock); n > 0; n--)
            mproc__vlock_release(o->lock);
        while (held_here(o->lock))
            held_pop(o->lock);
    }
    if (o->creator == getpid())
        mproc__heap_free(&o->blk);
    else
        mproc__heap_release(&o->blk);
    free(o);
}

__attribute__((constructor)) static void shm_init(void)
{
    pthread_atfork(NULL, NULL, held_forget);
}

/* Takes the lock for one access; a dead previous holder is no reason to
 * fail a plain get or set. Returns 1 when it took the lock, 0 when none
 * was needed, or an error. */
static int obj_lock(shobj *o)
{
    if (!o->lock || held_here(o->lock))
        return 0;
    int r = mproc__vlock_acquire(o->lock, -1);
    return r == -EOWNERDEAD || r == 0 ? 1 : r;
}

static void obj_unlock(shobj *o, int taken)
{
    if (taken > 0)
        mproc__vlock_release(o->lock);
}

/* Element i is read or written with one relaxed atomic access: readers of
 * a raw object never see a torn value, and a locked object's accesses are
 * ordered by its lock anyway. */
static void load(const shobj *o, size_t i, elem *e)
{
    const unsigned char *p = o->data + i * o->esize;
    const int mo = __ATOMIC_RELAXED;
    e->u64 = 0;
    switch (o->esize) {
    case 1:
        e->u8 = __atomic_load_n((const uint8_t *)p, mo);
        break;
    case 2:
        e->u16 = __atomic_load_n((const uint16_t *)p, mo);
        break;
    case 4:
        e->u32 = __atomic_load_n((const uint32_t *)p, mo);
        break;
    default:
        e->u64 = __atomic_load_n((const uint64_t *)p, mo);
        break;
    }
}

static void store(shobj *o, size_t i, const elem *e)
{
    unsigned char *p = o->data + i * o->esize;
    switch (o->esize) {
    case 1:
        __atomic_store_n((uint8_t *)p, e->u8, __ATOMIC_RELAXED);
        break;
    case 2:
        __atomic_store_n((uint16_t *)p, e->u16, __ATOMIC_RELAXED);
        break;
    case 4:
        __atomic_store_n((uint32_t *)p, e->u32, __ATOMIC_RELAXED);
        break;
    default:
        __atomic_store_n((uint64_t *)p, e->u64, __ATOMIC_RELAXED);
        break;
    }
}

static int get_elem(shobj *o, size_t i, elem *e)
{
    int r = obj_lock(o);
    if (r < 0)
        return r;
    load(o, i, e);
    obj_unlock(o, r);
    return 0;
}

static int put_elem(shobj *o, size_t i, const elem *e)
{
    int r = obj_lock(o);
    if (r < 0)
        return r;
    store(o, i, e);
    obj_unlock(o, r);
    return 0;
}

static int check(shobj *o, size_t i)
{
    if (!o)
        return -EINVAL;
    return i < o->count ? 0 : -ERANGE;
}

static int get_i64(shobj *o, size_t i, int64_t *out)
{
    int r = check(o, i);
    if (r < 0 || !out)
        return r < 0 ? r : -EINVAL;
    if (shm__is_float(o->type))
        return MPROC_ETYPE;
    elem e;
    if ((r = get_elem(o, i, &e)) < 0)
        return r;
    bool neg;
    uint64_t mag;
    int64_t sv;
    shm__elem_int(o->type, &e, &neg, &mag, &sv);
    if (!neg && mag > INT64_MAX)
        return -ERANGE;
    *out = neg ? sv : (int64_t)mag;
    return 0;
}

static int get_u64(shobj *o, size_t i, uint64_t *out)
{
    int r = check(o, i);
    if (r < 0 || !out)
        return r < 0 ? r : -EINVAL;
    if (shm__is_float(o->type))
        return MPROC_ETYPE;
    elem e;
    if ((r = get_elem(o, i, &e)) < 0)
        return r;
    bool neg;
    uint64_t mag;
    int64_t sv;
    shm__elem_int(o->type, &e, &neg, &mag, &sv);
    if (neg)
        return -ERANGE;
    *out = mag;
    return 0;
}

static int get_double(shobj *o, size_t i, double *out)
{
    int r = check(o, i);
    if (r < 0 || !out)
        return r < 0 ? r : -EINVAL;
    elem e;
    if ((r = get_elem(o, i, &e)) < 0)
        return r;
    *out = shm__elem_double(o->type, &e);
    return 0;
}

static int set_i64(shobj *o, size_t i, int64_t x)
{
    int r = check(o, i);
    if (r < 0)
        return r;
    elem e;
    if (o->type == 'f') {
        e.f = (float)x;
    } else if (o->type == 'd') {
        e.d = (double)x;
    } else {
        int64_t lo;
        uint64_t hi;
        shm__int_range(o->type, &lo, &hi);
        if (x < lo || (x >= 0 && (uint64_t)x > hi))
            return -ERANGE;
        shm__elem_from_int(o->type, &e, x, 0, false);
    }
    return put_elem(o, i, &e);
}

static int set_u64(shobj *o, size_t i, uint64_t x)
{
    int r = check(o, i);
    if (r < 0)
        return r;
    elem e;
    if (o->type == 'f') {
        e.f = (float)x;
    } else if (o->type == 'd') {
        e.d = (double)x;
    } else {
        int64_t lo;
        uint64_t hi;
        shm__int_range(o->type, &lo, &hi);
        if (x > hi)
            return -ERANGE;
        shm__elem_from_int(o->type, &e, 0, x, true);
    }
    return put_elem(o, i, &e);
}

static int set_double(shobj *o, size_t i, double x)
{
    int r = check(o, i);
    if (r < 0)
        return r;
    elem e;
    if (o->type == 'f') {
        e.f = (float)x;
        return put_elem(o, i, &e);
    }
    if (o->type == 'd') {
        e.d = x;
        return put_elem(o, i, &e);
    }
    /* Integral? Every double of magnitude 2^52 or more is; below, the
     * int64 round trip tells (no libm: the library does not link it). */
    double mag = x < 0 ? -x : x;
    if (!isfinite(x) || (mag < 4503599627370496.0 && (double)(int64_t)x != x))
        return MPROC_ETYPE;
    if (x < 0) {
        if (x < -9223372036854775808.0)
            return -ERANGE;
        return set_i64(o, i, (int64_t)x);
    }
    if (x >= 18446744073709551616.0)
        return -ERANGE;
    return set_u64(o, i, (uint64_t)x);
}

static int obj_acquire(shobj *o, double timeout)
{
    if (!o)
        return -EINVAL;
    if (!o->lock)
        return -ENOLCK;
    int r = mproc__vlock_acquire(o->lock, timeout);
    if (r == 0 || r == -EOWNERDEAD)
        held_push(o->lock);
    return r;
}

static int obj_release(shobj *o)
{
    if (!o)
        return -EINVAL;
    if (!o->lock)
        return -ENOLCK;
    int r = mproc__vlock_release(o->lock);
    if (r == 0)
        held_pop(o->lock);
    return r;
}

static int obj_format(shobj *o, size_t start, size_t stop, bool list, char *buf,
                      size_t cap)
{
    if (!o || (!buf && cap))
        return -EINVAL;
    if (start > stop || stop > o->count)
        return -ERANGE;
    sbuf b = {buf, cap, 0};
    if (cap)
        buf[0] = '\0';
    int r = obj_lock(o);
    if (r < 0)
        return r;
    if (!list) {
        elem e;
        load(o, start, &e);
        shm__sb_elem(&b, o->type, &e);
    } else if (o->type == 'c') {
        shm__sb_bytes(&b, o->data + start, stop - start);
    } else {
        shm__sb_str(&b, "[");
        for (size_t i = start; i < stop; i++) {
            elem e;
            load(o, i, &e);
            if (i > start)
                shm__sb_str(&b, ", ");
            shm__sb_elem(&b, o->type, &e);
        }
        shm__sb_str(&b, "]");
    }
    obj_unlock(o, r);
    return b.len > INT32_MAX ? -ENOMEM : (int)b.len;
}

/* Value */

int mproc_value_new(mproc_value **out, int type)
{
    return obj_new((shobj **)out, sizeof(mproc_value), type, 1, true, NULL);
}

int mproc_value_new_raw(mproc_value **out, int type)
{
    return obj_new((shobj **)out, sizeof(mproc_value), type, 1, false, NULL);
}

void mproc_value_free(mproc_value *v)
{
    obj_free(v ? &v->o : NULL);
}

int mproc_value_type(const mproc_value *v)
{
    return v ? v->o.type : -EINVAL;
}

int mproc_value_has_lock(const mproc_value *v)
{
    return v && v->o.lock;
}

/* The read-modify-write under acquire() (`with v.get_lock(): v.value +=
 * 1`) on the common integer types: straight to memory, no conversions,
 * since its speed under contention is how long the lock is held. */
int mproc_value_get_i64(mproc_value *v, int64_t *out)
{
    if (v && out && v->o.lock && held_here(v->o.lock)) {
        if (v->o.type == 'i') {
            *out = *(const int32_t *)v->o.data;
            return 0;
        }
        if (v->o.type == 'q') {
            *out = *(const int64_t *)v->o.data;
            return 0;
        }
    }
    return get_i64(v ? &v->o : NULL, 0, out);
}

int mproc_value_set_i64(mproc_value *v, int64_t x)
{
    if (v && v->o.lock && held_here(v->o.lock)) {
        if (v->o.type == 'i' && x >= INT32_MIN && x <= INT32_MAX) {
            *(int32_t *)v->o.data = (int32_t)x;
            return 0;
        }
        if (v->o.type == 'q') {
            *(int64_t *)v->o.data = x;
            return 0;
        }
    }
    return set_i64(v ? &v->o : NULL, 0, x);
}

int mproc_value_get_u64(mproc_value *v, uint64_t *out)
{
    return get_u64(v ? &v->o : NULL, 0, out);
}

int mproc_value_set_u64(mproc_value *v, uint64_t x)
{
    return set_u64(v ? &v->o : NULL, 0, x);
}

int mproc_value_get_double(mproc_value *v, double *out)
{
    return get_double(v ? &v->o : NULL, 0, out);
}

int mproc_value_set_double(mproc_value *v, double x)
{
    return set_double(v ? &v->o : NULL, 0, x);
}

int mproc_value_get(mproc_value *v, void *dst)
{
    if (!v || !dst)
        return -EINVAL;
    elem e;
    int r = get_elem(&v->o, 0, &e);
    if (r == 0)
        memcpy(dst, e.raw, v->o.esize);
    return r;
}

int mproc_value_set(mproc_value *v, const void *src)
{
    if (!v || !src)
        return -EINVAL;
    elem e;
    memcpy(e.raw, src, v->o.esize);
    return put_elem(&v->o, 0, &e);
}

void *mproc_value_ptr(const mproc_value *v)
{
    return v ? v->o.data : NULL;
}

int mproc_value_acquire(mproc_value *v, double timeout)
{
    return obj_acquire(v ? &v->o : NULL, timeout);
}

int mproc_value_release(mproc_value *v)
{
    return obj_release(v ? &v->o : NULL);
}

mproc_rlock *mproc_value_get_lock(const mproc_value *v)
{
    return v ? v->o.lock : NULL;
}

int mproc_value_format(mproc_value *v, char *buf, size_t cap)
{
    return obj_format(v ? &v->o : NULL, 0, 1, false, buf, cap);
}

/* Array */

int mproc_array_new(mproc_array **out, int type, size_t n, const void *init)
{
    return obj_new((shobj **)out, sizeof(mproc_array), type, n, true, init);
}

int mproc_array_new_raw(mproc_array **out, int type, size_t n, const void *init)
{
    return obj_new((shobj **)out, sizeof(mproc_array), type, n, false, init);
}

void mproc_array_free(mproc_array *a)
{
    obj_free(a ? &a->o : NULL);
}

int mproc_array_type(const mproc_array *a)
{
    return a ? a->o.type : -EINVAL;
}

size_t mproc_array_len(const mproc_array *a)
{
    return a ? a->o.count : 0;
}

int mproc_array_has_lock(const mproc_array *a)
{
    return a && a->o.lock;
}

int mproc_array_get_i64(mproc_array *a, size_t i, int64_t *out)
{
    return get_i64(a ? &a->o : NULL, i, out);
}

int mproc_array_set_i64(mproc_array *a, size_t i, int64_t x)
{
    return set_i64(a ? &a->o : NULL, i, x);
}

int mproc_array_get_u64(mproc_array *a, size_t i, uint64_t *out)
{
    return get_u64(a ? &a->o : NULL, i, out);
}

int mproc_array_set_u64(mproc_array *a, size_t i, uint64_t x)
{
    return set_u64(a ? &a->o : NULL, i, x);
}

int mproc_array_get_double(mproc_array *a, size_t i, double *out)
{
    return get_double(a ? &a->o : NULL, i, out);
}

int mproc_array_set_double(mproc_array *a, size_t i, double x)
{
    return set_double(a ? &a->o : NULL, i, x);
}

/* a[start:stop] to buf (write false) or from buf (write true). */
static int64_t slice(mproc_array *a, size_t start, size_t stop, void *buf,
                     bool write)
{
    if (!a)
        return -EINVAL;
    shobj *o = &a->o;
    if (start > stop || stop > o->count)
        return -ERANGE;
    size_t n = stop - start;
    if (n == 0)
        return 0;
    if (!buf)
        return -EINVAL;
    int r = obj_lock(o);
    if (r < 0)
        return r;
    unsigned char *p = o->data + start * o->esize;
    if (write)
        memcpy(p, buf, n * o->esize);
    else
        memcpy(buf, p, n * o->esize);
    obj_unlock(o, r);
    return (int64_t)n;
}

int64_t mproc_array_get_slice(mproc_array *a, size_t start, size_t stop,
                              void *dst)
{
    return slice(a, start, stop, dst, false);
}

int64_t mproc_array_set_slice(mproc_array *a, size_t start, size_t stop,
                              const void *src)
{
    return slice(a, start, stop, (void *)src, true);
}

void *mproc_array_ptr(const mproc_array *a)
{
    return a ? a->o.data : NULL;
}

int mproc_array_acquire(mproc_array *a, double timeout)
{
    return obj_acquire(a ? &a->o : NULL, timeout);
}

int mproc_array_release(mproc_array *a)
{
    return obj_release(a ? &a->o : NULL);
}

mproc_rlock *mproc_array_get_lock(const mproc_array *a)
{
    return a ? a->o.lock : NULL;
}

int mproc_array_format(mproc_array *a, size_t start, size_t stop, char *buf,
                       size_t cap)
{
    return obj_format(a ? &a->o : NULL, start, stop, true, buf, cap);
}

/* Value and Array as shareable objects: the heap block (arena fd, offset,
 * length), then type, lock flag and count. */

static int obj_export(const void *obj, mproc_export *ex)
{
    const shobj *o = obj;
    int r = mproc__heap_export(&o->blk, ex);
    uint64_t v[3] = {(uint64_t)o->type, o->lock != NULL, o->count};
    return r < 0 ? r : mproc_export_bytes(ex, v, sizeof v);
}

static int obj_import(mproc_import *im, void **out, size_t handle_size)
{
    shobj *o = calloc(1, handle_size);
    if (!o)
        return -ENOMEM;
    int r = mproc__heap_import(im, &o->blk);
    if (r < 0) {
        free(o);
        return r;
    }
    uint64_t v[3] = {0, 0, 0};
    r = mproc_import_bytes(im, v, sizeof v);
    int t = r == 0 && v[0] < 256 ? shm__norm_type((int)v[0]) : 0;
    size_t hdr = v[1] ? MPROC__VLOCK_SIZE : 0;
    size_t es = mproc_ctype_size(t);
    if (r == 0 && (es == 0 || v[1] > 1 || v[2] > (SIZE_MAX / 4 - hdr) / es ||
                   o->blk.len != hdr + v[2] * es))
        r = MPROC_EPROTO;
    if (r < 0) {
        mproc__heap_release(&o->blk);
        free(o);
        return r;
    }
    o->type = t;
    o->esize = mproc_ctype_size(t);
    o->count = v[2];
    o->lock = v[1] ? o->blk.p : NULL;
    o->data = o->blk.p + hdr;
    o->creator = 0; /* not ours to give back */
    *out = o;
    return 0;
}

static int value_import(mproc_import *im, void **out)
{
    return obj_import(im, out, sizeof(mproc_value));
}

static int array_import(mproc_import *im, void **out)
{
    return obj_import(im, out, sizeof(mproc_array));
}

static void obj_kind_free(void *obj)
{
    obj_free(obj);
}

const mproc_kind mproc_value_kind = {"mproc.Value", obj_export, value_import,
                                     obj_kind_free};
const mproc_kind mproc_array_kind = {"mproc.Array", obj_export, array_import,
                                     obj_kind_free};
