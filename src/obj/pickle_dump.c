/*
 * obj/pickle_dump.c - values to pickle bytes, protocols 2 to 5, in the
 * forms CPython writes them: opcodes of the protocol where it has them
 * (BINBYTES from 3, SHORT_BINUNICODE, EMPTY_SET and FROZENSET from 4,
 * BYTEARRAY8 from 5), the global + REDUCE forms before that (sets,
 * frozensets, bytes and bytearray under protocol 2 as Python 3 writes them
 * for Python 2), lists, dicts and sets in batches of 1000. No frames (a
 * reader does not need them).
 *
 * The memo: an object reached more than once (the same pointer: [l, l],
 * t = (x, x) nested) is written once, memoized where CPython's pickler
 * memoizes it (a list or dict right after its opening opcode, a tuple or
 * str after it is complete; ints, floats, None, bools and () never), and
 * fetched with BINGET after that, so the output is linear in the number
 * of distinct objects. CPython memoizes every object; mproc writes a PUT
 * only for one that is fetched again, numbered in order, which is what
 * CPython's pickletools.optimize() makes of CPython's output. Which ones
 * are fetched again is found by a first pass that writes the value as
 * usual and records the fetches; when there are none (most values) its
 * output is the result, else a second pass writes it again with the
 * PUTs. Only objects held more than once (count > 1) can be reached
 * twice, so only they are looked up; except in a value that contains
 * itself through a tuple (t = ([t],)): CPython writes such a tuple again
 * from within and fetches the list on the way, so there every object
 * is tracked, as CPython does (its POP_MARK + BINGET special case).
 */
#include "obj/obj_impl.h"

#include <stdlib.h>
#include <string.h>

#define BATCH 1000

/* Where an object stands in the memo. */
enum {
    M_FETCHED = 1, /* reached again after being memoized: needs a PUT */
    M_DONE = 2,    /* memoized in this pass */
    M_BUSY = 4,    /* a tuple, frozenset or reduce value being written */
};

#define NO_INDEX UINT64_MAX

typedef struct memo_entry {
    unsigned flags;
    uint64_t index; /* its memo index once PUT (second pass) */
} memo_entry;

/* An entry by its number: 1 + its place in dumper.ents (0: untracked),
 * which table growth does not move. */
typedef size_t ment;

/* A slot of the index: an object and its entry (0: a free slot). */
typedef struct memo_slot {
    const mproc_obj *key;
    ment e;
} memo_slot;

typedef struct dumper {
    mproc__buf *b;
    int proto;
    bool every;       /* track every memoizable object, not only shared ones */
    bool second;      /* the pass that writes PUT and GET */
    bool fetched;     /* the first pass saw an object reached again */
    bool reentered;   /* a tuple reached from within itself (not every) */
    memo_entry *ents; /* in order of first sight */
    size_t mn, ecap;
    memo_slot *slots; /* open addressing on the pointer */
    size_t mcap;
    uint64_t next; /* the next memo index */
} dumper;

/* Room for n more bytes at b->p + b->len, or false (oom set). */
static bool room(mproc__buf *b, size_t n)
{
    if (b->oom)
        return false;
    if (n <= b->cap - b->len)
        return true;
    if (n > SIZE_MAX / 4 - b->len) {
        b->oom = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n)
        cap *= 2;
    unsigned char *q = realloc(b->p, cap);
    if (!q) {
        b->oom = true;
        return false;
    }
    b->p = q;
    b->cap = cap;
    return true;
}

static void op(mproc__buf *b, unsigned char c)
{
    if (room(b, 1))
        b->p[b->len++] = c;
}

static void op_u8(mproc__buf *b, unsigned char c, unsigned char v)
{
    if (room(b, 2)) {
        b->p[b->len] = c;
        b->p[b->len + 1] = v;
        b->len += 2;
    }
}

static void le(mproc__buf *b, uint64_t v, int n)
{
    if (room(b, (size_t)n))
        for (int i = 0; i < n; i++)
            b->p[b->len++] = (unsigned char)(v >> (8 * i));
}

static void raw(mproc__buf *b, const void *p, size_t n)
{
    if (n && room(b, n)) {
        memcpy(b->p + b->len, p, n);
        b->len += n;
    }
}

