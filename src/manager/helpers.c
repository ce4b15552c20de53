/*
 * manager/helpers.c - the C client's typed helpers (mproc_proxy_get,
 * _pop, _queue_get, _acquire, _cond_wait, _barrier_wait, ...): each is a
 * mproc_proxy_call of the method CPython's proxy calls, with the
 * exceptions Python raises there turned into mproc's codes.
 */
#include "manager/manager_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which exceptions a helper turns into which codes (NULL-terminated). */
typedef struct exc_map {
    const char *exc;
    int code;
} exc_map;

static const exc_map lookup_map[] = {
    {"KeyError", -ENOENT},       {"IndexError", -ENOENT},
    {"AttributeError", -ENOENT}, {"ValueError", -ENOENT},
    {"TypeError", MPROC_ETYPE},  {NULL, 0}};

/* Locks, semaphores, conditions, barriers (as mproc's own, sync.h). */
static const exc_map sync_map[] = {{"RuntimeError", MPROC_ENOTOWNER},
                                   {"ValueError", MPROC_EBOUND},
                                   {"BrokenBarrierError", MPROC_EBROKEN},
                                   {"TypeError", MPROC_ETYPE},
                                   {NULL, 0}};

static const exc_map task_map[] = {
    {"ValueError", MPROC_ETASKDONE}, {"TypeError", MPROC_ETYPE}, {NULL, 0}};

/* Calls method with args (stolen; NULL from a failed build is -ENOMEM);
 * the raised exceptions in map become their codes. The result into *out
 * (may be NULL) on success. */
static int call_kw(mproc_proxy *p, const char *method, mproc_obj *args,
                   mproc_obj *kwds, mproc_obj **out, const exc_map *map)
{
    if (!args || !kwds) {
        mproc_obj_unref(args);
        mproc_obj_unref(kwds);
        return -ENOMEM;
    }
    mproc_obj *r = NULL;
    int rc = mproc_proxy_call(p, method, args, kwds, &r, NULL, 0);
    mproc_obj_unref(args);
    mproc_obj_unref(kwds);
    if (rc == MPROC_EREMOTE && mproc_obj_is_exception(r) == 1) {
        const char *e = mproc_obj_reduce_name(r);
        for (const exc_map *m = map; m->exc; m++)
            if (strcmp(e, m->exc) == 0) {
                rc = m->code;
                break;
            }
    }
    if (rc >= 0 && out)
        *out = r;
    else
        mproc_obj_unref(r);
    return rc < 0 ? rc : 0;
}

static int call_map(mproc_proxy *p, const char *method, mproc_obj *args,
                    mproc_obj **out, const exc_map *map)
{
    return call_kw(p, method, args, mproc_obj_dict_new(), out, map);
}

static mproc_obj *ref(const mproc_obj *o)
{
    return o ? mproc_obj_ref((mproc_obj *)o) : NULL;
}

/* A tuple of the n values given (borrowed; a NULL among them: NULL). */
static mproc_obj *tuple_n(size_t n, const mproc_obj *a, const mproc_obj *b)
{
    if ((n > 0 && !a) || (n > 1 && !b))
        return NULL;
    return n == 0   ? mproc_obj_tuple_new(0)
           : n == 1 ? mproc_obj_tuple_of(1, ref(a))
                    : mproc_obj_tuple_of(2, ref(a), ref(b));
}

/* Calls method with the n values given (borrowed). */
static int call_n(mproc_proxy *p, const char *method, mproc_obj **out, size_t n,
                  const mproc_obj *a, const mproc_obj *b)
{
    if (!p || (n > 0 && !a) || (n > 1 && !b))
        return -EINVAL;
    return call_map(p, method, tuple_n(n, a, b), out, lookup_map);
}

/* As call_n, for a method answering an int (or a bool): its value, or a
 * negative code. */
