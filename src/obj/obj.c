/*
 * obj/obj.c - the value model: allocation (one malloc each, or carved from
 * a decoder's slab) and reference counts (freeing iteratively, however
 * deep the value), constructors for every type,
 * UTF-8 checking, the builders of tuples, lists, dicts and sets and the
 * accessors. The insertion-ordered hash table dicts and sets share is
 * table.c; reduce values (what mproc does not model) are reduce.c.
 */
#include "obj/obj_impl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static mproc_obj none_obj = {.refs = MPROC__OBJ_STATIC, .kind = MPROC_OBJ_NONE};
static mproc_obj true_obj = {
    .refs = MPROC__OBJ_STATIC, .kind = MPROC_OBJ_BOOL, .u.b = true};
static mproc_obj false_obj = {
    .refs = MPROC__OBJ_STATIC, .kind = MPROC_OBJ_BOOL, .u.b = false};

/* Puts c on the list at *todo when its count reaches 0. A count of 1 is
 * ours alone (nobody else can add to it): no atomic operation needed. */
static void drop_to(mproc_obj *c, mproc_obj **todo)
{
    if (!c || mproc__is_small(c))
        return;
    size_t refs = __atomic_load_n(&c->refs, __ATOMIC_ACQUIRE);
    if (refs == MPROC__OBJ_STATIC)
        return;
    if (refs == 1 || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        c->next = *todo;
        *todo = c;
    }
}

/* ---- slabs ------------------------------------------------------------ */

/* Where a str's or bytes' data starts in a slab: right after u.s.n (their
 * u.s.cap, a bytearray's, and the rest of the union are not there: a
 * short dict key takes 48 bytes instead of 80). Alone, after the object. */
#define INLINE_DATA offsetof(mproc_obj, u.s.cap)

#define SLAB_BYTES   ((size_t)64 << 10)
#define SLAB_HEADER  ((sizeof(mproc__slab) + 15) & ~(size_t)15)
#define SLAB_MAX_OBJ ((size_t)1 << 10)

/* A few free blocks kept for the next decode (fresh memory from the
 * kernel costs a page fault per 4 KiB): lock-free slots, so threads and
 * fork need no care. */
#define SLAB_CACHE 128
static mproc__slab *slab_cache[SLAB_CACHE];

static mproc__slab *slab_new(void)
{
    for (int i = 0; i < SLAB_CACHE; i++) {
        mproc__slab *s =
            __atomic_exchange_n(&slab_cache[i], NULL, __ATOMIC_ACQUIRE);
        if (s)
            return s;
    }
    return malloc(SLAB_BYTES);
}

