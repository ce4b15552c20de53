/*
 * mproc/conn.h - connections, as multiprocessing.Pipe, Connection,
 * connection.Listener and connection.Client.
 *
 *   mproc_conn *a, *b;
 *   mproc_pipe(&a, &b, 1);                     // duplex socketpair
 *   mproc_conn_send_bytes(a, "hi", 2);
 *   void *msg; size_t n;
 *   mproc_conn_recv_bytes(b, &msg, &n, 0, -1); // msg is malloc'ed
 *   free(msg);
 *   mproc_conn_free(a); mproc_conn_free(b);
 *
 * Wire format: byte for byte CPython's (multiprocessing.connection): each
 * message is a 4-byte big-endian signed length and the payload; messages
 * above 0x7fffffff bytes use ff ff ff ff and an 8-byte big-endian length.
 * A Listener/Client pair authenticates with CPython's HMAC challenge
 * handshake (3.12+ "{sha256}" form, and the 3.6-3.11 HMAC-MD5 form), so an
 * mproc process can talk to a Python process with send_bytes/recv_bytes.
 * (Python's send()/recv() pickle; the bytes are the pickle.)
 *
 * Errors that end a connection's usefulness (a truncated frame, a negative
 * or oversize length, a failed send half-way through a message) are sticky:
 * later receives (or sends) return the same code. Each has its own code:
 *   MPROC_EEOF    peer closed cleanly between messages (Python's EOFError)
 *   MPROC_ETRUNC  end of file inside a header or payload
 *   MPROC_EPROTO  a negative length, or garbage during the handshake
 *   MPROC_ETOOBIG a length over the caller's maximum (or the handshake's
 *                 256-byte limit)
 *   MPROC_EBUFSIZE the caller's buffer is too short (NOT sticky; the
 *                 message is kept for the next call)
 *   MPROC_EAUTH   wrong authentication key (both sides see it)
 *   -EPIPE / -ECONNRESET the peer went away while sending
 *   -ENOMEM or another -errno from a receive (it cannot go on mid-message)
 * A handshake (listener accept, client connect, mproc_conn_deliver /
 * answer) returns -ELIBACC when libcrypto (loaded at the first handshake)
 * cannot be loaded.
 *
 * Threads: every function may be called from several threads; sends are
 * serialized with sends and receives with receives, so messages never
 * interleave. Close/free wait for calls in progress on the same
 * connection, so do not close a connection another thread is blocked on.
 * Fork: a forked child may use the connections it inherited (both
 * processes then share the stream, as in Python); do not fork while
 * another thread is inside a call on a connection the child will use.
 * SIGPIPE is never raised by the library: a send to a closed peer returns
 * -EPIPE.
 */
#ifndef MPROC_CONN_H
#define MPROC_CONN_H

#include "args.h"
#include "common.h"
#include "obj.h"
#include <sys/socket.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_conn mproc_conn;
typedef struct mproc_listener mproc_listener;

/* Largest payload a message may carry (the 8-byte length form's limit as
 * mproc accepts it). */
#define MPROC_CONN_MAX_MESSAGE ((uint64_t)INT64_MAX)

/* Flags of mproc_conn_from_fd / mproc_conn_flags. */
#define MPROC_CONN_READABLE 0x1
#define MPROC_CONN_WRITABLE 0x2

/* ---- pipes and plain connections -------------------------------------- */

/*
 * Creates a pair of connected connections (multiprocessing.Pipe).
 * duplex != 0: an AF_UNIX socketpair, both ends read and write.
 * duplex == 0: a pipe(2); *a is the read end and *b the write end (the
 * order Python returns them in).
 * All fds are close-on-exec. Returns 0, -EINVAL, -EMFILE, -ENFILE, -ENOMEM.
 * On failure nothing is left open.
 */
MPROC_API int mproc_pipe(mproc_conn **a, mproc_conn **b, int duplex);

/*
 * Wraps an open fd (a stream socket or a pipe end) as a connection; flags
 * are MPROC_CONN_READABLE and/or MPROC_CONN_WRITABLE. On success the
 * connection owns fd (it closes it); on failure fd is left open.
 * Returns 0, -EINVAL (fd < 0, no flag), -ENOMEM.
 */
MPROC_API int mproc_conn_from_fd(mproc_conn **out, int fd, int flags);

/*
 * Closes the fd (once; later calls are no-ops) and keeps the object:
 * later calls on it return MPROC_ECLOSED. Waits for calls in progress in
 * other threads. Returns 0, or -errno from close(2) (the fd is closed
 * anyway).
 */
