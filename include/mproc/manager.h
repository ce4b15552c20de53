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
 * Semaphore, BoundedSemaphore, Event; a blocking call blocks only its
 * caller, and a client that goes away gives back its Lock and RLock. One thread
 * serves every client (an event loop over all connections); handshakes run in
 * short-lived threads of their own, so a client stalled in its handshake or
 * mid-request delays no one. See docs/manager.md.
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
 * a process returns, -ENOMEM. Nothing is left behind on failure. Not to
 * be called concurrently with fork in another thread.
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
 * serving thread has ended and freed everything (serve); clients'
 * connections are closed and their next calls fail with MPROC_EEOF or
 * -ECONNRESET. Waits up to timeout seconds (< 0 forever), then kills a
 * server process that did not stop. Returns 0, -ETIMEDOUT (a serving
 * thread still running: call again), -EINVAL. Idempotent; a server that
 * a client already shut down returns 0. Not thread safe on one m.
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
 * -ETIMEDOUT, ...); MPROC_EREMOTE; -EINVAL; -ENOMEM.
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
 *   -EINVAL, -ENOMEM, or a connection's code: MPROC_EEOF, -ECONNRESET,
 *       -EPIPE (the server went away: never a hang), -ECONNREFUSED, ...
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
 * goes when no proxy is left) and frees p. NULL ok. */
MPROC_API void mproc_proxy_free(mproc_proxy *p);

/*
 * Typed helpers: each calls one method. Python's exceptions become codes:
 * KeyError, IndexError, AttributeError and ValueError -ENOENT, TypeError
 * MPROC_ETYPE, any other MPROC_EREMOTE; else as mproc_proxy_call.
 *   getitem   p[key] into *out (new reference)     dict, list, Array
 *   setitem   p[key] = value                        dict, list, Array
 *   delitem   del p[key]                            dict, list
 *   len       len(p) (>= 0) or a negative code      dict, list, Array
 *   contains  key in p: 1 or 0, or a negative code  dict, list
 *   append    p.append(item)                        list
 *   value     a copy of the referent (_getvalue())  every type
 *   repr      repr(p) as a malloc'ed string         every type
 * Values are borrowed.
 */
MPROC_API int mproc_proxy_getitem(mproc_proxy *p, const mproc_obj *key,
                                  mproc_obj **out);
MPROC_API int mproc_proxy_setitem(mproc_proxy *p, const mproc_obj *key,
                                  const mproc_obj *value);
MPROC_API int mproc_proxy_delitem(mproc_proxy *p, const mproc_obj *key);
MPROC_API int64_t mproc_proxy_len(mproc_proxy *p);
MPROC_API int mproc_proxy_contains(mproc_proxy *p, const mproc_obj *item);
MPROC_API int mproc_proxy_append(mproc_proxy *p, const mproc_obj *item);
MPROC_API int mproc_proxy_value(mproc_proxy *p, mproc_obj **out);
MPROC_API int mproc_proxy_repr(mproc_proxy *p, char **out);

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
