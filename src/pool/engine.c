/*
 * pool/engine.c - the pool's thread and the worker slots it owns. Its
 * loop takes the jobs apply_async queued, starts workers into empty slots
 * (replacing dead and retired ones), dispatches pending tasks, retires
 * workers that are done, kills those whose task is overdue, runs callbacks,
 * then sleeps in epoll_wait on each worker's channel and pidfd and on an
 * eventfd that submitters write to wake it.
 */
#include "pool/engine.h"

#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

void pool__wake(mproc_pool *p)
{
    if (atomic_exchange(&p->sleeping, false)) {
        uint64_t one = 1;
        ssize_t r = write(p->evfd, &one, sizeof one);
        (void)r;
    }
}

int pool__channel_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    int sz = 4 * POOL__MSG_MAX;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    return 0;
}

/* A new process for slot i: its board slot and the parent's view of its
 * ring start afresh (memfds a predecessor sent and we never read are
 * closed). */
static void reset_slot(mproc_pool *p, int i)
{
    pool__wslot *w = &p->w[i];
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
    /* A predecessor's entries would read as this process's (sequence
     * numbers start again): a dead worker's open chunk is looked for
     * where the ring was empty (pool__take_open_chunk). */
    memset((unsigned char *)p->board + p->ring_off + (size_t)i * POOL__RING, 0,
           POOL__RING);
    w->rpos = 0;
    for (size_t k = 0; k < w->nool; k++)
        close(w->ool[k]);
    w->nool = 0;
}

/* Creates the process of slot w (its configuration in w->cfg) and starts
 * it, dropping the lock meanwhile. Returns 0 with *out set, or -errno
 * (then *out is the process to free, or NULL). */
static int spawn_worker(mproc_pool *p, pool__wslot *w, mproc_process **out)
{
    int r = -ENOMEM;
    mproc_args *a = mproc_args_new();
    if (!a || mproc_args_add_object(a, &mproc__pool_wkind, &w->cfg) < 0)
        goto out;
    r = mproc_process_new(out, mproc__pool_worker_main, a);
    if (r < 0)
        goto out;
    char name[64];
    snprintf(name, sizeof name, "PoolWorker-%u", ++p->nstarted);
    mproc_process_set_name(*out, name);
    mproc_process_set_daemon(*out, 1);
    mproc_process_set_start_method(*out, p->opts.method);
    w->state = W_STARTING;
    pool__unlock(p->core);
    r = mproc_process_start(*out);
    pool__lock(p->core);
out:
    mproc_args_free(a);
    return r;
}

/* Slot i's process started (proc NULL: a backend's slot): watch its
 * channel and sentinel, and count from the start. */
static void go_live(mproc_pool *p, int i, mproc_process *proc, int chan,
                    int sentinel)
{
    pool__wslot *w = &p->w[i];
    w->proc = proc;
    w->pid = proc ? mproc_process_pid(proc) : 0;
    w->chan = chan;
    w->sentinel = sentinel;
    w->gen++;
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u64 = pool__ev_data(EV_CHAN, i, w->gen)};
    epoll_ctl(p->ep, EPOLL_CTL_ADD, w->chan, &ev);
    ev.data.u64 = pool__ev_data(EV_SENT, i, w->gen);
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
    mproc_debug("pool: started worker %d", (int)w->pid);
}

/* Starts a worker in empty slot i (the lock is dropped meanwhile).
 * Returns 0 or -errno. */
static int start_worker(mproc_pool *p, int i)
{
    pool__wslot *w = &p->w[i];
    int sv[2];
    int r = pool__channel_pair(sv);
    if (r < 0)
        return r;
    reset_slot(p, i);
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
    mproc_process *proc = NULL;
    r = spawn_worker(p, w, &proc);
    close(sv[1]); /* the worker's end: it has its own now */
    if (r < 0) {
        w->state = W_EMPTY;
        mproc_process_free(proc);
        close(sv[0]);
        return r;
    }
    go_live(p, i, proc, sv[0], mproc_process_sentinel(proc));
    return 0;
}

