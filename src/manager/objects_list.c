/*
 * manager/objects_list.c - the manager's list, Value and Array, as
 * SyncManager's: indexes, slices, ranges and sorting as Python's.
 */
#include "manager/manager_impl.h"
#include "mproc/shm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITEMS ((size_t)1 << 22) /* what a list or range may grow to */

static bool is_reduce_of(const mproc_obj *v, const char *name)
{
    return mproc_obj_type_of(v) == MPROC_OBJ_REDUCE &&
           mproc_obj_reduce_args(v) &&
           strcmp(mproc_obj_reduce_module(v), "builtins") == 0 &&
           strcmp(mproc_obj_reduce_name(v), name) == 0;
}

/* The ints of a range(start, stop, step) pushed onto o: 0, 1 (an error
 * set: OverflowError, MemoryError past MAX_ITEMS) or -ENOMEM. */
static int extend_range(mgr_obj *o, const mproc_obj *range, mgr_reply *r)
{
    const mproc_obj *a = mproc_obj_reduce_args(range);
    int64_t v[3];
    for (size_t i = 0; i < 3; i++)
        if (mproc_obj_len(a) != 3 ||
            mproc_obj_int_value(mproc_obj_item(a, i), &v[i]) < 0) {
            mgr_raise(r, mproc__mgr_exc("OverflowError",
                                        "range bounds do not fit 64 bits"));
            return 1;
        }
    if (v[2] == 0 || v[2] == INT64_MIN) {
        mgr_raise(r, mproc__mgr_exc("ValueError", "bad range step"));
        return 1;
    }
    /* The length, in unsigned arithmetic: no overflow for any bounds. */
    uint64_t span = v[2] > 0
                        ? (v[1] > v[0] ? (uint64_t)v[1] - (uint64_t)v[0] : 0)
                        : (v[0] > v[1] ? (uint64_t)v[0] - (uint64_t)v[1] : 0);
    uint64_t step = v[2] > 0 ? (uint64_t)v[2] : (uint64_t)-v[2];
    uint64_t len = span ? (span - 1) / step + 1 : 0;
    if (len > MAX_ITEMS - o->n) {
        mgr_raise(r, mproc__mgr_exc("MemoryError", NULL));
        return 1;
    }
    for (uint64_t k = 0; k < len; k++) {
        uint64_t at = (uint64_t)v[0] + (v[2] > 0 ? k * step : -(k * step));
        if (mproc__mgr_items_push(o, mproc_obj_int((int64_t)at)) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* Items of a list, tuple, set, frozenset, dict (keys), range, str
 * (characters are not split: refused), pushed onto o. 0, 1 (TypeError
 * set) or -ENOMEM. */
int mproc__mgr_items_extend(mgr_obj *o, const mproc_obj *seq, mgr_reply *r)
{
    if (is_reduce_of(seq, "range"))
        return extend_range(o, seq, r);
    switch (mproc_obj_type_of(seq)) {
    case MPROC_OBJ_LIST:
    case MPROC_OBJ_TUPLE:
    case MPROC_OBJ_SET:
    case MPROC_OBJ_FROZENSET:
        for (size_t i = 0; i < mproc_obj_len(seq); i++)
            if (mproc__mgr_items_push(
                    o, mproc_obj_ref(mproc_obj_item(seq, i))) < 0)
                return -ENOMEM;
        return 0;
    case MPROC_OBJ_DICT:
        for (size_t i = 0; i < mproc_obj_len(seq); i++) {
            mproc_obj *k;
            mproc_obj_dict_item(seq, i, &k, NULL);
            if (mproc__mgr_items_push(o, mproc_obj_ref(k)) < 0)
                return -ENOMEM;
        }
        return 0;
    default:
        mgr_raise(r, mproc__mgr_exc("TypeError", "'%s' object is not iterable",
                                    mproc_obj_type_name(seq)));
        return 1;
    }
}

/* ---- list ---------------------------------------------------------------- */

static const char *const list_exposed[] = {
    "__add__", "__contains__", "__delitem__", "__getitem__", "__len__",
    "__mul__", "__reversed__", "__rmul__",    "__setitem__", "append",
    "count",   "extend",       "index",       "insert",      "pop",
    "remove",  "reverse",      "sort",        "__imul__",    NULL};

/* An index into n items (negative from the end): 0 and *out, or 1 with
 * IndexError / TypeError set. clamp: insert's rule (no error). */
static int index_of(const char *what, const mproc_obj *i, size_t n, bool clamp,
                    size_t *out, mgr_reply *r)
{
    int64_t v;
    mproc_obj_type t = mproc_obj_type_of(i);
    if (t != MPROC_OBJ_INT && t != MPROC_OBJ_BOOL) {
        mgr_raise(r,
                  mproc__mgr_exc("TypeError",
                                 "%s indices must be integers or slices, not "
                                 "%s",
                                 what, mproc_obj_type_name(i)));
        return 1;
    }
    if (mproc_obj_int_value(i, &v) < 0) {
        mgr_raise(r, mproc__mgr_exc("IndexError",
                                    "cannot fit 'int' into an index-sized "
                                    "integer"));
        return 1;
    }
    if (v < 0)
        v += (int64_t)n;
    if (clamp) {
        *out = v < 0 ? 0 : (size_t)v > n ? n : (size_t)v;
        return 0;
    }
    if (v < 0 || (size_t)v >= n) {
        mgr_raise(r,
                  mproc__mgr_exc("IndexError", "%s index out of range", what));
        return 1;
    }
    *out = (size_t)v;
    return 0;
}

/* A slice over n items, as Python's slice.indices: 0 with the first
 * index, the step and the count, or 1 with an error set. */
static int slice_of(const mproc_obj *sl, size_t n, int64_t *start,
                    int64_t *step, size_t *len, mgr_reply *r)
{
    const mproc_obj *a = mproc_obj_reduce_args(sl);
    int64_t v[3] = {0, 0, 1};
    bool none[3];
    for (size_t i = 0; i < 3; i++) {
        const mproc_obj *x = mproc_obj_item(a, i);
        none[i] = mproc_obj_type_of(x) == MPROC_OBJ_NONE;
        if (mproc_obj_len(a) != 3 ||
            (!none[i] && mproc_obj_int_value(x, &v[i]) < 0)) {
            mgr_raise(r,
                      mproc__mgr_exc("IndexError", "cannot fit 'int' into an "
                                                   "index-sized integer"));
            return 1;
        }
    }
    int64_t st = none[2] ? 1 : v[2] == INT64_MIN ? -INT64_MAX : v[2];
    if (st == 0) {
        mgr_raise(r, mproc__mgr_exc("ValueError", "slice step cannot be zero"));
        return 1;
    }
    int64_t len_n = (int64_t)n, b[2];
    for (size_t i = 0; i < 2; i++) {
        int64_t x = v[i];
        if (none[i])
            x = st < 0 ? (i == 0 ? len_n - 1 : -1) : (i == 0 ? 0 : len_n);
        else if (x < 0) {
            x = x < -len_n ? -1 : x + len_n;
            if (x < 0)
                x = st < 0 ? -1 : 0;
        } else if (x >= len_n)
            x = st < 0 ? len_n - 1 : len_n;
        b[i] = x;
    }
    *start = b[0];
    *step = st;
    *len = st < 0 ? (b[1] < b[0] ? (size_t)((b[0] - b[1] - 1) / -st + 1) : 0)
                  : (b[0] < b[1] ? (size_t)((b[1] - b[0] - 1) / st + 1) : 0);
    return 0;
}

/* The items a slice selects, as a list, or an array for an Array. */
static mproc_obj *array_value(const mgr_obj *o);

static int items_slice(mgr_obj *o, const mproc_obj *sl, mgr_reply *r)
{
    int64_t start, step;
    size_t len;
    if (slice_of(sl, o->n, &start, &step, &len, r))
        return 0;
    mproc_obj **sel = malloc((len ? len : 1) * sizeof(void *));
    if (!sel)
        return -ENOMEM;
    for (size_t k = 0; k < len; k++)
        sel[k] = o->items[start + (int64_t)k * step];
    mgr_obj view = *o;
    view.items = sel;
    view.n = view.cap = len;
    mproc_obj *v =
        o->typecode ? array_value(&view) : mproc__mgr_items_list(&view);
    free(sel);
    return v ? mgr_ret(r, v) : -ENOMEM;
}

/* __len__ and __getitem__ of a list or an array: -ENOENT for others. */
static int items_read(const char *what, mgr_obj *o, const char *m,
                      const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r)
{
    size_t i;
    if (strcmp(m, "__len__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 0, 0, r))
            return 0;
        return mgr_ret(r, mproc_obj_int((int64_t)o->n));
    }
    if (strcmp(m, "__getitem__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 1, r))
            return 0;
        if (is_reduce_of(mgr_arg(args, 0), "slice"))
            return items_slice(o, mgr_arg(args, 0), r);
        if (index_of(what, mgr_arg(args, 0), o->n, false, &i, r))
            return 0;
        return mgr_ret(r, mproc_obj_ref(o->items[i]));
    }
    return -ENOENT;
}

static void items_remove(mgr_obj *o, size_t i)
{
    mproc_obj_unref(o->items[i]);
    memmove(o->items + i, o->items + i + 1, (o->n - i - 1) * sizeof(void *));
    o->n--;
}

static int items_insert(mgr_obj *o, size_t i, mproc_obj *item)
{
    if (mproc__mgr_items_push(o, item) < 0)
        return -ENOMEM;
    memmove(o->items + i + 1, o->items + i, (o->n - 1 - i) * sizeof(void *));
    o->items[i] = item;
    return 0;
}

/* Python's a < b for the values lists hold: 1 / 0, or -1 with TypeError
 * set in r (unorderable types). */
static int less(const mproc_obj *a, const mproc_obj *b, mgr_reply *r);

static int order(const mproc_obj *a, const mproc_obj *b, int *cmp, mgr_reply *r)
{
    mproc_obj_type ta = mproc_obj_type_of(a), tb = mproc_obj_type_of(b);
    bool na =
        ta == MPROC_OBJ_INT || ta == MPROC_OBJ_BOOL || ta == MPROC_OBJ_FLOAT;
    bool nb =
        tb == MPROC_OBJ_INT || tb == MPROC_OBJ_BOOL || tb == MPROC_OBJ_FLOAT;
    if (na && nb) {
        int64_t x, y;
        if (ta != MPROC_OBJ_FLOAT && tb != MPROC_OBJ_FLOAT &&
            mproc_obj_int_value(a, &x) == 0 &&
            mproc_obj_int_value(b, &y) == 0) {
            *cmp = x < y ? -1 : x > y;
            return 0;
        }
        double dx = 0, dy = 0;
        mproc_obj_float_value(a, &dx);
        mproc_obj_float_value(b, &dy);
        *cmp = dx < dy ? -1 : dx > dy;
        return 0;
    }
    if (ta == MPROC_OBJ_STR && tb == MPROC_OBJ_STR) {
        size_t la, lb;
        const char *sa = mproc_obj_str_value(a, &la);
        const char *sb = mproc_obj_str_value(b, &lb);
        int c = memcmp(sa, sb, la < lb ? la : lb);
        *cmp = c ? (c < 0 ? -1 : 1) : la < lb ? -1 : la > lb;
        return 0;
    }
    if ((ta == MPROC_OBJ_BYTES || ta == MPROC_OBJ_BYTEARRAY) &&
        (tb == MPROC_OBJ_BYTES || tb == MPROC_OBJ_BYTEARRAY)) {
        size_t la, lb;
        const unsigned char *sa = mproc_obj_bytes_value(a, &la);
        const unsigned char *sb = mproc_obj_bytes_value(b, &lb);
        int c = la && lb ? memcmp(sa, sb, la < lb ? la : lb) : 0;
        *cmp = c ? (c < 0 ? -1 : 1) : la < lb ? -1 : la > lb;
        return 0;
    }
    if (ta == tb && (ta == MPROC_OBJ_TUPLE || ta == MPROC_OBJ_LIST)) {
        size_t la = mproc_obj_len(a), lb = mproc_obj_len(b);
        for (size_t i = 0; i < la && i < lb; i++) {
            int eq = mproc_obj_eq(mproc_obj_item(a, i), mproc_obj_item(b, i));
            if (eq < 0) {
                mgr_raise(r,
                          mproc__mgr_exc("RecursionError",
                                         "maximum recursion depth exceeded"));
                return -1;
            }
            if (!eq)
                return order(mproc_obj_item(a, i), mproc_obj_item(b, i), cmp,
                             r);
        }
        *cmp = la < lb ? -1 : la > lb;
        return 0;
    }
    mgr_raise(r,
              mproc__mgr_exc("TypeError",
                             "'<' not supported between instances of '%s' "
                             "and '%s'",
                             mproc_obj_type_name(a), mproc_obj_type_name(b)));
    return -1;
}

static int less(const mproc_obj *a, const mproc_obj *b, mgr_reply *r)
{
    int c;
    return order(a, b, &c, r) < 0 ? -1 : c < 0;
}

/* Stable merge sort of v[0..n) with tmp of n slots; -1 on a TypeError. */
static int merge_sort(mproc_obj **v, mproc_obj **tmp, size_t n, bool rev,
                      mgr_reply *r)
{
    if (n < 2)
        return 0;
    size_t h = n / 2;
    if (merge_sort(v, tmp, h, rev, r) < 0 ||
        merge_sort(v + h, tmp, n - h, rev, r) < 0)
        return -1;
    memcpy(tmp, v, n * sizeof(void *));
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        /* take from the right only when strictly before the left one */
        int lt = rev ? less(tmp[i], tmp[j], r) : less(tmp[j], tmp[i], r);
        if (lt < 0) {
            memcpy(v, tmp, n * sizeof(void *));
            return -1;
        }
        v[k++] = lt ? tmp[j++] : tmp[i++];
    }
    while (i < h)
        v[k++] = tmp[i++];
    while (j < n)
        v[k++] = tmp[j++];
    return 0;
}

static int list_init(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                     mgr_reply *r)
{
    if (mproc__mgr_check_args("list", args, kwds, 0, 1, r))
        return 1;
    return mgr_nargs(args) ? mproc__mgr_items_extend(o, mgr_arg(args, 0), r)
                           : 0;
}

/* del l[slice] and l[slice] = items. */
static int list_slice_del(mgr_obj *o, const mproc_obj *sl, mgr_reply *r)
{
    int64_t start, step;
    size_t len;
    if (slice_of(sl, o->n, &start, &step, &len, r))
        return 0;
    if (step < 0) { /* the same items, walked forwards */
        start += (int64_t)(len ? len - 1 : 0) * step;
        step = -step;
    }
    size_t to = len ? (size_t)start : o->n, k = 0;
    for (size_t i = to; len && i < o->n; i++) {
        if (k < len && i == (size_t)(start + (int64_t)k * step)) {
            mproc_obj_unref(o->items[i]);
            k++;
        } else {
            o->items[to++] = o->items[i];
        }
    }
    o->n = to;
    return mgr_ret(r, mproc_obj_none());
}

static int list_slice_set(mgr_obj *o, const mproc_obj *sl, const mproc_obj *v,
                          mgr_reply *r)
{
    int64_t start, step;
    size_t len;
    if (slice_of(sl, o->n, &start, &step, &len, r))
        return 0;
    mgr_obj src = {0};
    int rc = mproc__mgr_items_extend(&src, v, r);
    if (rc != 0) {
        mproc__mgr_obj_clear(&src);
        return rc == 1 ? 0 : rc;
    }
    if (step != 1 && src.n != len) {
        size_t got = src.n;
        mproc__mgr_obj_clear(&src);
        return mgr_raise(r, mproc__mgr_exc("ValueError",
                                           "attempt to assign sequence of "
                                           "size %zu to extended slice of "
                                           "size %zu",
                                           got, len));
    }
    if (step != 1) {
        for (size_t k = 0; k < len; k++) {
            size_t at = (size_t)(start + (int64_t)k * step);
            mproc_obj_unref(o->items[at]);
            o->items[at] = src.items[k];
        }
        src.n = 0;
        mproc__mgr_obj_clear(&src);
        return mgr_ret(r, mproc_obj_none());
    }
    if (o->n - len + src.n > MAX_ITEMS) {
        mproc__mgr_obj_clear(&src);
        return mgr_raise(r, mproc__mgr_exc("MemoryError", NULL));
    }
    size_t at = (size_t)start, keep = o->n - at - len;
    size_t need = o->n - len + src.n;
    if (need > o->cap) {
        mproc_obj **p = realloc(o->items, need * sizeof(void *));
        if (!p) {
            mproc__mgr_obj_clear(&src);
            return -ENOMEM;
        }
        o->items = p;
        o->cap = need;
    }
    for (size_t k = 0; k < len; k++)
        mproc_obj_unref(o->items[at + k]);
    memmove(o->items + at + src.n, o->items + at + len, keep * sizeof(void *));
    memcpy(o->items + at, src.items, src.n * sizeof(void *));
    o->n = o->n - len + src.n;
    src.n = 0;
    mproc__mgr_obj_clear(&src);
    return mgr_ret(r, mproc_obj_none());
}

/* The index of the first item equal to x, or -1 (or -2 on an error). */
static long find(const mgr_obj *o, const mproc_obj *x, size_t from)
{
    for (size_t i = from; i < o->n; i++) {
        int eq = mproc_obj_eq(o->items[i], x);
        if (eq < 0)
            return -2;
        if (eq)
            return (long)i;
    }
    return -1;
}

static int list_call(mgr_server *s, mgr_obj *o, const char *m,
                     const mproc_obj *args, const mproc_obj *kwds, mgr_reply *r)
{
    (void)s;
    size_t i;
    int read = items_read("list", o, m, args, kwds, r);
    if (read != -ENOENT)
        return read;
    if (strcmp(m, "__setitem__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 2, 2, r))
            return 0;
        if (is_reduce_of(mgr_arg(args, 0), "slice"))
            return list_slice_set(o, mgr_arg(args, 0), mgr_arg(args, 1), r);
        if (index_of("list assignment", mgr_arg(args, 0), o->n, false, &i, r))
            return 0;
        mproc_obj_unref(o->items[i]);
        o->items[i] = mproc_obj_ref(mgr_arg(args, 1));
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "__delitem__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 1, r))
            return 0;
        if (is_reduce_of(mgr_arg(args, 0), "slice"))
            return list_slice_del(o, mgr_arg(args, 0), r);
        if (index_of("list assignment", mgr_arg(args, 0), o->n, false, &i, r))
            return 0;
        items_remove(o, i);
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "__contains__") == 0 || strcmp(m, "count") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 1, r))
            return 0;
        int64_t c = 0;
        for (long at = 0; (at = find(o, mgr_arg(args, 0), (size_t)at)) >= 0;
             at++)
            c++;
        return mgr_ret(r,
                       m[0] == '_' ? mproc_obj_bool(c > 0) : mproc_obj_int(c));
    }
    if (strcmp(m, "append") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 1, r))
            return 0;
        if (mproc__mgr_items_push(o, mproc_obj_ref(mgr_arg(args, 0))) < 0)
            return -ENOMEM;
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "extend") == 0 || strcmp(m, "__iadd__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 1, r))
            return 0;
        int rc = mproc__mgr_items_extend(o, mgr_arg(args, 0), r);
        return rc == 0 ? mgr_ret(r, mproc_obj_none()) : rc == 1 ? 0 : rc;
    }
    if (strcmp(m, "insert") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 2, 2, r) ||
            index_of("list", mgr_arg(args, 0), o->n, true, &i, r))
            return 0;
        if (items_insert(o, i, mproc_obj_ref(mgr_arg(args, 1))) < 0)
            return -ENOMEM;
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "pop") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 0, 1, r))
            return 0;
        if (o->n == 0)
            return mgr_raise(
                r, mproc__mgr_exc("IndexError", "pop from empty list"));
        i = o->n - 1;
        if (mgr_nargs(args) == 1 &&
            index_of("pop", mgr_arg(args, 0), o->n, false, &i, r))
            return 0;
        mproc_obj *v = mproc_obj_ref(o->items[i]);
        items_remove(o, i);
        return mgr_ret(r, v);
    }
    if (strcmp(m, "remove") == 0 || strcmp(m, "index") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, m[0] == 'r' ? 1 : 2, r))
            return 0;
        size_t from = 0;
        if (mgr_nargs(args) == 2 &&
            index_of("list", mgr_arg(args, 1), o->n, true, &from, r))
            return 0;
        long at = find(o, mgr_arg(args, 0), from);
        if (at == -2)
            return mgr_raise(r, mproc__mgr_exc("RecursionError",
                                               "maximum recursion depth "
                                               "exceeded"));
        if (at < 0)
            return mgr_raise(
                r,
                m[0] == 'r'
                    ? mproc__mgr_exc("ValueError", "list.remove(x): x not in "
                                                   "list")
                    : mproc__mgr_exc("ValueError", "value is not in list"));
        if (m[0] == 'i')
            return mgr_ret(r, mproc_obj_int(at));
        items_remove(o, (size_t)at);
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "reverse") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 0, 0, r))
            return 0;
        for (size_t a = 0, b = o->n; a + 1 < b; a++, b--) {
            mproc_obj *t = o->items[a];
            o->items[a] = o->items[b - 1];
            o->items[b - 1] = t;
        }
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "sort") == 0) {
        bool rev = false;
        for (size_t k = 0; k < mproc_obj_len(kwds); k++) {
            mproc_obj *key, *v;
            mproc_obj_dict_item(kwds, k, &key, &v);
            const char *name = mproc_obj_str_value(key, NULL);
            if (name && strcmp(name, "reverse") == 0)
                rev = mproc_obj_truth(v);
            else if (name && strcmp(name, "key") == 0 &&
                     mproc_obj_type_of(v) == MPROC_OBJ_NONE)
                continue;
            else
                return mgr_raise(r, mproc__mgr_exc("TypeError",
                                                   "sort() got an unsupported "
                                                   "keyword argument '%s'",
                                                   name ? name : "?"));
        }
        if (mgr_nargs(args) != 0)
            return mgr_raise(r, mproc__mgr_exc("TypeError",
                                               "sort() takes no positional "
                                               "arguments"));
        mproc_obj **tmp = malloc((o->n ? o->n : 1) * sizeof(void *));
        if (!tmp)
            return -ENOMEM;
        int rc = merge_sort(o->items, tmp, o->n, rev, r);
        free(tmp);
        return rc < 0 ? 0 : mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "__add__") == 0 || strcmp(m, "__mul__") == 0 ||
        strcmp(m, "__rmul__") == 0 || strcmp(m, "__imul__") == 0 ||
        strcmp(m, "__reversed__") == 0) {
        /* values (lists) rather than proxies: build them from a copy */
        mgr_obj tmp = {0};
        int rc = 0;
        for (size_t k = 0; rc == 0 && k < o->n; k++)
            rc = mproc__mgr_items_push(&tmp, mproc_obj_ref(o->items[k]));
        if (rc == 0 && m[2] == 'a') {
            if (mproc__mgr_check_args(m, args, kwds, 1, 1, r)) {
                mproc__mgr_obj_clear(&tmp);
                return 0;
            }
            if (mproc_obj_type_of(mgr_arg(args, 0)) != MPROC_OBJ_LIST) {
                mproc__mgr_obj_clear(&tmp);
                return mgr_raise(
                    r, mproc__mgr_exc("TypeError",
                                      "can only concatenate list "
                                      "(not \"%s\") to list",
                                      mproc_obj_type_name(mgr_arg(args, 0))));
            }
            rc = mproc__mgr_items_extend(&tmp, mgr_arg(args, 0), r);
        } else if (rc == 0 && m[2] != 'r' && m[3] != 'e') {
            int64_t times = 0;
            if (mproc__mgr_check_args(m, args, kwds, 1, 1, r) ||
                mproc_obj_int_value(mgr_arg(args, 0), &times) < 0) {
                mproc__mgr_obj_clear(&tmp);
                return r->value ? 0
                                : mgr_raise(r, mproc__mgr_exc(
                                                   "TypeError",
                                                   "can't multiply sequence by "
                                                   "non-int"));
            }
            if (times < 0)
                times = 0;
            if (times > 1 && o->n > ((size_t)1 << 22) / (size_t)times) {
                mproc__mgr_obj_clear(&tmp);
                return mgr_raise(r, mproc__mgr_exc("MemoryError", NULL));
            }
            size_t n0 = tmp.n;
            if (times == 0)
                mproc__mgr_obj_clear(&tmp);
            for (int64_t t = 1; rc == 0 && t < times; t++)
                for (size_t k = 0; rc == 0 && k < n0; k++)
                    rc =
                        mproc__mgr_items_push(&tmp, mproc_obj_ref(o->items[k]));
        } else if (rc == 0 && strcmp(m, "__reversed__") == 0) {
            for (size_t a = 0, b = tmp.n; a + 1 < b; a++, b--) {
                mproc_obj *t = tmp.items[a];
                tmp.items[a] = tmp.items[b - 1];
                tmp.items[b - 1] = t;
            }
        }
        if (rc != 0) {
            mproc__mgr_obj_clear(&tmp);
            return rc == 1 ? 0 : rc;
        }
        if (strcmp(m, "__imul__") == 0) {
            mproc__mgr_obj_clear(o);
            *o = (mgr_obj){.type = o->type,
                           .refs = o->refs,
                           .next = o->next,
                           .items = tmp.items,
                           .n = tmp.n,
                           .cap = tmp.cap};
            return mgr_ret(r, mproc_obj_none());
        }
        mproc_obj *l = mproc__mgr_items_list(&tmp);
        mproc__mgr_obj_clear(&tmp);
        return mgr_ret(r, l);
    }
    return -ENOENT;
}

