/*
 * pool/future.c - calls that return a future or a result array:
 * apply and apply_async (one task, its input copied into the job, queued
 * through the inbox without waiting for the pool's thread), the future
 * accessors, and map/starmap with the mproc_results they produce.
 */
#include "pool/engine.h"

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

/* Queues j in the pool's inbox (under in_mu alone: never waiting for the
 * pool's thread). Returns 0, or MPROC_EPOOL once the pool is closing. */
static int inbox_push(mproc_pool *p, pool__job *j)
{
    pthread_mutex_lock(&p->in_mu);
    if (p->in_closed) {
        pthread_mutex_unlock(&p->in_mu);
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
    pool__job *j;
    int r = pool__job_start(p, J_APPLY, fn, kind, &j);
    if (r < 0)
        return r;
    j->n = 1;
    pool__alloc_slots(j, 1); /* the job's own slot: cannot fail */
    if (!own_input(j, in, len, args)) {
        pool__job_discard(j);
        return -ENOMEM;
    }
    pool__apply_opts(j, opts);
    j->refs = out ? 2 : 1; /* the caller's, and the pool's until done */
    r = inbox_push(p, j);
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
        if (!f->first_err)
            pool__copy_error(f, &f->last_err);
        e = f->first_err ? &f->first_err->e : &f->last_err;
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
    if (!pool__alloc_slots(j, n))
        goto out_job;
    j->chunk =
        opts && opts->chunksize ? opts->chunksize : pool__auto_chunk(p, n);
    pool__apply_opts(j, opts);
    r = pool__submit(p, j);
    if (r < 0)
        goto out_job;
    *out = j;
    pool__unlock(p->core);
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
    const pool__rslot *s = &r->j->slots[i];
    if (s->status != 0)
        return s->status == RSLOT_PENDING ? MPROC_EPOOL : s->status;
    pool__slot_bytes(s, data, len);
    return 0;
}

const mproc_task_error *mproc_results_error(const mproc_results *r, size_t i)
{
    if (!r || i >= r->j->n)
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
