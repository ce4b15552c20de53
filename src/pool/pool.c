/*
 * pool.c - the parent side of the process pool.
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
 * mutex while it sleeps, starts a process, and runs user callbacks.
 */
#include "pool/pool_impl.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOT_PENDING INT32_MIN

enum { J_APPLY = 1, J_MAP, J_IMAP, J_RANGE };
enum { P_RUN = 0, P_CLOSE, P_TERM };
enum { W_EMPTY = 0, W_STARTING, W_LIVE, W_EXITING };
enum { EV_WAKE = 0, EV_CHAN = 1, EV_SENT = 2 };
enum { D_DONE = 1, D_PROGRESS = 2 };

typedef struct core {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic size_t refs; /* the pool and every job */
    int waiters;
} core;

typedef struct msgbuf {
    size_t refs;
    size_t len;
    bool mapped;
    unsigned char *p;
} msgbuf;

typedef struct errrec {
    size_t refs;
    mproc_task_error e;
} errrec;

typedef struct rslot {
    void *ptr; /* msgbuf (status 0) or errrec */
    size_t len;
    uint32_t off;
    int32_t status;
} rslot;

typedef struct mproc_future job;

struct mproc_results {
    job *j;
};

struct mproc_imap {
    job *j;
};

struct mproc_future {
    core *core;
    mproc_pool *pool; /* NULL once finished */
    size_t refs;
    int type, fkind;
    uint32_t fnid;
    /* input */
    const mproc_iov *items;
    mproc_args *const *argv;
    unsigned char *own;
    size_t ownlen;
    mproc_args *ownargs;
    mproc_source_fn src;
    void *ctx;
    mproc_iov *win;
    /* range */
    uint64_t in_id, out_id;
    size_t in_off, out_off, in_size, out_size;
    /* progress of the job */
    size_t n, chunk, submitted, done, inflight, nfailed;
    bool input_end, finished, ready, cancelled, live;
    int status;
    size_t first_fail;
    errrec *first_err;
    /* results */
    rslot *slots;
    size_t nslots;
    rslot slot1;             /* the slot of a single task */
    unsigned char small[32]; /* a small input, copied here */
    /* imap consumer */
    size_t window, next_out, taken;
    size_t *ring;
    size_t rhead, rcount;
    uint8_t *occupied;
    long held;
    int stream_err;
    bool unordered;
    mproc_task_error last_err;
    /* options */
    double timeout;
    mproc_callback cb, ecb;
    void *cbarg;
    mproc_progress_fn progress;
    void *parg;
    bool bar, dirty;
    double bar_start, bar_last;
    job *prev, *next;
    job *inext; /* in the pool's inbox */
    struct mproc_results res;
    struct mproc_imap it;
};

typedef struct seg {
    job *j;
    size_t start, count;
    uint64_t first_seq;
} seg;

typedef struct deque {
    seg *v;
    size_t cap, head, n;
} deque;

typedef struct fnent {
    const void *addr;
    int kind;
    mproc__buf ref;
} fnent;

typedef struct shmbuf {
    uint64_t id;
    unsigned char *p;
    size_t len;
    int fd;
} shmbuf;

typedef struct wslot {
    mproc_process *proc;
    pid_t pid;
    int chan, sentinel;
    int state;
    uint32_t gen;
    deque q;
    uint64_t msg_end[POOL__INFLIGHT];
    uint32_t msg_count[POOL__INFLIGHT];
    uint64_t msg_start; /* when the front message started (ns) */
    uint64_t task_ns;   /* time per task of its last message */
    int mh, mn;
    bool full, killed;
    uint64_t next_seq, next_result, timeout_seq;
    uint64_t assigned;
    uint8_t *known;
    size_t nknown;
    uint64_t bufs[POOL__FDCACHE];
    size_t nbufs, buf_next;
    uint64_t rpos;
    bool seen_ready; /* it passed its initializer (board or results) */
    int ool[16];
    size_t nool;
    pool__wcfg cfg;
} wslot;

typedef struct deferred {
    job *j;
    int what;
    size_t done, total;
} deferred;

struct mproc_pool {
    core *core;
    mproc_pool_opts opts;
    mproc_args *initargs;
    wslot *w;
    pool__slot *board;
    size_t board_len, ring_off;
    pthread_t thread;
    /* apply_async queues here, under its own lock, so that submitting
     * never waits for the pool's thread (which holds core->mu while it
     * packs and unpacks messages). in_mu also guards the function table. */
    pthread_mutex_t in_mu;
    job *in_head, *in_tail;
    deque pending;
    size_t npending, open_streams;
    fnent *fns;
    size_t nfns, capfns, lastfn;
    job *jobs; /* live ones */
    shmbuf *shm;
    size_t nshm, capshm;
    uint64_t next_id;
    shmbuf scratch[2];
    unsigned char *sbuf, *rbuf;
    deferred *dq;
    size_t ndq, capdq;
    struct dirty_ent {
        job *j;
    } * dirty;
    size_t ndirty, capdirty;
    uint64_t retry_at, last_poll;
    pid_t owner;
    int nproc;
    int board_fd;
    int ep, evfd;
    int start_err;
    int state;  /* P_*; stored atomically (accepts() reads it unlocked) */
    int broken; /* 0 or the code every task fails with; stored atomically */
    int nlive, rr;
    int start_failures;
    unsigned nstarted;
    bool thread_started, thread_done, joined, started;
    _Atomic bool sleeping; /* the pool's thread waits in epoll_wait */
    _Atomic bool in_any;
    bool in_closed;
    bool scratch_busy;
    char broken_msg[256];
};

/* ---- small helpers ------------------------------------------------------ */

/* getpid() is a system call: cache it, and forget it in fork children. */
static pid_t cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void pid_forget(void)
{
    cached_pid = 0;
}

static void pid_atfork(void)
{
    pthread_atfork(NULL, NULL, pid_forget);
}

static pid_t my_pid(void)
{
    pthread_once(&pid_once, pid_atfork);
    pid_t p = cached_pid;
    if (!p)
        cached_pid = p = getpid();
    return p;
}

/* The job whose callback runs on this thread: it reads as ready. */
static _Thread_local job *cb_job;

static bool is_ready(const job *j)
{
    return j->ready || j == cb_job;
}

static void lock(core *c)
{
    pthread_mutex_lock(&c->mu);
}

static void unlock(core *c)
{
    pthread_mutex_unlock(&c->mu);
}

static void broadcast(core *c)
{
    if (c->waiters > 0)
        pthread_cond_broadcast(&c->cv);
}

/* Waits on the core's condition until d; returns false when it passed. */
static bool wait_until(core *c, const mproc__deadline *d)
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

static core *core_new(void)
{
    core *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    c->refs = 1;
    return c;
}

/* Drops a reference; call with c->mu held; unlocks it. */
static void core_unref_unlock(core *c)
{
    bool last = atomic_fetch_sub(&c->refs, 1) == 1;
    unlock(c);
    if (last) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
    }
}

static bool dq_reserve(deque *d)
{
    if (d->n < d->cap)
        return true;
    size_t cap = d->cap ? d->cap * 2 : 16;
    seg *v = malloc(cap * sizeof *v);
    if (!v)
        return false;
    for (size_t i = 0; i < d->n && d->cap; i++)
        v[i] = d->v[(d->head + i) % d->cap];
    free(d->v);
    d->v = v;
    d->cap = cap;
    d->head = 0;
    return true;
}

static seg *dq_at(deque *d, size_t i)
{
    return &d->v[(d->head + i) % d->cap];
}

static bool dq_push_back(deque *d, seg s)
{
    if (!dq_reserve(d))
        return false;
    d->v[(d->head + d->n) % d->cap] = s;
    d->n++;
    return true;
}

static bool dq_push_front(deque *d, seg s)
{
    if (!dq_reserve(d))
        return false;
    d->head = (d->head + d->cap - 1) % d->cap;
    d->v[d->head] = s;
    d->n++;
    return true;
}

static void dq_pop_front(deque *d)
{
    d->head = (d->head + 1) % d->cap;
    d->n--;
}

static void msgbuf_unref(msgbuf *b)
{
    if (b && --b->refs == 0) {
        if (b->mapped)
            munmap(b->p, b->len);
        free(b);
    }
}

static void errrec_unref(errrec *e)
{
    if (e && --e->refs == 0)
        free(e);
}

static void slot_release(rslot *s)
{
    if (s->status == 0)
        msgbuf_unref(s->ptr);
    else if (s->status != SLOT_PENDING)
        errrec_unref(s->ptr);
    s->ptr = NULL;
    s->status = SLOT_PENDING;
}

static bool on_pool_thread(const mproc_pool *p)
{
    return p->thread_started && pthread_equal(pthread_self(), p->thread);
}

static void wake(mproc_pool *p)
{
    if (atomic_exchange(&p->sleeping, false)) {
        uint64_t one = 1;
        ssize_t r = write(p->evfd, &one, sizeof one);
        (void)r;
    }
}

static bool push_deferred(mproc_pool *p, job *j, int what, size_t done,
                          size_t total)
{
    if (p->ndq == p->capdq) {
        size_t cap = p->capdq ? p->capdq * 2 : 32;
        deferred *v = realloc(p->dq, cap * sizeof *v);
        if (!v)
            return false;
        p->dq = v;
        p->capdq = cap;
    }
    p->dq[p->ndq++] = (deferred){j, what, done, total};
    return true;
}

static void mark_dirty(mproc_pool *p, job *j)
{
    if (j->dirty || (!j->progress && !j->bar))
        return;
    if (p->ndirty == p->capdirty) {
        size_t cap = p->capdirty ? p->capdirty * 2 : 16;
        struct dirty_ent *v = realloc(p->dirty, cap * sizeof *v);
        if (!v)
            return;
        p->dirty = v;
        p->capdirty = cap;
    }
    j->dirty = true;
    j->refs++;
    p->dirty[p->ndirty++].j = j;
}

/* ---- jobs --------------------------------------------------------------- */

static void job_free(job *j)
{
    for (size_t i = 0; i < j->nslots; i++)
        slot_release(&j->slots[i]);
    if (j->slots != &j->slot1)
        free(j->slots);
    if (j->win) {
        for (size_t i = 0; i < j->window; i++)
            free((void *)j->win[i].data);
        free(j->win);
    }
    free(j->ring);
    free(j->occupied);
    if (j->own != j->small)
        free(j->own);
    mproc_args_free(j->ownargs);
    errrec_unref(j->first_err);
    free(j);
}

/* Drops a reference with the core locked (core stays locked). Returns
 * true when the job was freed. */
static void job_unref_locked(job *j)
{
    if (--j->refs == 0) {
        core *c = j->core;
        job_free(j);
        atomic_fetch_sub(&c->refs, 1); /* never the last: see job_unref */
    }
}

/* Drops a reference from outside (takes and releases the lock). */
static void job_unref(job *j)
{
    core *c = j->core;
    lock(c);
    atomic_fetch_add(&c->refs, 1); /* keep the core while we hold its lock */
    job_unref_locked(j);
    core_unref_unlock(c);
}

/* Needs no lock: the job is private until queued. */
static job *job_new(mproc_pool *p, int type, int fkind)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->core = p->core;
    j->pool = p;
    j->refs = 1;
    j->type = type;
    j->fkind = fkind;
    j->held = -1;
    atomic_fetch_add(&j->core->refs, 1);
    j->res.j = j;
    j->it.j = j;
    j->timeout = p->opts.task_timeout;
    return j;
}

static void apply_opts(mproc_pool *p, job *j, const mproc_call_opts *o)
{
    if (!o)
        return;
    if (o->timeout > 0)
        j->timeout = o->timeout;
    else if (o->timeout < 0)
        j->timeout = 0;
    j->cb = o->callback;
    j->ecb = o->error_callback;
    j->cbarg = o->callback_arg;
    j->progress = o->progress;
    j->parg = o->progress_arg;
    j->bar = o->progress_bar == 2 || (o->progress_bar == 1 && isatty(2));
    (void)p;
}

