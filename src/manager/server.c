/*
 * manager/server.c - the manager's server: its table of objects and one
 * event loop (epoll) over the listener and every client connection,
 * speaking CPython's manager protocol. Handshakes run in short-lived
 * threads (mproc_listener_accept_pending + mproc_listener_authenticate),
 * at most MGR_HANDSHAKES at once, each handing its authenticated
 * connection back to the loop; a client that stalls in its handshake holds
 * only its own thread, and when every thread is taken the oldest stalled
 * handshake is cut for a newcomer. After the handshake the loop owns the
 * socket, non-blocking: it reads whatever a client sent (several requests
 * at once), answers each into the client's output buffer and writes that
 * buffer with one send when the socket takes it, so a client that stops
 * reading holds nothing but its buffer, and is dropped when its unread
 * replies pass max_output. A client that stalls mid-request holds nothing
 * (a partial message waits in its buffer). A connection answers one
 * top-level request and is closed, unless that request is
 * accept_connection: it then carries method calls until EOF.
 */
#include "manager/manager_impl.h"
#include "obj/obj_impl.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Handshake threads at once; a handshake older than MGR_HS_EVICT seconds
 * is cut when all are taken and a new connection waits. */
#define MGR_HANDSHAKES 64
#define MGR_HS_EVICT   1.0
/* A client's input buffer to start with; one kept between requests. */
#define MGR_IN_START 16384
#define MGR_KEEP     (256u << 10)

typedef struct client {
    mproc_conn *c; /* owns the socket (non-blocking) */
    int fd, proto; /* the pickle protocol of its replies */
    bool channel;  /* after accept_connection */
    bool parked;   /* its call waits (a mgr_wait names it) */
    bool closing;  /* answered a top-level request: closed once flushed */
    bool dead;     /* dropped; freed after this round of events */
    bool queued;   /* on the round's list: output to write or input to
                      serve again */
    bool resume;   /* its call went through: its input is to be served */
    bool blocking; /* called a type that keeps per-client state (locks) */
    unsigned ev;   /* the epoll events registered */
    unsigned long serial; /* who it is, for locks and waits */
    size_t idx;           /* its slot in clients */
    pid_t pid;            /* its process (a local client), else 0 */
    mproc_obj *pin;       /* its last reply, while it carries proxies to objects
                             here: they stay until the client's next request */
    unsigned char *in;    /* received bytes: [in_pos, in_len) unserved */
    size_t in_len, in_pos, in_cap;
    mproc__buf out; /* replies: [out_pos, out.len) unwritten */
    size_t out_pos;
    struct client *next; /* on the round's list, or the dead list */
} client;

/* A client process: watched (a pidfd) while it has connections or holds
 * references, so that the references go when it dies. Its pidfd is looked
 * at when one of its connections closes, and every second (not polled
 * with the connections: that would double the loop's poll set). */
typedef struct mgr_peer {
    pid_t pid;
    int fd;     /* its pidfd: readable once it has exited */
    long conns; /* its connections */
    long holds; /* the objects it holds references on */
    bool dead;  /* found to have exited */
    bool soon;  /* its last connection closed while its pidfd did not tell
                   yet (it may be exiting): looked at again shortly */
} mgr_peer;

/* A call that waits: its client, object, method, arguments and time. */
typedef struct mgr_wait {
    unsigned long client;
    mgr_obj *o;
    char *name;
    mproc_obj *args, *kwds;
    double deadline; /* < 0 never */
    struct mgr_wait *next;
} mgr_wait;

struct mgr_server {
    mproc_listener *l;
    size_t max_request;
    mproc_obj *address; /* the Token's address: str, bytes or (host, port) */
    mgr_obj **buckets;  /* by the object's address */
    size_t nbuckets, nobjs;
    size_t max_output;
    client **clients;
    size_t nclients, capclients;
    client *round; /* to write or serve again before the next wait */
    client *dead;  /* dropped this round: freed at its end */
    int ep;        /* the epoll fd, -1 while fuzzing */
    bool stopping;
    bool listen_off;     /* all handshake threads busy: not accepting */
    double listen_next;  /* when to look at the listener again */
    client *cur;         /* the client being served */
    mproc_obj *kinds[4]; /* '#RETURN', '#ERROR', '#TRACEBACK', '#PROXY' */

    /* handshakes in flight, and their results for the loop */
    pthread_mutex_t mu;
    pthread_cond_t idle;
    int handshakes;
    struct hs_job *done; /* their threads ending: to join */
    struct {
        const void *job;
        int fd; /* a dup of its socket's, to cut it by (-1: none) */
        double since;
    } hs[MGR_HANDSHAKES]; /* in flight, oldest first */
    mproc_conn **ready;
    size_t nready, capready;
    int wake[2]; /* a pipe: a handshake finished */
    double hs_timeout;
    unsigned long fuzz_ids; /* fuzzing: objects named 1, 2, ... (0: off) */
    unsigned long serials, caller;
    mgr_wait *waits; /* in arrival order */
    mgr_peer *peers;
    size_t npeers, cappeers;
    bool peers_due;  /* a peer was found dead */
    double peers_at; /* when to look at every peer next */
    double soon_at;  /* when to look at the peers marked soon (0: none) */
    mproc_obj *key;  /* the authkey stored proxies are given (NULL: none) */
    bool nested;     /* a proxy to an object here was ever stored */
    size_t nkept;    /* objects with no reference kept by stored proxies */
    bool sweep_due;  /* a client's pin went: sweep at the round's end */
    client *closer;  /* the client that asked for shutdown, out of the
                        loop: answered once everything is gone */
    mgr_regs *regs;  /* the types registered from C */
};

unsigned long mproc__mgr_caller(const mgr_server *s)
{
    return s->caller;
}

pid_t mproc__mgr_client_pid(const mgr_server *s, unsigned long serial)
{
    for (size_t i = 0; i < s->nclients; i++)
        if (s->clients[i]->serial == serial)
            return s->clients[i]->pid;
    return 0;
}

/* ---- client processes and the references they hold ---------------------- */

static mgr_peer *peer_of(mgr_server *s, pid_t pid)
{
    for (size_t i = 0; pid && i < s->npeers; i++)
        if (s->peers[i].pid == pid)
            return &s->peers[i];
    return NULL;
}

/* The process at the other end of a local connection, watched from now
 * on; 0 when unknown (TCP), this process, or it cannot be watched. */