static mproc_obj *list_value(const mgr_obj *o)
{
    return mproc__mgr_items_list(o);
}
static int list_repr(const mgr_obj *o, char **out)
{
    return mproc__mgr_repr_of(mproc__mgr_items_list(o), out);
}

const mgr_type mproc__mgr_list = {"list",    list_exposed, list_init,
                                  list_call, list_value,   list_repr,
                                  NULL,      NULL};

/* ---- Value --------------------------------------------------------------- */

static const char *const value_exposed[] = {"get", "set", NULL};

/* typecode from a 1-character str; 0 when it is none. */
static char typecode_of(const mproc_obj *t)
{
    size_t n;
    const char *s = mproc_obj_str_value(t, &n);
    return s && n == 1 ? s[0] : 0;
}

static int value_init(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r)
{
    (void)kwds; /* lock=...: the server serializes every call anyway */
    if (mgr_nargs(args) < 2 || mgr_nargs(args) > 3) {
        mgr_raise(r, mproc__mgr_exc("TypeError",
                                    "Value() takes typecode, value and lock"));
        return 1;
    }
    o->typecode = typecode_of(mgr_arg(args, 0));
    if (!o->typecode) {
        mgr_raise(r,
                  mproc__mgr_exc("TypeError", "typecode must be a 1-character "
                                              "str"));
        return 1;
    }
    o->val = mproc_obj_ref(mgr_arg(args, 1));
    return 0;
}