/* A function's id in the pool's table (the reference sent to workers). */
static int fn_id_locked(mproc_pool *p, const void *addr, int kind, uint32_t *id)
{
    if (p->lastfn < p->nfns && p->fns[p->lastfn].addr == addr &&
        p->fns[p->lastfn].kind == kind) {
        *id = (uint32_t)p->lastfn;
        return 0;
    }
    for (size_t i = 0; i < p->nfns; i++)
        if (p->fns[i].addr == addr && p->fns[i].kind == kind) {
            *id = (uint32_t)(p->lastfn = i);
            return 0;
        }
    if (p->nfns == p->capfns) {
        size_t cap = p->capfns ? p->capfns * 2 : 8;
        fnent *v = realloc(p->fns, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        p->fns = v;
        p->capfns = cap;
    }
    fnent *f = &p->fns[p->nfns];
    memset(f, 0, sizeof *f);
    int r = mproc__ref_write(&f->ref, addr);
    if (r < 0 || f->ref.oom) {
        mproc__buf_free(&f->ref);
        return r < 0 ? r : -ENOMEM;
    }
    if (f->ref.len > POOL__MSG_MAX - sizeof(pool__hdr)) {
        mproc__buf_free(&f->ref);
        return MPROC_ERESOLVE;
    }
    f->addr = addr;
    f->kind = kind;
    *id = (uint32_t)(p->lastfn = p->nfns++);
    return 0;
}

/* A function's id (the table is guarded by in_mu). */
static int fn_id(mproc_pool *p, const void *addr, int kind, uint32_t *id)
{
    pthread_mutex_lock(&p->in_mu);
    int r = fn_id_locked(p, addr, kind, id);
    pthread_mutex_unlock(&p->in_mu);
    return r;
}

static void live_link(mproc_pool *p, job *j)
{
    j->live = true;
    j->next = p->jobs;
    j->prev = NULL;
    if (p->jobs)
        p->jobs->prev = j;
    p->jobs = j;
}

/* Links j into the live list, taking the pool's reference. */
static void live_add(mproc_pool *p, job *j)
{
    j->refs++;
    live_link(p, j);
}

static void live_remove(mproc_pool *p, job *j)
{
    if (!j->live)
        return;
    if (j->prev)
        j->prev->next = j->next;
    else
        p->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->live = false;
    j->prev = j->next = NULL;
}

/* All results are in (or the job was cancelled and nothing is in flight):
 * leave the live list; callbacks run on the pool's thread, then ready. */
static void check_finished(mproc_pool *p, job *j)
{
    if (j->finished)
        return;
    if (j->type == J_IMAP) {
        if (!j->input_end || j->inflight > 0 ||
            (!j->cancelled && j->done < j->submitted))
            return;
    } else if (j->done < j->n) {
        return;
    }
    j->finished = true;
    live_remove(p, j);
    j->pool = NULL;
    if (!push_deferred(p, j, D_DONE, j->done, j->n)) {
        /* Out of memory: no callbacks; still make it ready. */
        j->ready = true;
        broadcast(j->core);
        job_unref_locked(j);
    }
    if (j->bar || j->progress)
        mark_dirty(p, j);
}

static errrec *errrec_new(int code, pid_t worker, int exitcode, size_t index,
                          const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static errrec *errrec_new(int code, pid_t worker, int exitcode, size_t index,
                          const char *fmt, ...)
{
    errrec *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->refs = 1;
    e->e.code = code;
    e->e.worker = worker;
    e->e.exitcode = exitcode;
    e->e.index = index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->e.message, sizeof e->e.message, fmt, ap);
    va_end(ap);
    if (!e->e.message[0])
        snprintf(e->e.message, sizeof e->e.message, "%s", mproc_strerror(code));
    return e;
}

/* Task idx (count records for a range, else count tasks) failed with e
 * (one reference consumed; e may be NULL when out of memory). */
static void deliver_fail(mproc_pool *p, job *j, size_t idx, size_t count,
                         errrec *e, int code, bool inflight)
{
    if (e)
        code = e->e.code;
    if (inflight)
        j->inflight -= count;
    j->done += count;
    j->nfailed += count;
    if (!j->cancelled) {
        if (j->status == 0 || idx < j->first_fail) {
            j->status = code;
            j->first_fail = idx;
            if (e) {
                e->refs++;
                errrec_unref(j->first_err);
                j->first_err = e;
            }
        }
        if (j->type == J_MAP || j->type == J_APPLY) {
            for (size_t k = 0; k < count; k++) {
                rslot *s = &j->slots[j->type == J_APPLY ? 0 : idx + k];
                slot_release(s);
                s->status = code;
                s->ptr = e;
                if (e)
                    e->refs++;
            }
        } else if (j->type == J_IMAP) {
            for (size_t k = 0; k < count; k++) {
                size_t i = idx + k;
                rslot *s = &j->slots[i % j->window];
                slot_release(s);
                s->status = code;
                s->ptr = e;
                if (e)
                    e->refs++;
                if (j->win) {
                    free((void *)j->win[i % j->window].data);
                    j->win[i % j->window].data = NULL;
                }
                if (j->unordered)
                    j->ring[(j->rhead + j->rcount++) % j->window] = i;
            }
        }
        broadcast(j->core);
        mark_dirty(p, j);
    }
    errrec_unref(e);
    check_finished(p, j);
}

static void deliver_ok(mproc_pool *p, job *j, size_t idx, size_t count,
                       msgbuf *b, size_t off, size_t len)
{
    j->inflight -= count;
    j->done += count;
    if (!j->cancelled) {
        rslot *s = NULL;
        if (j->type == J_MAP)
            s = &j->slots[idx];
        else if (j->type == J_APPLY)
            s = &j->slots[0];
        else if (j->type == J_IMAP) {
            s = &j->slots[idx % j->window];
            if (j->win) {
                free((void *)j->win[idx % j->window].data);
                j->win[idx % j->window].data = NULL;
            }
            if (j->unordered)
                j->ring[(j->rhead + j->rcount++) % j->window] = idx;
        }
        if (s) {
            slot_release(s);
            s->status = 0;
            s->ptr = b;
            s->off = (uint32_t)off;
            s->len = len;
            if (b)
                b->refs++;
        }
        if (j->type == J_IMAP || j->done == j->n)
            broadcast(j->core);
        mark_dirty(p, j);
    }
    check_finished(p, j);
}

/* Fails every task of a pending segment. */
static void fail_seg(mproc_pool *p, const seg *s, int code, const char *msg)
{
    errrec *e = errrec_new(code, 0, 0, s->start, "%s", msg);
    deliver_fail(p, s->j, s->start, s->count, e, code, false);
}

/* ---- workers ------------------------------------------------------------ */

static uint64_t ev_data(int kind, int i, uint32_t gen)
{
    return ((uint64_t)gen << 32) | ((uint64_t)kind << 24) | (uint64_t)i;
}

static int start_worker(mproc_pool *p, int i)
{
    wslot *w = &p->w[i];
    int sv[2];
    mproc_process *proc = NULL;
    mproc_args *a = NULL;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    int sz = 4 * POOL__MSG_MAX;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    pool__slot *s = &p->board[i];
    atomic_store(&s->state, SLOT_STARTING);
    atomic_store(&s->pid, 0);
    atomic_store(&s->cur_seq, 0);
    atomic_store(&s->cur_start, 0);
    atomic_store(&s->done_seq, 0);
    atomic_store(&s->wpos, 0);
    atomic_store(&s->rpos, 0);
    atomic_store(&s->space, 0);
    atomic_store(&s->waiting, 0);
    w->rpos = 0;
    for (size_t k = 0; k < w->nool; k++)
        close(w->ool[k]);
    w->nool = 0;
    w->cfg = (pool__wcfg){.chan = sv[1],
                          .peer = sv[0],
                          .board_fd = p->board_fd,
                          .board = p->board,
                          .board_len = p->board_len,
                          .ring_off = p->ring_off,
                          .slot = (uint32_t)i,
                          .owner = p->owner,
                          .init = p->opts.initializer,
                          .initargs = p->initargs};
    int r = -ENOMEM;
    a = mproc_args_new();
    if (!a || mproc_args_add_object(a, &mproc__pool_wkind, &w->cfg) < 0)
        goto out_close;
    r = mproc_process_new(&proc, mproc__pool_worker_main, a);
    if (r < 0)
        goto out_close;
    char name[64];
    snprintf(name, sizeof name, "PoolWorker-%u", ++p->nstarted);
    mproc_process_set_name(proc, name);
    mproc_process_set_daemon(proc, 1);
    mproc_process_set_start_method(proc, p->opts.method);
    w->state = W_STARTING;
    unlock(p->core);
    r = mproc_process_start(proc);
    lock(p->core);
    close(sv[1]);
    sv[1] = -1;
    if (r < 0)
        goto out_close;
    w->proc = proc;
    w->pid = mproc_process_pid(proc);
    w->chan = sv[0];
    w->sentinel = mproc_process_sentinel(proc);
    w->gen++;
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u64 = ev_data(EV_CHAN, i, w->gen)};
    epoll_ctl(p->ep, EPOLL_CTL_ADD, w->chan, &ev);
    ev.data.u64 = ev_data(EV_SENT, i, w->gen);
    if (w->sentinel >= 0)
        epoll_ctl(p->ep, EPOLL_CTL_ADD, w->sentinel, &ev);
    w->q.n = 0;
    w->q.head = 0;
    w->mh = w->mn = 0;
    w->full = w->killed = false;
    w->next_seq = w->next_result = 1;
    w->timeout_seq = 0;
    w->assigned = 0;
    w->task_ns = UINT64_MAX; /* unknown: no second message yet */
    w->seen_ready = false;
    if (w->known)
        memset(w->known, 0, w->nknown);
    w->nbufs = w->buf_next = 0;
    w->state = W_LIVE;
    p->nlive++;
    mproc_args_free(a);
    mproc_debug("pool: started worker %d", (int)w->pid);
    return 0;
out_close:
    w->state = W_EMPTY;
    mproc_process_free(proc);
    mproc_args_free(a);
    mproc__close(sv[0]);
    mproc__close(sv[1]);
    return r;
}

static void describe_exit(int ec, char *buf, size_t n)
{
    if (ec == MPROC_EXITCODE_NONE)
        snprintf(buf, n, "vanished");
    else if (ec < 0) {
        const char *abbr = sigabbrev_np(-ec);
        snprintf(buf, n, "killed by signal %d (SIG%s)", -ec, abbr ? abbr : "?");
    } else
        snprintf(buf, n, "exited with code %d", ec);
}

static void handle_msg(mproc_pool *p, int i, size_t n, int *fds, size_t nfds);
static void consume(mproc_pool *p, int i);
static void recv_msgs(mproc_pool *p, int i, int max);

/* Reads whatever the worker has sent (results outlive its death). */
/* Reads up to max messages from worker i's channel. */
static void recv_msgs(mproc_pool *p, int i, int max)
{
    wslot *w = &p->w[i];
    for (int k = 0; k < max && w->chan >= 0; k++) {
        int fds[POOL__MAX_FDS] = {0};
        size_t nfds = POOL__MAX_FDS;
        ssize_t n = mproc__pool_recv(w->chan, p->rbuf, POOL__MSG_MAX, fds,
                                     &nfds, false);
        if (n == MPROC_EPROTO)
            continue;
        if (n <= 0)
            break;
        if ((size_t)n >= sizeof(pool__hdr))
            handle_msg(p, i, (size_t)n, fds, nfds);
        else
            for (size_t f = 0; f < nfds; f++)
                close(fds[f]);
        if (p->broken)
            return;
    }
}

/* Reads whatever the worker has sent and produced (results outlive its
 * death: they are in the ring). */
static void drain(mproc_pool *p, int i, int max)
{
    wslot *w = &p->w[i];
    recv_msgs(p, i, max);
    if (!p->broken && (w->state == W_LIVE || w->state == W_EXITING))
        consume(p, i);
}

static void break_pool(mproc_pool *p, int code, const char *msg);
static void drain_inbox(mproc_pool *p, int code);

/* A worker is gone: reap it, fail what it was running, hand back what it
 * never started. */
