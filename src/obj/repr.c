/*
 * obj/repr.c - Python's repr() of a value, byte for byte: str quoting and
 * escapes (non-printable code points from nonprintable.h), bytes escapes,
 * ints of any size in decimal, floats in their shortest round-trip form,
 * the containers' punctuation ("(1,)", "set()", "frozenset({1})"), and
 * reduce values as Python prints exceptions ("ValueError('x')", also for
 * the other classes, whose own repr Python would call).
 */
#include "obj/obj_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obj/nonprintable.h"

static bool printable(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= 0x20 && cp < 0x7f;
    size_t lo = 0, hi = sizeof nonprintable / sizeof *nonprintable;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < nonprintable[mid][0])
            hi = mid;
        else if (cp > nonprintable[mid][1])
            lo = mid + 1;
        else
            return false;
    }
    return true;
}

static void put(mproc__buf *b, const char *s)
{
    mproc__buf_put(b, s, strlen(s));
}

/* The quote Python picks: ' unless the text has ' and no ". */
static char quote_of(const char *p, size_t n)
{
    return memchr(p, '\'', n) && !memchr(p, '"', n) ? '"' : '\'';
}

static void escape_common(mproc__buf *b, uint32_t c, char q, bool *done)
{
    const char *esc = c == '\\'   ? "\\\\"
                      : c == '\t' ? "\\t"
                      : c == '\n' ? "\\n"
                      : c == '\r' ? "\\r"
                                  : NULL;
    *done = true;
    if (esc)
        put(b, esc);
    else if (c == (uint32_t)q) {
        char e[2] = {'\\', q};
        mproc__buf_put(b, e, 2);
    } else
        *done = false;
}

static void str_repr(const mproc_obj *o, mproc__buf *b)
{
    char q = quote_of(o->u.s.p, o->u.s.n);
    mproc__buf_put(b, &q, 1);
    const unsigned char *p = (const unsigned char *)o->u.s.p;
    const unsigned char *end = p + o->u.s.n;
    while (p < end) {
        const unsigned char *start = p;
        uint32_t c = mproc__utf8_next(&p);
        bool done;
        escape_common(b, c, q, &done);
        if (done)
            continue;
        if (printable(c)) {
            mproc__buf_put(b, start, (size_t)(p - start));
            continue;
        }
        char x[12];
        int k = c < 0x100     ? snprintf(x, sizeof x, "\\x%02x", c)
                : c < 0x10000 ? snprintf(x, sizeof x, "\\u%04x", c)
                              : snprintf(x, sizeof x, "\\U%08x", c);
        mproc__buf_put(b, x, (size_t)k);
    }
    mproc__buf_put(b, &q, 1);
}

/* bytearray's repr escapes ' even inside "" (CPython's does). */
static void bytes_repr(const mproc_obj *o, mproc__buf *b)
{
    char q = quote_of(o->u.s.p, o->u.s.n);
    bool ba = mproc__type(o) == MPROC_OBJ_BYTEARRAY;
    mproc__buf_put(b, "b", 1);
    mproc__buf_put(b, &q, 1);
    const unsigned char *p = (const unsigned char *)o->u.s.p;
    for (size_t i = 0; i < o->u.s.n; i++) {
        bool done;
        if (ba && p[i] == '\'') {
            mproc__buf_put(b, "\\'", 2);
            continue;
        }
        escape_common(b, p[i], q, &done);
        if (done)
            continue;
        if (p[i] >= 0x20 && p[i] < 0x7f) {
            mproc__buf_put(b, &p[i], 1);
            continue;
        }
        char x[8];
        int k = snprintf(x, sizeof x, "\\x%02x", p[i]);
        mproc__buf_put(b, x, (size_t)k);
    }
    mproc__buf_put(b, &q, 1);
}

static int items_repr(mproc_obj *const *items, size_t n, mproc__buf *b,
                      int depth)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            put(b, ", ");
        int r = mproc__obj_repr(items[i], b, depth + 1);
        if (r < 0)
            return r;
    }
    return 0;
}

