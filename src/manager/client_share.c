/*
 * manager/client_share.c - proxies as values: what CPython pickles for a
 * proxy (RebuildProxy(proxy class, Token, serializer, kwds)), so that a
 * proxy goes over a connection to a Python process or another C process,
 * and a proxy made again from such a value (with its own reference, as
 * RebuildProxy's incref). Also how a client tells that the server no
 * longer knows an object (a server restarted at the same address).
 */
#include "manager/manager_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANAGERS "multiprocessing.managers"

bool mproc__mgr_unknown_ident(const mproc_obj *tb, const mproc_obj *ident)
{
    size_t n, idn;
    const char *s = mproc_obj_str_value(tb, &n);
    const char *id = mproc_obj_str_value(ident, &idn);
    if (!s || !id)
        return false;
    while (n && s[n - 1] == '\n')
        n--;
    size_t start = n;
    while (start && s[start - 1] != '\n')
        start--;
    static const char pre[] = "KeyError: '";
    size_t pn = sizeof pre - 1;
    return n - start == pn + idn + 1 && memcmp(s + start, pre, pn) == 0 &&
           memcmp(s + start + pn, id, idn) == 0 && s[n - 1] == '\'';
}

/* The proxy class SyncManager registers for a type id (AutoProxy for the
 * rest: it asks the server for the methods). */
static const struct {
    const char *typeid, *cls;
} proxy_classes[] = {
    {"dict", "DictProxy"},           {"list", "ListProxy"},
    {"Namespace", "NamespaceProxy"}, {"Value", "ValueProxy"},
    {"Array", "ArrayProxy"},         {"Iterator", "IteratorProxy"},
    {"Lock", "AcquirerProxy"},       {"RLock", "AcquirerProxy"},
    {"Semaphore", "AcquirerProxy"},  {"BoundedSemaphore", "AcquirerProxy"},
    {"Event", "EventProxy"},         {"Condition", "ConditionProxy"},
    {"Barrier", "BarrierProxy"},     {NULL, NULL}};

/* The classes a value may name (those the unpickler allows). */
static bool proxy_class_ok(const char *cls)
{
    static const char *const more[] = {"AutoProxy", "BaseListProxy",
                                       "PoolProxy", NULL};
    for (size_t i = 0; proxy_classes[i].typeid; i++)
        if (strcmp(cls, proxy_classes[i].cls) == 0)
            return true;
    for (size_t i = 0; more[i]; i++)
        if (strcmp(cls, more[i]) == 0)
            return true;
    return false;
}

/* An mproc address as a Token carries it: "/path" a str, "@name" bytes
 * starting with NUL, "host:port" and "[v6]:port" a (host, port) tuple. */
mproc_obj *mproc__mgr_token_address(const char *a)
{
    const char *colon = strrchr(a, ':');
    if (a[0] == '@') {
        size_t n = strlen(a);
        char *b = malloc(n);
        mproc_obj *v = NULL;
        if (b) {
            b[0] = 0;
            memcpy(b + 1, a + 1, n - 1);
            v = mproc_obj_bytes(b, n);
        }
        free(b);
        return v;
    }
    if (a[0] == '/' || !colon || colon[1] < '0' || colon[1] > '9')
        return mproc_obj_str_c(a);
    bool v6 = a[0] == '[' && colon > a + 1 && colon[-1] == ']';
    const char *host = v6 ? a + 1 : a;
    size_t hn = (size_t)(colon - host) - (v6 ? 1 : 0);
    return mproc_obj_tuple_of(2, mproc_obj_str(host, hn),
                              mproc_obj_int(strtol(colon + 1, NULL, 10)));
}

/* A Token's address in mproc's form (malloc'd), or NULL (a bad shape,
 * no memory). */
static char *address_from_py(const mproc_obj *a)
{
    size_t n;
    const char *s = mproc_obj_str_value(a, &n);
    const unsigned char *b = s ? (const unsigned char *)s /* '\0name' too */
                               : mproc_obj_bytes_value(a, &n);
    if (s && n && s[0] != 0)
        return memchr(s, 0, n) == NULL ? strdup(s) : NULL;
    if ((s || mproc_obj_type_of(a) == MPROC_OBJ_BYTES) && b && n > 1 &&
        b[0] == 0 && !memchr(b + 1, 0, n - 1)) {
        char *r = malloc(n + 1);
        if (r) {
            r[0] = '@';
            memcpy(r + 1, b + 1, n - 1);
            r[n] = 0;
        }
        return r;
    }
    int64_t port = -1;
    const char *host = mproc_obj_str_value(mproc_obj_item(a, 0), &n);
    if (mproc_obj_type_of(a) != MPROC_OBJ_TUPLE || mproc_obj_len(a) != 2 ||
        !host || !n || memchr(host, 0, n) ||
        mproc_obj_int_value(mproc_obj_item(a, 1), &port) < 0 || port < 0 ||
        port > 65535)
        return NULL;
    bool v6 = strchr(host, ':') != NULL;
    size_t cap = n + 16;
    char *r = malloc(cap);
    if (r)
        snprintf(r, cap, v6 ? "[%s]:%d" : "%s:%d", host, (int)port);
    return r;
}

