/*
 * manager/blocking.c - the manager's blocking types, as SyncManager's:
 * Lock, RLock, Semaphore, BoundedSemaphore, Event, Queue, JoinableQueue.
 * A call that cannot go on now answers MGR_PARK with its deadline: the
 * server keeps it (no thread waits) and calls it again whenever anything
 * changed, until it goes through or its time runs out (expire gives the
 * reply then: False, queue.Empty, queue.Full). Locks remember which client
 * holds them, so that a client that goes away gives them back.
 */
#include "manager/manager_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Argument i, or the keyword name, or NULL (borrowed). */
static const mproc_obj *opt(const mproc_obj *args, const mproc_obj *kwds,
                            size_t i, const char *name)
{
    if (i < mproc_obj_len(args))
        return mproc_obj_item(args, i);
    return mproc_obj_dict_get_str(kwds, name);
}

/* The deadline of a call: block (a truth value or NULL for True) and
 * timeout (None/NULL or negative: forever). 0: parked calls wait until
 * *deadline (< 0 forever); 1: do not wait at all; 2: bad timeout (a
 * ValueError set). */
static int deadline_of(const mproc_obj *block, const mproc_obj *timeout,
                       bool negative_ok, double *deadline, mgr_reply *r)
{
    if (block && !mproc_obj_truth(block))
        return 1;
    *deadline = -1;
    if (!timeout || mproc_obj_type_of(timeout) == MPROC_OBJ_NONE)
        return 0;
    double t;
    if (mproc_obj_float_value(timeout, &t) < 0 || isnan(t)) {
        mgr_raise(r, mproc__mgr_exc("TypeError", "timeout must be a number"));
        return 2;
    }
    if (t < 0) {
        if (negative_ok)
            return 0;
        mgr_raise(r, mproc__mgr_exc("ValueError",
                                    "'timeout' must be a non-negative number"));
        return 2;
    }
    *deadline = mproc_monotonic() + t;
    return 0;
}

static int park(mgr_reply *r, double deadline)
{
    r->kind = MGR_PARK;
    r->deadline = deadline;
    return 0;
}

/* ---- Lock, RLock, Semaphore, BoundedSemaphore ---------------------------- */

static const char *const acquirer_exposed[] = {"acquire", "release", NULL};

enum { LOCK = 1, RLOCK, SEM, BSEM };

static int kind_of(const mgr_obj *o)
{
    const char *t = o->type->typeid;
    return strcmp(t, "Lock") == 0        ? LOCK
           : strcmp(t, "RLock") == 0     ? RLOCK
           : strcmp(t, "Semaphore") == 0 ? SEM
                                         : BSEM;
}

static int acquirer_init(mgr_obj *o, const mproc_obj *args,
                         const mproc_obj *kwds, mgr_reply *r)
{
    int k = kind_of(o);
    o->count = 1;
    if (k == SEM || k == BSEM) {
        const mproc_obj *v = opt(args, kwds, 0, "value");
        int64_t n = 1;
        if (v && mproc_obj_int_value(v, &n) < 0) {
            mgr_raise(r, mproc__mgr_exc("TypeError", "value must be an int"));
            return 1;
        }
        if (n < 0) {
            mgr_raise(r,
                      mproc__mgr_exc("ValueError",
                                     "semaphore initial value must be >= 0"));
            return 1;
        }
        o->count = o->bound = (long)n;
    }
    return 0;
}

static int acquirer_call(mgr_server *s, mgr_obj *o, const char *m,
                         const mproc_obj *args, const mproc_obj *kwds,
                         mgr_reply *r)
{
    unsigned long me = mproc__mgr_caller(s);
    int k = kind_of(o);
    if (strcmp(m, "acquire") == 0 || strcmp(m, "__enter__") == 0) {
        if (k == RLOCK && o->owner == me && o->depth > 0) {
            o->depth++;
            return mgr_ret(r, mproc_obj_bool(true));
        }
        if (o->count > 0) {
            o->count--;
            if (k == LOCK || k == RLOCK) {
                o->owner = me;
                o->depth = 1;
            }
            return mgr_ret(r, mproc_obj_bool(true));
        }
        double dl;
        int w = deadline_of(opt(args, kwds, 0, "blocking"),
                            opt(args, kwds, 1, "timeout"), true, &dl, r);
        if (w == 1)
            return mgr_ret(r, mproc_obj_bool(false));
        return w == 2 ? 0 : park(r, dl);
    }
    if (strcmp(m, "release") == 0 || strcmp(m, "__exit__") == 0) {
        if (k == RLOCK) {
            if (o->owner != me || o->depth == 0)
                return mgr_raise(r, mproc__mgr_exc("RuntimeError",
                                                   "cannot release un-acquired "
                                                   "lock"));
            if (--o->depth == 0) {
                o->owner = 0;
                o->count = 1;
            }
            return mgr_ret(r, mproc_obj_none());
        }
        if (k == LOCK) {
            if (o->count > 0)
                return mgr_raise(
                    r, mproc__mgr_exc("RuntimeError", "release unlocked lock"));
            o->owner = 0;
            o->count = 1;
            return mgr_ret(r, mproc_obj_none());
        }
        if (k == BSEM && o->count >= o->bound)
            return mgr_raise(r, mproc__mgr_exc("ValueError",
                                               "Semaphore released too many "
                                               "times"));
        o->count++;
        return mgr_ret(r, mproc_obj_none());
    }
    return -ENOENT;
}