static pid_t peer_watch(mgr_server *s, int fd)
{
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0 ||
        uc.pid <= 0 || uc.pid == getpid())
        return 0;
    mgr_peer *p = peer_of(s, uc.pid);
    if (!p) {
        if (s->npeers == s->cappeers) {
            size_t cap = s->cappeers ? s->cappeers * 2 : 16;
            mgr_peer *np = realloc(s->peers, cap * sizeof *np);
            if (!np)
                return 0;
            s->peers = np;
            s->cappeers = cap;
        }
        int pfd = (int)syscall(SYS_pidfd_open, uc.pid, 0);
        if (pfd < 0)
            return 0;
        p = &s->peers[s->npeers++];
        *p = (mgr_peer){uc.pid, pfd, 0, 0, false, false};
    }
    p->conns++;
    return uc.pid;
}

/* Process pid's count of references on o changes by d (refs unchanged). */
static void hold_add(mgr_server *s, mgr_obj *o, pid_t pid, long d)
{
    mgr_peer *p = peer_of(s, pid);
    if (!p)
        return;
    size_t i = 0;
    while (i < o->nholds && o->holds[i].pid != pid)
        i++;
    if (i == o->nholds) {
        if (d <= 0)
            return;
        if (o->nholds == o->capholds) {
            size_t cap = o->capholds ? o->capholds * 2 : 2;
            mgr_hold *h = realloc(o->holds, cap * sizeof *h);
            if (!h)
                return; /* untracked: kept until decref */
            o->holds = h;
            o->capholds = cap;
        }
        o->holds[o->nholds++] = (mgr_hold){pid, 0};
        p->holds++;
    }
    o->holds[i].n += d;
    if (o->holds[i].n <= 0) {
        o->holds[i] = o->holds[--o->nholds];
        p->holds--;
    }
}

/* A reference dropped by the caller's process: its own count, else (a
 * reference handed from one process to another) the oldest holder's, so
 * that no death gives back more than the object has. */
static void hold_drop(mgr_server *s, mgr_obj *o, pid_t pid)
{
    long sum = 0;
    for (size_t i = 0; i < o->nholds; i++) {
        if (o->holds[i].pid == pid) {
            hold_add(s, o, pid, -1);
            return;
        }
        sum += o->holds[i].n;
    }
    if (o->nholds && sum > o->refs)
        hold_add(s, o, o->holds[0].pid, -1);
}

static void wait_free(mgr_wait *w)
{
    free(w->name);
    mproc_obj_unref(w->args);
    mproc_obj_unref(w->kwds);
    free(w);
}

/* The client with that serial, or NULL. */
static client *client_of(mgr_server *s, unsigned long serial)
{
    for (size_t i = 0; i < s->nclients; i++)
        if (s->clients[i]->serial == serial)
            return s->clients[i];
    return NULL;
}

static int queue_result(mgr_server *s, client *cl, mgr_reply *r);
static void drop_client(mgr_server *s, client *cl);
static void pin_reply(mgr_server *s, client *cl, const mgr_reply *r);
static void answer_closer(mgr_server *s);

/* Puts cl on the round's list: its output is written, and its input
 * served again if it was parked, before the loop waits again. */
static void enqueue(mgr_server *s, client *cl)
{
    if (!cl->queued && !cl->dead) {
        cl->queued = true;
        cl->next = s->round;
        s->round = cl;
    }
}

/* Answers a waiting call with r and lets its client go on. */
static void wait_answer(mgr_server *s, mgr_wait *w, mgr_reply *r)
{
    client *cl = client_of(s, w->client);
    if (cl) {
        cl->parked = false;
        cl->resume = true;
        pin_reply(s, cl, r);
        if (queue_result(s, cl, r) < 0)
            drop_client(s, cl);
        else
            enqueue(s, cl);
    } else {
        mproc_obj_unref(r->value);
    }
}

/* ---- the object table -------------------------------------------------- */

static size_t bucket_of(const mgr_server *s, uintptr_t id)
{
    return (size_t)((id >> 4) * 0x9e3779b97f4a7c15u) & (s->nbuckets - 1);
}

static int table_grow(mgr_server *s)
{
    size_t nb = s->nbuckets ? s->nbuckets * 2 : 256;
    mgr_obj **b = calloc(nb, sizeof(void *));
    if (!b)
        return -ENOMEM;
    mgr_obj **old = s->buckets;
    size_t on = s->nbuckets;
    s->buckets = b;
    s->nbuckets = nb;
    for (size_t i = 0; i < on; i++)
        for (mgr_obj *o = old[i], *next; o; o = next) {
            next = o->next;
            size_t k = bucket_of(s, (uintptr_t)o);
            o->next = b[k];
            b[k] = o;
        }
    free(old);
    return 0;
}

mgr_obj *mproc__mgr_new_obj(mgr_server *s, const mgr_type *t)
{
    if (s->nobjs >= s->nbuckets && table_grow(s) < 0)
        return NULL;
    mgr_obj *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->type = t;
    o->refs = 1;
    o->fuzz_id = s->fuzz_ids ? s->fuzz_ids++ : 0;
    size_t k = bucket_of(s, (uintptr_t)o);
    o->next = s->buckets[k];
    s->buckets[k] = o;
    s->nobjs++;
    hold_add(s, o, mproc__mgr_client_pid(s, s->caller), 1);
    return o;
}

