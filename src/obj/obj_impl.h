/*
 * obj/obj_impl.h - Python's plain data as C values (obj.c), their numbers
 * (num.c: ints of any size as two's-complement bytes, Python's numeric
 * hash), comparison and hashing (cmp.c), repr (repr.c), and the pickle
 * codec (pickle_dump.c; the decoder in pickle_load.c, pickle_globals.c and
 * pickle_text.c, sharing pickle_impl.h).
 *
 * This layer sits right above core/ and below process/: connections and
 * queues pickle through it. Everything here is mproc__-prefixed and hidden.
 */
#ifndef MPROC__OBJ_IMPL_H
#define MPROC__OBJ_IMPL_H

#include "core/core.h"

/* One dict, set or frozenset item; value is NULL in sets. */
typedef struct mproc__entry {
    mproc_obj *key, *value;
    int64_t hash;
} mproc__entry;

/* Items in insertion order, and an open-addressing index over them (slot
 * holds entry index + 1; 0 is empty) of mask + 1 slots, or none while
 * there are few items (looked up by a scan). */
typedef struct mproc__table {
    mproc__entry *e;
    size_t n, cap;
    uint32_t *idx;
    size_t mask;
} mproc__table;

/*
 * A value is a pointer to this struct, or, for an int in SMALL_MIN ..
 * SMALL_MAX, a tagged pointer: the int itself shifted left by one with the
 * low bit set (no memory behind it, like None, True and False nothing to
 * count or free). Only the helpers below read a value's type and int:
 * mproc__type(o), never o->kind.
 */
struct mproc_obj {
    size_t refs;     /* atomic; SIZE_MAX: static, never freed */
    uint8_t kind;    /* the type; read through mproc__type() */
    uint8_t newobj;  /* reduce values */
    uint8_t mark;    /* pickle_load's cycle walk */
    uint8_t in_slab; /* allocated in a slab (below), at offset height */
    uint32_t height; /* containers: pickle_load's cycle walk */
    mproc_obj *next; /* free list while freeing; pickle_load's list */
    union {
        bool b;
        struct {
            int64_t v;
            unsigned char *big; /* NULL when v holds it */
            size_t nbig;
        } num; /* an int not small enough to be tagged */
        double f;
        struct {
            char *p; /* str: NUL-terminated; bytes inline */
            size_t n;
            size_t cap; /* bytearray only: in a slab, str and bytes data
                         * start here */
        } s;
        struct {
            mproc_obj **items;
            size_t n, cap;
            /* tuples: hash() once computed (hashed set, both atomic):
             * hashing shared parts nested stays linear */
            int64_t hash;
            bool hashed;
        } seq;
        mproc__table t;
        struct {
            char *module, *name;
            mproc_obj *args, *state;
        } red;
    } u;
};

#define MPROC__OBJ_STATIC SIZE_MAX

/* Ints a tagged pointer holds: 62 bits and a sign. */
#define MPROC__SMALL_MAX (((int64_t)1 << 62) - 1)
#define MPROC__SMALL_MIN (-((int64_t)1 << 62))

static inline bool mproc__is_small(const mproc_obj *o)
{
    return ((uintptr_t)o & 1) != 0;
}

/* The int v as a tagged pointer; v within SMALL_MIN .. SMALL_MAX. */
static inline mproc_obj *mproc__small(int64_t v)
{
    return (mproc_obj *)(((uintptr_t)(uint64_t)v << 1) | 1);
}

/* The type of a value (not NULL). */
static inline mproc_obj_type mproc__type(const mproc_obj *o)
{
    return mproc__is_small(o) ? MPROC_OBJ_INT : (mproc_obj_type)o->kind;
}

/* A tuple, list, dict, set, frozenset or reduce value: a value that holds
 * others (the types from MPROC_OBJ_TUPLE on). */
static inline bool mproc__is_container(const mproc_obj *o)
{
    return mproc__type(o) >= MPROC_OBJ_TUPLE;
}

/* An int's value when it fits int64 (its big bytes NULL), either form. */
static inline int64_t mproc__int_v(const mproc_obj *o)
{
    /* An arithmetic shift of the signed pointer bits undoes the tag. */
    return mproc__is_small(o) ? (int64_t)(intptr_t)o >> 1 : o->u.num.v;
}

/* An int's two's-complement bytes beyond int64, NULL when it fits. */
static inline const unsigned char *mproc__int_big(const mproc_obj *o)
{
    return mproc__is_small(o) ? NULL : o->u.num.big;
}

/* How many bytes mproc__int_big holds (0 when it is NULL). */
static inline size_t mproc__int_nbig(const mproc_obj *o)
{
    return mproc__is_small(o) ? 0 : o->u.num.nbig;
}

/* An int value of v: tagged when it fits, else an object (NULL when out
 * of memory). */
mproc_obj *mproc__int_new(int64_t v);

/* ---- obj.c ----------------------------------------------------------- */

/*
 * A block that a decoder carves small leaf values (ints, floats, short
 * str and bytes) out of, instead of one malloc each. live counts the
 * values in it plus one while the decoder still fills it; the last value
 * dropped frees the block. A leaf value in a slab has in_slab set and its
 * offset from the block in height (leaves have no other use for it).
 */
