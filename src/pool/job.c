/*
 * pool/job.c - the job model every kind of call shares: creating jobs and
 * counting their references, their result slots and the buffers those
 * point into, the pool's list of live jobs, submitting a job's tasks and
 * the moment a job is finished.
 */
#include "pool/engine.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void pool__msgbuf_unref(pool__msgbuf *b)
{
    if (!b || --b->refs > 0)
        return;
    if (b->mapped) {
        munmap(b->p, b->len);
    } else if (b->core && b->cap == POOL__BLOCK &&
               b->core->nblocks < POOL__BLOCKS_KEPT) {
        b->next = b->core->blocks;
        b->core->blocks = b;
        b->core->nblocks++;
        return;
    }
    free(b);
}

void pool__errrec_unref(pool__errrec *e)
{
    if (e && --e->refs == 0)
        free(e);
}

void pool__slot_release(pool__rslot *s)
{
    if (s->status == 0)
        pool__msgbuf_unref(s->ptr);
    else if (s->status != RSLOT_PENDING)
        pool__errrec_unref(s->ptr);
    s->ptr = NULL;
    s->status = RSLOT_PENDING;
}

void pool__slot_bytes(const pool__rslot *s, const void **data, size_t *len)
{
    const pool__msgbuf *b = s->ptr;
    if (data)
        *data = b ? (const void *)(b->p + s->off) : (const void *)"";
    if (len)
        *len = s->len;
}

/* The size of a job of that type: an apply's ends with its own member of
 * the union (the smallest, and there may be many of them). */
static size_t job_size(int type)
{
    return type == J_APPLY
               ? offsetof(pool__job, apply) + sizeof(((pool__job *)NULL)->apply)
               : sizeof(pool__job);
}

/* Keeps an ended apply job's memory for the next apply (any thread, any
 * lock or none: pushing alone needs no more than a compare-and-swap). */
static void apply_keep(pool__core *c, pool__job *j)
{
    if (atomic_fetch_add(&c->kept, 1) >= POOL__JOBS_KEPT) {
        atomic_fetch_sub(&c->kept, 1);
        free(j);
        return;
    }
    pool__job *top = atomic_load_explicit(&c->afree, memory_order_relaxed);
    do
        j->inext = top;
    while (!atomic_compare_exchange_weak_explicit(
        &c->afree, &top, j, memory_order_release, memory_order_relaxed));
}

/* An apply job's memory, zeroed: a kept one, else a new one. */
static pool__job *apply_take(mproc_pool *p)
{
    pthread_mutex_lock(&p->in_mu);
    pool__job *j = p->acache;
    if (!j) /* takes the whole stack: no ABA, as nothing else pops it */
        j = atomic_exchange_explicit(&p->core->afree, NULL,
                                     memory_order_acquire);
    if (j) {
        p->acache = j->inext;
        atomic_fetch_sub(&p->core->kept, 1);
    }
    pthread_mutex_unlock(&p->in_mu);
    if (!j)
        return calloc(1, job_size(J_APPLY));
    memset(j, 0, job_size(J_APPLY));
    return j;
}

void pool__jobs_kept_free(mproc_pool *p)
{
    if (!p->core)
        return; /* a pool that failed to start: none kept */
    pool__job *lists[2] = {p->acache, atomic_exchange(&p->core->afree, NULL)};
    p->acache = NULL;
    for (int i = 0; i < 2; i++)
        while (lists[i]) {
            pool__job *j = lists[i];
            lists[i] = j->inext;
            atomic_fetch_sub(&p->core->kept, 1);
            free(j);
        }
}

static void job_free(pool__job *j)
{
    for (size_t i = 0; i < j->nslots; i++)
        pool__slot_release(&j->slots[i]);
    if (j->slots != &j->slot1)
        free(j->slots);
    if (j->type == J_MAP) {
        for (size_t i = 0; i < j->map.nchunks; i++)
            pool__msgbuf_unref(j->map.chunks[i].b);
        free(j->map.chunks);
    }
    if (j->type == J_IMAP) {
        if (j->imap.win) {
            for (size_t i = 0; i < j->imap.window; i++)
                free((void *)j->imap.win[i].data);
            free(j->imap.win);
        }
        free(j->imap.ring);
        free(j->imap.occupied);
    } else if (j->type == J_APPLY) {
        if (j->apply.own != j->apply.small)
            free(j->apply.own);
        mproc_args_free(j->apply.args);
    }
    pool__errrec_unref(j->first_err);
    free(j->err_copy);
    if (j->type == J_APPLY)
        apply_keep(j->core, j);
    else
        free(j);
}

/* Drops a reference with the core locked (core stays locked). */
void pool__job_unref_locked(pool__job *j)
{
    if (--j->refs == 0) {
        pool__core *c = j->core;
        job_free(j);
        atomic_fetch_sub(&c->refs, 1); /* never the last: see job_unref */
    }
}

/* Drops a reference from outside (takes and releases the lock). */
void pool__job_unref(pool__job *j)
{
    pool__core *c = j->core;
    pool__lock(c);
    atomic_fetch_add(&c->refs, 1); /* keep the core while we hold its lock */
    pool__job_unref_locked(j);
    pool__core_unref_unlock(c);
}

/* Needs no lock: the job is private until queued. */
pool__job *pool__job_new(mproc_pool *p, int type, int fkind)
{
    pool__job *j = type == J_APPLY ? apply_take(p) : calloc(1, job_size(type));
    if (!j)
        return NULL;
    j->core = p->core;
    j->pool = p;
    j->refs = 1;
    j->type = type;
    j->fkind = fkind;
    atomic_fetch_add(&j->core->refs, 1);
    if (type == J_MAP) {
        j->map.res.j = j;
    } else if (type == J_IMAP) {
        j->imap.held = -1;
        j->imap.it.j = j;
    }
    j->timeout = p->opts.task_timeout;
    return j;
}