static void slab_put(mproc__slab *s, size_t n)
{
    if (!s || !n || __atomic_sub_fetch(&s->live, n, __ATOMIC_ACQ_REL) != 0)
        return;
    for (int i = 0; i < SLAB_CACHE; i++) {
        mproc__slab *none = NULL;
        if (__atomic_compare_exchange_n(&slab_cache[i], &none, s, false,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            return;
    }
    free(s);
}

void mproc__slab_done(mproc__slab *s)
{
    slab_put(s, 1);
}

/* mproc__slab_alloc, inline where the type is known (the branches on it
 * fold away). */
static inline mproc_obj *carve(mproc__slab **sp, mproc_obj_type type,
                               size_t extra)
{
    if (!sp || extra > SLAB_MAX_OBJ)
        return mproc__obj_alloc(type, extra);
    /* Only the part of the union the type uses; str and bytes data follow
     * their u.s (INLINE_DATA). */
    size_t body = type == MPROC_OBJ_INT
                      ? offsetof(mproc_obj, u) + sizeof(((mproc_obj *)0)->u.num)
                  : type == MPROC_OBJ_FLOAT
                      ? offsetof(mproc_obj, u) + sizeof(double)
                  : type == MPROC_OBJ_STR || type == MPROC_OBJ_BYTES
                      ? INLINE_DATA + extra
                      : sizeof(mproc_obj) + extra;
    size_t need = (body + 15) & ~(size_t)15;
    mproc__slab *s = *sp;
    if (!s || SLAB_BYTES - s->used < need) {
        mproc__slab *n = slab_new();
        if (!n)
            return NULL;
        mproc__slab_done(s);
        n->live = 1; /* the filler's */
        n->used = SLAB_HEADER;
        *sp = s = n;
    }
    mproc_obj *o = (mproc_obj *)((char *)s + s->used);
    /* Fixed sizes: the compiler writes them out (no memset call). */
    memset(o, 0, offsetof(mproc_obj, u));
    if (type == MPROC_OBJ_INT)
        memset(&o->u.num, 0, sizeof o->u.num);
    else if (type == MPROC_OBJ_FLOAT)
        o->u.f = 0;
    else if (type == MPROC_OBJ_STR || type == MPROC_OBJ_BYTES)
        memset(&o->u.s, 0, INLINE_DATA - offsetof(mproc_obj, u.s));
    else
        memset(&o->u, 0, sizeof o->u);
    o->refs = 1;
    o->kind = (uint8_t)type;
    o->in_slab = 1;
    o->height = (uint32_t)s->used;
    s->used += need;
    /* Not yet seen by another thread: the filler counts plainly. */
    s->live++;
    return o;
}

mproc_obj *mproc__slab_alloc(mproc__slab **sp, mproc_obj_type type,
                             size_t extra)
{
    return carve(sp, type, extra);
}

/* Frees dropped values, a block's worth of slab values at once. */
typedef struct freer {
    mproc__slab *slab;
    size_t n;
} freer;

static void free_one(freer *f, mproc_obj *c)
{
    if (!c->in_slab) {
        free(c);
        return;
    }
    mproc__slab *s = (mproc__slab *)((char *)c - c->height);
    if (s != f->slab) {
        slab_put(f->slab, f->n);
        f->slab = s;
        f->n = 0;
    }
    f->n++;
}

/* A value nothing else holds and that holds nothing (a number, str,
 * bytes) is freed at once; others go on the list. */
static void drop_leaf_or_to(mproc_obj *c, mproc_obj **todo, freer *f)
{
    if (!c || mproc__is_small(c))
        return;
    if (c->kind >= MPROC_OBJ_INT && c->kind <= MPROC_OBJ_BYTES &&
        __atomic_load_n(&c->refs, __ATOMIC_ACQUIRE) == 1) {
        if (c->kind == MPROC_OBJ_INT)
            free(c->u.num.big);
        free_one(f, c);
        return;
    }
    drop_to(c, todo);
}

static void release_contents(mproc_obj *o, mproc_obj **todo, freer *f)
{
    switch ((mproc_obj_type)mproc__type(o)) {
    case MPROC_OBJ_INT:
        free(o->u.num.big);
        break;
    case MPROC_OBJ_BYTEARRAY:
        free(o->u.s.p);
        break;
    case MPROC_OBJ_TUPLE:
    case MPROC_OBJ_LIST:
        for (size_t i = 0; i < o->u.seq.n; i++)
            drop_leaf_or_to(o->u.seq.items[i], todo, f);
        free(o->u.seq.items);
        break;
    case MPROC_OBJ_DICT:
    case MPROC_OBJ_SET:
    case MPROC_OBJ_FROZENSET:
        for (size_t i = 0; i < o->u.t.n; i++) {
            drop_leaf_or_to(o->u.t.e[i].key, todo, f);
            drop_leaf_or_to(o->u.t.e[i].value, todo, f);
        }
        free(o->u.t.e);
        free(o->u.t.idx);
        break;
    case MPROC_OBJ_REDUCE:
        free(o->u.red.module);
        free(o->u.red.name);
        drop_to(o->u.red.args, todo);
        drop_to(o->u.red.state, todo);
        break;
    default:
        break;
    }
}

static void free_all(mproc_obj *todo)
{
    freer f = {NULL, 0};
    while (todo) {
        mproc_obj *c = todo;
        todo = c->next;
        release_contents(c, &todo, &f);
        free_one(&f, c);
    }
    slab_put(f.slab, f.n);
}

mproc_obj *mproc__obj_alloc(mproc_obj_type type, size_t extra)
{
    if (extra > SIZE_MAX - sizeof(mproc_obj))
        return NULL;
    mproc_obj *o = malloc(sizeof(mproc_obj) + extra);
    if (!o)
        return NULL;
    memset(o, 0, sizeof *o);
    o->refs = 1;
    o->kind = (uint8_t)type;
    return o;
}

mproc_obj *mproc_obj_ref(mproc_obj *o)
{
    if (o && !mproc__is_small(o) &&
        __atomic_load_n(&o->refs, __ATOMIC_RELAXED) != MPROC__OBJ_STATIC)
        __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED);
    return o;
}

void mproc_obj_unref(mproc_obj *o)
{
    mproc_obj *todo = NULL;
    drop_to(o, &todo);
    free_all(todo);
}

void mproc__obj_clear(mproc_obj *o)
{
    mproc_obj *todo = NULL;
    freer f = {NULL, 0};
    release_contents(o, &todo, &f);
    slab_put(f.slab, f.n);
    switch ((mproc_obj_type)mproc__type(o)) {
    case MPROC_OBJ_INT:
        o->u.num.big = NULL;
        o->u.num.nbig = 0;
        break;
    case MPROC_OBJ_BYTEARRAY:
        memset(&o->u.s, 0, sizeof o->u.s);
        break;
    case MPROC_OBJ_TUPLE:
    case MPROC_OBJ_LIST:
        memset(&o->u.seq, 0, sizeof o->u.seq);
        break;
    case MPROC_OBJ_DICT:
    case MPROC_OBJ_SET:
    case MPROC_OBJ_FROZENSET:
        memset(&o->u.t, 0, sizeof o->u.t);
        break;
    case MPROC_OBJ_REDUCE:
        memset(&o->u.red, 0, sizeof o->u.red);
        break;
    default:
        break;
    }
    free_all(todo);
}

/* ---- scalars ---------------------------------------------------------- */

mproc_obj *mproc_obj_none(void)
{
    return &none_obj;
}

mproc_obj *mproc_obj_bool(bool v)
{
    return v ? &true_obj : &false_obj;
}

mproc_obj *mproc__int_new(int64_t v)
{
    if (v >= MPROC__SMALL_MIN && v <= MPROC__SMALL_MAX)
        return mproc__small(v);
    mproc_obj *o = mproc__obj_alloc(MPROC_OBJ_INT, 0);
    if (o)
        o->u.num.v = v;
    return o;
}

mproc_obj *mproc_obj_int(int64_t v)
{
    return mproc__int_new(v);
}

mproc_obj *mproc_obj_int_from_bytes(const void *b, size_t n)
{
    if (!b && n)
        return NULL;
    const unsigned char *p = b;
    bool neg = n && (p[n - 1] & 0x80);
    unsigned char fill = neg ? 0xff : 0;
    /* Fewest bytes keeping the sign: drop fill bytes whose next lower
     * byte carries the same sign bit. */
    while (n > 1 && p[n - 1] == fill && ((p[n - 2] & 0x80) != 0) == neg)
        n--;
    if (n == 1 && p[0] == 0)
        n = 0;
    if (n <= 8) {
        uint64_t u = neg ? UINT64_MAX : 0;
        for (size_t i = 0; i < n; i++) {
            u &= ~((uint64_t)0xff << (8 * i));
            u |= (uint64_t)p[i] << (8 * i);
        }
        return mproc_obj_int((int64_t)u);
    }
    mproc_obj *o = mproc__obj_alloc(MPROC_OBJ_INT, 0);
    if (!o)
        return NULL;
    o->u.num.big = malloc(n);
    if (!o->u.num.big) {
        free(o);
        return NULL;
    }
    memcpy(o->u.num.big, p, n);
    o->u.num.nbig = n;
    o->u.num.v = neg ? -1 : 1;
    return o;
}

mproc_obj *mproc_obj_float(double v)
{
    mproc_obj *o = mproc__obj_alloc(MPROC_OBJ_FLOAT, 0);
    if (o)
        o->u.f = v;
    return o;
}

/* Bytes data lives right after the object. */
static mproc_obj *inline_bytes(mproc_obj_type type, const void *b, size_t n)
{
    return mproc__slab_bytes(NULL, type, b, n);
}

int mproc__utf8_check(const unsigned char *s, size_t n)
{
    if (n < 8) {
        /* Short ASCII (most dict keys): one test for all of it. */
        unsigned acc = 0;
        for (size_t k = 0; k < n; k++)
            acc |= s[k];
        if (acc < 0x80)
            return 0;
    }
    size_t i = 0;
    while (i < n) {
        /* Eight ASCII bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return -1;
        }
        if (n - i <= k)
            return -1;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return -1;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff)
            return -1;
        i += k + 1;
    }
    return 0;
}

uint32_t mproc__utf8_next(const unsigned char **pp)
{
    const unsigned char *p = *pp;
    uint32_t c = p[0];
    if (c < 0x80) {
        *pp = p + 1;
        return c;
    }
    if (c < 0xe0) {
        *pp = p + 2;
        return (c & 0x1f) << 6 | (p[1] & 0x3f);
    }
    if (c < 0xf0) {
        *pp = p + 3;
        return (c & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
    }
    *pp = p + 4;
    return (c & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
           (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
}

void mproc__utf8_put(mproc__buf *b, uint32_t cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | cp >> 6);
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | cp >> 12);
        u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | cp >> 18);
        u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    mproc__buf_put(b, u, n);
}

mproc_obj *mproc__slab_bytes(mproc__slab **slab, mproc_obj_type type,
                             const void *p, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    mproc_obj *o = type == MPROC_OBJ_STR ? carve(slab, MPROC_OBJ_STR, n + 1)
                                         : carve(slab, type, n + 1);
    if (!o)
        return NULL;
    /* Large data (malloc'ed alone) 16-byte aligned, for memcpy. */
    o->u.s.p = o->in_slab ? (char *)o + INLINE_DATA : (char *)(o + 1);
    if (n)
        memcpy(o->u.s.p, p, n);
    o->u.s.p[n] = 0;
    o->u.s.n = n;
    return o;
}

mproc_obj *mproc__str_trusted(const char *s, size_t n)
{
    return inline_bytes(MPROC_OBJ_STR, s, n);
}

mproc_obj *mproc_obj_str(const char *s, size_t n)
{
    if ((!s && n) || mproc__utf8_check((const unsigned char *)s, n) < 0)
        return NULL;
    return inline_bytes(MPROC_OBJ_STR, s, n);
}

mproc_obj *mproc_obj_str_c(const char *s)
{
    return s ? mproc_obj_str(s, strlen(s)) : NULL;
}

mproc_obj *mproc_obj_bytes(const void *b, size_t n)
{
    if (!b && n)
        return NULL;
    return inline_bytes(MPROC_OBJ_BYTES, b, n);
}

mproc_obj *mproc_obj_bytearray(const void *b, size_t n)
{
    if (!b && n)
        return NULL;
    mproc_obj *o = mproc__obj_alloc(MPROC_OBJ_BYTEARRAY, 0);
    if (o && mproc_obj_bytearray_extend(o, b, n) < 0) {
        free(o);
        return NULL;
    }
    return o;
}

int mproc_obj_bytearray_extend(mproc_obj *o, const void *p, size_t n)
{
    if (!o || mproc__type(o) != MPROC_OBJ_BYTEARRAY || (!p && n))
        return -EINVAL;
    if (n > SIZE_MAX / 2 - o->u.s.n)
        return -ENOMEM;
    size_t need = o->u.s.n + n + 1;
    if (need > o->u.s.cap) {
        size_t cap = o->u.s.cap ? o->u.s.cap : 16;
        while (cap < need)
            cap *= 2;
        char *q = realloc(o->u.s.p, cap);
        if (!q)
            return -ENOMEM;
        o->u.s.p = q;
        o->u.s.cap = cap;
    }
    if (n)
        memcpy(o->u.s.p + o->u.s.n, p, n);
    o->u.s.n += n;
    o->u.s.p[o->u.s.n] = 0;
    return 0;
}

/* ---- containers ------------------------------------------------------- */

static int seq_reserve(mproc_obj *o, size_t need)
{
    if (need <= o->u.seq.cap)
        return 0;
    return MPROC__GROW(o->u.seq.items, o->u.seq.cap, need);
}

/* A tuple's cached hash takes no room of its own in the union. */
_Static_assert(sizeof(((mproc_obj *)0)->u.seq) <= sizeof(((mproc_obj *)0)->u.t),
               "seq fits the union");

mproc_obj *mproc_obj_tuple_new(size_t n)
{
    mproc_obj *o = mproc__obj_alloc(MPROC_OBJ_TUPLE, 0);
    if (!o)
        return NULL;
    if (n) {
        if (n > SIZE_MAX / sizeof(mproc_obj *) ||
            !(o->u.seq.items = malloc(n * sizeof(mproc_obj *)))) {
            free(o);
            return NULL;
        }
        for (size_t i = 0; i < n; i++)
            o->u.seq.items[i] = &none_obj;
        o->u.seq.n = o->u.seq.cap = n;
    }
    return o;
}

mproc_obj *mproc__tuple_take(mproc_obj **items, size_t n)
{
    mproc_obj *o = mproc__obj_alloc(MPROC_OBJ_TUPLE, 0);
    if (o && n) {
        o->u.seq.items = malloc(n * sizeof(mproc_obj *));
        if (!o->u.seq.items) {
            free(o);
            o = NULL;
        } else {
            memcpy(o->u.seq.items, items, n * sizeof(mproc_obj *));
            o->u.seq.n = o->u.seq.cap = n;
        }
    }
    if (!o)
        for (size_t i = 0; i < n; i++)
            mproc_obj_unref(items[i]);
    return o;
}

mproc_obj *mproc_obj_tuple_of(size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    mproc_obj *t = mproc_obj_tuple_new(n);
    bool bad = !t;
    for (size_t i = 0; i < n; i++) {
        mproc_obj *item = va_arg(ap, mproc_obj *);
        if (!item)
            bad = true;
        if (t)
            t->u.seq.items[i] = item ? item : &none_obj;
        else
            mproc_obj_unref(item);
    }
    va_end(ap);
    if (bad) {
        mproc_obj_unref(t);
        return NULL;
    }
    return t;
}

int mproc_obj_tuple_set(mproc_obj *t, size_t i, mproc_obj *item)
{
    if (!t || mproc__type(t) != MPROC_OBJ_TUPLE || i >= t->u.seq.n) {
        mproc_obj_unref(item);
        return -EINVAL;
    }
    if (!item)
        return -ENOMEM;
    mproc_obj_unref(t->u.seq.items[i]);
    t->u.seq.items[i] = item;
    __atomic_store_n(&t->u.seq.hashed, false, __ATOMIC_RELAXED);
    return 0;
}

mproc_obj *mproc_obj_list_new(void)
{
    return mproc__obj_alloc(MPROC_OBJ_LIST, 0);
}

int mproc_obj_list_append(mproc_obj *l, mproc_obj *item)
{
    if (!l || mproc__type(l) != MPROC_OBJ_LIST) {
        mproc_obj_unref(item);
        return -EINVAL;
    }
    if (!item)
        return -ENOMEM;
    if (seq_reserve(l, l->u.seq.n + 1) < 0) {
        mproc_obj_unref(item);
        return -ENOMEM;
    }
    l->u.seq.items[l->u.seq.n++] = item;
    return 0;
}

int mproc_obj_list_set(mproc_obj *l, size_t i, mproc_obj *item)
{
    if (!l || mproc__type(l) != MPROC_OBJ_LIST || i >= l->u.seq.n) {
        mproc_obj_unref(item);
        return -EINVAL;
    }
    if (!item)
        return -ENOMEM;
    mproc_obj *old = l->u.seq.items[i];
    l->u.seq.items[i] = item;
    mproc_obj_unref(old);
    return 0;
}

mproc_obj *mproc_obj_dict_new(void)
{
    return mproc__obj_alloc(MPROC_OBJ_DICT, 0);
}

mproc_obj *mproc_obj_set_new(void)
{
    return mproc__obj_alloc(MPROC_OBJ_SET, 0);
}

mproc_obj *mproc_obj_frozenset_new(void)
{
    return mproc__obj_alloc(MPROC_OBJ_FROZENSET, 0);
}

/* ---- accessors -------------------------------------------------------- */

mproc_obj_type mproc_obj_type_of(const mproc_obj *o)
{
    return o ? (mproc_obj_type)mproc__type(o) : MPROC_OBJ_NONE;
}

const char *mproc_obj_type_name(const mproc_obj *o)
{
    static const char *const names[] = {
        "NoneType",  "bool",  "int",  "float", "str", "bytes",
        "bytearray", "tuple", "list", "dict",  "set", "frozenset"};
    if (o && mproc__type(o) == MPROC_OBJ_REDUCE)
        return o->u.red.name;
    return names[mproc_obj_type_of(o)];
}

bool mproc_obj_truth(const mproc_obj *o)
{
    switch (mproc_obj_type_of(o)) {
    case MPROC_OBJ_NONE:
        return false;
    case MPROC_OBJ_BOOL:
        return o->u.b;
    case MPROC_OBJ_INT:
        return mproc__int_big(o) || mproc__int_v(o) != 0;
    case MPROC_OBJ_FLOAT:
        return o->u.f != 0.0;
    case MPROC_OBJ_REDUCE:
        return true;
    default:
        return mproc_obj_len(o) != 0;
    }
}

int mproc_obj_int_value(const mproc_obj *o, int64_t *out)
{
    if (!o || !out)
        return o ? -EINVAL : MPROC_ETYPE;
    if (mproc__type(o) == MPROC_OBJ_BOOL) {
        *out = o->u.b;
        return 0;
    }
    if (mproc__type(o) != MPROC_OBJ_INT)
        return MPROC_ETYPE;
    if (mproc__int_big(o))
        return -ERANGE;
    *out = mproc__int_v(o);
    return 0;
}

long mproc_obj_int_bytes(const mproc_obj *o, void *buf, size_t cap)
{
    int64_t v = 0;
    if (!o ||
        (mproc__type(o) != MPROC_OBJ_INT && mproc__type(o) != MPROC_OBJ_BOOL))
        return MPROC_ETYPE;
    if (mproc__type(o) == MPROC_OBJ_INT && mproc__int_big(o)) {
        if (buf && cap >= mproc__int_nbig(o))
            memcpy(buf, mproc__int_big(o), mproc__int_nbig(o));
        return (long)mproc__int_nbig(o);
    }
    (void)mproc_obj_int_value(o, &v);
    unsigned char b[8];
    size_t n = 0;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)v >> (8 * i));
    if (v != 0) {
        n = 8;
        unsigned char fill = v < 0 ? 0xff : 0;
        while (n > 1 && b[n - 1] == fill && ((b[n - 2] & 0x80) != 0) == (v < 0))
            n--;
    }
    if (buf && cap >= n)
        memcpy(buf, b, n);
    return (long)n;
}

