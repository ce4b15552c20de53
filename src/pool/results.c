/*
 * pool/results.c - what comes back from the workers. Results are taken
 * out of each worker's ring on the board, the big ones' memfds and an
 * initializer's failure out of its channel, and each is delivered to its
 * job's slot. When a worker dies, its tasks up to the one it was running
 * fail and the rest go back to the pending queue; when the pool breaks,
 * every task fails.
 */
#include "pool/engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

pool__errrec *pool__errrec_new(int code, pid_t worker, int exitcode,
                               size_t index, const char *fmt, ...)
{
    pool__errrec *e = calloc(1, sizeof *e);
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
void pool__deliver_fail(mproc_pool *p, pool__job *j, size_t idx, size_t count,
                        pool__errrec *e, int code, bool inflight)
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
                pool__errrec_unref(j->first_err);
                j->first_err = e;
            }
        }
        if (j->type == J_MAP || j->type == J_APPLY) {
            for (size_t k = 0; k < count; k++) {
                pool__rslot *s = &j->slots[j->type == J_APPLY ? 0 : idx + k];
                pool__slot_release(s);
                s->status = code;
                s->ptr = e;
                if (e)
                    e->refs++;
            }
        } else if (j->type == J_IMAP) {
            for (size_t k = 0; k < count; k++) {
                size_t i = idx + k;
                pool__rslot *s = &j->slots[i % j->imap.window];
                pool__slot_release(s);
                s->status = code;
                s->ptr = e;
                if (e)
                    e->refs++;
                if (j->imap.win) {
                    free((void *)j->imap.win[i % j->imap.window].data);
                    j->imap.win[i % j->imap.window].data = NULL;
                }
                if (j->imap.unordered)
                    j->imap.ring[(j->imap.rhead + j->imap.rcount++) %
                                 j->imap.window] = i;
            }
        }
        pool__broadcast(j->core);
        pool__mark_dirty(p, j);
    }
    pool__errrec_unref(e);
    pool__check_finished(p, j);
}

static void deliver_ok(mproc_pool *p, pool__job *j, size_t idx, size_t count,
                       pool__msgbuf *b, size_t off, size_t len)
{
    j->inflight -= count;
    j->done += count;
    if (!j->cancelled) {
        pool__rslot *s = NULL;
        if (j->type == J_MAP)
            s = &j->slots[idx];
        else if (j->type == J_APPLY)
            s = &j->slots[0];
        else if (j->type == J_IMAP) {
            s = &j->slots[idx % j->imap.window];
            if (j->imap.win) {
                free((void *)j->imap.win[idx % j->imap.window].data);
                j->imap.win[idx % j->imap.window].data = NULL;
            }
            if (j->imap.unordered)
                j->imap
                    .ring[(j->imap.rhead + j->imap.rcount++) % j->imap.window] =
                    idx;
        }
        if (s) {
            pool__slot_release(s);
            s->status = 0;
            s->ptr = b;
            s->off = (uint32_t)off;
            s->len = len;
            if (b)
                b->refs++;
        }
        if (j->type == J_IMAP || j->done == j->n)
            pool__broadcast(j->core);
        pool__mark_dirty(p, j);
    }
    pool__check_finished(p, j);
}

/* Fails every task of a pending segment. */
void pool__fail_seg(mproc_pool *p, const pool__seg *s, int code,
                    const char *msg)
{
    pool__errrec *e = pool__errrec_new(code, 0, 0, s->start, "%s", msg);
    pool__deliver_fail(p, s->j, s->start, s->count, e, code, false);
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

/* Reads whatever the worker has sent (results outlive its death). */
/* Reads up to max messages from worker i's channel. */
static void recv_msgs(mproc_pool *p, int i, int max)
{
    pool__wslot *w = &p->w[i];
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
void pool__drain(mproc_pool *p, int i, int max)
{
    pool__wslot *w = &p->w[i];
    recv_msgs(p, i, max);
    if (!p->broken && (w->state == W_LIVE || w->state == W_EXITING))
        consume(p, i);
}

/* A worker is gone: reap it, fail what it was running, hand back what it
 * never started. */
void pool__worker_gone(mproc_pool *p, int i)
{
    pool__wslot *w = &p->w[i];
    pool__drain(p, i, 1 << 20);
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
            pool__seg sg = *pool__dq_at(&w->q, k);
            sg.j->inflight -= sg.count;
            pool__dq_push_front(&p->pending, sg);
            p->npending += sg.count;
        }
        w->q.n = 0;
        pool__break_pool(p, MPROC_EINIT, msg);
        return;
    }
    /* Segments in order; seqs below next_result were delivered. Tasks up
     * to the one it was running fail; the rest never started. */
    size_t ks = w->q.n, ko = 0;
    for (size_t k = 0; k < w->q.n && ks == w->q.n; k++) {
        pool__seg *sg = pool__dq_at(&w->q, k);
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
            pool__errrec *e;
            if (w->killed && seq == w->timeout_seq)
                e = pool__errrec_new(MPROC_ETASKTIMEOUT, pid, ec, idx,
                                     "task timed out after %.3g s; worker %d "
                                     "was killed",
                                     sg->j->timeout, (int)pid);
            else if (seq <= done)
                e = pool__errrec_new(MPROC_EWORKER, pid, ec, idx,
                                     "worker %d %s before sending this task's "
                                     "result",
                                     (int)pid, how);
            else
                e = pool__errrec_new(MPROC_EWORKER, pid, ec, idx,
                                     "worker %d %s while running this task",
                                     (int)pid, how);
            pool__deliver_fail(p, sg->j, idx, cnt, e, MPROC_EWORKER, true);
        }
    }
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

