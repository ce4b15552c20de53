/*
 * manager/objects_dict.c - the manager's dict and Namespace, as
 * SyncManager's.
 */
#include "manager/manager_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- dict ---------------------------------------------------------------- */

static const char *const dict_exposed[] = {
    "__contains__", "__delitem__", "__getitem__", "__iter__",   "__len__",
    "__setitem__",  "clear",       "copy",        "get",        "items",
    "keys",         "pop",         "popitem",     "setdefault", "update",
    "values",       NULL};

/* d[k] = v with Python's TypeError for an unhashable key. */
static int dict_store(mproc_obj *d, const mproc_obj *k, const mproc_obj *v,
                      mgr_reply *r)
{
    int rc = mproc_obj_dict_set(d, mproc_obj_ref((mproc_obj *)k),
                                mproc_obj_ref((mproc_obj *)v));
    if (rc == MPROC_ETYPE || rc == -ELOOP) {
        mgr_raise(r, mproc__mgr_exc("TypeError", "unhashable type: '%s'",
                                    mproc_obj_type_name(k)));
        return 1;
    }
    return rc;
}

/* dict.update(other, **kw) into d. 0, 1 (error set) or -ENOMEM. */
static int dict_update(mproc_obj *d, const mproc_obj *args,
                       const mproc_obj *kwds, mgr_reply *r)
{
    if (mgr_nargs(args) > 1) {
        mgr_raise(r,
                  mproc__mgr_exc("TypeError",
                                 "update expected at most 1 argument, got %zu",
                                 mgr_nargs(args)));
        return 1;
    }
    int rc = 0;
    if (mgr_nargs(args) == 1) {
        const mproc_obj *src = mgr_arg(args, 0);
        mproc_obj_type t = mproc_obj_type_of(src);
        if (t == MPROC_OBJ_DICT) {
            for (size_t i = 0; rc == 0 && i < mproc_obj_len(src); i++) {
                mproc_obj *k, *v;
                mproc_obj_dict_item(src, i, &k, &v);
                rc = dict_store(d, k, v, r);
            }
        } else if (t == MPROC_OBJ_LIST || t == MPROC_OBJ_TUPLE) {
            for (size_t i = 0; rc == 0 && i < mproc_obj_len(src); i++) {
                const mproc_obj *p = mproc_obj_item(src, i);
                mproc_obj_type pt = mproc_obj_type_of(p);
                if ((pt != MPROC_OBJ_TUPLE && pt != MPROC_OBJ_LIST) ||
                    mproc_obj_len(p) != 2) {
                    mgr_raise(r, mproc__mgr_exc("ValueError",
                                                "dictionary update sequence "
                                                "element #%zu has the wrong "
                                                "length",
                                                i));
                    return 1;
                }
                rc = dict_store(d, mproc_obj_item(p, 0), mproc_obj_item(p, 1),
                                r);
            }
        } else {
            mgr_raise(r,
                      mproc__mgr_exc("TypeError", "'%s' object is not iterable",
                                     mproc_obj_type_name(src)));
            return 1;
        }
    }
    for (size_t i = 0; rc == 0 && i < mproc_obj_len(kwds); i++) {
        mproc_obj *k, *v;
        mproc_obj_dict_item(kwds, i, &k, &v);
        rc = dict_store(d, k, v, r);
    }
    return rc;
}

static mproc_obj *dict_copy(const mproc_obj *d)
{
    mproc_obj *c = mproc_obj_dict_new();
    for (size_t i = 0; c && i < mproc_obj_len(d); i++) {
        mproc_obj *k, *v;
        mproc_obj_dict_item(d, i, &k, &v);
        if (mproc_obj_dict_set(c, mproc_obj_ref(k), mproc_obj_ref(v)) < 0) {
            mproc_obj_unref(c);
            return NULL;
        }
    }
    return c;
}

static int dict_init(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                     mgr_reply *r)
{
    o->val = mproc_obj_dict_new();
    if (!o->val)
        return -ENOMEM;
    return dict_update(o->val, args, kwds, r);
}

/* A view's items as a list: which 0 keys, 1 values, 2 (key, value). */
static mproc_obj *dict_view(const mproc_obj *d, int which)
{
    mproc_obj *l = mproc_obj_list_new();
    for (size_t i = 0; l && i < mproc_obj_len(d); i++) {
        mproc_obj *k, *v;
        mproc_obj_dict_item(d, i, &k, &v);
        mproc_obj *it = which == 0   ? mproc_obj_ref(k)
                        : which == 1 ? mproc_obj_ref(v)
                                     : mproc_obj_tuple_of(2, mproc_obj_ref(k),
                                                          mproc_obj_ref(v));
        if (mproc_obj_list_append(l, it) < 0) {
            mproc_obj_unref(l);
            return NULL;
        }
    }
    return l;
}

/* d[k] with the TypeError of an unhashable key: the value (borrowed) or
 * NULL (absent or error: *bad then 1 and r set). */
