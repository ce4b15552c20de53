/*
 * manager/server_impl.h - the server's own state, shared by server.c (the
 * event loop, requests, handshakes) and lifetimes.c (client processes,
 * the references they hold, stored proxies that keep objects alive).
 */
#ifndef MPROC_MANAGER_SERVER_IMPL_H
#define MPROC_MANAGER_SERVER_IMPL_H

#include "manager/manager_impl.h"

#include <pthread.h>
#include <sys/types.h>

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

/* lifetimes.c */
/* The watched process pid, or NULL. */
mgr_peer *mproc__mgr_peer_of(mgr_server *s, pid_t pid);
/* The process at the other end of a local connection, watched from now
 * on; 0 when unknown (TCP), this process, or it cannot be watched. */
pid_t mproc__mgr_peer_watch(mgr_server *s, int fd);
/* Process pid's count of references on o changes by d (refs unchanged). */
void mproc__mgr_hold_add(mgr_server *s, mgr_obj *o, pid_t pid, long d);
/* A reference dropped by pid (its own count, else the oldest holder's). */
void mproc__mgr_hold_drop(mgr_server *s, mgr_obj *o, pid_t pid);
/* Frees the objects no reference, stored proxy or pinned reply keeps. */
void mproc__mgr_sweep(mgr_server *s);
/* o has no reference left: freed, unless a stored proxy names it. */
void mproc__mgr_unreferenced(mgr_server *s, mgr_obj *o);
/* The caller's reply r carries proxies: they stay until its next request. */
void mproc__mgr_pin_reply(mgr_server *s, client *cl, const mgr_reply *r);
void mproc__mgr_unpin(mgr_server *s, client *cl);
/* Handles dead client processes (their references go). */
void mproc__mgr_check_peers(mgr_server *s);
/* Stops watching processes with no connection and no reference. */
void mproc__mgr_peers_tidy(mgr_server *s);

/* table.c (mproc__mgr_new_obj and mproc__mgr_lookup: manager_impl.h) */
/* Takes o out of the table (o stays allocated). */
void mproc__mgr_table_remove(mgr_server *s, mgr_obj *o);
/* o's process holds given back, its registered type's object freed, o
 * freed (o already out of the table). */
void mproc__mgr_free_obj(mgr_server *s, mgr_obj *o);

/* handshakes.c */
/* Accepts what waits on the listener, a thread for each handshake; when
 * none is free, stops watching the listener until one is. */
void mproc__mgr_hs_accept(mgr_server *s);
/* Watches the listener again once a handshake thread is free. */
void mproc__mgr_hs_listen_again(mgr_server *s);
/* Joins the handshake threads that ended. */
void mproc__mgr_hs_reap(mgr_server *s);

/* server.c */
/* Takes o out of the table and frees it. */
void mproc__mgr_drop_obj(mgr_server *s, mgr_obj *o);
/* The client with that serial, or NULL. */
client *mproc__mgr_client_of(mgr_server *s, unsigned long serial);

/* requests.c */
/* A traceback text as CPython's format_exc() ends: "<Type>: <message>"
 * (NULL: no memory). */
mproc_obj *mproc__mgr_traceback(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* Appends the frame of reply r to cl's output (r's value taken). 0,
 * -ENOMEM, or -ENOBUFS when cl left more than max_output bytes of
 * replies unread (it is then to be dropped). */
int mproc__mgr_queue_result(mgr_server *s, client *cl, mgr_reply *r);
/* Runs top-level request f. Returns 0 with *r set, 1 for
 * accept_connection (to be answered by the caller), 2 for shutdown,
 * -ENOMEM. */
int mproc__mgr_top_level(mgr_server *s, const char *f, const mproc_obj *args,
                         const mproc_obj *kwds, mgr_reply *r);
/* Calls method name of the object ident names. 0 with *r set (a
 * traceback when there is no such object or method; MGR_PARK when the
 * call waits), or -errno. */
int mproc__mgr_method(mgr_server *s, const mproc_obj *ident, const char *name,
                      const mproc_obj *args, const mproc_obj *kwds,
                      mgr_reply *r);

#endif