static int value_call(mgr_server *s, mgr_obj *o, const char *m,
                      const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r)
{
    (void)s;
    if (strcmp(m, "get") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 0, 0, r))
            return 0;
        return mgr_ret(r, mproc_obj_ref(o->val));
    }
    if (strcmp(m, "set") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 1, r))
            return 0;
        mproc_obj_unref(o->val);
        o->val = mproc_obj_ref(mgr_arg(args, 0));
        return mgr_ret(r, mproc_obj_none());
    }
    return -ENOENT;
}

static mproc_obj *value_value(const mgr_obj *o)
{
    return mproc_obj_ref(o->val);
}

static int value_repr(const mgr_obj *o, char **out)
{
    char *v;
    int rc = mproc_obj_repr(o->val, &v, NULL);
    if (rc < 0)
        return rc;
    size_t len = strlen(v) + 32;
    *out = malloc(len);
    if (*out)
        snprintf(*out, len, "Value('%c', %s)", o->typecode, v);
    free(v);
    return *out ? 0 : -ENOMEM;
}

const mgr_type mproc__mgr_value = {"Value",    value_exposed, value_init,
                                   value_call, value_value,   value_repr,
                                   NULL,       NULL};

/* ---- Array (array.array) ------------------------------------------------- */

static const char *const array_exposed[] = {"__len__", "__getitem__",
                                            "__setitem__", NULL};

