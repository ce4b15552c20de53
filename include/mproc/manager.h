/*
 * mproc/manager.h - a manager server, as multiprocessing.managers'
 * SyncManager: objects that live in one server and are used by its
 * clients through CPython's manager protocol, so that unchanged CPython
 * clients (SyncManager.connect, BaseManager.connect with registered type
 * ids) work against it.
 *
 *   mproc_manager *m;
 *   mproc_manager_start(&m, "127.0.0.1:50000", NULL); // a child process
 *   ... clients connect to mproc_manager_address(m) with the authkey ...
 *   mproc_manager_shutdown(m, 10.0);
 *   mproc_manager_free(m);
 *
 * Clients: mproc_manager_connect (or the handle of a server started here),
 * mproc_manager_create, mproc_proxy_call and typed helpers; proxies pass
 * to children and serve several threads.
 *
 * Types served: dict, list, Namespace, Value, Array (and the Iterator that
 * a dict's __iter__ returns as a proxy), Queue, JoinableQueue, Lock, RLock,
 * Semaphore, BoundedSemaphore, Event, Condition, Barrier, types registered
 * from C (mproc_manager_opts.types: BaseManager.register), and proxies
 * stored in them (which keep what they name alive); a blocking call
 * blocks only its caller, a client that goes away gives back its locks
 * and semaphore units, and a local client process that dies its
 * references (the objects only it referenced are freed). One thread
 * serves every client (an event loop over all connections); handshakes
 * run in short-lived threads of their own, so a client stalled in its
 * handshake or mid-request delays no one. See docs/manager.md.
 */
#ifndef MPROC_MANAGER_H
#define MPROC_MANAGER_H

#include "common.h"
#include "conn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_manager mproc_manager;

/* The listen backlog a manager uses by default (CPython's 16 refuses
 * connections under load). */
#define MPROC_MANAGER_BACKLOG 128
/* Largest request a manager accepts by default (bytes of pickle). */
#define MPROC_MANAGER_MAX_REQUEST (64u << 20)
/* Bytes of replies a client may leave unread by default before the
 * server drops it. */
#define MPROC_MANAGER_MAX_OUTPUT (16u << 20)

/*
 * A method of a type registered from C, run by the server (its one
 * thread: a method must not block) on the object create made (self) with
 * the call's arguments: args a tuple, kwds a dict, both borrowed. Returns
 * 0 with the result in *result (a new reference, stolen; NULL is None);
 * MPROC_EREMOTE with an exception value in *result (stolen; e.g.
 * mproc_obj_reduce("builtins", "ValueError", (message,), NULL, false)),
 * which the client raises (a CPython client as that exception, with its
 * message; the C client as MPROC_EREMOTE or its helpers' codes); any
 * other negative code raises RuntimeError("<code's name>: <its text>")
 * (MemoryError for -ENOMEM).
 */
typedef int (*mproc_manager_fn)(void *self, const mproc_obj *args,
                                const mproc_obj *kwds, mproc_obj **result);

typedef struct mproc_manager_method {
    const char *name; /* what clients call ("increment", "__len__") */
    mproc_manager_fn fn;
    /* CPython's method_to_typeid: NULL, the result is returned as a value;
     * else a type id (registered here or built in, "dict", ...): the
     * server makes an object of that type from the result (create with
     * (result,) as its arguments) and the client gets a proxy to it. */
    const char *typeid;
} mproc_manager_method;

/*
 * A type registered from C (BaseManager.register(typeid, callable,
 * exposed=..., method_to_typeid=...)). A client's create(typeid, *args,
 * **kwds) calls create(args, kwds, &self, &exc): 0 and the object in
 * *self (NULL is fine); MPROC_EREMOTE with an exception value in *exc
 * (stolen), or another code, refuses (the client gets a #TRACEBACK, as
 * from CPython's server). free(self) runs when the last reference to the
 * object goes or the server stops. create NULL: objects with no state.
 * methods ends with an entry whose name is NULL. exposed (NULL-terminated)
 * lists the names clients may call; NULL exposes every method whose name
 * does not start with '_' (CPython's rule). A method named "__repr__"
 * answers repr() and "#GETVALUE" _getvalue() (None without one).
 */
