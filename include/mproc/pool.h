/*
 * mproc/pool.h - process pools, as multiprocessing.Pool.
 *
 *   static int square(const void *in, size_t len, mproc_out *out)
 *   {
 *       int x = *(const int *)in;
 *       x *= x;
 *       return mproc_out_write(out, &x, sizeof x);
 *   }
 *   ...
 *   mproc_pool *pool;
 *   mproc_pool_new(&pool, NULL);               // cpu-count workers
 *   mproc_results *r;
 *   mproc_pool_map(pool, square, items, n, NULL, &r);
 *   mproc_results_get(r, 3, &data, &len);      // result of items[3]
 *   mproc_results_free(r);
 *   mproc_pool_free(pool);                     // terminates and reaps
 *
 * Two data shapes:
 *  - bytes: each task gets one input as bytes (or, for starmap and
 *    apply_args, an mproc_args list) and writes any number of result bytes
 *    to an mproc_out. Inputs and results travel over per-worker channels,
 *    many tasks per message.
 *  - records: mproc_pool_map_records runs a kernel over n fixed-size input
 *    records and writes n fixed-size output records. Workers read and write
 *    shared memory directly; nothing is serialized per item. Arrays from
 *    mproc_pool_shm_alloc are used in place (zero copy); other arrays are
 *    copied once into a shared scratch area and back.
 *
 * Task functions run in worker processes under every start method (fork,
 * spawn, forkserver): a function pointer is sent as (object file, offset)
 * and found again in the worker, so it must be a function of the program or
 * of a shared library, not a pointer made at run time.
 *
 * Failures (the analog of an exception raised in a task):
 *  - a task returns a negative code (or calls mproc_out_fail with a code
 *    and a message): that task fails with that code; a positive return is
 *    MPROC_ETASK. For failures of your own use MPROC_EUSER(n) (error.h),
 *    which no errno or mproc code can be confused with;
 *  - a worker dies (segfault, abort, SIGKILL, exit) while holding tasks:
 *    only the task it was running (and results it had not yet sent) fail
 *    with MPROC_EWORKER, naming its pid and signal or exit code; tasks it
 *    had received but not started go to other workers; a replacement worker
 *    starts;
 *  - a task runs past its timeout: its worker is killed and replaced, the
 *    task fails with MPROC_ETASKTIMEOUT;
 *  - the initializer returns non-zero: the pool breaks, every task fails
 *    with MPROC_EINIT and nothing is restarted;
 *  - a worker dies while starting (killed, or its initializer crashes):
 *    it is replaced; after 10 such deaths in a row the pool breaks with
 *    MPROC_EINIT (the last died in its initializer) or MPROC_ESTARTUP;
 *  - terminate / free: unfinished tasks fail with MPROC_EPOOL.
 * Failure details (code, worker pid, exit code, message) are an
 * mproc_task_error. Every call that submits work (apply*, map*, starmap*,
 * imap*, map_records) is refused with MPROC_EPOOL (closed or terminated),
 * with the code that broke the pool (MPROC_EINIT, or a worker start error),
 * or with MPROC_ERESOLVE when fn is not a function of a loaded object file.
 * A task must not return INT32_MIN (the pool reads it as MPROC_ETASK).
 *
 * Threads: a pool, its futures, results and iterators may be used from any
 * thread. Callbacks, error callbacks and progress callbacks run on the
 * pool's own thread in the parent: keep them short; they may submit new
 * tasks but must not join or free the pool.
 * Fork: a pool belongs to the process that created it. A forked child may
 * only free it (which releases memory and fds and leaves the workers alone).
 */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include "args.h"
#include "common.h"
#include "process.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_pool mproc_pool;
typedef struct mproc_future mproc_future;
typedef struct mproc_results mproc_results;
typedef struct mproc_imap mproc_imap;
typedef struct mproc_out mproc_out;

/* One byte input. */
typedef struct mproc_iov {
    const void *data;
    size_t len;
} mproc_iov;

/*
 * A task on bytes: in[0..len) is the input (aligned to 8 bytes; valid for
 * the call only). Write the result with mproc_out_write / mproc_out_alloc.
 * Return 0 for success, a negative code to fail the task with it, or call
 * mproc_out_fail to fail it with a message.
 */