/* The object named by a lowercase hex ident, or NULL. */
static mgr_obj *lookup(mgr_server *s, const mproc_obj *ident)
{
    size_t n;
    const char *str = mproc_obj_str_value(ident, &n);
    if (!str || n == 0 || n > 16 || s->nbuckets == 0)
        return NULL;
    uintptr_t id = 0;
    for (size_t i = 0; i < n; i++) {
        char c = str[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return NULL;
        id = id << 4 | (uintptr_t)d;
    }
    if (s->fuzz_ids) { /* names are small numbers: look at everything */
        for (size_t b = 0; b < s->nbuckets; b++)
            for (mgr_obj *o = s->buckets[b]; o; o = o->next)
                if (o->fuzz_id == id)
                    return o;
        return NULL;
    }
    for (mgr_obj *o = s->buckets[bucket_of(s, id)]; o; o = o->next)
        if ((uintptr_t)o == id)
            return o;
    return NULL;
}

mgr_obj *mproc__mgr_lookup(mgr_server *s, const mproc_obj *ident)
{
    return lookup(s, ident);
}

static mproc_obj *traceback(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* o's process holds given back, its registered type's object freed, o
 * freed (o already out of the table). */
static void free_obj(mgr_server *s, mgr_obj *o)
{
    while (o->nholds)
        hold_add(s, o, o->holds[0].pid, -o->holds[0].n);
    mproc__mgr_regs_destroy(o);
    mproc__mgr_obj_clear(o);
    free(o);
}

static void drop_obj(mgr_server *s, mgr_obj *o)
{
    for (mgr_wait **wp = &s->waits; *wp;) { /* calls waiting on it end */
        mgr_wait *w = *wp;
        if (w->o != o) {
            wp = &w->next;
            continue;
        }
        *wp = w->next;
        mgr_reply r = {MGR_TRACEBACK,
                       traceback("KeyError: the object is "
                                 "gone"),
                       NULL, 0};
        wait_answer(s, w, &r);
        wait_free(w);
    }
    mgr_obj **p = &s->buckets[bucket_of(s, (uintptr_t)o)];
    while (*p != o)
        p = &(*p)->next;
    *p = o->next;
    s->nobjs--;
    free_obj(s, o);
}

static void mark(mgr_server *s, mgr_obj *o)
{
    (void)s;
    if (!o->mark)
        o->mark = 1;
}

/* Once proxies are stored in objects, an object with no reference left
 * lives on while a stored proxy names it (from an object that lives) or
 * a client's last reply carried one: frees the others. */
static void sweep(mgr_server *s)
{
    for (size_t b = 0; b < s->nbuckets; b++)
        for (mgr_obj *o = s->buckets[b]; o; o = o->next)
            o->mark = o->refs > 0;
    for (size_t i = 0; i < s->nclients; i++)
        if (s->clients[i]->pin)
            mproc__mgr_proxies_in(s, s->clients[i]->pin, NULL, mark);
    for (bool more = true; more;) {
        more = false;
        for (size_t b = 0; b < s->nbuckets; b++)
            for (mgr_obj *o = s->buckets[b]; o; o = o->next)
                if (o->mark == 1 && o->nested) {
                    o->mark = 2;
                    mproc__mgr_obj_proxies(s, o, mark);
                    more = true;
                }
    }
    s->nkept = 0;
    for (size_t b = 0; b < s->nbuckets; b++)
        for (mgr_obj *o = s->buckets[b], *next; o; o = next) {
            next = o->next;
            if (!o->mark)
                drop_obj(s, o);
            else if (o->refs <= 0)
                s->nkept++;
        }
}

/* o has no reference left: freed, unless a stored proxy names it. */
static void unreferenced(mgr_server *s, mgr_obj *o)
{
    if (s->nested)
        sweep(s);
    else
        drop_obj(s, o);
}

/* The caller's reply r carries proxies: they stay until its next request. */
static void pin_reply(mgr_server *s, client *cl, const mgr_reply *r)
{
    if (!s->nested || !cl || r->kind != MGR_RETURN || !r->value ||
        !mproc__mgr_proxies_in(s, r->value, NULL, NULL))
        return;
    mproc_obj_unref(cl->pin);
    cl->pin = mproc_obj_ref(r->value);
}

static void unpin(mgr_server *s, client *cl)
{
    if (!cl->pin)
        return;
    mproc_obj_unref(cl->pin);
    cl->pin = NULL;
    if (s->nkept)
        sweep(s);
}

static mproc_obj *ident_of(const mgr_obj *o)
{
    char id[32];
    snprintf(id, sizeof id, "%lx",
             o->fuzz_id ? o->fuzz_id : (unsigned long)(uintptr_t)o);
    return mproc_obj_str_c(id);
}

/* ---- replies ------------------------------------------------------------- */

/* A traceback text as CPython's format_exc() ends: "<Type>: <message>". */
static mproc_obj *traceback(const char *fmt, ...)
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
    mproc_obj *t = traceback("%s: %s", mproc_obj_reduce_name(exc), s ? s : "");
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

static int queue_result(mgr_server *s, client *cl, mgr_reply *r)
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
        r->value = traceback("KeyError: %s", typeid ? typeid : "typeid");
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
            drop_obj(s, o);
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
    return lookup(s, a);
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
static int top_level(mgr_server *s, const char *f, const mproc_obj *args,
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
            r->value = traceback("KeyError: %s", rep ? rep : "?");
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
            hold_add(s, o, pid, 1);
        } else {
            o->refs--;
            hold_drop(s, o, pid);
            if (o->refs <= 0)
                unreferenced(s, o);
        }
        r->value = mproc_obj_none();
        return 0;
    }
    r->kind = MGR_TRACEBACK;
    r->value = traceback("AssertionError: '%s' unrecognized", f);
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

static int method(mgr_server *s, const mproc_obj *ident, const char *name,
                  const mproc_obj *args, const mproc_obj *kwds, mgr_reply *r)
{
    mgr_obj *o = lookup(s, ident);
    if (!o) {
        char *rep = NULL;
        mproc_obj_repr(ident, &rep, NULL);
        r->kind = MGR_TRACEBACK;
        r->value = traceback("KeyError: %s", rep ? rep : "?");
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
            pin_reply(s, client_of(s, s->caller), r);
            if (s->nkept)
                sweep(s);
        }
        if (rc != -ENOENT)
            return rc;
    }
    r->kind = MGR_RETURN;
    if (strcmp(name, "#GETVALUE") == 0) {
        r->value = o->type->value(o);
        pin_reply(s, client_of(s, s->caller), r);
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
    r->value = traceback("AttributeError: method '%s' of %s object is not in "
                         "exposed",
                         name, o->type->typeid);
    return r->value ? 0 : -ENOMEM;
}

/* ---- connections ------------------------------------------------------------
 */

/* The epoll events cl wants: its requests (none while its call waits or
 * once it is answered and closing: then only its hang-up), and room to
 * write while replies wait. */
static void set_events(mgr_server *s, client *cl)
{
    unsigned ev = EPOLLRDHUP;
    if (!cl->parked && !cl->closing)
        ev |= EPOLLIN;
    if (cl->out.len > cl->out_pos)
        ev |= EPOLLOUT;
    if (ev == cl->ev || s->ep < 0 || cl->dead)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = cl};
    if (epoll_ctl(s->ep, EPOLL_CTL_MOD, cl->fd, &e) == 0)
        cl->ev = ev;
}

/* Takes cl out of the epoll set and of the table of clients; marked dead,
 * so that nothing of the loop's serves it any more. */
