/*
 * obj/cmp.c - Python's == and hash() on values. Numbers compare by value
 * across bool, int and float and hash as CPython does (so dict keys 1,
 * 1.0 and True are one key); tuples and frozensets hash with CPython's
 * own combinations; str and bytes with a keyed hash of our own, its key
 * random per process (CPython's is randomized per process too). Recursion is
 * bounded by MPROC_OBJ_MAX_DEPTH.
 */
#include "obj/obj_impl.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

static bool is_num(const mproc_obj *o)
{
    return mproc__type(o) == MPROC_OBJ_BOOL ||
           mproc__type(o) == MPROC_OBJ_INT || mproc__type(o) == MPROC_OBJ_FLOAT;
}

static int num_eq(const mproc_obj *a, const mproc_obj *b)
{
    if (mproc__type(a) == MPROC_OBJ_FLOAT && mproc__type(b) == MPROC_OBJ_FLOAT)
        return a->u.f == b->u.f;
    if (mproc__type(b) == MPROC_OBJ_FLOAT) {
        const mproc_obj *t = a;
        a = b;
        b = t;
    }
    if (mproc__type(a) == MPROC_OBJ_FLOAT) {
        if (mproc__type(b) == MPROC_OBJ_BOOL)
            return a->u.f == (b->u.b ? 1.0 : 0.0);
        return mproc__int_eq_double(b, a->u.f);
    }
    /* ints and bools */
    bool ai = mproc__type(a) == MPROC_OBJ_INT;
    bool bi = mproc__type(b) == MPROC_OBJ_INT;
    const unsigned char *ab = ai ? mproc__int_big(a) : NULL;
    const unsigned char *bb = bi ? mproc__int_big(b) : NULL;
    if (ab || bb)
        return ab && bb && mproc__int_nbig(a) == mproc__int_nbig(b) &&
               memcmp(ab, bb, mproc__int_nbig(a)) == 0;
    int64_t x = ai ? mproc__int_v(a) : a->u.b;
    int64_t y = bi ? mproc__int_v(b) : b->u.b;
    return x == y;
}

static bool is_bytes(const mproc_obj *o)
{
    return mproc__type(o) == MPROC_OBJ_BYTES ||
           mproc__type(o) == MPROC_OBJ_BYTEARRAY;
}

static bool is_set(const mproc_obj *o)
{
    return mproc__type(o) == MPROC_OBJ_SET ||
           mproc__type(o) == MPROC_OBJ_FROZENSET;
}

int mproc__obj_eq(const mproc_obj *a, const mproc_obj *b, int depth)
{
    if (a == b)
        return 1;
    if (depth >= MPROC_OBJ_MAX_DEPTH)
        return -ELOOP;
    if (is_num(a) && is_num(b))
        return num_eq(a, b);
    if (is_bytes(a) && is_bytes(b))
        return a->u.s.n == b->u.s.n &&
               (a->u.s.n == 0 || memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0);
    if (is_set(a) && is_set(b)) {
        if (a->u.t.n != b->u.t.n)
            return 0;
        for (size_t i = 0; i < a->u.t.n; i++) {
            long at = mproc__table_find(&b->u.t, a->u.t.e[i].key,
                                        a->u.t.e[i].hash, depth + 1);
            if (at < 0)
                return at == -1 ? 0 : (int)at;
        }
        return 1;
    }
    if (mproc__type(a) != mproc__type(b))
        return 0;
    switch ((mproc_obj_type)mproc__type(a)) {
    case MPROC_OBJ_NONE:
        return 1;
    case MPROC_OBJ_STR:
        return a->u.s.n == b->u.s.n &&
               memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
    case MPROC_OBJ_TUPLE:
    case MPROC_OBJ_LIST:
        if (a->u.seq.n != b->u.seq.n)
            return 0;
        for (size_t i = 0; i < a->u.seq.n; i++) {
            int r =
                mproc__obj_eq(a->u.seq.items[i], b->u.seq.items[i], depth + 1);
            if (r <= 0)
                return r;
        }
        return 1;
    case MPROC_OBJ_DICT:
        if (a->u.t.n != b->u.t.n)
            return 0;
        for (size_t i = 0; i < a->u.t.n; i++) {
            const mproc__entry *e = &a->u.t.e[i];
            long at = mproc__table_find(&b->u.t, e->key, e->hash, depth + 1);
            if (at < 0)
                return at == -1 ? 0 : (int)at;
            int r = mproc__obj_eq(e->value, b->u.t.e[at].value, depth + 1);
            if (r <= 0)
                return r;
        }
        return 1;
    case MPROC_OBJ_REDUCE: {
        if (strcmp(a->u.red.module, b->u.red.module) != 0 ||
            strcmp(a->u.red.name, b->u.red.name) != 0 ||
            a->newobj != b->newobj || !a->u.red.args != !b->u.red.args ||
            !a->u.red.state != !b->u.red.state)
            return 0;
        int r = 1;
        if (a->u.red.args)
            r = mproc__obj_eq(a->u.red.args, b->u.red.args, depth + 1);
        if (r > 0 && a->u.red.state)
            r = mproc__obj_eq(a->u.red.state, b->u.red.state, depth + 1);
        return r;
    }
    default:
        return 0;
    }
}

int mproc_obj_eq(const mproc_obj *a, const mproc_obj *b)
{
    if (!a || !b)
        return a == b;
    return mproc__obj_eq(a, b, 0);
}

/* ---- hashing ---------------------------------------------------------- */

/* A key chosen at random once per process (as Python does with
 * PYTHONHASHSEED): a peer cannot pick str or bytes keys that collide in
 * a dict to make inserting them quadratic. */
static uint64_t hash_key;
static pthread_once_t hash_key_once = PTHREAD_ONCE_INIT;

