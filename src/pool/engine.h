/*
 * pool/engine.h - what the parent side of the pool shares between its
 * files: the pool, its worker slots, jobs and the segments of task indices
 * that queue and travel, the lock every one of them lives under, and the
 * functions one file calls in another.
 *
 * A pool is N worker slots, a queue of pending task ranges, and one thread
 * (the pool's thread) that owns the workers: it starts and replaces them,
 * packs pending tasks into messages for idle workers, reads results, kills
 * workers whose task is overdue, notices dead workers (their pidfd) and
 * runs callbacks. Callers only queue work and wait on a condition variable.
 *
 * Every call is a job (struct mproc_future): apply (one task), map (n
 * tasks, results in an array), imap (a window of tasks refilled as the
 * consumer reads) and range (the records map: chunks of an index range over
 * shared memory). A pending entry or an in-flight entry is a segment: a job
 * and a range of its task indices. Each worker's in-flight segments carry
 * the per-worker sequence numbers of their tasks, which results come back
 * in order against and which the worker's board slot names when it dies.
 *
 * Locking: one mutex (core->mu) guards the pool and every job. The core
 * outlives the pool while futures reference it. The pool's thread drops the
 * mutex while it sleeps, starts a process, and runs user callbacks. A
 * second one (in_mu) guards apply_async's inbox and the function table.
 *
 * Where things are: pool.c (create, close, terminate, join, free),
 * engine.c (the pool's thread and the worker slots), dispatch.c (the
 * pending queue, the function table, packing messages), results.c (taking
 * results out of the rings and delivering them), failure.c (dead workers,
 * a broken pool), job.c (the job model), progress.c (callbacks and the
 * progress bar), future.c (apply, futures, map), imap.c, records.c (the
 * records map and shared buffers). The worker's side is worker.c; what
 * travels between the two is in pool_impl.h.
 */
#ifndef MPROC_POOL_ENGINE_H
#define MPROC_POOL_ENGINE_H

#include "pool/pool_impl.h"

#include <pthread.h>

/* Job types. */
enum { J_APPLY = 1, J_MAP, J_IMAP, J_RANGE };
/* Pool states: running, closed (finishing what it has), terminated. */
enum { P_RUN = 0, P_CLOSE, P_TERM };
/* Worker slot states (W_GONE: a backend's slot that was lost for good). */
enum { W_EMPTY = 0, W_STARTING, W_LIVE, W_EXITING, W_GONE };
/* What an epoll event is about: the eventfd, a channel, a pidfd. */
enum { EV_WAKE = 0, EV_CHAN = 1, EV_SENT = 2 };
/* Deferred entries: a finished job's callback, a progress report. */
enum { D_DONE = 1, D_PROGRESS = 2 };

/* The lock and condition every job and the pool live under. */
typedef struct pool__msgbuf pool__msgbuf;

typedef struct pool__core {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic size_t refs; /* the pool and every job */
    int waiters;
    /* Result blocks no result uses any more, kept for the next ones (so
     * their pages are not faulted in afresh), up to POOL__BLOCKS_KEPT. */
    pool__msgbuf *blocks;
    size_t nblocks;
    /* Apply jobs that ended, kept for the next applies (so their pages
     * are not faulted in afresh, nor given back to the kernel by free):
     * a stack that whoever frees one pushes on, which a submitter takes
     * whole into mproc_pool.acache. kept counts both, up to
     * POOL__JOBS_KEPT. Linked through inext. */
    _Atomic(struct mproc_future *) afree;
    _Atomic size_t kept;
} pool__core;

/* Results copied out of a ring (or one mapped out-of-line result); the
 * result slots and chunks that point into it hold a reference each. A
 * block (core set) holds the copies of many reads of a worker's ring, one
 * after the other, cap bytes, and goes back to the core when unused. */
struct pool__msgbuf {
    size_t refs;
    size_t len, cap;
    bool mapped;
    unsigned char *p;
    pool__core *core;
    pool__msgbuf *next; /* in the core's list */
};

#define POOL__BLOCK       ((size_t)1 << 20)
#define POOL__BLOCKS_KEPT 32
#define POOL__JOBS_KEPT   ((size_t)1 << 17)

/* Results of tasks start to start + count of a map, from a chunk entry
 * (pool_impl.h) copied into b: its table of end offsets at tab, the
 * results from data on. */