static void untable(mgr_server *s, client *cl)
{
    if (s->ep >= 0)
        epoll_ctl(s->ep, EPOLL_CTL_DEL, cl->fd, NULL);
    cl->dead = true;
    client *last = s->clients[--s->nclients];
    s->clients[cl->idx] = last;
    last->idx = cl->idx;
}

/* Takes cl out of the loop at once (its waiting call ends, what it held is
 * given back); the struct itself goes at the end of the round. */
static void drop_client(mgr_server *s, client *cl)
{
    if (cl->dead)
        return;
    unsigned long serial = cl->serial;
    mgr_peer *p = peer_of(s, cl->pid);
    if (p) {
        p->conns--;
        struct pollfd pf = {p->fd, POLLIN, 0};
        if (poll(&pf, 1, 0) == 1) { /* its process is gone */
            p->dead = true;
            s->peers_due = true;
        } else if (p->conns == 0) { /* an exiting process's sockets
                                       close before its pidfd tells */
            p->soon = true;
            if (!s->soon_at)
                s->soon_at = mproc_monotonic() + 0.02;
        }
    }
    untable(s, cl);
    mproc_conn_free(cl->c);
    cl->c = NULL;
    if (!cl->queued) { /* else the round's list frees it */
        cl->next = s->dead;
        s->dead = cl;
    }
    for (mgr_wait **wp = &s->waits; *wp;) { /* its waiting call ends */
        mgr_wait *w = *wp;
        if (w->client == serial) {
            *wp = w->next;
            wait_free(w);
        } else {
            wp = &w->next;
        }
    }
    if (cl->blocking) /* what it held is free */
        for (size_t b = 0; b < s->nbuckets; b++)
            for (mgr_obj *o = s->buckets[b]; o; o = o->next)
                if (o->type->drop_client)
                    o->type->drop_client(o, serial);
    if (cl->pin) { /* what its last reply kept: swept at the round's end */
        mproc_obj_unref(cl->pin);
        cl->pin = NULL;
        s->sweep_due = s->nkept > 0;
    }
}

static void client_free(client *cl)
{
    free(cl->in);
    mproc__buf_free(&cl->out);
    free(cl);
}

static void free_dead(mgr_server *s)
{
    while (s->dead) {
        client *cl = s->dead;
        s->dead = cl->next;
        client_free(cl);
    }
}

/* cl asked for shutdown: out of the loop, kept (with its connection) in
 * s->closer to be answered once everything is gone (answer_closer). */
static void detach_closer(mgr_server *s, client *cl)
{
    untable(s, cl);
    if (cl->queued) { /* off the round's list: the loop frees it no more */
        client **pp = &s->round;
        while (*pp && *pp != cl)
            pp = &(*pp)->next;
        if (*pp)
            *pp = cl->next;
        cl->queued = false;
    }
    answer_closer(s); /* an earlier one (none: serving stops at once) */
    s->closer = cl;
}

static int wake_waiters(mgr_server *s)
{
    bool progress = true;
    double now = mproc_monotonic(), next = -1;
    while (progress) {
        progress = false;
        next = -1;
        for (mgr_wait **wp = &s->waits; *wp;) {
            mgr_wait *w = *wp;
            mgr_reply r = {MGR_RETURN, NULL, NULL, 0};
            s->caller = w->client;
            int rc = w->o->type->call(s, w->o, w->name, w->args, w->kwds, &r);
            if (rc == 0 && r.kind == MGR_PARK && w->deadline >= 0 &&
                w->deadline <= now) {
                rc = w->o->type->expire(w->o, w->name, &r);
                if (rc == 0 && r.kind == MGR_PARK) /* waits on, untimed */
                    w->deadline = r.deadline;
            }
            if (rc == 0 && r.kind == MGR_PARK) {
                if (w->deadline >= 0 && (next < 0 || w->deadline < next))
                    next = w->deadline;
                wp = &w->next;
                continue;
            }
            if (rc < 0 && !r.value) {
                r.kind = MGR_TRACEBACK;
                r.value = traceback("MemoryError");
            }
            *wp = w->next;
            wait_answer(s, w, &r);
            wait_free(w);
            progress = true;
        }
    }
    if (next < 0)
        return -1;
    double ms = (next - now) * 1000 + 1;
    return ms > 60000 ? 60000 : (int)ms;
}

/* Process peers[k] died: the references it held go (objects only it
 * referenced are freed), and it is watched no more. */
static void peer_died(mgr_server *s, size_t k)
{
    pid_t pid = s->peers[k].pid;
    for (size_t b = 0; b < s->nbuckets; b++)
        for (mgr_obj *o = s->buckets[b]; o; o = o->next)
            for (size_t i = 0; i < o->nholds; i++)
                if (o->holds[i].pid == pid) {
                    o->refs -= o->holds[i].n;
                    hold_add(s, o, pid, -o->holds[i].n);
                    break;
                }
    if (s->nested)
        sweep(s);
    for (size_t b = 0; !s->nested && b < s->nbuckets; b++)
        for (mgr_obj *o = s->buckets[b], *next; o; o = next) {
            next = o->next;
            if (o->refs <= 0)
                drop_obj(s, o);
        }
    s->peers[k].conns = s->peers[k].holds = 0;
}

/* Handles the processes found dead, looks again at those whose last
 * connection closed a moment ago, and every second at all. */
static void check_peers(mgr_server *s)
{
    double now = mproc_monotonic();
    bool all = now >= s->peers_at, soon = s->soon_at && now >= s->soon_at;
    if (!s->npeers || (!s->peers_due && !all && !soon))
        return;
    if (all)
        s->peers_at = now + 1.0;
    if (soon || all)
        s->soon_at = 0;
    s->peers_due = false;
    for (size_t k = 0; k < s->npeers; k++) {
        struct pollfd pf = {s->peers[k].fd, POLLIN, 0};
        bool look = all || (soon && s->peers[k].soon);
        if (soon || all)
            s->peers[k].soon = false;
        if (s->peers[k].dead || (look && poll(&pf, 1, 0) == 1))
            peer_died(s, k);
    }
}

/* Stops watching processes with no connection and no reference (and
 * those that died). */
static void peers_tidy(mgr_server *s)
{
    for (size_t k = s->npeers; k-- > 0;)
        if (s->peers[k].conns <= 0 && s->peers[k].holds <= 0) {
            close(s->peers[k].fd);
            s->peers[k] = s->peers[--s->npeers];
        }
}