/* Item size of a typecode (native layout, as array.array), 0 if unknown:
 * ctypes' sizes, and 'u' a wchar_t. */
static size_t item_size(char tc)
{
    return tc == 'u' ? 4 : tc == 'c' ? 0 : mproc_ctype_size(tc);
}

/* Checks x fits typecode tc: 0, or 1 with TypeError / OverflowError set. */
static int array_check(char tc, const mproc_obj *x, mgr_reply *r)
{
    mproc_obj_type t = mproc_obj_type_of(x);
    if (tc == 'f' || tc == 'd') {
        if (t != MPROC_OBJ_FLOAT && t != MPROC_OBJ_INT && t != MPROC_OBJ_BOOL) {
            mgr_raise(r,
                      mproc__mgr_exc("TypeError", "must be real number, not %s",
                                     mproc_obj_type_name(x)));
            return 1;
        }
        return 0;
    }
    if (tc == 'u') {
        size_t n;
        if (t != MPROC_OBJ_STR || !mproc_obj_str_value(x, &n) || n == 0) {
            mgr_raise(r,
                      mproc__mgr_exc("TypeError",
                                     "array item must be unicode character"));
            return 1;
        }
        return 0;
    }
    int64_t v;
    if (t != MPROC_OBJ_INT && t != MPROC_OBJ_BOOL) {
        mgr_raise(r, mproc__mgr_exc("TypeError",
                                    "'%s' object cannot be interpreted as an "
                                    "integer",
                                    mproc_obj_type_name(x)));
        return 1;
    }
    bool ok = mproc_obj_int_value(x, &v) == 0;
    size_t sz = item_size(tc);
    if (sz == 0 || sz > 8)
        return -EINVAL;
    bool is_signed = tc >= 'a';
    if (ok && is_signed && sz < 8)
        ok = v >= -((int64_t)1 << (sz * 8 - 1)) &&
             v < ((int64_t)1 << (sz * 8 - 1));
    else if (ok && !is_signed)
        ok = v >= 0 && (sz == 8 || v < ((int64_t)1 << (sz * 8)));
    if (!ok && !is_signed && sz == 8 && mproc_obj_int_bytes(x, NULL, 0) == 9) {
        unsigned char b[9];
        mproc_obj_int_bytes(x, b, sizeof b);
        ok = b[8] == 0; /* 2**63 .. 2**64-1 */
    }
    if (!ok) {
        mgr_raise(r, mproc__mgr_exc("OverflowError",
                                    "array item out of range for typecode '%c'",
                                    tc));
        return 1;
    }
    return 0;
}