int mproc_obj_float_value(const mproc_obj *o, double *out)
{
    if (!out)
        return -EINVAL;
    switch (mproc_obj_type_of(o)) {
    case MPROC_OBJ_FLOAT:
        *out = o->u.f;
        return 0;
    case MPROC_OBJ_BOOL:
        *out = o->u.b;
        return 0;
    case MPROC_OBJ_INT:
        return mproc__int_to_double(o, out);
    default:
        return MPROC_ETYPE;
    }
}

const char *mproc_obj_str_value(const mproc_obj *o, size_t *len)
{
    if (!o || mproc__type(o) != MPROC_OBJ_STR)
        return NULL;
    if (len)
        *len = o->u.s.n;
    return o->u.s.p;
}

const unsigned char *mproc_obj_bytes_value(const mproc_obj *o, size_t *len)
{
    if (!o || (mproc__type(o) != MPROC_OBJ_BYTES &&
               mproc__type(o) != MPROC_OBJ_BYTEARRAY))
        return NULL;
    if (len)
        *len = o->u.s.n;
    return (const unsigned char *)o->u.s.p;
}

size_t mproc_obj_len(const mproc_obj *o)
{
    switch (mproc_obj_type_of(o)) {
    case MPROC_OBJ_STR:
    case MPROC_OBJ_BYTES:
    case MPROC_OBJ_BYTEARRAY:
        return o->u.s.n;
    case MPROC_OBJ_TUPLE:
    case MPROC_OBJ_LIST:
        return o->u.seq.n;
    case MPROC_OBJ_DICT:
    case MPROC_OBJ_SET:
    case MPROC_OBJ_FROZENSET:
        return o->u.t.n;
    default:
        return 0;
    }
}