static int add_client(mgr_server *s, mproc_conn *c)
{
    client *cl = calloc(1, sizeof *cl);
    if (s->nclients == s->capclients && cl) {
        size_t cap = s->capclients ? s->capclients * 2 : 64;
        client **p = realloc(s->clients, cap * sizeof(client *));
        if (p) {
            s->clients = p;
            s->capclients = cap;
        }
    }
    int fd = mproc_conn_fileno(c);
    int fl = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
    if (!cl || s->nclients == s->capclients || fl < 0 ||
        fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        free(cl);
        mproc_conn_free(c);
        return -ENOMEM;
    }
    cl->c = c;
    cl->fd = fd;
    cl->proto = mproc_conn_pickle_protocol(c);
    cl->serial = ++s->serials;
    cl->pid = peer_watch(s, fd);
    cl->ev = EPOLLIN | EPOLLRDHUP;
    struct epoll_event e = {.events = cl->ev, .data.ptr = cl};
    if (s->ep >= 0 && epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &e) < 0) {
        free(cl);
        mproc_conn_free(c);
        return -ENOMEM;
    }
    cl->idx = s->nclients;
    s->clients[s->nclients++] = cl;
    return 0;
}

/* Serves one request of cl's. Returns 0 (go on), 1 (answered a top-level
 * request: close once written), 2 (stop the server), -1 (drop it now). */
static int serve_msg(mgr_server *s, client *cl, const void *buf, size_t len)
{
    unpin(s, cl); /* it has taken its references (incref) by now */
    mproc_obj *req = NULL;
    char err[200];
    int rc = mproc_pickle_loads(buf, len, NULL, &req, err, sizeof err);
    mgr_reply r = {MGR_RETURN, NULL, NULL, 0};
    s->caller = cl->serial;
    s->cur = cl;
    int verdict = cl->channel ? 0 : 1;
    const char *name = NULL;
    if (rc == 0 && mproc_obj_type_of(req) == MPROC_OBJ_TUPLE &&
        mproc_obj_len(req) == 4)
        name = mproc_obj_str_value(mproc_obj_item(req, 1), NULL);
    const mproc_obj *args = name ? mproc_obj_item(req, 2) : NULL;
    const mproc_obj *kwds = name ? mproc_obj_item(req, 3) : NULL;
    if (rc == -ENOMEM) {
        r.kind = MGR_TRACEBACK;
        r.value = traceback("MemoryError");
    } else if (rc < 0) {
        r.kind = MGR_TRACEBACK;
        r.value = traceback("UnpicklingError: %s", err);
    } else if (!name || mproc_obj_type_of(args) != MPROC_OBJ_TUPLE ||
               mproc_obj_type_of(kwds) != MPROC_OBJ_DICT) {
        r.kind = MGR_TRACEBACK;
        r.value = traceback("ValueError: a request is (ident, name, args, "
                            "kwds)");
    } else if (!cl->channel) {
        rc = top_level(s, name, args, kwds, &r);
        if (rc == 1) {
            cl->channel = true;
            verdict = 0;
            r.value = mproc_obj_none();
        } else if (rc == 2) { /* answered once everything is gone */
            detach_closer(s, cl);
            mproc_obj_unref(r.value);
            mproc_obj_unref(req);
            s->cur = NULL;
            return 2;
        }
    } else if (method(s, mproc_obj_item(req, 0), name, args, kwds, &r) < 0) {
        mproc_obj_unref(r.value); /* answered as a MemoryError below */
        r.value = NULL;
        r.proxy = NULL;
    } else if (r.kind == MGR_PARK) {
        mgr_wait *w = calloc(1, sizeof *w);
        if (w && (w->name = strdup(name)) != NULL) {
            *w = (mgr_wait){cl->serial,
                            lookup(s, mproc_obj_item(req, 0)),
                            w->name,
                            mproc_obj_ref((mproc_obj *)args),
                            mproc_obj_ref((mproc_obj *)kwds),
                            r.deadline,
                            NULL};
            mgr_wait **tail = &s->waits;
            while (*tail)
                tail = &(*tail)->next;
            *tail = w;
            cl->parked = true;
            mproc_obj_unref(req);
            s->cur = NULL;
            return 0;
        }
        free(w);
        r.kind = MGR_TRACEBACK; /* no memory to wait: a MemoryError */
    }
    s->cur = NULL;
    if (!r.value && !(r.kind == MGR_PROXY && r.proxy)) {
        r.kind = MGR_TRACEBACK; /* out of memory, or a failure unforeseen */
        r.value = traceback("MemoryError");
    }
    mproc_obj_unref(req);
    if (queue_result(s, cl, &r) < 0)
        return -1;
    return verdict;
}

/* Serves the whole requests in cl's input, in order, until one waits.
 * 0, or -1: cl was dropped. */
static int serve_input(mgr_server *s, client *cl)
{
    int rc = 0;
    while (!cl->parked && !cl->closing && !s->stopping) {
        const unsigned char *p = cl->in + cl->in_pos;
        size_t avail = cl->in_len - cl->in_pos;
        uint64_t len = 0;
        int h = mgr_frame(p, avail, &len);
        if (h == 0)
            break;
        if (h < 0) {
            rc = -1; /* a negative length: not CPython's framing */
            break;
        }
        size_t hdr = (size_t)h;
        if (len > s->max_request) {
            rc = -1; /* over the limit: the connection is closed */
            break;
        }
        if (avail - hdr < len) { /* the rest comes later: make room */
            size_t need = hdr + (size_t)len;
            if (cl->in_pos) {
                memmove(cl->in, p, avail);
                cl->in_pos = 0;
                cl->in_len = avail;
            }
            if (need > cl->in_cap) {
                unsigned char *b = realloc(cl->in, need);
                if (!b) {
                    rc = -1;
                    break;
                }
                cl->in = b;
                cl->in_cap = need;
            }
            break;
        }
        cl->in_pos += hdr + (size_t)len;
        int v = serve_msg(s, cl, p + hdr, (size_t)len);
        if (v < 0) {
            rc = -1;
            break;
        }
        if (v == 1)
            cl->closing = true;
        else if (v == 2)
            s->stopping = true;
    }
    if (rc < 0) {
        drop_client(s, cl);
        return -1;
    }
    if (cl->in_pos == cl->in_len) {
        cl->in_pos = cl->in_len = 0;
        if (cl->in_cap > MGR_KEEP) { /* a big request passed: give it back */
            free(cl->in);
            cl->in = NULL;
            cl->in_cap = 0;
        }
    }
    enqueue(s, cl);
    return 0;
}