typedef struct mproc_manager_type {
    const char *typeid;
    int (*create)(const mproc_obj *args, const mproc_obj *kwds, void **self,
                  mproc_obj **exc);
    void (*free)(void *self);
    const mproc_manager_method *methods;
    const char *const *exposed;
} mproc_manager_type;

/*
 * Options of a manager server; a zeroed struct (or NULL) gives the
 * defaults: the process authkey (mproc_authkey()), backlog 128, requests
 * up to MPROC_MANAGER_MAX_REQUEST, unread replies up to
 * MPROC_MANAGER_MAX_OUTPUT per client, handshakes bounded by 10 s.
 */
typedef struct mproc_manager_opts {
    /* auth, authkey, authkey_len, timeout (each handshake's bound) as for
     * a listener; backlog <= 0 means MPROC_MANAGER_BACKLOG. */
    mproc_conn_opts conn;
    /* Serve TCP with MPROC_AUTH_NONE anyway (anyone who can reach the
     * port may then use and shut down the manager). */
    int allow_tcp_without_authkey;
    /* Largest request in bytes; 0 means MPROC_MANAGER_MAX_REQUEST. A
     * longer request closes that client's connection. */
    size_t max_request;
    /* Types registered from C, served besides SyncManager's (a type id of
     * both is the registered one). The array is read when the server
     * starts; each type and what it points to must stay valid while the
     * server runs. mproc_manager_start's child finds them again at their
     * addresses in the program (as a process's target): they must be
     * static (a global or static object of the program or of a library
     * it loaded), else start returns MPROC_ERESOLVE. */
    const mproc_manager_type *const *types;
    size_t ntypes;
    /* Bytes of replies a client may leave unread: the server never waits
     * for a client to read, it keeps the replies and writes them when the
     * client's socket takes them; a client that sends a request while more
     * than this is still unread is dropped (its connection closed, what it
     * held given back). One reply of any size always goes out. 0 means
     * MPROC_MANAGER_MAX_OUTPUT. */
    size_t max_output;
} mproc_manager_opts;

/*
 * Starts a manager server in a new child process (the current start
 * method: fork, spawn or forkserver) listening on address (an address
 * string as mproc_listener_new takes: "/path", "@abstract",
 * "host:port", "[::1]:port"; NULL or "" for a fresh abstract name), and
 * returns once it listens. The key is the options' (the process authkey
 * by default; the child has the same). Returns 0 and the manager in *out;
 * -EINVAL (NULL out), -EPERM (TCP without an authkey and without
 * allow_tcp_without_authkey), what mproc_listener_new returns (the
 * child's failure to bind: MPROC_EADDR, -EADDRINUSE, ...), what starting
 * a process returns, MPROC_ERESOLVE (a registered type not static),
 * -EINVAL (a NULL type or type id among opts.types), -ENOMEM. Nothing is left
 * behind on failure. Not to be called concurrently with fork in another thread.
 */
MPROC_API int mproc_manager_start(mproc_manager **out, const char *address,
                                  const mproc_manager_opts *opts);

/*
 * Serves a manager from the current process: a thread of this process
 * runs the server (Python's get_server().serve_forever() in a thread)
 * until mproc_manager_shutdown or a client's shutdown request. Returns as
 * mproc_manager_start (-EAGAIN when no thread can be made). The objects
 * live in this process.
 */
MPROC_API int mproc_manager_serve(mproc_manager **out, const char *address,
                                  const mproc_manager_opts *opts);

/* The address clients connect to, in mproc_listener_address's form
 * ("127.0.0.1:41231", "@mproc-...", "/tmp/sock"). Owned by m. */
MPROC_API const char *mproc_manager_address(const mproc_manager *m);

/* The server's process id (this process's for mproc_manager_serve). */
MPROC_API pid_t mproc_manager_pid(const mproc_manager *m);

