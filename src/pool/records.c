/*
 * pool/records.c - the records map and the shared memory it runs over.
 * Buffers from mproc_pool_shm_alloc are shared with the workers as they
 * are; other arrays are copied through the pool's two scratch buffers
 * (one records call at a time uses them). Workers map a buffer once and
 * keep it (named by id).
 */
#include "pool/engine.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int shm_create(mproc_pool *p, size_t size, pool__shmbuf *out)
{
    long pg = sysconf(_SC_PAGESIZE);
    size = (size + (size_t)pg - 1) & ~((size_t)pg - 1);
    if (size == 0)
        size = (size_t)pg;
    int fd = mproc__memfd_new("mproc-pool-shm", size, false);
    if (fd < 0)
        return fd;
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        int e = -errno;
        close(fd);
        return e;
    }
    out->id = ++p->next_id;
    out->p = m;
    out->len = size;
    out->fd = fd;
    return 0;
}

static pool__shmbuf *shm_find(mproc_pool *p, const void *ptr, size_t len)
{
    const unsigned char *c = ptr;
    for (size_t i = 0; i < p->nshm; i++) {
        pool__shmbuf *s = &p->shm[i];
        if (c >= s->p && c <= s->p + s->len &&
            len <= s->len - (size_t)(c - s->p))
            return s;
    }
    return NULL;
}

void *mproc_pool_shm_alloc(mproc_pool *p, size_t size)
{
    if (!p || size == 0)
        return NULL;
    pool__lock(p->core);
    void *r = NULL;
    if (MPROC__GROW(p->shm, p->capshm, p->nshm + 1) < 0)
        goto out;
    pool__shmbuf s = {0};
    if (shm_create(p, size, &s) < 0)
        goto out;
    p->shm[p->nshm++] = s;
    r = s.p;
out:
    pool__unlock(p->core);
    return r;
}

void mproc_pool_shm_free(mproc_pool *p, void *ptr)
{
    if (!p || !ptr)
        return;
    pool__lock(p->core);
    for (size_t i = 0; i < p->nshm; i++) {
        if (p->shm[i].p != ptr)
            continue;
        munmap(p->shm[i].p, p->shm[i].len);
        close(p->shm[i].fd);
        p->shm[i] = p->shm[--p->nshm];
        break;
    }
    pool__unlock(p->core);
}

/* Makes shared buffer s (a scratch buffer, the arena) at least size
 * bytes (lock held): a bigger one, with a new id, replaces it. */
static int scratch_grow(mproc_pool *p, pool__shmbuf *s, size_t size)
{
    if (s->p && s->len >= size)
        return 0;
    pool__shmbuf n;
    int r = shm_create(p, size < s->len * 2 ? s->len * 2 : size, &n);
    if (r < 0)
        return r;
    if (s->p) {
        munmap(s->p, s->len);
        close(s->fd);
    }
    *s = n;
    return 0;
}

int pool__arena_take(mproc_pool *p, size_t size)
{
    if (p->arena_busy)
        return -EBUSY;
    int r = scratch_grow(p, &p->arena, size);
    if (r == 0)
        p->arena_busy = true;
    return r;
}

void pool__arena_give(mproc_pool *p, size_t used)
{
    p->arena_busy = false;
    /* A big map's pages go back to the system, but for what a map of
     * ordinary size needs next time. */
    if (used > POOL__ARENA_KEEP && p->arena.p &&
        atomic_load(&p->arena_reserved) > POOL__ARENA_KEEP) {
        atomic_store(&p->arena_reserved, POOL__ARENA_KEEP);
        (void)fallocate(p->arena.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                        (off_t)POOL__ARENA_KEEP,
                        (off_t)(p->arena.len - POOL__ARENA_KEEP));
    }
}

int pool__shm_fd(mproc_pool *p, uint64_t id)
{
    if (p->arena.id == id && p->arena.p)
        return p->arena.fd;
    for (size_t i = 0; i < 2; i++)
        if (p->scratch[i].id == id && p->scratch[i].p)
            return p->scratch[i].fd;
    for (size_t i = 0; i < p->nshm; i++)
        if (p->shm[i].id == id)
            return p->shm[i].fd;
    return -1;
}