static int acquirer_expire(mgr_obj *o, const char *name, mgr_reply *r)
{
    (void)o, (void)name;
    return mgr_ret(r, mproc_obj_bool(false));
}

/* A Lock or RLock its holder left behind is free again (CPython keeps
 * it held forever). */
static void acquirer_drop(mgr_obj *o, unsigned long client)
{
    int k = kind_of(o);
    if ((k == LOCK || k == RLOCK) && o->owner == client && o->count == 0) {
        o->owner = 0;
        o->depth = 0;
        o->count = 1;
    }
}

static mproc_obj *acquirer_value(const mgr_obj *o)
{
    return mproc_obj_int(o->count);
}

static int acquirer_repr(const mgr_obj *o, char **out)
{
    char buf[96];
    int k = kind_of(o);
    if (k == LOCK || k == RLOCK)
        snprintf(buf, sizeof buf, "<%s %s object>",
                 o->count ? "unlocked" : "locked", o->type->typeid);
    else
        snprintf(buf, sizeof buf, "<%s object, value=%ld>", o->type->typeid,
                 o->count);
    *out = strdup(buf);
    return *out ? 0 : -ENOMEM;
}

/* ---- Event --------------------------------------------------------------- */

static const char *const event_exposed[] = {"is_set", "set", "clear", "wait",
                                            NULL};

static int event_init(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r)
{
    (void)o, (void)args, (void)kwds, (void)r;
    return 0;
}

static int event_call(mgr_server *s, mgr_obj *o, const char *m,
                      const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r)
{
    (void)s;
    if (strcmp(m, "is_set") == 0)
        return mgr_ret(r, mproc_obj_bool(o->flag));
    if (strcmp(m, "set") == 0 || strcmp(m, "clear") == 0) {
        o->flag = m[0] == 's';
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "wait") == 0) {
        if (o->flag)
            return mgr_ret(r, mproc_obj_bool(true));
        double dl;
        int w = deadline_of(NULL, opt(args, kwds, 0, "timeout"), true, &dl, r);
        if (w == 2)
            return 0;
        if (dl >= 0 && dl <= mproc_monotonic())
            return mgr_ret(r, mproc_obj_bool(false));
        return park(r, dl);
    }
    return -ENOENT;
}

static int event_expire(mgr_obj *o, const char *name, mgr_reply *r)
{
    (void)name;
    return mgr_ret(r, mproc_obj_bool(o->flag));
}

static mproc_obj *event_value(const mgr_obj *o)
{
    return mproc_obj_bool(o->flag);
}

static int event_repr(const mgr_obj *o, char **out)
{
    *out = strdup(o->flag ? "<Event object: set>" : "<Event object: unset>");
    return *out ? 0 : -ENOMEM;
}

/* ---- Queue, JoinableQueue ------------------------------------------------ */

static const char *const queue_exposed[] = {
    "empty", "full",       "get",   "get_nowait", "join",
    "put",   "put_nowait", "qsize", "task_done",  NULL};

static mproc_obj *queue_exc(const char *name)
{
    return mproc_obj_reduce("queue", name, mproc_obj_tuple_new(0), NULL, false);
}

static int queue_init(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r)
{
    const mproc_obj *v = opt(args, kwds, 0, "maxsize");
    int64_t n = 0;
    if (v && mproc_obj_int_value(v, &n) < 0) {
        mgr_raise(r, mproc__mgr_exc("TypeError", "maxsize must be an int"));
        return 1;
    }
    o->maxsize = (long)n;
    return 0;
}

static size_t queue_len(const mgr_obj *o)
{
    return o->n - o->pos;
}

static bool queue_full(const mgr_obj *o)
{
    return o->maxsize > 0 && queue_len(o) >= (size_t)o->maxsize;
}

