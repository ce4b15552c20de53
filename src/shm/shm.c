/*
 * shm.c - Value, Array (with and without their lock) and SharedMemory.
 *
 * A Value or Array is a block of the shared heap (heap.c): the lock first
 * when it has one (MPROC__VLOCK_SIZE bytes), then the elements. The
 * process-local handle records the type, the count and the creator's pid;
 * only the creator gives the block back to the heap, so a fork child or a
 * spawn child freeing its handle never pulls memory from under the others.
 *
 * SharedMemory is a POSIX shm_open segment (or a sealed memfd for the
 * anonymous variant) kept open and mapped; creation registers the name
 * with the tracker (tracker.c) unless asked not to.
 */
#include "shm/shm_impl.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- types ----------------------------------------------------------- */

static int norm_type(int t)
{
    switch (t) {
    case 'l':
        return 'q';
    case 'L':
        return 'Q';
    case 'c':
    case 'b':
    case 'B':
    case 'h':
    case 'H':
    case 'i':
    case 'I':
    case 'q':
    case 'Q':
    case 'f':
    case 'd':
        return t;
    default:
        return 0;
    }
}

size_t mproc_ctype_size(int type)
{
    switch (norm_type(type)) {
    case 'c':
    case 'b':
    case 'B':
        return 1;
    case 'h':
    case 'H':
        return 2;
    case 'i':
    case 'I':
    case 'f':
        return 4;
    case 'q':
    case 'Q':
    case 'd':
        return 8;
    default:
        return 0;
    }
}

const char *mproc_ctype_name(int type)
{
    switch (norm_type(type)) {
    case 'c':
        return "char";
    case 'b':
        return "int8";
    case 'B':
        return "uint8";
    case 'h':
        return "int16";
    case 'H':
        return "uint16";
    case 'i':
        return "int32";
    case 'I':
        return "uint32";
    case 'q':
        return "int64";
    case 'Q':
        return "uint64";
    case 'f':
        return "float";
    case 'd':
        return "double";
    default:
        return NULL;
    }
}

static bool is_float(int t)
{
    return t == 'f' || t == 'd';
}

static bool is_signed(int t)
{
    return t == 'b' || t == 'h' || t == 'i' || t == 'q';
}

/* Range of an integer type ('c' counts as unsigned char: bytes 0..255). */
static void int_range(int t, int64_t *lo, uint64_t *hi)
{
    switch (t) {
    case 'b':
        *lo = INT8_MIN, *hi = INT8_MAX;
        break;
    case 'h':
        *lo = INT16_MIN, *hi = INT16_MAX;
        break;
    case 'i':
        *lo = INT32_MIN, *hi = INT32_MAX;
        break;
    case 'q':
        *lo = INT64_MIN, *hi = INT64_MAX;
        break;
    case 'c':
    case 'B':
        *lo = 0, *hi = UINT8_MAX;
        break;
    case 'H':
        *lo = 0, *hi = UINT16_MAX;
        break;
    case 'I':
        *lo = 0, *hi = UINT32_MAX;
        break;
    default:
        *lo = 0, *hi = UINT64_MAX;
        break;
    }
}

/* One element in native form. */
typedef union elem {
    int8_t i8;
    uint8_t u8;
    int16_t i16;
    uint16_t u16;
    int32_t i32;
    uint32_t u32;
    int64_t i64;
    uint64_t u64;
    float f;
    double d;
    unsigned char raw[8];
} elem;

/* The integer in e as sign + magnitude parts: *neg set for negatives. */
static void elem_int(int t, const elem *e, bool *neg, uint64_t *mag,
                     int64_t *sv)
{
    int64_t s = 0;
    uint64_t u = 0;
    switch (t) {
    case 'b':
        s = e->i8; /* NOLINT(bugprone-signed-char-misuse): an int8 */
        break;
    case 'h':
        s = e->i16;
        break;
    case 'i':
        s = e->i32;
        break;
    case 'q':
        s = e->i64;
        break;
    case 'c':
    case 'B':
        u = e->u8;
        break;
    case 'H':
        u = e->u16;
        break;
    case 'I':
        u = e->u32;
        break;
    default:
        u = e->u64;
        break;
    }
    if (is_signed(t)) {
        *neg = s < 0;
        *mag = s < 0 ? 0 : (uint64_t)s;
        *sv = s;
    } else {
        *neg = false;
        *mag = u;
        *sv = (int64_t)u;
    }
}