static inline void dump_small_int(mproc__buf *b, int64_t v)
{
    if (v >= 0 && v < 256) {
        op_u8(b, 'K', (unsigned char)v);
    } else if (v >= 0 && v < 65536) {
        op(b, 'M');
        le(b, (uint64_t)v, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        op(b, 'J');
        le(b, (uint64_t)v, 4);
    } else {
        /* LONG1 with the fewest two's-complement bytes. */
        int n = 8;
        unsigned fill = v < 0 ? 0xff : 0;
        while (n > 1 && ((uint64_t)v >> (8 * (n - 1)) & 0xff) == fill &&
               (((uint64_t)v >> (8 * (n - 2)) & 0x80) != 0) == (v < 0))
            n--;
        op_u8(b, 0x8a, (unsigned char)n);
        le(b, (uint64_t)v, n);
    }
}

/* The opcode and length of n bytes of str or bytes, then the bytes: the
 * one-byte length form (op1, 0 when the protocol has none), the 4-byte
 * form, or from protocol 4 the 8-byte one; -EOVERFLOW beyond. */
static int dump_sized(dumper *d, const void *p, size_t n, unsigned char op1,
                      unsigned char op4, unsigned char op8)
{
    mproc__buf *b = d->b;
    if (op1 && n < 256) {
        op_u8(b, op1, (unsigned char)n);
    } else if (n <= UINT32_MAX) {
        op(b, op4);
        le(b, n, 4);
    } else if (d->proto >= 4) {
        op(b, op8);
        le(b, n, 8);
    } else {
        return -EOVERFLOW;
    }
    raw(b, p, n);
    return 0;
}

static int dump_str(dumper *d, const char *s, size_t n)
{
    return dump_sized(d, s, n, d->proto >= 4 ? 0x8c : 0, 'X', 0x8d);
}

/* bytes as the str of the code points 0-255 (latin-1), for protocol 2. */
static int dump_latin1(dumper *d, const unsigned char *p, size_t n)
{
    mproc__buf t = {0};
    for (size_t i = 0; i < n; i++)
        mproc__utf8_put(&t, p[i]);
    int r = t.oom ? -ENOMEM : dump_str(d, (const char *)t.p, t.len);
    mproc__buf_free(&t);
    return r;
}

static void dump_global(dumper *d, const char *module, const char *name)
{
    mproc__buf *b = d->b;
    if (d->proto < 3) {
        /* What Python 3 writes for Python 2 (fix_imports). */
        if (strcmp(module, "builtins") == 0)
            module =
                mproc__is_exception_name(name) ? "exceptions" : "__builtin__";
        else if (strcmp(module, "copyreg") == 0)
            module = "copy_reg";
    }
    if (d->proto >= 4) {
        (void)dump_str(d, module, strlen(module));
        (void)dump_str(d, name, strlen(name));
        op(b, 0x93);
        return;
    }
    op(b, 'c');
    raw(b, module, strlen(module));
    op(b, '\n');
    raw(b, name, strlen(name));
    op(b, '\n');
}

/* ---- the memo --------------------------------------------------------- */

/* Objects CPython's pickler memoizes (not numbers, None, bools or ()). */
static bool memoizable(const mproc_obj *o)
{
    mproc_obj_type t = mproc__type(o);
    if (t == MPROC_OBJ_TUPLE)
        return o->u.seq.n > 0;
    return mproc__is_container(o) || t == MPROC_OBJ_STR ||
           t == MPROC_OBJ_BYTES || t == MPROC_OBJ_BYTEARRAY;
}

static size_t slot_of(const dumper *d, const mproc_obj *o)
{
    uint64_t h = (uint64_t)(uintptr_t)o * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32) & (d->mcap - 1);
}

static memo_entry *ent(const dumper *d, ment e)
{
    return &d->ents[e - 1];
}

/* Room for one more entry: 0 or -ENOMEM. */
static int memo_grow(dumper *d)
{
    if (d->mn == d->ecap) {
        size_t cap = d->ecap ? d->ecap * 2 : 32;
        memo_entry *n = cap <= SIZE_MAX / sizeof *n
                            ? realloc(d->ents, cap * sizeof *n)
                            : NULL;
        if (!n)
            return -ENOMEM;
        d->ents = n;
        d->ecap = cap;
    }
    if (d->mn + 1 <= d->mcap / 2)
        return 0;
    size_t cap = d->mcap ? d->mcap * 2 : 64;
    memo_slot *slots =
        cap <= SIZE_MAX / sizeof *slots ? calloc(cap, sizeof *slots) : NULL;
    if (!slots)
        return -ENOMEM;
    memo_slot *old = d->slots;
    size_t oldcap = d->mcap;
    d->slots = slots;
    d->mcap = cap;
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i].e)
            continue;
        size_t j = slot_of(d, old[i].key);
        while (slots[j].e)
            j = (j + 1) & (cap - 1);
        slots[j] = old[i];
    }
    free(old);
    return 0;
}