MPROC_API int mproc_conn_close(mproc_conn *c);

/* Closes (if needed) and frees. NULL ok. In a forked child, closes only
 * the child's copy of the fd: the parent's connection is unaffected. */
MPROC_API void mproc_conn_free(mproc_conn *c);

/* The fd (for poll, epoll or mproc_wait), or MPROC_ECLOSED. Owned by c. */
MPROC_API int mproc_conn_fileno(const mproc_conn *c);

/* MPROC_CONN_READABLE | MPROC_CONN_WRITABLE bits (0 when closed). */
MPROC_API int mproc_conn_flags(const mproc_conn *c);

/* 1 when closed by mproc_conn_close, else 0. */
MPROC_API int mproc_conn_closed(const mproc_conn *c);

/* ---- sending ----------------------------------------------------------- */

/*
 * Sends one message of n bytes (n may be 0). Header and payload leave in a
 * single writev/sendmsg when the kernel takes them whole, so a message of
 * at most PIPE_BUF bytes (header included) on a pipe is atomic even with
 * several writers. Blocks while the peer's buffer is full (see
 * mproc_conn_set_send_timeout). Returns 0, MPROC_ECLOSED, -EBADF (the
 * connection is read-only), -EINVAL (buf NULL with n > 0), -EPIPE /
 * -ECONNRESET (peer gone), -ETIMEDOUT, MPROC_ETOOBIG (n over
 * MPROC_CONN_MAX_MESSAGE). If a send fails after part of the message left,
 * the connection can no longer send (the stream is out of step) and every
 * later send returns that error.
 */
MPROC_API int mproc_conn_send_bytes(mproc_conn *c, const void *buf, size_t n);

/* Size argument of mproc_conn_send_bytes_range meaning "to the end". */
#define MPROC_CONN_ALL SIZE_MAX

/*
 * Python's send_bytes(buf, offset, size): sends buf[offset, offset+size)
 * of a buffer of buflen bytes; size MPROC_CONN_ALL means up to buflen.
 * -EINVAL when offset > buflen or offset + size > buflen (Python's
 * ValueError cases). Otherwise as mproc_conn_send_bytes.
 */
MPROC_API int mproc_conn_send_bytes_range(mproc_conn *c, const void *buf,
                                          size_t buflen, size_t offset,
                                          size_t size);

/* Sends the concatenation of iov[0..iovcnt) as ONE message (no copy).
 * iovcnt at most 64. Otherwise as mproc_conn_send_bytes. */
MPROC_API int mproc_conn_send_bytesv(mproc_conn *c, const struct iovec *iov,
                                     int iovcnt);

/*
 * Bounds every later send on c (seconds; negative, the default, waits
 * forever; 0 means only what fits without waiting). A send that times out
 * before any byte left returns -ETIMEDOUT and leaves c usable; one that
 * times out half-way returns -ETIMEDOUT and c can no longer send. Returns
 * 0 or MPROC_ECLOSED.
 */
MPROC_API int mproc_conn_set_send_timeout(mproc_conn *c, double timeout);

/* ---- receiving --------------------------------------------------------- */

/*
 * Receives one message into a fresh buffer: *out (free it with free();
 * one extra NUL byte follows the payload, so text can be used as a
 * string) and *len. maxlen > 0 limits the payload: a longer message fails
 * with MPROC_ETOOBIG and leaves c unreadable (Python: "bad message
 * length"); 0 means no limit. timeout in seconds (< 0 forever, 0 poll).
 * Returns 0, -ETIMEDOUT (nothing lost: a message that had partly arrived is
 * kept and completed by the next receive), MPROC_EEOF, MPROC_ETRUNC,
 * MPROC_EPROTO, MPROC_ETOOBIG, MPROC_ECLOSED, -EBADF (write-only), -ENOMEM,
 * -errno. A huge length from the peer is not trusted for allocation: the
 * buffer grows as bytes arrive.
 */
MPROC_API int mproc_conn_recv_bytes(mproc_conn *c, void **out, size_t *len,
                                    size_t maxlen, double timeout);

/*
 * Receives one message into buf (cap bytes); stores its length in *len.
 * If the message is longer than cap: returns MPROC_EBUFSIZE, stores the
 * size needed in *len, and keeps the message: the next receive (of either
 * kind) returns it. Otherwise as mproc_conn_recv_bytes.
 */
MPROC_API int mproc_conn_recv_bytes_into(mproc_conn *c, void *buf, size_t cap,
                                         size_t *len, double timeout);

