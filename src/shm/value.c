/*
 * shm/value.c - Value and Array, with and without their lock.
 *
 * A Value or Array is a block of the shared heap (heap.c): the lock first
 * when it has one of its own (MPROC__VLOCK_SIZE bytes), then the elements.
 * The lock may instead be a caller's Lock or RLock (Python's
 * Value(..., lock=some_lock)), borrowed and possibly shared by several
 * objects; such an object travels to children with its lock. Elements are
 * a ctype or a struct of the caller's layout (copied whole). The
 * process-local handle records the type, the count and the creator's pid;
 * only the creator gives the block back to the heap, so a fork child or a
 * spawn child freeing its handle never pulls memory from under the others.
 * Each handle also holds get_obj's view: the same memory with no lock.
 * Element types and their formatting are ctype.c's.
 */
#include "shm/shm_impl.h"
#include "sync/sync_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Value and Array --------------------------------------------------- */

/* Which lock guards an object. */
enum { LK_NONE = 0, LK_OWN = 1, LK_LOCK = 2, LK_RLOCK = 3 };

typedef struct shobj {
    mproc__block blk;
    unsigned char *data;
    void *lock; /* NULL: raw */
    int lk;     /* LK_* */
    bool view;  /* get_obj's view of another handle: never freed itself */
    bool lock_imported; /* the caller's lock came with an import: ours */
    int type;           /* an mproc_ctype, or MPROC_CTYPE_STRUCT */
    size_t esize, count;
    pid_t creator;
} shobj;

/* Both handles: the object, then its unlocked view (get_obj). */
struct mproc_value {
    shobj o;
    shobj view;
};

struct mproc_array {
    shobj o;
    shobj view;
};

static void set_view(shobj *o)
{
    shobj *v = o + 1; /* the view member after o, in either handle */
    *v = *o;
    v->lock = NULL;
    v->lk = LK_NONE;
    v->view = true;
    v->lock_imported = false;
}

/* The element size for type (a ctype, or a struct of size bytes), or 0. */
static size_t elem_size(int type, size_t size)
{
    if (type == MPROC_CTYPE_STRUCT)
        return size;
    size_t es = mproc_ctype_size(type);
    return size == 0 || size == es ? es : 0;
}

/* What an object is made of: the fields of both opts structs. */
typedef struct obj_spec {
    int type;
    size_t size, n;
    const void *init;
    int raw;
    mproc_lock *lock;
    mproc_rlock *rlock;
} obj_spec;

static int obj_new(shobj **out, size_t handle_size, const obj_spec *sp)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    int t =
        sp->type == MPROC_CTYPE_STRUCT ? sp->type : shm__norm_type(sp->type);
    size_t es = t ? elem_size(t, sp->size) : 0;
    if (!es || (sp->lock && sp->rlock) || (sp->raw && (sp->lock || sp->rlock)))
        return -EINVAL;
    if ((sp->lock && mproc_lock_locked(sp->lock) < 0) ||
        (sp->rlock && mproc_rlock_locked(sp->rlock) < 0))
        return -EINVAL; /* not an initialized Lock / RLock */
    int lk = sp->raw     ? LK_NONE
             : sp->lock  ? LK_LOCK
             : sp->rlock ? LK_RLOCK
                         : LK_OWN;
    size_t hdr = lk == LK_OWN ? MPROC__VLOCK_SIZE : 0;
    if (sp->n > (SIZE_MAX / 4 - hdr) / es)
        return -ENOMEM;
    shobj *o = calloc(1, handle_size);
    if (!o)
        return -ENOMEM;
    int r = mproc__heap_alloc(hdr + es * sp->n, &o->blk);
    if (r < 0) {
        free(o);
        return r;
    }
    o->lk = lk;
    if (lk == LK_OWN) {
        o->lock = o->blk.p;
        r = mproc__vlock_init(o->lock);
        if (r < 0) {
            mproc__heap_free(&o->blk);
            free(o);
            return r;
        }
    } else if (lk != LK_NONE) {
        o->lock = sp->lock ? (void *)sp->lock : (void *)sp->rlock;
    }
    o->data = o->blk.p + hdr;
    o->type = t;
    o->esize = es;
    o->count = sp->n;
    o->creator = getpid();
    if (sp->init && sp->n)
        memcpy(o->data, sp->init, es * sp->n);
    set_view(o);
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