static int64_t int_result(int rc, mproc_obj *r)
{
    if (rc < 0)
        return rc;
    int64_t v = 0;
    rc = mproc_obj_int_value(r, &v);
    mproc_obj_unref(r);
    return rc < 0 ? MPROC_EPROTO : v;
}

static int64_t call_int(mproc_proxy *p, const char *method, const mproc_obj *a)
{
    mproc_obj *r = NULL;
    int rc = call_n(p, method, &r, a ? 1 : 0, a, NULL);
    return int_result(rc, r);
}

/* A method answering a truth value: 1 or 0, or a negative code. */
static int call_truth(mproc_proxy *p, const char *method, mproc_obj *args,
                      const exc_map *map)
{
    mproc_obj *r = NULL;
    int rc = call_map(p, method, args, &r, map);
    if (rc == 0)
        rc = mproc_obj_truth(r) ? 1 : 0;
    mproc_obj_unref(r);
    return rc;
}

/* A method taking no arguments, answering nothing. */
static int call0(mproc_proxy *p, const char *method, const exc_map *map)
{
    return p ? call_map(p, method, mproc_obj_tuple_new(0), NULL, map) : -EINVAL;
}

/* A method answering a value (into *out, which must not be NULL). */
static int call_out(mproc_proxy *p, const char *method, mproc_obj *args,
                    mproc_obj **out)
{
    if (!out) {
        mproc_obj_unref(args);
        return -EINVAL;
    }
    *out = NULL;
    if (!p) {
        mproc_obj_unref(args);
        return -EINVAL;
    }
    return call_map(p, method, args, out, lookup_map);
}

int mproc_proxy_getitem(mproc_proxy *p, const mproc_obj *key, mproc_obj **out)
{
    return key ? call_out(p, "__getitem__", tuple_n(1, key, NULL), out)
               : -EINVAL;
}

int mproc_proxy_setitem(mproc_proxy *p, const mproc_obj *key,
                        const mproc_obj *value)
{
    return call_n(p, "__setitem__", NULL, 2, key, value);
}

int mproc_proxy_delitem(mproc_proxy *p, const mproc_obj *key)
{
    return call_n(p, "__delitem__", NULL, 1, key, NULL);
}

int64_t mproc_proxy_len(mproc_proxy *p)
{
    return call_int(p, "__len__", NULL);
}

int mproc_proxy_contains(mproc_proxy *p, const mproc_obj *item)
{
    return item ? (int)call_int(p, "__contains__", item) : -EINVAL;
}

int mproc_proxy_append(mproc_proxy *p, const mproc_obj *item)
{
    return call_n(p, "append", NULL, 1, item, NULL);
}

int mproc_proxy_value(mproc_proxy *p, mproc_obj **out)
{
    return call_out(p, "#GETVALUE", mproc_obj_tuple_new(0), out);
}

int mproc_proxy_repr(mproc_proxy *p, char **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mproc_obj *r = NULL;
    int rc = call_n(p, "__repr__", &r, 0, NULL, NULL);
    const char *s = rc == 0 ? mproc_obj_str_value(r, NULL) : NULL;
    if (rc == 0 && !s)
        rc = MPROC_EPROTO;
    if (s && !(*out = strdup(s)))
        rc = -ENOMEM;
    mproc_obj_unref(r);
    return rc;
}

/* dict */

/* A value, or None for NULL (a new reference). */
static mproc_obj *or_none(const mproc_obj *o)
{
    return o ? mproc_obj_ref((mproc_obj *)o) : mproc_obj_none();
}

int mproc_proxy_get(mproc_proxy *p, const mproc_obj *key, const mproc_obj *dflt,
                    mproc_obj **out)
{
    return key ? call_out(p, "get",
                          mproc_obj_tuple_of(2, ref(key), or_none(dflt)), out)
               : -EINVAL;
}

int mproc_proxy_keys(mproc_proxy *p, mproc_obj **out)
{
    return call_out(p, "keys", mproc_obj_tuple_new(0), out);
}