int mproc_proxy_to_obj(const mproc_proxy *p, mproc_obj **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!p)
        return -EINVAL;
    const char *typeid = mproc_proxy_typeid(p), *cls = "AutoProxy";
    for (size_t i = 0; proxy_classes[i].typeid; i++)
        if (strcmp(typeid, proxy_classes[i].typeid) == 0)
            cls = proxy_classes[i].cls;
    mproc_obj *token = mproc_obj_reduce(
        MANAGERS, "Token", mproc_obj_tuple_new(0),
        mproc_obj_tuple_of(
            3, mproc_obj_str_c(typeid),
            mproc__mgr_token_address(mproc__mgr_proxy_address(p)),
            mproc_obj_str_c(mproc_proxy_ident(p))),
        true);
    mproc_obj *args = mproc_obj_tuple_of(
        4, mproc_obj_reduce(MANAGERS, cls, NULL, NULL, false), token,
        mproc_obj_str_c("pickle"), mproc_obj_dict_new());
    *out = mproc_obj_reduce(MANAGERS, "RebuildProxy", args, NULL, false);
    return *out ? 0 : -ENOMEM;
}

/* The Token's state (typeid, address, id) of a RebuildProxy value, and
 * its kwds; NULL when obj has another shape. */
static const mproc_obj *token_state(const mproc_obj *obj, mproc_obj **kwds)
{
    const char *mod = mproc_obj_reduce_module(obj);
    const mproc_obj *args = mproc_obj_reduce_args(obj);
    if (!mod || strcmp(mod, MANAGERS) != 0 ||
        strcmp(mproc_obj_reduce_name(obj), "RebuildProxy") != 0 ||
        mproc_obj_reduce_state(obj) || mproc_obj_len(args) != 4)
        return NULL;
    const mproc_obj *cls = mproc_obj_item(args, 0);
    const mproc_obj *tok = mproc_obj_item(args, 1);
    const char *cmod = mproc_obj_reduce_module(cls);
    const char *tmod = mproc_obj_reduce_module(tok);
    const char *ser = mproc_obj_str_value(mproc_obj_item(args, 2), NULL);
    *kwds = mproc_obj_item(args, 3);
    if (!cmod || strcmp(cmod, MANAGERS) != 0 || mproc_obj_reduce_args(cls) ||
        mproc_obj_reduce_state(cls) ||
        !proxy_class_ok(mproc_obj_reduce_name(cls)) || !tmod ||
        strcmp(tmod, MANAGERS) != 0 ||
        strcmp(mproc_obj_reduce_name(tok), "Token") != 0 || !ser ||
        strcmp(ser, "pickle") != 0 ||
        mproc_obj_type_of(*kwds) != MPROC_OBJ_DICT)
        return NULL;
    const mproc_obj *st = mproc_obj_reduce_state(tok);
    size_t tn = 0;
    const char *typeid = mproc_obj_str_value(mproc_obj_item(st, 0), &tn);
    const char *id = mproc_obj_str_value(mproc_obj_item(st, 2), NULL);
    if (mproc_obj_type_of(st) != MPROC_OBJ_TUPLE || mproc_obj_len(st) != 3 ||
        !typeid || !tn || memchr(typeid, 0, tn) || !id || !*id)
        return NULL;
    return st;
}

int mproc_proxy_from_obj(mproc_proxy **out, const mproc_obj *obj,
                         const mproc_conn_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!obj)
        return -EINVAL;
    mproc_obj *kwds = NULL;
    const mproc_obj *st = token_state(obj, &kwds);
    if (!st)
        return MPROC_ETYPE;
    char *addr = address_from_py(mproc_obj_item(st, 1));
    if (!addr) /* no address mproc can reach (or no memory for it) */
        return MPROC_ETYPE;
    mproc_conn_opts o = {0};
    if (opts) {
        o = *opts;
    } else { /* the key the value carries (a spawned child's), else ours */
        size_t kn = 0;
        const unsigned char *k =
            mproc_obj_bytes_value(mproc_obj_dict_get_str(kwds, "authkey"), &kn);
        if (k) {
            o.auth = MPROC_AUTH_KEY;
            o.authkey = k;
            o.authkey_len = kn;
        }
    }
    mgr_client *cl = NULL;
    int rc = mproc__mgr_client_new(&cl, addr, &o);
    free(addr);
    if (rc < 0)
        return rc;
    rc = mproc__mgr_proxy_adopt(
        cl, mproc_obj_str_value(mproc_obj_item(st, 0), NULL),
        mproc_obj_ref(mproc_obj_item(st, 2)), out);
    mproc__mgr_client_unref(cl);
    return rc;
}