static int table_repr(const mproc__table *t, bool dict, mproc__buf *b,
                      int depth)
{
    for (size_t i = 0; i < t->n; i++) {
        if (i)
            put(b, ", ");
        int r = mproc__obj_repr(t->e[i].key, b, depth + 1);
        if (r == 0 && dict) {
            put(b, ": ");
            r = mproc__obj_repr(t->e[i].value, b, depth + 1);
        }
        if (r < 0)
            return r;
    }
    return 0;
}

static int reduce_repr(const mproc_obj *o, mproc__buf *b, int depth)
{
    bool builtin = strcmp(o->u.red.module, "builtins") == 0;
    if (!o->u.red.args) {
        /* A bare global: Python prints a class so. */
        put(b, "<class '");
        if (!builtin) {
            put(b, o->u.red.module);
            put(b, ".");
        }
        put(b, o->u.red.name);
        put(b, "'>");
        return 0;
    }
    /* As Python prints an exception: its class's name and its args. */
    put(b, o->u.red.name);
    put(b, "(");
    int r = items_repr(o->u.red.args->u.seq.items, o->u.red.args->u.seq.n, b,
                       depth);
    put(b, ")");
    return r;
}

/* The longest text made: a value whose parts are shared (a list holding
 * one list twice, nested) has a text exponentially longer than itself,
 * and a peer's small pickle can make one. */
#define REPR_MAX ((size_t)64 << 20)

int mproc__obj_repr(const mproc_obj *o, mproc__buf *b, int depth)
{
    if (depth >= MPROC_OBJ_MAX_DEPTH)
        return -ELOOP;
    if (b->len > REPR_MAX)
        return -E2BIG;
    int r = 0;
    switch ((mproc_obj_type)mproc__type(o)) {
    case MPROC_OBJ_NONE:
        put(b, "None");
        break;
    case MPROC_OBJ_BOOL:
        put(b, o->u.b ? "True" : "False");
        break;
    case MPROC_OBJ_INT:
        mproc__int_decimal(o, b);
        break;
    case MPROC_OBJ_FLOAT:
        mproc__double_repr(o->u.f, b);
        break;
    case MPROC_OBJ_STR:
        str_repr(o, b);
        break;
    case MPROC_OBJ_BYTES:
        bytes_repr(o, b);
        break;
    case MPROC_OBJ_BYTEARRAY:
        put(b, "bytearray(");
        bytes_repr(o, b);
        put(b, ")");
        break;
    case MPROC_OBJ_TUPLE:
        put(b, "(");
        r = items_repr(o->u.seq.items, o->u.seq.n, b, depth);
        put(b, o->u.seq.n == 1 ? ",)" : ")");
        break;
    case MPROC_OBJ_LIST:
        put(b, "[");
        r = items_repr(o->u.seq.items, o->u.seq.n, b, depth);
        put(b, "]");
        break;
    case MPROC_OBJ_DICT:
        put(b, "{");
        r = table_repr(&o->u.t, true, b, depth);
        put(b, "}");
        break;
    case MPROC_OBJ_SET:
    case MPROC_OBJ_FROZENSET: {
        bool frozen = mproc__type(o) == MPROC_OBJ_FROZENSET;
        if (o->u.t.n == 0) {
            put(b, frozen ? "frozenset()" : "set()");
            break;
        }
        put(b, frozen ? "frozenset({" : "{");
        r = table_repr(&o->u.t, false, b, depth);
        put(b, frozen ? "})" : "}");
        break;
    }
    case MPROC_OBJ_REDUCE:
        r = reduce_repr(o, b, depth);
        break;
    }
    return r;
}

int mproc_obj_repr(const mproc_obj *o, char **out, size_t *len)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mproc__buf b = {0};
    int r = o ? mproc__obj_repr(o, &b, 0) : -EINVAL;
    mproc__buf_put(&b, "", 1);
    if (r == 0 && b.oom)
        r = -ENOMEM;
    if (r < 0) {
        mproc__buf_free(&b);
        return r;
    }
    if (len)
        *len = b.len - 1;
    *out = (char *)b.p;
    return 0;
}
