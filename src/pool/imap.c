/*
 * pool/imap.c - imap, imap_unordered and imap_source: a window of tasks
 * kept in flight and refilled as the consumer takes results, in order or
 * as they come; a source's items are copied into the window as it is
 * read (outside the lock).
 */
#include "pool/engine.h"

#include <stdlib.h>
#include <string.h>

void pool__end_stream(mproc_pool *p, pool__job *j, int err)
{
    if (j->imap.input_end)
        return;
    j->imap.input_end = true;
    j->imap.stream_err = err;
    p->open_streams--;
    pool__check_finished(p, j);
}

/* Reads the source's next item into window place s, the lock dropped
 * while the source runs. Returns false when the window stops filling: the
 * input ended or failed, or the job was cancelled or finished meanwhile
 * (place s is then free again). */
static bool read_source(mproc_pool *p, pool__job *j, size_t s)
{
    mproc_iov iov = {0};
    pool__unlock(j->core);
    int r = j->imap.src(j->imap.ctx, &iov);
    void *copy = NULL;
    if (r > 0 && iov.len) {
        copy = malloc(iov.len);
        if (copy)
            memcpy(copy, iov.data, iov.len);
        else
            r = -ENOMEM;
    }
    pool__lock(j->core);
    bool gone = j->imap.input_end || j->cancelled || !j->pool;
    if (gone || r <= 0) {
        j->imap.occupied[s] = 0;
        free(copy);
        if (!gone)
            pool__end_stream(p, j, r);
        return false;
    }
    j->imap.win[s].data = copy;
    j->imap.win[s].len = iov.len;
    return true;
}

/* Queues task idx of j: one more task of the last pending segment when
 * that is j's and ends just before idx. */
static bool queue_task(mproc_pool *p, pool__job *j, size_t idx)
{
    if (p->pending.n > 0) {
        pool__seg *b = pool__dq_at(&p->pending, p->pending.n - 1);
        if (b->j == j && b->start + b->count == idx) {
            b->count++;
            return true;
        }
    }
    return pool__dq_push_back(&p->pending, (pool__seg){j, idx, 1, 0});
}

/* Tops the window up (lock held; dropped while a source runs). */
static void refill(pool__job *j)
{
    bool added = false;
    mproc_pool *p;
    while (!j->imap.input_end && !j->cancelled && (p = j->pool) != NULL) {
        if (p->state == P_TERM || p->broken)
            break;
        if (j->imap.submitted - j->imap.taken >= j->imap.window)
            break;
        size_t idx = j->imap.submitted, s = idx % j->imap.window;
        if (j->imap.occupied[s])
            break;
        j->imap.occupied[s] = 1;
        if (j->imap.src && !read_source(p, j, s))
            break;
        if (!queue_task(p, j, idx)) {
            j->imap.occupied[s] = 0;
            pool__end_stream(p, j, -ENOMEM);
            break;
        }
        j->imap.submitted++;
        p->npending++;
        added = true;
        if (!j->imap.src && j->imap.submitted == j->n)
            pool__end_stream(p, j, 0);
    }
    if (added && j->pool)
        pool__wake(j->pool);
}

/* Sizes j's window (the option, else 8 chunks per worker and at least
 * 1024; never more than an array's items) and allocates its parts. */
