/*
 * pool/failure.c - when a worker dies or the whole pool breaks. A dead
 * worker is reaped; its board slot tells which task it was running, so
 * the tasks up to that one fail (timed out, or killed with it) and the
 * ones it never started go back to the front of the pending queue for
 * another worker. A worker that dies while starting is replaced, up to
 * POOL__STARTUP_DEATHS in a row; those, an initializer that reports
 * failure, or workers that cannot be started break the pool: every
 * worker is stopped and every task, pending or in flight, fails.
 */
#include "pool/engine.h"

#include <stdio.h>
#include <string.h>

/* What a dead worker left: how it ended and what its board slot said. */
typedef struct death {
    pid_t pid;
    int ec;         /* exit code (MPROC_EXITCODE_NONE: vanished) */
    int wstate;     /* W_* when it died */
    uint32_t state; /* the board slot's SLOT_* */
    uint64_t cur;   /* the task it was running, or ran last */
    uint64_t done;  /* the last task it finished */
    char how[96];
} death;

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

/* Reaps worker i (killing it if it does not end in time), reads its
 * board slot, and empties the slot. */
static void reap(mproc_pool *p, int i, death *d)
{
    pool__wslot *w = &p->w[i];
    if (mproc_process_join(w->proc, 5.0) < 0) {
        mproc_process_kill(w->proc);
        mproc_process_join(w->proc, -1);
    }
    d->ec = mproc_process_exitcode(w->proc);
    pool__slot *s = &p->board[i];
    d->state = atomic_load(&s->state);
    d->cur = atomic_load(&s->cur_seq);
    d->done = atomic_load(&s->done_seq);
    d->pid = w->pid;
    d->wstate = w->state;
    pool__forget_worker(p, w);
    describe_exit(d->ec, d->how, sizeof d->how);
    mproc_debug("pool: worker %d %s", (int)d->pid, d->how);
}

/*
 * It died while starting (before its initializer, in it, or right after:
 * it never said it was ready). An OOM killer or an operator may do that to
 * any worker, so it is replaced and what it held goes to others; only
 * POOL__STARTUP_DEATHS in a row (no worker became ready in between) break
 * the pool, with MPROC_EINIT when the last one died inside the
 * initializer, else MPROC_ESTARTUP. Returns true when the pool broke.
 */
static bool died_starting(mproc_pool *p, pool__wslot *w, const death *d)
{
    if (++p->startup_deaths < POOL__STARTUP_DEATHS)
        return false;
    bool in_init = d->state == SLOT_INIT && p->opts.initializer;
    char msg[256];
    snprintf(msg, sizeof msg,
             "%d pool workers in a row died while starting; the last, "
             "worker %d, %s %s",
             p->startup_deaths, (int)d->pid, d->how,
             in_init ? "in its initializer" : "before it was ready");
    /* Hand its tasks back first: break_pool fails them all. */
    for (size_t k = w->q.n; k-- > 0;) {
        pool__seg sg = *pool__dq_at(&w->q, k);
        sg.j->inflight -= sg.count;
        pool__dq_push_front(&p->pending, sg);
        p->npending += sg.count;
    }
    w->q.n = 0;
    pool__break_pool(p, in_init ? MPROC_EINIT : MPROC_ESTARTUP, msg);
    return true;
}

/* Task o of in-flight segment sg, sequence number seq, died with w. */
static void fail_died(mproc_pool *p, const pool__wslot *w, const death *d,
                      const pool__seg *sg, size_t o, uint64_t seq)
{
    size_t idx;
    size_t cnt = pool__seg_task(sg, o, &idx);
    pool__errrec *e;
    if (w->killed && seq == w->timeout_seq)
        e = pool__errrec_new(MPROC_ETASKTIMEOUT, d->pid, d->ec, idx,
                             "task timed out after %.3g s; worker %d "
                             "was killed",
                             sg->j->timeout, (int)d->pid);
    else if (seq <= d->done)
        e = pool__errrec_new(MPROC_EWORKER, d->pid, d->ec, idx,
                             "worker %d %s before sending this task's "
                             "result",
                             (int)d->pid, d->how);
    else
        e = pool__errrec_new(MPROC_EWORKER, d->pid, d->ec, idx,
                             "worker %d %s while running this task",
                             (int)d->pid, d->how);
    pool__deliver_fail(p, sg->j, idx, cnt, e, MPROC_EWORKER, true);
}

/* Segments in order; seqs below next_result were delivered. Tasks up to
 * the one it was running fail; the rest never started: they begin at
 * task *ko of segment *ks. */
static void fail_started(mproc_pool *p, pool__wslot *w, const death *d,
                         size_t *ks, size_t *ko)
{
    *ks = w->q.n;
    *ko = 0;
    for (size_t k = 0; k < w->q.n && *ks == w->q.n; k++) {
        pool__seg *sg = pool__dq_at(&w->q, k);
        size_t nseq = pool__seg_nseq(sg);
        for (size_t o = 0; o < nseq; o++) {
            uint64_t seq = sg->first_seq + o;
            if (seq < w->next_result)
                continue;
            if (seq > d->cur) {
                *ks = k;
                *ko = o;
                break;
            }
            fail_died(p, w, d, sg, o, seq);
        }
    }
}