static int array_init(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r)
{
    (void)kwds;
    if (mgr_nargs(args) < 2 || mgr_nargs(args) > 3) {
        mgr_raise(r,
                  mproc__mgr_exc("TypeError",
                                 "Array() takes typecode, sequence and lock"));
        return 1;
    }
    o->typecode = typecode_of(mgr_arg(args, 0));
    if (!item_size(o->typecode)) {
        mgr_raise(r,
                  mproc__mgr_exc("ValueError",
                                 "bad typecode (must be b, B, u, h, H, i, I, "
                                 "l, L, q, Q, f or d)"));
        return 1;
    }
    const mproc_obj *seq = mgr_arg(args, 1);
    int rc = 0;
    int64_t count;
    if (mproc_obj_int_value(seq, &count) == 0) { /* Array('i', 10) */
        if (count < 0 || count > (1 << 22)) {
            mgr_raise(r, mproc__mgr_exc("ValueError", "bad array size"));
            return 1;
        }
        for (int64_t k = 0; rc == 0 && k < count; k++)
            rc = mproc__mgr_items_push(
                o, o->typecode == 'f' || o->typecode == 'd' ? mproc_obj_float(0)
                                                            : mproc_obj_int(0));
        return rc;
    }
    rc = mproc__mgr_items_extend(o, seq, r);
    for (size_t k = 0; rc == 0 && k < o->n; k++)
        rc = array_check(o->typecode, o->items[k], r);
    return rc;
}