/*
 * Whether a message can be received (Python's poll(timeout)): returns 1
 * when data is available (or end of file / an error: the next receive
 * then reports it), 0 on timeout, MPROC_ECLOSED, -EBADF (write-only),
 * -errno. Waits up to timeout seconds (< 0 forever).
 */
MPROC_API int mproc_conn_poll(mproc_conn *c, double timeout);

/* ---- objects (Python's send and recv) ---------------------------------- */

/*
 * Python's send(obj): sends o as one message holding its pickle, which
 * CPython's Connection.recv() (3.6 to 3.13) unpickles to an equal value
 * of the same types. The protocol is the connection's (see below). o is
 * only read. Returns 0, or what mproc_pickle_dumps (-ELOOP, -EOVERFLOW,
 * -ENOMEM) and mproc_conn_send_bytes return. Thread safe (serialized with
 * other sends); blocks as send_bytes.
 */
MPROC_API int mproc_conn_send_obj(mproc_conn *c, const mproc_obj *o);

/*
 * Python's recv(): receives one message and unpickles it into *out (a new
 * reference; mproc_obj_unref it), whatever CPython's send(obj) wrote for
 * the types of mproc_obj (a Python exception object arrives as a reduce
 * value: mproc_obj_is_exception, mproc_obj_repr). Nothing in the message
 * runs code (docs/values.md). timeout as mproc_conn_recv_bytes. Returns 0;
 * MPROC_EPICKLE for a message that is no pickle mproc accepts (it is
 * consumed; the connection stays usable), with the reason written into
 * err (errcap bytes, NUL-terminated; err may be NULL); or what
 * mproc_conn_recv_bytes returns. *out is NULL on failure. Thread safe
 * (serialized with other receives).
 */
MPROC_API int mproc_conn_recv_obj(mproc_conn *c, mproc_obj **out,
                                  double timeout, char *err, size_t errcap);

/*
 * The pickle protocol send_obj writes: 2 to 5, or -1 for the highest.
 * The default is 4 (what CPython 3.8+ writes; 3.6 and 3.7 read it too);
 * a peer running Python 2.7 needs 2. Returns 0, or -EINVAL. Thread safe.
 */
MPROC_API int mproc_conn_set_pickle_protocol(mproc_conn *c, int protocol);
/* The protocol send_obj writes (2 to 5), or -EINVAL for NULL. */
MPROC_API int mproc_conn_pickle_protocol(const mproc_conn *c);

/* ---- listeners and clients ------------------------------------------- */

/*
 * Addresses are strings:
 *   "/path/sock", "./rel", "unix:any-path"  AF_UNIX filesystem socket
 *   "@name"                                 Linux abstract socket "\0name"
 *   "host:port", "1.2.3.4:port"             AF_INET (port 0: any free one)
 *   "[::1]:port", "[host]:port"             AF_INET6
 *   any other string without ':'            AF_UNIX path (as Python's str)
 *   \\.\pipe\name (two backslashes first) refused with MPROC_EADDR: a
 *                                           Windows named pipe, which
 *                                           CPython refuses on Linux too
 *   NULL or ""                              (listener only) a fresh
 *                                           abstract name, as Python's
 *                                           arbitrary_address
 * Names are resolved with getaddrinfo (the first result is used).
 * For abstract names holding NUL bytes, use the _sockaddr variants.
 */

/* Authentication mode of mproc_conn_opts. */
typedef enum mproc_auth {
    MPROC_AUTH_PROCESS = 0, /* the process authkey (mproc_authkey()) */
    MPROC_AUTH_NONE = 1,    /* no handshake (Python's authkey=None) */
    MPROC_AUTH_KEY = 2      /* authkey / authkey_len below */
} mproc_auth;

/* Default bound on connect + handshake, seconds. */
#define MPROC_CONN_HANDSHAKE_TIMEOUT 10.0

/*
 * Options for listeners and clients; a zeroed struct (or NULL) gives the
 * defaults: the process authkey, backlog 64, handshake timeout 10 s.
 */
typedef struct mproc_conn_opts {
    mproc_auth auth;
    const void *authkey; /* MPROC_AUTH_KEY: the key (copied), any length */
    size_t authkey_len;
    int backlog; /* listener: listen(2) backlog; <= 0 means 64 */
    /* Bound on connect (client) and on each handshake, seconds: 0 means
     * MPROC_CONN_HANDSHAKE_TIMEOUT, < 0 waits forever (not advised: a
     * peer without a key would hang the handshake, as in CPython). */
    double timeout;
} mproc_conn_opts;