typedef int (*mproc_task_fn)(const void *in, size_t len, mproc_out *out);

/* A task on an argument list (starmap, apply_args). args is owned by the
 * pool and valid for the call only. */
typedef int (*mproc_star_fn)(const mproc_args *args, mproc_out *out);

/*
 * A kernel on records: processes count records, in = the first input
 * record (NULL when the call has no input array), out = the first output
 * record, first = the index of that record in the whole array. Return 0, or
 * a negative code to fail the records of this chunk.
 */
typedef int (*mproc_records_fn)(const void *in, void *out, size_t count,
                                size_t first);

/* Worker initializer: runs once in each worker before its first task, with
 * the pool's initargs. A non-zero return breaks the pool (MPROC_EINIT). */
typedef int (*mproc_init_fn)(const mproc_args *args);

/* Runs in the parent when a future completes (see the threads note). f is
 * valid during the call; use mproc_future_get(f, 0, ...) to read it. */
typedef void (*mproc_callback)(mproc_future *f, void *arg);

/* Progress of one call: done of total tasks finished (total is 0 when not
 * known, for imap over a source). Runs on the pool's thread. */
typedef void (*mproc_progress_fn)(size_t done, size_t total, void *arg);

/* Produces the next input of an imap: store it in *item (the bytes must
 * stay valid until the next call) and return 1; return 0 at the end, or a
 * negative code to stop with that error. Called in the thread that
 * iterates, never concurrently. */
typedef int (*mproc_source_fn)(void *ctx, mproc_iov *item);

/* Why a task failed. */
typedef struct mproc_task_error {
    int code;          /* the task's code, MPROC_EWORKER, ... */
    pid_t worker;      /* pid of the worker that held it, 0 if none */
    int exitcode;      /* MPROC_EWORKER, MPROC_ETASKTIMEOUT: the worker's
                          -signal or exit status, else 0 */
    size_t index;      /* the task's index within its call */
    char message[256]; /* human-readable, never empty */
} mproc_task_error;

/* ---- output of a task (in the worker) --------------------------------- */

/* Appends n bytes to the task's result. Returns 0 or -ENOMEM. */
MPROC_API int mproc_out_write(mproc_out *out, const void *p, size_t n);

/* Appends n bytes and returns a pointer to them (aligned to 8 bytes when
 * the result so far is a multiple of 8 long), valid until the next call on
 * out; NULL when out of memory. */
MPROC_API void *mproc_out_alloc(mproc_out *out, size_t n);

/* Fails the task with code (MPROC_ETASK when code is 0 or positive) and a
 * printf-style message (at most 255 bytes kept). Returns the code, so a
 * task may `return mproc_out_fail(out, -EINVAL, "bad input %d", x);`. */