/* array.array(typecode, bytes) in the native layout, as managers.py's
 * reducer sends arrays (a new reference). */
static mproc_obj *array_value(const mgr_obj *o)
{
    size_t sz = item_size(o->typecode);
    if (sz == 0)
        return NULL;
    unsigned char *b = calloc(o->n ? o->n : 1, sz);
    if (!b)
        return NULL;
    for (size_t k = 0; k < o->n; k++) {
        unsigned char *p = b + k * sz;
        if (o->typecode == 'f' || o->typecode == 'd') {
            double d = 0;
            mproc_obj_float_value(o->items[k], &d);
            if (sz == 4) {
                float f = (float)d;
                memcpy(p, &f, 4);
            } else {
                memcpy(p, &d, 8);
            }
        } else if (o->typecode == 'u') {
            /* the first code point of the 1-character str, UTF-32 */
            size_t n;
            const unsigned char *s =
                (const unsigned char *)mproc_obj_str_value(o->items[k], &n);
            uint32_t cp = s[0];
            int extra = cp >= 0xf0 ? 3 : cp >= 0xe0 ? 2 : cp >= 0xc0 ? 1 : 0;
            if (extra)
                cp &= 0x3fu >> extra;
            for (int e = 1; e <= extra && (size_t)e < n; e++)
                cp = (cp << 6) | (s[e] & 0x3fu);
            memcpy(p, &cp, 4);
        } else {
            unsigned char le[9] = {0};
            long got = mproc_obj_int_bytes(o->items[k], le, sizeof le);
            unsigned char fill = got > 0 && (le[got - 1] & 0x80) ? 0xff : 0;
            for (size_t z = (size_t)(got > 0 ? got : 0); z < sizeof le; z++)
                le[z] = fill;
            memcpy(p, le, sz); /* little-endian host */
        }
    }
    char tc[2] = {o->typecode, 0};
    mproc_obj *v =
        mproc_obj_reduce("array", "array",
                         mproc_obj_tuple_of(2, mproc_obj_str_c(tc),
                                            mproc_obj_bytes(b, o->n * sz)),
                         NULL, false);
    free(b);
    return v;
}