static bool hash_key_made; /* atomic: hash_key is set */

static void make_hash_key(void)
{
    if (mproc__random(&hash_key, sizeof hash_key) < 0)
        hash_key = (uint64_t)(uintptr_t)&hash_key * 0x9e3779b97f4a7c15ull;
    __atomic_store_n(&hash_key_made, true, __ATOMIC_RELEASE);
}

static int64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    /* pthread_once only until the key is made (a call saved per hash). */
    if (!__atomic_load_n(&hash_key_made, __ATOMIC_ACQUIRE))
        pthread_once(&hash_key_once, make_hash_key);
    uint64_t h = (seed ^ hash_key) ^ (n * 0x9e3779b97f4a7c15ull);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 29;
    }
    /* The last 0 to 7 bytes (a memcpy of a variable length would be a
     * call into libc for every short key): 4 to 7 as two 4-byte words that
     * may overlap, fewer one by one. */
    uint64_t w = 0;
    if (n - i >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, s + i, 4);
        memcpy(&hi, s + n - 4, 4);
        w = (uint64_t)hi << 32 | lo;
    } else {
        for (size_t k = n; k > i; k--)
            w = w << 8 | s[k - 1];
    }
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 32;
    int64_t r = (int64_t)h;
    return r == -1 ? -2 : r;
}

#define XXPRIME_1 11400714785074694791ull
#define XXPRIME_2 14029467366897019727ull
#define XXPRIME_5 2870177450012600261ull

static uint64_t shuffle_bits(uint64_t h)
{
    return ((h ^ 89869747ull) ^ (h << 16)) * 3644798167ull;
}

int mproc__obj_hash(const mproc_obj *o, int64_t *out, int depth)
{
    if (depth >= MPROC_OBJ_MAX_DEPTH)
        return -ELOOP;
    switch ((mproc_obj_type)mproc__type(o)) {
    case MPROC_OBJ_NONE:
        *out = 0xfca86420; /* CPython 3.12's */
        return 0;
    case MPROC_OBJ_BOOL:
        *out = o->u.b;
        return 0;
    case MPROC_OBJ_INT:
        *out = mproc__int_big(o)
                   ? mproc__hash_big(mproc__int_big(o), mproc__int_nbig(o))
                   : mproc__hash_i64(mproc__int_v(o));
        return 0;
    case MPROC_OBJ_FLOAT:
        *out = mproc__hash_double(o->u.f);
        return 0;
    case MPROC_OBJ_STR:
        *out = hash_bytes(o->u.s.p, o->u.s.n, 0x5354);
        return 0;
    case MPROC_OBJ_BYTES:
        *out = hash_bytes(o->u.s.p, o->u.s.n, 0x4259);
        return 0;
    case MPROC_OBJ_TUPLE: {
        /* Kept once computed (a tuple no longer changes once shared;
         * mproc_obj_tuple_set forgets it): a tuple of shared parts nested
         * hashes each distinct tuple once, not once per path. */
        if (__atomic_load_n(&o->u.seq.hashed, __ATOMIC_ACQUIRE)) {
            *out = __atomic_load_n(&o->u.seq.hash, __ATOMIC_RELAXED);
            return 0;
        }
        /* CPython 3.8+'s tuple hash (xxHash-like). */
        uint64_t acc = XXPRIME_5;
        for (size_t i = 0; i < o->u.seq.n; i++) {
            int64_t h;
            int r = mproc__obj_hash(o->u.seq.items[i], &h, depth + 1);
            if (r < 0)
                return r;
            acc += (uint64_t)h * XXPRIME_2;
            acc = acc << 31 | acc >> 33;
            acc *= XXPRIME_1;
        }
        acc += o->u.seq.n ^ (XXPRIME_5 ^ 3527539ull);
        *out = acc == UINT64_MAX ? 1546275796 : (int64_t)acc;
        mproc_obj *w = (mproc_obj *)o; /* the cache only */
        __atomic_store_n(&w->u.seq.hash, *out, __ATOMIC_RELAXED);
        __atomic_store_n(&w->u.seq.hashed, true, __ATOMIC_RELEASE);
        return 0;
    }
    case MPROC_OBJ_FROZENSET: {
        /* CPython's frozenset hash: order does not matter. */
        uint64_t h = 0;
        for (size_t i = 0; i < o->u.t.n; i++)
            h ^= shuffle_bits((uint64_t)o->u.t.e[i].hash);
        h ^= ((uint64_t)o->u.t.n + 1) * 1927868237ull;
        h ^= (h >> 11) ^ (h >> 25);
        h = h * 69069u + 907133923ull;
        *out = h == UINT64_MAX ? 590923713 : (int64_t)h;
        return 0;
    }
    case MPROC_OBJ_REDUCE: {
        /* Hashable when what it holds is (an exception is hashed by
         * identity in Python; equal values here must hash alike). */
        int64_t h = hash_bytes(o->u.red.name, strlen(o->u.red.name), 0x5244);
        if (o->u.red.args) {
            int64_t a;
            int r = mproc__obj_hash(o->u.red.args, &a, depth + 1);
            if (r < 0)
                return r;
            h ^= a;
        }
        if (o->u.red.state) {
            int64_t s;
            int r = mproc__obj_hash(o->u.red.state, &s, depth + 1);
            if (r < 0)
                return r;
            h ^= (int64_t)((uint64_t)s * 31);
        }
        *out = h == -1 ? -2 : h;
        return 0;
    }
    default:
        return MPROC_ETYPE;
    }
}

int mproc_obj_hash(const mproc_obj *o, int64_t *out)
{
    if (!o || !out)
        return -EINVAL;
    return mproc__obj_hash(o, out, 0);
}
