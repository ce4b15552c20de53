/*
 * obj/pickle_load.c - pickle bytes to values, safely. Every opcode of
 * protocols 0 to 5 that CPython 2.7 and 3.6-3.13 write for the modelled
 * types is read; globals resolve only against a fixed allow-list into
 * inert reduce values, and REDUCE, NEWOBJ, NEWOBJ_EX and BUILD are taken
 * only on those, with the argument shapes CPython writes. Anything else
 * (persistent ids, extension codes, out-of-band buffers, INST/OBJ, other
 * globals) fails with MPROC_EPICKLE and a message naming it.
 *
 * Bounds: every length is checked against the bytes left before anything
 * is allocated; memory (objects, stack, memo) is counted against a limit;
 * the memo's highest index is limited; the finished value is walked once
 * (without recursion) to refuse one that contains itself or is nested
 * deeper than allowed. Containers a stream can change after making them
 * (lists, dicts, sets, reduce values) are kept on a list, so that on
 * failure their contents can be dropped first: cycles a hostile stream
 * made are broken and everything is freed.
 */
#include "obj/obj_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- failures --------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static int fail(loader *L,
                                                      const char *fmt, ...)
{
    if (L->status)
        return L->status;
    L->status = MPROC_EPICKLE;
    if (L->err && L->errcap) {
        char what[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        snprintf(L->err, L->errcap, "%s (opcode 0x%02x at offset %zu)", what,
                 L->opc, L->at);
    }
    return L->status;
}

static int nomem(loader *L)
{
    if (!L->status)
        L->status = -ENOMEM;
    if (L->err && L->errcap)
        snprintf(L->err, L->errcap, "out of memory at offset %zu", L->at);
    return L->status;
}

static int charge(loader *L, size_t n)
{
    if (n > L->max_bytes - L->bytes)
        return fail(L, "memory limit of %zu bytes reached", L->max_bytes);
    L->bytes += n;
    return 0;
}

/* ---- input ------------------------------------------------------------ */

static const unsigned char *take(loader *L, size_t n)
{
    if (n > L->len - L->pos) {
        fail(L, "truncated: %zu bytes wanted, %zu left", n, L->len - L->pos);
        return NULL;
    }
    const unsigned char *q = L->p + L->pos;
    L->pos += n;
    return q;
}

static int take_le(loader *L, int n, uint64_t *v)
{
    const unsigned char *q = take(L, (size_t)n);
    if (!q)
        return L->status;
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--)
        x = x << 8 | q[i];
    *v = x;
    return 0;
}

/* A text line without its '\n', NUL-terminated in a buffer of the
 * caller's (lines longer than cap - 1 fail). */
static int take_line(loader *L, char *buf, size_t cap, size_t *n)
{
    const unsigned char *q = L->p + L->pos;
    const unsigned char *nl = memchr(q, '\n', L->len - L->pos);
    if (!nl)
        return fail(L, "truncated: no end of line");
    size_t k = (size_t)(nl - q);
    if (k >= cap)
        return fail(L, "line of %zu bytes too long", k);
    memcpy(buf, q, k);
    buf[k] = 0;
    L->pos += k + 1;
    if (n)
        *n = k;
    return 0;
}

/* A long text line (STRING, UNICODE) in place: its start and length. */
static int take_long_line(loader *L, const unsigned char **s, size_t *n)
{
    const unsigned char *q = L->p + L->pos;
    const unsigned char *nl = memchr(q, '\n', L->len - L->pos);
    if (!nl)
        return fail(L, "truncated: no end of line");
    *s = q;
    *n = (size_t)(nl - q);
    L->pos += *n + 1;
    return 0;
}

/* ---- the stack, marks and memo ---------------------------------------- */

static size_t fence(const loader *L)
{
    return L->mn ? L->marks[L->mn - 1] : 0;
}

/* A reference more to a value of this decode: nothing decoded is seen by
 * another thread before loads returns, so a plain increment does. */
static mproc_obj *own(mproc_obj *o)
{
    if (!mproc__is_small(o) && o->refs != MPROC__OBJ_STATIC)
        o->refs++;
    return o;
}

static bool has_children(const mproc_obj *o);

/* Makes room for one more on the stack; drops o when it cannot. */
static int grow_stack(loader *L, mproc_obj *o)
{
    if (charge(L, (L->scap ? L->scap : 8) * sizeof(mproc_obj *)) < 0 ||
        MPROC__GROW(L->stack, L->scap, L->sn + 1) < 0) {
        mproc_obj_unref(o);
        return L->status ? L->status : nomem(L);
    }
    return 0;
}

/* Pushes o (stolen); NULL is out of memory. Inline: every opcode that
 * makes a value ends here. */
static inline int push(loader *L, mproc_obj *o)
{
    if (!o)
        return nomem(L);
    if (mproc__type(o) >= MPROC_OBJ_TUPLE)
        L->containers++;
    if (L->sn == L->scap && grow_stack(L, o) < 0)
        return L->status;
    L->stack[L->sn++] = o;
    return 0;
}

/* Pops the top (the caller owns it), or NULL on underflow. */
static mproc_obj *pop(loader *L)
{
    if (L->sn <= fence(L)) {
        fail(L, "stack underflow");
        return NULL;
    }
    return L->stack[--L->sn];
}

static mproc_obj *top(loader *L)
{
    if (L->sn <= fence(L)) {
        fail(L, "stack underflow");
        return NULL;
    }
    return L->stack[L->sn - 1];
}

/* Pops the top mark: the stack index it marks. */
static int pop_mark(loader *L, size_t *k)
{
    if (!L->mn)
        return fail(L, "no MARK on the stack");
    *k = L->marks[--L->mn];
    return 0;
}

/* Drops the stack items from k on. */
static void drop_from(loader *L, size_t k)
{
    while (L->sn > k)
        mproc_obj_unref(L->stack[--L->sn]);
}

/* Remembers a container the stream may change later (one reference). */
static void made(loader *L, mproc_obj *o)
{
    o->next = L->made;
    L->made = own(o);
}

static int memo_put(loader *L, uint64_t i)
{
    mproc_obj *o = top(L);
    if (!o)
        return L->status;
    if (i >= L->max_memo)
        return fail(L, "memo index %llu over the limit of %zu",
                    (unsigned long long)i, L->max_memo);
    if (i >= L->memocap) {
        size_t cap = L->memocap ? L->memocap : 64;
        while (cap <= i)
            cap *= 2;
        if (charge(L, (cap - L->memocap) * sizeof(mproc_obj *)) < 0)
            return L->status;
        mproc_obj **m = realloc(L->memo, cap * sizeof(mproc_obj *));
        if (!m)
            return nomem(L);
        memset(m + L->memocap, 0, (cap - L->memocap) * sizeof(mproc_obj *));
        L->memo = m;
        L->memocap = cap;
    }
    if (L->memo[i])
        mproc_obj_unref(L->memo[i]);
    else
        L->memo_count++;
    L->memo[i] = own(o);
    return 0;
}

