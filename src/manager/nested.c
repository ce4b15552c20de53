/*
 * manager/nested.c - proxies stored in the manager's objects (a dict proxy
 * in a list): a client sends them as RebuildProxy(ProxyClass, Token,
 * 'pickle', kwds) values. Those naming this server's objects are found
 * here, for the server to keep the objects they name alive while they are
 * stored (server.c: the sweep), and are given the manager's authkey in
 * their kwds, so that a client that reads one back connects with the
 * manager's key (CPython's client uses its process key otherwise, and
 * fails against a manager with a key of its own).
 */
#include "manager/manager_impl.h"

#include <string.h>

/* Deeper values are not looked into (the unpickler bounds depth too). */
#define MAX_DEPTH 64

mgr_obj *mproc__mgr_proxy_target(mgr_server *s, const mproc_obj *v)
{
    if (mproc_obj_type_of(v) != MPROC_OBJ_REDUCE ||
        strcmp(mproc_obj_reduce_name(v), "RebuildProxy") != 0 ||
        strcmp(mproc_obj_reduce_module(v), "multiprocessing.managers") != 0)
        return NULL;
    const mproc_obj *a = mproc_obj_reduce_args(v);
    if (mproc_obj_type_of(a) != MPROC_OBJ_TUPLE || mproc_obj_len(a) != 4)
        return NULL;
    const mproc_obj *st = mproc_obj_reduce_state(mproc_obj_item(a, 1));
    if (mproc_obj_type_of(st) != MPROC_OBJ_TUPLE || mproc_obj_len(st) != 3)
        return NULL;
    const char *typeid = mproc_obj_str_value(mproc_obj_item(st, 0), NULL);
    mgr_obj *o = mproc__mgr_lookup(s, mproc_obj_item(st, 2));
    return o && typeid && strcmp(o->type->typeid, typeid) == 0 ? o : NULL;
}

static size_t walk(mgr_server *s, const mproc_obj *v, const mproc_obj *key,
                   void (*fn)(mgr_server *, mgr_obj *), int depth)
{
    if (!v || depth > MAX_DEPTH)
        return 0;
    size_t found = 0, n = mproc_obj_len(v);
    switch (mproc_obj_type_of(v)) {
    case MPROC_OBJ_TUPLE:
    case MPROC_OBJ_LIST:
    case MPROC_OBJ_SET:
    case MPROC_OBJ_FROZENSET:
        for (size_t i = 0; i < n; i++)
            found += walk(s, mproc_obj_item(v, i), key, fn, depth + 1);
        return found;
    case MPROC_OBJ_DICT:
        for (size_t i = 0; i < n; i++) {
            mproc_obj *k, *x;
            mproc_obj_dict_item(v, i, &k, &x);
            found += walk(s, k, key, fn, depth + 1);
            found += walk(s, x, key, fn, depth + 1);
        }
        return found;
    case MPROC_OBJ_REDUCE:
        break;
    default:
        return 0;
    }
    mgr_obj *o = mproc__mgr_proxy_target(s, v);
    if (!o)
        return walk(s, mproc_obj_reduce_args(v), key, fn, depth + 1) +
               walk(s, mproc_obj_reduce_state(v), key, fn, depth + 1);
    if (fn)
        fn(s, o);
    mproc_obj *kw = mproc_obj_item(mproc_obj_reduce_args(v), 3);
    if (key && mproc_obj_type_of(kw) == MPROC_OBJ_DICT &&
        !mproc_obj_dict_get_str(kw, "authkey"))
        mproc_obj_dict_set(kw, mproc_obj_str_c("authkey"),
                           mproc_obj_ref((mproc_obj *)key));
    return 1;
}

size_t mproc__mgr_proxies_in(mgr_server *s, const mproc_obj *v,
                             const mproc_obj *key,
                             void (*fn)(mgr_server *s, mgr_obj *o))
{
    return walk(s, v, key, fn, 0);
}

void mproc__mgr_obj_proxies(mgr_server *s, const mgr_obj *o,
                            void (*fn)(mgr_server *s, mgr_obj *o))
{
    walk(s, o->val, NULL, fn, 0);
    for (size_t i = 0; i < o->n; i++)
        walk(s, o->items[i], NULL, fn, 0);
}
