/*
 * mproc/queue.h - queues between processes, as multiprocessing.Queue,
 * SimpleQueue and JoinableQueue.
 *
 *   mproc_queue *q;
 *   mproc_queue_new(&q, 0);                   // maxsize 0: no count bound
 *   mproc_queue_put(q, "hi", 2, -1);          // in any process
 *   char buf[64]; size_t n;
 *   mproc_queue_get(q, buf, sizeof buf, &n, -1);
 *   mproc_queue_free(q);
 *
 * A queue is a ring of bytes in shared memory (a memfd mapped MAP_SHARED)
 * that any number of processes put to and get from, with an overflow
 * behind it. Messages are byte strings of 0..MPROC_QUEUE_MAX_MESSAGE
 * bytes, delivered whole and in FIFO order. As in Python, a queue is
 * unbounded unless maxsize > 0 bounds the number of messages: what the
 * ring cannot hold waits in the overflow, shared memory (part of the same
 * memfd) that grows as messages wait and goes back to the system as they
 * are taken, so a put never waits for bytes. (Given both maxsize > 0 and
 * an explicit capacity, a queue is bounded by the ring's bytes too, and
 * has no overflow.) Blocking uses futexes, so an idle waiter costs
 * nothing; mproc_queue_fileno gives an fd for poll, epoll or mproc_wait.
 *
 * Passing a queue to a child: it is inherited under fork and is a
 * shareable object for spawn and forkserver (mproc_args_add_queue).
 *
 * Death of a peer: a producer or consumer killed at any instruction never
 * corrupts the queue and never blocks the others for good; at most the
 * message it was putting or getting at that moment is lost (never
 * duplicated, never delivered torn). See docs/queue.md.
 *
 * Threads: every function may be called from any thread; one handle may be
 * used by several threads at once. Fork: a forked child may use the
 * handles it inherited (unless the fork happened while another thread of
 * the parent was inside a queue call, as with any lock); freeing them in
 * the child touches nothing the other processes use.
 *
 * Differences from Python: messages are bytes (no pickling); there is no
 * feeder thread, so a put returns once the message is in the queue (in
 * shared memory: the putting process may exit at once), and
 * join_thread/cancel_join_thread have no counterpart; the overflow holds
 * up to 128 GiB (less under a low RLIMIT_FSIZE), where Python's queue is
 * bounded by the putting process's memory; a put that finds the ring full
 * while a consumer is taking messages may wait for it a moment (at most
 * 20 ms, never past its timeout) rather than go to the overflow.
 */
#ifndef MPROC_QUEUE_H
#define MPROC_QUEUE_H

#include "args.h"
#include "common.h"
#include "obj.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_queue mproc_queue;

/* Largest message, in bytes. */
#define MPROC_QUEUE_MAX_MESSAGE ((size_t)0xffffffffu)
/* Default ring size and the bounds of mproc_queue_opts.capacity. */
#define MPROC_QUEUE_DEFAULT_CAPACITY ((size_t)1 << 20)
#define MPROC_QUEUE_MIN_CAPACITY     ((size_t)4096)
#define MPROC_QUEUE_MAX_CAPACITY     ((size_t)1 << 30)

/* Which of Python's three queue classes a queue behaves as; the
 * constructors mproc_queue_new, _new_simple and _new_joinable. */
typedef enum mproc_queue_variant {
    MPROC_QUEUE = 0,          /* multiprocessing.Queue */
    MPROC_QUEUE_SIMPLE = 1,   /* multiprocessing.SimpleQueue */
    MPROC_QUEUE_JOINABLE = 2, /* multiprocessing.JoinableQueue */
} mproc_queue_variant;

typedef struct mproc_queue_opts {
    mproc_queue_variant type; /* what mproc_queue_type() returns */
    /* Most messages in the queue at once; 0 = no bound (Python's
     * maxsize <= 0). At most 2^26. */
    size_t maxsize;
    /* Ring size in bytes, rounded up to a power of two within
     * [MPROC_QUEUE_MIN_CAPACITY, MPROC_QUEUE_MAX_CAPACITY]; 0 = default.
     * Each message takes its length rounded up to 16 plus 16 bytes. With
     * maxsize 0 or capacity 0, what the ring cannot hold goes to the
     * overflow; with both maxsize > 0 and capacity > 0, the ring's bytes
     * bound the queue too (a put waits for room; no overflow). */
    size_t capacity;
} mproc_queue_opts;