int mproc_proxy_items(mproc_proxy *p, mproc_obj **out)
{
    return call_out(p, "items", mproc_obj_tuple_new(0), out);
}

int mproc_proxy_values(mproc_proxy *p, mproc_obj **out)
{
    return call_out(p, "values", mproc_obj_tuple_new(0), out);
}

int mproc_proxy_update(mproc_proxy *p, const mproc_obj *other)
{
    return call_n(p, "update", NULL, 1, other, NULL);
}

int mproc_proxy_pop(mproc_proxy *p, const mproc_obj *key, mproc_obj **out)
{
    return call_out(p, "pop", tuple_n(key ? 1 : 0, key, NULL), out);
}

int mproc_proxy_setdefault(mproc_proxy *p, const mproc_obj *key,
                           const mproc_obj *dflt, mproc_obj **out)
{
    return key ? call_out(p, "setdefault",
                          mproc_obj_tuple_of(2, ref(key), or_none(dflt)), out)
               : -EINVAL;
}

int mproc_proxy_clear(mproc_proxy *p)
{
    return call_n(p, "clear", NULL, 0, NULL, NULL);
}

int mproc_proxy_copy(mproc_proxy *p, mproc_obj **out)
{
    return call_out(p, "copy", mproc_obj_tuple_new(0), out);
}

/* list */

int mproc_proxy_extend(mproc_proxy *p, const mproc_obj *items)
{
    return call_n(p, "extend", NULL, 1, items, NULL);
}

int mproc_proxy_insert(mproc_proxy *p, int64_t index, const mproc_obj *item)
{
    if (!p || !item)
        return -EINVAL;
    return call_map(p, "insert",
                    mproc_obj_tuple_of(2, mproc_obj_int(index), ref(item)),
                    NULL, lookup_map);
}

int mproc_proxy_remove(mproc_proxy *p, const mproc_obj *item)
{
    return call_n(p, "remove", NULL, 1, item, NULL);
}

int64_t mproc_proxy_index(mproc_proxy *p, const mproc_obj *item)
{
    return item ? call_int(p, "index", item) : -EINVAL;
}

int64_t mproc_proxy_count(mproc_proxy *p, const mproc_obj *item)
{
    return item ? call_int(p, "count", item) : -EINVAL;
}

int mproc_proxy_sort(mproc_proxy *p, bool reverse)
{
    if (!p)
        return -EINVAL;
    mproc_obj *kw = mproc_obj_dict_new();
    if (kw && mproc_obj_dict_set(kw, mproc_obj_str_c("reverse"),
                                 mproc_obj_bool(reverse)) < 0) {
        mproc_obj_unref(kw);
        kw = NULL;
    }
    return call_kw(p, "sort", mproc_obj_tuple_new(0), kw, NULL, lookup_map);
}

int mproc_proxy_reverse(mproc_proxy *p)
{
    return call_n(p, "reverse", NULL, 0, NULL, NULL);
}

static mproc_obj *slice_bound(int64_t v)
{
    return v == MPROC_MANAGER_SLICE_NONE ? mproc_obj_none() : mproc_obj_int(v);
}

static mproc_obj *slice_of(int64_t start, int64_t stop, int64_t step)
{
    return mproc_obj_reduce("builtins", "slice",
                            mproc_obj_tuple_of(3, slice_bound(start),
                                               slice_bound(stop),
                                               slice_bound(step)),
                            NULL, false);
}

int mproc_proxy_getslice(mproc_proxy *p, int64_t start, int64_t stop,
                         int64_t step, mproc_obj **out)
{
    return call_out(p, "__getitem__",
                    mproc_obj_tuple_of(1, slice_of(start, stop, step)), out);
}

