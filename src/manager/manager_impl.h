/*
 * manager/manager_impl.h - what the manager's files share: the server's
 * objects (objects*.c: the types, their methods and the exceptions they
 * raise as CPython's do; blocking.c: the blocking ones), the object table and
 * the event loop (server.c), and the public start/serve/shutdown calls
 * (manager.c).
 */
#ifndef MPROC__MANAGER_IMPL_H
#define MPROC__MANAGER_IMPL_H

#include "core/core.h"
#include "mproc/conn.h"
#include "mproc/manager.h"
#include "mproc/obj.h"
#include "mproc/process.h"

typedef struct mgr_server mgr_server;
typedef struct mgr_obj mgr_obj;

/* What a request is answered with: the first item of CPython's reply. */
typedef enum mgr_kind {
    MGR_RETURN,    /* ('#RETURN', value) */
    MGR_ERROR,     /* ('#ERROR', exception): raised as is by the client */
    MGR_TRACEBACK, /* ('#TRACEBACK', str): RemoteError in the client */
    MGR_PROXY,     /* ('#PROXY', (exposed, Token)) */
    MGR_PARK       /* no reply yet: the call waits (until deadline) */
} mgr_kind;

typedef struct mgr_reply {
    mgr_kind kind;
    mproc_obj *value; /* owned; for MGR_PROXY the new object's mgr_obj */
    mgr_obj *proxy;
    double deadline; /* MGR_PARK: mproc_monotonic() time, < 0 never */
} mgr_reply;

typedef struct mgr_type {
    const char *typeid;
    const char *const *exposed; /* NULL-terminated */
    /* Builds o's state from create's args and kwds: 0, or sets an error
     * reply and returns 1; -ENOMEM. */
    int (*init)(mgr_obj *o, const mproc_obj *args, const mproc_obj *kwds,
                mgr_reply *r);
    /* Runs method name: 0 with *r set; -ENOENT when o has no such method;
     * -ENOMEM. */
    int (*call)(mgr_server *s, mgr_obj *o, const char *name,
                const mproc_obj *args, const mproc_obj *kwds, mgr_reply *r);
    /* repr(o) and a copy of the referent (#GETVALUE); new references. */
    mproc_obj *(*value)(const mgr_obj *o);
    int (*repr)(const mgr_obj *o, char **out);
    /* Blocking types: the reply of a parked call whose time ran out (or
     * MGR_PARK again with a new deadline: a Condition's wait that timed out
     * still takes its lock back), and what a client that went away held
     * (locks, semaphore units, its place in a Condition or Barrier) given
     * back. */
    int (*expire)(mgr_obj *o, const char *name, mgr_reply *r);
    void (*drop_client)(mgr_obj *o, unsigned long client);
} mgr_type;

/* A client's place in an object: a Condition's or Barrier's waiter, the
 * units of a Semaphore a client holds. */
typedef struct mgr_slot {
    unsigned long client; /* its serial */
    long n;               /* Condition: the lock depth to restore; Barrier: the
                             index; Semaphore: units held */
    long gen;             /* Barrier: the generation it waits in */
    int state;            /* 0 waiting, 1 notified / released, 2 timed out /
                             broken */
    double deadline;      /* < 0 none */
} mgr_slot;

/* References a client process holds on an object (create, incref), given
 * back when that process dies. */
typedef struct mgr_hold {
    pid_t pid;
    long n;
} mgr_hold;

struct mgr_obj {
    const mgr_type *type;
    long refs;
    void *user;            /* a registered type's object (its create's) */
    mproc_obj *val;        /* dict, Namespace's dict, Value's value */
    mproc_obj **items;     /* list, Array, Iterator */
    size_t n, cap, pos;    /* items; pos: Iterator's next */
    char typecode;         /* Value, Array */
    unsigned long fuzz_id; /* its name while fuzzing, else 0 */
    /* blocking types */
    long count, bound;   /* Semaphore's value and bound; Lock: 1 free */
    unsigned long owner; /* the client holding a Lock or RLock, 0 none */
    long depth;          /* RLock's count */
    bool flag;           /* Event */
    long unfinished;     /* Queue's tasks not done */
    long maxsize;        /* Queue's bound, <= 0 none */
    mgr_slot *slots;     /* Condition's, Barrier's waiters; who holds a
                            Semaphore */
    size_t nslots, capslots;
    mgr_hold *holds; /* which processes hold refs (the rest: TCP
                        clients, the server) */
    size_t nholds, capholds;
    bool nested;        /* proxies of this server's objects may be
                           stored in its values */
    unsigned char mark; /* the server's sweep: 1 reachable, 2 looked into */
    long gen;           /* Barrier's generation */
    double timeout;     /* Barrier's default timeout, < 0 none */
    mgr_obj *next;      /* hash chain */
};