static int queue_call(mgr_server *s, mgr_obj *o, const char *m,
                      const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r)
{
    (void)s;
    bool nowait = strstr(m, "_nowait") != NULL;
    if (strcmp(m, "qsize") == 0)
        return mgr_ret(r, mproc_obj_int((int64_t)queue_len(o)));
    if (strcmp(m, "empty") == 0)
        return mgr_ret(r, mproc_obj_bool(queue_len(o) == 0));
    if (strcmp(m, "full") == 0)
        return mgr_ret(r, mproc_obj_bool(queue_full(o)));
    if (strncmp(m, "put", 3) == 0) {
        const mproc_obj *item = opt(args, kwds, 0, "item");
        if (!item)
            return mgr_raise(r, mproc__mgr_exc("TypeError",
                                               "put() missing 1 required "
                                               "positional argument: 'item'"));
        if (!queue_full(o)) {
            if (mproc__mgr_items_push(o, mproc_obj_ref((mproc_obj *)item)) < 0)
                return -ENOMEM;
            o->unfinished++;
            return mgr_ret(r, mproc_obj_none());
        }
        double dl;
        int w = nowait
                    ? 1
                    : deadline_of(opt(args, kwds, 1, "block"),
                                  opt(args, kwds, 2, "timeout"), false, &dl, r);
        if (w == 1)
            return mgr_raise(r, queue_exc("Full"));
        return w == 2 ? 0 : park(r, dl);
    }
    if (strncmp(m, "get", 3) == 0) {
        if (queue_len(o) > 0) {
            mproc_obj *v = o->items[o->pos];
            o->items[o->pos++] = NULL;
            if (o->pos == o->n) { /* empty: start over */
                o->pos = o->n = 0;
            } else if (o->pos > 64 && o->pos * 2 > o->n) {
                memmove(o->items, o->items + o->pos,
                        (o->n - o->pos) * sizeof(void *));
                o->n -= o->pos;
                o->pos = 0;
            }
            return mgr_ret(r, v);
        }
        double dl;
        int w = nowait
                    ? 1
                    : deadline_of(opt(args, kwds, 0, "block"),
                                  opt(args, kwds, 1, "timeout"), false, &dl, r);
        if (w == 1)
            return mgr_raise(r, queue_exc("Empty"));
        return w == 2 ? 0 : park(r, dl);
    }
    if (strcmp(m, "task_done") == 0) {
        if (o->unfinished <= 0)
            return mgr_raise(r, mproc__mgr_exc("ValueError",
                                               "task_done() called too many "
                                               "times"));
        o->unfinished--;
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "join") == 0)
        return o->unfinished == 0 ? mgr_ret(r, mproc_obj_none()) : park(r, -1);
    return -ENOENT;
}

static int queue_expire(mgr_obj *o, const char *name, mgr_reply *r)
{
    (void)o;
    return mgr_raise(
        r, queue_exc(strncmp(name, "put", 3) == 0 ? "Full" : "Empty"));
}

static mproc_obj *queue_value(const mgr_obj *o)
{
    mproc_obj *l = mproc_obj_list_new();
    for (size_t i = o->pos; l && i < o->n; i++)
        if (mproc_obj_list_append(l, mproc_obj_ref(o->items[i])) < 0) {
            mproc_obj_unref(l);
            return NULL;
        }
    return l;
}

static int queue_repr(const mgr_obj *o, char **out)
{
    char buf[64];
    snprintf(buf, sizeof buf, "<queue.Queue object, %zu items>", queue_len(o));
    *out = strdup(buf);
    return *out ? 0 : -ENOMEM;
}

/* ---- the table ------------------------------------------------------------
 */

static const mgr_type types[] = {
    {"Lock", acquirer_exposed, acquirer_init, acquirer_call, acquirer_value,
     acquirer_repr, acquirer_expire, acquirer_drop},
    {"RLock", acquirer_exposed, acquirer_init, acquirer_call, acquirer_value,
     acquirer_repr, acquirer_expire, acquirer_drop},
    {"Semaphore", acquirer_exposed, acquirer_init, acquirer_call,
     acquirer_value, acquirer_repr, acquirer_expire, acquirer_drop},
    {"BoundedSemaphore", acquirer_exposed, acquirer_init, acquirer_call,
     acquirer_value, acquirer_repr, acquirer_expire, acquirer_drop},
    {"Event", event_exposed, event_init, event_call, event_value, event_repr,
     event_expire, NULL},
    {"Queue", queue_exposed, queue_init, queue_call, queue_value, queue_repr,
     queue_expire, NULL},
    {"JoinableQueue", queue_exposed, queue_init, queue_call, queue_value,
     queue_repr, queue_expire, NULL},
};

const mgr_type *mproc__mgr_blocking_type(const char *typeid)
{
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(types[i].typeid, typeid) == 0)
            return &types[i];
    return NULL;
}