/*
 * Creates a queue. mproc_queue_new: Queue(maxsize); mproc_queue_new_simple:
 * SimpleQueue(); mproc_queue_new_joinable: JoinableQueue(maxsize);
 * _new_opts: any of them with a chosen capacity (opts NULL = defaults).
 * The memfd is sized once, here: ring plus 128 GiB of overflow, sparse (no
 * memory until messages wait there); under RLIMIT_FSIZE (ulimit -f) the
 * overflow is as large as the limit allows, and when that is less than
 * 64 KiB the queue has none and is bounded by its ring. Returns 0 and
 * stores the handle in *out, or -EINVAL (NULL out, maxsize or capacity out
 * of range), -EFBIG (not even the ring fits under RLIMIT_FSIZE), -ENOMEM,
 * -EMFILE and other -errno from memfd_create/eventfd/mmap. Nothing is left
 * behind on failure.
 */
MPROC_API int mproc_queue_new(mproc_queue **out, size_t maxsize);
MPROC_API int mproc_queue_new_simple(mproc_queue **out);
MPROC_API int mproc_queue_new_joinable(mproc_queue **out, size_t maxsize);
MPROC_API int mproc_queue_new_opts(mproc_queue **out,
                                   const mproc_queue_opts *opts);

/*
 * Releases this handle (unmaps the ring and any window it has on the
 * overflow, closes its fds). The queue itself, overflow included, lives on
 * while any process holds a handle, and goes with the last one (nothing is
 * named, nothing outlives the process tree). Messages still in it stay
 * there. Must not be called while another thread is inside a call on q.
 * NULL ok.
 */
MPROC_API void mproc_queue_free(mproc_queue *q);

/*
 * Puts a copy of p[0..n) (p may be NULL when n is 0). With maxsize > 0,
 * blocks until the count allows one more message, for up to timeout
 * seconds (< 0 forever, 0 never). Never waits for bytes: what the ring
 * has no room for goes to the overflow (a put that finds the ring full
 * while a consumer is taking messages may first wait up to 20 ms for it,
 * never past the timeout). Returns 0; MPROC_EFULL when the count bound
 * left no room in time (as Python's queue.Full; nothing was delivered);
 * -ENOSPC or -ENOMEM when the overflow cannot take it: full (128 GiB, or
 * less under RLIMIT_FSIZE), or no memory to be had for it (nothing was
 * delivered; the queue goes on); MPROC_ETOOBIG
 * (n > MPROC_QUEUE_MAX_MESSAGE); MPROC_ECLOSED after mproc_queue_close;
 * -EINVAL. A message larger than a quarter of the ring goes through it in
 * pieces while a consumer takes them, its rest to the overflow if they
 * stop. A queue bounded by bytes (maxsize and capacity given) also waits
 * for room in the ring, and streams such a message through it (it needs a
 * consumer to make progress); if the time runs out midway the
 * message is withdrawn (consumers discard the part they saw) and
 * MPROC_EFULL returned. Thread safe; cancellation points: none.
 */
MPROC_API int mproc_queue_put(mproc_queue *q, const void *p, size_t n,
                              double timeout);
/* mproc_queue_put(q, p, n, 0). */
MPROC_API int mproc_queue_put_nowait(mproc_queue *q, const void *p, size_t n);

/*
 * Takes the oldest message into buf[0..cap) and stores its length in *len.
 * Blocks for up to timeout seconds for a message to arrive (< 0 forever,
 * 0 never). Returns 0; MPROC_EEMPTY when none came in time (as Python's
 * queue.Empty); MPROC_EBUFSIZE when cap is too small: *len is set to the
 * size needed and the message stays first in the queue; MPROC_ECLOSED;
 * -EINVAL; MPROC_EPROTO when the shared ring or overflow was damaged (by
 * a process writing where it must not); -ENOMEM (rarely: a window on the
 * overflow could not be mapped; the message stays). Once a message longer
 * than the ring has begun to arrive, the call waits for its end (its
 * producer is sending it) and not for the timeout. Thread safe.
 */
