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
 *
 * This file has the opcode loop, the stack, marks and memo, and the walk
 * of the finished value; the allow-list and the values made from it are
 * in pickle_globals.c, the text forms of protocols 0 and 1 in
 * pickle_text.c, what they share in pickle_impl.h.
 */
#include "obj/pickle_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- failures --------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) int mproc__pk_fail(loader *L,
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

int mproc__pk_nomem(loader *L)
{
    if (!L->status)
        L->status = -ENOMEM;
    if (L->err && L->errcap)
        snprintf(L->err, L->errcap, "out of memory at offset %zu", L->at);
    return L->status;
}

/* ---- input ------------------------------------------------------------ */

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
int mproc__pk_take_line(loader *L, char *buf, size_t cap, size_t *n)
{
    const unsigned char *q = L->p + L->pos;
    const unsigned char *nl = memchr(q, '\n', L->len - L->pos);
    if (!nl)
        return mproc__pk_fail(L, "truncated: no end of line");
    size_t k = (size_t)(nl - q);
    if (k >= cap)
        return mproc__pk_fail(L, "line of %zu bytes too long", k);
    memcpy(buf, q, k);
    buf[k] = 0;
    L->pos += k + 1;
    if (n)
        *n = k;
    return 0;
}

/* A long text line (STRING, UNICODE) in place: its start and length. */
int mproc__pk_take_long_line(loader *L, const unsigned char **s, size_t *n)
{
    const unsigned char *q = L->p + L->pos;
    const unsigned char *nl = memchr(q, '\n', L->len - L->pos);
    if (!nl)
        return mproc__pk_fail(L, "truncated: no end of line");
    *s = q;
    *n = (size_t)(nl - q);
    L->pos += *n + 1;
    return 0;
}

/* ---- the stack, marks and memo ---------------------------------------- */

/* Makes room for one more on the stack; drops o when it cannot. */
int mproc__pk_grow_stack(loader *L, mproc_obj *o)
{
    if (charge(L, (L->scap ? L->scap : 8) * sizeof(mproc_obj *)) < 0 ||
        MPROC__GROW(L->stack, L->scap, L->sn + 1) < 0) {
        mproc_obj_unref(o);
        return L->status ? L->status : mproc__pk_nomem(L);
    }
    return 0;
}

/* Pops the top mark: the stack index it marks. */
static int pop_mark(loader *L, size_t *k)
{
    if (!L->mn)
        return mproc__pk_fail(L, "no MARK on the stack");
    *k = L->marks[--L->mn];
    return 0;
}

/* Drops the stack items from k on. */
static void drop_from(loader *L, size_t k)
{
    while (L->sn > k)
        mproc_obj_unref(L->stack[--L->sn]);
}