/* The entry of o, added when new; 0 when out of memory. */
static ment memo_entry_of(dumper *d, const mproc_obj *o)
{
    if (memo_grow(d) < 0)
        return 0;
    size_t j = slot_of(d, o);
    while (d->slots[j].e && d->slots[j].key != o)
        j = (j + 1) & (d->mcap - 1);
    if (!d->slots[j].e) {
        d->ents[d->mn] = (memo_entry){0, NO_INDEX};
        d->slots[j] = (memo_slot){o, ++d->mn};
    }
    return d->slots[j].e;
}

/* Whether o (not a small int) is looked up in the memo at all: one held
 * once cannot be reached twice (unless the value contains itself through
 * a tuple). The count first: most objects have one. */
static bool tracked(const dumper *d, const mproc_obj *o)
{
    if (!d->every && __atomic_load_n(&o->refs, __ATOMIC_RELAXED) <= 1)
        return false;
    return memoizable(o);
}

/* BINGET / LONG_BINGET of a memo index. */
static void memo_get(mproc__buf *b, uint64_t i)
{
    if (i < 256) {
        op_u8(b, 'h', (unsigned char)i);
    } else {
        op(b, 'j');
        le(b, i, 4);
    }
}

/* o is reached again (e is its entry, memoized): the first pass records
 * that it needs a PUT, the second writes the fetch. */
static int memo_fetch(dumper *d, ment m)
{
    memo_entry *e = ent(d, m);
    if (!d->second) {
        e->flags |= M_FETCHED;
        d->fetched = true;
        return 0;
    }
    memo_get(d->b, e->index);
    return 0;
}

/* The point where CPython memoizes o (e NULL: untracked): a PUT in the
 * second pass when o is fetched later (MEMOIZE from protocol 4). */
static int memoize_tracked(dumper *d, ment m)
{
    memo_entry *e = ent(d, m);
    e->flags |= M_DONE;
    if (!d->second || !(e->flags & M_FETCHED))
        return 0;
    if (d->next > UINT32_MAX)
        return -EOVERFLOW;
    e->index = d->next++;
    if (d->proto >= 4) {
        op(d->b, 0x94);
    } else if (e->index < 256) {
        op_u8(d->b, 'q', (unsigned char)e->index);
    } else {
        op(d->b, 'r');
        le(d->b, e->index, 4);
    }
    return 0;
}

/* Inline: every str and container of a value passes here, mostly
 * untracked. */
static inline int memoize(dumper *d, ment m)
{
    return m ? memoize_tracked(d, m) : 0;
}

/* After writing the parts of a tuple, frozenset or reduce value (e its
 * entry): when o was memoized meanwhile it contains itself, and CPython
 * drops what it pushed (pop, the opcode: POP or POP_MARK) and fetches o
 * instead. Returns 1 then, 0 when o is to be finished as usual. */
static int memo_recursive(dumper *d, ment e, unsigned char pop, size_t npop)
{
    if (!e || !(ent(d, e)->flags & M_DONE))
        return 0;
    for (size_t i = 0; i < npop; i++)
        op(d->b, pop);
    int r = memo_fetch(d, e);
    return r < 0 ? r : 1;
}

/* Starts writing a tuple, frozenset or reduce value e (NULL: untracked):
 * one reached again while being written contains itself through a list
 * or dict; unless every object is tracked the first pass starts over
 * (-EAGAIN) tracking every one. */
static int memo_enter(dumper *d, ment m)
{
    if (!m)
        return 0;
    memo_entry *e = ent(d, m);
    if ((e->flags & M_BUSY) && !d->every) {
        d->reentered = true;
        return -EAGAIN;
    }
    e->flags |= M_BUSY;
    return 0;
}

static void memo_leave(dumper *d, ment e)
{
    if (e)
        ent(d, e)->flags &= ~(unsigned)M_BUSY;
}