static void worker_gone(mproc_pool *p, int i)
{
    wslot *w = &p->w[i];
    drain(p, i, 1 << 20);
    if (p->broken)
        return; /* break_pool reaped it with the others */
    if (mproc_process_join(w->proc, 5.0) < 0) {
        mproc_process_kill(w->proc);
        mproc_process_join(w->proc, -1);
    }
    int ec = mproc_process_exitcode(w->proc);
    pool__slot *s = &p->board[i];
    uint32_t st = atomic_load(&s->state);
    uint64_t cur = atomic_load(&s->cur_seq);
    uint64_t done = atomic_load(&s->done_seq);
    epoll_ctl(p->ep, EPOLL_CTL_DEL, w->chan, NULL);
    if (w->sentinel >= 0)
        epoll_ctl(p->ep, EPOLL_CTL_DEL, w->sentinel, NULL);
    close(w->chan);
    w->chan = -1;
    mproc_process_free(w->proc);
    w->proc = NULL;
    w->sentinel = -1;
    pid_t pid = w->pid;
    int wstate = w->state;
    w->state = W_EMPTY;
    p->nlive--;
    char how[96];
    describe_exit(ec, how, sizeof how);
    mproc_debug("pool: worker %d %s", (int)pid, how);
    /* Died in its initializer: it never said it was ready and never sent
     * a result (the board alone could have been overwritten). */
    if (st != SLOT_READY && !w->seen_ready && wstate != W_EXITING &&
        !p->broken) {
        char msg[256];
        snprintf(msg, sizeof msg, "worker %d %s during its initializer",
                 (int)pid, how);
        /* Hand its tasks back first: break_pool fails them all. */
        for (size_t k = w->q.n; k-- > 0;) {
            seg sg = *dq_at(&w->q, k);
            sg.j->inflight -= sg.count;
            dq_push_front(&p->pending, sg);
            p->npending += sg.count;
        }
        w->q.n = 0;
        break_pool(p, MPROC_EINIT, msg);
        return;
    }
    /* Segments in order; seqs below next_result were delivered. Tasks up
     * to the one it was running fail; the rest never started. */
    size_t ks = w->q.n, ko = 0;
    for (size_t k = 0; k < w->q.n && ks == w->q.n; k++) {
        seg *sg = dq_at(&w->q, k);
        size_t nseq = sg->j->type == J_RANGE ? 1 : sg->count;
        for (size_t o = 0; o < nseq; o++) {
            uint64_t seq = sg->first_seq + o;
            if (seq < w->next_result)
                continue;
            if (seq > cur) {
                ks = k;
                ko = o;
                break;
            }
            size_t idx = sg->j->type == J_RANGE ? sg->start : sg->start + o;
            size_t cnt = sg->j->type == J_RANGE ? sg->count : 1;
            errrec *e;
            if (w->killed && seq == w->timeout_seq)
                e = errrec_new(MPROC_ETASKTIMEOUT, pid, ec, idx,
                               "task timed out after %.3g s; worker %d "
                               "was killed",
                               sg->j->timeout, (int)pid);
            else if (seq <= done)
                e = errrec_new(MPROC_EWORKER, pid, ec, idx,
                               "worker %d %s before sending this task's "
                               "result",
                               (int)pid, how);
            else
                e = errrec_new(MPROC_EWORKER, pid, ec, idx,
                               "worker %d %s while running this task", (int)pid,
                               how);
            deliver_fail(p, sg->j, idx, cnt, e, MPROC_EWORKER, true);
        }
    }
    for (size_t k = w->q.n; k-- > ks;) {
        seg sg = *dq_at(&w->q, k);
        if (k == ks && ko > 0) {
            sg.start += ko;
            sg.count -= ko;
        }
        sg.j->inflight -= sg.count;
        if (sg.j->cancelled) {
            check_finished(p, sg.j);
            continue;
        }
        if (!dq_push_front(&p->pending, sg)) {
            fail_seg(p, &sg, -ENOMEM, "out of memory requeueing a task");
            continue;
        }
        p->npending += sg.count;
    }
    w->q.n = 0;
    w->q.head = 0;
}

/* The in-flight segment of worker w that holds seq (the front one). */
static seg *seg_for(wslot *w, uint64_t seq)
{
    /* Results come in order, and a finished segment leaves the queue at
     * once: anything else is a stray entry, ignored. */
    if (w->q.n == 0)
        return NULL;
    seg *sg = dq_at(&w->q, 0);
    size_t nseq = sg->j->type == J_RANGE ? 1 : sg->count;
    if (seq < sg->first_seq || seq >= sg->first_seq + nseq)
        return NULL;
    return sg;
}

static void result_done(wslot *w, uint64_t seq)
{
    seg *sg = dq_at(&w->q, 0);
    size_t nseq = sg->j->type == J_RANGE ? 1 : sg->count;
    if (seq + 1 == sg->first_seq + nseq)
        dq_pop_front(&w->q);
    w->next_result = seq + 1;
    while (w->mn > 0 && w->msg_end[w->mh] <= seq + 1) {
        uint64_t t = pool__now_ns();
        uint32_t c = w->msg_count[w->mh] ? w->msg_count[w->mh] : 1;
        w->task_ns = (t - w->msg_start) / c;
        w->msg_start = t; /* the next one (if any) starts now */
        w->mh = (w->mh + 1) % POOL__INFLIGHT;
        w->mn--;
    }
    w->full = false;
}

static void handle_initfail(mproc_pool *p, size_t n)
{
    char msg[256];
    size_t len = n - sizeof(pool__hdr);
    if (len >= sizeof msg)
        len = sizeof msg - 1;
    memcpy(msg, p->rbuf + sizeof(pool__hdr), len);
    msg[len] = 0;
    break_pool(p, MPROC_EINIT, msg);
}

static unsigned char *ring_of(mproc_pool *p, int i)
{
    return (unsigned char *)p->board + p->ring_off + (size_t)i * POOL__RING;
}

/* One result entry (data points into b, or is an out-of-line memfd). */
/* Returns false for an entry no task of the worker can have written. */
static bool take_entry(mproc_pool *p, int i, const pool__entry *e, msgbuf *b,
                       size_t off)
{
    wslot *w = &p->w[i];
    msgbuf *ib = b;
    size_t len = e->len;
    int32_t status = e->status;
    const unsigned char *data = b->p + off;
    if (e->len == POOL__OOL_LEN) {
        uint64_t size;
        memcpy(&size, data, 8);
        len = (size_t)size;
        ib = NULL;
        int fd = -1;
        if (w->nool == 0) /* sent before the entry: it is in the socket */
            recv_msgs(p, i, 16);
        if (w->nool > 0) {
            fd = w->ool[0];
            memmove(w->ool, w->ool + 1, --w->nool * sizeof *w->ool);
        }
        void *m = MAP_FAILED;
        if (fd >= 0 && len > 0)
            m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        mproc__close(fd);
        if (m != MAP_FAILED) {
            ib = calloc(1, sizeof *ib);
            if (ib) {
                ib->refs = 1;
                ib->mapped = true;
                ib->p = m;
                ib->len = len;
            } else {
                munmap(m, len);
            }
        }
        if (!ib) {
            status = status ? status : -ENOMEM;
            len = 0;
        }
        data = ib ? ib->p : NULL;
        off = 0;
    }
    seg *sg = seg_for(w, e->seq);
    bool ok = sg != NULL;
    if (sg) {
        job *j = sg->j;
        size_t idx = j->type == J_RANGE
                         ? sg->start
                         : sg->start + (size_t)(e->seq - sg->first_seq);
        size_t cnt = j->type == J_RANGE ? sg->count : 1;
        result_done(w, e->seq);
        if (status == 0) {
            deliver_ok(p, j, idx, cnt, len ? ib : NULL, off, len);
        } else {
            int code = status == SLOT_PENDING ? MPROC_ETASK : status;
            char msg[256];
            size_t ml = len < sizeof msg - 1 ? len : sizeof msg - 1;
            if (data && ml)
                memcpy(msg, data, ml);
            msg[data ? ml : 0] = 0;
            errrec *er = errrec_new(code, w->pid, 0, idx, "%s", msg);
            deliver_fail(p, j, idx, cnt, er, code, true);
        }
    }
    if (ib && ib != b)
        msgbuf_unref(ib);
    return ok;
}

/* The common case made cheap: a run of plain successful results of one
 * map segment, stored straight into the job's slots. Returns the bytes of
 * b it used (0: not that case). */
static size_t map_run(mproc_pool *p, wslot *w, msgbuf *b, size_t pos,
                      size_t total, uint64_t rpos)
{
    if (w->q.n == 0)
        return 0;
    seg *sg = dq_at(&w->q, 0);
    job *j = sg->j;
    if (j->type != J_MAP || j->cancelled)
        return 0;
    uint64_t end = sg->first_seq + sg->count;
    size_t start = pos, n = 0;
    uint64_t seq = 0;
    while (pos < total) {
        size_t off = (size_t)((rpos + pos) % POOL__RING);
        if (POOL__RING - off < sizeof(pool__entry) ||
            total - pos < sizeof(pool__entry))
            break;
        pool__entry e;
        memcpy(&e, b->p + pos, sizeof e);
        if (e.status != 0 || e.len == POOL__OOL_LEN || e.len == 0 ||
            e.seq < sg->first_seq || e.seq >= end ||
            pool__pad8(e.len) > total - pos - sizeof e)
            break;
        rslot *s = &j->slots[sg->start + (size_t)(e.seq - sg->first_seq)];
        if (s->status != SLOT_PENDING)
            break;
        s->status = 0;
        s->ptr = b;
        s->off = (uint32_t)(pos + sizeof e);
        s->len = e.len;
        seq = e.seq;
        n++;
        pos += sizeof e + pool__pad8(e.len);
    }
    if (n == 0)
        return 0;
    b->refs += n;
    j->inflight -= n;
    j->done += n;
    result_done(w, seq);
    if (j->done == j->n)
        broadcast(j->core);
    mark_dirty(p, j);
    check_finished(p, j);
    return pos - start;
}

/* Takes every committed result out of worker i's ring. */
static void consume(mproc_pool *p, int i)
{
    wslot *w = &p->w[i];
    pool__slot *s = &p->board[i];
    if (!w->seen_ready && atomic_load(&s->state) == SLOT_READY)
        w->seen_ready = true;
    uint64_t wpos = atomic_load_explicit(&s->wpos, memory_order_acquire);
    uint64_t rpos = w->rpos;
    if (wpos != rpos)
        w->seen_ready = true; /* results come after the initializer */
    if (wpos == rpos) {
        /* Nothing new. Our position is ours: if the board says otherwise
         * it was overwritten; put it right, or the worker may wait. */
        if (atomic_load(&s->rpos) != rpos) {
            atomic_store(&s->rpos, rpos);
            atomic_fetch_add(&s->space, 1);
            mproc__futex_wake((uint32_t *)&s->space, 1);
        }
        return;
    }
    if (wpos < rpos || wpos - rpos > POOL__RING) {
        /* A worker wrote nonsense: it cannot be trusted any more. */
        w->rpos = wpos;
        if (!w->killed) {
            w->killed = true;
            mproc_process_kill(w->proc);
        }
        return;
    }
    size_t total = (size_t)(wpos - rpos);
    msgbuf *b = malloc(sizeof *b + total);
    if (!b)
        return; /* try again on the next wake-up */
    b->refs = 1;
    b->len = total;
    b->mapped = false;
    b->p = (unsigned char *)(b + 1);
    const unsigned char *ring = ring_of(p, i);
    size_t off0 = (size_t)(rpos % POOL__RING);
    size_t a = POOL__RING - off0 < total ? POOL__RING - off0 : total;
    memcpy(b->p, ring + off0, a);
    if (total > a)
        memcpy(b->p + a, ring, total - a);
    /* The copy is ours: free the ring for the worker at once. */
    w->rpos = wpos;
    atomic_store_explicit(&s->rpos, wpos, memory_order_release);
    if (atomic_load(&s->waiting)) {
        atomic_fetch_add(&s->space, 1);
        mproc__futex_wake((uint32_t *)&s->space, 1);
    }
    size_t pos = 0;
    bool bad = false;
    while (pos < total) {
        size_t off = (size_t)((rpos + pos) % POOL__RING);
        size_t left = POOL__RING - off;
        if (left < sizeof(pool__entry)) {
            pos += left;
            continue;
        }
        if (total - pos < sizeof(pool__entry)) {
            bad = true;
            break;
        }
        pool__entry e;
        memcpy(&e, b->p + pos, sizeof e);
        if (e.status == POOL__WRAP) {
            pos += left;
            continue;
        }
        size_t body = e.len == POOL__OOL_LEN ? 8 : pool__pad8(e.len);
        if (body > total - pos - sizeof e) {
            bad = true;
            break;
        }
        if (e.status == 0 && e.len != POOL__OOL_LEN && e.len > 0) {
            size_t used = map_run(p, w, b, pos, total, rpos);
            if (used) {
                pos += used;
                continue;
            }
        }
        if (!take_entry(p, i, &e, b, pos + sizeof e))
            bad = true;
        pos += sizeof e + body;
    }
    msgbuf_unref(b);
    if (bad && !w->killed) {
        /* Its results were overwritten (a task with a wild pointer): the
         * tasks they belonged to would wait forever. Kill it; its death
         * fails what it held and hands back what it never started. */
        mproc_debug("pool: worker %d corrupted its results; killing it",
                    (int)w->pid);
        w->killed = true;
        mproc_process_kill(w->proc);
    }
}