static int memo_put(loader *L, uint64_t i)
{
    mproc_obj *o = top(L);
    if (!o)
        return L->status;
    if (i >= L->max_memo)
        return mproc__pk_fail(L, "memo index %llu over the limit of %zu",
                              (unsigned long long)i, L->max_memo);
    if (i >= L->memocap) {
        size_t cap = L->memocap ? L->memocap : 64;
        while (cap <= i)
            cap *= 2;
        if (charge(L, (cap - L->memocap) * sizeof(mproc_obj *)) < 0)
            return L->status;
        mproc_obj **m = realloc(L->memo, cap * sizeof(mproc_obj *));
        if (!m)
            return mproc__pk_nomem(L);
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
        return mproc__pk_fail(L, "memo key %llu not found",
                              (unsigned long long)i);
    if (mproc__is_container(L->memo[i]))
        L->shared = true;
    return push(L, own(L->memo[i]));
}

/* ---- inserts (hashing the decoded keys and items) --------------------- */

/* (pickle_impl.h) Here, where ADDITEMS calls it once per item. */
int mproc__pk_add_to_set(loader *L, mproc_obj *s, mproc_obj *item)
{
    int64_t h;
    int r = mproc__obj_hash(item, &h, 0);
    if (r < 0) {
        const char *tn = mproc_obj_type_name(item);
        r = r == -ELOOP ? mproc__pk_fail(L, "set item nested too deep")
                        : mproc__pk_fail(L, "unhashable set item (%s)", tn);
        mproc_obj_unref(item);
        return r;
    }
    if (charge(L, ENTRY_COST) < 0) {
        mproc_obj_unref(item);
        return L->status;
    }
    r = mproc__set_put(&s->u.t, item, h);
    return r == -ENOMEM ? mproc__pk_nomem(L)
           : r < 0      ? mproc__pk_fail(L, "set item nested too deep")
                        : 0;
}

/* d[k] = v (both stolen): fails on an unhashable key. */
static int set_item(loader *L, mproc_obj *d, mproc_obj *k, mproc_obj *v)
{
    int64_t h;
    int r = mproc__obj_hash(k, &h, 0);
    if (r < 0) {
        const char *tn = mproc_obj_type_name(k);
        mproc_obj_unref(k);
        mproc_obj_unref(v);
        return r == -ELOOP ? mproc__pk_fail(L, "dict key nested too deep")
                           : mproc__pk_fail(L, "unhashable dict key (%s)", tn);
    }
    if (charge(L, ENTRY_COST) < 0) {
        mproc_obj_unref(k);
        mproc_obj_unref(v);
        return L->status;
    }
    r = mproc__table_put(&d->u.t, k, v, h, 0);
    return r == -ENOMEM ? mproc__pk_nomem(L)
           : r < 0      ? mproc__pk_fail(L, "dict key too deep")
                        : 0;
}

/* ---- opcodes ---------------------------------------------------------- */

static int load_str(loader *L, size_t n)
{
    const unsigned char *s = take(L, n);
    if (!s || charge(L, OBJ_COST + n) < 0)
        return L->status;
    if (mproc__utf8_check(s, n) < 0)
        return mproc__pk_fail(L, "str that is not UTF-8");
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
    if (!s || mproc__pk_new_bytes(L, type, s, n, &o) < 0)
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
        return mproc__pk_nomem(L);
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
        return mproc__pk_fail(L, "nothing to append to");
    }
    mproc_obj *l = L->stack[k - 1];
    if (mproc__type(l) != MPROC_OBJ_LIST) {
        drop_from(L, k);
        return mproc__pk_fail(L, "append to a %s", mproc_obj_type_name(l));
    }
    size_t n = L->sn - k;
    if (charge(L, n * SLOT_COST) < 0 ||
        (l->u.seq.n + n > l->u.seq.cap &&
         MPROC__GROW(l->u.seq.items, l->u.seq.cap, l->u.seq.n + n) < 0)) {
        drop_from(L, k);
        return L->status ? L->status : mproc__pk_nomem(L);
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
        return mproc__pk_fail(L, "SETITEMS without a dict and pairs");
    }
    mproc_obj *d = L->stack[k - 1];
    size_t i = k;
    /* Room for the batch at once (a batch is at most what the stack
     * holds, already counted against the limit). */
    int r = mproc__table_reserve(&d->u.t, (L->sn - k) / 2) < 0
                ? mproc__pk_nomem(L)
                : 0;
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
        r = mproc__pk_add_to_set(L, s, L->stack[i]);
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
            return mproc__pk_fail(L, "ADDITEMS without a set");
        }
        return additems_from(L, k, L->stack[k - 1]);
    case 0x91: {
        mproc_obj *s = mproc_obj_frozenset_new();
        if (!s || charge(L, OBJ_COST) < 0) {
            mproc_obj_unref(s);
            drop_from(L, k);
            return L->status ? L->status : mproc__pk_nomem(L);
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
        return mproc__pk_fail(L, "internal: opcode");
    }
}

static int op_reduce(loader *L, bool newobj, bool ex)
{
    mproc_obj *kw = NULL, *args, *g;
    if (ex) {
        kw = pop(L);
        if (kw && (mproc__type(kw) != MPROC_OBJ_DICT || kw->u.t.n)) {
            mproc_obj_unref(kw);
            return mproc__pk_fail(L, "NEWOBJ_EX with keyword arguments");
        }
        mproc_obj_unref(kw);
        if (!kw)
            return L->status;
    }
    args = pop(L);
    g = args ? pop(L) : NULL;
    mproc_obj *o = NULL;
    int r = g ? mproc__pk_apply(L, g, args, newobj, &o) : L->status;
    mproc_obj_unref(g);
    mproc_obj_unref(args);
    return r < 0 ? r : push(L, o);
}