/* Frees a job that never left its submitter. */
void pool__job_discard(pool__job *j)
{
    pool__core *c = j->core;
    job_free(j);
    atomic_fetch_sub(&c->refs, 1); /* the pool holds one: never the last */
}

/* A new job of the given type calling fn, when the pool takes calls.
 * Needs no lock. Returns 0 or -errno. */
int pool__job_start(mproc_pool *p, int type, const void *fn, int kind,
                    pool__job **out)
{
    int r = pool__accepts(p);
    if (r < 0)
        return r;
    pool__job *j = pool__job_new(p, type, kind);
    if (!j)
        return -ENOMEM;
    r = pool__fn_id(p, fn, kind, &j->fnid);
    if (r < 0) {
        pool__job_discard(j);
        return r;
    }
    *out = j;
    return 0;
}

void pool__apply_opts(pool__job *j, const mproc_call_opts *o)
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
}

/* Allocates result slots, all pending (one task's is in the job). */
bool pool__alloc_slots(pool__job *j, size_t n)
{
    if (n == 0)
        return true;
    j->slots = n == 1 ? &j->slot1 : malloc(n * sizeof *j->slots);
    if (!j->slots)
        return false;
    j->nslots = n;
    for (size_t i = 0; i < n; i++) {
        j->slots[i].ptr = NULL;
        j->slots[i].status = RSLOT_PENDING;
    }
    return true;
}

static int chunk_cmp(const void *a, const void *b)
{
    const pool__chunk *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

const pool__chunk *pool__chunk_find(const pool__job *j, size_t idx)
{
    size_t lo = 0, hi = j->map.nchunks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const pool__chunk *c = &j->map.chunks[mid];
        if (idx < c->start)
            hi = mid;
        else if (idx >= c->start + c->count)
            lo = mid + 1;
        else
            return c;
    }
    return NULL;
}

void pool__live_link(mproc_pool *p, pool__job *j)
{
    j->live = true;
    p->nbars += j->bar;
    p->ntimed += j->timeout > 0;
    j->next = p->jobs;
    j->prev = NULL;
    if (p->jobs)
        p->jobs->prev = j;
    p->jobs = j;
}

/* Links j into the live list, taking the pool's reference. */
void pool__live_add(mproc_pool *p, pool__job *j)
{
    j->refs++;
    pool__live_link(p, j);
}

static void live_remove(mproc_pool *p, pool__job *j)
{
    if (!j->live)
        return;
    p->nbars -= j->bar;
    p->ntimed -= j->timeout > 0;
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
void pool__check_finished(mproc_pool *p, pool__job *j)
{
    if (j->finished)
        return;
    if (j->type == J_IMAP) {
        if (!j->imap.input_end || j->inflight > 0 ||
            (!j->cancelled && j->done < j->imap.submitted))
            return;
    } else if (j->done < j->n) {
        return;
    }
    j->finished = true;
    live_remove(p, j);
    if (j->type == J_MAP && j->map.arena_id) {
        /* every input was read (or, the pool broken, never will be) */
        pool__arena_give(p, atomic_load(&j->map.arena_used));
        j->map.arena_id = 0;
    }
    /* Chunks came in as workers finished them: in task order for lookups
     * (results are read only once the job is ready). */
    if (j->type == J_MAP && j->map.nchunks > 1)
        qsort(j->map.chunks, j->map.nchunks, sizeof *j->map.chunks, chunk_cmp);
    j->pool = NULL;
    /* The final report first: it holds a reference of its own, and the
     * pool's may be dropped just below. */
    if (j->bar || j->progress)
        pool__mark_dirty(p, j);
    if (!pool__push_deferred(p, j, D_DONE, j->done, j->n)) {
        /* Out of memory: no callbacks; still make it ready. */
        j->ready = true;
        pool__broadcast(j->core);
        pool__job_unref_locked(j);
    }
}

/* Whether new calls are taken; needs no lock (state and broken are
 * stored atomically). */
int pool__accepts(mproc_pool *p)
{
    if (pool__my_pid() != p->owner)
        return MPROC_EPOOL;
    int b = __atomic_load_n(&p->broken, __ATOMIC_ACQUIRE);
    if (b)
        return b;
    if (__atomic_load_n(&p->state, __ATOMIC_ACQUIRE) != P_RUN)
        return MPROC_EPOOL;
    return 0;
}

size_t pool__auto_chunk(mproc_pool *p, size_t n)
{
    size_t d = 4 * (size_t)p->nproc;
    size_t c = n / d;
    if (n % d)
        c++;
    return c;
}

/* Queues all n tasks of a non-imap job. Lock held. */
int pool__submit(mproc_pool *p, pool__job *j)
{
    pool__live_add(p, j);
    if (j->n > 0) {
        if (!pool__dq_push_back(&p->pending, (pool__seg){j, 0, j->n, 0})) {
            live_remove(p, j);
            j->refs--;
            return -ENOMEM;
        }
        p->npending += j->n;
    } else {
        pool__check_finished(p, j);
    }
    pool__wake(p);
    return 0;
}

void pool__error_text(mproc_task_error *e, int code, size_t index,
                      const char *prefix)
{
    memset(e, 0, sizeof *e);
    e->code = code;
    e->index = index;
    snprintf(e->message, sizeof e->message, "%s%s", prefix,
             mproc_strerror(code));
}

void pool__copy_error(const pool__job *j, mproc_task_error *err)
{
    if (!err)
        return;
    if (j->first_err)
        *err = j->first_err->e;
    else
        pool__error_text(err, j->status, j->first_fail, "");
}
