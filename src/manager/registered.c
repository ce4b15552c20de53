/*
 * manager/registered.c - types registered from C (BaseManager.register):
 * each mproc_manager_type of the server's options becomes a server type
 * whose objects hold the pointer its create returned, whose methods are
 * the table's C functions, and whose exposed names are the type's (or the
 * table's public names). A method named in the table with a type id
 * answers with a proxy: the server creates an object of that type from
 * the method's result, as CPython's method_to_typeid.
 */
#include "manager/manager_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct reg_type {
    mgr_type base; /* first: a mgr_type * is a reg_type * */
    const mproc_manager_type *user;
    const char **exposed; /* computed when the type gives none */
} reg_type;

struct mgr_regs {
    reg_type *types;
    size_t n;
};

static const mproc_manager_type *user_of(const mgr_obj *o)
{
    return ((const reg_type *)o->type)->user;
}

/* An exception for a code that is not MPROC_EREMOTE: MemoryError for
 * -ENOMEM, else RuntimeError("<code's name>: <its text>"). */
static mproc_obj *code_exc(int rc)
{
    if (rc == -ENOMEM)
        return mproc__mgr_exc("MemoryError", NULL);
    return mproc__mgr_exc("RuntimeError", "%s: %s", mproc_errname(rc),
                          mproc_strerror(rc));
}

/* What a user's function returned as a reply: 0 with the value (NULL:
 * None), MPROC_EREMOTE with an exception value (a reduce value; anything
 * else raises TypeError, as Python's raise would), another code. */
static int user_reply(int rc, mproc_obj *v, mgr_reply *r)
{
    if (rc >= 0)
        return mgr_ret(r, v ? v : mproc_obj_none());
    if (rc == MPROC_EREMOTE && mproc_obj_type_of(v) == MPROC_OBJ_REDUCE)
        return mgr_raise(r, v);
    mproc_obj_unref(v);
    if (rc == MPROC_EREMOTE) /* raising what is no exception */
        return mgr_raise(r, mproc__mgr_exc("TypeError",
                                           "exceptions must derive from "
                                           "BaseException"));
    return mgr_raise(r, code_exc(rc));
}

static int reg_init(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                    mgr_reply *r)
{
    const mproc_manager_type *t = user_of(o);
    if (!t->create)
        return 0; /* the object is no more than its ident */
    void *self = NULL;
    mproc_obj *exc = NULL;
    int rc = t->create(args, kwds, &self, &exc);
    if (rc >= 0) {
        mproc_obj_unref(exc);
        o->user = self;
        return 0;
    }
    if (rc != MPROC_EREMOTE || mproc_obj_type_of(exc) != MPROC_OBJ_REDUCE) {
        mproc_obj_unref(exc);
        exc = code_exc(rc);
    }
    return mgr_raise(r, exc) < 0 ? -ENOMEM : 1;
}

static int reg_call(mgr_server *s, mgr_obj *o, const char *name,
                    const mproc_obj *args, const mproc_obj *kwds, mgr_reply *r)
{
    const mproc_manager_type *t = user_of(o);
    const mproc_manager_method *m = t->methods;
    while (m && m->name && strcmp(m->name, name) != 0)
        m++;
    if (!m || !m->name || !m->fn)
        return -ENOENT;
    mproc_obj *v = NULL;
    int rc = m->fn(o->user, args, kwds, &v);
    if (rc < 0 || !m->typeid)
        return user_reply(rc, v, r);
    /* method_to_typeid: a new object of that type made from the result */
    mproc_obj *cargs = mproc_obj_tuple_of(1, v ? v : mproc_obj_none());
    mproc_obj *ckwds = mproc_obj_dict_new();
    mgr_obj *made = NULL;
    rc = cargs && ckwds ? mproc__mgr_make(s, m->typeid, cargs, ckwds, r, &made)
                        : -ENOMEM;
    mproc_obj_unref(cargs);
    mproc_obj_unref(ckwds);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    r->kind = MGR_PROXY;
    r->value = NULL;
    r->proxy = made;
    return 0;
}