/* Starts the backend's slot i. Returns 0 or the code it was lost with. */
static int start_remote(mproc_pool *p, int i)
{
    int chan = -1, sent = -1;
    reset_slot(p, i);
    unsigned char *ring =
        (unsigned char *)p->board + p->ring_off + (size_t)i * POOL__RING;
    int r = p->opts.backend->start(p->bctx, i - p->nlocal, &p->board[i], ring,
                                   &chan, &sent);
    if (r < 0) {
        p->w[i].state = W_GONE;
        return r;
    }
    go_live(p, i, NULL, chan, sent);
    return 0;
}

void pool__forget_worker(mproc_pool *p, pool__wslot *w)
{
    epoll_ctl(p->ep, EPOLL_CTL_DEL, w->chan, NULL);
    if (w->sentinel >= 0)
        epoll_ctl(p->ep, EPOLL_CTL_DEL, w->sentinel, NULL);
    close(w->chan);
    w->chan = -1;
    mproc_process_free(w->proc);
    w->proc = NULL;
    w->sentinel = -1;
    w->state = w->remote ? W_GONE : W_EMPTY;
    p->nlive--;
}

/* Stops every worker and reaps it. Workers already on their way out (and,
 * when graceful, every idle one, asked with PM_EXIT) get a moment to end
 * by themselves: killing a process in its exit path can orphan helpers of
 * its own (a sanitizer's tracer, say). The others are SIGKILLed at once. */
void pool__kill_and_reap_all(mproc_pool *p, bool graceful)
{
    bool wait_some = false;
    for (int i = 0; i < p->nproc; i++) {
        pool__wslot *w = &p->w[i];
        if (w->state == W_LIVE && graceful) {
            pool__hdr h = {.type = PM_EXIT};
            /* It may be gone already (a failed send): wait for it all the
             * same, and kill it if it does not end soon. */
            (void)mproc__pool_send(w->chan, &h, sizeof h, NULL, 0, false);
            w->state = W_EXITING;
        }
        if (w->remote) /* the backend stops it (detach) */
            continue;
        if (w->state == W_EXITING)
            wait_some = true;
        else if (w->state == W_LIVE)
            mproc_process_kill(w->proc);
    }
    mproc__deadline d = mproc__deadline_from(graceful ? 1.0 : 0.2);
    for (int i = 0; i < p->nproc; i++) {
        pool__wslot *w = &p->w[i];
        if (w->state != W_LIVE && w->state != W_EXITING)
            continue;
        if (w->remote) {
            pool__forget_worker(p, w);
            continue;
        }
        if (wait_some && w->state == W_EXITING) {
            struct timespec left;
            double t = 0;
            if (mproc__deadline_left(&d, &left))
                t = (double)left.tv_sec + (double)left.tv_nsec / 1e9;
            if (mproc_process_join(w->proc, t) < 0)
                mproc_process_kill(w->proc);
        }
        mproc_process_join(w->proc, -1);
        pool__forget_worker(p, w);
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
        pool__wslot *w = &p->w[i];
        if (w->state != W_LIVE || w->q.n > 0)
            continue;
        bool used = p->opts.maxtasksperchild && !w->remote &&
                    w->assigned >= p->opts.maxtasksperchild;
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
        int r = p->w[i].remote ? start_remote(p, i) : start_worker(p, i);
        if (r < 0 && p->w[i].remote)
            continue; /* lost for good: never restarted */
        if (p->state == P_TERM || p->broken)
            return;
        if (r < 0) {
            p->start_failures++;
            p->retry_at = pool__now_ns() + 100000000ull;
            if (p->start_failures >= 20 && p->nlive == 0) {
                char msg[160];
                snprintf(msg, sizeof msg, "cannot start pool workers: %s",
                         mproc_strerror(r));
                pool__break_pool(p, r, msg);
            }
            return;
        }
        p->start_failures = 0;
    }
}