/* Reads what cl sent (as much as its buffer holds) and serves it. */
static void read_input(mgr_server *s, client *cl)
{
    if (!cl->in) {
        cl->in = malloc(MGR_IN_START);
        if (!cl->in) {
            drop_client(s, cl);
            return;
        }
        cl->in_cap = MGR_IN_START;
    }
    /* while a read fills the room it had, more may wait: read again (a
     * few times, then the others' turn) */
    for (int round = 0; round < 8 && !cl->dead && !cl->parked && !cl->closing;
         round++) {
        if (cl->in_pos && cl->in_len == cl->in_cap) { /* room at the end */
            memmove(cl->in, cl->in + cl->in_pos, cl->in_len - cl->in_pos);
            cl->in_len -= cl->in_pos;
            cl->in_pos = 0;
        }
        size_t room = cl->in_cap - cl->in_len;
        if (room == 0)
            return;
        ssize_t k;
        do
            k = recv(cl->fd, cl->in + cl->in_len, room, MSG_DONTWAIT);
        while (k < 0 && errno == EINTR);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            drop_client(s, cl); /* EOF or reset: gone */
            return;
        }
        if (k < 0)
            return;
        cl->in_len += (size_t)k;
        if (serve_input(s, cl) < 0 || (size_t)k < room)
            return;
    }
}

/* Sends what cl's output holds, as far as the socket takes it: 0, or -1
 * when the connection failed. */
static int write_out(client *cl)
{
    while (cl->out.len > cl->out_pos) {
        ssize_t k =
            send(cl->fd, cl->out.p + cl->out_pos, cl->out.len - cl->out_pos,
                 MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (k <= 0)
            return -1;
        cl->out_pos += (size_t)k;
    }
    return 0;
}

/* Writes what cl's output holds, as far as the socket takes it. 0, or -1:
 * cl was dropped (gone, or answered and closing). */
static int flush(mgr_server *s, client *cl)
{
    if (write_out(cl) < 0) {
        drop_client(s, cl);
        return -1;
    }
    if (cl->out.len == cl->out_pos) {
        if (cl->out.cap > MGR_KEEP)
            mproc__buf_free(&cl->out);
        cl->out.len = cl->out_pos = 0;
        if (cl->closing) {
            drop_client(s, cl);
            return -1;
        }
    }
    set_events(s, cl);
    return 0;
}

/* Ends a round: serves again the input of clients whose call went through
 * (which may let other calls through), writes every reply, frees what was
 * dropped. Returns the ms until the next waiting call's deadline. */
static int end_round(mgr_server *s)
{
    int wait_ms;
again:
    if (s->sweep_due) { /* a dropped client's last reply let proxies go */
        s->sweep_due = false;
        if (s->nkept)
            sweep(s);
    }
    wait_ms = wake_waiters(s);
    while (s->round) {
        client *list = s->round;
        s->round = NULL;
        bool served = false;
        for (client *cl = list, *next; cl; cl = next) {
            next = cl->next;
            cl->queued = false;
            if (cl->dead) {
                client_free(cl);
                continue;
            }
            if (cl->resume) { /* its call went through: serve the rest */
                cl->resume = false;
                serve_input(s, cl); /* back on the list */
                served = true;
                continue;
            }
            flush(s, cl);
        }
        if (served)
            wait_ms = wake_waiters(s);
    }
    if (s->sweep_due)
        goto again;
    free_dead(s);
    return wait_ms;
}

/* The answer to the client that asked for shutdown, once the listener is
 * closed and every object freed: written whole (5 s at most, as the
 * client may not read), then the client closed. */
static void answer_closer(mgr_server *s)
{
    client *cl = s->closer;
    if (!cl)
        return;
    s->closer = NULL;
    mgr_reply r = {MGR_RETURN, mproc_obj_none(), NULL, 0};
    double end = mproc_monotonic() + 5.0;
    if (queue_result(s, cl, &r) == 0)
        while (write_out(cl) == 0 && cl->out.len > cl->out_pos) {
            int ms = (int)((end - mproc_monotonic()) * 1000);
            struct pollfd pf = {cl->fd, POLLOUT, 0};
            if (ms <= 0 || poll(&pf, 1, ms) <= 0)
                break;
        }
    mproc_conn_free(cl->c);
    client_free(cl);
}

/* ---- handshakes ---------------------------------------------------------- */

typedef struct hs_job {
    mgr_server *s;
    mproc_conn *c;
    struct hs_job *next;
    pthread_t tid;
} hs_job;

static void *handshake(void *arg)
{
    hs_job *j = arg;
    mgr_server *s = j->s;
    int rc = mproc_listener_authenticate(s->l, j->c, s->hs_timeout);
    pthread_mutex_lock(&s->mu);
    int n = s->handshakes, k = 0;
    while (k < n && s->hs[k].job != j)
        k++;
    if (k < n) { /* no longer in flight: cannot be cut any more */
        if (s->hs[k].fd >= 0)
            close(s->hs[k].fd);
        memmove(&s->hs[k], &s->hs[k + 1],
                (size_t)(n - k - 1) * sizeof s->hs[0]);
    }
    if (rc == 0) {
        if (s->nready == s->capready) {
            size_t cap = s->capready ? s->capready * 2 : 16;
            mproc_conn **p = realloc(s->ready, cap * sizeof(void *));
            if (p) {
                s->ready = p;
                s->capready = cap;
            }
        }
        if (s->nready < s->capready)
            s->ready[s->nready++] = j->c;
        else
            mproc_conn_free(j->c);
    }                  /* else authenticate freed it */
    j->next = s->done; /* joined by the loop (or server_free) */
    s->done = j;
    ssize_t w = write(s->wake[1], "x", 1); /* a result, or a free thread */
    (void)w;
    if (--s->handshakes == 0)
        pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Joins the handshake threads that ended, so that none outlives the
 * server (a thread still exiting when the process ends leaks its
 * thread-local state). */
static void reap_done(mgr_server *s)
{
    pthread_mutex_lock(&s->mu);
    hs_job *j = s->done;
    s->done = NULL;
    pthread_mutex_unlock(&s->mu);
    while (j) {
        hs_job *next = j->next;
        pthread_join(j->tid, NULL);
        free(j);
        j = next;
    }
}

/* Makes room for a new handshake when every thread is taken: cuts the
 * oldest one if it has run MGR_HS_EVICT seconds (its thread then ends at
 * once). True if a thread is free now. */
static bool handshake_room(mgr_server *s)
{
    bool room;
    pthread_mutex_lock(&s->mu);
    room = s->handshakes < MGR_HANDSHAKES;
    if (!room) {
        double now = mproc_monotonic();
        if (now - s->hs[0].since >= MGR_HS_EVICT) {
            shutdown(s->hs[0].fd, SHUT_RDWR); /* the socket, not just an fd */
            s->hs[0].since = now + 3600;      /* cut once */
        }
        s->listen_next = s->hs[0].since + MGR_HS_EVICT;
        for (int k = 1; k < s->handshakes; k++)
            if (s->hs[k].since + MGR_HS_EVICT < s->listen_next)
                s->listen_next = s->hs[k].since + MGR_HS_EVICT;
    }
    pthread_mutex_unlock(&s->mu);
    return room;
}

/* Accepts what waits on the listener, a thread for each handshake; when
 * none is free, stops watching the listener until one is. */
static void accept_new(mgr_server *s)
{
    for (int k = 0; k < 64; k++) {
        if (!handshake_room(s)) {
            if (!s->listen_off && s->ep >= 0) {
                epoll_ctl(s->ep, EPOLL_CTL_DEL, mproc_listener_fileno(s->l),
                          NULL);
                s->listen_off = true;
            }
            return;
        }
        mproc_conn *c;
        if (mproc_listener_accept_pending(s->l, &c, 0) < 0)
            return;
        hs_job *j = malloc(sizeof *j);
        pthread_attr_t at;
        bool ok = j && pthread_attr_init(&at) == 0;
        if (ok) {
            pthread_attr_setstacksize(&at, 128 * 1024);
            pthread_mutex_lock(&s->mu);
            *j = (hs_job){s, c, NULL, 0};
            /* a second fd on the socket, to cut it by even after the
             * handshake closed its own */
            s->hs[s->handshakes].job = j;
            s->hs[s->handshakes].fd =
                fcntl(mproc_conn_fileno(c), F_DUPFD_CLOEXEC, 0);
            s->hs[s->handshakes].since = mproc_monotonic();
            s->handshakes++;
            if (pthread_create(&j->tid, &at, handshake, j) != 0) {
                s->handshakes--;
                if (s->hs[s->handshakes].fd >= 0)
                    close(s->hs[s->handshakes].fd);
                ok = false;
            }
            pthread_mutex_unlock(&s->mu);
            pthread_attr_destroy(&at);
        }
        if (!ok) {
            free(j);
            mproc_conn_free(c); /* no thread for it: refused */
        }
    }
}

/* Watches the listener again once a handshake thread is free. */
static void listen_again(mgr_server *s)
{
    if (!s->listen_off)
        return;
    pthread_mutex_lock(&s->mu);
    bool room = s->handshakes < MGR_HANDSHAKES;
    pthread_mutex_unlock(&s->mu);
    if (!room && mproc_monotonic() < s->listen_next)
        return;
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, mproc_listener_fileno(s->l), &e) == 0)
        s->listen_off = false;
}

