/*
 * pool/future.c - calls that return a future or a result array:
 * apply and apply_async (one task, its input copied into the job, queued
 * through the inbox without waiting for the pool's thread), the future
 * accessors, and map/starmap with the mproc_results they produce.
 */
#include "pool/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_ready(const pool__job *j)
{
    return j->ready || j == pool__cb_job;
}

/* The job's own copy of its task's input. */
static bool own_input(pool__job *j, const void *in, size_t len,
                      const mproc_args *args)
{
    if (j->fkind == FK_ARGS) {
        j->apply.args = mproc__args_copy(args);
        return j->apply.args != NULL;
    }
    if (len) {
        j->apply.own =
            len <= sizeof j->apply.small ? j->apply.small : malloc(len);
        if (!j->apply.own)
            return false;
        memcpy(j->apply.own, in, len);
        j->apply.ownlen = len;
    }
    return true;
}

/* Names j's function fn and queues j in the pool's inbox (under in_mu
 * alone: never waiting for the pool's thread). Returns 0, MPROC_EPOOL once
 * the pool is closing, or why fn has no id. */
static int inbox_push(mproc_pool *p, pool__job *j, const void *fn)
{
    pthread_mutex_lock(&p->in_mu);
    int r = p->in_closed ? MPROC_EPOOL
                         : pool__fn_id_locked(p, fn, j->fkind, &j->fnid);
    if (r < 0) {
        pthread_mutex_unlock(&p->in_mu);
        return r;
    }
    j->inext = NULL;
    if (p->in_tail)
        p->in_tail->inext = j;
    else
        p->in_head = j;
    p->in_tail = j;
    atomic_store(&p->in_any, true);
    pthread_mutex_unlock(&p->in_mu);
    return 0;
}

static int apply_common(mproc_pool *p, const void *fn, int kind, const void *in,
                        size_t len, const mproc_args *args,
                        const mproc_call_opts *opts, mproc_future **out)
{
    if (out)
        *out = NULL;
    if (!p || !fn || (!in && len))
        return -EINVAL;
    int r = pool__accepts(p);
    if (r < 0)
        return r;
    pool__job *j = pool__job_new(p, J_APPLY, kind);
    if (!j)
        return -ENOMEM;
    j->n = 1;
    pool__alloc_slots(j, 1); /* the job's own slot: cannot fail */
    if (!own_input(j, in, len, args)) {
        pool__job_discard(j);
        return -ENOMEM;
    }
    pool__apply_opts(j, opts);
    j->refs = out ? 2 : 1; /* the caller's, and the pool's until done */
    r = inbox_push(p, j, fn);
    if (r < 0) {
        pool__job_discard(j);
        return r;
    }
    pool__wake(p);
    if (out)
        *out = j;
    return 0;
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
            pool__error_text(err, r, 0, "");
            if (p) {
                pool__lock(p->core);
                if (p->broken && r == p->broken)
                    snprintf(err->message, sizeof err->message, "%s",
                             p->broken_msg);
                pool__unlock(p->core);
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
        pool__lock(f->core);
        pool__copy_error(f, err);
        pool__unlock(f->core);
    }
    mproc_future_free(f);
    return r;
}

int mproc_future_wait(mproc_future *f, double timeout)
{
    if (!f)
        return -EINVAL;
    mproc__deadline d = mproc__deadline_from(timeout);
    pool__lock(f->core);
    while (!is_ready(f))
        if (!pool__wait_until(f->core, &d))
            break;
    int r = is_ready(f) ? 0 : -ETIMEDOUT;
    pool__unlock(f->core);
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
    if (r == 0 && f->type == J_APPLY)
        pool__slot_bytes(&f->slots[0], data, len);
    return r;
}

int mproc_future_ready(mproc_future *f)
{
    if (!f)
        return 0;
    pool__lock(f->core);
    int r = is_ready(f);
    pool__unlock(f->core);
    return r;
}

int mproc_future_successful(mproc_future *f)
{
    if (!f)
        return -EINVAL;
    pool__lock(f->core);
    int r = is_ready(f) ? f->status == 0 : -EAGAIN;
    pool__unlock(f->core);
    return r;
}

const mproc_task_error *mproc_future_error(mproc_future *f)
{
    if (!f)
        return NULL;
    pool__lock(f->core);
    const mproc_task_error *e = NULL;
    if (is_ready(f) && f->status != 0) {
        if (!f->first_err && !f->err_copy &&
            (f->err_copy = malloc(sizeof *f->err_copy)) != NULL)
            pool__copy_error(f, f->err_copy);
        e = f->first_err ? &f->first_err->e : f->err_copy;
    }
    pool__unlock(f->core);
    return e;
}