static void elem_from_int(int t, elem *e, int64_t s, uint64_t u, bool use_u)
{
    uint64_t bits = use_u ? u : (uint64_t)s;
    e->u64 = 0;
    switch (mproc_ctype_size(t)) {
    case 1:
        e->u8 = (uint8_t)bits;
        break;
    case 2:
        e->u16 = (uint16_t)bits;
        break;
    case 4:
        e->u32 = (uint32_t)bits;
        break;
    default:
        e->u64 = bits;
        break;
    }
}

static double elem_double(int t, const elem *e)
{
    if (t == 'f')
        return e->f;
    if (t == 'd')
        return e->d;
    bool neg;
    uint64_t mag;
    int64_t sv;
    elem_int(t, e, &neg, &mag, &sv);
    return neg ? (double)sv : (double)mag;
}

/* ---- Python-style formatting ------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t cap, len;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len < b->cap) {
        size_t room = b->cap - 1 - b->len;
        size_t k = n < room ? n : room;
        memcpy(b->p + b->len, s, k);
        b->p[b->len + k] = '\0';
    }
    b->len += n;
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* repr(float): the shortest decimal that reads back as x, in Python's
 * layout (fixed for 1e-4 <= |x| < 1e16, with ".0" when integral; else
 * exponent with a sign and at least two digits). */
static void sb_double(sbuf *b, double x)
{
    if (isnan(x)) {
        sb_str(b, "nan");
        return;
    }
    if (isinf(x)) {
        sb_str(b, x < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    /* tmp: [-]d[.ddd]e(+|-)XX */
    const char *s = tmp;
    char out[64];
    size_t o = 0;
    if (*s == '-')
        out[o++] = *s++;
    char dig[24] = {'0'};
    size_t nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.')
            dig[nd++] = *s;
    int e = atoi(s + 1);
    if (nd == 0)
        nd = 1;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    if (e >= -4 && e < 16) {
        if (e >= 0) {
            for (int i = 0; i <= e; i++)
                out[o++] = (size_t)i < nd ? dig[i] : '0';
            out[o++] = '.';
            if ((size_t)e + 1 < nd)
                for (size_t i = (size_t)e + 1; i < nd; i++)
                    out[o++] = dig[i];
            else
                out[o++] = '0';
        } else {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -e - 1; i++)
                out[o++] = '0';
            for (size_t i = 0; i < nd; i++)
                out[o++] = dig[i];
        }
        out[o] = '\0';
    } else {
        out[o++] = dig[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nd; i++)
                out[o++] = dig[i];
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", e < 0 ? '-' : '+',
                 e < 0 ? -e : e);
    }
    sb_str(b, out);
}

/* repr(bytes): b'...' with Python's choice of quotes and escapes. */
static void sb_bytes(sbuf *b, const unsigned char *p, size_t n)
{
    bool sq = memchr(p, '\'', n) != NULL, dq = memchr(p, '"', n) != NULL;
    unsigned char quote = sq && !dq ? '"' : '\'';
    char q[2] = {(char)quote, 0};
    sb_str(b, "b");
    sb_str(b, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        char t[8];
        if (c == quote || c == '\\')
            snprintf(t, sizeof t, "\\%c", c);
        else if (c == '\t')
            snprintf(t, sizeof t, "\\t");
        else if (c == '\n')
            snprintf(t, sizeof t, "\\n");
        else if (c == '\r')
            snprintf(t, sizeof t, "\\r");
        else if (c < 0x20 || c >= 0x7f)
            snprintf(t, sizeof t, "\\x%02x", c);
        else
            snprintf(t, sizeof t, "%c", c);
        sb_str(b, t);
    }
    sb_str(b, q);
}