typedef struct pool__chunk {
    size_t start, count;
    pool__msgbuf *b;
    uint32_t tab, data;
} pool__chunk;

/* A task's failure, shared by the slots of every task it failed. */
typedef struct pool__errrec {
    size_t refs;
    mproc_task_error e;
} pool__errrec;

/* The result of one task: RSLOT_PENDING until it comes, then 0 (bytes at
 * off in a msgbuf) or the failure code (an errrec, or NULL when out of
 * memory). */
#define RSLOT_PENDING INT32_MIN

typedef struct pool__rslot {
    void *ptr; /* msgbuf (status 0) or errrec */
    size_t len;
    uint32_t off;
    int32_t status;
} pool__rslot;

typedef struct mproc_future pool__job;

struct mproc_results {
    pool__job *j;
};

struct mproc_imap {
    pool__job *j;
};

/*
 * A job: one call. The fields at the top are every job's; the union holds
 * what one type alone uses, under its name: j->apply, j->map, j->imap,
 * j->range. All of it is guarded by core->mu once the job is queued.
 */
struct mproc_future {
    pool__core *core;
    mproc_pool *pool; /* NULL once finished */
    size_t refs;      /* the caller's, the pool's until ready, deferred's */
    int type;         /* J_*: which member of the union is in use */
    int fkind;        /* FK_*: how its function is called */
    uint32_t fnid;    /* the function's id in the pool's table */

    /* Progress. n counts tasks (records for J_RANGE; 0 for an imap over a
     * source, which counts imap.submitted); chunk is tasks (records) per
     * message, 0 to let the pool choose. */
    size_t n, chunk, done, inflight, nfailed;
    bool finished; /* every result is in: out of the live list */
    bool ready;    /* callbacks ran: waiters may return */
    /* an imap freed early: results are dropped (read by the pool's
     * thread outside the lock: atomic) */
    _Atomic bool cancelled;
    bool live;  /* in the pool's list of live jobs */
    int status; /* 0, or the code of the first failure by index */
    size_t first_fail;
    pool__errrec *first_err;
    mproc_task_error *err_copy; /* handed out by future_error (made then) */

    /* Result slots: one per task (map), one per window place (imap), or
     * slot1 (one task); none for J_RANGE. */
    pool__rslot *slots;
    size_t nslots;
    pool__rslot slot1;

    /* Options. */
    double timeout; /* per task, seconds; 0: none */
    mproc_callback cb, ecb;
    void *cbarg;
    mproc_progress_fn progress;
    void *parg;
    bool bar;   /* draw a progress bar */
    bool dirty; /* in the pool's list of jobs to report on */
    double bar_start, bar_last;

    pool__job *prev, *next; /* the pool's live jobs */
    pool__job *inext;       /* in the pool's inbox (apply) */

    union {
        /* J_APPLY: its input, the job's own copy. */
        struct {
            unsigned char *own; /* small, or allocated */
            size_t ownlen;
            mproc_args *args; /* FK_ARGS */
            unsigned char small[32];
        } apply;
        /* J_MAP: the caller's inputs, borrowed until the call returns.
         * Over bytes, results come in chunks (sorted by start once the
         * job is finished); slots are made only for the results that
         * came otherwise (failures, big ones), all at once. */
        struct {
            const mproc_iov *items;  /* FK_BYTES */
            mproc_args *const *argv; /* FK_ARGS */
            struct mproc_results res;
            pool__chunk *chunks;
            size_t nchunks, capchunks;
            uint64_t arena_id; /* its inputs are in the arena (0: not) */
            /* Items in the arena so far; once the caller is done packing,
             * pack_end (SIZE_MAX until then) says how many (the rest, that
             * did not fit, go in messages) and arena_used the bytes. */
            _Atomic size_t packed, pack_end, arena_used;
        } map;
        /* J_IMAP: a window of tasks, refilled as the consumer reads. Task
         * i lives in window place i % window until its result is taken. */
        struct {
            const mproc_iov *items; /* the caller's, or NULL with src */
            mproc_source_fn src;
            void *ctx;
            mproc_iov *win; /* src's items, copied, one per place */
            size_t window;
            size_t submitted, next_out, taken;
            size_t *ring; /* unordered: indices in arrival order */
            size_t rhead, rcount;
            uint8_t *occupied; /* the places in use */
            long held;         /* the place the consumer holds, or -1 */
            int stream_err;    /* why the input ended (< 0: an error) */
            bool input_end;
            bool unordered;
            struct mproc_imap it;
            mproc_task_error last_err; /* handed out by imap_error */
        } imap;
        /* J_RANGE: the arrays as shared buffers (by id) and offsets. */
        struct {
            uint64_t in_id, out_id;
            size_t in_off, out_off, in_size, out_size;
        } range;
    };
};

