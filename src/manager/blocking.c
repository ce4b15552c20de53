/*
 * manager/blocking.c - the manager's blocking types, as SyncManager's:
 * Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier,
 * Queue, JoinableQueue.
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

/* ---- slots: clients' places in an object ------------------------------- */

static mgr_slot *slot_of(mgr_obj *o, unsigned long client)
{
    for (size_t i = 0; i < o->nslots; i++)
        if (o->slots[i].client == client)
            return &o->slots[i];
    return NULL;
}

/* Appends sl (the order is arrival order): the new slot, NULL without
 * memory. */
static mgr_slot *slot_add(mgr_obj *o, mgr_slot sl)
{
    if (o->nslots == o->capslots) {
        size_t cap = o->capslots ? o->capslots * 2 : 4;
        mgr_slot *p = realloc(o->slots, cap * sizeof *p);
        if (!p)
            return NULL;
        o->slots = p;
        o->capslots = cap;
    }
    o->slots[o->nslots] = sl;
    return &o->slots[o->nslots++];
}

static void slot_del(mgr_obj *o, mgr_slot *sl)
{
    size_t i = (size_t)(sl - o->slots);
    memmove(sl, sl + 1, (o->nslots - i - 1) * sizeof *sl);
    o->nslots--;
}

/* A timeout argument: 0 with *t (< 0: None, wait forever), or 1 with a
 * TypeError set. */
static int timeout_of(const mproc_obj *v, double *t, mgr_reply *r)
{
    *t = -1;
    if (!v || mproc_obj_type_of(v) == MPROC_OBJ_NONE)
        return 0;
    if (mproc_obj_float_value(v, t) < 0 || isnan(*t)) {
        mgr_raise(r, mproc__mgr_exc("TypeError", "timeout must be a number"));
        return 1;
    }
    if (*t < 0)
        *t = 0;
    return 0;
}

/* ---- Lock, RLock, Semaphore, BoundedSemaphore ---------------------------- */

static const char *const acquirer_exposed[] = {"acquire", "release", NULL};

enum { LOCK = 1, RLOCK, SEM, BSEM };