int mproc_proxy_setslice(mproc_proxy *p, int64_t start, int64_t stop,
                         int64_t step, const mproc_obj *items)
{
    if (!p || !items)
        return -EINVAL;
    return call_map(
        p, "__setitem__",
        mproc_obj_tuple_of(2, slice_of(start, stop, step), ref(items)), NULL,
        lookup_map);
}

int mproc_proxy_delslice(mproc_proxy *p, int64_t start, int64_t stop,
                         int64_t step)
{
    if (!p)
        return -EINVAL;
    return call_map(p, "__delitem__",
                    mproc_obj_tuple_of(1, slice_of(start, stop, step)), NULL,
                    lookup_map);
}

/* Namespace (and a Barrier's attributes) */

int mproc_proxy_getattr(mproc_proxy *p, const char *name, mproc_obj **out)
{
    return name ? call_out(p, "__getattribute__",
                           mproc_obj_tuple_of(1, mproc_obj_str_c(name)), out)
                : -EINVAL;
}

int mproc_proxy_setattr(mproc_proxy *p, const char *name,
                        const mproc_obj *value)
{
    if (!p || !name || !value)
        return -EINVAL;
    return call_map(p, "__setattr__",
                    mproc_obj_tuple_of(2, mproc_obj_str_c(name), ref(value)),
                    NULL, lookup_map);
}

int mproc_proxy_delattr(mproc_proxy *p, const char *name)
{
    if (!p || !name)
        return -EINVAL;
    return call_map(p, "__delattr__",
                    mproc_obj_tuple_of(1, mproc_obj_str_c(name)), NULL,
                    lookup_map);
}

/* Value */

int mproc_proxy_value_get(mproc_proxy *p, mproc_obj **out)
{
    return call_out(p, "get", mproc_obj_tuple_new(0), out);
}

int mproc_proxy_value_set(mproc_proxy *p, const mproc_obj *value)
{
    return call_n(p, "set", NULL, 1, value, NULL);
}

/* Queue: timeouts as Python's (block, timeout) arguments */

/* (block, timeout) after the n items given: timeout < 0 (block,), 0
 * (False,), else (True, timeout); with_block false: (), (timeout,). */
static mproc_obj *timeout_args(const mproc_obj *item, double timeout,
                               bool with_block)
{
    size_t n = item ? 1 : 0;
    size_t k = with_block ? (timeout > 0 ? 2 : 1) : (timeout >= 0 ? 1 : 0);
    mproc_obj *t = mproc_obj_tuple_new(n + k);
    if (!t)
        return NULL;
    int rc = item ? mproc_obj_tuple_set(t, 0, ref(item)) : 0;
    if (rc == 0 && with_block)
        rc = mproc_obj_tuple_set(t, n, mproc_obj_bool(timeout != 0));
    if (rc == 0 && k == 2)
        rc = mproc_obj_tuple_set(t, n + 1, mproc_obj_float(timeout));
    if (rc == 0 && !with_block && k == 1)
        rc = mproc_obj_tuple_set(t, n, mproc_obj_float(timeout));
    if (rc < 0) {
        mproc_obj_unref(t);
        return NULL;
    }
    return t;
}

int mproc_proxy_queue_put(mproc_proxy *p, const mproc_obj *item, double timeout)
{
    if (!p || !item)
        return -EINVAL;
    return call_map(p, "put", timeout_args(item, timeout, true), NULL,
                    lookup_map);
}

int mproc_proxy_queue_get(mproc_proxy *p, double timeout, mproc_obj **out)
{
    return call_out(p, "get", timeout_args(NULL, timeout, true), out);
}

int64_t mproc_proxy_queue_qsize(mproc_proxy *p)
{
    return call_int(p, "qsize", NULL);
}

int mproc_proxy_queue_empty(mproc_proxy *p)
{
    return p ? call_truth(p, "empty", mproc_obj_tuple_new(0), lookup_map)
             : -EINVAL;
}