/* The shortest timeout among w's queued tasks (0: none has one), or one
 * that was and has gone (only sooner a look than needed): it bounds how
 * long a not yet started one may run before we look again. */
static double shortest_timeout(pool__wslot *w)
{
    if (w->q.n == 0)
        w->tmin = 0; /* what was in flight is done: start over */
    return w->tmin;
}

/* The job whose task has sequence number seq at w (NULL: none). */
static pool__job *job_of(pool__wslot *w, uint64_t seq)
{
    for (size_t k = 0; k < w->q.n; k++) {
        pool__seg *sg = pool__dq_at(&w->q, k);
        if (seq >= sg->first_seq && seq < sg->first_seq + pool__seg_nseq(sg))
            return sg->j;
    }
    return NULL;
}

/* Kills workers whose task is overdue; returns ns until the next check
 * (UINT64_MAX: none needed). */
static uint64_t check_timeouts(mproc_pool *p)
{
    uint64_t now = pool__coarse_ns(), next = UINT64_MAX;
    if (p->ntimed == 0)
        return next; /* no live job has a timeout */
    for (int i = 0; i < p->nproc; i++) {
        pool__wslot *w = &p->w[i];
        if (w->state != W_LIVE || w->q.n == 0 || w->killed || w->remote)
            continue;
        pool__slot *s = &p->board[i];
        uint64_t cur = atomic_load_explicit(&s->cur_seq, memory_order_acquire);
        uint64_t start =
            atomic_load_explicit(&s->cur_start, memory_order_relaxed);
        uint64_t done =
            atomic_load_explicit(&s->done_seq, memory_order_acquire);
        double tmin = shortest_timeout(w);
        if (tmin == 0)
            continue;
        uint64_t tmin_ns = (uint64_t)(tmin * 1e9);
        if (next > tmin_ns)
            next = tmin_ns;
        if (cur <= done || cur < w->next_result)
            continue;
        pool__job *j = job_of(w, cur);
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

static void pool_terminate_now(mproc_pool *p)
{
    pool__kill_and_reap_all(p, false);
    pool__fail_all(p, MPROC_EPOOL, "pool terminated");
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
        pool__wslot *w = &p->w[i];
        if (w->gen != gen || (w->state != W_LIVE && w->state != W_EXITING))
            continue;
        if (kind == EV_CHAN)
            pool__drain(p, i, 64);
        else if (kind == EV_SENT)
            pool__worker_gone(p, i);
        if (p->broken)
            return;
    }
}

/* Takes the jobs apply_async queued (core->mu held). With code non-zero,
 * or when the pool cannot run them, they fail. */
void pool__drain_inbox(mproc_pool *p, int code)
{
    if (!atomic_load(&p->in_any))
        return;
    pthread_mutex_lock(&p->in_mu);
    pool__job *j = p->in_head;
    p->in_head = p->in_tail = NULL;
    atomic_store(&p->in_any, false);
    pthread_mutex_unlock(&p->in_mu);
    while (j) {
        pool__job *nx = j->inext;
        j->inext = NULL;
        pool__live_link(p, j); /* the submitter counted the pool's reference */
        int c = code                 ? code
                : p->broken          ? p->broken
                : p->state == P_TERM ? MPROC_EPOOL
                                     : 0;
        pool__seg s = {j, 0, 1, 0};
        if (!c && !pool__dq_push_back(&p->pending, s))
            c = -ENOMEM;
        if (c)
            pool__fail_seg(p, &s, c,
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
    pool__drain_inbox(p, p->broken ? p->broken : MPROC_EPOOL);
}

/* Starts the first workers and tells mproc_pool_new how that went.
 * Returns 0, or the error that ended the pool before it began. */
static int start_all(mproc_pool *p)
{
    for (int i = 0; i < p->nproc; i++) {
        int r = p->w[i].remote ? start_remote(p, i) : start_worker(p, i);
        if (r < 0) {
            p->start_err = r;
            break;
        }
    }
    p->started = true;
    pthread_cond_broadcast(&p->core->cv);
    if (p->start_err) {
        pool__kill_and_reap_all(p, true);
        __atomic_store_n(&p->state, P_TERM, __ATOMIC_RELEASE);
        close_inbox(p);
    }
    return p->start_err;
}

/* After close: once nothing is left to run and no worker lives, the last
 * callbacks run and the thread ends (returns true). */
static bool closed_and_done(mproc_pool *p)
{
    pool__flush_dirty(p);
    pool__run_deferred(p);
    if (p->nlive == 0 && !need_workers(p) && p->ndq == 0 &&
        !atomic_load(&p->in_any)) {
        close_inbox(p); /* fails what raced with close() */
        pool__flush_dirty(p);
        pool__run_deferred(p);
        return true;
    }
    return false;
}

/* How long the pool's thread may sleep, in ms (-1: until woken): until
 * the next task deadline, a progress bar's tick, a worker restart. */
static int sleep_ms(mproc_pool *p)
{
    uint64_t next = check_timeouts(p);
    if (p->nbars && next > 100000000ull)
        next = 100000000ull; /* a progress bar's tick */
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
    return next == UINT64_MAX ? -1 : (int)((next + 999999) / 1000000);
}

/* Sleeps in epoll_wait (the lock dropped) for up to ms, then handles what
 * woke it, looks into the rings of busy workers every 2 ms, and checks
 * timeouts and progress bars. */
static void sleep_and_handle(mproc_pool *p, int ms)
{
    struct epoll_event ev[64];
    /* Announce the sleep, then look at the inbox once more: a
     * submitter either sees us sleeping (and writes the eventfd) or
     * we see its job. */
    atomic_store(&p->sleeping, true);
    if (atomic_load(&p->in_any)) {
        atomic_store(&p->sleeping, false);
        return;
    }
    pool__unlock(p->core);
    int n = epoll_wait(p->ep, ev, 64, ms);
    pool__lock(p->core);
    atomic_store(&p->sleeping, false);
    if (n > 0)
        handle_events(p, ev, n);
    uint64_t t = pool__coarse_ns();
    if (t - p->last_poll >= 2000000ull) {
        p->last_poll = t;
        for (int i = 0; i < p->nproc && !p->broken; i++)
            if (p->w[i].state == W_LIVE && p->w[i].q.n > 0)
                pool__drain(p, i, 16);
    }
    check_timeouts(p);
    for (pool__job *j = p->nbars ? p->jobs : NULL; j; j = j->next)
        if (j->bar && !j->dirty)
            pool__mark_dirty(p, j);
}

/* The loop of the pool's thread, until the pool is terminated or closed
 * and done. */
static void run(mproc_pool *p)
{
    for (;;) {
        pool__drain_inbox(p, 0);
        if (p->state == P_TERM) {
            close_inbox(p);
            if (!p->broken)
                pool_terminate_now(p);
            pool__flush_dirty(p);
            pool__run_deferred(p);
            return;
        }
        replace(p);
        pool__dispatch(p);
        retire(p);
        if (p->state == P_CLOSE && p->nlive == 0 && !need_workers(p)) {
            if (closed_and_done(p))
                return;
            continue;
        }
        pool__flush_dirty(p);
        if (p->ndq > 0) {
            pool__run_deferred(p);
            continue;
        }
        int ms = sleep_ms(p);
        /* replace() may have dropped the lock: a terminate or close that
         * came meanwhile found us awake and did not signal. */
        if (p->state == P_TERM || p->ndq > 0)
            continue;
        sleep_and_handle(p, ms);
    }
}

void *pool__main(void *arg)
{
    mproc_pool *p = arg;
    pool__lock(p->core);
    if (start_all(p) == 0)
        run(p);
    p->thread_done = true;
    pthread_cond_broadcast(&p->core->cv);
    pool__unlock(p->core);
    return NULL;
}