/*
 * Creates a listening socket bound to address (see above); SO_REUSEADDR on
 * TCP. A filesystem socket is unlinked by mproc_listener_close/free in the
 * process that created it (only if the path still names this socket).
 * Returns 0, MPROC_EADDR (unparsable or unresolvable address, path too
 * long), -EADDRINUSE, -EACCES, -EMFILE, -ENOMEM, -EINVAL, -errno.
 */
MPROC_API int mproc_listener_new(mproc_listener **out, const char *address,
                                 const mproc_conn_opts *opts);

/* As mproc_listener_new with a raw socket address (any AF_UNIX name,
 * including abstract names holding NUL bytes; AF_INET; AF_INET6). */
MPROC_API int mproc_listener_new_sockaddr(mproc_listener **out,
                                          const struct sockaddr *sa,
                                          socklen_t salen,
                                          const mproc_conn_opts *opts);

/*
 * Accepts one connection and, unless auth is MPROC_AUTH_NONE, runs the
 * handshake as the server (challenge first, then answer), bounded by the
 * options' timeout. Waits up to timeout seconds for a client (< 0
 * forever). Stores a new connection in *out (free it with
 * mproc_conn_free). Returns 0, -ETIMEDOUT (no client), MPROC_EAUTH (wrong
 * key), MPROC_EPROTO (garbage), MPROC_ETOOBIG (over-long handshake
 * message), MPROC_EEOF / MPROC_ETRUNC / -ECONNRESET (client went away),
 * -ETIMEDOUT (client stalled in the handshake), -EMFILE, MPROC_ECLOSED.
 * A failed handshake closes that connection only; the listener keeps
 * accepting. Thread safe: several threads may accept at once.
 */
MPROC_API int mproc_listener_accept(mproc_listener *l, mproc_conn **out,
                                    double timeout);

/*
 * A server that must not let one client hold up the others (a client that
 * connects and then trickles its handshake bytes holds mproc_listener_accept
 * for the whole handshake timeout) splits accept in two:
 *
 *   for (;;) {                       // the accepting thread
 *       mproc_conn *c;
 *       if (mproc_listener_accept_pending(l, &c, -1) == 0)
 *           hand_to_a_thread(c);     // which runs:
 *   }
 *   if (mproc_listener_authenticate(l, c, 10.0) == 0) serve(c);
 *
 * accept_pending accepts one connection without any handshake: Returns 0
 * and the connection in *out, -ETIMEDOUT (no client), -EMFILE,
 * MPROC_ECLOSED, -EINVAL. Until authenticate has returned 0 on it, the
 * connection must not be used for anything else.
 * authenticate runs the listener's handshake (its key; nothing under
 * MPROC_AUTH_NONE) on c, bounded by timeout seconds (< 0 forever), and
 * returns what mproc_listener_accept returns for the handshake; on
 * failure it frees c. Handshakes in different threads run concurrently.
 * Both are thread safe.
 */
MPROC_API int mproc_listener_accept_pending(mproc_listener *l, mproc_conn **out,
                                            double timeout);
MPROC_API int mproc_listener_authenticate(mproc_listener *l, mproc_conn *c,
                                          double timeout);

/* The bound address as a string in the form above, with the real port
 * for port 0 ("127.0.0.1:41231"). Valid as long as l. */
MPROC_API const char *mproc_listener_address(const mproc_listener *l);

/* The listening fd (readable when a client waits), or MPROC_ECLOSED. */
MPROC_API int mproc_listener_fileno(const mproc_listener *l);

/* Closes the socket (unlinking its path, see above). Idempotent. Returns
 * 0. mproc_listener_free closes and frees; NULL ok. */
MPROC_API int mproc_listener_close(mproc_listener *l);
MPROC_API void mproc_listener_free(mproc_listener *l);

/*
 * Connects to a listener at address and, unless auth is MPROC_AUTH_NONE,
 * runs the handshake as the client (answer first, then challenge). The
 * whole call is bounded by the options' timeout. Returns 0 and a new
 * connection in *out, MPROC_EADDR, -ECONNREFUSED, -ENOENT, -ETIMEDOUT,
 * MPROC_EAUTH, MPROC_EPROTO, MPROC_ETOOBIG, MPROC_EEOF, MPROC_ETRUNC,
 * -EMFILE, -ENOMEM, -errno. A listener that never sends a challenge (it
 * has no key) makes the call fail with -ETIMEDOUT instead of hanging.
 */
MPROC_API int mproc_client(mproc_conn **out, const char *address,
                           const mproc_conn_opts *opts);