static void handle_msg(mproc_pool *p, int i, size_t n, int *fds, size_t nfds)
{
    wslot *w = &p->w[i];
    pool__hdr h;
    size_t fdi = 0;
    memcpy(&h, p->rbuf, sizeof h);
    if (h.type == WM_INITFAIL) {
        handle_initfail(p, n);
    } else if (h.type == WM_OOLFD && nfds > 0) {
        if (w->nool < MPROC__ARRAY_LEN(w->ool))
            w->ool[w->nool++] = fds[fdi++];
    }
    for (; fdi < nfds; fdi++)
        mproc__close(fds[fdi]);
}

/* ---- failure of the whole pool ----------------------------------------- */

/* Fails every pending task and every task in flight with code. */
static void fail_all(mproc_pool *p, int code, const char *msg)
{
    for (int i = 0; i < p->nproc; i++) {
        wslot *w = &p->w[i];
        while (w->q.n > 0) {
            seg sg = *dq_at(&w->q, 0);
            dq_pop_front(&w->q);
            size_t nseq = sg.j->type == J_RANGE ? 1 : sg.count;
            if (sg.j->type != J_RANGE && w->next_result > sg.first_seq) {
                size_t skip = (size_t)(w->next_result - sg.first_seq);
                if (skip >= nseq)
                    continue;
                sg.start += skip;
                sg.count -= skip;
            }
            errrec *e = errrec_new(code, w->pid, 0, sg.start, "%s", msg);
            deliver_fail(p, sg.j, sg.start, sg.count, e, code, true);
        }
    }
    while (p->pending.n > 0) {
        seg sg = *dq_at(&p->pending, 0);
        dq_pop_front(&p->pending);
        p->npending -= sg.count;
        fail_seg(p, &sg, code, msg);
    }
    /* Streams end: imap iterators report the error after their results. */
    for (job *j = p->jobs, *nx; j; j = nx) {
        nx = j->next;
        if (j->type == J_IMAP && !j->input_end) {
            j->input_end = true;
            j->stream_err = code;
            p->open_streams--;
            broadcast(p->core);
            check_finished(p, j);
        }
    }
}

/* Stops every worker and reaps it. Workers already on their way out (and,
 * when graceful, every idle one, asked with PM_EXIT) get a moment to end
 * by themselves: killing a process in its exit path can orphan helpers of
 * its own (a sanitizer's tracer, say). The others are SIGKILLed at once. */
static void kill_and_reap_all(mproc_pool *p, bool graceful)
{
    bool wait_some = false;
    for (int i = 0; i < p->nproc; i++) {
        wslot *w = &p->w[i];
        if (w->state == W_LIVE && graceful) {
            pool__hdr h = {.type = PM_EXIT};
            /* It may be gone already (a failed send): wait for it all the
             * same, and kill it if it does not end soon. */
            (void)mproc__pool_send(w->chan, &h, sizeof h, NULL, 0, false);
            w->state = W_EXITING;
        }
        if (w->state == W_EXITING)
            wait_some = true;
        else if (w->state == W_LIVE)
            mproc_process_kill(w->proc);
    }
    mproc__deadline d = mproc__deadline_from(graceful ? 1.0 : 0.2);
    for (int i = 0; i < p->nproc; i++) {
        wslot *w = &p->w[i];
        if (w->state != W_LIVE && w->state != W_EXITING)
            continue;
        if (wait_some && w->state == W_EXITING) {
            struct timespec left;
            double t = 0;
            if (mproc__deadline_left(&d, &left))
                t = (double)left.tv_sec + (double)left.tv_nsec / 1e9;
            if (mproc_process_join(w->proc, t) < 0)
                mproc_process_kill(w->proc);
        }
        mproc_process_join(w->proc, -1);
        epoll_ctl(p->ep, EPOLL_CTL_DEL, w->chan, NULL);
        if (w->sentinel >= 0)
            epoll_ctl(p->ep, EPOLL_CTL_DEL, w->sentinel, NULL);
        close(w->chan);
        w->chan = -1;
        mproc_process_free(w->proc);
        w->proc = NULL;
        w->sentinel = -1;
        w->state = W_EMPTY;
        p->nlive--;
    }
}

static void break_pool(mproc_pool *p, int code, const char *msg)
{
    if (p->broken)
        return;
    __atomic_store_n(&p->broken, code, __ATOMIC_RELEASE);
    snprintf(p->broken_msg, sizeof p->broken_msg, "%s", msg);
    mproc_debug("pool: broken: %s", msg);
    kill_and_reap_all(p, true);
    drain_inbox(p, 0);
    fail_all(p, code, msg);
    __atomic_store_n(&p->state, P_TERM, __ATOMIC_RELEASE);
}

/* ---- dispatch ----------------------------------------------------------- */

static bool worker_knows_fn(wslot *w, uint32_t id)
{
    return id < w->nknown && w->known[id];
}

static int send_fndef(mproc_pool *p, wslot *w, uint32_t id)
{
    if (id >= w->nknown) {
        size_t cap = id + 16;
        uint8_t *k = realloc(w->known, cap);
        if (!k)
            return -ENOMEM;
        memset(k + w->nknown, 0, cap - w->nknown);
        w->known = k;
        w->nknown = cap;
    }
    pthread_mutex_lock(&p->in_mu); /* the table may grow meanwhile */
    fnent *f = &p->fns[id];
    size_t len = f->ref.len;
    pool__hdr h = {.type = PM_FNDEF, .fnid = id};
    memcpy(p->sbuf, &h, sizeof h);
    memcpy(p->sbuf + sizeof h, f->ref.p, len);
    pthread_mutex_unlock(&p->in_mu);
    int r = mproc__pool_send(w->chan, p->sbuf, sizeof h + len, NULL, 0, false);
    if (r == 0)
        w->known[id] = 1;
    return r;
}

/* Bytes of task idx of j (FK_BYTES). */
static void task_bytes(job *j, size_t idx, const void **d, size_t *len)
{
    if (j->type == J_APPLY) {
        *d = j->own;
        *len = j->ownlen;
    } else if (j->win) {
        *d = j->win[idx % j->window].data;
        *len = j->win[idx % j->window].len;
    } else {
        *d = j->items[idx].data;
        *len = j->items[idx].len;
    }
}

static const mproc_args *task_args(job *j, size_t idx)
{
    return j->type == J_APPLY ? j->ownargs : j->argv[idx];
}

static bool knows_buf(wslot *w, uint64_t id)
{
    for (size_t i = 0; i < w->nbufs; i++)
        if (w->bufs[i] == id)
            return true;
    return false;
}

static void learn_buf(wslot *w, uint64_t id)
{
    w->bufs[w->buf_next] = id;
    w->buf_next = (w->buf_next + 1) % POOL__FDCACHE;
    if (w->nbufs < POOL__FDCACHE)
        w->nbufs++;
}

static int shm_fd(mproc_pool *p, uint64_t id)
{
    for (size_t i = 0; i < 2; i++)
        if (p->scratch[i].id == id && p->scratch[i].p)
            return p->scratch[i].fd;
    for (size_t i = 0; i < p->nshm; i++)
        if (p->shm[i].id == id)
            return p->shm[i].fd;
    return -1;
}

static void push_msg(wslot *w, uint64_t end_seq, size_t count)
{
    if (w->mn == 0)
        w->msg_start = pool__now_ns();
    w->msg_count[(w->mh + w->mn) % POOL__INFLIGHT] =
        count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
    w->msg_end[(w->mh + w->mn) % POOL__INFLIGHT] = end_seq;
    w->mn++;
}

/* Sends one chunk of a records job to w. Returns 1 sent, 0 not. */
static int send_range(mproc_pool *p, wslot *w, seg *f, size_t k)
{
    job *j = f->j;
    pool__hdr h = {.type = PM_RANGE,
                   .kind = FK_RECORDS,
                   .count = 1,
                   .first_seq = w->next_seq,
                   .fnid = j->fnid,
                   .code = j->timeout > 0};
    pool__range rg = {.in_id = j->in_id,
                      .in_off = j->in_off,
                      .in_size = j->in_size,
                      .out_id = j->out_id,
                      .out_off = j->out_off,
                      .out_size = j->out_size,
                      .start = f->start,
                      .count = k};
    int fds[2];
    size_t nfds = 0;
    bool need_in = j->in_size && !knows_buf(w, j->in_id);
    bool need_out = !knows_buf(w, j->out_id);
    if (need_in) {
        fds[nfds++] = shm_fd(p, j->in_id);
        rg.flags |= 1;
    }
    if (need_out && !(need_in && j->out_id == j->in_id)) {
        fds[nfds++] = shm_fd(p, j->out_id);
        rg.flags |= 2;
    }
    memcpy(p->sbuf, &h, sizeof h);
    memcpy(p->sbuf + sizeof h, &rg, sizeof rg);
    int r = mproc__pool_send(w->chan, p->sbuf, sizeof h + sizeof rg, fds, nfds,
                             false);
    if (r < 0) {
        w->full = true;
        return 0;
    }
    if (rg.flags & 1)
        learn_buf(w, j->in_id);
    if (rg.flags & 2)
        learn_buf(w, j->out_id);
    seg s = {j, f->start, k, w->next_seq};
    if (!dq_push_back(&w->q, s)) {
        /* Cannot track it: the result would be dropped; fail it now. */
        errrec *e = errrec_new(-ENOMEM, 0, 0, f->start, "out of memory");
        deliver_fail(p, j, f->start, k, e, -ENOMEM, false);
    } else {
        j->inflight += k;
    }
    w->next_seq++;
    w->assigned++;
    push_msg(w, w->next_seq, 1);
    f->start += k;
    f->count -= k;
    p->npending -= k;
    if (f->count == 0)
        dq_pop_front(&p->pending);
    return 1;
}

/* Packs tasks from the front of the pending queue into one message for w.
 * Returns 1 when a message was sent, 0 when nothing was. */