/* A method's answers: a value (stolen), or an exception value (stolen)
 * raised to the client. 0, or -ENOMEM for a NULL value. */
static inline int mgr_ret(mgr_reply *r, mproc_obj *v)
{
    r->kind = MGR_RETURN;
    r->value = v;
    return v ? 0 : -ENOMEM;
}

static inline int mgr_raise(mgr_reply *r, mproc_obj *e)
{
    r->kind = MGR_ERROR;
    r->value = e;
    return e ? 0 : -ENOMEM;
}

/* The arguments of a call: how many, and the i-th (borrowed). */
static inline size_t mgr_nargs(const mproc_obj *args)
{
    return mproc_obj_len(args);
}
static inline mproc_obj *mgr_arg(const mproc_obj *args, size_t i)
{
    return mproc_obj_item(args, i);
}

/* The header of the frame at p (avail bytes so far) as CPython's
 * Connection writes it: a 4-byte big-endian length, or -1 and then an
 * 8-byte one. Returns the header's size with the payload's length in
 * *len, 0 while more bytes are needed, -1 for a negative length. */
static inline int mgr_frame(const unsigned char *p, size_t avail, uint64_t *len)
{
    if (avail < 4)
        return 0;
    uint64_t n = (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 |
                 (uint64_t)p[2] << 8 | p[3];
    if (n == 0xffffffffu) {
        if (avail < 12)
            return 0;
        n = 0;
        for (int i = 4; i < 12; i++)
            n = n << 8 | p[i];
        *len = n;
        return 12;
    }
    if (n & 0x80000000u)
        return -1;
    *len = n;
    return 4;
}

/* objects.c */
const mgr_type *mproc__mgr_type(const char *typeid);
extern const mgr_type mproc__mgr_iterator;
/* objects_dict.c, objects_list.c */
extern const mgr_type mproc__mgr_dict, mproc__mgr_namespace;
extern const mgr_type mproc__mgr_list, mproc__mgr_value, mproc__mgr_array;
/* TypeError set in *r (returning 1) unless lo <= len(args) <= hi and
 * there are no keywords; else 0. */
int mproc__mgr_check_args(const char *what, const mproc_obj *args,
                          const mproc_obj *kwds, size_t lo, size_t hi,
                          mgr_reply *r);
/* An exception builtins.name(arg) (KeyError(key)); a new reference. */
mproc_obj *mproc__mgr_exc_of(const char *name, const mproc_obj *arg);
/* Appends the items of seq (list, tuple, set, a dict's keys, range) to
 * o's: 0, 1 (TypeError, OverflowError or MemoryError set) or -ENOMEM. */
int mproc__mgr_items_extend(mgr_obj *o, const mproc_obj *seq, mgr_reply *r);
/* o's items as a Python list (new reference, NULL: no memory). */
mproc_obj *mproc__mgr_items_list(const mgr_obj *o);
/* repr(v) into *out (malloc'd); consumes v (NULL: -ENOMEM). */
int mproc__mgr_repr_of(mproc_obj *v, char **out);
void mproc__mgr_obj_clear(mgr_obj *o);
/* An exception value builtins.name(msg) (a new reference). */
mproc_obj *mproc__mgr_exc(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The exposed names of a type as a tuple (new reference). */
mproc_obj *mproc__mgr_exposed(const mgr_type *t);
/* Appends item (stolen) to o's items: 0 or -ENOMEM. */
int mproc__mgr_items_push(mgr_obj *o, mproc_obj *item);

/* client.c: what a manager handle and its proxies share (refcounted) */
typedef struct mgr_client mgr_client;
int mproc__mgr_client_new(mgr_client **out, const char *address,
                          const mproc_conn_opts *opts);
void mproc__mgr_client_unref(mgr_client *c);
int mproc__mgr_create(mgr_client *cl, mproc_proxy **out, const char *typeid,
                      const mproc_obj *args, const mproc_obj *kwds, char *err,
                      size_t errcap);
/* A proxy of cl's to the object ident (stolen; NULL: -ENOMEM) holding a
 * reference of its own (an incref): 0, -ESTALE (the server does not know
 * the object), MPROC_EREMOTE, a connection's codes, -ENOMEM. */
int mproc__mgr_proxy_adopt(mgr_client *cl, const char *typeid, mproc_obj *ident,
                           mproc_proxy **out);
/* The address p's manager was reached at (owned by p). */
const char *mproc__mgr_proxy_address(const mproc_proxy *p);

/* client_share.c */
/* Whether a #TRACEBACK text says the server has no object ident: its last
 * line is "KeyError: '<ident>'" (mproc's and CPython's servers). */
bool mproc__mgr_unknown_ident(const mproc_obj *tb, const mproc_obj *ident);

/* nested.c */
/* The object of s a RebuildProxy value v names (its Token's ident and
 * typeid), or NULL (v is no proxy, or one of another manager's). */
mgr_obj *mproc__mgr_proxy_target(mgr_server *s, const mproc_obj *v);
/* Finds the proxies of s's objects inside v: calls fn (when not NULL) on
 * each object named and, when key is not NULL, puts 'authkey': key into
 * the kwds of those proxies that carry none (v is changed in place: a
 * request's value, owned by the server). Returns how many were found. */
size_t mproc__mgr_proxies_in(mgr_server *s, const mproc_obj *v,
                             const mproc_obj *key,
                             void (*fn)(mgr_server *s, mgr_obj *o));
/* fn on each object named by a proxy stored in o's values. */
void mproc__mgr_obj_proxies(mgr_server *s, const mgr_obj *o,
                            void (*fn)(mgr_server *s, mgr_obj *o));

/* registered.c: the types of mproc_manager_opts.types */
typedef struct mgr_regs mgr_regs;
/* 0 and the table (NULL for n == 0), -EINVAL (a NULL type or typeid),
 * -ENOMEM. */
int mproc__mgr_regs_new(mgr_regs **out, const mproc_manager_type *const *types,
                        size_t n);
const mgr_type *mproc__mgr_regs_find(const mgr_regs *g, const char *typeid);
/* Frees o->user (set only for registered types) with its type's free. */
void mproc__mgr_regs_destroy(mgr_obj *o);
void mproc__mgr_regs_free(mgr_regs *g);

/* blocking.c */
const mgr_type *mproc__mgr_blocking_type(const char *typeid);

/* client_share.c */
/* An mproc address as a Token carries it (CPython's forms): "/path" a
 * str, "@name" bytes starting with NUL, "host:port" and "[v6]:port" a
 * (host, port) tuple. A new value, NULL when out of memory. Used by the
 * server for the Tokens it hands out and by mproc_proxy_to_obj. */
mproc_obj *mproc__mgr_token_address(const char *a);

/* server.c */
/* The client whose request is being served (a serial number > 0). */
unsigned long mproc__mgr_caller(const mgr_server *s);
/* The process of client serial (a local client), 0 when unknown (TCP, or
 * this process). */
pid_t mproc__mgr_client_pid(const mgr_server *s, unsigned long serial);
/* The object named by a lowercase hex ident (a str), or NULL. */
mgr_obj *mproc__mgr_lookup(mgr_server *s, const mproc_obj *ident);
/* A new object of type t with refs 1 in s's table (NULL: no memory). */
mgr_obj *mproc__mgr_new_obj(mgr_server *s, const mgr_type *t);
/* An object of type typeid (a registered one first) made with args (a
 * tuple) and kwds (a dict): 0 and *out (refs 1); 1 with r set to
 * the failure (a #TRACEBACK naming the exception or the unknown type id,
 * as CPython's create); -ENOMEM. */
int mproc__mgr_make(mgr_server *s, const char *typeid, const mproc_obj *args,
                    const mproc_obj *kwds, mgr_reply *r, mgr_obj **out);

typedef struct mgr_config {
    const char *address;
    mproc_manager_opts opts;
    int ctl_fd; /* readable (or EOF) = stop; -1 for none */
} mgr_config;

/* Binds and runs the server until stopped; *listening is called with the
 * bound address (or a negative code) once, before serving. */
int mproc__mgr_run(const mgr_config *cfg,
                   void (*listening)(void *ctx, int rc, const char *address),
                   void *ctx, volatile int *stop, int wake_fd);

/* The fuzz target's entry (fuzz/fuzz_manager.c): serves the requests in
 * data on an in-memory server. */
int mproc__mgr_fuzz(const uint8_t *data, size_t n);

#endif