/* Names the table's own #GETVALUE / __repr__ answer, when it has them. */
static mproc_obj *call_own(const mgr_obj *o, const char *name)
{
    const mproc_manager_method *m = user_of(o)->methods;
    while (m && m->name && strcmp(m->name, name) != 0)
        m++;
    if (!m || !m->name || !m->fn)
        return NULL;
    mproc_obj *args = mproc_obj_tuple_new(0), *kwds = mproc_obj_dict_new();
    mproc_obj *v = NULL;
    int rc = args && kwds ? m->fn(o->user, args, kwds, &v) : -ENOMEM;
    mproc_obj_unref(args);
    mproc_obj_unref(kwds);
    if (rc < 0) {
        mproc_obj_unref(v);
        return NULL;
    }
    return v ? v : mproc_obj_none();
}

static mproc_obj *reg_value(const mgr_obj *o)
{
    mproc_obj *v = call_own(o, "#GETVALUE");
    return v ? v : mproc_obj_none();
}

static int reg_repr(const mgr_obj *o, char **out)
{
    mproc_obj *v = call_own(o, "__repr__");
    const char *s = mproc_obj_str_value(v, NULL);
    char buf[300];
    if (!s) {
        snprintf(buf, sizeof buf, "<%s object>", o->type->typeid);
        s = buf;
    }
    *out = strdup(s);
    mproc_obj_unref(v);
    return *out ? 0 : -ENOMEM;
}

void mproc__mgr_regs_destroy(mgr_obj *o)
{
    if (!o->user) /* set only for registered types */
        return;
    const mproc_manager_type *t = user_of(o);
    if (t->free)
        t->free(o->user);
    o->user = NULL;
}

int mproc__mgr_regs_new(mgr_regs **out, const mproc_manager_type *const *types,
                        size_t n)
{
    *out = NULL;
    if (n == 0)
        return 0;
    if (!types)
        return -EINVAL;
    mgr_regs *g = calloc(1, sizeof *g);
    if (!g || !(g->types = calloc(n, sizeof *g->types))) {
        free(g);
        return -ENOMEM;
    }
    g->n = n;
    for (size_t i = 0; i < n; i++) {
        const mproc_manager_type *t = types[i];
        reg_type *rt = &g->types[i];
        if (!t || !t->typeid || !*t->typeid) {
            mproc__mgr_regs_free(g);
            return -EINVAL;
        }
        rt->user = t;
        rt->base = (mgr_type){.typeid = t->typeid,
                              .exposed = t->exposed,
                              .init = reg_init,
                              .call = reg_call,
                              .value = reg_value,
                              .repr = reg_repr};
        if (t->exposed)
            continue;
        /* CPython's public_methods: the names not starting with '_' */
        size_t k = 0, cnt = 0;
        for (const mproc_manager_method *m = t->methods; m && m->name; m++)
            cnt++;
        rt->exposed = calloc(cnt + 1, sizeof(char *));
        if (!rt->exposed) {
            mproc__mgr_regs_free(g);
            return -ENOMEM;
        }
        for (const mproc_manager_method *m = t->methods; m && m->name; m++)
            if (m->name[0] != '_' && m->name[0] != '#')
                rt->exposed[k++] = m->name;
        rt->base.exposed = rt->exposed;
    }
    *out = g;
    return 0;
}

const mgr_type *mproc__mgr_regs_find(const mgr_regs *g, const char *typeid)
{
    for (size_t i = 0; g && i < g->n; i++)
        if (strcmp(g->types[i].base.typeid, typeid) == 0)
            return &g->types[i].base;
    return NULL;
}

void mproc__mgr_regs_free(mgr_regs *g)
{
    if (!g)
        return;
    for (size_t i = 0; g->types && i < g->n; i++)
        free(g->types[i].exposed);
    free(g->types);
    free(g);
}