/* Forgets what a pass did: all of it, or (keep) all but the fetches. */
static void memo_reset(dumper *d, bool keep)
{
    for (size_t i = 0; i < d->mn; i++) {
        d->ents[i].flags &= M_FETCHED;
        d->ents[i].index = NO_INDEX;
    }
    if (!keep) {
        d->mn = 0;
        if (d->slots)
            memset(d->slots, 0, d->mcap * sizeof *d->slots);
    }
    d->next = 0;
}

static int dump(dumper *d, const mproc_obj *o, int depth);

/* The common case written straight: an int of 0 to 65535 (what
 * dump_small_int writes for it, without a bounds check per byte). */
static bool dump_fast_int(mproc__buf *b, const mproc_obj *o)
{
    if (mproc__type(o) != MPROC_OBJ_INT || mproc__int_big(o) ||
        mproc__int_v(o) < 0 || mproc__int_v(o) > 65535 || !room(b, 3))
        return false;
    unsigned char *p = b->p + b->len;
    unsigned v = (unsigned)mproc__int_v(o);
    if (v < 256) {
        p[0] = 'K';
        p[1] = (unsigned char)v;
        b->len += 2;
    } else {
        p[0] = 'M';
        p[1] = (unsigned char)v;
        p[2] = (unsigned char)(v >> 8);
        b->len += 3;
    }
    return true;
}