static void sb_elem(sbuf *b, int t, const elem *e)
{
    char tmp[32];
    if (is_float(t)) {
        sb_double(b, elem_double(t, e));
    } else if (t == 'c') {
        sb_bytes(b, &e->u8, 1);
    } else {
        bool neg;
        uint64_t mag;
        int64_t sv;
        elem_int(t, e, &neg, &mag, &sv);
        if (neg)
            snprintf(tmp, sizeof tmp, "%lld", (long long)sv);
        else
            snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)mag);
        sb_str(b, tmp);
    }
}

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
    int t = norm_type(type);
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
    if (is_float(o->type))
        return MPROC_ETYPE;
    elem e;
    if ((r = get_elem(o, i, &e)) < 0)
        return r;
    bool neg;
    uint64_t mag;
    int64_t sv;
    elem_int(o->type, &e, &neg, &mag, &sv);
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
    if (is_float(o->type))
        return MPROC_ETYPE;
    elem e;
    if ((r = get_elem(o, i, &e)) < 0)
        return r;
    bool neg;
    uint64_t mag;
    int64_t sv;
    elem_int(o->type, &e, &neg, &mag, &sv);
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
    *out = elem_double(o->type, &e);
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
        int_range(o->type, &lo, &hi);
        if (x < lo || (x >= 0 && (uint64_t)x > hi))
            return -ERANGE;
        elem_from_int(o->type, &e, x, 0, false);
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
        int_range(o->type, &lo, &hi);
        if (x > hi)
            return -ERANGE;
        elem_from_int(o->type, &e, 0, x, true);
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
        sb_elem(&b, o->type, &e);
    } else if (o->type == 'c') {
        sb_bytes(&b, o->data + start, stop - start);
    } else {
        sb_str(&b, "[");
        for (size_t i = start; i < stop; i++) {
            elem e;
            load(o, i, &e);
            if (i > start)
                sb_str(&b, ", ");
            sb_elem(&b, o->type, &e);
        }
        sb_str(&b, "]");
    }
    obj_unlock(o, r);
    return b.len > INT32_MAX ? -ENOMEM : (int)b.len;
}

/* Value */

int mproc_value_new(mproc_value **out, int type)
{
    return obj_new((shobj **)out, sizeof(mproc_value), type, 1, true, NULL);
}

int mproc_rawvalue_new(mproc_value **out, int type)
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

int mproc_rawarray_new(mproc_array **out, int type, size_t n, const void *init)
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
    int t = r == 0 && v[0] < 256 ? norm_type((int)v[0]) : 0;
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

/* ---- SharedMemory ------------------------------------------------------ */

/* -errno of the call that just failed (never 0, whatever errno says). */
static int neg_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

struct mproc_shm {
    pthread_mutex_t mu;
    char name[MPROC_SHM_NAME_MAX + 1]; /* "" when anonymous */
    int fd;
    void *buf;
    size_t size;
    bool readonly;
};

int mproc__shm_check_name(const char *name, char *out)
{
    if (!name)
        return -EINVAL;
    if (name[0] == '/')
        name++;
    size_t n = strlen(name);
    if (n == 0 || strchr(name, '/') || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return -EINVAL;
    if (n > MPROC_SHM_NAME_MAX)
        return -ENAMETOOLONG;
    memcpy(out, name, n + 1);
    return 0;
}

static int shm_open_name(const char *name, int oflag, mode_t mode)
{
    char path[MPROC_SHM_NAME_MAX + 2];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, oflag, mode); /* O_CLOEXEC is implied */
    return fd < 0 ? neg_errno() : fd;
}

static void shm_name_unlink(const char *name)
{
    char path[MPROC_SHM_NAME_MAX + 2];
    snprintf(path, sizeof path, "/%s", name);
    shm_unlink(path);
}

static mproc_shm *shm_alloc(void)
{
    mproc_shm *s = calloc(1, sizeof *s);
    if (s) {
        pthread_mutex_init(&s->mu, NULL);
        s->fd = -1;
    }
    return s;
}

static int shm_map(mproc_shm *s, size_t size, bool readonly)
{
    int prot = PROT_READ | (readonly ? 0 : PROT_WRITE);
    void *p = mmap(NULL, size, prot, MAP_SHARED, s->fd, 0);
    if (p == MAP_FAILED)
        return neg_errno();
    s->buf = p;
    s->size = size;
    s->readonly = readonly;
    return 0;
}