static int kind_of(const mgr_obj *o)
{
    const char *t = o->type->typeid;
    return strcmp(t, "Lock") == 0                                   ? LOCK
           : strcmp(t, "RLock") == 0 || strcmp(t, "Condition") == 0 ? RLOCK
           : strcmp(t, "Semaphore") == 0                            ? SEM
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

/* A Semaphore's unit released by client me is no longer held: one of
 * me's, else one of another connection of the same process (the C client
 * takes any of its channels), else the oldest holder's (a unit handed on). */
static void sem_unhold(mgr_server *s, mgr_obj *o, unsigned long me)
{
    mgr_slot *sl = slot_of(o, me);
    pid_t pid = mproc__mgr_client_pid(s, me);
    for (size_t i = 0; !sl && pid && i < o->nslots; i++)
        if (mproc__mgr_client_pid(s, o->slots[i].client) == pid)
            sl = &o->slots[i];
    if (!sl && o->nslots)
        sl = &o->slots[0];
    if (sl && --sl->n <= 0)
        slot_del(o, sl);
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
            if (k == SEM || k == BSEM) {
                mgr_slot *sl = slot_of(o, me);
                if (!sl && !(sl = slot_add(o, (mgr_slot){me, 0, 0, 0, -1})))
                    return -ENOMEM;
                sl->n++; /* given back if this client goes away */
            }
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
        sem_unhold(s, o, me);
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

/* A Lock or RLock its holder left behind is free again, and the units of
 * a Semaphore it acquired (and did not release) are given back (CPython
 * keeps them held forever). */
static void acquirer_drop(mgr_obj *o, unsigned long client)
{
    int k = kind_of(o);
    if ((k == LOCK || k == RLOCK) && o->owner == client && o->count == 0) {
        o->owner = 0;
        o->depth = 0;
        o->count = 1;
    }
    mgr_slot *sl = k == SEM || k == BSEM ? slot_of(o, client) : NULL;
    if (sl) {
        o->count += sl->n;
        if (k == BSEM && o->count > o->bound)
            o->count = o->bound;
        slot_del(o, sl);
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

/* ---- Condition ------------------------------------------------------------
 */

/* Its lock is its own RLock (acquirer_call on the same fields); a waiter
 * gives the lock up whole, keeps its depth in its slot, and takes the lock
 * back (oldest first) once notified or out of time. */

static const char *const cond_exposed[] = {"acquire", "release",    "wait",
                                           "notify",  "notify_all", NULL};

static int cond_init(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                     mgr_reply *r)
{
    const mproc_obj *lock = opt(args, kwds, 0, "lock");
    if (lock && mproc_obj_type_of(lock) != MPROC_OBJ_NONE) {
        mgr_raise(r, mproc__mgr_exc("TypeError",
                                    "Condition(lock): only the Condition's "
                                    "own lock is supported"));
        return 1;
    }
    o->count = 1;
    return 0;
}

static bool cond_owned(const mgr_obj *o, unsigned long me)
{
    return o->count == 0 && o->owner == me;
}

static int cond_wait(mgr_obj *o, unsigned long me, const mproc_obj *args,
                     const mproc_obj *kwds, mgr_reply *r)
{
    mgr_slot *sl = slot_of(o, me);
    if (sl) { /* called again: still waiting, or the lock to take back */
        if (sl->state == 0 && sl->deadline >= 0 &&
            sl->deadline <= mproc_monotonic())
            sl->state = 2;
        if (sl->state == 0 || o->count == 0)
            return park(r, sl->deadline);
        bool notified = sl->state == 1;
        o->count = 0;
        o->owner = me;
        o->depth = sl->n;
        slot_del(o, sl);
        return mgr_ret(r, mproc_obj_bool(notified));
    }
    if (!cond_owned(o, me))
        return mgr_raise(r, mproc__mgr_exc("RuntimeError",
                                           "cannot wait on un-acquired lock"));
    double t;
    if (timeout_of(opt(args, kwds, 0, "timeout"), &t, r))
        return 0;
    if (t == 0) /* nobody can notify meanwhile: the lock stays */
        return mgr_ret(r, mproc_obj_bool(false));
    double dl = t < 0 ? -1 : mproc_monotonic() + t;
    if (!slot_add(o, (mgr_slot){me, o->depth, 0, 0, dl}))
        return -ENOMEM;
    o->count = 1; /* the lock is free while it waits */
    o->owner = 0;
    o->depth = 0;
    return park(r, dl);
}

static int cond_call(mgr_server *s, mgr_obj *o, const char *m,
                     const mproc_obj *args, const mproc_obj *kwds, mgr_reply *r)
{
    unsigned long me = mproc__mgr_caller(s);
    if (strcmp(m, "wait") == 0)
        return cond_wait(o, me, args, kwds, r);
    bool all = strcmp(m, "notify_all") == 0;
    if (!all && strcmp(m, "notify") != 0)
        return acquirer_call(s, o, m, args, kwds, r);
    if (!cond_owned(o, me))
        return mgr_raise(r,
                         mproc__mgr_exc("RuntimeError",
                                        "cannot notify on un-acquired lock"));
    int64_t n = 1;
    const mproc_obj *nv = all ? NULL : opt(args, kwds, 0, "n");
    if (nv && mproc_obj_int_value(nv, &n) < 0)
        return mgr_raise(r, mproc__mgr_exc("TypeError", "n must be an int"));
    for (size_t i = 0; i < o->nslots && (all || n > 0); i++)
        if (o->slots[i].state == 0) {
            o->slots[i].state = 1;
            n--;
        }
    return mgr_ret(r, mproc_obj_none());
}

/* A wait whose time ran out still takes the lock back: it waits on. */
static int cond_expire(mgr_obj *o, const char *name, mgr_reply *r)
{
    if (strcmp(name, "wait") == 0)
        return park(r, -1);
    return acquirer_expire(o, name, r);
}

/* A client that went away: its lock given back, its place as a waiter
 * dropped. */
static void cond_drop(mgr_obj *o, unsigned long client)
{
    mgr_slot *sl = slot_of(o, client);
    if (sl)
        slot_del(o, sl);
    acquirer_drop(o, client);
}

static int cond_repr(const mgr_obj *o, char **out)
{
    char buf[96];
    snprintf(buf, sizeof buf, "<Condition(<%s RLock object>, %zu)>",
             o->count ? "unlocked" : "locked", o->nslots);
    *out = strdup(buf);
    return *out ? 0 : -ENOMEM;
}

/* ---- Barrier --------------------------------------------------------------
 */

/* parties in bound, arrivals of this generation in count, broken in flag;
 * each waiter's slot has its index and generation. */

static const char *const barrier_exposed[] = {"__getattribute__", "wait",
                                              "abort", "reset", NULL};

static mproc_obj *broken_exc(void)
{
    return mproc_obj_reduce("threading", "BrokenBarrierError",
                            mproc_obj_tuple_new(0), NULL, false);
}

static int barrier_init(mgr_obj *o, const mproc_obj *args,
                        const mproc_obj *kwds, mgr_reply *r)
{
    const mproc_obj *p = opt(args, kwds, 0, "parties");
    const mproc_obj *action = opt(args, kwds, 1, "action");
    int64_t n;
    if (!p || mproc_obj_int_value(p, &n) < 0) {
        mgr_raise(r, mproc__mgr_exc("TypeError", "parties must be an int"));
        return 1;
    }
    if (n < 1 || n > (int64_t)1 << 30) {
        mgr_raise(r, mproc__mgr_exc("ValueError", "parties must be >= 1"));
        return 1;
    }
    if (action && mproc_obj_type_of(action) != MPROC_OBJ_NONE) {
        mgr_raise(r, mproc__mgr_exc("TypeError",
                                    "a Barrier's action cannot run in the "
                                    "manager"));
        return 1;
    }
    o->bound = (long)n;
    return timeout_of(opt(args, kwds, 2, "timeout"), &o->timeout, r);
}

/* Every waiter of the generation ends with state (1 passes, 2 broken). */
static void barrier_end(mgr_obj *o, int state)
{
    for (size_t i = 0; i < o->nslots; i++)
        if (o->slots[i].state == 0)
            o->slots[i].state = state;
    o->count = 0;
    o->gen++;
}

static int barrier_wait(mgr_obj *o, unsigned long me, const mproc_obj *args,
                        const mproc_obj *kwds, mgr_reply *r)
{
    mgr_slot *sl = slot_of(o, me);
    if (sl) {
        if (sl->state == 0 && sl->deadline >= 0 &&
            sl->deadline <= mproc_monotonic()) {
            o->flag = true; /* a wait timed out: the barrier breaks */
            barrier_end(o, 2);
        }
        if (sl->state == 0)
            return park(r, sl->deadline);
        long index = sl->n;
        int state = sl->state;
        slot_del(o, sl);
        return state == 1 ? mgr_ret(r, mproc_obj_int(index))
                          : mgr_raise(r, broken_exc());
    }
    if (o->flag)
        return mgr_raise(r, broken_exc());
    double t;
    if (timeout_of(opt(args, kwds, 0, "timeout"), &t, r))
        return 0;
    if (t < 0)
        t = o->timeout;
    long index = o->count++;
    if (o->count == o->bound) { /* the last one: everyone passes */
        barrier_end(o, 1);
        return mgr_ret(r, mproc_obj_int(index));
    }
    if (t == 0) {
        o->flag = true;
        barrier_end(o, 2);
        return mgr_raise(r, broken_exc());
    }
    double dl = t < 0 ? -1 : mproc_monotonic() + t;
    if (!slot_add(o, (mgr_slot){me, index, o->gen, 0, dl})) {
        o->count--;
        return -ENOMEM;
    }
    return park(r, dl);
}

static int barrier_call(mgr_server *s, mgr_obj *o, const char *m,
                        const mproc_obj *args, const mproc_obj *kwds,
                        mgr_reply *r)
{
    if (strcmp(m, "wait") == 0)
        return barrier_wait(o, mproc__mgr_caller(s), args, kwds, r);
    if (strcmp(m, "abort") == 0 || strcmp(m, "reset") == 0) {
        barrier_end(o, 2); /* waiters get BrokenBarrierError */
        o->flag = m[0] == 'a';
        return mgr_ret(r, mproc_obj_none());
    }
    if (strcmp(m, "__getattribute__") != 0)
        return -ENOENT;
    if (mproc__mgr_check_args(m, args, kwds, 1, 1, r))
        return 0;
    const char *name = mproc_obj_str_value(mgr_arg(args, 0), NULL);
    if (name && strcmp(name, "parties") == 0)
        return mgr_ret(r, mproc_obj_int(o->bound));
    if (name && strcmp(name, "n_waiting") == 0)
        return mgr_ret(r, mproc_obj_int(o->count));
    if (name && strcmp(name, "broken") == 0)
        return mgr_ret(r, mproc_obj_bool(o->flag));
    return mgr_raise(r, mproc__mgr_exc("AttributeError",
                                       "'Barrier' object has no attribute "
                                       "'%s'",
                                       name ? name : "?"));
}

static int barrier_expire(mgr_obj *o, const char *name, mgr_reply *r)
{
    (void)o, (void)name; /* barrier_wait ends a wait out of time itself */
    return park(r, -1);
}

/* A waiter that went away leaves as if it had not come: the others keep
 * waiting, their indexes closed up. */
static void barrier_drop(mgr_obj *o, unsigned long client)
{
    mgr_slot *sl = slot_of(o, client);
    if (!sl)
        return;
    if (sl->state == 0 && sl->gen == o->gen) {
        for (size_t i = 0; i < o->nslots; i++)
            if (o->slots[i].gen == o->gen && o->slots[i].n > sl->n)
                o->slots[i].n--;
        o->count--;
    }
    slot_del(o, sl);
}

static mproc_obj *barrier_value(const mgr_obj *o)
{
    return mproc_obj_int(o->count);
}

static int barrier_repr(const mgr_obj *o, char **out)
{
    char buf[96];
    snprintf(buf, sizeof buf, "<Barrier object: parties=%ld, waiting=%ld%s>",
             o->bound, o->count, o->flag ? ", broken" : "");
    *out = strdup(buf);
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
    {"Condition", cond_exposed, cond_init, cond_call, acquirer_value, cond_repr,
     cond_expire, cond_drop},
    {"Barrier", barrier_exposed, barrier_init, barrier_call, barrier_value,
     barrier_repr, barrier_expire, barrier_drop},
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
