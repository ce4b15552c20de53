/*
 * obj/pickle_impl.h - what the pickle decoder's files share: the
 * decoder's state and the costs counted against its limits, its failure
 * and input helpers, and the stack operations every opcode ends with
 * (inline: the opcode loop calls them for every value). pickle_load.c has
 * the opcode loop, the stack, the memo and the check of the finished
 * value; pickle_globals.c the allow-list of globals and the values
 * REDUCE, NEWOBJ and BUILD make from them; pickle_text.c the text forms
 * of protocols 0 and 1.
 */
#ifndef MPROC__PICKLE_IMPL_H
#define MPROC__PICKLE_IMPL_H

#include "obj/obj_impl.h"

#define DEFAULT_MAX_MEMO  ((size_t)1 << 20)
#define DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define OBJ_COST          64 /* bytes counted per object made */
#define SLOT_COST         16 /* per item of a tuple or list */
#define ENTRY_COST        40 /* per item of a dict or set */

typedef struct loader {
    const unsigned char *p;
    size_t len, pos, at; /* at: the current opcode's offset */
    unsigned char opc;
    mproc_obj **stack;
    size_t sn, scap;
    size_t *marks;
    size_t mn, mcap;
    mproc_obj **memo;
    size_t memocap, memo_count;
    mproc_obj *made;   /* changeable containers, one reference each */
    mproc__slab *slab; /* where small leaf values are carved from */
    size_t containers; /* pushed (an upper bound of those made) */
    bool shared;       /* a container was pushed again (GET, DUP) */
    size_t bytes, max_bytes, max_memo, max_depth;
    char *err;
    size_t errcap;
    int status; /* first failure */
} loader;

/* Records the first failure (MPROC_EPICKLE) with a message naming the
 * current opcode and offset; returns L->status. */
__attribute__((format(printf, 2, 3))) int mproc__pk_fail(loader *L,
                                                         const char *fmt, ...);

/* Records -ENOMEM (unless a failure came first); returns L->status. */
int mproc__pk_nomem(loader *L);

/* A text line without its '\n', NUL-terminated in a buffer of the
 * caller's (lines longer than cap - 1 fail). */
int mproc__pk_take_line(loader *L, char *buf, size_t cap, size_t *n);

/* A long text line (STRING, UNICODE) in place: its start and length. */
int mproc__pk_take_long_line(loader *L, const unsigned char **s, size_t *n);

/* Makes room for one more on the stack; drops o when it cannot. */
int mproc__pk_grow_stack(loader *L, mproc_obj *o);

/* Pushes the global module.name when the allow-list has it (Python 2's
 * names read as Python 3's), else fails naming it. */
int mproc__pk_push_global(loader *L, const char *module, const char *name);

/* Adds item (stolen) to the set s: fails on an unhashable item. */
int mproc__pk_add_to_set(loader *L, mproc_obj *s, mproc_obj *item);

/* A bytes or bytearray of n bytes at p into *out, its memory charged. */
int mproc__pk_new_bytes(loader *L, mproc_obj_type type, const void *p, size_t n,
                        mproc_obj **out);

/* callable(*args) (REDUCE) or cls.__new__(cls, *args) (NEWOBJ) for the
 * allowed globals, with the shapes CPython writes. */
int mproc__pk_apply(loader *L, const mproc_obj *g, mproc_obj *args, bool newobj,
                    mproc_obj **out);

/* BUILD: state given to a reduce value made here, once. */
int mproc__pk_build(loader *L);

/* STRING: a quoted Python 2 str literal, escapes decoded, as bytes. */
int mproc__pk_load_string(loader *L);

/* UNICODE: raw-unicode-escape text (latin-1 bytes, \uXXXX, \UXXXXXXXX
 * after an odd run of backslashes). */
int mproc__pk_load_unicode(loader *L);

/* A decimal memo index on a text line (GET, PUT). */
int mproc__pk_line_uint(loader *L, uint64_t *v);

/* INT and LONG text: decimal, "00"/"01" for False/True, LONG's 'L'. */
int mproc__pk_load_int_text(loader *L, bool is_long);

/* FLOAT text: Python's repr of a float. */
int mproc__pk_load_float_text(loader *L);

static inline int charge(loader *L, size_t n)
{
    if (n > L->max_bytes - L->bytes)
        return mproc__pk_fail(L, "memory limit of %zu bytes reached",
                              L->max_bytes);
    L->bytes += n;
    return 0;
}

static inline const unsigned char *take(loader *L, size_t n)
{
    if (n > L->len - L->pos) {
        mproc__pk_fail(L, "truncated: %zu bytes wanted, %zu left", n,
                       L->len - L->pos);
        return NULL;
    }
    const unsigned char *q = L->p + L->pos;
    L->pos += n;
    return q;
}

static inline size_t fence(const loader *L)
{
    return L->mn ? L->marks[L->mn - 1] : 0;
}

/* A reference more to a value of this decode: nothing decoded is seen by
 * another thread before loads returns, so a plain increment does. */
static inline mproc_obj *own(mproc_obj *o)
{
    if (!mproc__is_small(o) && o->refs != MPROC__OBJ_STATIC)
        o->refs++;
    return o;
}

/* Pushes o (stolen); NULL is out of memory. Inline: every opcode that
 * makes a value ends here. */
static inline int push(loader *L, mproc_obj *o)
{
    if (!o)
        return mproc__pk_nomem(L);
    if (mproc__type(o) >= MPROC_OBJ_TUPLE)
        L->containers++;
    if (L->sn == L->scap && mproc__pk_grow_stack(L, o) < 0)
        return L->status;
    L->stack[L->sn++] = o;
    return 0;
}

/* Pops the top (the caller owns it), or NULL on underflow. */
static inline mproc_obj *pop(loader *L)
{
    if (L->sn <= fence(L)) {
        mproc__pk_fail(L, "stack underflow");
        return NULL;
    }
    return L->stack[--L->sn];
}

static inline mproc_obj *top(loader *L)
{
    if (L->sn <= fence(L)) {
        mproc__pk_fail(L, "stack underflow");
        return NULL;
    }
    return L->stack[L->sn - 1];
}

/* Remembers a container the stream may change later (one reference). */
static inline void made(loader *L, mproc_obj *o)
{
    o->next = L->made;
    L->made = own(o);
}

#endif
