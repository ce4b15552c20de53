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

#include <string.h>
#include <unistd.h>

/* Makes room for one more segment. The ring is kept in order across a
 * realloc: the part that had wrapped round to the start moves to just past
 * the old end (the capacity at least doubled, so it fits). */
static bool dq_reserve(pool__deque *d)
{
    if (d->n < d->cap)
        return true;
    size_t old = d->cap;
    if (MPROC__GROW(d->v, d->cap, d->n + 1) < 0)
        return false;
    if (d->head + d->n > old)
        memcpy(d->v + old, d->v, (d->head + d->n - old) * sizeof *d->v);
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
int pool__fn_id_locked(mproc_pool *p, const void *addr, int kind, uint32_t *id)
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
    if (MPROC__GROW(p->fns, p->capfns, p->nfns + 1) < 0)
        return -ENOMEM;
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
    int r = pool__fn_id_locked(p, addr, kind, id);
    pthread_mutex_unlock(&p->in_mu);
    return r;
}

static bool worker_knows_fn(pool__wslot *w, uint32_t id)
{
    return id < w->nknown && w->known[id];
}

static int send_fndef(mproc_pool *p, pool__wslot *w, uint32_t id)
{
    size_t had = w->nknown;
    if (MPROC__GROW(w->known, w->nknown, (size_t)id + 1) < 0)
        return -ENOMEM;
    memset(w->known + had, 0, w->nknown - had);
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

/* Moves the first k tasks of the front pending segment to w's in-flight
 * queue, as sent under the next nseq sequence numbers. */
static void move_front(mproc_pool *p, pool__wslot *w, size_t k, uint64_t nseq)
{
    pool__seg *f = pool__dq_at(&p->pending, 0);
    pool__seg t = {f->j, f->start, k, w->next_seq};
    if (!pool__dq_push_back(&w->q, t)) {
        /* Cannot track it: the result would be dropped; fail it now. */
        pool__errrec *e =
            pool__errrec_new(-ENOMEM, 0, 0, f->start, "out of memory");
        pool__deliver_fail(p, f->j, f->start, k, e, -ENOMEM, false);
    } else {
        f->j->inflight += k;
        double tj = f->j->timeout;
        if (tj > 0 && (w->tmin == 0 || tj < w->tmin))
            w->tmin = tj;
    }
    w->next_seq += nseq;
    f->start += k;
    f->count -= k;
    p->npending -= k;
    if (f->count == 0)
        pool__dq_pop_front(&p->pending);
}

/* Sends the next chunk of the records job at the front of the pending
 * queue to w: one task of up to chunk records. The fds of buffers the
 * worker has not mapped yet ride along. Returns 1 sent, 0 not. */
static int send_range(mproc_pool *p, pool__wslot *w)
{
    pool__seg *f = pool__dq_at(&p->pending, 0);
    pool__job *j = f->j;
    size_t k = f->count < j->chunk ? f->count : j->chunk;
    pool__hdr h = {.type = PM_RANGE,
                   .kind = FK_RECORDS,
                   .count = 1,
                   .first_seq = w->next_seq,
                   .fnid = j->fnid,
                   .code = pool__timeout_ms(j->timeout)};
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
    move_front(p, w, k, 1);
    w->assigned++;
    push_msg(w, w->next_seq, 1);
    return 1;
}

/* A PM_TASKS message being packed into p->sbuf. */
typedef struct batch {
    const pool__job *j0; /* the front job: every task shares its function */
    size_t pos;          /* bytes packed, the header's included */
    size_t nitems;
    int32_t timed; /* the longest timeout of its tasks in ms (0: none): the
                      worker stamps start times when not 0 */
    bool chunked;  /* a map's items: results come as chunks */
    int fds[POOL__MAX_FDS];
    size_t nfds;
    int memfds[POOL__MAX_FDS]; /* the ones we made: closed once sent */
    size_t nmemfds;
    mproc__buf args; /* one task's argument list, exported */
} batch;

/* Chunk policy: how many tasks the next message to w carries. A job's
 * own chunksize, or (apply, imap without one) a share of all that is
 * pending: half of it spread over the live workers, from 1 to 4096. Never
 * more than w may still take under maxtasksperchild. */
static size_t batch_target(mproc_pool *p, pool__wslot *w, const pool__job *j0)
{
    size_t target;
    if (j0->type == J_APPLY || j0->chunk == 0) {
        size_t share = (p->npending + 2 * (size_t)p->nlive - 1) /
                       (2 * (size_t)(p->nlive ? p->nlive : 1));
        target = share < 1 ? 1 : share > 4096 ? 4096 : share;
    } else {
        target = j0->chunk;
    }
    if (p->opts.maxtasksperchild && !w->remote &&
        target > p->opts.maxtasksperchild - w->assigned)
        target = (size_t)(p->opts.maxtasksperchild - w->assigned);
    return target;
}

/* Exports the argument list of task off of s into b->args (its fds after
 * b's). Returns 1 done, 0 when the message must end before this task, or
 * -1 when the task can never be sent: then it failed alone. */
static int export_args(mproc_pool *p, batch *b, pool__seg *s, size_t off,
                       size_t *kfds)
{
    pool__job *j = s->j;
    size_t idx = s->start + off, before = b->nfds;
    b->args.len = 0;
    b->args.oom = false;
    int r = mproc__args_export(task_args(j, idx), &b->args, b->fds, &b->nfds,
                               POOL__MAX_FDS - 1);
    if (r == 0 && !b->args.oom) {
        *kfds = b->nfds - before;
        return 1;
    }
    b->nfds = before;
    if (b->nitems > 0 || off > 0)
        return 0; /* it is handled when it reaches the front */
    /* The task cannot be sent at all: fail it alone. */
    pool__seg one = {j, idx, 1, 0};
    s->start++;
    s->count--;
    if (s->count == 0)
        pool__dq_pop_front(&p->pending);
    p->npending--;
    pool__fail_seg(p, &one, r < 0 ? r : -ENOMEM,
                   "cannot send the task's arguments");
    return -1;
}

/* Item encoding: the item header and its len bytes, padded to 8. */
static void put_inline(mproc_pool *p, batch *b, pool__item it, const void *d,
                       size_t len)
{
    unsigned char *at = p->sbuf + b->pos;
    memcpy(at, &it, sizeof it);
    if (len)
        memcpy(at + sizeof it, d, len);
    memset(at + sizeof it + len, 0, pool__pad8(len) - len);
}

/* An out-of-line item: the bytes go into a memfd passed with the message,
 * the item says POOL__OOL_LEN and their size. Returns 0 or -1. */
static int put_ool(mproc_pool *p, batch *b, pool__item it, const void *d,
                   size_t len)
{
    int mfd = mproc__memfd_with("mproc-pool-task", d, len);
    if (mfd < 0)
        return -1;
    b->fds[b->nfds++] = mfd;
    b->memfds[b->nmemfds++] = mfd;
    it.len = POOL__OOL_LEN;
    uint64_t size = len;
    memcpy(p->sbuf + b->pos, &it, sizeof it);
    memcpy(p->sbuf + b->pos + sizeof it, &size, 8);
    return 0;
}

/* Packs task off of pending segment s. Returns 1 packed, 2 packed out of
 * line (the message ends with it), 0 when it does not fit (the message
 * ends before it), -1 when nothing can be sent now. */
static int pack_task(mproc_pool *p, batch *b, pool__seg *s, size_t off)
{
    pool__job *j = s->j;
    const void *d;
    size_t len, kfds = 0;
    if (j->fkind == FK_ARGS) {
        int r = export_args(p, b, s, off, &kfds);
        if (r <= 0)
            return r;
        d = b->args.p;
        len = b->args.len;
    } else {
        task_bytes(j, s->start + off, &d, &len);
    }
    bool ool = len > POOL__OOL_MIN;
    size_t need = sizeof(pool__item) + (ool ? 8 : pool__pad8(len));
    if (b->nitems > 0 && (b->pos + need > POOL__BATCH_MAX ||
                          b->nfds + (ool ? 1 : 0) > POOL__MAX_FDS)) {
        b->nfds -= kfds;
        return 0;
    }
    pool__item it = {.a = (int32_t)kfds, .len = (uint32_t)len};
    if (!ool) {
        put_inline(p, b, it, d, len);
    } else if (put_ool(p, b, it, d, len) < 0) {
        b->nfds -= kfds;
        return b->nitems > 0 ? 0 : -1;
    }
    b->pos += need;
    b->nitems++;
    int32_t ms = pool__timeout_ms(j->timeout);
    if (ms > b->timed)
        b->timed = ms;
    return ool ? 2 : 1;
}

/* Packs up to target tasks from the front of the pending queue: tasks of
 * the front job's function, across segments, until one of another
 * function or kind, a cancelled job, a records job, a full message, or an
 * out-of-line item. Returns 0, or -1 when the first task could not be
 * packed. */
static int pack_tasks(mproc_pool *p, batch *b, size_t target)
{
    size_t qi = 0, off = 0; /* cursor in the pending queue */
    while (b->nitems < target && qi < p->pending.n) {
        pool__seg *s = pool__dq_at(&p->pending, qi);
        pool__job *j = s->j;
        if (j->cancelled || j->fnid != b->j0->fnid ||
            j->fkind != b->j0->fkind || j->type == J_RANGE)
            break;
        if (off == s->count) {
            qi++;
            off = 0;
            continue;
        }
        int r = pack_task(p, b, s, off);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        off++;
        if (r == 2)
            break;
    }
    return 0;
}

/* Sends w up to target tasks of the map at the front of the pending
 * queue whose inputs are in the arena: the message names them, the arena's
 * fd rides along the first time. Returns 1 sent, 0 not. */
static int send_arena(mproc_pool *p, pool__wslot *w, size_t target)
{
    pool__seg *f = pool__dq_at(&p->pending, 0);
    pool__job *j = f->j;
    size_t k = f->count < target ? f->count : target;
    /* The caller may still be packing: only what is in the arena goes. */
    size_t packed = atomic_load_explicit(&j->map.packed, memory_order_acquire);
    if (packed <= f->start)
        return 0;
    if (k > packed - f->start)
        k = packed - f->start;
    if (k > UINT32_MAX)
        k = UINT32_MAX;
    pool__hdr h = {.type = PM_TASKS,
                   .kind = FK_BYTES | POOL__FK_CHUNK | POOL__FK_ARENA,
                   .count = (uint32_t)k,
                   .first_seq = w->next_seq,
                   .fnid = j->fnid,
                   .code = pool__timeout_ms(j->timeout)};
    pool__arena a = {.id = j->map.arena_id, .first = f->start, .total = j->n};
    int fd = -1;
    if (!knows_buf(w, a.id)) {
        fd = pool__shm_fd(p, a.id);
        a.flags = 1;
    }
    memcpy(p->sbuf, &h, sizeof h);
    memcpy(p->sbuf + sizeof h, &a, sizeof a);
    if (mproc__pool_send(w->chan, p->sbuf, sizeof h + sizeof a, &fd,
                         a.flags ? 1 : 0, false) < 0) {
        w->full = true;
        return 0;
    }
    if (a.flags)
        learn_buf(w, a.id);
    move_front(p, w, k, k);
    w->assigned += k;
    push_msg(w, w->next_seq, k);
    return 1;
}

/* Packs up to target inline items of the map over bytes at the front of
 * the pending queue (its front segment alone: their results come back as
 * chunks, pool_impl.h). Returns false when its first item is too big to
 * go inline (then the general path takes it). */
static bool pack_map(mproc_pool *p, batch *b, size_t target)
{
    const pool__seg *s = pool__dq_at(&p->pending, 0);
    const mproc_iov *v = s->j->map.items + s->start;
    size_t n = s->count < target ? s->count : target, pos = b->pos, k;
    unsigned char *buf = p->sbuf;
    for (k = 0; k < n; k++) {
        size_t len = v[k].len;
        if (len > POOL__OOL_MIN ||
            pos + sizeof(pool__item) + pool__pad8(len) > POOL__BATCH_MAX)
            break;
        pool__item it = {.len = (uint32_t)len};
        memcpy(buf + pos, &it, sizeof it);
        pos += sizeof it;
        if (len == 0)
            continue;
        uint64_t x = 0;
        if (len <= 8) { /* the common small item: one padded word */
            memcpy(&x, v[k].data, len);
            memcpy(buf + pos, &x, 8);
        } else {
            memcpy(buf + pos + pool__pad8(len) - 8, &x, 8);
            memcpy(buf + pos, v[k].data, len);
        }
        pos += pool__pad8(len);
    }
    b->pos = pos;
    b->nitems = k;
    b->chunked = true;
    b->timed = pool__timeout_ms(s->j->timeout);
    return k > 0;
}

/* Sends the packed message; on success moves its tasks from the pending
 * queue to w's. Returns 1 sent, 0 not (w's socket is full). */
static int send_tasks(mproc_pool *p, pool__wslot *w, const batch *b)
{
    pool__hdr h = {
        .type = PM_TASKS,
        .kind = (uint8_t)(b->j0->fkind | (b->chunked ? POOL__FK_CHUNK : 0)),
        .nfds = (uint16_t)b->nfds,
        .count = (uint32_t)b->nitems,
        .first_seq = w->next_seq,
        .fnid = b->j0->fnid,
        .code = b->timed};
    memcpy(p->sbuf, &h, sizeof h);
    if (mproc__pool_send(w->chan, p->sbuf, b->pos, b->fds, b->nfds, false) <
        0) {
        w->full = true;
        return 0;
    }
    for (size_t left = b->nitems; left > 0;) {
        size_t count = pool__dq_at(&p->pending, 0)->count;
        size_t k = count < left ? count : left;
        move_front(p, w, k, k);
        left -= k;
    }
    w->assigned += b->nitems;
    push_msg(w, w->next_seq, b->nitems);
    return 1;
}

/* Drops cancelled and emptied segments from the front of the pending
 * queue; returns the first one left (NULL: none). */
static pool__seg *pending_front(mproc_pool *p)
{
    while (p->pending.n > 0) {
        pool__seg *f = pool__dq_at(&p->pending, 0);
        if (!f->j->cancelled && f->count > 0)
            return f;
        p->npending -= f->count;
        pool__job *cj = f->j;
        pool__dq_pop_front(&p->pending);
        pool__check_finished(p, cj);
    }
    return NULL;
}

/* Sends w one message from the front of the pending queue (its function
 * first, if w does not know it). Returns 1 when a message was sent, 0 when
 * nothing was, -1 when a task failed instead of going. */
static int send_batch(mproc_pool *p, pool__wslot *w)
{
    pool__seg *f = pending_front(p);
    if (!f)
        return 0;
    pool__job *j0 = f->j;
    if (!worker_knows_fn(w, j0->fnid) && send_fndef(p, w, j0->fnid) < 0) {
        w->full = true;
        return 0;
    }
    if (j0->type == J_RANGE)
        return send_range(p, w);
    size_t target = batch_target(p, w, j0);
    if (j0->type == J_MAP && j0->map.arena_id && !w->remote) {
        /* what is in the arena goes from there; what did not fit goes
         * in messages once the caller is done packing */
        if (f->start < atomic_load(&j0->map.packed))
            return send_arena(p, w, target);
        if (atomic_load(&j0->map.pack_end) == SIZE_MAX)
            return 0;
    }
    batch b = {.j0 = j0, .pos = sizeof(pool__hdr)};
    int rc = 0;
    /* A map over bytes takes the fast path unless the far end is a
     * backend's (its relay writes entries of its own). */
    bool fast = j0->type == J_MAP && j0->fkind == FK_BYTES && !w->remote &&
                pack_map(p, &b, target);
    if (!fast) {
        b = (batch){.j0 = j0, .pos = sizeof(pool__hdr)};
        rc = pack_tasks(p, &b, target);
    }
    if (rc == 0 && b.nitems > 0)
        rc = send_tasks(p, w, &b);
    for (size_t i = 0; i < b.nmemfds; i++)
        close(b.memfds[i]);
    mproc__buf_free(&b.args);
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
            if (p->opts.maxtasksperchild && !w->remote &&
                w->assigned >= p->opts.maxtasksperchild)
                continue;
            int r = send_batch(p, w);
            if (r != 0)
                any = true;
        }
        p->rr = (p->rr + 1) % p->nproc;
    }
}