static int dump_items(dumper *d, mproc_obj *const *items, size_t n, int depth)
{
    for (size_t i = 0; i < n; i++) {
        if (dump_fast_int(d->b, items[i]))
            continue;
        int r = dump(d, items[i], depth + 1);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Items appended in batches: MARK items APPENDS (one item: item APPEND). */
static int dump_appends(dumper *d, mproc_obj *const *items, size_t n, int depth)
{
    for (size_t i = 0; i < n; i += BATCH) {
        size_t k = n - i < BATCH ? n - i : BATCH;
        if (k > 1)
            op(d->b, '(');
        int r = dump_items(d, items + i, k, depth);
        if (r < 0)
            return r;
        op(d->b, k > 1 ? 'e' : 'a');
    }
    return 0;
}

static int dump_table_keys(dumper *d, const mproc__table *t, size_t i, size_t k,
                           int depth)
{
    for (size_t j = i; j < i + k; j++) {
        int r = dump(d, t->e[j].key, depth + 1);
        if (r < 0)
            return r;
    }
    return 0;
}

/* A table's keys in batches: MARK keys end_op. */
static int dump_key_batches(dumper *d, const mproc__table *t,
                            unsigned char end_op, int depth)
{
    for (size_t i = 0; i < t->n; i += BATCH) {
        size_t k = t->n - i < BATCH ? t->n - i : BATCH;
        op(d->b, '(');
        int r = dump_table_keys(d, t, i, k, depth);
        if (r < 0)
            return r;
        op(d->b, end_op);
    }
    return 0;
}

static int dump_dict(dumper *d, const mproc_obj *o, ment e, int depth)
{
    const mproc__table *t = &o->u.t;
    op(d->b, '}');
    int r = memoize(d, e);
    if (r < 0)
        return r;
    for (size_t i = 0; i < t->n; i += BATCH) {
        size_t k = t->n - i < BATCH ? t->n - i : BATCH;
        if (k > 1)
            op(d->b, '(');
        for (size_t j = i; j < i + k; j++) {
            r = dump(d, t->e[j].key, depth + 1);
            if (r == 0)
                r = dump(d, t->e[j].value, depth + 1);
            if (r < 0)
                return r;
        }
        op(d->b, k > 1 ? 'u' : 's');
    }
    return 0;
}

static int dump_set(dumper *d, const mproc_obj *o, ment e, int depth)
{
    const mproc__table *t = &o->u.t;
    bool frozen = mproc__type(o) == MPROC_OBJ_FROZENSET;
    if (d->proto >= 4 && !frozen) {
        op(d->b, 0x8f);
        int r = memoize(d, e);
        if (r < 0)
            return r;
        return dump_key_batches(d, t, 0x90, depth); /* ADDITEMS */
    }
    int r = memo_enter(d, e);
    if (r < 0)
        return r;
    if (d->proto >= 4) {
        op(d->b, '(');
        r = dump_table_keys(d, t, 0, t->n, depth);
    } else {
        /* set([items]) / frozenset([items]) through REDUCE. */
        dump_global(d, "builtins", frozen ? "frozenset" : "set");
        op(d->b, ']');
        r = dump_key_batches(d, t, 'e', depth); /* APPENDS */
    }
    memo_leave(d, e);
    if (r == 0)
        r = memo_recursive(d, e, d->proto >= 4 ? '1' : '0', 1);
    if (r != 0)
        return r < 0 ? r : 0;
    if (d->proto >= 4) {
        op(d->b, 0x91);
    } else {
        op(d->b, 0x85);
        op(d->b, 'R');
    }
    return memoize(d, e);
}

static int dump_bytes(dumper *d, const mproc_obj *o)
{
    mproc__buf *b = d->b;
    const unsigned char *p = (const unsigned char *)o->u.s.p;
    size_t n = o->u.s.n;
    if (mproc__type(o) == MPROC_OBJ_BYTEARRAY && d->proto >= 5) {
        op(b, 0x96);
        le(b, n, 8);
        raw(b, p, n);
        return 0;
    }
    if (mproc__type(o) == MPROC_OBJ_BYTEARRAY)
        dump_global(d, "builtins", "bytearray");
    int r = 0;
    if (d->proto >= 3) {
        r = dump_sized(d, p, n, 'C', 'B', 0x8e);
        if (r < 0)
            return r;
        if (mproc__type(o) == MPROC_OBJ_BYTEARRAY) {
            op(b, 0x85);
            op(b, 'R');
        }
        return 0;
    }
    /* Protocol 2: _codecs.encode(latin-1 str, 'latin1'), bytes() when
     * empty; bytearray(latin-1 str, 'latin-1'). */
    if (mproc__type(o) == MPROC_OBJ_BYTES && n == 0) {
        dump_global(d, "builtins", "bytes");
        op(b, ')');
        op(b, 'R');
        return 0;
    }
    if (mproc__type(o) == MPROC_OBJ_BYTES)
        dump_global(d, "_codecs", "encode");
    r = dump_latin1(d, p, n);
    if (r == 0)
        r = mproc__type(o) == MPROC_OBJ_BYTES ? dump_str(d, "latin1", 6)
                                              : dump_str(d, "latin-1", 7);
    op(b, 0x86);
    op(b, 'R');
    return r;
}

/* Its global, args and REDUCE or NEWOBJ, memoized as CPython does (a
 * value fetched back when its args reached it), then its state. */
static int dump_reduce(dumper *d, const mproc_obj *o, ment e, int depth)
{
    int r = memo_enter(d, e);
    if (r < 0)
        return r;
    dump_global(d, o->u.red.module, o->u.red.name);
    if (o->u.red.args) {
        r = dump(d, o->u.red.args, depth + 1);
        op(d->b, o->newobj ? 0x81 : 'R');
    }
    memo_leave(d, e);
    if (r == 0)
        r = memo_recursive(d, e, '0', 1);
    if (r == 0)
        r = memoize(d, e);
    if (r > 0)
        r = 0;
    if (r == 0 && o->u.red.state) {
        r = dump(d, o->u.red.state, depth + 1);
        op(d->b, 'b');
    }
    return r;
}

/* A tuple of one or more items: items, then TUPLE1-3 (MARK ... TUPLE
 * beyond), memoized; or, when the items reached it, POPs and a fetch. */
static int dump_tuple(dumper *d, const mproc_obj *o, ment e, int depth)
{
    size_t n = o->u.seq.n;
    int r = memo_enter(d, e);
    if (r < 0)
        return r;
    if (n > 3)
        op(d->b, '(');
    r = dump_items(d, o->u.seq.items, n, depth);
    memo_leave(d, e);
    if (r == 0)
        r = memo_recursive(d, e, n > 3 ? '1' : '0', n > 3 ? 1 : n);
    if (r != 0)
        return r < 0 ? r : 0;
    op(d->b, n > 3 ? 't' : (unsigned char)(0x84 + n));
    return memoize(d, e);
}

/* o itself, e its memo entry (NULL: untracked). */
static int dump_obj(dumper *d, const mproc_obj *o, ment e, int depth)
{
    mproc__buf *b = d->b;
    switch ((mproc_obj_type)mproc__type(o)) {
    case MPROC_OBJ_NONE:
        op(b, 'N');
        return 0;
    case MPROC_OBJ_BOOL:
        op(b, o->u.b ? 0x88 : 0x89);
        return 0;
    case MPROC_OBJ_INT:
        if (!mproc__int_big(o)) {
            dump_small_int(b, mproc__int_v(o));
        } else if (mproc__int_nbig(o) < 256) {
            op_u8(b, 0x8a, (unsigned char)mproc__int_nbig(o));
            raw(b, mproc__int_big(o), mproc__int_nbig(o));
        } else if (mproc__int_nbig(o) <= INT32_MAX) {
            op(b, 0x8b);
            le(b, mproc__int_nbig(o), 4);
            raw(b, mproc__int_big(o), mproc__int_nbig(o));
        } else {
            return -EOVERFLOW;
        }
        return 0;
    case MPROC_OBJ_FLOAT: {
        uint64_t u;
        memcpy(&u, &o->u.f, 8);
        if (room(b, 9)) {
            b->p[b->len++] = 'G';
            for (int i = 7; i >= 0; i--)
                b->p[b->len++] = (unsigned char)(u >> (8 * i));
        }
        return 0;
    }
    case MPROC_OBJ_STR: {
        int r = dump_str(d, o->u.s.p, o->u.s.n);
        return r < 0 ? r : memoize(d, e);
    }
    case MPROC_OBJ_BYTES:
    case MPROC_OBJ_BYTEARRAY: {
        int r = dump_bytes(d, o);
        return r < 0 ? r : memoize(d, e);
    }
    case MPROC_OBJ_TUPLE:
        if (o->u.seq.n == 0) {
            op(b, ')');
            return 0;
        }
        return dump_tuple(d, o, e, depth);
    case MPROC_OBJ_LIST: {
        op(b, ']');
        int r = memoize(d, e);
        return r < 0 ? r : dump_appends(d, o->u.seq.items, o->u.seq.n, depth);
    }
    case MPROC_OBJ_DICT:
        return dump_dict(d, o, e, depth);
    case MPROC_OBJ_SET:
    case MPROC_OBJ_FROZENSET:
        return dump_set(d, o, e, depth);
    case MPROC_OBJ_REDUCE:
        return dump_reduce(d, o, e, depth);
    }
    return -EINVAL;
}

static int dump(dumper *d, const mproc_obj *o, int depth)
{
    if (depth >= MPROC_OBJ_MAX_DEPTH)
        return -ELOOP;
    if (mproc__is_small(o)) { /* most ints: no memo to ask */
        dump_small_int(d->b, mproc__int_v(o));
        return 0;
    }
    ment e = 0;
    if (tracked(d, o)) {
        e = memo_entry_of(d, o);
        if (!e)
            return -ENOMEM;
        /* Reached again: fetched (in the second pass, unless a count
         * changed under it: then written again). */
        const memo_entry *m = ent(d, e);
        if ((m->flags & M_DONE) && (!d->second || m->index != NO_INDEX))
            return memo_fetch(d, e);
    }
    return dump_obj(d, o, e, depth);
}

int mproc__pickle_dump(const mproc_obj *o, int protocol, mproc__buf *b)
{
    if (protocol == -1)
        protocol = MPROC_PICKLE_HIGHEST_PROTOCOL;
    if (!o || !b || protocol < 2 || protocol > MPROC_PICKLE_HIGHEST_PROTOCOL)
        return -EINVAL;
    dumper d = {.b = b, .proto = protocol};
    size_t start = b->len;
    op_u8(b, 0x80, (unsigned char)protocol);
    int r = dump(&d, o, 0);
    if (r == -EAGAIN && d.reentered) {
        /* Contains itself through a tuple: track every object. */
        memo_reset(&d, false);
        d.every = true;
        d.fetched = false;
        b->len = b->oom ? b->len : start + 2;
        r = dump(&d, o, 0);
    }
    if (r == 0 && d.fetched) {
        /* Again, with a PUT for each object fetched. */
        memo_reset(&d, true);
        d.second = true;
        b->len = b->oom ? b->len : start + 2;
        r = dump(&d, o, 0);
    }
    free(d.ents);
    free(d.slots);
    op(b, '.');
    if (r == 0 && b->oom)
        r = -ENOMEM;
    if (r < 0 && !b->oom)
        b->len = start;
    return r;
}

int mproc_pickle_dumps(const mproc_obj *o, int protocol, void **buf,
                       size_t *len)
{
    if (!buf || !len)
        return -EINVAL;
    *buf = NULL;
    *len = 0;
    mproc__buf b = {0};
    int r = mproc__pickle_dump(o, protocol, &b);
    if (r < 0) {
        mproc__buf_free(&b);
        return r;
    }
    *buf = b.p;
    *len = b.len;
    return 0;
}