static void shm_destroy(mproc_shm *s)
{
    mproc_shm_close(s);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int mproc_shm_create(mproc_shm **out, const char *name, size_t size, int flags)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (size == 0 || size > (size_t)INT64_MAX || (flags & ~MPROC_SHM_NOTRACK))
        return -EINVAL;
    mproc_shm *s = shm_alloc();
    if (!s)
        return -ENOMEM;
    int r;
    if (name) {
        r = mproc__shm_check_name(name, s->name);
        if (r < 0)
            goto out_free;
        r = shm_open_name(s->name, O_CREAT | O_EXCL | O_RDWR, 0600);
    } else {
        /* CPython: "psm_" + token_hex(5); retry while taken. */
        r = -EEXIST;
        for (int tries = 0; tries < 100 && r == -EEXIST; tries++) {
            unsigned char rnd[5];
            if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
                r = neg_errno();
                break;
            }
            snprintf(s->name, sizeof s->name, "psm_%02x%02x%02x%02x%02x",
                     rnd[0], rnd[1], rnd[2], rnd[3], rnd[4]);
            r = shm_open_name(s->name, O_CREAT | O_EXCL | O_RDWR, 0600);
        }
    }
    if (r < 0)
        goto out_free;
    s->fd = r;
    struct stat st;
    if (ftruncate(s->fd, (off_t)size) < 0 || fstat(s->fd, &st) < 0) {
        r = errno == EFBIG ? -ENOMEM : neg_errno();
        goto out_unlink;
    }
    if (!(flags & MPROC_SHM_NOTRACK)) {
        r = mproc__tracker_register(s->name, st.st_dev, st.st_ino);
        if (r < 0)
            goto out_unlink;
    }
    r = shm_map(s, size, false);
    if (r < 0) {
        if (!(flags & MPROC_SHM_NOTRACK))
            mproc__tracker_unregister(s->name);
        goto out_unlink;
    }
    *out = s;
    return 0;
out_unlink:
    shm_name_unlink(s->name);
out_free:
    shm_destroy(s);
    return r;
}

int mproc_shm_attach(mproc_shm **out, const char *name, int flags)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (flags & ~MPROC_SHM_READONLY)
        return -EINVAL;
    mproc_shm *s = shm_alloc();
    if (!s)
        return -ENOMEM;
    bool ro = flags & MPROC_SHM_READONLY;
    int r = mproc__shm_check_name(name, s->name);
    if (r == 0)
        r = shm_open_name(s->name, ro ? O_RDONLY : O_RDWR, 0);
    if (r < 0)
        goto out_free;
    s->fd = r;
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        r = neg_errno();
        goto out_free;
    }
    if (st.st_size <= 0) {
        r = -EINVAL; /* Python: cannot mmap an empty file */
        goto out_free;
    }
    r = shm_map(s, (size_t)st.st_size, ro);
    if (r < 0)
        goto out_free;
    *out = s;
    return 0;
out_free:
    shm_destroy(s);
    return r;
}

int mproc_shm_anonymous(mproc_shm **out, size_t size)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (size == 0 || size > (size_t)INT64_MAX)
        return -EINVAL;
    mproc_shm *s = shm_alloc();
    if (!s)
        return -ENOMEM;
    int r;
    s->fd = memfd_create("mproc-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (s->fd < 0) {
        r = neg_errno();
        goto out_free;
    }
    if (ftruncate(s->fd, (off_t)size) < 0 ||
        fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) <
            0) {
        r = errno == EFBIG ? -ENOMEM : neg_errno();
        goto out_free;
    }
    r = shm_map(s, size, false);
    if (r < 0)
        goto out_free;
    *out = s;
    return 0;
out_free:
    shm_destroy(s);
    return r;
}

const char *mproc_shm_name(const mproc_shm *s)
{
    return s && s->name[0] ? s->name : NULL;
}

size_t mproc_shm_size(const mproc_shm *s)
{
    return s ? s->size : 0;
}

void *mproc_shm_buf(const mproc_shm *s)
{
    return s ? s->buf : NULL;
}