static mproc_obj *dict_lookup(const mproc_obj *d, const mproc_obj *k, int *bad,
                              mgr_reply *r)
{
    *bad = 0;
    int64_t h;
    if (mproc_obj_hash(k, &h) < 0) {
        mgr_raise(r, mproc__mgr_exc("TypeError", "unhashable type: '%s'",
                                    mproc_obj_type_name(k)));
        *bad = 1;
        return NULL;
    }
    return mproc_obj_dict_get(d, k);
}

static int dict_call(mgr_server *s, mgr_obj *o, const char *m,
                     const mproc_obj *args, const mproc_obj *kwds, mgr_reply *r)
{
    mproc_obj *d = o->val;
    int bad;
    if (strcmp(m, "__getitem__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 1, r))
            return 0;
        mproc_obj *v = dict_lookup(d, mgr_arg(args, 0), &bad, r);
        if (bad)
            return 0;
        return v ? mgr_ret(r, mproc_obj_ref(v))
                 : mgr_raise(r,
                             mproc__mgr_exc_of("KeyError", mgr_arg(args, 0)));
    }
    if (strcmp(m, "__setitem__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 2, 2, r))
            return 0;
        int rc = dict_store(d, mgr_arg(args, 0), mgr_arg(args, 1), r);
        return rc == 0 ? mgr_ret(r, mproc_obj_none()) : rc == 1 ? 0 : rc;
    }
    if (strcmp(m, "__delitem__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 1, r))
            return 0;
        if (!dict_lookup(d, mgr_arg(args, 0), &bad, r))
            return bad ? 0
                       : mgr_raise(r, mproc__mgr_exc_of("KeyError",
                                                        mgr_arg(args, 0)));
        mproc_obj_dict_del(d, mgr_arg(args, 0));
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "__contains__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 1, r))
            return 0;
        mproc_obj *v = dict_lookup(d, mgr_arg(args, 0), &bad, r);
        return bad ? 0 : mgr_ret(r, mproc_obj_bool(v != NULL));
    }
    if (strcmp(m, "__len__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 0, 0, r))
            return 0;
        return mgr_ret(r, mproc_obj_int((int64_t)mproc_obj_len(d)));
    }
    if (strcmp(m, "__iter__") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 0, 0, r))
            return 0;
        mgr_obj *it = mproc__mgr_new_obj(s, &mproc__mgr_iterator);
        if (!it)
            return -ENOMEM;
        r->kind = MGR_PROXY;
        r->proxy = it;
        return mproc__mgr_items_extend(it, d, r) < 0 ? -ENOMEM : 0;
    }
    if (strcmp(m, "clear") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 0, 0, r))
            return 0;
        mproc_obj *n = mproc_obj_dict_new();
        if (!n)
            return -ENOMEM;
        mproc_obj_unref(o->val);
        o->val = n;
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "copy") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 0, 0, r))
            return 0;
        return mgr_ret(r, dict_copy(d));
    }
    if (strcmp(m, "get") == 0 || strcmp(m, "setdefault") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 2, r))
            return 0;
        mproc_obj *v = dict_lookup(d, mgr_arg(args, 0), &bad, r);
        if (bad)
            return 0;
        if (v)
            return mgr_ret(r, mproc_obj_ref(v));
        mproc_obj *def =
            mgr_nargs(args) == 2 ? mgr_arg(args, 1) : mproc_obj_none();
        if (m[0] == 's') {
            int rc = dict_store(d, mgr_arg(args, 0), def, r);
            if (rc != 0)
                return rc == 1 ? 0 : rc;
        }
        return mgr_ret(r, mproc_obj_ref(def));
    }
    if (strcmp(m, "keys") == 0 || strcmp(m, "values") == 0 ||
        strcmp(m, "items") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 0, 0, r))
            return 0;
        return mgr_ret(r, dict_view(d, m[0] == 'k' ? 0 : m[0] == 'v' ? 1 : 2));
    }
    if (strcmp(m, "pop") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 1, 2, r))
            return 0;
        mproc_obj *v = dict_lookup(d, mgr_arg(args, 0), &bad, r);
        if (bad)
            return 0;
        if (!v)
            return mgr_nargs(args) == 2
                       ? mgr_ret(r, mproc_obj_ref(mgr_arg(args, 1)))
                       : mgr_raise(r, mproc__mgr_exc_of("KeyError",
                                                        mgr_arg(args, 0)));
        mproc_obj_ref(v);
        mproc_obj_dict_del(d, mgr_arg(args, 0));
        return mgr_ret(r, v);
    }
    if (strcmp(m, "popitem") == 0) {
        if (mproc__mgr_check_args(m, args, kwds, 0, 0, r))
            return 0;
        size_t n = mproc_obj_len(d);
        if (n == 0)
            return mgr_raise(
                r,
                mproc__mgr_exc("KeyError", "popitem(): dictionary is empty"));
        mproc_obj *k, *v;
        mproc_obj_dict_item(d, n - 1, &k, &v);
        mproc_obj *t =
            mproc_obj_tuple_of(2, mproc_obj_ref(k), mproc_obj_ref(v));
        if (!t)
            return -ENOMEM;
        mproc_obj_dict_del(d, mproc_obj_item(t, 0));
        return mgr_ret(r, t);
    }
    if (strcmp(m, "update") == 0) {
        int rc = dict_update(d, args, kwds, r);
        return rc == 0 ? mgr_ret(r, mproc_obj_none()) : rc == 1 ? 0 : rc;
    }
    return -ENOENT;
}