static int op_global_text(loader *L)
{
    char module[256], name[256];
    size_t mn = 0, nn = 0;
    if (mproc__pk_take_line(L, module, sizeof module, &mn) < 0 ||
        mproc__pk_take_line(L, name, sizeof name, &nn) < 0)
        return L->status;
    if (mproc__utf8_check((unsigned char *)module, mn) < 0 ||
        mproc__utf8_check((unsigned char *)name, nn) < 0 ||
        strlen(module) != mn || strlen(name) != nn)
        return mproc__pk_fail(L, "GLOBAL name that is not UTF-8");
    return mproc__pk_push_global(L, module, name);
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
        r = mproc__pk_fail(L, "STACK_GLOBAL without two str names");
    else
        r = mproc__pk_push_global(L, module->u.s.p, name->u.s.p);
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
        return L->status ? L->status : mproc__pk_nomem(L);
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
            return mproc__pk_fail(L, "LONG4 with a negative length");
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
            return mproc__pk_fail(L, "BINSTRING with a negative length");
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
            return mproc__pk_fail(L, "truncated: %llu bytes announced",
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
            return mproc__pk_fail(L, "truncated: %llu bytes announced",
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
            return mproc__pk_fail(L, "unsupported pickle protocol %llu",
                                  (unsigned long long)v);
        return 0;
    case 0x95:
        if (take_le(L, 8, &v) < 0)
            return L->status;
        if (v > L->len - L->pos)
            return mproc__pk_fail(L, "FRAME of %llu bytes beyond the end",
                                  (unsigned long long)v);
        return 0;
    default:
        return mproc__pk_fail(L, "internal: opcode");
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
        return mproc__pk_fail(L, "truncated: no STOP");
    const unsigned char *q = take(L, 1);
    unsigned char c = L->opc = *q;
    uint64_t v = 0;
    switch (c) {
    case '.':
        return L->sn > fence(L) ? 1
                                : mproc__pk_fail(L, "STOP with an empty stack");
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
        if (o && mproc__is_container(o))
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
        return mproc__pk_load_int_text(L, c == 'L');
    case 'F':
        return mproc__pk_load_float_text(L);
    case 'S':
        return mproc__pk_load_string(L);
    case 'V':
        return mproc__pk_load_unicode(L);
    case 'g':
    case 'p':
        if (mproc__pk_line_uint(L, &v) < 0)
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
            return mproc__pk_fail(L, "stack underflow");
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
            return mproc__pk_fail(L, "stack underflow");
        return append_from(L, L->sn - 1);
    }
    case 's':
        if (L->sn - fence(L) < 3)
            return mproc__pk_fail(L, "stack underflow");
        return setitems_from(L, L->sn - 2);
    case 'R':
        return op_reduce(L, false, false);
    case 0x81:
        return op_reduce(L, true, false);
    case 0x92:
        return op_reduce(L, true, true);
    case 'b':
        return mproc__pk_build(L);
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
            return mproc__pk_fail(L, "opcode %s is not allowed", name);
        return mproc__pk_fail(L, "unknown opcode");
    }
    }
}

/* ---- the finished value ----------------------------------------------- */

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
    if (!mproc__is_container(root) ||
        (!L->shared && L->containers <= L->max_depth))
        return 0;
    typedef struct {
        mproc_obj *o;
        size_t next;
    } frame;
    frame *st = NULL;
    size_t n = 0, cap = 0;
    int r = 0;
    if (MPROC__GROW(st, cap, 1) < 0)
        return mproc__pk_nomem(L);
    root->mark = GREY;
    root->height = 1;
    st[n++] = (frame){root, 0};
    while (n && r == 0) {
        frame *f = &st[n - 1];
        if (mproc__type(f->o) == MPROC_OBJ_LIST ||
            mproc__type(f->o) == MPROC_OBJ_TUPLE)
            while (f->next < f->o->u.seq.n &&
                   !mproc__is_container(f->o->u.seq.items[f->next]))
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
        if (!mproc__is_container(c))
            continue;
        if (c->mark == GREY) {
            r = mproc__pk_fail(L, "the value contains itself");
        } else if (c->mark == BLACK) {
            if (n + c->height > L->max_depth)
                r = mproc__pk_fail(L, "value nested deeper than %zu",
                                   L->max_depth);
            else if (f->o->height < c->height + 1)
                f->o->height = c->height + 1;
        } else if (n + 1 > L->max_depth) {
            r = mproc__pk_fail(L, "value nested deeper than %zu", L->max_depth);
        } else if (MPROC__GROW(st, cap, n + 1) < 0) {
            r = mproc__pk_nomem(L);
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
