/*
 * obj/pickle_globals.c - the decoder's allow-list of globals (GLOBAL,
 * STACK_GLOBAL: only these resolve, into inert reduce values) and the
 * values made from them: REDUCE, NEWOBJ and BUILD are taken only on
 * allowed globals with the argument shapes CPython writes (sets,
 * frozensets, bytes and bytearrays in their older forms, exceptions,
 * manager Tokens and proxies, arrays, ranges, slices); anything else fails
 * naming the opcode and the global. Also the set and dict inserts of
 * decoded items (unhashable ones fail).
 */
#include "obj/pickle_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int mproc__pk_push_global(loader *L, const char *module, const char *name)
{
    module = py3_module(module);
    if (strcmp(module, "builtins") == 0 && strcmp(name, "xrange") == 0)
        name = "range"; /* a range pickled with protocol 0 or 1 */
    if (resolve(module, name) == G_NONE)
        return mproc__pk_fail(L, "global %s.%s is not allowed", module, name);
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

/* Items from a list or tuple into a new set or frozenset. */
static int set_from(loader *L, mproc_obj *items, bool frozen, mproc_obj **out)
{
    mproc_obj *s = frozen ? mproc_obj_frozenset_new() : mproc_obj_set_new();
    if (!s || charge(L, OBJ_COST) < 0) {
        mproc_obj_unref(s);
        return L->status ? L->status : mproc__pk_nomem(L);
    }
    for (size_t i = 0; items && i < items->u.seq.n; i++)
        if (mproc__pk_add_to_set(L, s, mproc_obj_ref(items->u.seq.items[i])) <
            0) {
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
        return L->status ? L->status : mproc__pk_nomem(L);
    }
    for (size_t i = 0; items && i < items->u.seq.n; i++) {
        if (charge(L, ENTRY_COST) < 0 ||
            mproc_obj_list_append(l, mproc_obj_ref(items->u.seq.items[i])) <
                0) {
            mproc_obj_unref(l);
            return L->status ? L->status : mproc__pk_nomem(L);
        }
    }
    *out = l;
    return 0;
}

int mproc__pk_new_bytes(loader *L, mproc_obj_type type, const void *p, size_t n,
                        mproc_obj **out)
{
    if (charge(L, OBJ_COST + n) < 0)
        return L->status;
    *out = type == MPROC_OBJ_BYTEARRAY ? mproc_obj_bytearray(p, n)
                                       : mproc_obj_bytes(p, n);
    return *out ? 0 : mproc__pk_nomem(L);
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
            return mproc__pk_fail(L, "latin-1 text holds U+%04X", c);
        }
        unsigned char ch = (unsigned char)c;
        mproc__buf_put(&b, &ch, 1);
    }
    int r = b.oom ? mproc__pk_nomem(L)
                  : mproc__pk_new_bytes(L, type, b.p, b.len, out);
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
        return mproc__pk_nomem(L);
    made(L, *out);
    return 0;
}

/* callable(*args) (REDUCE) or cls.__new__(cls, *args) (NEWOBJ) for the
 * allowed globals, with the shapes CPython writes. */
int mproc__pk_apply(loader *L, const mproc_obj *g, mproc_obj *args, bool newobj,
                    mproc_obj **out)
{
    const char *opname = newobj ? "NEWOBJ" : "REDUCE";
    int tag = tag_of(g);
    if (tag == G_NONE)
        return mproc__pk_fail(L, "%s on a %s, not an allowed global", opname,
                              mproc_obj_type_name(g));
    if (!args || mproc__type(args) != MPROC_OBJ_TUPLE)
        return mproc__pk_fail(L, "%s arguments are not a tuple", opname);
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
            return mproc__pk_new_bytes(L, MPROC_OBJ_BYTES, NULL, 0, out);
        break;
    case G_BYTEARRAY:
        if (!newobj && n == 0)
            return mproc__pk_new_bytes(L, MPROC_OBJ_BYTEARRAY, NULL, 0, out);
        if (!newobj && n == 1 && mproc__type(a0) == MPROC_OBJ_BYTES)
            return mproc__pk_new_bytes(L, MPROC_OBJ_BYTEARRAY, a0->u.s.p,
                                       a0->u.s.n, out);
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
                return mproc__pk_nomem(L);
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
        return mproc__pk_fail(
            L, "%s on %s.%s with arguments of a shape not allowed", opname,
            g->u.red.module, g->u.red.name);
    return inert(L, g, args, newobj, out);
}

/* BUILD: state given to a reduce value made here, once. */
int mproc__pk_build(loader *L)
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
        return mproc__pk_fail(L, "BUILD on %s not allowed", tn);
    }
    if (mproc__type(state) == MPROC_OBJ_NONE) {
        mproc_obj_unref(state);
        return 0;
    }
    o->u.red.state = state;
    return 0;
}