/* Tasks start to start + count of j; in flight, their first sequence
 * number at the worker (a J_RANGE segment is one task of count records). */
typedef struct pool__seg {
    pool__job *j;
    size_t start, count;
    uint64_t first_seq;
} pool__seg;

/* A ring of segments. */
typedef struct pool__deque {
    pool__seg *v;
    size_t cap, head, n;
} pool__deque;

/* A task function: its address, kind and the reference workers get. */
typedef struct pool__fnent {
    const void *addr;
    int kind;
    mproc__buf ref;
} pool__fnent;

/* A memfd shared with workers (by id). */
typedef struct pool__shmbuf {
    uint64_t id;
    unsigned char *p;
    size_t len;
    int fd;
} pool__shmbuf;

/*
 * A backend (mproc_pool_opts.backend): slots served elsewhere (another
 * machine's workers, say). The pool's thread drives them as it drives
 * its own workers, through a channel speaking the workers' protocol and a
 * ring on the board; the backend, on the far end of the channel, writes
 * their results into the ring and makes the sentinel readable when the
 * slot ends (after PM_EXIT, or lost). The backend enforces task timeouts
 * (PM_TASKS and PM_RANGE carry them in ms in hdr.code) and
 * maxtasksperchild itself.
 */
struct mproc_pool_backend {
    const char *name;
    /* First thing in mproc_pool_new (may not return: a serving MPI rank).
     * Returns 0 with its context and the number of remote slots, or a
     * negative code. */
    int (*attach)(const mproc_pool_opts *o, void **ctx, int *nremote);
    /* Remote slot k begins (its board slot and ring are zeroed): returns
     * 0 with the pool's end of its channel (the pool's to close) and a
     * sentinel (the backend's), or a negative code (the slot is gone). */
    int (*start)(void *ctx, int k, pool__slot *slot, unsigned char *ring,
                 int *chan, int *sentinel);
    /* Why slot k ended: 0 after PM_EXIT, else a code (message in buf). */
    int (*status)(void *ctx, int k, char *buf, size_t n);
    /* The pool's thread has ended: stop everything and free ctx. */
    void (*detach)(void *ctx);
};

/* The parent's side of a worker. */
typedef struct pool__wslot {
    mproc_process *proc;
    pid_t pid;
    int chan, sentinel;
    int state;     /* W_* */
    uint32_t gen;  /* tells this process's epoll events from a predecessor's */
    pool__deque q; /* its in-flight segments, in sequence order */
    /* The shortest task timeout pushed on q since it was last empty (0:
     * none): a bound for how long the pool's thread may sleep. */
    double tmin;
    /* Its messages in flight (a ring of mn from mh): each one's end
     * sequence number and task count. */
    uint64_t msg_end[POOL__INFLIGHT];
    uint32_t msg_count[POOL__INFLIGHT];
    uint64_t msg_start; /* when the front message started (ns) */
    uint64_t task_ns;   /* time per task of its last message */
    int mh, mn;
    bool full;   /* a send would block: wait for results */
    bool killed; /* we killed it (timeout, corrupt ring) */
    bool remote; /* a backend's slot: no process of ours */
    uint64_t next_seq, next_result, timeout_seq;
    uint64_t assigned; /* tasks sent (maxtasksperchild) */
    uint8_t *known;    /* function ids it was sent */
    size_t nknown;
    uint64_t bufs[POOL__FDCACHE]; /* shared buffers it has mapped */
    size_t nbufs, buf_next;
    uint64_t rpos;     /* ring bytes consumed */
    bool seen_ready;   /* it passed its initializer (board or results) */
    int ool[16];       /* memfds of out-of-line results, not yet read */
    pool__msgbuf *cur; /* the block its results are copied into */
    size_t nool;
    pool__wcfg cfg;
} pool__wslot;