int mproc_proxy_queue_full(mproc_proxy *p)
{
    return p ? call_truth(p, "full", mproc_obj_tuple_new(0), lookup_map)
             : -EINVAL;
}

int mproc_proxy_queue_task_done(mproc_proxy *p)
{
    return call0(p, "task_done", task_map);
}

int mproc_proxy_queue_join(mproc_proxy *p)
{
    return call0(p, "join", task_map);
}

/* Lock, RLock, Semaphore, BoundedSemaphore, Condition */

/* A call answering True (0) or False (-ETIMEDOUT). */
static int call_waited(mproc_proxy *p, const char *method, mproc_obj *args)
{
    if (!p) {
        mproc_obj_unref(args);
        return -EINVAL;
    }
    int rc = call_truth(p, method, args, sync_map);
    return rc < 0 ? rc : rc ? 0 : -ETIMEDOUT;
}

int mproc_proxy_acquire(mproc_proxy *p, double timeout)
{
    return call_waited(p, "acquire", timeout_args(NULL, timeout, true));
}

int mproc_proxy_release(mproc_proxy *p)
{
    return call0(p, "release", sync_map);
}

/* Event */

int mproc_proxy_event_set(mproc_proxy *p)
{
    return call_n(p, "set", NULL, 0, NULL, NULL);
}

int mproc_proxy_event_clear(mproc_proxy *p)
{
    return call_n(p, "clear", NULL, 0, NULL, NULL);
}

int mproc_proxy_event_is_set(mproc_proxy *p)
{
    return p ? call_truth(p, "is_set", mproc_obj_tuple_new(0), lookup_map)
             : -EINVAL;
}

int mproc_proxy_event_wait(mproc_proxy *p, double timeout)
{
    return call_waited(p, "wait", timeout_args(NULL, timeout, false));
}

/* Condition */

int mproc_proxy_cond_wait(mproc_proxy *p, double timeout)
{
    return call_waited(p, "wait", timeout_args(NULL, timeout, false));
}

int mproc_proxy_cond_notify(mproc_proxy *p, int64_t n)
{
    if (!p || n < 0)
        return -EINVAL;
    return call_map(p, "notify", mproc_obj_tuple_of(1, mproc_obj_int(n)), NULL,
                    sync_map);
}

int mproc_proxy_cond_notify_all(mproc_proxy *p)
{
    return call0(p, "notify_all", sync_map);
}

/* Barrier */

int mproc_proxy_barrier_wait(mproc_proxy *p, double timeout)
{
    if (!p)
        return -EINVAL;
    mproc_obj *r = NULL;
    int rc =
        call_map(p, "wait", timeout_args(NULL, timeout, false), &r, sync_map);
    int64_t v = int_result(rc, r);
    return v > INT32_MAX ? MPROC_EPROTO : (int)v;
}

int mproc_proxy_barrier_abort(mproc_proxy *p)
{
    return call0(p, "abort", sync_map);
}

int mproc_proxy_barrier_reset(mproc_proxy *p)
{
    return call0(p, "reset", sync_map);
}

/* A Barrier's attribute read through __getattribute__, as an int. */
static int64_t barrier_attr(mproc_proxy *p, const char *name)
{
    mproc_obj *r = NULL;
    int rc = mproc_proxy_getattr(p, name, &r);
    if (rc == 0 && mproc_obj_type_of(r) == MPROC_OBJ_BOOL) {
        rc = mproc_obj_truth(r) ? 1 : 0;
        mproc_obj_unref(r);
        return rc;
    }
    return int_result(rc, r);
}

int64_t mproc_proxy_barrier_parties(mproc_proxy *p)
{
    return barrier_attr(p, "parties");
}

int64_t mproc_proxy_barrier_n_waiting(mproc_proxy *p)
{
    return barrier_attr(p, "n_waiting");
}

int mproc_proxy_barrier_broken(mproc_proxy *p)
{
    return (int)barrier_attr(p, "broken");
}