static mproc_obj *dict_value(const mgr_obj *o)
{
    return dict_copy(o->val);
}
static int dict_repr(const mgr_obj *o, char **out)
{
    return mproc_obj_repr(o->val, out, NULL);
}

const mgr_type mproc__mgr_dict = {"dict",    dict_exposed, dict_init,
                                  dict_call, dict_value,   dict_repr,
                                  NULL,      NULL};

/* ---- Namespace ----------------------------------------------------------- */

static const char *const ns_exposed[] = {"__getattribute__", "__setattr__",
                                         "__delattr__", NULL};

static int ns_init(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                   mgr_reply *r)
{
    if (mgr_nargs(args) != 0) {
        mgr_raise(r,
                  mproc__mgr_exc("TypeError",
                                 "Namespace() takes no positional arguments"));
        return 1;
    }
    o->val = dict_copy(kwds);
    return o->val ? 0 : -ENOMEM;
}

static int ns_call(mgr_server *s, mgr_obj *o, const char *m,
                   const mproc_obj *args, const mproc_obj *kwds, mgr_reply *r)
{
    (void)s;
    bool get = strcmp(m, "__getattribute__") == 0;
    bool set = strcmp(m, "__setattr__") == 0;
    bool del = strcmp(m, "__delattr__") == 0;
    if (!get && !set && !del)
        return -ENOENT;
    if (mproc__mgr_check_args(m, args, kwds, set ? 2 : 1, set ? 2 : 1, r))
        return 0;
    const char *name = mproc_obj_str_value(mgr_arg(args, 0), NULL);
    if (!name)
        return mgr_raise(r,
                         mproc__mgr_exc("TypeError",
                                        "attribute name must be string, not "
                                        "'%s'",
                                        mproc_obj_type_name(mgr_arg(args, 0))));
    mproc_obj *v = mproc_obj_dict_get(o->val, mgr_arg(args, 0));
    if (set) {
        if (mproc_obj_dict_set(o->val, mproc_obj_ref(mgr_arg(args, 0)),
                               mproc_obj_ref(mgr_arg(args, 1))) < 0)
            return -ENOMEM;
        return mgr_ret(r, mproc_obj_none());
    }
    if (!v)
        return mgr_raise(r,
                         mproc__mgr_exc("AttributeError",
                                        "'Namespace' object has no attribute "
                                        "'%s'",
                                        name));
    if (get)
        return mgr_ret(r, mproc_obj_ref(v));
    mproc_obj_dict_del(o->val, mgr_arg(args, 0));
    return mgr_ret(r, mproc_obj_none());
}

static mproc_obj *ns_value(const mgr_obj *o)
{
    return dict_copy(o->val);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "Namespace(a=1, b='x')": the public attributes sorted as text. */
static int ns_repr(const mgr_obj *o, char **out)
{
    size_t n = mproc_obj_len(o->val), k = 0;
    char **parts = calloc(n ? n : 1, sizeof(void *));
    int rc = parts ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        mproc_obj *key, *v;
        mproc_obj_dict_item(o->val, i, &key, &v);
        const char *name = mproc_obj_str_value(key, NULL);
        if (!name || name[0] == '_')
            continue;
        char *vr;
        rc = mproc_obj_repr(v, &vr, NULL);
        if (rc < 0)
            break;
        size_t len = strlen(name) + strlen(vr) + 2;
        parts[k] = malloc(len);
        if (parts[k])
            snprintf(parts[k++], len, "%s=%s", name, vr);
        else
            rc = -ENOMEM;
        free(vr);
    }
    mproc__buf b = {0};
    if (rc == 0) {
        qsort(parts, k, sizeof(void *), cmp_str);
        mproc__buf_put(&b, "Namespace(", 10);
        for (size_t i = 0; i < k; i++) {
            if (i)
                mproc__buf_put(&b, ", ", 2);
            mproc__buf_put(&b, parts[i], strlen(parts[i]));
        }
        mproc__buf_put(&b, ")", 2);
        if (b.oom)
            rc = -ENOMEM;
    }
    for (size_t i = 0; parts && i < k; i++)
        free(parts[i]);
    free(parts);
    *out = rc == 0 ? (char *)b.p : NULL;
    if (rc < 0)
        mproc__buf_free(&b);
    return rc;
}

const mgr_type mproc__mgr_namespace = {
    "Namespace", ns_exposed, ns_init, ns_call, ns_value, ns_repr, NULL, NULL};