MPROC_API int mproc_queue_get(mproc_queue *q, void *buf, size_t cap,
                              size_t *len, double timeout);
/* mproc_queue_get(q, buf, cap, len, 0). */
MPROC_API int mproc_queue_get_nowait(mproc_queue *q, void *buf, size_t cap,
                                     size_t *len);

/*
 * Puts count messages at once, in order: msgs[i] of lens[i] bytes (msgs[i]
 * may be NULL when lens[i] is 0). Each is delivered whole, as by
 * mproc_queue_put, and consumers may take the first ones before the call
 * returns; the batch holds the producer side for its length (other
 * producers' messages come before or after it, never inside), and pays
 * the lock, the memory barrier and the wake-up check once instead of per
 * message: with small messages several times the rate of one put each.
 * Blocks as mproc_queue_put, for up to timeout seconds in all (a deadline
 * for the whole batch). Returns the number of messages put: count, or
 * fewer (at least 1) when the count bound (maxsize) left no room for the
 * rest in time or the overflow could take no more: msgs[0..n) are in the
 * queue, the rest are not. Returns a negative code when none was put:
 * MPROC_EFULL (no room in time), -ENOSPC, -ENOMEM, MPROC_ECLOSED,
 * MPROC_ETOOBIG (a lens[i] > MPROC_QUEUE_MAX_MESSAGE: nothing is put),
 * -EINVAL (q, msgs or lens NULL with count > 0, a msgs[i] NULL with
 * lens[i] > 0, count > INT_MAX). count 0 returns 0. A producer killed
 * midway leaves a prefix of the batch in the queue (whole messages, in
 * order) and the queue usable. Thread safe.
 */
MPROC_API int mproc_queue_put_many(mproc_queue *q, const void *const *msgs,
                                   const size_t *lens, size_t count,
                                   double timeout);

/*
 * Takes up to max messages at once (faster-fifo's get_many): blocks for up
 * to timeout seconds until at least one is there (as mproc_queue_get),
 * then takes, without waiting, the ones that follow while they fit. They
 * are stored back to back in buf[0..cap): message i at the sum of
 * lens[0..i), lens[i] bytes long. The consumer side is held for the
 * batch: the messages are consecutive in the queue's order. Returns the
 * number taken (1..max); MPROC_EBUFSIZE when not even the first fits:
 * lens[0] is set to its size and it stays first in the queue; a later
 * one that does not fit in what is left of buf stays first for the next
 * call; MPROC_EEMPTY when none came in time; MPROC_ECLOSED; MPROC_EPROTO
 * and -ENOMEM as mproc_queue_get (when they happen after the first
 * message, the count taken so far is returned); -EINVAL (q, lens NULL,
 * buf NULL with cap > 0, max 0 or > INT_MAX). A consumer killed midway
 * has taken a prefix of what it would have: the messages it did not
 * commit stay for the next consumer. Thread safe.
 */
MPROC_API int mproc_queue_get_many(mproc_queue *q, void *buf, size_t cap,
                                   size_t *lens, size_t max, double timeout);

/*
 * As mproc_queue_get, into a new buffer: on success *out holds the message
 * (release with free(); never NULL, even for an empty message) and *len
 * its length. Returns 0, MPROC_EEMPTY, -ENOMEM (the message stays in the
 * queue), MPROC_ECLOSED, -EINVAL.
 */
MPROC_API int mproc_queue_get_alloc(mproc_queue *q, void **out, size_t *len,
                                    double timeout);

/*
 * Python's put(obj) for an mproc_obj: puts o's pickle (protocol 5) as one
 * message; o is only read. Returns 0, or what mproc_pickle_dumps (-ELOOP,
 * -ENOMEM) and mproc_queue_put return. Blocks and is thread safe as
 * mproc_queue_put.
 */
MPROC_API int mproc_queue_put_obj(mproc_queue *q, const mproc_obj *o,
                                  double timeout);

/*
 * Python's get() for a message put with put_obj: takes it and unpickles
 * it into *out (a new reference; mproc_obj_unref it). Returns 0,
 * MPROC_EPICKLE for a message that is no pickle (put as bytes by
 * mproc_queue_put; it is consumed), with the reason written into err
 * (errcap bytes; err may be NULL), or what mproc_queue_get_alloc returns
 * (MPROC_EEMPTY after timeout seconds, ...). *out is NULL on failure.
 */