static int memo_get(loader *L, uint64_t i)
{
    if (i >= L->memocap || !L->memo[i])
        return fail(L, "memo key %llu not found", (unsigned long long)i);
    if (has_children(L->memo[i]))
        L->shared = true;
    return push(L, own(L->memo[i]));
}

/* ---- globals: the allow-list ------------------------------------------ */

enum {
    G_NONE,
    G_SET,
    G_FROZENSET,
    G_LIST,
    G_BYTEARRAY,
    G_BYTES,
    G_ENCODE,        /* _codecs.encode */
    G_RECONSTRUCTOR, /* copyreg._reconstructor */
    G_OBJECT,        /* builtins.object */
    G_EXCEPTION,     /* builtins.*Error & co */
    G_CLASS,         /* multiprocessing's RemoteError, RemoteTraceback */
    G_TOKEN,         /* multiprocessing.managers.Token */
    G_REBUILD_EXC,   /* multiprocessing.pool.rebuild_exc */
    G_ARRAY,         /* array.array */
    G_ARRAY_RECON,   /* array._array_reconstructor */
    G_RANGE,         /* builtins.range */
    G_SLICE,         /* builtins.slice */
    G_QUEUE_EXC,     /* queue.Empty, queue.Full, threading.BrokenBarrierError */
    G_REBUILD_PROXY, /* multiprocessing.managers.RebuildProxy */
    G_PROXY_TYPE     /* a proxy class of multiprocessing.managers, AutoProxy */
};

static int resolve(const char *module, const char *name)
{
    static const struct {
        const char *module, *name;
        int tag;
    } allowed[] = {
        {"builtins", "set", G_SET},
        {"builtins", "frozenset", G_FROZENSET},
        {"builtins", "list", G_LIST},
        {"builtins", "bytearray", G_BYTEARRAY},
        {"builtins", "bytes", G_BYTES},
        {"builtins", "object", G_OBJECT},
        {"_codecs", "encode", G_ENCODE},
        {"copyreg", "_reconstructor", G_RECONSTRUCTOR},
        {"multiprocessing.managers", "Token", G_TOKEN},
        {"multiprocessing.managers", "RemoteError", G_CLASS},
        {"multiprocessing.pool", "RemoteTraceback", G_CLASS},
        {"multiprocessing.pool", "rebuild_exc", G_REBUILD_EXC},
        {"array", "array", G_ARRAY},
        {"array", "_array_reconstructor", G_ARRAY_RECON},
        {"builtins", "range", G_RANGE},
        {"builtins", "slice", G_SLICE},
        {"queue", "Empty", G_QUEUE_EXC},
        {"queue", "Full", G_QUEUE_EXC},
        {"threading", "BrokenBarrierError", G_QUEUE_EXC},
        {"multiprocessing.managers", "RebuildProxy", G_REBUILD_PROXY},
        {"multiprocessing.managers", "AutoProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "DictProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "ListProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "BaseListProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "NamespaceProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "ValueProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "ArrayProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "IteratorProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "AcquirerProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "EventProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "ConditionProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "BarrierProxy", G_PROXY_TYPE},
        {"multiprocessing.managers", "PoolProxy", G_PROXY_TYPE},
    };
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++)
        if (strcmp(module, allowed[i].module) == 0 &&
            strcmp(name, allowed[i].name) == 0)
            return allowed[i].tag;
    if (strcmp(module, "builtins") == 0 && mproc__is_exception_name(name))
        return G_EXCEPTION;
    return G_NONE;
}

/* Python 2's module names as Python 3 reads them (fix_imports). */
static const char *py3_module(const char *m)
{
    if (strcmp(m, "__builtin__") == 0 || strcmp(m, "exceptions") == 0)
        return "builtins";
    if (strcmp(m, "copy_reg") == 0)
        return "copyreg";
    if (strcmp(m, "Queue") == 0 || strcmp(m, "_queue") == 0)
        return "queue"; /* Python 2's; _queue.Empty is queue.Empty */
    return m;
}

static int push_global(loader *L, const char *module, const char *name)
{
    module = py3_module(module);
    if (strcmp(module, "builtins") == 0 && strcmp(name, "xrange") == 0)
        name = "range"; /* a range pickled with protocol 0 or 1 */
    if (resolve(module, name) == G_NONE)
        return fail(L, "global %s.%s is not allowed", module, name);
    mproc_obj *g = mproc_obj_reduce(module, name, NULL, NULL, false);
    if (g && charge(L, OBJ_COST) < 0) {
        mproc_obj_unref(g);
        return L->status;
    }
    return push(L, g);
}

static int tag_of(const mproc_obj *g)
{
    if (!g || mproc__type(g) != MPROC_OBJ_REDUCE || g->u.red.args ||
        g->u.red.state)
        return G_NONE;
    return resolve(g->u.red.module, g->u.red.name);
}

/* ---- building values -------------------------------------------------- */

static int add_to_set(loader *L, mproc_obj *s, mproc_obj *item)
{
    int64_t h;
    int r = mproc__obj_hash(item, &h, 0);
    if (r < 0) {
        const char *tn = mproc_obj_type_name(item);
        r = r == -ELOOP ? fail(L, "set item nested too deep")
                        : fail(L, "unhashable set item (%s)", tn);
        mproc_obj_unref(item);
        return r;
    }
    if (charge(L, ENTRY_COST) < 0) {
        mproc_obj_unref(item);
        return L->status;
    }
    r = mproc__set_put(&s->u.t, item, h);
    return r == -ENOMEM ? nomem(L)
           : r < 0      ? fail(L, "set item nested too deep")
                        : 0;
}

static int set_item(loader *L, mproc_obj *d, mproc_obj *k, mproc_obj *v)
{
    int64_t h;
    int r = mproc__obj_hash(k, &h, 0);
    if (r < 0) {
        const char *tn = mproc_obj_type_name(k);
        mproc_obj_unref(k);
        mproc_obj_unref(v);
        return r == -ELOOP ? fail(L, "dict key nested too deep")
                           : fail(L, "unhashable dict key (%s)", tn);
    }
    if (charge(L, ENTRY_COST) < 0) {
        mproc_obj_unref(k);
        mproc_obj_unref(v);
        return L->status;
    }
    r = mproc__table_put(&d->u.t, k, v, h, 0);
    return r == -ENOMEM ? nomem(L) : r < 0 ? fail(L, "dict key too deep") : 0;
}