int mproc_shm_fd(const mproc_shm *s)
{
    if (!s)
        return -EINVAL;
    return s->fd >= 0 ? s->fd : -EBADF;
}

int mproc_shm_close(mproc_shm *s)
{
    if (!s)
        return -EINVAL;
    pthread_mutex_lock(&s->mu);
    if (s->buf)
        munmap(s->buf, s->size);
    s->buf = NULL;
    mproc__close(s->fd);
    s->fd = -1;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int mproc_shm_unlink_name(const char *name)
{
    char n[MPROC_SHM_NAME_MAX + 1];
    int r = mproc__shm_check_name(name, n);
    if (r < 0)
        return r;
    char path[MPROC_SHM_NAME_MAX + 2];
    snprintf(path, sizeof path, "/%s", n);
    if (shm_unlink(path) < 0)
        return neg_errno();
    mproc__tracker_unregister(n);
    return 0;
}

int mproc_shm_unlink(mproc_shm *s)
{
    if (!s || !s->name[0])
        return -EINVAL;
    return mproc_shm_unlink_name(s->name);
}

void mproc_shm_free(mproc_shm *s)
{
    if (s)
        shm_destroy(s);
}

pid_t mproc_shm_tracker_pid(void)
{
    return mproc__tracker_pid();
}

/* SharedMemory as a shareable object: the fd, then size, read-only flag
 * and name ("" for anonymous). The child maps the very same segment even
 * if its name has been unlinked meanwhile. */

static int shm_export(const void *obj, mproc_export *ex)
{
    const mproc_shm *s = obj;
    if (s->fd < 0 || !s->buf)
        return MPROC_ECLOSED;
    uint64_t v[2] = {s->size, s->readonly};
    int r = mproc_export_fd(ex, s->fd);
    if (r == 0)
        r = mproc_export_bytes(ex, v, sizeof v);
    if (r == 0)
        r = mproc_export_bytes(ex, s->name, sizeof s->name);
    return r;
}

static int shm_import(mproc_import *im, void **out)
{
    mproc_shm *s = shm_alloc();
    if (!s)
        return -ENOMEM;
    int r = mproc_import_fd(im);
    if (r < 0)
        goto out_free;
    s->fd = r;
    uint64_t v[2];
    r = mproc_import_bytes(im, v, sizeof v);
    if (r == 0)
        r = mproc_import_bytes(im, s->name, sizeof s->name);
    struct stat st;
    if (r == 0 && fstat(s->fd, &st) < 0)
        r = neg_errno();
    s->name[MPROC_SHM_NAME_MAX] = '\0';
    if (r == 0 && (v[0] == 0 || v[1] > 1 || st.st_size < 0 ||
                   v[0] > (uint64_t)st.st_size))
        r = MPROC_EPROTO;
    if (r == 0)
        r = shm_map(s, (size_t)v[0], v[1] != 0);
    if (r < 0)
        goto out_free;
    *out = s;
    return 0;
out_free:
    shm_destroy(s);
    return r;
}

static void shm_kind_free(void *obj)
{
    mproc_shm_free(obj);
}

const mproc_kind mproc_shm_kind = {"mproc.SharedMemory", shm_export, shm_import,
                                   shm_kind_free};

int mproc_args_add_value(mproc_args *a, mproc_value *v)
{
    return v ? mproc_args_add_object(a, &mproc_value_kind, v) : -EINVAL;
}

int mproc_args_add_array(mproc_args *a, mproc_array *arr)
{
    return arr ? mproc_args_add_object(a, &mproc_array_kind, arr) : -EINVAL;
}

int mproc_args_add_shm(mproc_args *a, mproc_shm *s)
{
    return s ? mproc_args_add_object(a, &mproc_shm_kind, s) : -EINVAL;
}

mproc_value *mproc_args_value(const mproc_args *a, size_t i)
{
    return mproc_args_object(a, i, &mproc_value_kind);
}

mproc_array *mproc_args_array(const mproc_args *a, size_t i)
{
    return mproc_args_object(a, i, &mproc_array_kind);
}

mproc_shm *mproc_args_shm(const mproc_args *a, size_t i)
{
    return mproc_args_object(a, i, &mproc_shm_kind);
}