/* The scratch buffers are one call's at a time: waits until they are
 * free, takes them, and makes them hold in_len and out_len bytes (0: that
 * one is not needed). Returns 0, or -errno with them free again. */
static int take_scratch(mproc_pool *p, size_t in_len, size_t out_len)
{
    mproc__deadline forever = mproc__deadline_from(-1);
    while (p->scratch_busy)
        pool__wait_until(p->core, &forever);
    p->scratch_busy = true;
    int r = 0;
    if ((in_len && (r = scratch_grow(p, &p->scratch[0], in_len)) < 0) ||
        (out_len && (r = scratch_grow(p, &p->scratch[1], out_len)) < 0)) {
        p->scratch_busy = false;
        pool__broadcast(p->core);
    }
    return r;
}

static void give_scratch(mproc_pool *p)
{
    p->scratch_busy = false;
    pool__broadcast(p->core);
}

/* Names j's arrays for the workers: the shared buffer each lies in (si,
 * so), or else the scratch buffer its bytes go through. */
static void place_arrays(mproc_pool *p, pool__job *j, const void *in,
                         const pool__shmbuf *si, void *out,
                         const pool__shmbuf *so)
{
    if (j->range.in_size) {
        const pool__shmbuf *b = si ? si : &p->scratch[0];
        j->range.in_id = b->id;
        j->range.in_off = si ? (size_t)((const unsigned char *)in - si->p) : 0;
    }
    const pool__shmbuf *ob = so ? so : &p->scratch[1];
    j->range.out_id = ob->id;
    j->range.out_off = so ? (size_t)((unsigned char *)out - so->p) : 0;
}

int mproc_pool_map_records(mproc_pool *p, mproc_records_fn fn, const void *in,
                           size_t in_size, void *out, size_t out_size, size_t n,
                           const mproc_call_opts *opts, mproc_task_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!p || !fn || out_size == 0 || (n && !out) || (!in) != (in_size == 0))
        return -EINVAL;
    if ((in_size && n > SIZE_MAX / in_size) || n > SIZE_MAX / out_size)
        return -EINVAL;
    size_t in_len = n * in_size, out_len = n * out_size;
    pool__lock(p->core);
    pool__job *j = NULL;
    int r = n == 0
                ? pool__accepts(p)
                : pool__job_start(p, J_RANGE, (const void *)fn, FK_RECORDS, &j);
    if (r < 0 || n == 0) {
        pool__unlock(p->core);
        return r;
    }
    pool__shmbuf *si = in_size ? shm_find(p, in, in_len) : NULL;
    pool__shmbuf *so = shm_find(p, out, out_len);
    bool use_scratch = (in_size && !si) || !so;
    if (use_scratch && (r = take_scratch(p, in_size && !si ? in_len : 0,
                                         so ? 0 : out_len)) < 0) {
        pool__job_unref_locked(j);
        pool__unlock(p->core);
        return r;
    }
    j->n = n;
    j->range.in_size = in_size;
    j->range.out_size = out_size;
    place_arrays(p, j, in, si, out, so);
    j->chunk =
        opts && opts->chunksize ? opts->chunksize : pool__auto_chunk(p, n);
    pool__apply_opts(j, opts);
    unsigned char *scr_in = p->scratch[0].p, *scr_out = p->scratch[1].p;
    if (in_size && !si) {
        pool__unlock(p->core);
        memcpy(scr_in, in, in_len);
        pool__lock(p->core);
    }
    r = pool__accepts(p);
    if (r == 0)
        r = pool__submit(p, j);
    pool__unlock(p->core);
    if (r == 0) {
        mproc_future_wait(j, -1);
        r = j->status;
        if (!so)
            memcpy(out, scr_out, out_len);
        pool__lock(p->core);
        if (r != 0)
            pool__copy_error(j, err);
    } else {
        pool__lock(p->core);
    }
    pool__job_unref_locked(j);
    if (use_scratch)
        give_scratch(p);
    pool__unlock(p->core);
    return r;
}