/*
 * Stops the server and returns once it and every object it held are
 * gone: the server process has exited and been reaped (start), or the
 * serving thread has ended and freed everything (serve); handshakes in
 * progress are cut short, clients' connections are closed and their
 * waiting and next calls fail with MPROC_EEOF or -ECONNRESET. Waits up to
 * timeout seconds (< 0 forever), then kills a server process that did not stop.
 * Returns 0, -ETIMEDOUT (a serving thread still running: call again), -EINVAL.
 * Idempotent; a server that a client already shut down returns 0. Not thread
 * safe on one m.
 */
MPROC_API int mproc_manager_shutdown(mproc_manager *m, double timeout);

/* Shuts down (waiting up to 10 s; a server process is then killed) and
 * frees m. NULL ok. */
MPROC_API void mproc_manager_free(mproc_manager *m);

/* Whether the server still runs: 1 yes, 0 no (stopped, shut down by a
 * client, its process died; always 0 for mproc_manager_connect's), -EINVAL. */
MPROC_API int mproc_manager_is_alive(mproc_manager *m);

/* ---- clients and proxies ------------------------------------------------ */

/*
 * A proxy: a reference to one object of a manager (CPython's BaseProxy).
 * Method calls take a channel (a connection after accept_connection) from
 * a pool of the manager handle's and put it back, so any number of threads
 * may call through the same or different proxies at once, each on a
 * connection of its own; a forked child opens its own. A proxy holds one
 * reference on the server, taken by create (one connection) and dropped by
 * mproc_proxy_free (one connection).
 */
typedef struct mproc_proxy mproc_proxy;

/*
 * Connects to a running manager (mproc's or CPython's: SyncManager,
 * BaseManager with the type ids you use) at address with the key in opts
 * (as for mproc_client; NULL: the process authkey). Checks that it
 * answers (a dummy request, as BaseManager.connect). Returns 0 and a
 * handle in *out (mproc_manager_free disconnects; it stops nothing);
 * what mproc_client returns (-ECONNREFUSED, -ENOENT, MPROC_EAUTH,
 * -ETIMEDOUT, ...); MPROC_EREMOTE; -EINVAL; -ENOMEM. The handle outlives
 * its server: when a new server starts at the same address, creates and
 * new proxies work again, old proxies return -ESTALE (docs/manager.md,
 * "Reconnecting").
 */
MPROC_API int mproc_manager_connect(mproc_manager **out, const char *address,
                                    const mproc_conn_opts *opts);

/*
 * Creates an object of type typeid ("dict", "list", "Namespace", "Value",
 * "Array", or any type id a CPython server registered) with the
 * arguments args (a tuple or NULL) and keywords kwds (a dict or NULL),
 * both borrowed: Python's manager.dict(...). Works on any handle
 * (started, served or connected). Returns 0 and the proxy in *out (free it
 * with mproc_proxy_free, before or after m); MPROC_EREMOTE when the
 * server refused (an unknown type id, bad arguments: the reason written
 * into err, errcap bytes, may be NULL); a connection's codes; -EINVAL;
 * -ENOMEM. Thread safe.
 */
MPROC_API int mproc_manager_create(mproc_manager *m, mproc_proxy **out,
                                   const char *typeid, const mproc_obj *args,
                                   const mproc_obj *kwds, char *err,
                                   size_t errcap);

