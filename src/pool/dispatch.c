/*
 * pool/dispatch.c - getting tasks to workers. The pending deque holds
 * segments of jobs' task indices in the order they were submitted; the
 * function table gives each task function an id a worker learns once
 * (PM_FNDEF). For each worker with room, the front of the deque is packed
 * into one message: a chunk of a records job (PM_RANGE), or up to a chunk
 * of tasks of one function (PM_TASKS), items inline or, when big, in a
 * memfd of their own.
 */
#include "pool/engine.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool dq_reserve(pool__deque *d)
{
    if (d->n < d->cap)
        return true;
    size_t cap = d->cap ? d->cap * 2 : 16;
    pool__seg *v = malloc(cap * sizeof *v);
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

bool pool__dq_push_back(pool__deque *d, pool__seg s)
{
    if (!dq_reserve(d))
        return false;
    d->v[(d->head + d->n) % d->cap] = s;
    d->n++;
    return true;
}

bool pool__dq_push_front(pool__deque *d, pool__seg s)
{
    if (!dq_reserve(d))
        return false;
    d->head = (d->head + d->cap - 1) % d->cap;
    d->v[d->head] = s;
    d->n++;
    return true;
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
        pool__fnent *v = realloc(p->fns, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        p->fns = v;
        p->capfns = cap;
    }
    pool__fnent *f = &p->fns[p->nfns];
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
int pool__fn_id(mproc_pool *p, const void *addr, int kind, uint32_t *id)
{
    pthread_mutex_lock(&p->in_mu);
    int r = fn_id_locked(p, addr, kind, id);
    pthread_mutex_unlock(&p->in_mu);
    return r;
}

static bool worker_knows_fn(pool__wslot *w, uint32_t id)
{
    return id < w->nknown && w->known[id];
}

static int send_fndef(mproc_pool *p, pool__wslot *w, uint32_t id)
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
    pool__fnent *f = &p->fns[id];
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
static void task_bytes(pool__job *j, size_t idx, const void **d, size_t *len)
{
    const mproc_iov *v;
    if (j->type == J_APPLY) {
        *d = j->apply.own;
        *len = j->apply.ownlen;
        return;
    }
    if (j->type == J_MAP)
        v = &j->map.items[idx];
    else if (j->imap.win)
        v = &j->imap.win[idx % j->imap.window];
    else
        v = &j->imap.items[idx];
    *d = v->data;
    *len = v->len;
}

static const mproc_args *task_args(pool__job *j, size_t idx)
{
    return j->type == J_APPLY ? j->apply.args : j->map.argv[idx];
}

static bool knows_buf(pool__wslot *w, uint64_t id)
{
    for (size_t i = 0; i < w->nbufs; i++)
        if (w->bufs[i] == id)
            return true;
    return false;
}

static void learn_buf(pool__wslot *w, uint64_t id)
{
    w->bufs[w->buf_next] = id;
    w->buf_next = (w->buf_next + 1) % POOL__FDCACHE;
    if (w->nbufs < POOL__FDCACHE)
        w->nbufs++;
}

static void push_msg(pool__wslot *w, uint64_t end_seq, size_t count)
{
    if (w->mn == 0)
        w->msg_start = pool__now_ns();
    w->msg_count[(w->mh + w->mn) % POOL__INFLIGHT] =
        count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
    w->msg_end[(w->mh + w->mn) % POOL__INFLIGHT] = end_seq;
    w->mn++;
}

/* Sends one chunk of a records job to w. Returns 1 sent, 0 not. */
static int send_range(mproc_pool *p, pool__wslot *w, pool__seg *f, size_t k)
{
    pool__job *j = f->j;
    pool__hdr h = {.type = PM_RANGE,
                   .kind = FK_RECORDS,
                   .count = 1,
                   .first_seq = w->next_seq,
                   .fnid = j->fnid,
                   .code = j->timeout > 0};
    pool__range rg = {.in_id = j->range.in_id,
                      .in_off = j->range.in_off,
                      .in_size = j->range.in_size,
                      .out_id = j->range.out_id,
                      .out_off = j->range.out_off,
                      .out_size = j->range.out_size,
                      .start = f->start,
                      .count = k};
    int fds[2];
    size_t nfds = 0;
    bool need_in = j->range.in_size && !knows_buf(w, j->range.in_id);
    bool need_out = !knows_buf(w, j->range.out_id);
    if (need_in) {
        fds[nfds++] = pool__shm_fd(p, j->range.in_id);
        rg.flags |= 1;
    }
    if (need_out && !(need_in && j->range.out_id == j->range.in_id)) {
        fds[nfds++] = pool__shm_fd(p, j->range.out_id);
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
        learn_buf(w, j->range.in_id);
    if (rg.flags & 2)
        learn_buf(w, j->range.out_id);
    pool__seg s = {j, f->start, k, w->next_seq};
    if (!pool__dq_push_back(&w->q, s)) {
        /* Cannot track it: the result would be dropped; fail it now. */
        pool__errrec *e =
            pool__errrec_new(-ENOMEM, 0, 0, f->start, "out of memory");
        pool__deliver_fail(p, j, f->start, k, e, -ENOMEM, false);
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
        pool__dq_pop_front(&p->pending);
    return 1;
}

/* Packs tasks from the front of the pending queue into one message for w.
 * Returns 1 when a message was sent, 0 when nothing was. */
static int send_batch(mproc_pool *p, pool__wslot *w)
{
    while (p->pending.n > 0) {
        pool__seg *f = pool__dq_at(&p->pending, 0);
        if (!f->j->cancelled && f->count > 0)
            break;
        p->npending -= f->count;
        pool__job *cj = f->j;
        pool__dq_pop_front(&p->pending);
        pool__check_finished(p, cj);
    }
    if (p->pending.n == 0)
        return 0;
    pool__seg *f = pool__dq_at(&p->pending, 0);
    pool__job *j0 = f->j;
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
        pool__seg *s = pool__dq_at(&p->pending, qi);
        pool__job *j = s->j;
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
                pool__seg one = {j, idx, 1, 0};
                if (off == 0) {
                    s->start++;
                    s->count--;
                    if (s->count == 0)
                        pool__dq_pop_front(&p->pending);
                } else {
                    break; /* handled when it reaches the front */
                }
                p->npending--;
                pool__fail_seg(p, &one, r < 0 ? r : -ENOMEM,
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
        pool__seg *s = pool__dq_at(&p->pending, 0);
        size_t k = s->count < left ? s->count : left;
        pool__seg t = {s->j, s->start, k, w->next_seq};
        if (!pool__dq_push_back(&w->q, t)) {
            pool__errrec *e =
                pool__errrec_new(-ENOMEM, 0, 0, s->start, "out of memory");
            pool__deliver_fail(p, s->j, s->start, k, e, -ENOMEM, false);
        } else {
            s->j->inflight += k;
        }
        w->next_seq += k;
        s->start += k;
        s->count -= k;
        left -= k;
        if (s->count == 0)
            pool__dq_pop_front(&p->pending);
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

void pool__dispatch(mproc_pool *p)
{
    if (p->broken || p->state == P_TERM)
        return;
    bool any = true;
    while (p->pending.n > 0 && any) {
        any = false;
        for (int k = 0; k < p->nproc && p->pending.n > 0; k++) {
            int i = (p->rr + k) % p->nproc;
            pool__wslot *w = &p->w[i];
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