/* Puts what w never started (from task ko of segment ks on) back at the
 * front of the pending queue, in order; a cancelled job's is dropped. */
static void requeue(mproc_pool *p, pool__wslot *w, size_t ks, size_t ko)
{
    for (size_t k = w->q.n; k-- > ks;) {
        pool__seg sg = *pool__dq_at(&w->q, k);
        if (k == ks && ko > 0) {
            sg.start += ko;
            sg.count -= ko;
        }
        sg.j->inflight -= sg.count;
        if (sg.j->cancelled) {
            pool__check_finished(p, sg.j);
            continue;
        }
        if (!pool__dq_push_front(&p->pending, sg)) {
            pool__fail_seg(p, &sg, -ENOMEM, "out of memory requeueing a task");
            continue;
        }
        p->npending += sg.count;
    }
    w->q.n = 0;
    w->q.head = 0;
}

/* A backend's slot ended: after PM_EXIT it held nothing; lost, every
 * task it held fails with the backend's code (whether they ran is not
 * known, so none is run again). It is never restarted. */
static void remote_gone(mproc_pool *p, int i)
{
    pool__wslot *w = &p->w[i];
    char msg[200] = "";
    int code = p->opts.backend->status(p->bctx, i - p->nlocal, msg, sizeof msg);
    pool__forget_worker(p, w);
    while (w->q.n > 0) {
        pool__seg sg = *pool__dq_at(&w->q, 0);
        pool__dq_pop_front(&w->q);
        if (sg.j->type != J_RANGE && w->next_result > sg.first_seq) {
            size_t skip = (size_t)(w->next_result - sg.first_seq);
            if (skip >= sg.count)
                continue;
            sg.start += skip;
            sg.count -= skip;
        }
        int c = code < 0 ? code : MPROC_ERANKLOST;
        pool__errrec *e = pool__errrec_new(c, 0, 0, sg.start, "%s", msg);
        pool__deliver_fail(p, sg.j, sg.start, sg.count, e, c, true);
    }
    w->q.head = 0;
}

void pool__worker_gone(mproc_pool *p, int i)
{
    pool__wslot *w = &p->w[i];
    pool__drain(p, i, 1 << 20);
    if (p->broken)
        return; /* break_pool reaped it with the others */
    pool__take_open_chunk(p, i);
    if (w->remote) {
        remote_gone(p, i);
        return;
    }
    death d;
    reap(p, i, &d);
    /* Died starting: it never said it was ready and never sent a result
     * (the board alone could have been overwritten). Then it ran no task,
     * and everything it held is requeued below. */
    if (d.state != SLOT_READY && !w->seen_ready && d.wstate != W_EXITING &&
        died_starting(p, w, &d))
        return;
    size_t ks, ko;
    fail_started(p, w, &d, &ks, &ko);
    requeue(p, w, ks, ko);
}

void pool__fail_all(mproc_pool *p, int code, const char *msg)
{
    for (int i = 0; i < p->nproc; i++) {
        pool__wslot *w = &p->w[i];
        while (w->q.n > 0) {
            pool__seg sg = *pool__dq_at(&w->q, 0);
            pool__dq_pop_front(&w->q);
            size_t nseq = pool__seg_nseq(&sg);
            if (sg.j->type != J_RANGE && w->next_result > sg.first_seq) {
                size_t skip = (size_t)(w->next_result - sg.first_seq);
                if (skip >= nseq)
                    continue;
                sg.start += skip;
                sg.count -= skip;
            }
            pool__errrec *e =
                pool__errrec_new(code, w->pid, 0, sg.start, "%s", msg);
            pool__deliver_fail(p, sg.j, sg.start, sg.count, e, code, true);
        }
    }
    while (p->pending.n > 0) {
        pool__seg sg = *pool__dq_at(&p->pending, 0);
        pool__dq_pop_front(&p->pending);
        p->npending -= sg.count;
        pool__fail_seg(p, &sg, code, msg);
    }
    /* Streams end: imap iterators report the error after their results. */
    for (pool__job *j = p->jobs, *nx; j; j = nx) {
        nx = j->next;
        if (j->type == J_IMAP && !j->imap.input_end) {
            pool__end_stream(p, j, code);
            pool__broadcast(p->core);
        }
    }
}

void pool__break_pool(mproc_pool *p, int code, const char *msg)
{
    if (p->broken)
        return;
    __atomic_store_n(&p->broken, code, __ATOMIC_RELEASE);
    snprintf(p->broken_msg, sizeof p->broken_msg, "%s", msg);
    mproc_debug("pool: broken: %s", msg);
    pool__kill_and_reap_all(p, true);
    pool__drain_inbox(p, 0);
    pool__fail_all(p, code, msg);
    __atomic_store_n(&p->state, P_TERM, __ATOMIC_RELEASE);
}