/*
 * Calls method on the object with args (a tuple or NULL) and kwds (a dict
 * or NULL), borrowed: p.method(*args, **kwds) in Python. Blocks until the
 * server answers (a blocking method blocks only this caller). Returns:
 *   0   and the result in *result (a new reference; result may be NULL);
 *   1   the method returned a proxy (a dict's __iter__): *result is the
 *       server's (exposed, Token) reply; mproc_proxy_from_reply makes it
 *       a proxy;
 *   MPROC_EREMOTE  the method raised: *result is the exception (a reduce
 *       value: mproc_obj_reduce_name gives "KeyError", its args the
 *       message), or the server could not serve the call (a method not
 *       exposed, a value it cannot decode): *result is the traceback text;
 *       err gets the exception's repr ("KeyError('x')") or the
 *       traceback's last line; a reply mproc cannot decode (an exception
 *       of a class off docs/values.md's allow-list) is MPROC_EREMOTE with
 *       *result NULL and err naming the class ("global foo.Error is not
 *       allowed ...");
 *   MPROC_EEMPTY, MPROC_EFULL  the method raised queue.Empty / queue.Full
 *       (a Queue's get / put that timed out or would block): *result is
 *       the exception;
 *   -ESTALE  the server does not have the object: the server at the
 *       address went away since the proxy was made (a restarted one is
 *       not asked), or it answered that it has no such object;
 *   -EINVAL, -ENOMEM, or a connection's code: MPROC_EEOF, -ECONNRESET,
 *       -EPIPE (the server went away: never a hang; the call is not
 *       retried, and the handle's idle channels to a dead server are
 *       dropped, so the next call dials anew), -ECONNREFUSED, ...
 * Thread safe.
 */
MPROC_API int mproc_proxy_call(mproc_proxy *p, const char *method,
                               const mproc_obj *args, const mproc_obj *kwds,
                               mproc_obj **result, char *err, size_t errcap);

/* A proxy for the object a call that returned 1 handed out; it takes over
 * the reference the server keeps for it. 0, -EINVAL, -ENOMEM. */
MPROC_API int mproc_proxy_from_reply(mproc_proxy *p, const mproc_obj *reply,
                                     mproc_proxy **out);

/* The type id and the server's ident of the object (owned by p). */
MPROC_API const char *mproc_proxy_typeid(const mproc_proxy *p);
MPROC_API const char *mproc_proxy_ident(const mproc_proxy *p);

/* Drops the proxy's reference on the server (one connection; the object
 * goes when no proxy is left) and frees p; a proxy whose server went away
 * (-ESTALE) sends nothing. NULL ok. */
MPROC_API void mproc_proxy_free(mproc_proxy *p);

/*
 * Typed helpers: each calls one method of the referent (Python's name in
 * the helper's name; where types share a method name, get, set, clear,
 * wait, the type comes first: mproc_proxy_queue_get). They block as the
 * method does (only this caller) and are thread safe as mproc_proxy_call.
 * Values passed are borrowed; values returned in *out are new references
 * (*out NULL on failure). Python's exceptions become codes:
 *   - dict, list, Array, Namespace, Value, Queue, Event: KeyError,
 *     IndexError, AttributeError and ValueError -ENOENT (a missing key or
 *     attribute, an index out of range, an item not in the list),
 *     TypeError MPROC_ETYPE;
 *   - Lock, RLock, Semaphore, BoundedSemaphore, Condition, Barrier (as
 *     mproc's own in sync.h): RuntimeError (releasing a lock not held,
 *     waiting on a condition without its lock) MPROC_ENOTOWNER, ValueError
 *     (a BoundedSemaphore released too many times) MPROC_EBOUND,
 *     threading.BrokenBarrierError MPROC_EBROKEN;
 *   - Queue: queue.Empty MPROC_EEMPTY, queue.Full MPROC_EFULL,
 *     ValueError from task_done MPROC_ETASKDONE;
 *   - any other exception or traceback MPROC_EREMOTE; NULL arguments
 *     -EINVAL; else a connection's codes, as mproc_proxy_call (the server
 *     gone: MPROC_EEOF, -ECONNRESET, -EPIPE, never a hang).
 * Timeouts are seconds: < 0 waits as long as it takes, 0 does not wait
 * (Python's block=False), > 0 waits up to that long (on the server's clock).
 *
 * Every type:
 *   getitem   p[key] into *out                     dict, list, Array
 *   setitem   p[key] = value                       dict, list, Array
 *   delitem   del p[key]                           dict, list
 *   len       len(p) (>= 0)                        dict, list, Array
 *   contains  key in p: 1 or 0                     dict, list
 *   value     a copy of the referent (_getvalue()) every type
 *   repr      repr(p) as a malloc'ed string        every type
 */