mproc_results *mproc_future_results(mproc_future *f)
{
    if (!f || f->type != J_MAP || !mproc_future_ready(f))
        return NULL;
    return &f->map.res;
}

void mproc_future_free(mproc_future *f)
{
    if (f)
        pool__job_unref(f);
}

/* Items packed before the pool's thread hears of more. */
#define PACK_PIECE 16384

/* Makes the pages of bytes off..off + len of p's arena exist: a page
 * that cannot be had is an error here, not a SIGBUS when it is first
 * written. The arena is filled from its start: what an earlier map
 * reserved (p->arena_reserved bytes) is there already. */
static bool arena_reserve(mproc_pool *p, size_t off, size_t len)
{
    size_t have = atomic_load(&p->arena_reserved);
    if (off + len <= have)
        return true;
    if (off < have) {
        len -= have - off;
        off = have;
    }
    int r;
    while ((r = fallocate(p->arena.fd, 0, (off_t)off, (off_t)len)) < 0 &&
           errno == EINTR)
        ;
    if (r < 0 && errno != EOPNOTSUPP)
        return false;
    if (off == have)
        atomic_store(&p->arena_reserved, off + len);
    return true;
}

/* Packs items from..to of n into p's arena (at a, cap bytes;
 * pool_impl.h): the end offsets, then the bytes, each item padded to 8;
 * *atp is where item from begins (updated). Returns where it stopped: to,
 * or the first item that does not fit (those from it on go in messages). */
static size_t arena_pack(mproc_pool *p, unsigned char *a, size_t cap,
                         const mproc_iov *v, size_t n, size_t from, size_t to,
                         uint64_t *atp)
{
    unsigned char *d = a + 8 * n;
    size_t room = cap - 8 * n;
    uint64_t at = *atp, need = 0;
    /* the piece's bytes first, and as many as fit (its items are then in
     * the cache for packing) */
    for (size_t i = from; i < to; i++) {
        size_t len = v[i].len;
        if (len > room - at - need || pool__pad8(len) > room - at - need) {
            to = i;
            break;
        }
        need += pool__pad8(len);
    }
    if (need && !arena_reserve(p, 8 * n + at, need))
        return from;
    size_t i;
    for (i = from; i < to; i++) {
        size_t len = v[i].len;
        uint64_t x = 0;
        if (len == 4) { /* the common small item: one padded word */
            uint32_t u;
            memcpy(&u, v[i].data, 4);
            x = u;
            memcpy(d + at, &x, 8);
        } else if (len > 0) {
            memcpy(d + at + pool__pad8(len) - 8, &x, 8);
            memcpy(d + at, v[i].data, len);
        }
        uint64_t end = at + len;
        memcpy(a + 8 * i, &end, 8);
        at += pool__pad8(len);
    }
    *atp = at;
    return i;
}

/* The pool's thread is to look again (at packed, pack_end), as after a
 * new apply_async. */
static void tell_pool(mproc_pool *p)
{
    atomic_store(&p->in_any, true);
    pool__wake(p);
}

/* Packs the rest of j's items (from its first piece on), telling the
 * pool's thread after each piece; the lock is not held. */
static void arena_fill(mproc_pool *p, pool__job *j, unsigned char *a,
                       size_t cap, const mproc_iov *items, size_t n,
                       uint64_t at)
{
    size_t from = atomic_load(&j->map.packed);
    while (from < n) {
        size_t to = n - from > PACK_PIECE ? from + PACK_PIECE : n;
        size_t got = arena_pack(p, a, cap, items, n, from, to, &at);
        atomic_store_explicit(&j->map.packed, got, memory_order_release);
        if (got < to) {
            from = got;
            break;
        }
        tell_pool(p);
        from = to;
    }
    atomic_store_explicit(&j->map.arena_used, 8 * n + at, memory_order_relaxed);
    atomic_store_explicit(&j->map.pack_end, from, memory_order_release);
    tell_pool(p);
}

/* A map over bytes: its inputs go into the arena when it is free (the
 * caller's thread packs them, the lock dropped): the first piece here,
 * the rest by arena_fill once the job is queued (*atp: where it goes on).
 * Lock held. Returns 0 (in the arena or not) or why the pool takes no
 * more calls. */
