/*
 * manager/requests.c - what the server answers: the replies (a result,
 * an error, a traceback, a proxy's Token) framed into a client's output,
 * the top-level requests of a fresh connection (create, incref, decref,
 * get_methods, number_of_objects, debug_info, accept_connection,
 * shutdown) and method calls on objects over a channel. The event loop
 * that reads requests and writes replies is server.c.
 */
#include "manager/server_impl.h"
#include "obj/obj_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mproc_obj *ident_of(const mgr_obj *o)
{
    char id[32];
    snprintf(id, sizeof id, "%lx",
             o->fuzz_id ? o->fuzz_id : (unsigned long)(uintptr_t)o);
    return mproc_obj_str_c(id);
}

/* ---- replies ------------------------------------------------------------- */

/* A traceback text as CPython's format_exc() ends: "<Type>: <message>". */
mproc_obj *mproc__mgr_traceback(const char *fmt, ...)
{
    char msg[600];
    int k = snprintf(msg, sizeof msg,
                     "Traceback (most recent call last):\n"
                     "  File \"<mproc manager>\", in serve\n");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + k, sizeof msg - (size_t)k, fmt, ap);
    va_end(ap);
    size_t n = strlen(msg);
    if (n + 1 < sizeof msg) {
        msg[n] = '\n';
        msg[n + 1] = 0;
    }
    return mproc_obj_str_c(msg);
}

/* An exception value as the traceback's last line ("KeyError: 'x'"). */
static mproc_obj *traceback_of(const mproc_obj *exc)
{
    char *r = NULL;
    const mproc_obj *a = mproc_obj_reduce_args(exc);
    const mproc_obj *a0 = mproc_obj_len(a) ? mproc_obj_item(a, 0) : NULL;
    const char *s = mproc_obj_str_value(a0, NULL);
    if (!s && a0 && mproc_obj_repr(a0, &r, NULL) == 0)
        s = r;
    mproc_obj *t =
        mproc__mgr_traceback("%s: %s", mproc_obj_reduce_name(exc), s ? s : "");
    free(r);
    return t;
}

/* The Token (typeid, address, ident) of o, as CPython pickles it. */
static mproc_obj *token_of(mgr_server *s, const mgr_obj *o)
{
    return mproc_obj_reduce(
        "multiprocessing.managers", "Token", mproc_obj_tuple_new(0),
        mproc_obj_tuple_of(3, mproc_obj_str_c(o->type->typeid),
                           mproc_obj_ref(s->address), ident_of(o)),
        true);
}

/* Appends the frame of the reply (kind, value) to cl's output; value
 * stolen. 0, -ENOMEM, or -ENOBUFS when cl left more than max_output
 * bytes of replies unread (it is then to be dropped). */