/* Items from a list or tuple into a new set or frozenset. */
static int set_from(loader *L, mproc_obj *items, bool frozen, mproc_obj **out)
{
    mproc_obj *s = frozen ? mproc_obj_frozenset_new() : mproc_obj_set_new();
    if (!s || charge(L, OBJ_COST) < 0) {
        mproc_obj_unref(s);
        return L->status ? L->status : nomem(L);
    }
    for (size_t i = 0; items && i < items->u.seq.n; i++)
        if (add_to_set(L, s, mproc_obj_ref(items->u.seq.items[i])) < 0) {
            mproc_obj_unref(s);
            return L->status;
        }
    *out = s;
    return 0;
}

/* A new list of the items of a list or tuple (NULL: empty): list(items),
 * as CPython's managers send a dict's keys(), values() and items(). */
static int list_from(loader *L, mproc_obj *items, mproc_obj **out)
{
    mproc_obj *l = mproc_obj_list_new();
    if (!l || charge(L, OBJ_COST) < 0) {
        mproc_obj_unref(l);
        return L->status ? L->status : nomem(L);
    }
    for (size_t i = 0; items && i < items->u.seq.n; i++) {
        if (charge(L, ENTRY_COST) < 0 ||
            mproc_obj_list_append(l, mproc_obj_ref(items->u.seq.items[i])) <
                0) {
            mproc_obj_unref(l);
            return L->status ? L->status : nomem(L);
        }
    }
    *out = l;
    return 0;
}

static int new_bytes(loader *L, mproc_obj_type type, const void *p, size_t n,
                     mproc_obj **out)
{
    if (charge(L, OBJ_COST + n) < 0)
        return L->status;
    *out = type == MPROC_OBJ_BYTEARRAY ? mproc_obj_bytearray(p, n)
                                       : mproc_obj_bytes(p, n);
    return *out ? 0 : nomem(L);
}

/* A str of code points below 256 as the bytes they are (latin-1). */
static int latin1_bytes(loader *L, const mproc_obj *s, mproc_obj_type type,
                        mproc_obj **out)
{
    mproc__buf b = {0};
    const unsigned char *p = (const unsigned char *)s->u.s.p;
    const unsigned char *end = p + s->u.s.n;
    while (p < end) {
        uint32_t c = mproc__utf8_next(&p);
        if (c > 0xff) {
            mproc__buf_free(&b);
            return fail(L, "latin-1 text holds U+%04X", c);
        }
        unsigned char ch = (unsigned char)c;
        mproc__buf_put(&b, &ch, 1);
    }
    int r = b.oom ? nomem(L) : new_bytes(L, type, b.p, b.len, out);
    mproc__buf_free(&b);
    return r;
}

/* The codec's name, a str (or a Python 2 str, bytes here). */
static bool latin1_name(const mproc_obj *o)
{
    static const char *const names[] = {"latin1", "latin-1", "iso-8859-1",
                                        "iso8859-1"};
    if (!o ||
        (mproc__type(o) != MPROC_OBJ_STR && mproc__type(o) != MPROC_OBJ_BYTES))
        return false;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (o->u.s.n == strlen(names[i]) &&
            memcmp(o->u.s.p, names[i], o->u.s.n) == 0)
            return true;
    return false;
}

static mproc_obj *arg(const mproc_obj *args, size_t i)
{
    return i < args->u.seq.n ? args->u.seq.items[i] : NULL;
}

/* range(start, stop, step): three ints, step not 0; slice(start, stop,
 * step): three ints or Nones. */
static bool range_shape(const mproc_obj *args, bool slice)
{
    if (args->u.seq.n != 3)
        return false;
    for (size_t i = 0; i < 3; i++) {
        mproc_obj_type t = mproc__type(arg(args, i));
        if (t != MPROC_OBJ_INT && !(slice && t == MPROC_OBJ_NONE))
            return false;
    }
    int64_t step = 0; /* a slice's step 0 fails where it is used */
    return slice || mproc_obj_int_value(arg(args, 2), &step) != 0 || step != 0;
}

/* RebuildProxy(func, token, serializer, kwds): a proxy class, a Token
 * with its state, the serializer's name and a dict of keywords. */
static bool rebuild_shape(const mproc_obj *args)
{
    const mproc_obj *tok = arg(args, 1), *kw = arg(args, 3);
    return args->u.seq.n == 4 && tag_of(arg(args, 0)) == G_PROXY_TYPE &&
           mproc__type(tok) == MPROC_OBJ_REDUCE && tok->u.red.args &&
           tok->u.red.state &&
           mproc__type(tok->u.red.state) == MPROC_OBJ_TUPLE &&
           strcmp(tok->u.red.name, "Token") == 0 &&
           strcmp(tok->u.red.module, "multiprocessing.managers") == 0 &&
           mproc__type(arg(args, 2)) == MPROC_OBJ_STR &&
           mproc__type(kw) == MPROC_OBJ_DICT;
}

static bool is_seq(const mproc_obj *o)
{
    return o && (mproc__type(o) == MPROC_OBJ_LIST ||
                 mproc__type(o) == MPROC_OBJ_TUPLE);
}

/* A reduce value for an allowed class or function (copies its names). */
static int inert(loader *L, const mproc_obj *g, mproc_obj *args, bool newobj,
                 mproc_obj **out)
{
    if (charge(L, OBJ_COST) < 0)
        return L->status;
    *out = mproc_obj_reduce(g->u.red.module, g->u.red.name, mproc_obj_ref(args),
                            NULL, newobj);
    if (!*out)
        return nomem(L);
    made(L, *out);
    return 0;
}

/* callable(*args) (REDUCE) or cls.__new__(cls, *args) (NEWOBJ) for the
 * allowed globals, with the shapes CPython writes. */