static bool alloc_window(mproc_pool *p, pool__job *j,
                         const mproc_call_opts *opts)
{
    size_t w = opts && opts->window ? opts->window : 0;
    if (!w) {
        size_t c = j->chunk ? j->chunk : 64;
        w = 8 * (size_t)p->nproc * c;
        if (w < 1024)
            w = 1024;
    }
    if (!j->imap.src && j->n && w > j->n)
        w = j->n;
    j->imap.window = w;
    j->imap.occupied = calloc(w, 1);
    j->imap.ring = malloc(w * sizeof *j->imap.ring);
    if (j->imap.src)
        j->imap.win = calloc(w, sizeof *j->imap.win);
    return j->imap.occupied && j->imap.ring && (!j->imap.src || j->imap.win) &&
           pool__alloc_slots(j, w);
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
    pool__lock(p->core);
    pool__job *j;
    int r = pool__job_start(p, J_IMAP, (const void *)fn, FK_BYTES, &j);
    if (r < 0) {
        pool__unlock(p->core);
        return r;
    }
    j->imap.items = items;
    j->n = src ? 0 : n;
    j->imap.src = src;
    j->imap.ctx = ctx;
    j->imap.unordered = unordered != 0;
    j->chunk = opts ? opts->chunksize : 0;
    if (!alloc_window(p, j, opts)) {
        pool__job_unref_locked(j);
        pool__unlock(p->core);
        return -ENOMEM;
    }
    pool__apply_opts(j, opts);
    pool__live_add(p, j);
    p->open_streams++;
    if (!src && n == 0)
        pool__end_stream(p, j, 0);
    refill(j);
    *out = &j->imap.it;
    pool__unlock(p->core);
    return 0;
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

static void release_held(pool__job *j)
{
    if (j->imap.held >= 0) {
        pool__slot_release(&j->slots[j->imap.held]);
        j->imap.occupied[j->imap.held] = 0;
        j->imap.held = -1;
    }
}

/* Whether a result is there for the consumer: the next in order, or
 * (unordered) any. */
static bool has_result(const pool__job *j)
{
    if (j->imap.unordered)
        return j->imap.rcount > 0;
    return j->imap.next_out < j->imap.submitted &&
           j->slots[j->imap.next_out % j->imap.window].status != RSLOT_PENDING;
}

/* Takes the index of the result has_result found. */
static size_t take_next(pool__job *j)
{
    if (!j->imap.unordered)
        return j->imap.next_out++;
    size_t k = j->imap.ring[j->imap.rhead];
    j->imap.rhead = (j->imap.rhead + 1) % j->imap.window;
    j->imap.rcount--;
    return k;
}

/* Hands task k's result to the consumer, who holds its window place
 * until the next call. Returns 1, or the task's failure code (last_err
 * says why). */
static int hand_out(pool__job *j, size_t k, const void **data, size_t *len,
                    size_t *index)
{
    size_t s = k % j->imap.window;
    pool__rslot *sl = &j->slots[s];
    j->imap.taken++;
    j->imap.held = (long)s;
    if (index)
        *index = k;
    if (sl->status == 0) {
        pool__slot_bytes(sl, data, len);
        return 1;
    }
    if (sl->ptr)
        j->imap.last_err = ((pool__errrec *)sl->ptr)->e;
    else
        pool__error_text(&j->imap.last_err, sl->status, 0, "");
    j->imap.last_err.index = k;
    return sl->status;
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
    pool__job *j = it->j;
    mproc__deadline d = mproc__deadline_from(timeout);
    pool__lock(j->core);
    release_held(j);
    int r;
    for (;;) {
        refill(j);
        if (has_result(j)) {
            r = hand_out(j, take_next(j), data, len, index);
            break;
        }
        if (j->imap.input_end && j->imap.taken == j->imap.submitted) {
            r = j->imap.stream_err;
            if (r < 0)
                pool__error_text(&j->imap.last_err, r, 0, "input stopped: ");
            break;
        }
        if (!pool__wait_until(j->core, &d)) {
            r = -ETIMEDOUT;
            /* One last look: a result may have come with the timeout. */
            if (has_result(j))
                continue;
            break;
        }
    }
    pool__unlock(j->core);
    return r;
}

const mproc_task_error *mproc_imap_error(const mproc_imap *it)
{
    return it ? &it->j->imap.last_err : NULL;
}

void mproc_imap_free(mproc_imap *it)
{
    if (!it)
        return;
    pool__job *j = it->j;
    pool__lock(j->core);
    j->cancelled = true;
    release_held(j);
    mproc_pool *p = j->pool;
    if (p) {
        /* Drop its tasks that were not sent yet. */
        pool__deque *q = &p->pending;
        size_t keep = 0;
        for (size_t i = 0; i < q->n; i++) {
            pool__seg s = *pool__dq_at(q, i);
            if (s.j == j) {
                p->npending -= s.count;
                continue;
            }
            *pool__dq_at(q, keep++) = s;
        }
        q->n = keep;
        if (!j->imap.input_end)
            pool__end_stream(p, j, 0);
        else
            pool__check_finished(p, j);
        pool__wake(p);
    }
    pool__unlock(j->core);
    pool__job_unref(j);
}