MPROC_API int mproc_queue_get_obj(mproc_queue *q, mproc_obj **out,
                                  double timeout, char *err, size_t errcap);

/*
 * Number of messages in the queue, ring and overflow (a snapshot: others
 * may change it at once; a message being streamed counts from its first
 * piece). Returns the count, or -EINVAL for NULL.
 */
MPROC_API long mproc_queue_qsize(const mproc_queue *q);
/* 1 when qsize is 0, else 0 (a snapshot, as in Python); MPROC_ECLOSED
 * after mproc_queue_close (Python raises there too). */
MPROC_API int mproc_queue_empty(const mproc_queue *q);
/* 1 when maxsize > 0 and qsize >= maxsize, else 0. (A ring out of bytes
 * does not count: the overflow takes the message, or, bounded by bytes,
 * whether a put fits depends on its size.) */
MPROC_API int mproc_queue_full(const mproc_queue *q);
/* maxsize as created, the ring's capacity in bytes (the overflow is not
 * counted), the variant. */
MPROC_API size_t mproc_queue_maxsize(const mproc_queue *q);
MPROC_API size_t mproc_queue_capacity(const mproc_queue *q);
MPROC_API mproc_queue_variant mproc_queue_type(const mproc_queue *q);

/*
 * Python's close(): this handle will put and get no more; later puts,
 * gets, empty and fileno on it return MPROC_ECLOSED (qsize, full, maxsize
 * and capacity still answer, as Python's qsize and full do). Other handles and
 * processes are not affected and the messages stay in the queue. The fds stay
 * open until free (so a poll in progress is not disturbed). Idempotent; returns
 * 0 or -EINVAL.
 */
MPROC_API int mproc_queue_close(mproc_queue *q);

/*
 * A readiness fd for poll/epoll/mproc_wait: it polls readable when the
 * queue may hold a message. Spurious readiness is allowed: after a wake-up
 * call mproc_queue_get_nowait (or _get with a timeout) and expect
 * MPROC_EEMPTY at times; a get that finds the queue empty rearms the fd.
 * It never stays unreadable while a message waits. Only POLLIN is
 * meaningful; do not read or write the fd yourself. The first call on any
 * handle of a queue switches signalling on for every process using it,
 * which costs one eventfd write per put that finds a rearmed fd. Owned by
 * q. Returns the fd, MPROC_ECLOSED or -EINVAL.
 */
MPROC_API int mproc_queue_fileno(mproc_queue *q);

/*
 * JoinableQueue. task_done: one message taken earlier is processed.
 * Returns 0, MPROC_ETASKDONE when called more times than messages were
 * put, MPROC_ETYPE on a queue that is not joinable. join: waits until
 * every message put has been marked done (timeout in seconds, < 0
 * forever). Returns 0, -ETIMEDOUT, MPROC_ETYPE. A message withdrawn by a
 * producer that timed out or died counts as done; one taken by a consumer
 * that died before calling task_done never does (as in Python).
 */
MPROC_API int mproc_queue_task_done(mproc_queue *q);
MPROC_API int mproc_queue_join(mproc_queue *q, double timeout);

/*
 * The shareable kind of every queue type. A child started with spawn or
 * forkserver receives a new handle on the same queue (released by the
 * library when the target returns).
 */
MPROC_API extern const mproc_kind mproc_queue_kind;

/* mproc_args_add_object(a, &mproc_queue_kind, q): q is borrowed. */
MPROC_API int mproc_args_add_queue(mproc_args *a, mproc_queue *q);
/* Argument i as a queue, or NULL when it is not one. Owned by the args. */
MPROC_API mproc_queue *mproc_args_queue(const mproc_args *a, size_t i);

#ifndef MPROC_NO_DEPRECATED
/* Former names (docs/style.md), kept as aliases for now; define
 * MPROC_NO_DEPRECATED to check that a program no longer uses them. */
#define mproc_simple_queue_new   mproc_queue_new_simple
#define mproc_joinable_queue_new mproc_queue_new_joinable
#define mproc_queue_get_type     mproc_queue_type
#endif

#ifdef __cplusplus
}
#endif

#endif