static int array_call(mgr_server *s, mgr_obj *o, const char *m,
                      const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r)
{
    (void)s;
    size_t i;
    int read = items_read("array", o, m, args, kwds, r);
    if (read != -ENOENT)
        return read;
    if (strcmp(m, "__setitem__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 2, 2, r) ||
            index_of("array assignment", mgr_arg(args, 0), o->n, false, &i,
                     r) ||
            array_check(o->typecode, mgr_arg(args, 1), r))
            return 0;
        mproc_obj *v = mgr_arg(args, 1);
        if ((o->typecode == 'f' || o->typecode == 'd') &&
            mproc_obj_type_of(v) != MPROC_OBJ_FLOAT) {
            double d = 0;
            mproc_obj_float_value(v, &d);
            v = mproc_obj_float(d);
        } else if (mproc_obj_type_of(v) == MPROC_OBJ_BOOL) {
            v = mproc_obj_int(mproc_obj_truth(v));
        } else {
            mproc_obj_ref(v);
        }
        if (!v)
            return -ENOMEM;
        mproc_obj_unref(o->items[i]);
        o->items[i] = v;
        return mgr_ret(r, mproc_obj_none());
    }
    return -ENOENT;
}

/* "array('i', [0, 1, 4])", as array.array prints. */
static int array_repr(const mgr_obj *o, char **out)
{
    if (o->n == 0) {
        *out = malloc(16);
        if (*out)
            snprintf(*out, 16, "array('%c')", o->typecode);
        return *out ? 0 : -ENOMEM;
    }
    char *items;
    int rc = mproc__mgr_repr_of(mproc__mgr_items_list(o), &items);
    if (rc < 0)
        return rc;
    size_t len = strlen(items) + 16;
    *out = malloc(len);
    if (*out)
        snprintf(*out, len, "array('%c', %s)", o->typecode, items);
    free(items);
    return *out ? 0 : -ENOMEM;
}

const mgr_type mproc__mgr_array = {"Array",    array_exposed, array_init,
                                   array_call, array_value,   array_repr,
                                   NULL,       NULL};