MPROC_API int mproc_client_sockaddr(mproc_conn **out, const struct sockaddr *sa,
                                    socklen_t salen,
                                    const mproc_conn_opts *opts);

/*
 * The two halves of the handshake on any connection (Python's
 * deliver_challenge / answer_challenge), for protocols built on top.
 * key may be NULL when keylen is 0. Each reads at most 256 bytes per
 * message and gives up at the timeout (seconds, < 0 forever). Return 0,
 * MPROC_EAUTH, MPROC_EPROTO, MPROC_ETOOBIG, MPROC_EEOF, MPROC_ETRUNC,
 * -ETIMEDOUT, -ELIBACC (libcrypto cannot be loaded for the HMAC), -errno.
 * After a failure the connection should be freed.
 */
MPROC_API int mproc_conn_deliver_challenge(mproc_conn *c, const void *key,
                                           size_t keylen, double timeout);
MPROC_API int mproc_conn_answer_challenge(mproc_conn *c, const void *key,
                                          size_t keylen, double timeout);

/* ---- objects to a running process ------------------------------------- */

/*
 * Sends a duplicate of fd to the process at the other end of c (a Unix
 * socket connection: a Pipe, or a Listener/Client on an AF_UNIX address),
 * as CPython's multiprocessing.reduction.send_handle does, byte for byte:
 * a Python peer takes it with recv_handle(conn). fd stays the caller's.
 * Blocks up to timeout seconds (< 0 forever). Returns 0, -ENOTSOCK (not a
 * socket), MPROC_ECLOSED, -EBADF (not writable), -ETIMEDOUT, -EPIPE,
 * -EINVAL, -errno. Thread safe (serialized with other sends).
 */
MPROC_API int mproc_conn_send_handle(mproc_conn *c, int fd, double timeout);

/*
 * Receives an fd sent by send_handle (ours or CPython's), close-on-exec,
 * into *fd (the caller's to close). Returns 0, -ETIMEDOUT, MPROC_EEOF,
 * MPROC_EPROTO (no fd, or more fds than one, came: none is kept), -EBUSY
 * (a message is half received on c), -ENOTSOCK, MPROC_ECLOSED, -EINVAL,
 * -errno. Thread safe (serialized with other receives).
 */
MPROC_API int mproc_conn_recv_handle(mproc_conn *c, int *fd, double timeout);

/*
 * Sends an argument list to the process at the other end of c (a Unix
 * socket connection), objects included: connections, queues, locks and
 * the other sync objects, Values, Arrays, SharedMemory, anything with an
 * mproc_kind. The receiver gets the same objects as a child started with
 * them would (shared, not copied), under whatever start method it was
 * started. The objects stay the caller's. Returns 0, -ENOTSOCK, -ETIMEDOUT
 * (nothing was sent), -ENOMEM, MPROC_ERESOLVE (an object's kind is not in
 * a loaded object file), MPROC_ECLOSED, -errno. Thread safe.
 */
MPROC_API int mproc_conn_send_args(mproc_conn *c, const mproc_args *a,
                                   double timeout);

/*
 * Receives a list sent by send_args into *out (free it with
 * mproc_args_free, which releases the objects it rebuilt). Returns 0,
 * -ETIMEDOUT (nothing came), MPROC_EEOF, MPROC_ETRUNC (the fds came but
 * not their list within 10 s: the connection is out of step), MPROC_EPROTO
 * (a malformed list; every fd that came is closed), MPROC_ERESOLVE, -EBUSY,
 * -ENOTSOCK, -ENOMEM, -errno. Thread safe.
 */
MPROC_API int mproc_conn_recv_args(mproc_conn *c, mproc_args **out,
                                   double timeout);

/* ---- connections as arguments of a process --------------------------- */

/*
 * The kind of a connection passed to a child process. Under fork the
 * child gets the same object; under spawn and forkserver the fd is passed
 * along and the child gets a connection on a duplicate of it (same
 * stream, same read/write flags). A connection in the middle of a message
 * (after MPROC_EBUFSIZE or a timeout) or out of step after a sticky error
 * cannot be passed: process start fails with -EBUSY.
 */
MPROC_API extern const mproc_kind mproc_conn_kind;

/* mproc_args_add_object(a, &mproc_conn_kind, c). */
MPROC_API int mproc_args_add_conn(mproc_args *a, mproc_conn *c);

/* The connection at index i, or NULL when it is not one. Owned by the
 * library in the child (do not free it). */
MPROC_API mproc_conn *mproc_args_conn(const mproc_args *a, size_t i);

#ifdef __cplusplus
}
#endif

#endif