static int map_pack(mproc_pool *p, pool__job *j, const mproc_iov *items,
                    size_t n, uint64_t *atp)
{
    if (n == 0 || !items || n > POOL__ARENA_MAX / 16 ||
        pool__arena_take(p, POOL__ARENA_MAX) < 0)
        return 0;
    unsigned char *a = p->arena.p;
    size_t cap = p->arena.len;
    /* The first piece now; the rest as the workers start on it. */
    uint64_t at = 0;
    size_t first = n > PACK_PIECE ? PACK_PIECE : n;
    pool__unlock(p->core);
    size_t got = arena_reserve(p, 0, 8 * n)
                     ? arena_pack(p, a, cap, items, n, 0, first, &at)
                     : 0;
    pool__lock(p->core);
    int r = pool__accepts(p);
    if (r < 0 || got == 0) { /* (not even the first item fits) */
        pool__arena_give(p, 0);
        return r;
    }
    j->map.arena_id = p->arena.id;
    atomic_store(&j->map.packed, got);
    /* Done packing when all went in, or the arena is full already. */
    bool done = got == n || got < first;
    atomic_store(&j->map.pack_end, done ? got : SIZE_MAX);
    if (done)
        atomic_store(&j->map.arena_used, 8 * n + at);
    *atp = at;
    return 0;
}

static int map_common(mproc_pool *p, const void *fn, int kind,
                      const mproc_iov *items, mproc_args *const *argv, size_t n,
                      const mproc_call_opts *opts, pool__job **out)
{
    *out = NULL;
    if (!p || !fn || (n && !items && !argv))
        return -EINVAL;
    pool__lock(p->core);
    pool__job *j;
    int r = pool__job_start(p, J_MAP, fn, kind, &j);
    if (r < 0)
        goto out_unlock;
    j->n = n;
    j->map.items = items;
    j->map.argv = argv;
    r = -ENOMEM;
    /* Over bytes, slots come only when a result does not come in a
     * chunk (results.c). */
    if (kind != FK_BYTES && !pool__alloc_slots(j, n))
        goto out_job;
    j->chunk =
        opts && opts->chunksize ? opts->chunksize : pool__auto_chunk(p, n);
    pool__apply_opts(j, opts);
    uint64_t at = 0;
    if (kind == FK_BYTES && (r = map_pack(p, j, items, n, &at)) < 0)
        goto out_job;
    r = pool__submit(p, j);
    if (r < 0) {
        if (j->map.arena_id)
            pool__arena_give(p, 0);
        goto out_job;
    }
    *out = j;
    bool fill =
        items && j->map.arena_id && atomic_load(&j->map.pack_end) == SIZE_MAX;
    unsigned char *a = p->arena.p;
    size_t cap = p->arena.len;
    pool__unlock(p->core);
    if (fill)
        arena_fill(p, j, a, cap, items, n, at);
    return 0;
out_job:
    pool__job_unref_locked(j);
out_unlock:
    pool__unlock(p->core);
    return r;
}

static int map_wait(pool__job *j, mproc_results **out)
{
    mproc_future_wait(j, -1);
    int r = j->status;
    if (out)
        *out = &j->map.res;
    else
        pool__job_unref(j);
    return r;
}

int mproc_pool_map(mproc_pool *p, mproc_task_fn fn, const mproc_iov *items,
                   size_t n, const mproc_call_opts *opts, mproc_results **out)
{
    pool__job *j;
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
    pool__job *j;
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
    const pool__job *j = r->j;
    const pool__rslot *s = j->slots ? &j->slots[i] : NULL;
    if (!s || s->status == RSLOT_PENDING) {
        const pool__chunk *c = pool__chunk_find(j, i);
        if (!c)
            return MPROC_EPOOL;
        /* The table was checked when the chunk came (results.c). */
        const unsigned char *base = c->b->p;
        uint32_t end, begin = 0;
        size_t k = i - c->start;
        memcpy(&end, base + c->tab + 4 * k, 4);
        if (k > 0) {
            memcpy(&begin, base + c->tab + 4 * (k - 1), 4);
            begin = (begin + 7) & ~7u;
        }
        if (data)
            *data = base + c->data + begin;
        if (len)
            *len = end - begin;
        return 0;
    }
    if (s->status != 0)
        return s->status;
    pool__slot_bytes(s, data, len);
    return 0;
}

const mproc_task_error *mproc_results_error(const mproc_results *r, size_t i)
{
    if (!r || i >= r->j->n || !r->j->slots)
        return NULL;
    const pool__rslot *s = &r->j->slots[i];
    if (s->status == 0 || s->status == RSLOT_PENDING || !s->ptr)
        return NULL;
    return &((const pool__errrec *)s->ptr)->e;
}

size_t mproc_results_failed(const mproc_results *r)
{
    return r ? r->j->nfailed : 0;
}

void mproc_results_free(mproc_results *r)
{
    if (r)
        pool__job_unref(r->j);
}