MPROC_API int mproc_proxy_getitem(mproc_proxy *p, const mproc_obj *key,
                                  mproc_obj **out);
MPROC_API int mproc_proxy_setitem(mproc_proxy *p, const mproc_obj *key,
                                  const mproc_obj *value);
MPROC_API int mproc_proxy_delitem(mproc_proxy *p, const mproc_obj *key);
MPROC_API int64_t mproc_proxy_len(mproc_proxy *p);
MPROC_API int mproc_proxy_contains(mproc_proxy *p, const mproc_obj *item);
MPROC_API int mproc_proxy_value(mproc_proxy *p, mproc_obj **out);
MPROC_API int mproc_proxy_repr(mproc_proxy *p, char **out);

/*
 * dict:
 *   get         d.get(key, dflt) (dflt NULL: None) into *out
 *   keys, items, values   a list of the keys, of (key, value) tuples, of
 *               the values into *out
 *   update      d.update(other): other a dict or a list of pairs
 *   pop         d.pop(key) into *out (-ENOENT: no such key); on a list,
 *               l.pop(index) (an int value), l.pop() when key is NULL
 *   setdefault  d.setdefault(key, dflt) (dflt NULL: None) into *out
 *   clear       d.clear()
 *   copy        d.copy(): a dict value into *out
 */
MPROC_API int mproc_proxy_get(mproc_proxy *p, const mproc_obj *key,
                              const mproc_obj *dflt, mproc_obj **out);
MPROC_API int mproc_proxy_keys(mproc_proxy *p, mproc_obj **out);
MPROC_API int mproc_proxy_items(mproc_proxy *p, mproc_obj **out);
MPROC_API int mproc_proxy_values(mproc_proxy *p, mproc_obj **out);
MPROC_API int mproc_proxy_update(mproc_proxy *p, const mproc_obj *other);
MPROC_API int mproc_proxy_pop(mproc_proxy *p, const mproc_obj *key,
                              mproc_obj **out);
MPROC_API int mproc_proxy_setdefault(mproc_proxy *p, const mproc_obj *key,
                                     const mproc_obj *dflt, mproc_obj **out);
MPROC_API int mproc_proxy_clear(mproc_proxy *p);
MPROC_API int mproc_proxy_copy(mproc_proxy *p, mproc_obj **out);

/* A slice bound or step left out (Python's None): l[MPROC_MANAGER_SLICE_NONE:2]
 * is l[:2]. */
#define MPROC_MANAGER_SLICE_NONE INT64_MIN

/*
 * list (getitem, setitem, delitem, len, contains, pop above):
 *   append    l.append(item)
 *   extend    l.extend(items): a list or tuple (or a range value)
 *   insert    l.insert(index, item) (index clamped, as Python's)
 *   remove    l.remove(item) (-ENOENT: not in the list)
 *   index     l.index(item): its index (>= 0), or -ENOENT
 *   count     l.count(item) (>= 0)
 *   sort      l.sort(reverse=reverse) (MPROC_ETYPE: unorderable items)
 *   reverse   l.reverse()
 *   getslice  l[start:stop:step] into *out (a list; an array.array value
 *             for an Array); each of start, stop, step may be
 *             MPROC_MANAGER_SLICE_NONE
 *   setslice  l[start:stop:step] = items (a list or tuple; an extended
 *             slice needs as many items as it selects: -ENOENT)
 *   delslice  del l[start:stop:step]
 */
MPROC_API int mproc_proxy_append(mproc_proxy *p, const mproc_obj *item);
MPROC_API int mproc_proxy_extend(mproc_proxy *p, const mproc_obj *items);
MPROC_API int mproc_proxy_insert(mproc_proxy *p, int64_t index,
                                 const mproc_obj *item);
MPROC_API int mproc_proxy_remove(mproc_proxy *p, const mproc_obj *item);
MPROC_API int64_t mproc_proxy_index(mproc_proxy *p, const mproc_obj *item);
MPROC_API int64_t mproc_proxy_count(mproc_proxy *p, const mproc_obj *item);
MPROC_API int mproc_proxy_sort(mproc_proxy *p, bool reverse);
MPROC_API int mproc_proxy_reverse(mproc_proxy *p);
MPROC_API int mproc_proxy_getslice(mproc_proxy *p, int64_t start, int64_t stop,
                                   int64_t step, mproc_obj **out);