static int apply(loader *L, const mproc_obj *g, mproc_obj *args, bool newobj,
                 mproc_obj **out)
{
    const char *opname = newobj ? "NEWOBJ" : "REDUCE";
    int tag = tag_of(g);
    if (tag == G_NONE)
        return fail(L, "%s on a %s, not an allowed global", opname,
                    mproc_obj_type_name(g));
    if (!args || mproc__type(args) != MPROC_OBJ_TUPLE)
        return fail(L, "%s arguments are not a tuple", opname);
    size_t n = args->u.seq.n;
    mproc_obj *a0 = arg(args, 0), *a1 = arg(args, 1);
    bool bad = false;
    *out = NULL;
    switch (tag) {
    case G_SET:
    case G_FROZENSET:
        if (newobj || n > 1 || (n == 1 && !is_seq(a0)))
            bad = true;
        else
            return set_from(L, a0, tag == G_FROZENSET, out);
        break;
    case G_LIST:
        if (newobj || n > 1 || (n == 1 && !is_seq(a0)))
            bad = true;
        else
            return list_from(L, a0, out);
        break;
    case G_BYTES:
        if (newobj || n != 0)
            bad = true;
        else
            return new_bytes(L, MPROC_OBJ_BYTES, NULL, 0, out);
        break;
    case G_BYTEARRAY:
        if (!newobj && n == 0)
            return new_bytes(L, MPROC_OBJ_BYTEARRAY, NULL, 0, out);
        if (!newobj && n == 1 && mproc__type(a0) == MPROC_OBJ_BYTES)
            return new_bytes(L, MPROC_OBJ_BYTEARRAY, a0->u.s.p, a0->u.s.n, out);
        if (!newobj && n == 2 && mproc__type(a0) == MPROC_OBJ_STR &&
            latin1_name(a1))
            return latin1_bytes(L, a0, MPROC_OBJ_BYTEARRAY, out);
        bad = true;
        break;
    case G_ENCODE:
        if (!newobj && n == 2 && mproc__type(a0) == MPROC_OBJ_STR &&
            latin1_name(a1))
            return latin1_bytes(L, a0, MPROC_OBJ_BYTES, out);
        bad = true;
        break;
    case G_RECONSTRUCTOR: {
        /* copyreg._reconstructor(cls, object, None): cls.__new__(cls). */
        int t0 = tag_of(a0);
        if (newobj || n != 3 || tag_of(a1) != G_OBJECT ||
            mproc__type(arg(args, 2)) != MPROC_OBJ_NONE ||
            (t0 != G_TOKEN && t0 != G_EXCEPTION && t0 != G_CLASS &&
             t0 != G_QUEUE_EXC))
            bad = true;
        else {
            mproc_obj *empty = mproc_obj_tuple_new(0);
            if (!empty)
                return nomem(L);
            int r = inert(L, a0, empty, true, out);
            mproc_obj_unref(empty);
            return r;
        }
        break;
    }
    case G_TOKEN:
        if (!newobj || n != 0)
            bad = true;
        break;
    case G_EXCEPTION:
    case G_CLASS:
    case G_QUEUE_EXC:
        break;
    case G_RANGE:
    case G_SLICE:
        bad = newobj || !range_shape(args, tag == G_SLICE);
        break;
    case G_REBUILD_PROXY:
        bad = newobj || !rebuild_shape(args);
        break;
    case G_REBUILD_EXC:
        bad = newobj || n != 2 || mproc__type(a0) != MPROC_OBJ_REDUCE ||
              mproc__type(a1) != MPROC_OBJ_STR;
        break;
    case G_ARRAY:
        if (newobj || n != 2 || mproc__type(a0) != MPROC_OBJ_STR ||
            a0->u.s.n != 1 ||
            (mproc__type(a1) != MPROC_OBJ_LIST &&
             mproc__type(a1) != MPROC_OBJ_BYTES &&
             mproc__type(a1) != MPROC_OBJ_STR))
            bad = true;
        break;
    case G_ARRAY_RECON:
        if (newobj || n != 4 || tag_of(a0) != G_ARRAY ||
            mproc__type(a1) != MPROC_OBJ_STR ||
            mproc__type(arg(args, 2)) != MPROC_OBJ_INT ||
            mproc__type(arg(args, 3)) != MPROC_OBJ_BYTES)
            bad = true;
        break;
    default:
        bad = true;
    }
    if (bad)
        return fail(L, "%s on %s.%s with arguments of a shape not allowed",
                    opname, g->u.red.module, g->u.red.name);
    return inert(L, g, args, newobj, out);
}

/* BUILD: state given to a reduce value made here, once. */
static int build(loader *L)
{
    mproc_obj *state = pop(L);
    mproc_obj *o = state ? top(L) : NULL;
    if (!o) {
        mproc_obj_unref(state);
        return L->status;
    }
    int tag = mproc__type(o) == MPROC_OBJ_REDUCE && o->u.red.args
                  ? resolve(o->u.red.module, o->u.red.name)
                  : G_NONE;
    bool ok = tag == G_TOKEN ? mproc__type(state) == MPROC_OBJ_TUPLE
              : tag == G_EXCEPTION || tag == G_CLASS || tag == G_ARRAY ||
                      tag == G_ARRAY_RECON || tag == G_QUEUE_EXC
                  ? mproc__type(state) == MPROC_OBJ_DICT ||
                        mproc__type(state) == MPROC_OBJ_TUPLE ||
                        mproc__type(state) == MPROC_OBJ_NONE
                  : false;
    if (!ok || o->u.red.state) {
        const char *tn = mproc_obj_type_name(o);
        mproc_obj_unref(state);
        return fail(L, "BUILD on %s not allowed", tn);
    }
    if (mproc__type(state) == MPROC_OBJ_NONE) {
        mproc_obj_unref(state);
        return 0;
    }
    o->u.red.state = state;
    return 0;
}

/* ---- text forms (protocols 0 and 1) ----------------------------------- */

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* STRING: a quoted Python 2 str literal, escapes decoded, as bytes. */
static int load_string(loader *L)
{
    const unsigned char *s = NULL;
    size_t n = 0;
    if (take_long_line(L, &s, &n) < 0)
        return L->status;
    while (n && (s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0])
        return fail(L, "STRING not in quotes");
    s++;
    n -= 2;
    mproc__buf b = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c != '\\' || i + 1 == n) {
            mproc__buf_put(&b, &c, 1);
            continue;
        }
        unsigned char e = s[++i];
        const char *simple = strchr("\\'\"abfnrtv", e);
        if (simple && e) {
            static const char out[] = "\\'\"\a\b\f\n\r\t\v";
            mproc__buf_put(&b, &out[simple - "\\'\"abfnrtv"], 1);
        } else if (e == '\n') {
            /* a continued line */
        } else if (e >= '0' && e <= '7') {
            unsigned v = e - '0';
            for (int k = 0;
                 k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                v = v * 8 + (s[++i] - '0');
            c = (unsigned char)v;
            mproc__buf_put(&b, &c, 1);
        } else if (e == 'x' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
                   hexval(s[i + 2]) >= 0) {
            c = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
            mproc__buf_put(&b, &c, 1);
        } else if (e == 'x') {
            mproc__buf_free(&b);
            return fail(L, "STRING with a bad \\x escape");
        } else {
            mproc__buf_put(&b, s + i - 1, 2);
        }
    }
    mproc_obj *o = NULL;
    int r = b.oom ? nomem(L) : new_bytes(L, MPROC_OBJ_BYTES, b.p, b.len, &o);
    mproc__buf_free(&b);
    return r < 0 ? r : push(L, o);
}