static int send_batch(mproc_pool *p, wslot *w)
{
    while (p->pending.n > 0) {
        seg *f = dq_at(&p->pending, 0);
        if (!f->j->cancelled && f->count > 0)
            break;
        p->npending -= f->count;
        job *cj = f->j;
        dq_pop_front(&p->pending);
        check_finished(p, cj);
    }
    if (p->pending.n == 0)
        return 0;
    seg *f = dq_at(&p->pending, 0);
    job *j0 = f->j;
    if (!worker_knows_fn(w, j0->fnid)) {
        if (send_fndef(p, w, j0->fnid) < 0) {
            w->full = true;
            return 0;
        }
    }
    uint64_t allow = UINT64_MAX;
    if (p->opts.maxtasksperchild)
        allow = p->opts.maxtasksperchild - w->assigned;
    if (j0->type == J_RANGE) {
        size_t k = f->count < j0->chunk ? f->count : j0->chunk;
        return send_range(p, w, f, k);
    }
    size_t target;
    if (j0->type == J_APPLY || j0->chunk == 0) {
        size_t share = (p->npending + 2 * (size_t)p->nlive - 1) /
                       (2 * (size_t)(p->nlive ? p->nlive : 1));
        target = share < 1 ? 1 : share > 4096 ? 4096 : share;
    } else {
        target = j0->chunk;
    }
    if (target > allow)
        target = (size_t)allow;
    int fds[POOL__MAX_FDS] = {0};
    int closefds[POOL__MAX_FDS];
    size_t nfds = 0, nclose = 0, nitems = 0;
    size_t pos = sizeof(pool__hdr);
    mproc__buf ab = {0};
    int rc = 0;
    size_t qi = 0, off = 0; /* cursor in the pending queue */
    bool timed = false;
    while (nitems < target && qi < p->pending.n) {
        seg *s = dq_at(&p->pending, qi);
        job *j = s->j;
        if (j->cancelled || j->fnid != j0->fnid || j->fkind != j0->fkind ||
            j->type == J_RANGE)
            break;
        if (off == s->count) {
            qi++;
            off = 0;
            continue;
        }
        size_t idx = s->start + off;
        const void *d;
        size_t len;
        size_t kfds = 0;
        if (j->fkind == FK_ARGS) {
            ab.len = 0;
            ab.oom = false;
            size_t before = nfds;
            int r = mproc__args_export(task_args(j, idx), &ab, fds, &nfds,
                                       POOL__MAX_FDS - 1);
            if (r < 0 || ab.oom) {
                nfds = before;
                if (nitems > 0)
                    break;
                /* The task cannot be sent at all: fail it alone. */
                seg one = {j, idx, 1, 0};
                if (off == 0) {
                    s->start++;
                    s->count--;
                    if (s->count == 0)
                        dq_pop_front(&p->pending);
                } else {
                    break; /* handled when it reaches the front */
                }
                p->npending--;
                fail_seg(p, &one, r < 0 ? r : -ENOMEM,
                         "cannot send the task's arguments");
                rc = -1;
                goto out;
            }
            kfds = nfds - before;
            d = ab.p;
            len = ab.len;
        } else {
            task_bytes(j, idx, &d, &len);
        }
        bool ool = len > POOL__OOL_MIN;
        size_t need = sizeof(pool__item) + (ool ? 8 : pool__pad8(len));
        if (nitems > 0 && (pos + need > POOL__BATCH_MAX ||
                           nfds + (ool ? 1 : 0) > POOL__MAX_FDS)) {
            nfds -= kfds;
            break;
        }
        pool__item it = {.a = (int32_t)kfds, .len = (uint32_t)len};
        if (ool) {
            int mfd = mproc__memfd_with("mproc-pool-task", d, len);
            if (mfd < 0) {
                nfds -= kfds;
                if (nitems > 0)
                    break;
                rc = -1;
                goto out;
            }
            fds[nfds++] = mfd;
            closefds[nclose++] = mfd;
            it.len = POOL__OOL_LEN;
            uint64_t size = len;
            memcpy(p->sbuf + pos, &it, sizeof it);
            memcpy(p->sbuf + pos + sizeof it, &size, 8);
        } else {
            memcpy(p->sbuf + pos, &it, sizeof it);
            if (len)
                memcpy(p->sbuf + pos + sizeof it, d, len);
            memset(p->sbuf + pos + sizeof it + len, 0, pool__pad8(len) - len);
        }
        pos += need;
        nitems++;
        off++;
        timed |= j->timeout > 0;
        if (ool)
            break;
    }
    if (nitems == 0)
        goto out;
    pool__hdr h = {.type = PM_TASKS,
                   .kind = (uint8_t)j0->fkind,
                   .nfds = (uint16_t)nfds,
                   .count = (uint32_t)nitems,
                   .first_seq = w->next_seq,
                   .fnid = j0->fnid,
                   .code = timed};
    memcpy(p->sbuf, &h, sizeof h);
    if (mproc__pool_send(w->chan, p->sbuf, pos, fds, nfds, false) < 0) {
        w->full = true;
        goto out;
    }
    /* Move the sent tasks from the pending queue to the worker's. */
    size_t left = nitems;
    while (left > 0) {
        seg *s = dq_at(&p->pending, 0);
        size_t k = s->count < left ? s->count : left;
        seg t = {s->j, s->start, k, w->next_seq};
        if (!dq_push_back(&w->q, t)) {
            errrec *e = errrec_new(-ENOMEM, 0, 0, s->start, "out of memory");
            deliver_fail(p, s->j, s->start, k, e, -ENOMEM, false);
        } else {
            s->j->inflight += k;
        }
        w->next_seq += k;
        s->start += k;
        s->count -= k;
        left -= k;
        if (s->count == 0)
            dq_pop_front(&p->pending);
    }
    p->npending -= nitems;
    w->assigned += nitems;
    push_msg(w, w->next_seq, nitems);
    rc = 1;
out:
    for (size_t i = 0; i < nclose; i++)
        close(closefds[i]);
    mproc__buf_free(&ab);
    return rc;
}

static void dispatch(mproc_pool *p)
{
    if (p->broken || p->state == P_TERM)
        return;
    bool any = true;
    while (p->pending.n > 0 && any) {
        any = false;
        for (int k = 0; k < p->nproc && p->pending.n > 0; k++) {
            int i = (p->rr + k) % p->nproc;
            wslot *w = &p->w[i];
            if (w->state != W_LIVE || w->full || w->mn >= POOL__INFLIGHT)
                continue;
            /* A second message waits behind the first: worth it for short
             * tasks (no idle gap between messages), harmful for long ones
             * (another worker may be idle by the time it would start). */
            if (w->mn > 0 && w->task_ns > 200000)
                continue;
            if (p->opts.maxtasksperchild &&
                w->assigned >= p->opts.maxtasksperchild)
                continue;
            int r = send_batch(p, w);
            if (r != 0)
                any = true;
        }
        p->rr = (p->rr + 1) % p->nproc;
    }
}

static bool need_workers(mproc_pool *p)
{
    if (p->broken || p->state == P_TERM)
        return false;
    if (p->state == P_RUN)
        return true;
    if (p->npending > 0 || p->open_streams > 0)
        return true;
    for (int i = 0; i < p->nproc; i++)
        if (p->w[i].q.n > 0)
            return true;
    return false;
}

/* Sends PM_EXIT to workers that are done: recycled (maxtasksperchild) or
 * idle after close. */
static void retire(mproc_pool *p)
{
    bool closing =
        p->state == P_CLOSE && p->npending == 0 && p->open_streams == 0;
    for (int i = 0; i < p->nproc; i++) {
        wslot *w = &p->w[i];
        if (w->state != W_LIVE || w->q.n > 0)
            continue;
        bool used =
            p->opts.maxtasksperchild && w->assigned >= p->opts.maxtasksperchild;
        if (!used && !closing)
            continue;
        pool__hdr h = {.type = PM_EXIT};
        if (mproc__pool_send(w->chan, &h, sizeof h, NULL, 0, false) == 0)
            w->state = W_EXITING;
    }
}

static void replace(mproc_pool *p)
{
    if (!need_workers(p) || pool__now_ns() < p->retry_at)
        return;
    for (int i = 0; i < p->nproc; i++) {
        if (p->w[i].state != W_EMPTY)
            continue;
        int r = start_worker(p, i);
        if (p->state == P_TERM || p->broken)
            return;
        if (r < 0) {
            p->start_failures++;
            p->retry_at = pool__now_ns() + 100000000ull;
            if (p->start_failures >= 20 && p->nlive == 0) {
                char msg[160];
                snprintf(msg, sizeof msg, "cannot start pool workers: %s",
                         mproc_strerror(r));
                break_pool(p, r, msg);
            }
            return;
        }
        p->start_failures = 0;
    }
}

/* ---- timeouts and progress ---------------------------------------------- */

/* Kills workers whose task is overdue; returns ns until the next check
 * (UINT64_MAX: none needed). */
static uint64_t check_timeouts(mproc_pool *p)
{
    uint64_t now = pool__coarse_ns(), next = UINT64_MAX;
    for (int i = 0; i < p->nproc; i++) {
        wslot *w = &p->w[i];
        if (w->state != W_LIVE || w->q.n == 0 || w->killed)
            continue;
        pool__slot *s = &p->board[i];
        uint64_t cur = atomic_load_explicit(&s->cur_seq, memory_order_acquire);
        uint64_t start =
            atomic_load_explicit(&s->cur_start, memory_order_relaxed);
        uint64_t done =
            atomic_load_explicit(&s->done_seq, memory_order_acquire);
        double tmin = 0;
        /* The shortest timeout among its queued tasks bounds how long a
         * not yet started one may run before we look again. */
        for (size_t k = 0; k < w->q.n; k++) {
            double t = dq_at(&w->q, k)->j->timeout;
            if (t > 0 && (tmin == 0 || t < tmin))
                tmin = t;
        }
        if (tmin == 0)
            continue;
        uint64_t tmin_ns = (uint64_t)(tmin * 1e9);
        if (next > tmin_ns)
            next = tmin_ns;
        if (cur <= done || cur < w->next_result)
            continue;
        job *j = NULL;
        for (size_t k = 0; k < w->q.n; k++) {
            seg *sg = dq_at(&w->q, k);
            size_t nseq = sg->j->type == J_RANGE ? 1 : sg->count;
            if (cur >= sg->first_seq && cur < sg->first_seq + nseq) {
                j = sg->j;
                break;
            }
        }
        if (!j || j->timeout <= 0)
            continue;
        uint64_t deadline = start + (uint64_t)(j->timeout * 1e9);
        if (now >= deadline) {
            mproc_debug("pool: task timed out; killing worker %d", (int)w->pid);
            w->killed = true;
            w->timeout_seq = cur;
            mproc_process_kill(w->proc);
        } else if (deadline - now < next) {
            next = deadline - now;
        }
    }
    return next;
}

static void fmt_secs(char *b, size_t n, double s)
{
    if (s < 0 || s > 1e7)
        snprintf(b, n, "?");
    else if (s < 60)
        snprintf(b, n, "%.1fs", s);
    else
        snprintf(b, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60,
                 (int)s % 60);
}

static void bar_draw(job *j, bool final)
{
    double now = mproc_monotonic();
    if (j->bar_start == 0)
        j->bar_start = now;
    if (!final && now - j->bar_last < 0.1)
        return;
    j->bar_last = now;
    double el = now - j->bar_start;
    double rate = el > 0 ? (double)j->done / el : 0;
    char rs[32], eta[32], line[200];
    if (rate >= 1e6)
        snprintf(rs, sizeof rs, "%.2fM/s", rate / 1e6);
    else if (rate >= 1e3)
        snprintf(rs, sizeof rs, "%.1fk/s", rate / 1e3);
    else
        snprintf(rs, sizeof rs, "%.1f/s", rate);
    int n;
    size_t total = j->type == J_IMAP ? (j->input_end ? j->submitted : 0) : j->n;
    if (total > 0) {
        double frac = (double)j->done / (double)total;
        char bar[31];
        int fill = (int)(frac * 30);
        for (int k = 0; k < 30; k++)
            bar[k] = k < fill ? '#' : '.';
        bar[30] = 0;
        fmt_secs(eta, sizeof eta,
                 rate > 0 ? (double)(total - j->done) / rate : -1);
        n = snprintf(line, sizeof line, "\r%3d%% [%s] %zu/%zu %s ETA %s%s",
                     (int)(frac * 100), bar, j->done, total, rs,
                     final ? "0.0s" : eta, final ? "\n" : "");
    } else {
        fmt_secs(eta, sizeof eta, el);
        n = snprintf(line, sizeof line, "\r%zu done %s elapsed %s%s", j->done,
                     rs, eta, final ? "\n" : "");
    }
    if (n > 0) {
        ssize_t r = write(
            2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)r;
    }
}

static void flush_dirty(mproc_pool *p)
{
    for (size_t k = 0; k < p->ndirty; k++) {
        job *j = p->dirty[k].j;
        j->dirty = false;
        if (!j->cancelled && j->bar)
            bar_draw(j, j->finished);
        size_t total =
            j->type == J_IMAP ? (j->input_end ? j->submitted : 0) : j->n;
        if (!j->cancelled && j->progress &&
            push_deferred(p, j, D_PROGRESS, j->done, total))
            continue; /* the deferred entry keeps the reference */
        job_unref_locked(j);
    }
    p->ndirty = 0;
}

/* Runs callbacks outside the lock. */
static void run_deferred(mproc_pool *p)
{
    while (p->ndq > 0) {
        size_t n = p->ndq;
        deferred *v = malloc(n * sizeof *v);
        if (!v)
            return;
        memcpy(v, p->dq, n * sizeof *v);
        p->ndq = 0;
        unlock(p->core);
        for (size_t k = 0; k < n; k++) {
            job *j = v[k].j;
            if (v[k].what == D_PROGRESS) {
                if (j->progress)
                    j->progress(v[k].done, v[k].total, j->parg);
            } else if (!j->cancelled) {
                cb_job = j;
                if (j->status == 0 && j->cb)
                    j->cb(j, j->cbarg);
                else if (j->status != 0 && j->ecb)
                    j->ecb(j, j->cbarg);
                cb_job = NULL;
            }
        }
        lock(p->core);
        for (size_t k = 0; k < n; k++) {
            job *j = v[k].j;
            if (v[k].what == D_DONE) {
                j->ready = true;
                broadcast(p->core);
            }
            job_unref_locked(j);
        }
        free(v);
    }
}

/* ---- the pool's thread ------------------------------------------------- */

static void pool_terminate_now(mproc_pool *p)
{
    kill_and_reap_all(p, false);
    fail_all(p, MPROC_EPOOL, "pool terminated");
}

static void handle_events(mproc_pool *p, struct epoll_event *ev, int n)
{
    for (int k = 0; k < n; k++) {
        uint64_t d = ev[k].data.u64;
        int kind = (int)((d >> 24) & 0xff);
        int i = (int)(d & 0xffffff);
        uint32_t gen = (uint32_t)(d >> 32);
        if (kind == EV_WAKE) {
            uint64_t v;
            ssize_t r = read(p->evfd, &v, sizeof v);
            (void)r;
            continue;
        }
        if (i >= p->nproc)
            continue;
        wslot *w = &p->w[i];
        if (w->gen != gen || (w->state != W_LIVE && w->state != W_EXITING))
            continue;
        if (kind == EV_CHAN)
            drain(p, i, 64);
        else if (kind == EV_SENT)
            worker_gone(p, i);
        if (p->broken)
            return;
    }
}

