/*
 * pool/pool.c - a pool's life as its caller sees it. mproc_pool_new sets
 * up the board (one shared memfd: a slot and a result ring per worker),
 * the epoll set and the pool's thread, and returns once every worker has
 * started; close, terminate, join and free end it. A forked child's copy
 * of a pool can only be freed: its workers are not the child's.
 */
#include "pool/engine.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

/* getpid() is a system call: cache it, and forget it in fork children. */
static pid_t cached_pid;

static void pid_forget(void)
{
    cached_pid = 0;
}

/* Registered when the library loads: glibc skips a handler registered
 * while another thread forks, and that child would keep our pid. */
__attribute__((constructor)) static void pid_atfork(void)
{
    pthread_atfork(NULL, NULL, pid_forget);
}

pid_t pool__my_pid(void)
{
    pid_t p = cached_pid;
    if (!p)
        cached_pid = p = getpid();
    return p;
}

static pool__core *core_new(void)
{
    pool__core *c = calloc(1, sizeof *c);
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
void pool__core_unref_unlock(pool__core *c)
{
    bool last = atomic_fetch_sub(&c->refs, 1) == 1;
    pool__unlock(c);
    if (last) {
        while (c->blocks) {
            pool__msgbuf *b = c->blocks;
            c->blocks = b->next;
            free(b);
        }
        for (pool__job *j = atomic_load(&c->afree), *n; j; j = n) {
            n = j->inext;
            free(j);
        }
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
    }
}

static bool on_pool_thread(const mproc_pool *p)
{
    return p->thread_started && pthread_equal(pthread_self(), p->thread);
}

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
    pool__shmbuf *bufs[3] = {&p->scratch[0], &p->scratch[1], &p->arena};
    for (size_t i = 0; i < 3; i++)
        if (bufs[i]->p) {
            munmap(bufs[i]->p, bufs[i]->len);
            close(bufs[i]->fd);
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
    pool__jobs_kept_free(p);
    pthread_mutex_destroy(&p->in_mu);
}

/* The options as the pool keeps them (processes 0: one per CPU). */
static int check_opts(const mproc_pool_opts *opts, mproc_pool_opts *o)
{
    *o = (mproc_pool_opts){0};
    if (opts)
        *o = *opts;
    if (o->processes < 0 || o->processes > 0xffff)
        return -EINVAL;
    if (o->method != MPROC_START_DEFAULT && !mproc_start_method_name(o->method))
        return -EINVAL;
    if (o->processes == 0)
        o->processes = mproc_cpu_count_usable();
    if (mproc_process_daemon(mproc_current_process()))
        return MPROC_EDAEMON;
    return 0;
}

/* The core, the worker slots, the message buffers, a copy of initargs. */
static int alloc_parts(mproc_pool *p, const mproc_args *initargs)
{
    p->core = core_new();
    p->w = calloc((size_t)p->nproc, sizeof *p->w);
    p->sbuf = malloc(POOL__MSG_MAX);
    p->rbuf = malloc(POOL__MSG_MAX);
    if (initargs)
        p->initargs = mproc__args_copy(initargs);
    if (!p->core || !p->w || !p->sbuf || !p->rbuf || (initargs && !p->initargs))
        return -ENOMEM;
    for (int i = 0; i < p->nproc; i++) {
        p->w[i].chan = p->w[i].sentinel = -1;
        p->w[i].remote = i >= p->nlocal;
    }
    return 0;
}

/* The board: a slot per worker, then (page-aligned) a ring per worker. */
static int make_board(mproc_pool *p)
{
    long pg = sysconf(_SC_PAGESIZE);
    p->ring_off = ((size_t)p->nproc * sizeof(pool__slot) + (size_t)pg - 1) &
                  ~((size_t)pg - 1);
    p->board_len = p->ring_off + (size_t)p->nproc * POOL__RING;
    p->board_fd = mproc__memfd_new("mproc-pool-board", p->board_len, false);
    if (p->board_fd < 0)
        return p->board_fd;
    void *m = mmap(NULL, p->board_len, PROT_READ | PROT_WRITE, MAP_SHARED,
                   p->board_fd, 0);
    if (m == MAP_FAILED)
        return -errno;
    p->board = m;
    return 0;
}

/* The epoll set the pool's thread sleeps in, with the eventfd that wakes
 * it (workers' channels and pidfds join as they start). */
static int make_events(mproc_pool *p)
{
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->ep < 0 || p->evfd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u64 = pool__ev_data(EV_WAKE, 0, 0)};
    if (epoll_ctl(p->ep, EPOLL_CTL_ADD, p->evfd, &ev) < 0)
        return -errno;
    return 0;
}

/* Starts the pool's thread and waits until it started the workers.
 * Returns 0, or -errno with the thread gone. */