static void take_ready(mgr_server *s)
{
    char sink[64];
    while (read(s->wake[0], sink, sizeof sink) > 0)
        ;
    pthread_mutex_lock(&s->mu);
    mproc_conn **r = s->ready;
    size_t n = s->nready;
    s->ready = NULL;
    s->nready = s->capready = 0;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < n; i++)
        add_client(s, r[i]);
    free(r);
    reap_done(s);
    listen_again(s);
}

static bool is_tcp(const char *a)
{
    if (!a || !*a || a[0] == '@' || a[0] == '/' || a[0] == '.')
        return false;
    if (strncmp(a, "unix:", 5) == 0)
        return false;
    return strchr(a, ':') != NULL;
}

/* ---- the loop ------------------------------------------------------------ */

static void server_free(mgr_server *s)
{
    s->nested = false; /* everything goes: no more sweeps */
    s->nkept = 0;
    pthread_mutex_lock(&s->mu);
    for (int k = 0; k < s->handshakes; k++) /* cut them all: no waiting */
        shutdown(s->hs[k].fd, SHUT_RDWR);
    while (s->handshakes > 0)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (s->wake[0] >= 0)
        take_ready(s);
    reap_done(s);
    while (s->waits) {
        mgr_wait *w = s->waits;
        s->waits = w->next;
        wait_free(w);
    }
    while (s->nclients)
        drop_client(s, s->clients[s->nclients - 1]);
    for (client *cl = s->round, *next; cl; cl = next) {
        next = cl->next;
        client_free(cl);
    }
    s->round = NULL;
    free_dead(s);
    free(s->clients);
    for (size_t i = 0; i < s->nbuckets; i++) {
        for (mgr_obj *o = s->buckets[i], *next; o; o = next) {
            next = o->next;
            free_obj(s, o);
        }
    }
    free(s->buckets);
    for (size_t k = 0; k < s->npeers; k++)
        close(s->peers[k].fd);
    free(s->peers);
    mproc_listener_free(s->l);
    mproc__mgr_regs_free(s->regs);
    mproc_obj_unref(s->address);
    answer_closer(s);
    mproc_obj_unref(s->key);
    for (int k = 0; k < 4; k++)
        mproc_obj_unref(s->kinds[k]);
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    if (s->ep >= 0)
        close(s->ep);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle);
}

/* What every server starts with; false: no memory. */
static bool server_init(mgr_server *s, size_t max_request, size_t max_output)
{
    s->ep = s->wake[0] = s->wake[1] = -1;
    s->max_request = max_request ? max_request : MPROC_MANAGER_MAX_REQUEST;
    s->max_output = max_output ? max_output : MPROC_MANAGER_MAX_OUTPUT;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    static const char *const kinds[4] = {"#RETURN", "#ERROR", "#TRACEBACK",
                                         "#PROXY"};
    bool ok = true;
    for (int k = 0; k < 4; k++)
        ok &= (s->kinds[k] = mproc_obj_str_c(kinds[k])) != NULL;
    return ok;
}

/* The fds the loop watches besides its clients (epoll data). */
enum { EV_LISTENER, EV_HANDSHAKE, EV_CTL, EV_WAKE, EV_FIXED };

static int watch(int ep, int fd, uint64_t tag)
{
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = tag};
    return fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0 ? 0 : -errno;
}