/* Takes the jobs apply_async queued (core->mu held). With code non-zero,
 * or when the pool cannot run them, they fail. */
static void drain_inbox(mproc_pool *p, int code)
{
    if (!atomic_load(&p->in_any))
        return;
    pthread_mutex_lock(&p->in_mu);
    job *j = p->in_head;
    p->in_head = p->in_tail = NULL;
    atomic_store(&p->in_any, false);
    pthread_mutex_unlock(&p->in_mu);
    while (j) {
        job *nx = j->inext;
        j->inext = NULL;
        live_link(p, j); /* the submitter counted the pool's reference */
        int c = code                 ? code
                : p->broken          ? p->broken
                : p->state == P_TERM ? MPROC_EPOOL
                                     : 0;
        seg s = {j, 0, 1, 0};
        if (!c && !dq_push_back(&p->pending, s))
            c = -ENOMEM;
        if (c)
            fail_seg(p, &s, c,
                     c == p->broken     ? p->broken_msg
                     : c == MPROC_EPOOL ? "pool terminated"
                                        : "out of memory");
        else
            p->npending++;
        j = nx;
    }
}

/* No more apply_async: fails what is still queued. */
static void close_inbox(mproc_pool *p)
{
    pthread_mutex_lock(&p->in_mu);
    p->in_closed = true;
    pthread_mutex_unlock(&p->in_mu);
    drain_inbox(p, p->broken ? p->broken : MPROC_EPOOL);
}

static void *pool_main(void *arg)
{
    mproc_pool *p = arg;
    lock(p->core);
    for (int i = 0; i < p->nproc; i++) {
        int r = start_worker(p, i);
        if (r < 0) {
            p->start_err = r;
            break;
        }
    }
    p->started = true;
    pthread_cond_broadcast(&p->core->cv);
    if (p->start_err) {
        kill_and_reap_all(p, true);
        __atomic_store_n(&p->state, P_TERM, __ATOMIC_RELEASE);
        close_inbox(p);
        goto out;
    }
    struct epoll_event ev[64];
    for (;;) {
        drain_inbox(p, 0);
        if (p->state == P_TERM) {
            close_inbox(p);
            if (!p->broken)
                pool_terminate_now(p);
            flush_dirty(p);
            run_deferred(p);
            break;
        }
        replace(p);
        dispatch(p);
        retire(p);
        if (p->state == P_CLOSE && p->nlive == 0 && !need_workers(p)) {
            flush_dirty(p);
            run_deferred(p);
            if (p->nlive == 0 && !need_workers(p) && p->ndq == 0 &&
                !atomic_load(&p->in_any)) {
                close_inbox(p); /* fails what raced with close() */
                flush_dirty(p);
                run_deferred(p);
                break;
            }
            continue;
        }
        flush_dirty(p);
        if (p->ndq > 0) {
            run_deferred(p);
            continue;
        }
        uint64_t next = check_timeouts(p);
        for (job *j = p->jobs; j; j = j->next)
            if (j->bar && next > 100000000ull)
                next = 100000000ull;
        if (p->retry_at && need_workers(p)) {
            uint64_t now = pool__now_ns();
            uint64_t d = p->retry_at > now ? p->retry_at - now : 0;
            if (d < next)
                next = d;
        }
        /* Results are in the rings before the workers say so (they tell
         * only at the end of a message): look every 2 ms while tasks are
         * out, so a quick result is never held up by a slow neighbour. */
        for (int i = 0; i < p->nproc; i++)
            if (p->w[i].state == W_LIVE && p->w[i].q.n > 0 && next > 2000000ull)
                next = 2000000ull;
        int ms = next == UINT64_MAX ? -1 : (int)((next + 999999) / 1000000);
        /* replace() may have dropped the lock: a terminate or close that
         * came meanwhile found us awake and did not signal. */
        if (p->state == P_TERM || p->ndq > 0)
            continue;
        /* Announce the sleep, then look at the inbox once more: a
         * submitter either sees us sleeping (and writes the eventfd) or
         * we see its job. */
        atomic_store(&p->sleeping, true);
        if (atomic_load(&p->in_any)) {
            atomic_store(&p->sleeping, false);
            continue;
        }
        unlock(p->core);
        int n = epoll_wait(p->ep, ev, 64, ms);
        lock(p->core);
        atomic_store(&p->sleeping, false);
        if (n > 0)
            handle_events(p, ev, n);
        uint64_t t = pool__coarse_ns();
        if (t - p->last_poll >= 2000000ull) {
            p->last_poll = t;
            for (int i = 0; i < p->nproc && !p->broken; i++)
                if (p->w[i].state == W_LIVE && p->w[i].q.n > 0)
                    drain(p, i, 16);
        }
        check_timeouts(p);
        for (job *j = p->jobs; j; j = j->next)
            if (j->bar && !j->dirty)
                mark_dirty(p, j);
    }
out:
    p->thread_done = true;
    pthread_cond_broadcast(&p->core->cv);
    unlock(p->core);
    return NULL;
}

/* ---- pools -------------------------------------------------------------- */

static void free_resources(mproc_pool *p)
{
    for (int i = 0; p->w && i < p->nproc; i++) {
        for (size_t k = 0; k < p->w[i].nool; k++)
            close(p->w[i].ool[k]);
        free(p->w[i].known);
        free(p->w[i].q.v);
        mproc__close(p->w[i].chan);
    }
    free(p->w);
    if (p->board)
        munmap(p->board, p->board_len);
    mproc__close(p->board_fd);
    mproc__close(p->ep);
    mproc__close(p->evfd);
    for (size_t i = 0; i < p->nshm; i++) {
        munmap(p->shm[i].p, p->shm[i].len);
        close(p->shm[i].fd);
    }
    free(p->shm);
    for (size_t i = 0; i < 2; i++)
        if (p->scratch[i].p) {
            munmap(p->scratch[i].p, p->scratch[i].len);
            close(p->scratch[i].fd);
        }
    for (size_t i = 0; i < p->nfns; i++)
        mproc__buf_free(&p->fns[i].ref);
    free(p->fns);
    free(p->pending.v);
    free(p->dq);
    free(p->dirty);
    mproc_args_free(p->initargs);
    free(p->sbuf);
    free(p->rbuf);
    pthread_mutex_destroy(&p->in_mu);
}

int mproc_pool_new(mproc_pool **out, const mproc_pool_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mproc_pool_opts o = {0};
    if (opts)
        o = *opts;
    if (o.processes < 0 || o.processes > 0xffff)
        return -EINVAL;
    if (o.method != MPROC_START_DEFAULT && !mproc_start_method_name(o.method))
        return -EINVAL;
    if (o.processes == 0)
        o.processes = mproc_process_cpu_count();
    if (mproc_process_daemon(mproc_current_process()))
        return MPROC_EDAEMON;
    mproc_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int r = -ENOMEM;
    p->board_fd = p->ep = p->evfd = -1;
    p->owner = my_pid();
    p->nproc = o.processes;
    p->opts = o;
    p->opts.initargs = NULL;
    pthread_mutex_init(&p->in_mu, NULL);
    p->core = core_new();
    p->w = calloc((size_t)p->nproc, sizeof *p->w);
    p->sbuf = malloc(POOL__MSG_MAX);
    p->rbuf = malloc(POOL__MSG_MAX);
    if (o.initargs)
        p->initargs = mproc__args_copy(o.initargs);
    if (!p->core || !p->w || !p->sbuf || !p->rbuf ||
        (o.initargs && !p->initargs))
        goto out_free;
    for (int i = 0; i < p->nproc; i++)
        p->w[i].chan = p->w[i].sentinel = -1;
    long pg = sysconf(_SC_PAGESIZE);
    p->ring_off = ((size_t)p->nproc * sizeof(pool__slot) + (size_t)pg - 1) &
                  ~((size_t)pg - 1);
    p->board_len = p->ring_off + (size_t)p->nproc * POOL__RING;
    p->board_fd = memfd_create("mproc-pool-board", MFD_CLOEXEC);
    if (p->board_fd < 0 || ftruncate(p->board_fd, (off_t)p->board_len) < 0) {
        r = -errno;
        goto out_free;
    }
    void *m = mmap(NULL, p->board_len, PROT_READ | PROT_WRITE, MAP_SHARED,
                   p->board_fd, 0);
    if (m == MAP_FAILED) {
        r = -errno;
        goto out_free;
    }
    p->board = m;
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->ep < 0 || p->evfd < 0) {
        r = -errno;
        goto out_free;
    }
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u64 = ev_data(EV_WAKE, 0, 0)};
    if (epoll_ctl(p->ep, EPOLL_CTL_ADD, p->evfd, &ev) < 0) {
        r = -errno;
        goto out_free;
    }
    /* The pool's thread takes no signals: they belong to the program. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    lock(p->core);
    r = -pthread_create(&p->thread, NULL, pool_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        unlock(p->core);
        goto out_free;
    }
    p->thread_started = true;
    mproc__deadline forever = mproc__deadline_from(-1);
    while (!p->started)
        wait_until(p->core, &forever);
    r = p->start_err;
    unlock(p->core);
    if (r < 0) {
        pthread_join(p->thread, NULL);
        goto out_free;
    }
    mproc_debug("pool: created with %d workers", p->nproc);
    *out = p;
    return 0;
out_free:
    free_resources(p);
    if (p->core) {
        lock(p->core);
        core_unref_unlock(p->core);
    }
    free(p);
    return r;
}

int mproc_pool_close(mproc_pool *p)
{
    if (!p)
        return -EINVAL;
    lock(p->core);
    if (p->state == P_RUN) {
        __atomic_store_n(&p->state, P_CLOSE, __ATOMIC_RELEASE);
        wake(p);
    }
    unlock(p->core);
    return 0;
}

int mproc_pool_terminate(mproc_pool *p)
{
    if (!p)
        return -EINVAL;
    if (my_pid() != p->owner)
        return MPROC_EPOOL;
    lock(p->core);
    if (p->state != P_TERM) {
        __atomic_store_n(&p->state, P_TERM, __ATOMIC_RELEASE);
        wake(p);
    }
    if (on_pool_thread(p)) {
        unlock(p->core);
        return 0;
    }
    mproc__deadline forever = mproc__deadline_from(-1);
    while (!p->thread_done)
        wait_until(p->core, &forever);
    unlock(p->core);
    return 0;
}

int mproc_pool_join(mproc_pool *p, double timeout)
{
    if (!p)
        return -EINVAL;
    if (on_pool_thread(p))
        return -EDEADLK;
    if (my_pid() != p->owner)
        return MPROC_EPOOL;
    lock(p->core);
    if (p->state == P_RUN) {
        unlock(p->core);
        return -EINVAL;
    }
    mproc__deadline d = mproc__deadline_from(timeout);
    while (!p->thread_done)
        if (!wait_until(p->core, &d))
            break;
    if (!p->thread_done) {
        unlock(p->core);
        return -ETIMEDOUT;
    }
    bool do_join = !p->joined;
    p->joined = true;
    unlock(p->core);
    if (do_join)
        pthread_join(p->thread, NULL);
    return 0;
}

void mproc_pool_free(mproc_pool *p)
{
    if (!p)
        return;
    if (my_pid() != p->owner) {
        /* A forked child's copy: the workers are not ours. The copied
         * lock may be held by a thread that does not exist here, so leave
         * the core (and jobs) alone. */
        free_resources(p);
        free(p);
        return;
    }
    if (on_pool_thread(p))
        return; /* documented misuse: cannot free from a callback */
    mproc_pool_terminate(p);
    lock(p->core);
    bool do_join = !p->joined;
    p->joined = true;
    unlock(p->core);
    if (do_join)
        pthread_join(p->thread, NULL);
    lock(p->core);
    for (job *j = p->jobs; j; j = j->next)
        j->pool = NULL;
    unlock(p->core);
    core *c = p->core;
    free_resources(p);
    free(p);
    lock(c);
    core_unref_unlock(c);
}

int mproc_pool_processes(const mproc_pool *p)
{
    return p ? p->nproc : 0;
}

int mproc_pool_pids(mproc_pool *p, pid_t *pids, size_t max)
{
    if (!p)
        return -EINVAL;
    lock(p->core);
    int n = 0;
    for (int i = 0; i < p->nproc; i++) {
        wslot *w = &p->w[i];
        if (w->state != W_LIVE && w->state != W_EXITING)
            continue;
        if (pids && (size_t)n < max)
            pids[n] = w->pid;
        n++;
    }
    unlock(p->core);
    return n;
}

/* ---- submitting --------------------------------------------------------- */