static int start_thread(mproc_pool *p)
{
    /* The pool's thread takes no signals: they belong to the program. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pool__lock(p->core);
    int r = -pthread_create(&p->thread, NULL, pool__main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        pool__unlock(p->core);
        return r;
    }
    p->thread_started = true;
    mproc__deadline forever = mproc__deadline_from(-1);
    while (!p->started)
        pool__wait_until(p->core, &forever);
    r = p->start_err;
    pool__unlock(p->core);
    if (r < 0)
        pthread_join(p->thread, NULL);
    return r;
}

/* At exit, before mproc_shutdown terminates and joins the daemonic
 * children (the workers): a pool still running would replace them as they
 * die, and the join would wait for the replacements. As CPython's Pool
 * (exitpriority 15). */
static void terminate_at_exit(void *arg)
{
    mproc_pool *p = arg;
    p->fin = 0;
    if (mproc_pool_terminate(p) == 0)
        (void)mproc_pool_join(p, -1); /* its thread ended: no thread left */
}

int mproc_pool_new(mproc_pool **out, const mproc_pool_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mproc_pool_opts o;
    int r = check_opts(opts, &o);
    if (r < 0)
        return r;
    mproc_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->board_fd = p->ep = p->evfd = -1;
    p->owner = pool__my_pid();
    p->nproc = p->nlocal = o.processes;
    p->opts = o;
    p->opts.initargs = NULL;
    pthread_mutex_init(&p->in_mu, NULL);
    if (o.backend) {
        int nremote = 0;
        r = o.backend->attach(&o, &p->bctx, &nremote);
        if (r < 0 || nremote < 0 || nremote > 0xffff) {
            pthread_mutex_destroy(&p->in_mu);
            free(p);
            return r < 0 ? r : -EINVAL;
        }
        p->nproc += nremote;
    }
    r = alloc_parts(p, o.initargs);
    if (r == 0)
        r = make_board(p);
    if (r == 0)
        r = make_events(p);
    if (r == 0)
        r = start_thread(p);
    if (r < 0) {
        if (o.backend)
            o.backend->detach(p->bctx);
        free_resources(p);
        if (p->core) {
            pool__lock(p->core);
            pool__core_unref_unlock(p->core);
        }
        free(p);
        return r;
    }
    mproc_debug("pool: created with %d workers", p->nproc);
    r = mproc_finalize(terminate_at_exit, p, 15);
    p->fin = r > 0 ? r : 0;
    *out = p;
    return 0;
}

int mproc_pool_close(mproc_pool *p)
{
    if (!p)
        return -EINVAL;
    pool__lock(p->core);
    if (p->state == P_RUN) {
        __atomic_store_n(&p->state, P_CLOSE, __ATOMIC_RELEASE);
        pool__wake(p);
    }
    pool__unlock(p->core);
    return 0;
}

int mproc_pool_terminate(mproc_pool *p)
{
    if (!p)
        return -EINVAL;
    if (pool__my_pid() != p->owner)
        return MPROC_EPOOL;
    pool__lock(p->core);
    if (p->state != P_TERM) {
        __atomic_store_n(&p->state, P_TERM, __ATOMIC_RELEASE);
        pool__wake(p);
    }
    if (on_pool_thread(p)) {
        pool__unlock(p->core);
        return 0;
    }
    mproc__deadline forever = mproc__deadline_from(-1);
    while (!p->thread_done)
        pool__wait_until(p->core, &forever);
    pool__unlock(p->core);
    return 0;
}

int mproc_pool_join(mproc_pool *p, double timeout)
{
    if (!p)
        return -EINVAL;
    if (on_pool_thread(p))
        return -EDEADLK;
    if (pool__my_pid() != p->owner)
        return MPROC_EPOOL;
    pool__lock(p->core);
    if (p->state == P_RUN) {
        pool__unlock(p->core);
        return -EINVAL;
    }
    mproc__deadline d = mproc__deadline_from(timeout);
    while (!p->thread_done)
        if (!pool__wait_until(p->core, &d))
            break;
    if (!p->thread_done) {
        pool__unlock(p->core);
        return -ETIMEDOUT;
    }
    bool do_join = !p->joined;
    p->joined = true;
    pool__unlock(p->core);
    if (do_join)
        pthread_join(p->thread, NULL);
    return 0;
}

void mproc_pool_free(mproc_pool *p)
{
    if (!p)
        return;
    if (pool__my_pid() != p->owner) {
        /* A forked child's copy: the workers are not ours. The copied
         * lock may be held by a thread that does not exist here, so leave
         * the core (and jobs) alone. */
        free_resources(p);
        free(p);
        return;
    }
    if (on_pool_thread(p))
        return; /* documented misuse: cannot free from a callback */
    if (p->fin)
        mproc_finalize_cancel(p->fin);
    mproc_pool_terminate(p);
    pool__lock(p->core);
    bool do_join = !p->joined;
    p->joined = true;
    pool__unlock(p->core);
    if (do_join)
        pthread_join(p->thread, NULL);
    if (p->opts.backend)
        p->opts.backend->detach(p->bctx);
    pool__lock(p->core);
    for (pool__job *j = p->jobs; j; j = j->next)
        j->pool = NULL;
    for (int i = 0; i < p->nproc; i++) {
        pool__msgbuf_unref(p->w[i].cur);
        p->w[i].cur = NULL;
    }
    pool__unlock(p->core);
    pool__core *c = p->core;
    free_resources(p);
    free(p);
    pool__lock(c);
    pool__core_unref_unlock(c);
}

int mproc_pool_processes(const mproc_pool *p)
{
    return p ? p->nproc : 0;
}

int mproc_pool_pids(mproc_pool *p, pid_t *pids, size_t max)
{
    if (!p)
        return -EINVAL;
    pool__lock(p->core);
    int n = 0;
    for (int i = 0; i < p->nproc; i++) {
        pool__wslot *w = &p->w[i];
        if ((w->state != W_LIVE && w->state != W_EXITING) || w->remote)
            continue;
        if (pids && (size_t)n < max)
            pids[n] = w->pid;
        n++;
    }
    pool__unlock(p->core);
    return n;
}