mproc_obj *mproc_obj_item(const mproc_obj *o, size_t i)
{
    switch (mproc_obj_type_of(o)) {
    case MPROC_OBJ_TUPLE:
    case MPROC_OBJ_LIST:
        return i < o->u.seq.n ? o->u.seq.items[i] : NULL;
    case MPROC_OBJ_SET:
    case MPROC_OBJ_FROZENSET:
        return i < o->u.t.n ? o->u.t.e[i].key : NULL;
    default:
        return NULL;
    }
}

int mproc_obj_dict_item(const mproc_obj *d, size_t i, mproc_obj **key,
                        mproc_obj **value)
{
    if (!d || mproc__type(d) != MPROC_OBJ_DICT || i >= d->u.t.n)
        return -EINVAL;
    if (key)
        *key = d->u.t.e[i].key;
    if (value)
        *value = d->u.t.e[i].value;
    return 0;
}

int mproc_obj_contains(const mproc_obj *s, const mproc_obj *item)
{
    if (!mproc__is_table(s) || !item)
        return -EINVAL;
    long at = mproc__table_lookup(&s->u.t, item);
    return at >= 0 ? 1 : at == -1 ? 0 : (int)at;
}

mproc_obj *mproc_obj_dict_get(const mproc_obj *d, const mproc_obj *key)
{
    if (!d || mproc__type(d) != MPROC_OBJ_DICT || !key)
        return NULL;
    long at = mproc__table_lookup(&d->u.t, key);
    return at >= 0 ? d->u.t.e[at].value : NULL;
}