typedef struct mproc__slab {
    size_t live;
    size_t used;
} mproc__slab;

/* A value of type carved from *slab (a new block when it is full or
 * NULL; values too big, or slab NULL, get a malloc of their own). The caller,
 * which owns the block's extra count, ends with mproc__slab_done. The value's
 * count is 1; NULL when out of memory. */
mproc_obj *mproc__slab_alloc(mproc__slab **slab, mproc_obj_type type,
                             size_t extra);
/* Drops the filler's count on a block (NULL ok). */
void mproc__slab_done(mproc__slab *slab);
/* A str or bytes from validated bytes, carved from *slab (or slab NULL:
 * a malloc of its own). */
mproc_obj *mproc__slab_bytes(mproc__slab **slab, mproc_obj_type type,
                             const void *p, size_t n);

/* A new object of a type, zeroed, one reference; extra bytes follow it
 * (str and bytes data). NULL when out of memory. */
mproc_obj *mproc__obj_alloc(mproc_obj_type type, size_t extra);
/* A str from UTF-8 the caller has validated (copied). */
mproc_obj *mproc__str_trusted(const char *s, size_t n);
/* 0 when s[0..n) is UTF-8 (surrogates allowed), -1 otherwise. */
int mproc__utf8_check(const unsigned char *s, size_t n);
/* The next code point of valid UTF-8 at *p (advanced). */
uint32_t mproc__utf8_next(const unsigned char **p);
/* Appends code point cp as UTF-8 (surrogates as three bytes). */
void mproc__utf8_put(mproc__buf *b, uint32_t cp);
/* A tuple of n items, taking them over (the array is copied; on failure
 * the items are dropped). */
mproc_obj *mproc__tuple_take(mproc_obj **items, size_t n);
/* A dict, set or frozenset (those with a table). */
bool mproc__is_table(const mproc_obj *o);
/* Finds key in a table: its entry index, -1 when absent, or -ELOOP /
 * MPROC_ETYPE. hash is the key's. */
long mproc__table_find(const mproc__table *t, const mproc_obj *key,
                       int64_t hash, int depth);
/* mproc__table_find with the key's hash computed here: the index, -1
 * when absent, or the hash's or the search's error. */
long mproc__table_lookup(const mproc__table *t, const mproc_obj *key);
/* Adds item (stolen) of that hash to a set's table unless an equal one
 * is there: 0, -ENOMEM or -ELOOP. */
int mproc__set_put(mproc__table *t, mproc_obj *item, int64_t hash);
/* Makes room for more items without growing again: 0 or -ENOMEM. */
int mproc__table_reserve(mproc__table *t, size_t more);
/* Adds (key, value) with hash, both stolen, replacing the value of an
 * equal key. 0, -ENOMEM, -ELOOP. */
int mproc__table_put(mproc__table *t, mproc_obj *key, mproc_obj *value,
                     int64_t hash, int depth);
/* Drops everything o holds, leaving it an empty container (pickle_load
 * breaks cycles with it). */
void mproc__obj_clear(mproc_obj *o);
bool mproc__is_exception_name(const char *name);

/* ---- num.c ----------------------------------------------------------- */

/* An int from a magnitude of n little-endian 32-bit limbs and a sign. */
mproc_obj *mproc__int_from_mag(const uint32_t *mag, size_t n, bool neg);
/* The magnitude of an int's two's-complement bytes b[0..n): a malloc'ed
 * limb array into *mag (n/4 + 2 limbs) with its length, and the sign.
 * Returns 0 or -ENOMEM. */
int mproc__int_mag(const unsigned char *b, size_t n, uint32_t **mag,
                   size_t *nmag, bool *neg);
/* Decimal text of an int into b. */
void mproc__int_decimal(const mproc_obj *o, mproc__buf *b);
/* Python's hash of an int64, of a big int, of a double. */
int64_t mproc__hash_i64(int64_t v);
int64_t mproc__hash_big(const unsigned char *b, size_t n);
int64_t mproc__hash_double(double d);
/* Exact comparison of an int (small or big) with a double. */
bool mproc__int_eq_double(const mproc_obj *i, double d);
/* An int as a double, rounded as Python does: 0 or -ERANGE. */
int mproc__int_to_double(const mproc_obj *i, double *out);
/* Shortest repr of a double, as Python's repr(float). */
void mproc__double_repr(double d, mproc__buf *b);
/* Parses decimal/float text in the C locale. */
double mproc__strtod(const char *s, char **end);

/* ---- cmp.c ----------------------------------------------------------- */

int mproc__obj_eq(const mproc_obj *a, const mproc_obj *b, int depth);
int mproc__obj_hash(const mproc_obj *o, int64_t *out, int depth);

/* ---- repr.c ---------------------------------------------------------- */

int mproc__obj_repr(const mproc_obj *o, mproc__buf *b, int depth);

/* ---- pickle_dump.c --------------------------------------------------- */

/* Appends the pickle of o to b (see mproc_pickle_dumps); 0 or -EINVAL,
 * -ENOMEM, -ELOOP, -EOVERFLOW. Connections and queues send through it. */
int mproc__pickle_dump(const mproc_obj *o, int protocol, mproc__buf *b);

#endif