MPROC_API int mproc_proxy_setslice(mproc_proxy *p, int64_t start, int64_t stop,
                                   int64_t step, const mproc_obj *items);
MPROC_API int mproc_proxy_delslice(mproc_proxy *p, int64_t start, int64_t stop,
                                   int64_t step);

/*
 * Namespace: ns.name into *out (-ENOENT: no such attribute), ns.name =
 * value, del ns.name. Names starting with '_' are the proxy's own in
 * Python (ns._x never reaches the server); here they go to the server.
 */
MPROC_API int mproc_proxy_getattr(mproc_proxy *p, const char *name,
                                  mproc_obj **out);
MPROC_API int mproc_proxy_setattr(mproc_proxy *p, const char *name,
                                  const mproc_obj *value);
MPROC_API int mproc_proxy_delattr(mproc_proxy *p, const char *name);

/* Value: v.value (get) into *out; v.value = value (set). An Array's items
 * are getitem, setitem, len and getslice above. */
MPROC_API int mproc_proxy_value_get(mproc_proxy *p, mproc_obj **out);
MPROC_API int mproc_proxy_value_set(mproc_proxy *p, const mproc_obj *value);

/*
 * Queue, JoinableQueue:
 *   queue_put        q.put(item, block, timeout): 0, MPROC_EFULL (still
 *                    full when the timeout ran out, or at once for 0)
 *   queue_get        q.get(block, timeout) into *out: 0, MPROC_EEMPTY
 *   queue_qsize      q.qsize() (>= 0)
 *   queue_empty, queue_full   1 or 0
 *   queue_task_done  q.task_done(): 0, MPROC_ETASKDONE (more than were put)
 *   queue_join       q.join(): blocks until every item put is done
 */
MPROC_API int mproc_proxy_queue_put(mproc_proxy *p, const mproc_obj *item,
                                    double timeout);
MPROC_API int mproc_proxy_queue_get(mproc_proxy *p, double timeout,
                                    mproc_obj **out);
MPROC_API int64_t mproc_proxy_queue_qsize(mproc_proxy *p);
MPROC_API int mproc_proxy_queue_empty(mproc_proxy *p);
MPROC_API int mproc_proxy_queue_full(mproc_proxy *p);
MPROC_API int mproc_proxy_queue_task_done(mproc_proxy *p);
MPROC_API int mproc_proxy_queue_join(mproc_proxy *p);

/*
 * Lock, RLock, Semaphore, BoundedSemaphore, Condition (its lock):
 *   acquire  acquire(block, timeout): 0 acquired, -ETIMEDOUT not in time
 *   release  release(): 0, MPROC_ENOTOWNER (a lock not held by this
 *            client), MPROC_EBOUND (a BoundedSemaphore at its bound)
 * A lock is held by the channel the acquire went over, not the thread (see
 * docs/manager.md): release from the thread that acquired.
 */
MPROC_API int mproc_proxy_acquire(mproc_proxy *p, double timeout);
MPROC_API int mproc_proxy_release(mproc_proxy *p);

/* Event: set, clear, is_set (1 or 0), wait (0 set, -ETIMEDOUT). */
MPROC_API int mproc_proxy_event_set(mproc_proxy *p);
MPROC_API int mproc_proxy_event_clear(mproc_proxy *p);
MPROC_API int mproc_proxy_event_is_set(mproc_proxy *p);
MPROC_API int mproc_proxy_event_wait(mproc_proxy *p, double timeout);

/*
 * Condition (acquire and release above):
 *   cond_wait        wait(timeout) with the condition's lock held: 0
 *                    notified, -ETIMEDOUT, MPROC_ENOTOWNER (lock not held)
 *   cond_notify      notify(n) (n >= 0), cond_notify_all notify_all():
 *                    0, MPROC_ENOTOWNER (lock not held)
 * The wait, like the acquire before it, must come from the same thread
 * (the channel that holds the lock).
 */