mproc_obj *mproc_obj_dict_get_str(const mproc_obj *d, const char *key)
{
    if (!d || mproc__type(d) != MPROC_OBJ_DICT || !key)
        return NULL;
    /* A key on the stack, never escaping this call. */
    mproc_obj k = {.refs = MPROC__OBJ_STATIC, .kind = MPROC_OBJ_STR};
    k.u.s.p = (char *)key;
    k.u.s.n = strlen(key);
    return mproc_obj_dict_get(d, &k);
}

const char *mproc_obj_reduce_module(const mproc_obj *o)
{
    return o && mproc__type(o) == MPROC_OBJ_REDUCE ? o->u.red.module : NULL;
}

const char *mproc_obj_reduce_name(const mproc_obj *o)
{
    return o && mproc__type(o) == MPROC_OBJ_REDUCE ? o->u.red.name : NULL;
}

mproc_obj *mproc_obj_reduce_args(const mproc_obj *o)
{
    return o && mproc__type(o) == MPROC_OBJ_REDUCE ? o->u.red.args : NULL;
}

mproc_obj *mproc_obj_reduce_state(const mproc_obj *o)
{
    return o && mproc__type(o) == MPROC_OBJ_REDUCE ? o->u.red.state : NULL;
}

bool mproc_obj_reduce_newobj(const mproc_obj *o)
{
    return o && mproc__type(o) == MPROC_OBJ_REDUCE && o->newobj;
}

int mproc_obj_is_exception(const mproc_obj *o)
{
    if (!o || mproc__type(o) != MPROC_OBJ_REDUCE || !o->u.red.args)
        return 0;
    if (strcmp(o->u.red.module, "queue") == 0) /* queue.Empty, queue.Full */
        return strcmp(o->u.red.name, "Empty") == 0 ||
               strcmp(o->u.red.name, "Full") == 0;
    if (strcmp(o->u.red.module, "threading") == 0)
        return strcmp(o->u.red.name, "BrokenBarrierError") == 0;
    return strcmp(o->u.red.module, "builtins") == 0 &&
           mproc__is_exception_name(o->u.red.name);
}