/* UNICODE: raw-unicode-escape text (latin-1 bytes, \uXXXX, \UXXXXXXXX
 * after an odd run of backslashes). */
static int load_unicode(loader *L)
{
    const unsigned char *s = NULL;
    size_t n = 0;
    if (take_long_line(L, &s, &n) < 0)
        return L->status;
    mproc__buf b = {0};
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            mproc__utf8_put(&b, s[i++]);
            continue;
        }
        size_t run = 0;
        while (i < n && s[i] == '\\') {
            run++;
            i++;
        }
        bool esc = run % 2 == 1 && i < n && (s[i] == 'u' || s[i] == 'U');
        for (size_t k = 0; k < run - esc; k++)
            mproc__buf_put(&b, "\\", 1);
        if (!esc)
            continue;
        size_t digits = s[i] == 'u' ? 4 : 8;
        uint32_t cp = 0;
        if (n - i - 1 < digits) {
            mproc__buf_free(&b);
            return fail(L, "UNICODE with a truncated \\u escape");
        }
        for (size_t k = 1; k <= digits; k++) {
            int h = hexval(s[i + k]);
            if (h < 0) {
                mproc__buf_free(&b);
                return fail(L, "UNICODE with a bad \\u escape");
            }
            cp = cp << 4 | (uint32_t)h;
        }
        if (cp > 0x10ffff) {
            mproc__buf_free(&b);
            return fail(L, "UNICODE escape beyond U+10FFFF");
        }
        mproc__utf8_put(&b, cp);
        i += digits + 1;
    }
    int r = b.oom ? nomem(L) : charge(L, OBJ_COST + b.len);
    if (r == 0)
        r = push(L, mproc__str_trusted((const char *)b.p, b.len));
    mproc__buf_free(&b);
    return r;
}

static int line_uint(loader *L, uint64_t *v)
{
    char buf[32];
    size_t n = 0;
    if (take_line(L, buf, sizeof buf, &n) < 0)
        return L->status;
    if (n == 0 || strspn(buf, "0123456789") != n || n > 18)
        return fail(L, "bad memo index in text");
    *v = strtoull(buf, NULL, 10);
    return 0;
}