int mproc__mgr_run(const mgr_config *cfg,
                   void (*listening)(void *ctx, int rc, const char *address),
                   void *ctx, volatile int *stop, int wake_fd)
{
    mgr_server s = {0};
    bool ok = server_init(&s, cfg->opts.max_request, cfg->opts.max_output);
    mproc_conn_opts co = cfg->opts.conn;
    if (co.backlog <= 0)
        co.backlog = MPROC_MANAGER_BACKLOG;
    s.hs_timeout = co.timeout > 0   ? co.timeout
                   : co.timeout < 0 ? -1
                                    : MPROC_CONN_HANDSHAKE_TIMEOUT;
    int rc = ok ? 0 : -ENOMEM;
    if (rc == 0 && co.auth == MPROC_AUTH_NONE && is_tcp(cfg->address) &&
        !cfg->opts.allow_tcp_without_authkey)
        rc = -EPERM;
    if (rc == 0 && pipe2(s.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        rc = -errno;
        s.wake[0] = s.wake[1] = -1;
    }
    if (rc == 0 && co.auth == MPROC_AUTH_KEY) {
        s.key = mproc_obj_bytes(co.authkey, co.authkey_len);
    } else if (rc == 0 && co.auth == MPROC_AUTH_PROCESS) {
        unsigned char k[256];
        int kn = mproc_authkey(k, sizeof k);
        if (kn > 0)
            s.key = mproc_obj_bytes(k, (size_t)kn < sizeof k ? (size_t)kn
                                                             : sizeof k);
    }
    if (rc == 0)
        rc = mproc__mgr_regs_new(&s.regs, cfg->opts.types, cfg->opts.ntypes);
    if (rc == 0 && (s.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        rc = -errno;
    if (rc == 0)
        rc = mproc_listener_new(&s.l, cfg->address, &co);
    if (rc == 0) {
        s.address = mproc__mgr_token_address(mproc_listener_address(s.l));
        if (!s.address)
            rc = -ENOMEM;
    }
    if (rc == 0)
        rc = watch(s.ep, mproc_listener_fileno(s.l), EV_LISTENER);
    if (rc == 0)
        rc = watch(s.ep, s.wake[0], EV_HANDSHAKE);
    if (rc == 0)
        rc = watch(s.ep, cfg->ctl_fd, EV_CTL);
    if (rc == 0)
        rc = watch(s.ep, wake_fd, EV_WAKE);
    listening(ctx, rc, rc == 0 ? mproc_listener_address(s.l) : NULL);
    if (rc < 0) {
        server_free(&s);
        return rc;
    }
    struct epoll_event evs[256];
    int wait_ms = -1;
    while (!s.stopping && !(stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE))) {
        int ms = wait_ms;
        if (s.listen_off) { /* look at the listener again when one is old */
            int l = (int)((s.listen_next - mproc_monotonic()) * 1000) + 1;
            if (l < 1)
                l = 1;
            ms = ms < 0 || l < ms ? l : ms;
        }
        int n = epoll_wait(s.ep, evs, 256, ms);
        if (n < 0 && errno != EINTR)
            break;
        bool stopped = false, accept = false, handshaken = false;
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag < EV_FIXED) {
                stopped |= tag == EV_CTL || tag == EV_WAKE;
                accept |= tag == EV_LISTENER;
                handshaken |= tag == EV_HANDSHAKE;
                continue;
            }
            client *cl = evs[i].data.ptr;
            unsigned ev = evs[i].events;
            if (cl->dead)
                continue;
            if (cl->parked || cl->closing) { /* it hung up, or went away */
                if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    drop_client(&s, cl);
                else if (ev & EPOLLOUT)
                    flush(&s, cl);
                continue;
            }
            if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                read_input(&s, cl);
            if (!cl->dead && (ev & EPOLLOUT))
                enqueue(&s, cl);
        }
        if (stopped)
            break;
        check_peers(&s);
        wait_ms = end_round(&s);
        if (s.peers_due) { /* found dying in this round */
            check_peers(&s);
            wait_ms = end_round(&s);
        }
        peers_tidy(&s);
        if (s.npeers) { /* to look at the peers again */
            double at =
                s.soon_at && s.soon_at < s.peers_at ? s.soon_at : s.peers_at;
            int pms = (int)((at - mproc_monotonic()) * 1000) + 1;
            pms = pms < 1 ? 1 : pms;
            if (wait_ms < 0 || wait_ms > pms)
                wait_ms = pms;
        }
        if (handshaken)
            take_ready(&s);
        if (accept || s.listen_off)
            accept_new(&s);
        if (s.listen_off)
            listen_again(&s);
    }
    for (size_t i = 0; i < s.nclients; i++) /* replies still unwritten */
        if (s.clients[i]->out.len > s.clients[i]->out_pos)
            flush(&s, s.clients[i]);
    mproc_listener_close(s.l); /* no new clients while the rest goes */
    server_free(&s);
    return 0;
}

/* ---- fuzzing ---------------------------------------------------------------
 */

/* Serves the requests in data as one client would send them: chunks of
 * [flags u8][length u16 big-endian][request bytes]; flags bit 0 makes the
 * connection a method channel (as after accept_connection), bit 1 starts
 * a new connection. Objects live across the chunks, named 1, 2, 3, ...
 * so that requests can reach them. Replies are read and dropped. */
int mproc__mgr_fuzz(const uint8_t *data, size_t n)
{
    mgr_server s = {0};
    bool ok = server_init(&s, 1 << 16, 0);
    s.fuzz_ids = 1;
    s.address = mproc_obj_str_c("/fuzz");
    mproc_conn *peer = NULL;
    size_t pos = 0;
    while (ok && s.address && !s.stopping && pos + 3 <= n) {
        unsigned flags = data[pos];
        size_t len = (size_t)data[pos + 1] << 8 | data[pos + 2];
        pos += 3;
        if (len > n - pos)
            len = n - pos;
        if (!peer || (flags & 2) || s.nclients == 0) {
            while (s.nclients)
                drop_client(&s, s.clients[0]);
            end_round(&s);
            mproc_conn_free(peer);
            mproc_conn *mine;
            peer = NULL;
            if (mproc_pipe(&mine, &peer, 1) < 0 || add_client(&s, mine) < 0)
                break;
        }
        client *cl = s.clients[0];
        cl->channel = flags & 1;
        cl->closing = false;
        if (mproc_conn_send_bytes(peer, data + pos, len) < 0)
            break;
        pos += len;
        read_input(&s, cl);
        end_round(&s);
        while (peer && mproc_conn_poll(peer, 0) == 1) {
            void *m;
            size_t ml;
            if (mproc_conn_recv_bytes(peer, &m, &ml, 0, 0) < 0)
                break;
            free(m);
        }
    }
    mproc_conn_free(peer);
    server_free(&s);
    return 0;
}