MPROC_API int mproc_out_fail(mproc_out *out, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- pools ------------------------------------------------------------ */

/* Where a pool's tasks run besides this process's own workers: NULL for
 * none (a local pool), or a backend such as mproc_pool_backend_mpi()
 * (mproc/mpi.h, library mproc_mpi). Opaque. */
typedef struct mproc_pool_backend mproc_pool_backend;

typedef struct mproc_pool_opts {
    int processes;              /* 0: mproc_cpu_count_usable() */
    mproc_init_fn initializer;  /* NULL: none */
    const mproc_args *initargs; /* copied; objects borrowed for the pool's
                                   life (replacement workers need them) */
    unsigned maxtasksperchild;  /* 0: unlimited */
    mproc_start_method method;  /* MPROC_START_DEFAULT: the global one */
    double task_timeout;        /* per-task default, seconds; <= 0: none */
    const mproc_pool_backend *backend; /* NULL: local workers only; see
                                          mproc/mpi.h for the MPI one */
} mproc_pool_opts;

/*
 * Creates a pool and starts its workers (daemonic processes) and its
 * thread. opts may be NULL (all defaults). Blocks until every worker has
 * started (under spawn/forkserver until each found its function).
 * Returns 0 and stores the pool in *out, or -EINVAL (bad options),
 * -ENOMEM, MPROC_EDAEMON (called in a daemonic process), a start error of
 * mproc_process_start, or -errno. A failed call leaves nothing behind.
 * An initializer failure is not reported here but by the first tasks.
 * With a backend (opts->backend) the backend's own contract applies too:
 * under MPI only rank 0 returns; every other rank serves tasks in here
 * and exits when rank 0 frees the pool (mproc/mpi.h).
 */
MPROC_API int mproc_pool_new(mproc_pool **out, const mproc_pool_opts *opts);

/*
 * Terminates the pool if it is still running (as mproc_pool_terminate),
 * reaps its workers, stops its thread and frees it. Futures, results and
 * iterators obtained from it stay valid (unfinished ones failed with
 * MPROC_EPOOL) and must still be freed. NULL ok. Must not be called from a
 * callback. In a forked child only releases the child's copy.
 */
MPROC_API void mproc_pool_free(mproc_pool *pool);

/* Stops accepting new calls; queued and running tasks (and iterators
 * already created) complete, then the workers exit. Returns 0 (also when
 * already closed or terminated), -EINVAL for NULL. Never blocks. */
MPROC_API int mproc_pool_close(mproc_pool *pool);

/*
 * Kills the workers now (SIGKILL: a worker stuck in a system call or on a
 * full channel cannot delay it), fails unfinished tasks with MPROC_EPOOL,
 * reaps the workers and stops the pool's thread before returning. Called
 * from a callback it only starts this and returns. Returns 0 (MPROC_EPOOL
 * in a fork child, which does not own the pool). Idempotent.
 */
MPROC_API int mproc_pool_terminate(mproc_pool *pool);

/*
 * Waits (timeout seconds, < 0 forever) until the workers have exited
 * after close or terminate. Returns 0, -ETIMEDOUT, -EINVAL when the pool
 * is still running (neither closed nor terminated), -EDEADLK from a
 * callback, MPROC_EPOOL in a fork child.
 */
MPROC_API int mproc_pool_join(mproc_pool *pool, double timeout);

/* Number of worker slots (with a backend, its remote slots included). */
MPROC_API int mproc_pool_processes(const mproc_pool *pool);

/* Stores the pids of the live workers of this process (up to max; a
 * backend's remote workers are not counted) and returns how many there
 * are. Thread safe. */
MPROC_API int mproc_pool_pids(mproc_pool *pool, pid_t *pids, size_t max);

/* ---- per-call options ------------------------------------------------- */

typedef struct mproc_call_opts {
    size_t chunksize;        /* tasks per message; 0: automatic as CPython's
                                (n / (4 * processes), rounded up) */
    double timeout;          /* per task: 0 the pool's, < 0 none, > 0 s */
    mproc_callback callback; /* on success (once) */
    mproc_callback error_callback; /* on failure (once) */
    void *callback_arg;
    mproc_progress_fn progress; /* called as tasks finish */
    void *progress_arg;
    int progress_bar; /* 1: a bar on stderr when it is a terminal; 2: always */
    size_t window;    /* imap: most tasks in flight or unread; 0: automatic */
} mproc_call_opts;

/* ---- futures (AsyncResult) -------------------------------------------- */

/*
 * Runs fn on a copy of in[0..len) in a worker. Never blocks (the task is
 * queued). When out is not NULL stores a future the caller must free; with
 * out NULL the result is only seen by the callbacks. opts may be NULL.
 * Returns 0, MPROC_EPOOL (closed or terminated), MPROC_EINIT (the
 * initializer failed), -EINVAL, -ENOMEM.
 */
MPROC_API int mproc_pool_apply_async(mproc_pool *pool, mproc_task_fn fn,
                                     const void *in, size_t len,
                                     const mproc_call_opts *opts,
                                     mproc_future **out);

/* As apply_async with an argument list (copied; objects in it must be
 * shareable under the pool's start method and stay alive until the task
 * has finished). */
MPROC_API int mproc_pool_apply_args_async(mproc_pool *pool, mproc_star_fn fn,
                                          const mproc_args *args,
                                          const mproc_call_opts *opts,
                                          mproc_future **out);

/*
 * apply: runs fn(in) and waits for it. On success stores a malloc'd copy
 * of the result in *res (free() it; NULL when empty) and its length in
 * *reslen. Returns 0 or the task's failure code, with details in *err when
 * err is not NULL. res/reslen may be NULL.
 */
MPROC_API int mproc_pool_apply(mproc_pool *pool, mproc_task_fn fn,
                               const void *in, size_t len, void **res,
                               size_t *reslen, mproc_task_error *err);

/*
 * Waits for the result (timeout seconds, < 0 forever). On success stores a
 * pointer to the result bytes (owned by f, aligned to 8, valid until f is
 * freed) and returns 0. Returns the task's failure code (see
 * mproc_future_error), or -ETIMEDOUT when not ready in time (the task goes
 * on). data/len may be NULL. A map_async future returns 0 or the first
 * failure; read its results with mproc_future_results.
 */
MPROC_API int mproc_future_get(mproc_future *f, double timeout,
                               const void **data, size_t *len);

/* Waits until ready: 0, or -ETIMEDOUT. */
MPROC_API int mproc_future_wait(mproc_future *f, double timeout);

/* 1 when the result is ready, else 0. */
MPROC_API int mproc_future_ready(mproc_future *f);

/* 1 when ready and successful, 0 when ready and failed, -EAGAIN when not
 * ready yet (Python raises ValueError). */
MPROC_API int mproc_future_successful(mproc_future *f);

/* The failure of a ready, failed future (the first failing task of a map),
 * owned by f; NULL otherwise. */
MPROC_API const mproc_task_error *mproc_future_error(mproc_future *f);

/* The results of a ready map_async / starmap_async future, owned by f
 * (do not free); NULL when not ready or not a map. */
MPROC_API mproc_results *mproc_future_results(mproc_future *f);

/* Releases the caller's reference; the task itself goes on and its
 * callbacks still run. NULL ok. */
MPROC_API void mproc_future_free(mproc_future *f);

/* ---- map / starmap ---------------------------------------------------- */

/*
 * map: runs fn on each of items[0..n) and waits. Stores the results in
 * *out (always, when out is not NULL and the call was accepted; free with
 * mproc_results_free). Returns 0 when every task succeeded, else the code
 * of the first failed task (lowest index), or MPROC_EPOOL / -EINVAL /
 * -ENOMEM when the call was not accepted (then *out is NULL).
 * The item bytes are read while the call runs: the caller's thread copies
 * them into the pool's shared input arena (docs/pool.md), the first
 * 16384 before the tasks are queued and the rest while the workers run
 * the first ones; items the arena cannot take (another map holds it, it
 * is full) are sent in messages as their tasks go out.
 */
MPROC_API int mproc_pool_map(mproc_pool *pool, mproc_task_fn fn,
                             const mproc_iov *items, size_t n,
                             const mproc_call_opts *opts, mproc_results **out);

/* map_async: as map, returning with a future (always stored in *out on
 * success) once the items are in the input arena (a copy of their bytes:
 * time in proportion to n), without waiting for the tasks. items[] and the
 * bytes they point to must stay valid until the future is ready (those
 * the arena could not take are read as their tasks go out). Returns 0,
 * MPROC_EPOOL, -EINVAL, -ENOMEM. */
MPROC_API int mproc_pool_map_async(mproc_pool *pool, mproc_task_fn fn,
                                   const mproc_iov *items, size_t n,
                                   const mproc_call_opts *opts,
                                   mproc_future **out);

/* starmap / starmap_async: each task gets argv[i] (borrowed until the call
 * (or the future) is done; objects must be shareable). */
MPROC_API int mproc_pool_starmap(mproc_pool *pool, mproc_star_fn fn,
                                 mproc_args *const *argv, size_t n,
                                 const mproc_call_opts *opts,
                                 mproc_results **out);
MPROC_API int mproc_pool_starmap_async(mproc_pool *pool, mproc_star_fn fn,
                                       mproc_args *const *argv, size_t n,
                                       const mproc_call_opts *opts,
                                       mproc_future **out);

/* Number of results. */
MPROC_API size_t mproc_results_count(const mproc_results *r);

/* Result i: on success stores its bytes (owned by r, aligned to 8) and
 * returns 0; returns the task's failure code (details from
 * mproc_results_error), or -ERANGE for a bad index or a NULL r. */
MPROC_API int mproc_results_get(const mproc_results *r, size_t i,
                                const void **data, size_t *len);

/* The failure of task i, NULL when it succeeded. Owned by r. */
MPROC_API const mproc_task_error *mproc_results_error(const mproc_results *r,
                                                      size_t i);

/* Number of failed tasks. */
MPROC_API size_t mproc_results_failed(const mproc_results *r);

/* Frees results from mproc_pool_map / starmap. NULL ok. */
MPROC_API void mproc_results_free(mproc_results *r);

/* ---- imap / imap_unordered -------------------------------------------- */

/*
 * Lazy maps: tasks are submitted as results are read, so at most `window`
 * tasks are queued, running or unread at any time, whatever the number of
 * items. imap yields results in input order, imap_unordered as they finish.
 * The array forms read items[i] (borrowed until the iterator is freed);
 * the source form pulls inputs from next(ctx) (copied).
 * Returns 0 and an iterator in *out, MPROC_EPOOL, -EINVAL, -ENOMEM.
 */
MPROC_API int mproc_pool_imap(mproc_pool *pool, mproc_task_fn fn,
                              const mproc_iov *items, size_t n,
                              const mproc_call_opts *opts, mproc_imap **out);
MPROC_API int mproc_pool_imap_unordered(mproc_pool *pool, mproc_task_fn fn,
                                        const mproc_iov *items, size_t n,
                                        const mproc_call_opts *opts,
                                        mproc_imap **out);
MPROC_API int mproc_pool_imap_source(mproc_pool *pool, mproc_task_fn fn,
                                     mproc_source_fn next, void *ctx,
                                     int unordered, const mproc_call_opts *opts,
                                     mproc_imap **out);

/*
 * The next result (timeout seconds, < 0 forever). Returns 1 and stores the
 * bytes (valid until the next call or free) and the task's index; 0 when
 * there are no more results; the failure code of the task it reached (the
 * iterator moves past it; details from mproc_imap_error); -ETIMEDOUT
 * (nothing consumed); or the error a source returned. index/data/len may be
 * NULL. Not for concurrent use from several threads.
 */
MPROC_API int mproc_imap_next(mproc_imap *it, double timeout, const void **data,
                              size_t *len, size_t *index);

/* The failure behind the last negative return of next that was a task's
 * failure (it stays until the next such failure; NULL only for a NULL
 * iterator). Owned by it. */
MPROC_API const mproc_task_error *mproc_imap_error(const mproc_imap *it);

/* Stops the iteration (tasks not yet sent are dropped, running ones are
 * ignored) and frees it. NULL ok. */
MPROC_API void mproc_imap_free(mproc_imap *it);

/* ---- records (zero-copy map) ------------------------------------------ */

/*
 * out[i] = fn(in[i]) over n records: in holds n records of in_size bytes
 * (in may be NULL with in_size 0), out n records of out_size bytes. Workers
 * get chunks of the index range (opts->chunksize records, default as
 * map's) and call fn on each chunk with pointers into shared memory.
 * Arrays allocated with mproc_pool_shm_alloc are used in place; others are
 * copied into the pool's scratch memory once and back. Blocks until done.
 * Returns 0 or the first failure (lowest index; details in *err when not
 * NULL, err->index = first record of the failed chunk); out records of
 * failed chunks are unspecified.
 */
MPROC_API int mproc_pool_map_records(mproc_pool *pool, mproc_records_fn fn,
                                     const void *in, size_t in_size, void *out,
                                     size_t out_size, size_t n,
                                     const mproc_call_opts *opts,
                                     mproc_task_error *err);

/* Shared memory visible to the pool's workers (memfd backed, zeroed,
 * page aligned). Returns NULL on failure. Free with mproc_pool_shm_free
 * before the pool. */
MPROC_API void *mproc_pool_shm_alloc(mproc_pool *pool, size_t size);
MPROC_API void mproc_pool_shm_free(mproc_pool *p, void *ptr);

#ifdef __cplusplus
}
#endif

#endif