/* INT and LONG text: decimal, "00"/"01" for False/True, LONG's 'L'. */
static int load_int_text(loader *L, bool is_long)
{
    const unsigned char *s = NULL;
    size_t n = 0;
    if (take_long_line(L, &s, &n) < 0)
        return L->status;
    if (!is_long && n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
        return push(L, mproc_obj_bool(s[1] == '1'));
    if (is_long && n && s[n - 1] == 'L')
        n--;
    if (n == 0 || n > 100000)
        return fail(L, "bad integer text of %zu bytes", n);
    char *t = malloc(n + 1);
    if (!t)
        return nomem(L);
    memcpy(t, s, n);
    t[n] = 0;
    mproc_obj *o = mproc_obj_int_from_str(t);
    free(t);
    if (!o)
        return fail(L, "bad integer text");
    if (charge(L, OBJ_COST + n / 2) < 0) {
        mproc_obj_unref(o);
        return L->status;
    }
    return push(L, o);
}

static int load_float_text(loader *L)
{
    char buf[400], *end;
    if (take_line(L, buf, sizeof buf, NULL) < 0)
        return L->status;
    double d = mproc__strtod(buf, &end);
    if (end == buf || *end)
        return fail(L, "bad float text");
    return push(L, mproc_obj_float(d));
}

/* ---- opcodes ---------------------------------------------------------- */

static int load_str(loader *L, size_t n)
{
    const unsigned char *s = take(L, n);
    if (!s || charge(L, OBJ_COST + n) < 0)
        return L->status;
    if (mproc__utf8_check(s, n) < 0)
        return fail(L, "str that is not UTF-8");
    return push(L, mproc__slab_bytes(&L->slab, MPROC_OBJ_STR, s, n));
}

static int load_bytes(loader *L, mproc_obj_type type, size_t n)
{
    const unsigned char *s = take(L, n);
    mproc_obj *o = NULL;
    if (s && type == MPROC_OBJ_BYTES) {
        if (charge(L, OBJ_COST + n) < 0)
            return L->status;
        return push(L, mproc__slab_bytes(&L->slab, type, s, n));
    }
    if (!s || new_bytes(L, type, s, n, &o) < 0)
        return L->status;
    return push(L, o);
}

static int load_long(loader *L, size_t n)
{
    const unsigned char *s = take(L, n);
    if (!s || charge(L, OBJ_COST + n) < 0)
        return L->status;
    return push(L, mproc_obj_int_from_bytes(s, n));
}

/* A tuple of the stack items from k on. */
static int tuple_from(loader *L, size_t k)
{
    size_t n = L->sn - k;
    if (charge(L, OBJ_COST + n * SLOT_COST) < 0)
        return L->status;
    mproc_obj *t = mproc__tuple_take(n ? L->stack + k : NULL, n);
    L->sn = k;
    return push(L, t);
}

static int new_container(loader *L, mproc_obj *o)
{
    if (!o)
        return nomem(L);
    if (charge(L, OBJ_COST) < 0) {
        mproc_obj_unref(o);
        return L->status;
    }
    made(L, o);
    return push(L, o);
}

static int append_from(loader *L, size_t k)
{
    if (k == 0 || k <= fence(L)) {
        drop_from(L, k);
        return fail(L, "nothing to append to");
    }
    mproc_obj *l = L->stack[k - 1];
    if (mproc__type(l) != MPROC_OBJ_LIST) {
        drop_from(L, k);
        return fail(L, "append to a %s", mproc_obj_type_name(l));
    }
    size_t n = L->sn - k;
    if (charge(L, n * SLOT_COST) < 0 ||
        (l->u.seq.n + n > l->u.seq.cap &&
         MPROC__GROW(l->u.seq.items, l->u.seq.cap, l->u.seq.n + n) < 0)) {
        drop_from(L, k);
        return L->status ? L->status : nomem(L);
    }
    if (n)
        memcpy(l->u.seq.items + l->u.seq.n, L->stack + k,
               n * sizeof(mproc_obj *));
    l->u.seq.n += n;
    L->sn = k;
    return 0;
}

static int setitems_from(loader *L, size_t k)
{
    if (k == 0 || k <= fence(L) ||
        mproc__type(L->stack[k - 1]) != MPROC_OBJ_DICT || (L->sn - k) % 2) {
        drop_from(L, k);
        return fail(L, "SETITEMS without a dict and pairs");
    }
    mproc_obj *d = L->stack[k - 1];
    size_t i = k;
    /* Room for the batch at once (a batch is at most what the stack
     * holds, already counted against the limit). */
    int r = mproc__table_reserve(&d->u.t, (L->sn - k) / 2) < 0 ? nomem(L) : 0;
    for (; i < L->sn && r == 0; i += 2)
        r = set_item(L, d, L->stack[i], L->stack[i + 1]);
    /* Items not yet taken are still the stack's. */
    for (; i < L->sn; i++)
        mproc_obj_unref(L->stack[i]);
    L->sn = k;
    return r;
}

static int additems_from(loader *L, size_t k, mproc_obj *s)
{
    int r = 0;
    size_t i = k;
    for (; i < L->sn && r == 0; i++)
        r = add_to_set(L, s, L->stack[i]);
    for (; i < L->sn; i++)
        mproc_obj_unref(L->stack[i]);
    L->sn = k;
    return r;
}

/* A new container o (LIST, DICT) put below the stack items from k on,
 * which go into it next. */
static int container_below(loader *L, size_t k, mproc_obj *o)
{
    if (new_container(L, o) < 0) {
        drop_from(L, k);
        return L->status;
    }
    memmove(L->stack + k + 1, L->stack + k,
            (L->sn - 1 - k) * sizeof(mproc_obj *));
    L->stack[k] = o;
    return 0;
}

static int op_mark_to(loader *L, unsigned char c)
{
    size_t k = 0;
    if (pop_mark(L, &k) < 0)
        return L->status;
    switch (c) {
    case 't':
        return tuple_from(L, k);
    case 'l':
        if (container_below(L, k, mproc_obj_list_new()) < 0)
            return L->status;
        return append_from(L, k + 1);
    case 'd':
        if (container_below(L, k, mproc_obj_dict_new()) < 0)
            return L->status;
        return setitems_from(L, k + 1);
    case 'e':
        return append_from(L, k);
    case 'u':
        return setitems_from(L, k);
    case 0x90:
        if (k == 0 || k <= fence(L) ||
            mproc__type(L->stack[k - 1]) != MPROC_OBJ_SET) {
            drop_from(L, k);
            return fail(L, "ADDITEMS without a set");
        }
        return additems_from(L, k, L->stack[k - 1]);
    case 0x91: {
        mproc_obj *s = mproc_obj_frozenset_new();
        if (!s || charge(L, OBJ_COST) < 0) {
            mproc_obj_unref(s);
            drop_from(L, k);
            return L->status ? L->status : nomem(L);
        }
        int r = additems_from(L, k, s);
        if (r < 0) {
            mproc_obj_unref(s);
            return r;
        }
        return push(L, s);
    }
    case '1':
        drop_from(L, k);
        return 0;
    default:
        return fail(L, "internal: opcode");
    }
}

static int op_reduce(loader *L, bool newobj, bool ex)
{
    mproc_obj *kw = NULL, *args, *g;
    if (ex) {
        kw = pop(L);
        if (kw && (mproc__type(kw) != MPROC_OBJ_DICT || kw->u.t.n)) {
            mproc_obj_unref(kw);
            return fail(L, "NEWOBJ_EX with keyword arguments");
        }
        mproc_obj_unref(kw);
        if (!kw)
            return L->status;
    }
    args = pop(L);
    g = args ? pop(L) : NULL;
    mproc_obj *o = NULL;
    int r = g ? apply(L, g, args, newobj, &o) : L->status;
    mproc_obj_unref(g);
    mproc_obj_unref(args);
    return r < 0 ? r : push(L, o);
}

static int op_global_text(loader *L)
{
    char module[256], name[256];
    size_t mn = 0, nn = 0;
    if (take_line(L, module, sizeof module, &mn) < 0 ||
        take_line(L, name, sizeof name, &nn) < 0)
        return L->status;
    if (mproc__utf8_check((unsigned char *)module, mn) < 0 ||
        mproc__utf8_check((unsigned char *)name, nn) < 0 ||
        strlen(module) != mn || strlen(name) != nn)
        return fail(L, "GLOBAL name that is not UTF-8");
    return push_global(L, module, name);
}

static int op_stack_global(loader *L)
{
    mproc_obj *name = pop(L);
    mproc_obj *module = name ? pop(L) : NULL;
    int r;
    if (!module)
        r = L->status;
    else if (mproc__type(module) != MPROC_OBJ_STR ||
             mproc__type(name) != MPROC_OBJ_STR ||
             strlen(module->u.s.p) != module->u.s.n ||
             strlen(name->u.s.p) != name->u.s.n || module->u.s.n > 255 ||
             name->u.s.n > 255)
        r = fail(L, "STACK_GLOBAL without two str names");
    else
        r = push_global(L, module->u.s.p, name->u.s.p);
    mproc_obj_unref(name);
    mproc_obj_unref(module);
    return r;
}

static int op_pop(loader *L)
{
    if (L->sn > fence(L)) {
        mproc_obj_unref(L->stack[--L->sn]);
        return 0;
    }
    size_t k = 0;
    return pop_mark(L, &k);
}

static int op_mark(loader *L)
{
    if (L->mn == L->mcap &&
        (charge(L, (L->mcap ? L->mcap : 8) * sizeof(size_t)) < 0 ||
         MPROC__GROW(L->marks, L->mcap, L->mn + 1) < 0))
        return L->status ? L->status : nomem(L);
    L->marks[L->mn++] = L->sn;
    return 0;
}

/* BININT, BININT1 and BININT2 ints (32 bits at most): always tagged, no
 * memory of their own to charge (the slot they take on the stack or in a
 * list is). */
static int push_int(loader *L, int64_t v)
{
    return push(L, mproc__small(v));
}

static bool is_small_int_op(unsigned char c)
{
    return c == 'K' || c == 'M' || c == 'J';
}

/* BININT1, BININT2 or BININT, and the run of them that follows (a list's
 * items come in batches of up to 1000): one loop, no dispatch per int. */
static int int_run(loader *L, unsigned char c)
{
    for (;;) {
        const unsigned char *q = take(L, c == 'K' ? 1 : c == 'M' ? 2 : 4);
        if (!q)
            return L->status;
        int64_t v =
            c == 'K'   ? q[0]
            : c == 'M' ? (int64_t)(q[0] | (unsigned)q[1] << 8)
                       : (int32_t)(q[0] | (uint32_t)q[1] << 8 |
                                   (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24);
        int r = push_int(L, v);
        if (r < 0 || L->pos == L->len)
            return r;
        c = L->p[L->pos];
        if (!is_small_int_op(c))
            return 0;
        L->at = L->pos++;
        L->opc = c;
    }
}

/* SHORT_BINUNICODE, with the MEMOIZE protocol 4 writes after every str
 * and a small int after that taken here too: a dict's items come as key,
 * MEMOIZE, value (two dispatches less for each). */
static int short_str(loader *L)
{
    const unsigned char *q = take(L, 1);
    int r = q ? load_str(L, *q) : L->status;
    if (r == 0 && L->pos < L->len && L->p[L->pos] == 0x94) {
        L->at = L->pos++;
        L->opc = 0x94;
        r = memo_put(L, L->memo_count);
    }
    if (r == 0 && L->pos < L->len && is_small_int_op(L->p[L->pos])) {
        L->at = L->pos;
        L->opc = L->p[L->pos++];
        r = int_run(L, L->opc);
    }
    return r;
}

static int op_binary(loader *L, unsigned char c)
{
    uint64_t v = 0;
    switch (c) {
    case 0x8a:
        if (take_le(L, 1, &v) < 0)
            return L->status;
        return load_long(L, v);
    case 0x8b:
        if (take_le(L, 4, &v) < 0)
            return L->status;
        if ((int32_t)(uint32_t)v < 0)
            return fail(L, "LONG4 with a negative length");
        return load_long(L, v);
    case 'G': {
        const unsigned char *q = take(L, 8);
        if (!q)
            return L->status;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
            u = u << 8 | q[i];
        if (charge(L, OBJ_COST) < 0)
            return L->status;
        mproc_obj *o = mproc__slab_alloc(&L->slab, MPROC_OBJ_FLOAT, 0);
        if (o)
            memcpy(&o->u.f, &u, 8);
        return push(L, o);
    }
    case 'T':
    case 'B':
        if (take_le(L, 4, &v) < 0)
            return L->status;
        if (c == 'T' && (int32_t)(uint32_t)v < 0)
            return fail(L, "BINSTRING with a negative length");
        return load_bytes(L, MPROC_OBJ_BYTES, v);
    case 'U':
    case 'C':
        if (take_le(L, 1, &v) < 0)
            return L->status;
        return load_bytes(L, MPROC_OBJ_BYTES, v);
    case 0x8e:
    case 0x96:
        if (take_le(L, 8, &v) < 0)
            return L->status;
        if (v > L->len - L->pos)
            return fail(L, "truncated: %llu bytes announced",
                        (unsigned long long)v);
        return load_bytes(L, c == 0x96 ? MPROC_OBJ_BYTEARRAY : MPROC_OBJ_BYTES,
                          v);
    case 'X':
        if (take_le(L, 4, &v) < 0)
            return L->status;
        return load_str(L, v);
    case 0x8d:
        if (take_le(L, 8, &v) < 0)
            return L->status;
        if (v > L->len - L->pos)
            return fail(L, "truncated: %llu bytes announced",
                        (unsigned long long)v);
        return load_str(L, v);
    case 'h':
        if (take_le(L, 1, &v) < 0)
            return L->status;
        return memo_get(L, v);
    case 'j':
        if (take_le(L, 4, &v) < 0)
            return L->status;
        return memo_get(L, v);
    case 'q':
        if (take_le(L, 1, &v) < 0)
            return L->status;
        return memo_put(L, v);
    case 'r':
        if (take_le(L, 4, &v) < 0)
            return L->status;
        return memo_put(L, v);
    case 0x80:
        if (take_le(L, 1, &v) < 0)
            return L->status;
        if (v > MPROC_PICKLE_HIGHEST_PROTOCOL)
            return fail(L, "unsupported pickle protocol %llu",
                        (unsigned long long)v);
        return 0;
    case 0x95:
        if (take_le(L, 8, &v) < 0)
            return L->status;
        if (v > L->len - L->pos)
            return fail(L, "FRAME of %llu bytes beyond the end",
                        (unsigned long long)v);
        return 0;
    default:
        return fail(L, "internal: opcode");
    }
}

static const char *refused_name(unsigned char c)
{
    switch (c) {
    case 'P':
        return "PERSID";
    case 'Q':
        return "BINPERSID";
    case 'i':
        return "INST";
    case 'o':
        return "OBJ";
    case 0x82:
        return "EXT1";
    case 0x83:
        return "EXT2";
    case 0x84:
        return "EXT4";
    case 0x97:
        return "NEXT_BUFFER";
    case 0x98:
        return "READONLY_BUFFER";
    default:
        return NULL;
    }
}

/* One opcode; 1 at STOP. */
static int step(loader *L)
{
    L->at = L->pos;
    if (L->pos == L->len)
        return fail(L, "truncated: no STOP");
    const unsigned char *q = take(L, 1);
    unsigned char c = L->opc = *q;
    uint64_t v = 0;
    switch (c) {
    case '.':
        return L->sn > fence(L) ? 1 : fail(L, "STOP with an empty stack");
    case '(':
        return op_mark(L);
    case '0':
        return op_pop(L);
    case '1':
    case 't':
    case 'l':
    case 'd':
    case 'e':
    case 'u':
    case 0x90:
    case 0x91:
        return op_mark_to(L, c);
    case '2': {
        mproc_obj *o = top(L);
        if (o && has_children(o))
            L->shared = true;
        return o ? push(L, own(o)) : L->status;
    }
    case 'N':
        return push(L, mproc_obj_none());
    case 0x88:
    case 0x89:
        return push(L, mproc_obj_bool(c == 0x88));
    case 'I':
    case 'L':
        return load_int_text(L, c == 'L');
    case 'F':
        return load_float_text(L);
    case 'S':
        return load_string(L);
    case 'V':
        return load_unicode(L);
    case 'g':
    case 'p':
        if (line_uint(L, &v) < 0)
            return L->status;
        return c == 'g' ? memo_get(L, v) : memo_put(L, v);
    case 0x94:
        return memo_put(L, L->memo_count);
    case ')':
        return tuple_from(L, L->sn);
    case 0x85:
    case 0x86:
    case 0x87: {
        size_t n = (size_t)(c - 0x84);
        if (L->sn - fence(L) < n)
            return fail(L, "stack underflow");
        return tuple_from(L, L->sn - n);
    }
    case ']':
        return new_container(L, mproc_obj_list_new());
    case '}':
        return new_container(L, mproc_obj_dict_new());
    case 0x8f:
        return new_container(L, mproc_obj_set_new());
    case 'a': {
        if (L->sn - fence(L) < 2)
            return fail(L, "stack underflow");
        return append_from(L, L->sn - 1);
    }
    case 's':
        if (L->sn - fence(L) < 3)
            return fail(L, "stack underflow");
        return setitems_from(L, L->sn - 2);
    case 'R':
        return op_reduce(L, false, false);
    case 0x81:
        return op_reduce(L, true, false);
    case 0x92:
        return op_reduce(L, true, true);
    case 'b':
        return build(L);
    case 'c':
        return op_global_text(L);
    case 0x93:
        return op_stack_global(L);
    case 'J':
    case 'K':
    case 'M':
        return int_run(L, c);
    case 0x8c:
        return short_str(L);
    case 0x8a:
    case 0x8b:
    case 'G':
    case 'T':
    case 'B':
    case 'U':
    case 'C':
    case 0x8e:
    case 0x96:
    case 'X':
    case 0x8d:
    case 'h':
    case 'j':
    case 'q':
    case 'r':
    case 0x80:
    case 0x95:
        return op_binary(L, c);
    default: {
        const char *name = refused_name(c);
        if (name)
            return fail(L, "opcode %s is not allowed", name);
        return fail(L, "unknown opcode");
    }
    }
}

/* ---- the finished value ----------------------------------------------- */

static bool has_children(const mproc_obj *o)
{
    switch ((mproc_obj_type)mproc__type(o)) {
    case MPROC_OBJ_TUPLE:
    case MPROC_OBJ_LIST:
    case MPROC_OBJ_DICT:
    case MPROC_OBJ_SET:
    case MPROC_OBJ_FROZENSET:
    case MPROC_OBJ_REDUCE:
        return true;
    default:
        return false;
    }
}

static mproc_obj *child(const mproc_obj *o, size_t i)
{
    switch ((mproc_obj_type)mproc__type(o)) {
    case MPROC_OBJ_TUPLE:
    case MPROC_OBJ_LIST:
        return i < o->u.seq.n ? o->u.seq.items[i] : NULL;
    case MPROC_OBJ_DICT:
        return i < 2 * o->u.t.n
                   ? (i % 2 ? o->u.t.e[i / 2].value : o->u.t.e[i / 2].key)
                   : NULL;
    case MPROC_OBJ_SET:
    case MPROC_OBJ_FROZENSET:
        return i < o->u.t.n ? o->u.t.e[i].key : NULL;
    case MPROC_OBJ_REDUCE:
        /* args, state: either may be NULL */
        return i == 0 ? (o->u.red.args ? o->u.red.args : o->u.red.state)
               : i == 1 && o->u.red.args ? o->u.red.state
                                         : NULL;
    default:
        return NULL;
    }
}

enum { WHITE, GREY, BLACK };

/* Walks the value depth first without recursion: a value met again while
 * it is being walked is a cycle; heights bound the nesting. Not needed
 * when no container was pushed twice (a cycle needs a second reference
 * to the container it closes on) and there are too few containers to
 * nest past the limit. */
static int check_value(loader *L, mproc_obj *root)
{
    if (!has_children(root) || (!L->shared && L->containers <= L->max_depth))
        return 0;
    typedef struct {
        mproc_obj *o;
        size_t next;
    } frame;
    frame *st = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    if (MPROC__GROW(st, cap, 1) < 0)
        return nomem(L);
    root->mark = GREY;
    root->height = 1;
    st[n++] = (frame){root, 0};
    while (n && r == 0) {
        frame *f = &st[n - 1];
        if (mproc__type(f->o) == MPROC_OBJ_LIST ||
            mproc__type(f->o) == MPROC_OBJ_TUPLE)
            while (f->next < f->o->u.seq.n &&
                   !has_children(f->o->u.seq.items[f->next]))
                f->next++; /* leaves: nothing to walk */
        mproc_obj *c = child(f->o, f->next++);
        if (!c) {
            f->o->mark = BLACK;
            uint32_t h = f->o->height;
            n--;
            if (n && st[n - 1].o->height < h + 1)
                st[n - 1].o->height = h + 1;
            continue;
        }
        if (!has_children(c))
            continue;
        if (c->mark == GREY) {
            r = fail(L, "the value contains itself");
        } else if (c->mark == BLACK) {
            if (n + c->height > L->max_depth)
                r = fail(L, "value nested deeper than %zu", L->max_depth);
            else if (f->o->height < c->height + 1)
                f->o->height = c->height + 1;
        } else if (n + 1 > L->max_depth) {
            r = fail(L, "value nested deeper than %zu", L->max_depth);
        } else if (MPROC__GROW(st, cap, n + 1) < 0) {
            r = nomem(L);
        } else {
            c->mark = GREY;
            c->height = 1;
            st[n++] = (frame){c, 0};
        }
    }
    free(st);
    return r;
}

/* ---- loads ------------------------------------------------------------ */

/* Drops a reference of the decoder's (own's counterpart): while another
 * remains, a plain decrement does (nothing is shared yet). */
static void disown(mproc_obj *o)
{
    if (o && !mproc__is_small(o) && o->refs != MPROC__OBJ_STATIC && o->refs > 1)
        o->refs--;
    else
        mproc_obj_unref(o);
}

/* On failure every container made is emptied before the references are
 * dropped: that breaks any cycle a hostile stream made. On success a cycle
 * can still lie outside the value returned (a list appended to itself,
 * left in the memo, then something else returned): when a container was
 * pushed twice (no cycle without that), those check_value's walk did not
 * reach are emptied as well. */
static void finish(loader *L, bool failed)
{
    if (failed || L->shared)
        for (mproc_obj *o = L->made; o; o = o->next)
            if (failed || o->mark != BLACK)
                mproc__obj_clear(o);
    while (L->sn)
        disown(L->stack[--L->sn]);
    for (size_t i = 0; i < L->memocap; i++)
        disown(L->memo[i]);
    for (mproc_obj *o = L->made; o;) {
        mproc_obj *next = o->next;
        disown(o);
        o = next;
    }
    mproc__slab_done(L->slab);
    free(L->stack);
    free(L->marks);
    free(L->memo);
}

int mproc_pickle_loads(const void *data, size_t len,
                       const mproc_pickle_limits *limits, mproc_obj **out,
                       char *err, size_t errcap)
{
    if (err && errcap)
        err[0] = 0;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!data && len)
        return -EINVAL;
    loader L = {.p = data, .len = len, .err = err, .errcap = errcap};
    L.max_depth =
        limits && limits->max_depth ? limits->max_depth : MPROC_OBJ_MAX_DEPTH;
    L.max_memo =
        limits && limits->max_memo ? limits->max_memo : DEFAULT_MAX_MEMO;
    L.max_bytes = limits && limits->max_bytes ? limits->max_bytes
                  : len > (SIZE_MAX - DEFAULT_MAX_BYTES) / 8
                      ? SIZE_MAX
                      : DEFAULT_MAX_BYTES + 8 * len;
    int r;
    while ((r = step(&L)) == 0)
        ;
    mproc_obj *result = NULL;
    if (r > 0) {
        result = own(L.stack[L.sn - 1]);
        r = check_value(&L, result);
    }
    if (r < 0) {
        mproc_obj_unref(result);
        result = NULL;
    }
    finish(&L, r < 0);
    if (r < 0)
        return r;
    *out = result;
    return 0;
}