/* A lock of its own still held by the freeing thread is released first:
 * its robust list entry must not outlive the memory (which the heap may
 * hand out again), or the kernel would write into it when the thread
 * exits. A caller's lock is left as it is, unless it came with an import
 * (then this process's mapping of it goes). */
static void obj_free(shobj *o)
{
    if (!o || o->view)
        return;
    if (o->lk == LK_OWN) {
        for (int n = mproc_rlock_count(o->lock); n > 0; n--)
            mproc__vlock_release(o->lock);
        while (held_here(o->lock))
            held_pop(o->lock);
    } else if (o->lock_imported && o->lk == LK_LOCK) {
        mproc_lock_free(o->lock);
    } else if (o->lock_imported && o->lk == LK_RLOCK) {
        mproc_rlock_free(o->lock);
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

/* 1 when the calling thread holds the caller's lock of o. */
static bool ext_owned(const shobj *o)
{
    if (o->lk == LK_LOCK)
        return mproc_lock_owned(o->lock) == 1;
    return mproc_rlock_count(o->lock) > 0;
}

static int ext_acquire(shobj *o, double timeout)
{
    return o->lk == LK_LOCK ? mproc_lock_acquire(o->lock, timeout)
                            : mproc_rlock_acquire(o->lock, timeout);
}

static int ext_release(shobj *o)
{
    return o->lk == LK_LOCK ? mproc_lock_release(o->lock)
                            : mproc_rlock_release(o->lock);
}

/* Takes the lock for one access. Its own lock: a dead previous holder is
 * no reason to fail a plain get or set. A caller's lock, already held by
 * this thread (through acquire, or taken directly), is not taken again; a
 * dead holder's state is the caller's to repair, so the access is not
 * done and the lock is handed on still owner-dead. Returns 1 when it took
 * the lock, 0 when none was needed, or an error. */
static int obj_lock(shobj *o)
{
    if (o->lk == LK_NONE)
        return 0;
    if (o->lk == LK_OWN) {
        if (held_here(o->lock))
            return 0;
        int r = mproc__vlock_acquire(o->lock, -1);
        return r == -EOWNERDEAD || r == 0 ? 1 : r;
    }
    if (ext_owned(o))
        return 0;
    int r = ext_acquire(o, -1);
    if (r == -EOWNERDEAD)
        (void)mproc__lock_hand_on(o->lock);
    return r == 0 ? 1 : r;
}

static void obj_unlock(shobj *o, int taken)
{
    if (taken <= 0)
        return;
    if (o->lk == LK_OWN)
        mproc__vlock_release(o->lock);
    else
        (void)ext_release(o);
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

/* For the typed accessors: a struct has no number to convert. */
static int check(shobj *o, size_t i)
{
    if (!o)
        return -EINVAL;
    if (o->type == MPROC_CTYPE_STRUCT)
        return MPROC_ETYPE;
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
    if (o->lk == LK_NONE)
        return -ENOLCK;
    if (o->lk != LK_OWN)
        return ext_acquire(o, timeout);
    int r = mproc__vlock_acquire(o->lock, timeout);
    if (r == 0 || r == -EOWNERDEAD)
        held_push(o->lock);
    return r;
}

static int obj_release(shobj *o)
{
    if (!o)
        return -EINVAL;
    if (o->lk == LK_NONE)
        return -ENOLCK;
    if (o->lk != LK_OWN)
        return ext_release(o);
    int r = mproc__vlock_release(o->lock);
    if (r == 0)
        held_pop(o->lock);
    return r;
}

/* Copies elements [start, stop) to buf (write false) or from buf (write
 * true) under one lock hold. Bounds already checked. */
static int copy_elems(shobj *o, size_t start, size_t stop, void *buf,
                      bool write)
{
    size_t n = stop - start;
    if (n == 0)
        return 0;
    int r = obj_lock(o);
    if (r < 0)
        return r;
    unsigned char *p = o->data + start * o->esize;
    if (write)
        memcpy(p, buf, n * o->esize);
    else
        memcpy(buf, p, n * o->esize);
    obj_unlock(o, r);
    return 0;
}

static int obj_format(shobj *o, size_t start, size_t stop, bool list, char *buf,
                      size_t cap)
{
    if (!o || (!buf && cap))
        return -EINVAL;
    if (o->type == MPROC_CTYPE_STRUCT)
        return MPROC_ETYPE;
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
    obj_spec sp = {.type = type, .n = 1};
    return obj_new((shobj **)out, sizeof(mproc_value), &sp);
}

int mproc_value_new_raw(mproc_value **out, int type)
{
    obj_spec sp = {.type = type, .n = 1, .raw = 1};
    return obj_new((shobj **)out, sizeof(mproc_value), &sp);
}

int mproc_value_new_opts(mproc_value **out, const mproc_value_opts *opts)
{
    if (!opts) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    obj_spec sp = {opts->type, opts->size, 1,          opts->init,
                   opts->raw,  opts->lock, opts->rlock};
    return obj_new((shobj **)out, sizeof(mproc_value), &sp);
}

int mproc_value_new_struct(mproc_value **out, size_t size, const void *init)
{
    obj_spec sp = {
        .type = MPROC_CTYPE_STRUCT, .size = size, .n = 1, .init = init};
    return obj_new((shobj **)out, sizeof(mproc_value), &sp);
}

/* A new Value set with set(v, x): nothing is left when x does not fit. */
static int new_set(mproc_value **out, int type,
                   int (*set)(shobj *, size_t, const void *), const void *x)
{
    int r = mproc_value_new(out, type);
    if (r < 0)
        return r;
    r = set(&(*out)->o, 0, x);
    if (r < 0) {
        mproc_value_free(*out);
        *out = NULL;
    }
    return r;
}

static int set_i64_p(shobj *o, size_t i, const void *x)
{
    return set_i64(o, i, *(const int64_t *)x);
}

static int set_double_p(shobj *o, size_t i, const void *x)
{
    return set_double(o, i, *(const double *)x);
}

int mproc_value_new_i64(mproc_value **out, int type, int64_t x)
{
    return new_set(out, type, set_i64_p, &x);
}

int mproc_value_new_double(mproc_value **out, int type, double x)
{
    return new_set(out, type, set_double_p, &x);
}

void mproc_value_free(mproc_value *v)
{
    obj_free(v ? &v->o : NULL);
}

int mproc_value_type(const mproc_value *v)
{
    return v ? v->o.type : -EINVAL;
}

size_t mproc_value_size(const mproc_value *v)
{
    return v ? v->o.esize : 0;
}

int mproc_value_has_lock(const mproc_value *v)
{
    return v && v->o.lk != LK_NONE;
}

mproc_value *mproc_value_get_obj(const mproc_value *v)
{
    if (!v || v->o.view || v->o.lk == LK_NONE)
        return (mproc_value *)v; /* a raw value is its own object */
    return (mproc_value *)&v->view;
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
    if (v->o.type == MPROC_CTYPE_STRUCT)
        return copy_elems(&v->o, 0, 1, dst, false);
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
    if (v->o.type == MPROC_CTYPE_STRUCT)
        return copy_elems(&v->o, 0, 1, (void *)src, true);
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
    return v && (v->o.lk == LK_OWN || v->o.lk == LK_RLOCK) ? v->o.lock : NULL;
}

int mproc_value_format(mproc_value *v, char *buf, size_t cap)
{
    return obj_format(v ? &v->o : NULL, 0, 1, false, buf, cap);
}

/* Array */

int mproc_array_new(mproc_array **out, int type, size_t n, const void *init)
{
    obj_spec sp = {.type = type, .n = n, .init = init};
    return obj_new((shobj **)out, sizeof(mproc_array), &sp);
}

int mproc_array_new_raw(mproc_array **out, int type, size_t n, const void *init)
{
    obj_spec sp = {.type = type, .n = n, .init = init, .raw = 1};
    return obj_new((shobj **)out, sizeof(mproc_array), &sp);
}

int mproc_array_new_opts(mproc_array **out, const mproc_array_opts *opts)
{
    if (!opts) {
        if (out)
            *out = NULL;
        return -EINVAL;
    }
    obj_spec sp = {opts->type, opts->size, opts->n,    opts->init,
                   opts->raw,  opts->lock, opts->rlock};
    return obj_new((shobj **)out, sizeof(mproc_array), &sp);
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

size_t mproc_array_itemsize(const mproc_array *a)
{
    return a ? a->o.esize : 0;
}

int mproc_array_has_lock(const mproc_array *a)
{
    return a && a->o.lk != LK_NONE;
}

mproc_array *mproc_array_get_obj(const mproc_array *a)
{
    if (!a || a->o.view || a->o.lk == LK_NONE)
        return (mproc_array *)a;
    return (mproc_array *)&a->view;
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
    if (stop > start && !buf)
        return -EINVAL;
    int r = copy_elems(o, start, stop, buf, write);
    return r < 0 ? r : (int64_t)(stop - start);
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
    return a && (a->o.lk == LK_OWN || a->o.lk == LK_RLOCK) ? a->o.lock : NULL;
}

int mproc_array_format(mproc_array *a, size_t start, size_t stop, char *buf,
                       size_t cap)
{
    return obj_format(a ? &a->o : NULL, start, stop, true, buf, cap);
}

/* Value and Array as shareable objects: the heap block (arena fd, offset,
 * length), then type, lock kind, count and element size, then a caller's
 * lock as its own kind exports it. */

static int obj_export(const void *obj, mproc_export *ex)
{
    const shobj *o = obj;
    int r = mproc__heap_export(&o->blk, ex);
    uint64_t v[4] = {(uint64_t)o->type, (uint64_t)o->lk, o->count, o->esize};
    if (r == 0)
        r = mproc_export_bytes(ex, v, sizeof v);
    if (r == 0 && o->lk == LK_LOCK)
        r = mproc_lock_kind.export_fn(o->lock, ex);
    else if (r == 0 && o->lk == LK_RLOCK)
        r = mproc_rlock_kind.export_fn(o->lock, ex);
    return r;
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
    uint64_t v[4] = {0, 0, 0, 0};
    r = mproc_import_bytes(im, v, sizeof v);
    int t = v[0] == MPROC_CTYPE_STRUCT ? MPROC_CTYPE_STRUCT
            : v[0] < 256               ? shm__norm_type((int)v[0])
                                       : 0;
    size_t hdr = v[1] == LK_OWN ? MPROC__VLOCK_SIZE : 0;
    size_t es = t && v[3] <= SIZE_MAX / 4 ? elem_size(t, (size_t)v[3]) : 0;
    if (r == 0 &&
        (es == 0 || es != v[3] || v[1] > LK_RLOCK ||
         v[2] > (SIZE_MAX / 4 - hdr) / es || o->blk.len != hdr + v[2] * es))
        r = MPROC_EPROTO;
    o->lk = (int)v[1];
    if (r == 0 && o->lk == LK_LOCK)
        r = mproc_lock_kind.import_fn(im, &o->lock);
    else if (r == 0 && o->lk == LK_RLOCK)
        r = mproc_rlock_kind.import_fn(im, &o->lock);
    if (r < 0) {
        mproc__heap_release(&o->blk);
        free(o);
        return r;
    }
    o->lock_imported = o->lk == LK_LOCK || o->lk == LK_RLOCK;
    o->type = t;
    o->esize = es;
    o->count = v[2];
    if (o->lk == LK_OWN)
        o->lock = o->blk.p;
    o->data = o->blk.p + hdr;
    o->creator = 0; /* not ours to give back */
    set_view(o);
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