static int queue_reply(mgr_server *s, client *cl, int kind, mproc_obj *value)
{
    if (cl->out.len - cl->out_pos > s->max_output) {
        mproc_obj_unref(value);
        return -ENOBUFS;
    }
    mproc_obj *msg =
        mproc_obj_tuple_of(2, mproc_obj_ref(s->kinds[kind]), value);
    if (!msg)
        return -ENOMEM;
    mproc__buf *b = &cl->out;
    size_t at = b->len;
    mproc__buf_u32(b, 0); /* the length, known once written */
    int rc = mproc__pickle_dump(msg, cl->proto, b);
    mproc_obj_unref(msg);
    if (rc == 0 && b->oom)
        rc = -ENOMEM;
    if (rc < 0) {
        if (!b->oom)
            b->len = at;
        return rc;
    }
    size_t n = b->len - at - 4;
    if (n > 0x7fffffff) { /* a 12-byte header: -1, then the 64-bit size */
        mproc__buf_put(b, "12345678", 8);
        if (b->oom)
            return -ENOMEM;
        memmove(b->p + at + 12, b->p + at + 4, n);
        memset(b->p + at, 0xff, 4);
        for (int i = 0; i < 8; i++)
            b->p[at + 4 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        return 0;
    }
    for (int i = 0; i < 4; i++)
        b->p[at + i] = (unsigned char)(n >> (24 - 8 * i));
    return 0;
}

int mproc__mgr_queue_result(mgr_server *s, client *cl, mgr_reply *r)
{
    switch (r->kind) {
    case MGR_RETURN:
        return queue_reply(s, cl, 0, r->value);
    case MGR_ERROR:
        return queue_reply(s, cl, 1, r->value);
    case MGR_TRACEBACK:
        return queue_reply(s, cl, 2, r->value);
    case MGR_PARK:
        return -EINVAL;
    case MGR_PROXY:
        mproc_obj_unref(r->value);
        return queue_reply(
            s, cl, 3,
            mproc_obj_tuple_of(2, mproc__mgr_exposed(r->proxy->type),
                               token_of(s, r->proxy)));
    }
    return -EINVAL;
}

/* ---- top-level requests -------------------------------------------------- */

int mproc__mgr_make(mgr_server *s, const char *typeid, const mproc_obj *args,
                    const mproc_obj *kwds, mgr_reply *r, mgr_obj **out)
{
    *out = NULL;
    const mgr_type *t = NULL;
    if (typeid && !(t = mproc__mgr_regs_find(s->regs, typeid)))
        t = mproc__mgr_type(typeid);
    if (!t) {
        r->kind = MGR_TRACEBACK;
        r->value =
            mproc__mgr_traceback("KeyError: %s", typeid ? typeid : "typeid");
        return r->value ? 1 : -ENOMEM;
    }
    mgr_obj *o = mproc__mgr_new_obj(s, t);
    if (o && mproc__mgr_proxies_in(s, args, s->key, NULL) +
                     mproc__mgr_proxies_in(s, kwds, s->key, NULL) >
                 0)
        o->nested = s->nested = true;
    int rc = o ? t->init(o, args, kwds, r) : -ENOMEM;
    if (rc != 0) {
        if (o)
            mproc__mgr_drop_obj(s, o);
        if (rc == 1) { /* the exception becomes a traceback */
            mproc_obj *e = r->value;
            r->kind = MGR_TRACEBACK;
            r->value = traceback_of(e);
            mproc_obj_unref(e);
            return r->value ? 1 : -ENOMEM;
        }
        return rc;
    }
    *out = o;
    return 0;
}

static int create(mgr_server *s, const mproc_obj *args, const mproc_obj *kwds,
                  mgr_reply *r)
{
    const char *typeid = mproc_obj_str_value(mproc_obj_item(args, 0), NULL);
    size_t n = mproc_obj_len(args);
    mproc_obj *rest = mproc_obj_tuple_new(n - 1);
    if (!rest)
        return -ENOMEM;
    for (size_t i = 1; i < n; i++)
        mproc_obj_tuple_set(rest, i - 1,
                            mproc_obj_ref(mproc_obj_item(args, i)));
    mgr_obj *o;
    int rc = mproc__mgr_make(s, typeid, rest, kwds, r, &o);
    mproc_obj_unref(rest);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    r->kind = MGR_RETURN;
    r->value = mproc_obj_tuple_of(2, ident_of(o), mproc__mgr_exposed(o->type));
    return r->value ? 0 : -ENOMEM;
}

/* What an ident argument (a str, or a Token for get_methods) names. */
static mgr_obj *target_of(mgr_server *s, const mproc_obj *a)
{
    if (mproc_obj_type_of(a) == MPROC_OBJ_REDUCE) {
        const mproc_obj *st = mproc_obj_reduce_state(a);
        if (mproc_obj_len(st) != 3)
            return NULL;
        a = mproc_obj_item(st, 2);
    }
    return mproc__mgr_lookup(s, a);
}

static mproc_obj *debug_info(mgr_server *s)
{
    mproc__buf b = {0};
    for (size_t i = 0; i < s->nbuckets; i++)
        for (mgr_obj *o = s->buckets[i]; o; o = o->next) {
            char line[128], *rep = NULL;
            o->type->repr(o, &rep);
            snprintf(line, sizeof line,
                     "%s  %lx:       refcount=%ld\n    %.75s",
                     b.len ? "\n" : "", (unsigned long)(uintptr_t)o, o->refs,
                     rep ? rep : "?");
            free(rep);
            mproc__buf_put(&b, line, strlen(line));
        }
    mproc__buf_put(&b, "", 1);
    mproc_obj *v = b.oom ? NULL : mproc_obj_str_c((char *)b.p);
    mproc__buf_free(&b);
    return v;
}

/* Runs top-level funcname. Returns 0 with *r set, 1 for accept_connection
 * (answered already), 2 for shutdown, -ENOMEM. */
int mproc__mgr_top_level(mgr_server *s, const char *f, const mproc_obj *args,
                         const mproc_obj *kwds, mgr_reply *r)
{
    size_t n = mproc_obj_len(args);
    r->kind = MGR_RETURN;
    if (strcmp(f, "dummy") == 0) {
        r->value = mproc_obj_none();
        return 0;
    }
    if (strcmp(f, "create") == 0 && n >= 1)
        return create(s, args, kwds, r);
    if (strcmp(f, "accept_connection") == 0)
        return 1;
    if (strcmp(f, "shutdown") == 0) {
        r->value = mproc_obj_none();
        return 2;
    }
    if (strcmp(f, "number_of_objects") == 0) {
        r->value = mproc_obj_int((int64_t)s->nobjs);
        return r->value ? 0 : -ENOMEM;
    }
    if (strcmp(f, "debug_info") == 0) {
        r->value = debug_info(s);
        return r->value ? 0 : -ENOMEM;
    }
    bool inc = strcmp(f, "incref") == 0, dec = strcmp(f, "decref") == 0;
    bool meth = strcmp(f, "get_methods") == 0;
    if ((inc || dec || meth) && n == 1) {
        mgr_obj *o = target_of(s, mproc_obj_item(args, 0));
        if (!o) {
            char *rep = NULL;
            mproc_obj_repr(mproc_obj_item(args, 0), &rep, NULL);
            r->kind = MGR_TRACEBACK;
            r->value = mproc__mgr_traceback("KeyError: %s", rep ? rep : "?");
            free(rep);
            return r->value ? 0 : -ENOMEM;
        }
        if (meth) {
            r->value = mproc__mgr_exposed(o->type);
            return r->value ? 0 : -ENOMEM;
        }
        pid_t pid = mproc__mgr_client_pid(s, s->caller);
        if (inc) {
            o->refs++;
            mproc__mgr_hold_add(s, o, pid, 1);
        } else {
            o->refs--;
            mproc__mgr_hold_drop(s, o, pid);
            if (o->refs <= 0)
                mproc__mgr_unreferenced(s, o);
        }
        r->value = mproc_obj_none();
        return 0;
    }
    r->kind = MGR_TRACEBACK;
    r->value = mproc__mgr_traceback("AssertionError: '%s' unrecognized", f);
    return r->value ? 0 : -ENOMEM;
}

/* ---- method calls ----------------------------------------------------------
 */

static bool exposed(const mgr_type *t, const char *name)
{
    for (const char *const *e = t->exposed; *e; e++)
        if (strcmp(*e, name) == 0)
            return true;
    return false;
}

int mproc__mgr_method(mgr_server *s, const mproc_obj *ident, const char *name,
                      const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r)
{
    mgr_obj *o = mproc__mgr_lookup(s, ident);
    if (!o) {
        char *rep = NULL;
        mproc_obj_repr(ident, &rep, NULL);
        r->kind = MGR_TRACEBACK;
        r->value = mproc__mgr_traceback("KeyError: %s", rep ? rep : "?");
        free(rep);
        return r->value ? 0 : -ENOMEM;
    }
    if (o->type->drop_client && s->cur)
        s->cur->blocking = true; /* dropping it must give back what it holds */
    if (exposed(o->type, name)) {
        if (mproc__mgr_proxies_in(s, args, s->key, NULL) +
                mproc__mgr_proxies_in(s, kwds, s->key, NULL) >
            0)
            o->nested = s->nested = true;
        int rc = o->type->call(s, o, name, args, kwds, r);
        if (rc == 0 && o->nested && r->kind != MGR_PARK) {
            /* it may have let proxies go */
            mproc__mgr_pin_reply(s, mproc__mgr_client_of(s, s->caller), r);
            if (s->nkept)
                mproc__mgr_sweep(s);
        }
        if (rc != -ENOENT)
            return rc;
    }
    r->kind = MGR_RETURN;
    if (strcmp(name, "#GETVALUE") == 0) {
        r->value = o->type->value(o);
        mproc__mgr_pin_reply(s, mproc__mgr_client_of(s, s->caller), r);
        return r->value ? 0 : -ENOMEM;
    }
    if (strcmp(name, "__repr__") == 0 || strcmp(name, "__str__") == 0) {
        char *rep;
        int rc = o->type->repr(o, &rep);
        if (rc < 0)
            return rc;
        r->value = mproc_obj_str_c(rep);
        free(rep);
        return r->value ? 0 : -ENOMEM;
    }
    r->kind = MGR_TRACEBACK;
    r->value = mproc__mgr_traceback(
        "AttributeError: method '%s' of %s object is not in "
        "exposed",
        name, o->type->typeid);
    return r->value ? 0 : -ENOMEM;
}