/* A callback to run outside the lock. */
typedef struct pool__deferred {
    pool__job *j;
    int what; /* D_* */
    size_t done, total;
} pool__deferred;

struct mproc_pool {
    pool__core *core;
    mproc_pool_opts opts;
    mproc_args *initargs;
    pool__wslot *w;
    pool__slot *board;
    size_t board_len, ring_off;
    pthread_t thread;
    /* apply_async queues here, under its own lock, so that submitting
     * never waits for the pool's thread (which holds core->mu while it
     * packs and unpacks messages). in_mu also guards the function table. */
    pthread_mutex_t in_mu;
    pool__job *in_head, *in_tail;
    pool__job *acache; /* apply jobs to reuse (see pool__core.afree) */
    pool__deque pending;
    size_t npending, open_streams;
    pool__fnent *fns;
    size_t nfns, capfns, lastfn;
    pool__job *jobs; /* live ones */
    /* Live jobs with a progress bar, and with a task timeout: the loop
     * of the pool's thread walks its lists for those only when any. */
    size_t nbars, ntimed;
    pool__shmbuf *shm;
    size_t nshm, capshm;
    uint64_t next_id;
    pool__shmbuf scratch[2];
    pool__shmbuf arena; /* a map's inputs (records.c), one map at a time */
    bool arena_busy;
    _Atomic size_t arena_reserved; /* its first bytes that have pages */
    unsigned char *sbuf, *rbuf;
    pool__deferred *dq;
    size_t ndq, capdq;
    pool__job **dirty;
    size_t ndirty, capdirty;
    uint64_t retry_at, last_poll;
    pid_t owner;
    int nproc;
    int nlocal; /* slots [0, nlocal) are ours, the rest the backend's */
    void *bctx; /* the backend's context */
    int fin;    /* the finalizer that terminates it at exit (0: none) */
    int board_fd;
    int ep, evfd;
    int start_err;
    int state;  /* P_*; stored atomically (accepts() reads it unlocked) */
    int broken; /* 0 or the code every task fails with; stored atomically */
    int nlive, rr;
    int start_failures;
    int startup_deaths; /* workers in a row that died before ready */
    unsigned nstarted;
    bool thread_started, thread_done, joined, started;
    _Atomic bool sleeping; /* the pool's thread waits in epoll_wait */
    _Atomic bool in_any;
    bool in_closed;
    bool scratch_busy;
    char broken_msg[256];
};

/* ---- the lock, the deque, segments -------------------------------------- */

static inline void pool__lock(pool__core *c)
{
    pthread_mutex_lock(&c->mu);
}

static inline void pool__unlock(pool__core *c)
{
    pthread_mutex_unlock(&c->mu);
}

/* Wakes everyone waiting on the core (when anyone is). */
static inline void pool__broadcast(pool__core *c)
{
    if (c->waiters > 0)
        pthread_cond_broadcast(&c->cv);
}

/* Waits on the core's condition until d; returns false when it passed. */
static inline bool pool__wait_until(pool__core *c, const mproc__deadline *d)
{
    int r;
    c->waiters++;
    if (d->infinite)
        r = pthread_cond_wait(&c->cv, &c->mu);
    else
        r = pthread_cond_timedwait(&c->cv, &c->mu, &d->at);
    c->waiters--;
    return r != ETIMEDOUT;
}

/* Segment i from the front. */
static inline pool__seg *pool__dq_at(pool__deque *d, size_t i)
{
    return &d->v[(d->head + i) % d->cap];
}

static inline void pool__dq_pop_front(pool__deque *d)
{
    d->head = (d->head + 1) % d->cap;
    d->n--;
}

/* Sequence numbers a segment takes at its worker: one for a records
 * chunk, one per task otherwise. */
static inline size_t pool__seg_nseq(const pool__seg *s)
{
    return s->j->type == J_RANGE ? 1 : s->count;
}

/* What sequence number first_seq + o of s stands for: task *idx, and the
 * returned count of them (a records chunk's records, else 1). */
static inline size_t pool__seg_task(const pool__seg *s, uint64_t o, size_t *idx)
{
    if (s->j->type == J_RANGE) {
        *idx = s->start;
        return s->count;
    }
    *idx = s->start + (size_t)o;
    return 1;
}