/* The in-flight segment of worker w that holds seq (the front one). */
static pool__seg *seg_for(pool__wslot *w, uint64_t seq)
{
    /* Results come in order, and a finished segment leaves the queue at
     * once: anything else is a stray entry, ignored. */
    if (w->q.n == 0)
        return NULL;
    pool__seg *sg = pool__dq_at(&w->q, 0);
    size_t nseq = sg->j->type == J_RANGE ? 1 : sg->count;
    if (seq < sg->first_seq || seq >= sg->first_seq + nseq)
        return NULL;
    return sg;
}

static void result_done(pool__wslot *w, uint64_t seq)
{
    pool__seg *sg = pool__dq_at(&w->q, 0);
    size_t nseq = sg->j->type == J_RANGE ? 1 : sg->count;
    if (seq + 1 == sg->first_seq + nseq)
        pool__dq_pop_front(&w->q);
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
    pool__break_pool(p, MPROC_EINIT, msg);
}

static unsigned char *ring_of(mproc_pool *p, int i)
{
    return (unsigned char *)p->board + p->ring_off + (size_t)i * POOL__RING;
}

/* One result entry (data points into b, or is an out-of-line memfd). */
/* Returns false for an entry no task of the worker can have written. */
static bool take_entry(mproc_pool *p, int i, const pool__entry *e,
                       pool__msgbuf *b, size_t off)
{
    pool__wslot *w = &p->w[i];
    pool__msgbuf *ib = b;
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
    pool__seg *sg = seg_for(w, e->seq);
    bool ok = sg != NULL;
    if (sg) {
        pool__job *j = sg->j;
        size_t idx = j->type == J_RANGE
                         ? sg->start
                         : sg->start + (size_t)(e->seq - sg->first_seq);
        size_t cnt = j->type == J_RANGE ? sg->count : 1;
        result_done(w, e->seq);
        if (status == 0) {
            deliver_ok(p, j, idx, cnt, len ? ib : NULL, off, len);
        } else {
            int code = status == RSLOT_PENDING ? MPROC_ETASK : status;
            char msg[256];
            size_t ml = len < sizeof msg - 1 ? len : sizeof msg - 1;
            if (data && ml)
                memcpy(msg, data, ml);
            msg[data ? ml : 0] = 0;
            pool__errrec *er =
                pool__errrec_new(code, w->pid, 0, idx, "%s", msg);
            pool__deliver_fail(p, j, idx, cnt, er, code, true);
        }
    }
    if (ib && ib != b)
        pool__msgbuf_unref(ib);
    return ok;
}

/* The common case made cheap: a run of plain successful results of one
 * map segment, stored straight into the job's slots. Returns the bytes of
 * b it used (0: not that case). */
static size_t map_run(mproc_pool *p, pool__wslot *w, pool__msgbuf *b,
                      size_t pos, size_t total, uint64_t rpos)
{
    if (w->q.n == 0)
        return 0;
    pool__seg *sg = pool__dq_at(&w->q, 0);
    pool__job *j = sg->j;
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
        pool__rslot *s = &j->slots[sg->start + (size_t)(e.seq - sg->first_seq)];
        if (s->status != RSLOT_PENDING)
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
        pool__broadcast(j->core);
    pool__mark_dirty(p, j);
    pool__check_finished(p, j);
    return pos - start;
}

/* Takes every committed result out of worker i's ring. */
static void consume(mproc_pool *p, int i)
{
    pool__wslot *w = &p->w[i];
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
    pool__msgbuf *b = malloc(sizeof *b + total);
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
    pool__msgbuf_unref(b);
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
    pool__wslot *w = &p->w[i];
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

/* Fails every pending task and every task in flight with code. */
void pool__fail_all(mproc_pool *p, int code, const char *msg)
{
    for (int i = 0; i < p->nproc; i++) {
        pool__wslot *w = &p->w[i];
        while (w->q.n > 0) {
            pool__seg sg = *pool__dq_at(&w->q, 0);
            pool__dq_pop_front(&w->q);
            size_t nseq = sg.j->type == J_RANGE ? 1 : sg.count;
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
            j->imap.input_end = true;
            j->imap.stream_err = code;
            p->open_streams--;
            pool__broadcast(p->core);
            pool__check_finished(p, j);
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