/* Whether new calls are taken; needs no lock (state and broken are
 * stored atomically). */
static int accepts(mproc_pool *p)
{
    if (my_pid() != p->owner)
        return MPROC_EPOOL;
    int b = __atomic_load_n(&p->broken, __ATOMIC_ACQUIRE);
    if (b)
        return b;
    if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != P_RUN)
        return MPROC_EPOOL;
    return 0;
}

static size_t auto_chunk(mproc_pool *p, size_t n)
{
    size_t d = 4 * (size_t)p->nproc;
    size_t c = n / d;
    if (n % d)
        c++;
    return c;
}

/* Queues all n tasks of a non-imap job. Lock held. */
static int submit(mproc_pool *p, job *j)
{
    live_add(p, j);
    if (j->n > 0) {
        if (!dq_push_back(&p->pending, (seg){j, 0, j->n, 0})) {
            live_remove(p, j);
            j->refs--;
            return -ENOMEM;
        }
        p->npending += j->n;
    } else {
        check_finished(p, j);
    }
    wake(p);
    return 0;
}

/* Allocates result slots, all pending (one task's is in the job). */
static bool alloc_slots(job *j, size_t n)
{
    j->nslots = n;
    if (n == 0)
        return true;
    j->slots = n == 1 ? &j->slot1 : malloc(n * sizeof *j->slots);
    if (!j->slots)
        return false;
    for (size_t i = 0; i < n; i++) {
        j->slots[i].ptr = NULL;
        j->slots[i].status = SLOT_PENDING;
    }
    return true;
}

/* Frees a job that never left its submitter. */
static void job_discard(job *j)
{
    core *c = j->core;
    job_free(j);
    atomic_fetch_sub(&c->refs, 1); /* the pool holds one: never the last */
}

static int apply_common(mproc_pool *p, const void *fn, int kind, const void *in,
                        size_t len, const mproc_args *args,
                        const mproc_call_opts *opts, mproc_future **out)
{
    if (out)
        *out = NULL;
    if (!p || !fn || (!in && len))
        return -EINVAL;
    int r = accepts(p);
    uint32_t fnid = 0;
    if (r == 0)
        r = fn_id(p, fn, kind, &fnid);
    if (r < 0)
        return r;
    job *j = job_new(p, J_APPLY, kind);
    if (!j)
        return -ENOMEM;
    j->n = 1;
    j->fnid = fnid;
    alloc_slots(j, 1); /* the job's own slot: cannot fail */
    if (kind == FK_ARGS) {
        j->ownargs = mproc__args_copy(args);
        if (!j->ownargs)
            goto out_nomem;
    } else if (len) {
        j->own = len <= sizeof j->small ? j->small : malloc(len);
        if (!j->own)
            goto out_nomem;
        memcpy(j->own, in, len);
        j->ownlen = len;
    }
    apply_opts(p, j, opts);
    j->refs = out ? 2 : 1; /* the caller's, and the pool's until done */
    pthread_mutex_lock(&p->in_mu);
    if (p->in_closed) {
        pthread_mutex_unlock(&p->in_mu);
        job_discard(j);
        return MPROC_EPOOL;
    }
    j->inext = NULL;
    if (p->in_tail)
        p->in_tail->inext = j;
    else
        p->in_head = j;
    p->in_tail = j;
    atomic_store(&p->in_any, true);
    pthread_mutex_unlock(&p->in_mu);
    wake(p);
    if (out)
        *out = j;
    return 0;
out_nomem:
    job_discard(j);
    return -ENOMEM;
}

int mproc_pool_apply_async(mproc_pool *p, mproc_task_fn fn, const void *in,
                           size_t len, const mproc_call_opts *opts,
                           mproc_future **out)
{
    return apply_common(p, (const void *)fn, FK_BYTES, in, len, NULL, opts,
                        out);
}

int mproc_pool_apply_args_async(mproc_pool *p, mproc_star_fn fn,
                                const mproc_args *args,
                                const mproc_call_opts *opts, mproc_future **out)
{
    return apply_common(p, (const void *)fn, FK_ARGS, NULL, 0, args, opts, out);
}

static void copy_error(job *j, mproc_task_error *err)
{
    if (!err)
        return;
    if (j->first_err)
        *err = j->first_err->e;
    else {
        memset(err, 0, sizeof *err);
        err->code = j->status;
        err->index = j->first_fail;
        snprintf(err->message, sizeof err->message, "%s",
                 mproc_strerror(j->status));
    }
}

int mproc_pool_apply(mproc_pool *p, mproc_task_fn fn, const void *in,
                     size_t len, void **res, size_t *reslen,
                     mproc_task_error *err)
{
    mproc_future *f;
    if (res)
        *res = NULL;
    if (reslen)
        *reslen = 0;
    if (err)
        memset(err, 0, sizeof *err);
    int r = mproc_pool_apply_async(p, fn, in, len, NULL, &f);
    if (r < 0) {
        if (err) {
            err->code = r;
            snprintf(err->message, sizeof err->message, "%s",
                     mproc_strerror(r));
            if (p) {
                lock(p->core);
                if (p->broken && r == p->broken)
                    snprintf(err->message, sizeof err->message, "%s",
                             p->broken_msg);
                unlock(p->core);
            }
        }
        return r;
    }
    const void *d;
    size_t n;
    r = mproc_future_get(f, -1, &d, &n);
    if (r == 0) {
        if (res && n) {
            *res = malloc(n);
            if (!*res)
                r = -ENOMEM;
            else
                memcpy(*res, d, n);
        }
        if (reslen && r == 0)
            *reslen = n;
    } else if (err) {
        lock(f->core);
        copy_error(f, err);
        unlock(f->core);
    }
    mproc_future_free(f);
    return r;
}

/* ---- futures ------------------------------------------------------------ */

int mproc_future_wait(mproc_future *f, double timeout)
{
    if (!f)
        return -EINVAL;
    mproc__deadline d = mproc__deadline_from(timeout);
    lock(f->core);
    while (!is_ready(f))
        if (!wait_until(f->core, &d))
            break;
    int r = is_ready(f) ? 0 : -ETIMEDOUT;
    unlock(f->core);
    return r;
}

int mproc_future_get(mproc_future *f, double timeout, const void **data,
                     size_t *len)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    int r = mproc_future_wait(f, timeout);
    if (r < 0)
        return r;
    /* Ready futures do not change any more. */
    r = f->status;
    if (r == 0 && f->type == J_APPLY) {
        rslot *s = &f->slots[0];
        msgbuf *b = s->ptr;
        if (data)
            *data = b ? (const void *)(b->p + s->off) : (const void *)"";
        if (len)
            *len = s->len;
    }
    return r;
}

int mproc_future_ready(mproc_future *f)
{
    if (!f)
        return 0;
    lock(f->core);
    int r = is_ready(f);
    unlock(f->core);
    return r;
}

int mproc_future_successful(mproc_future *f)
{
    if (!f)
        return -EINVAL;
    lock(f->core);
    int r = is_ready(f) ? f->status == 0 : -EAGAIN;
    unlock(f->core);
    return r;
}

const mproc_task_error *mproc_future_error(mproc_future *f)
{
    if (!f)
        return NULL;
    lock(f->core);
    const mproc_task_error *e = NULL;
    if (is_ready(f) && f->status != 0) {
        if (!f->first_err)
            copy_error(f, &f->last_err);
        e = f->first_err ? &f->first_err->e : &f->last_err;
    }
    unlock(f->core);
    return e;
}

mproc_results *mproc_future_results(mproc_future *f)
{
    if (!f || f->type != J_MAP || !mproc_future_ready(f))
        return NULL;
    return &f->res;
}

void mproc_future_free(mproc_future *f)
{
    if (f)
        job_unref(f);
}

/* ---- map / starmap ------------------------------------------------------ */

static int map_common(mproc_pool *p, const void *fn, int kind,
                      const mproc_iov *items, mproc_args *const *argv, size_t n,
                      const mproc_call_opts *opts, job **out)
{
    *out = NULL;
    if (!p || !fn || (n && !items && !argv))
        return -EINVAL;
    lock(p->core);
    int r = accepts(p);
    if (r < 0)
        goto out_unlock;
    r = -ENOMEM;
    job *j = job_new(p, J_MAP, kind);
    if (!j)
        goto out_unlock;
    j->n = n;
    j->items = items;
    j->argv = argv;
    r = fn_id(p, fn, kind, &j->fnid);
    if (r < 0)
        goto out_job;
    r = -ENOMEM;
    if (!alloc_slots(j, n))
        goto out_job;
    j->chunk = opts && opts->chunksize ? opts->chunksize : auto_chunk(p, n);
    apply_opts(p, j, opts);
    r = submit(p, j);
    if (r < 0)
        goto out_job;
    *out = j;
    unlock(p->core);
    return 0;
out_job:
    job_unref_locked(j);
out_unlock:
    unlock(p->core);
    return r;
}

static int map_wait(job *j, mproc_results **out)
{
    mproc_future_wait(j, -1);
    int r = j->status;
    if (out)
        *out = &j->res;
    else
        job_unref(j);
    return r;
}

int mproc_pool_map(mproc_pool *p, mproc_task_fn fn, const mproc_iov *items,
                   size_t n, const mproc_call_opts *opts, mproc_results **out)
{
    job *j;
    if (out)
        *out = NULL;
    int r = map_common(p, (const void *)fn, FK_BYTES, items, NULL, n, opts, &j);
    return r < 0 ? r : map_wait(j, out);
}

int mproc_pool_map_async(mproc_pool *p, mproc_task_fn fn,
                         const mproc_iov *items, size_t n,
                         const mproc_call_opts *opts, mproc_future **out)
{
    if (!out)
        return -EINVAL;
    return map_common(p, (const void *)fn, FK_BYTES, items, NULL, n, opts, out);
}

int mproc_pool_starmap(mproc_pool *p, mproc_star_fn fn, mproc_args *const *argv,
                       size_t n, const mproc_call_opts *opts,
                       mproc_results **out)
{
    job *j;
    if (out)
        *out = NULL;
    int r = map_common(p, (const void *)fn, FK_ARGS, NULL, argv, n, opts, &j);
    return r < 0 ? r : map_wait(j, out);
}

int mproc_pool_starmap_async(mproc_pool *p, mproc_star_fn fn,
                             mproc_args *const *argv, size_t n,
                             const mproc_call_opts *opts, mproc_future **out)
{
    if (!out)
        return -EINVAL;
    return map_common(p, (const void *)fn, FK_ARGS, NULL, argv, n, opts, out);
}

size_t mproc_results_count(const mproc_results *r)
{
    return r ? r->j->n : 0;
}

int mproc_results_get(const mproc_results *r, size_t i, const void **data,
                      size_t *len)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!r || i >= r->j->n)
        return -ERANGE;
    const rslot *s = &r->j->slots[i];
    if (s->status != 0)
        return s->status == SLOT_PENDING ? MPROC_EPOOL : s->status;
    const msgbuf *b = s->ptr;
    if (data)
        *data = b ? (const void *)(b->p + s->off) : (const void *)"";
    if (len)
        *len = s->len;
    return 0;
}

const mproc_task_error *mproc_results_error(const mproc_results *r, size_t i)
{
    if (!r || i >= r->j->n)
        return NULL;
    const rslot *s = &r->j->slots[i];
    if (s->status == 0 || s->status == SLOT_PENDING || !s->ptr)
        return NULL;
    return &((const errrec *)s->ptr)->e;
}

size_t mproc_results_failed(const mproc_results *r)
{
    return r ? r->j->nfailed : 0;
}

void mproc_results_free(mproc_results *r)
{
    if (r)
        job_unref(r->j);
}

/* ---- imap --------------------------------------------------------------- */

static void end_stream(mproc_pool *p, job *j, int err)
{
    if (j->input_end)
        return;
    j->input_end = true;
    j->stream_err = err;
    p->open_streams--;
    check_finished(p, j);
}