/* An epoll event's data: what it is about, the worker slot, and the
 * slot's generation (events of a process already replaced are stale). */
static inline uint64_t pool__ev_data(int kind, int i, uint32_t gen)
{
    return ((uint64_t)gen << 32) | ((uint64_t)kind << 24) | (uint64_t)i;
}

/* ---- pool.c ------------------------------------------------------------- */

/* getpid(), cached (and forgotten in fork children). */
pid_t pool__my_pid(void);
/* Drops a reference; call with c->mu held; unlocks it. */
void pool__core_unref_unlock(pool__core *c);

/* ---- engine.c ----------------------------------------------------------- */

/* The pool's thread. */
void *pool__main(void *arg);
/* A worker's channel: a SOCK_SEQPACKET pair (close-on-exec) whose send
 * buffers hold POOL__INFLIGHT messages and more. Returns 0 or -errno. */
int pool__channel_pair(int sv[2]);
/* Wakes the pool's thread if it sleeps. */
void pool__wake(mproc_pool *p);
/* Takes the jobs apply_async queued (core->mu held). With code non-zero,
 * or when the pool cannot run them, they fail. */
void pool__drain_inbox(mproc_pool *p, int code);
/* Takes a reaped worker's slot out of the epoll set and empties it. */
void pool__forget_worker(mproc_pool *p, pool__wslot *w);
/* Stops every worker and reaps it (graceful: asking first). */
void pool__kill_and_reap_all(mproc_pool *p, bool graceful);
/* A task timeout as PM_TASKS / PM_RANGE carry it: ms rounded up, at
 * least 1; 0 for none. */
static inline int32_t pool__timeout_ms(double timeout)
{
    if (timeout <= 0)
        return 0;
    double ms = timeout * 1000.0;
    return ms >= (double)INT32_MAX ? INT32_MAX : (int32_t)ms + 1;
}

/* ---- dispatch.c --------------------------------------------------------- */

/* Both return false when out of memory. */
bool pool__dq_push_back(pool__deque *d, pool__seg s);
bool pool__dq_push_front(pool__deque *d, pool__seg s);
/* A function's id in the pool's table (guarded by in_mu; no core lock
 * needed). Returns 0 or -errno. */
int pool__fn_id(mproc_pool *p, const void *addr, int kind, uint32_t *id);
/* The same with in_mu held. */
int pool__fn_id_locked(mproc_pool *p, const void *addr, int kind, uint32_t *id);
/* Sends pending tasks to every worker with room. */
void pool__dispatch(mproc_pool *p);

/* ---- results.c ---------------------------------------------------------- */