MPROC_API int mproc_proxy_cond_wait(mproc_proxy *p, double timeout);
MPROC_API int mproc_proxy_cond_notify(mproc_proxy *p, int64_t n);
MPROC_API int mproc_proxy_cond_notify_all(mproc_proxy *p);

/*
 * Barrier:
 *   barrier_wait       wait(timeout): the arrival index (0 .. parties-1),
 *                      or MPROC_EBROKEN (broken, reset or aborted while
 *                      waiting, or this wait's timeout ran out: Python
 *                      breaks the barrier then and raises
 *                      BrokenBarrierError, which is all a client sees)
 *   barrier_abort, barrier_reset   abort(), reset()
 *   barrier_parties, barrier_n_waiting   the attributes (>= 0)
 *   barrier_broken     1 or 0
 */
MPROC_API int mproc_proxy_barrier_wait(mproc_proxy *p, double timeout);
MPROC_API int mproc_proxy_barrier_abort(mproc_proxy *p);
MPROC_API int mproc_proxy_barrier_reset(mproc_proxy *p);
MPROC_API int64_t mproc_proxy_barrier_parties(mproc_proxy *p);
MPROC_API int64_t mproc_proxy_barrier_n_waiting(mproc_proxy *p);
MPROC_API int mproc_proxy_barrier_broken(mproc_proxy *p);

/*
 * A proxy as a value, to send over a connection (mproc_conn_send_obj) to
 * a Python process or another C process: what CPython pickles for a
 * proxy, multiprocessing.managers.RebuildProxy(cls, Token(typeid,
 * address, ident), 'pickle', {}) with cls the proxy class SyncManager
 * uses for the type id (DictProxy, ListProxy, ...; AutoProxy for others).
 * No key travels (as CPython's outside spawning): the receiver connects
 * with its own (Python: its current_process().authkey). The value holds
 * no reference on the server: keep p until the receiver made its proxy.
 * Returns 0 and a new value in *out; -EINVAL (NULL p or out); -ENOMEM.
 * Thread safe; makes no connection.
 */
MPROC_API int mproc_proxy_to_obj(const mproc_proxy *p, mproc_obj **out);

/*
 * A proxy made from such a value (mproc_proxy_to_obj's, or a Python
 * proxy received with mproc_conn_recv_obj), as RebuildProxy: it connects
 * to the Token's address with opts (NULL: the key in the value's
 * "authkey" keyword if any, else the process authkey) and takes a
 * reference of its own on the object (an incref: one connection), dropped
 * by mproc_proxy_free. obj is borrowed. Returns 0 and the proxy in *out;
 * -EINVAL (NULL out or obj); MPROC_ETYPE (not a RebuildProxy value of a
 * manager proxy class with a Token (str type id, an address: a path, an
 * abstract name or (host, port), a str ident) and serializer 'pickle');
 * -ESTALE (the server does not know the object: freed, or the server was
 * restarted); MPROC_EREMOTE (it refused the incref otherwise); a
 * connection's codes (-ECONNREFUSED, -ENOENT, MPROC_EAUTH, ...);
 * -ENOMEM. Blocks for that one connection. Thread safe.
 */
MPROC_API int mproc_proxy_from_obj(mproc_proxy **out, const mproc_obj *obj,
                                   const mproc_conn_opts *opts);

/*
 * Passing a proxy to a child (mproc_args): under fork the child uses the
 * very proxy (opening channels of its own; keep the parent's proxy until
 * the child is done); under spawn and forkserver the child gets a proxy of
 * its own to the same object, holding a reference of its own, dropped
 * when its target returns. The manager's address and key travel with it.
 */
MPROC_API extern const mproc_kind mproc_proxy_kind;
MPROC_API int mproc_args_add_proxy(mproc_args *a, mproc_proxy *p);
MPROC_API mproc_proxy *mproc_args_proxy(const mproc_args *a, size_t i);

#ifdef __cplusplus
}
#endif

#endif