/* Tops the window up (lock held; dropped while a source runs). */
static void refill(job *j)
{
    bool added = false;
    mproc_pool *p;
    while (!j->input_end && !j->cancelled && (p = j->pool) != NULL) {
        if (p->state == P_TERM || p->broken)
            break;
        if (j->submitted - j->taken >= j->window)
            break;
        size_t idx = j->submitted, s = idx % j->window;
        if (j->occupied[s])
            break;
        j->occupied[s] = 1;
        if (j->src) {
            mproc_iov iov = {0};
            unlock(j->core);
            int r = j->src(j->ctx, &iov);
            void *copy = NULL;
            if (r > 0 && iov.len) {
                copy = malloc(iov.len);
                if (copy)
                    memcpy(copy, iov.data, iov.len);
                else
                    r = -ENOMEM;
            }
            lock(j->core);
            if (j->input_end || j->cancelled || !j->pool) {
                j->occupied[s] = 0;
                free(copy);
                break;
            }
            if (r <= 0) {
                j->occupied[s] = 0;
                free(copy);
                end_stream(p, j, r);
                break;
            }
            j->win[s].data = copy;
            j->win[s].len = iov.len;
        }
        bool merged = false;
        if (p->pending.n > 0) {
            seg *b = dq_at(&p->pending, p->pending.n - 1);
            if (b->j == j && b->start + b->count == idx) {
                b->count++;
                merged = true;
            }
        }
        if (!merged && !dq_push_back(&p->pending, (seg){j, idx, 1, 0})) {
            j->occupied[s] = 0;
            end_stream(p, j, -ENOMEM);
            break;
        }
        j->submitted++;
        p->npending++;
        added = true;
        if (!j->src && j->submitted == j->n)
            end_stream(p, j, 0);
    }
    if (added && j->pool)
        wake(j->pool);
}

static int imap_common(mproc_pool *p, mproc_task_fn fn, const mproc_iov *items,
                       size_t n, mproc_source_fn src, void *ctx, int unordered,
                       const mproc_call_opts *opts, mproc_imap **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!p || !fn || (!src && n && !items))
        return -EINVAL;
    lock(p->core);
    int r = accepts(p);
    if (r < 0)
        goto out_unlock;
    r = -ENOMEM;
    job *j = job_new(p, J_IMAP, FK_BYTES);
    if (!j)
        goto out_unlock;
    j->items = items;
    j->n = src ? 0 : n;
    j->src = src;
    j->ctx = ctx;
    j->unordered = unordered != 0;
    r = fn_id(p, (const void *)fn, FK_BYTES, &j->fnid);
    if (r < 0)
        goto out_job;
    r = -ENOMEM;
    j->chunk = opts ? opts->chunksize : 0;
    size_t w = opts && opts->window ? opts->window : 0;
    if (!w) {
        size_t c = j->chunk ? j->chunk : 64;
        w = 8 * (size_t)p->nproc * c;
        if (w < 1024)
            w = 1024;
    }
    if (!src && n && w > n)
        w = n;
    j->window = w;
    j->occupied = calloc(w, 1);
    j->ring = malloc(w * sizeof *j->ring);
    if (src)
        j->win = calloc(w, sizeof *j->win);
    if (!j->occupied || !j->ring || (src && !j->win) || !alloc_slots(j, w))
        goto out_job;
    apply_opts(p, j, opts);
    live_add(p, j);
    p->open_streams++;
    if (!src && n == 0)
        end_stream(p, j, 0);
    refill(j);
    *out = &j->it;
    unlock(p->core);
    return 0;
out_job:
    job_unref_locked(j);
out_unlock:
    unlock(p->core);
    return r;
}

int mproc_pool_imap(mproc_pool *p, mproc_task_fn fn, const mproc_iov *items,
                    size_t n, const mproc_call_opts *opts, mproc_imap **out)
{
    return imap_common(p, fn, items, n, NULL, NULL, 0, opts, out);
}

int mproc_pool_imap_unordered(mproc_pool *p, mproc_task_fn fn,
                              const mproc_iov *items, size_t n,
                              const mproc_call_opts *opts, mproc_imap **out)
{
    return imap_common(p, fn, items, n, NULL, NULL, 1, opts, out);
}

int mproc_pool_imap_source(mproc_pool *p, mproc_task_fn fn,
                           mproc_source_fn next, void *ctx, int unordered,
                           const mproc_call_opts *opts, mproc_imap **out)
{
    if (!next)
        return -EINVAL;
    return imap_common(p, fn, NULL, 0, next, ctx, unordered, opts, out);
}

static void release_held(job *j)
{
    if (j->held >= 0) {
        slot_release(&j->slots[j->held]);
        j->occupied[j->held] = 0;
        j->held = -1;
    }
}

int mproc_imap_next(mproc_imap *it, double timeout, const void **data,
                    size_t *len, size_t *index)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!it)
        return -EINVAL;
    job *j = it->j;
    mproc__deadline d = mproc__deadline_from(timeout);
    lock(j->core);
    release_held(j);
    int r;
    for (;;) {
        refill(j);
        long k = -1;
        if (!j->unordered) {
            if (j->next_out < j->submitted &&
                j->slots[j->next_out % j->window].status != SLOT_PENDING)
                k = (long)j->next_out++;
        } else if (j->rcount > 0) {
            k = (long)j->ring[j->rhead];
            j->rhead = (j->rhead + 1) % j->window;
            j->rcount--;
        }
        if (k >= 0) {
            size_t s = (size_t)k % j->window;
            rslot *sl = &j->slots[s];
            j->taken++;
            j->held = (long)s;
            if (index)
                *index = (size_t)k;
            if (sl->status == 0) {
                msgbuf *b = sl->ptr;
                if (data)
                    *data =
                        b ? (const void *)(b->p + sl->off) : (const void *)"";
                if (len)
                    *len = sl->len;
                r = 1;
            } else {
                r = sl->status;
                if (sl->ptr)
                    j->last_err = ((errrec *)sl->ptr)->e;
                else {
                    memset(&j->last_err, 0, sizeof j->last_err);
                    j->last_err.code = r;
                    snprintf(j->last_err.message, sizeof j->last_err.message,
                             "%s", mproc_strerror(r));
                }
                j->last_err.index = (size_t)k;
            }
            break;
        }
        if (j->input_end && j->taken == j->submitted) {
            r = j->stream_err;
            if (r < 0) {
                memset(&j->last_err, 0, sizeof j->last_err);
                j->last_err.code = r;
                snprintf(j->last_err.message, sizeof j->last_err.message,
                         "input stopped: %s", mproc_strerror(r));
            }
            break;
        }
        if (!wait_until(j->core, &d)) {
            r = -ETIMEDOUT;
            /* One last look: a result may have come with the timeout. */
            if (!j->unordered
                    ? (j->next_out < j->submitted &&
                       j->slots[j->next_out % j->window].status != SLOT_PENDING)
                    : j->rcount > 0)
                continue;
            break;
        }
    }
    unlock(j->core);
    return r;
}

const mproc_task_error *mproc_imap_error(const mproc_imap *it)
{
    return it ? &it->j->last_err : NULL;
}

void mproc_imap_free(mproc_imap *it)
{
    if (!it)
        return;
    job *j = it->j;
    lock(j->core);
    j->cancelled = true;
    release_held(j);
    mproc_pool *p = j->pool;
    if (p) {
        /* Drop its tasks that were not sent yet. */
        deque *q = &p->pending;
        size_t keep = 0;
        for (size_t i = 0; i < q->n; i++) {
            seg s = *dq_at(q, i);
            if (s.j == j) {
                p->npending -= s.count;
                continue;
            }
            *dq_at(q, keep++) = s;
        }
        q->n = keep;
        if (!j->input_end)
            end_stream(p, j, 0);
        else
            check_finished(p, j);
        wake(p);
    }
    unlock(j->core);
    job_unref(j);
}

/* ---- records ------------------------------------------------------------ */

static int shm_create(mproc_pool *p, size_t size, shmbuf *out)
{
    long pg = sysconf(_SC_PAGESIZE);
    size = (size + (size_t)pg - 1) & ~((size_t)pg - 1);
    if (size == 0)
        size = (size_t)pg;
    int fd = memfd_create("mproc-pool-shm", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        int e = -errno;
        close(fd);
        return e;
    }
    out->id = ++p->next_id;
    out->p = m;
    out->len = size;
    out->fd = fd;
    return 0;
}

static shmbuf *shm_find(mproc_pool *p, const void *ptr, size_t len)
{
    const unsigned char *c = ptr;
    for (size_t i = 0; i < p->nshm; i++) {
        shmbuf *s = &p->shm[i];
        if (c >= s->p && c <= s->p + s->len &&
            len <= s->len - (size_t)(c - s->p))
            return s;
    }
    return NULL;
}

void *mproc_pool_shm_alloc(mproc_pool *p, size_t size)
{
    if (!p || size == 0)
        return NULL;
    lock(p->core);
    void *r = NULL;
    if (p->nshm == p->capshm) {
        size_t cap = p->capshm ? p->capshm * 2 : 8;
        shmbuf *v = realloc(p->shm, cap * sizeof *v);
        if (!v)
            goto out;
        p->shm = v;
        p->capshm = cap;
    }
    shmbuf s = {0};
    if (shm_create(p, size, &s) < 0)
        goto out;
    p->shm[p->nshm++] = s;
    r = s.p;
out:
    unlock(p->core);
    return r;
}

void mproc_pool_shm_free(mproc_pool *p, void *ptr)
{
    if (!p || !ptr)
        return;
    lock(p->core);
    for (size_t i = 0; i < p->nshm; i++) {
        if (p->shm[i].p != ptr)
            continue;
        munmap(p->shm[i].p, p->shm[i].len);
        close(p->shm[i].fd);
        p->shm[i] = p->shm[--p->nshm];
        break;
    }
    unlock(p->core);
}

/* Makes scratch buffer k at least size bytes (lock held). */
static int scratch_get(mproc_pool *p, int k, size_t size)
{
    shmbuf *s = &p->scratch[k];
    if (s->p && s->len >= size)
        return 0;
    shmbuf n;
    int r = shm_create(p, size < s->len * 2 ? s->len * 2 : size, &n);
    if (r < 0)
        return r;
    if (s->p) {
        munmap(s->p, s->len);
        close(s->fd);
    }
    *s = n;
    return 0;
}

int mproc_pool_map_records(mproc_pool *p, mproc_records_fn fn, const void *in,
                           size_t in_size, void *out, size_t out_size, size_t n,
                           const mproc_call_opts *opts, mproc_task_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!p || !fn || out_size == 0 || (n && !out) || (!in) != (in_size == 0))
        return -EINVAL;
    if ((in_size && n > SIZE_MAX / in_size) || n > SIZE_MAX / out_size)
        return -EINVAL;
    size_t in_len = n * in_size, out_len = n * out_size;
    lock(p->core);
    int r = accepts(p);
    if (r < 0 || n == 0) {
        unlock(p->core);
        return r;
    }
    uint32_t fnid;
    r = fn_id(p, (const void *)fn, FK_RECORDS, &fnid);
    if (r < 0) {
        unlock(p->core);
        return r;
    }
    shmbuf *si = in_size ? shm_find(p, in, in_len) : NULL;
    shmbuf *so = shm_find(p, out, out_len);
    bool use_scratch = (in_size && !si) || !so;
    if (use_scratch) {
        mproc__deadline forever = mproc__deadline_from(-1);
        while (p->scratch_busy)
            wait_until(p->core, &forever);
        p->scratch_busy = true;
        if ((in_size && !si && (r = scratch_get(p, 0, in_len)) < 0) ||
            (!so && (r = scratch_get(p, 1, out_len)) < 0)) {
            p->scratch_busy = false;
            broadcast(p->core);
            unlock(p->core);
            return r;
        }
    }
    job *j = job_new(p, J_RANGE, FK_RECORDS);
    if (!j) {
        r = -ENOMEM;
        goto out_scratch;
    }
    j->fnid = fnid;
    j->n = n;
    j->in_size = in_size;
    j->out_size = out_size;
    if (in_size) {
        shmbuf *b = si ? si : &p->scratch[0];
        j->in_id = b->id;
        j->in_off = si ? (size_t)((const unsigned char *)in - si->p) : 0;
    }
    shmbuf *ob = so ? so : &p->scratch[1];
    j->out_id = ob->id;
    j->out_off = so ? (size_t)((unsigned char *)out - so->p) : 0;
    j->chunk = opts && opts->chunksize ? opts->chunksize : auto_chunk(p, n);
    apply_opts(p, j, opts);
    unsigned char *scr_in = p->scratch[0].p, *scr_out = p->scratch[1].p;
    if (in_size && !si) {
        unlock(p->core);
        memcpy(scr_in, in, in_len);
        lock(p->core);
    }
    r = accepts(p);
    if (r == 0)
        r = submit(p, j);
    unlock(p->core);
    if (r == 0) {
        mproc_future_wait(j, -1);
        r = j->status;
        if (!so)
            memcpy(out, scr_out, out_len);
        lock(p->core);
        if (r != 0)
            copy_error(j, err);
    } else {
        lock(p->core);
    }
    job_unref_locked(j);
out_scratch:
    if (use_scratch) {
        p->scratch_busy = false;
        broadcast(p->core);
    }
    unlock(p->core);
    return r;
}