/* A failure record (one reference); fmt "" means the code's text. */
pool__errrec *pool__errrec_new(int code, pid_t worker, int exitcode,
                               size_t index, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Task idx (count records for a range, else count tasks) failed with e
 * (one reference consumed; e may be NULL when out of memory). inflight:
 * the tasks were counted as in flight. */
void pool__deliver_fail(mproc_pool *p, pool__job *j, size_t idx, size_t count,
                        pool__errrec *e, int code, bool inflight);
/* Fails every task of a pending segment. */
void pool__fail_seg(mproc_pool *p, const pool__seg *s, int code,
                    const char *msg);
/* Reads up to max messages worker i sent, then every result in its ring
 * (results outlive its death: they are in the ring). */
void pool__drain(mproc_pool *p, int i, int max);
/* Worker i is dead: takes the results of the chunk it was filling. */
void pool__take_open_chunk(mproc_pool *p, int i);

/* ---- failure.c ---------------------------------------------------------- */

/* A worker is gone: reap it, fail what it was running, hand back what it
 * never started. A backend's slot that ended without PM_EXIT is lost:
 * what it held fails with the backend's code. */
void pool__worker_gone(mproc_pool *p, int i);
/* Fails every pending task and every task in flight with code. */
void pool__fail_all(mproc_pool *p, int code, const char *msg);
/* Every task fails with code from now on: stops the workers, fails what
 * is queued and in flight, and terminates the pool. */
void pool__break_pool(mproc_pool *p, int code, const char *msg);

/* ---- job.c -------------------------------------------------------------- */

void pool__msgbuf_unref(pool__msgbuf *b);
void pool__errrec_unref(pool__errrec *e);
/* Drops what a result slot holds; it is pending again. */
void pool__slot_release(pool__rslot *s);
/* The bytes of a successful result ("" when it has none). */
void pool__slot_bytes(const pool__rslot *s, const void **data, size_t *len);
/* Needs no lock: the job is private until queued. */
pool__job *pool__job_new(mproc_pool *p, int type, int fkind);
/* Frees the apply jobs kept for reuse (the pool is going; those that end
 * later are kept by the core until it goes). */
void pool__jobs_kept_free(mproc_pool *p);
/* A new job of the given type calling fn, when the pool takes calls.
 * Needs no lock. Returns 0 or -errno. */
int pool__job_start(mproc_pool *p, int type, const void *fn, int kind,
                    pool__job **out);
/* Drops a reference with the core locked (core stays locked). */
void pool__job_unref_locked(pool__job *j);
/* Drops a reference from outside (takes and releases the lock). */
void pool__job_unref(pool__job *j);
/* Frees a job that never left its submitter. */
void pool__job_discard(pool__job *j);
/* Takes a call's options (timeout, callbacks, progress). */
void pool__apply_opts(pool__job *j, const mproc_call_opts *o);
/* Allocates result slots, all pending (one task's is in the job). */
bool pool__alloc_slots(pool__job *j, size_t n);
/* Task idx of a map over bytes has its result in a chunk: stores where
 * (NULL: not in one). */
const pool__chunk *pool__chunk_find(const pool__job *j, size_t idx);
/* Links j into the pool's live jobs (its reference already counted). */
void pool__live_link(mproc_pool *p, pool__job *j);
/* Links j into the live list, taking the pool's reference. */
void pool__live_add(mproc_pool *p, pool__job *j);
/* All results are in (or the job was cancelled and nothing is in flight):
 * leave the live list; callbacks run on the pool's thread, then ready. */
void pool__check_finished(mproc_pool *p, pool__job *j);
/* Whether new calls are taken (0, or why not); needs no lock. */
int pool__accepts(mproc_pool *p);
/* The default chunk of n tasks: four per worker. */
size_t pool__auto_chunk(mproc_pool *p, size_t n);
/* Queues all n tasks of a non-imap job. Lock held. */
int pool__submit(mproc_pool *p, pool__job *j);
/* e is a failure with no record of its own: code, the task index, and
 * the code's text after prefix. */
void pool__error_text(mproc_task_error *e, int code, size_t index,
                      const char *prefix);
/* *err (when not NULL) is the job's first failure. */
void pool__copy_error(const pool__job *j, mproc_task_error *err);

/* ---- progress.c --------------------------------------------------------- */

/* The job whose callback runs on this thread: it reads as ready. */
extern _Thread_local pool__job *pool__cb_job;
/* Queues a callback to run outside the lock (false: out of memory). */
bool pool__push_deferred(mproc_pool *p, pool__job *j, int what, size_t done,
                         size_t total);
/* j made progress: report it (bar, progress callback) before sleeping. */
void pool__mark_dirty(mproc_pool *p, pool__job *j);
/* Draws the bars of jobs that made progress, queues their callbacks. */
void pool__flush_dirty(mproc_pool *p);
/* Runs callbacks outside the lock. */
void pool__run_deferred(mproc_pool *p);

/* ---- imap.c ------------------------------------------------------------- */

/* The input of imap job j ended (err < 0: with that error). */
void pool__end_stream(mproc_pool *p, pool__job *j, int err);

/* ---- records.c ---------------------------------------------------------- */

/* The memfd of shared buffer id (-1: none). */
int pool__shm_fd(mproc_pool *p, uint64_t id);
/* The input arena's size: reserved, its pages used as a map needs them. */
#define POOL__ARENA_MAX ((size_t)256 << 20)
/* Memory a map's inputs leave in the arena for the next map (the rest is
 * given back to the system). */
#define POOL__ARENA_KEEP ((size_t)32 << 20)
/* Takes the input arena, at least size bytes, for one map (lock held).
 * Returns 0, -EBUSY when another map has it, or -errno. */
int pool__arena_take(mproc_pool *p, size_t size);
/* The map that had the arena is finished with it, having used its first
 * used bytes (lock held). */
void pool__arena_give(mproc_pool *p, size_t used);

#endif
