/*
 * manager/objects.c - what the objects a manager serves share: the
 * exceptions their methods raise as CPython's do (a reduce value the client
 * raises unchanged: KeyError, IndexError, ValueError, TypeError,
 * AttributeError, StopIteration; an unknown method is answered with a
 * traceback by the server), argument checks, the Iterator a dict's
 * __iter__ hands out as a proxy, and the table of types by typeid. The
 * types themselves: objects_dict.c (dict, Namespace), objects_list.c
 * (list, Value, Array), blocking.c (locks, Event, Queue, ...).
 */
#include "manager/manager_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mproc_obj *mproc__mgr_exc(const char *name, const char *fmt, ...)
{
    mproc_obj *args;
    if (fmt) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        args = mproc_obj_tuple_of(1, mproc_obj_str_c(msg));
    } else {
        args = mproc_obj_tuple_new(0);
    }
    return mproc_obj_reduce("builtins", name, args, NULL, false);
}

/* An exception whose one argument is a value (KeyError(key)). */
mproc_obj *mproc__mgr_exc_of(const char *name, const mproc_obj *arg)
{
    return mproc_obj_reduce(
        "builtins", name,
        mproc_obj_tuple_of(1, mproc_obj_ref((mproc_obj *)arg)), NULL, false);
}

/* TypeError unless lo <= len(args) <= hi and no keywords. */
int mproc__mgr_check_args(const char *what, const mproc_obj *args,
                          const mproc_obj *kwds, size_t lo, size_t hi,
                          mgr_reply *r)
{
    size_t n = mgr_nargs(args);
    if (mproc_obj_len(kwds) != 0) {
        mgr_raise(r, mproc__mgr_exc("TypeError",
                                    "%s() takes no keyword arguments", what));
        return 1;
    }
    if (n < lo || n > hi) {
        if (lo == hi)
            mgr_raise(r,
                      mproc__mgr_exc("TypeError",
                                     "%s() takes exactly %zu argument%s (%zu "
                                     "given)",
                                     what, lo, lo == 1 ? "" : "s", n));
        else
            mgr_raise(r, mproc__mgr_exc("TypeError",
                                        "%s() takes from %zu to %zu arguments "
                                        "(%zu given)",
                                        what, lo, hi, n));
        return 1;
    }
    return 0;
}

int mproc__mgr_items_push(mgr_obj *o, mproc_obj *item)
{
    if (!item)
        return -ENOMEM;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        mproc_obj **p = realloc(o->items, cap * sizeof(void *));
        if (!p) {
            mproc_obj_unref(item);
            return -ENOMEM;
        }
        o->items = p;
        o->cap = cap;
    }
    o->items[o->n++] = item;
    return 0;
}

void mproc__mgr_obj_clear(mgr_obj *o)
{
    mproc_obj_unref(o->val);
    o->val = NULL;
    for (size_t i = 0; i < o->n; i++)
        mproc_obj_unref(o->items[i]);
    free(o->items);
    o->items = NULL;
    o->n = o->cap = o->pos = 0;
    free(o->slots);
    o->slots = NULL;
    o->nslots = o->capslots = 0;
    free(o->holds);
    o->holds = NULL;
    o->nholds = o->capholds = 0;
}

mproc_obj *mproc__mgr_items_list(const mgr_obj *o)
{
    mproc_obj *l = mproc_obj_list_new();
    for (size_t i = 0; l && i < o->n; i++)
        if (mproc_obj_list_append(l, mproc_obj_ref(o->items[i])) < 0) {
            mproc_obj_unref(l);
            return NULL;
        }
    return l;
}

int mproc__mgr_repr_of(mproc_obj *v, char **out)
{
    if (!v)
        return -ENOMEM;
    int rc = mproc_obj_repr(v, out, NULL);
    mproc_obj_unref(v);
    return rc;
}

/* ---- Iterator ------------------------------------------------------------ */

static const char *const iter_exposed[] = {"__next__", "send", "throw", "close",
                                           NULL};

static int iter_call(mgr_server *s, mgr_obj *o, const char *m,
                     const mproc_obj *args, const mproc_obj *kwds, mgr_reply *r)
{
    (void)s;
    if (strcmp(m, "__next__") == 0 || strcmp(m, "send") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, m[0] == 's', 1, r))
            return 0;
        if (o->pos >= o->n)
            return mgr_raise(r, mproc__mgr_exc("StopIteration", NULL));
        return mgr_ret(r, mproc_obj_ref(o->items[o->pos++]));
    }
    if (strcmp(m, "close") == 0) {
        o->pos = o->n;
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "throw") == 0) {
        o->pos = o->n;
        return mgr_raise(r, mgr_nargs(args)
                                ? mproc_obj_ref(mgr_arg(args, 0))
                                : mproc__mgr_exc("TypeError", NULL));
    }
    return -ENOENT;
}

static mproc_obj *iter_value(const mgr_obj *o)
{
    return mproc__mgr_items_list(o);
}
static int iter_repr(const mgr_obj *o, char **out)
{
    (void)o;
    *out = strdup("<iterator object>");
    return *out ? 0 : -ENOMEM;
}

/* ---- the table ----------------------------------------------------------- */

static int no_init(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                   mgr_reply *r)
{
    (void)o, (void)args, (void)kwds, (void)r;
    return 0;
}

const mgr_type mproc__mgr_iterator = {"Iterator", iter_exposed, no_init,
                                      iter_call,  iter_value,   iter_repr,
                                      NULL,       NULL};

static const mgr_type *const types[] = {
    &mproc__mgr_dict,  &mproc__mgr_list,  &mproc__mgr_namespace,
    &mproc__mgr_value, &mproc__mgr_array, NULL,
};

const mgr_type *mproc__mgr_type(const char *typeid)
{
    for (size_t i = 0; types[i]; i++)
        if (strcmp(types[i]->typeid, typeid) == 0)
            return types[i];
    return mproc__mgr_blocking_type(typeid);
}

mproc_obj *mproc__mgr_exposed(const mgr_type *t)
{
    size_t n = 0;
    while (t->exposed[n])
        n++;
    mproc_obj *tup = mproc_obj_tuple_new(n);
    for (size_t i = 0; tup && i < n; i++)
        if (mproc_obj_tuple_set(tup, i, mproc_obj_str_c(t->exposed[i])) < 0) {
            mproc_obj_unref(tup);
            return NULL;
        }
    return tup;
}
