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
 * Types served: dict, list, Namespace, Value, Array (and the Iterator that
 * a dict's __iter__ returns as a proxy). One thread serves every client
 * (an event loop over all connections); handshakes run in short-lived
 * threads of their own, so a client stalled in its handshake or
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

/*
 * Options of a manager server; a zeroed struct (or NULL) gives the
 * defaults: the process authkey (mproc_authkey()), backlog 128, requests
 * up to MPROC_MANAGER_MAX_REQUEST, handshakes bounded by 10 s.
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
 * client, its process died), -EINVAL. */
MPROC_API int mproc_manager_is_alive(mproc_manager *m);

#ifdef __cplusplus
}
#endif

#endif
