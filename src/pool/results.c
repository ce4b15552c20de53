/*
 * pool/results.c - what comes back from the workers. A worker writes each
 * result into its ring on the board as soon as its task returns; the
 * pool's thread copies every committed entry out in one go (freeing the
 * ring for the worker at once) and delivers it to its job's result slot,
 * against the in-flight segment that holds its sequence number. The
 * channel carries the rest: the memfd of each out-of-line result, sent
 * before its entry, and an initializer's failure.
 */
#include "pool/engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The slot task idx of j delivers into (NULL: a records job has none, or
 * a map's slots could not be made). */
static pool__rslot *result_slot(pool__job *j, size_t idx)
{
    switch (j->type) {
    case J_MAP:
        if (!j->slots && !pool__alloc_slots(j, j->n))
            return NULL;
        return &j->slots[idx];
    case J_APPLY:
        return &j->slots[0];
    case J_IMAP:
        return &j->slots[idx % j->imap.window];
    default:
        return NULL;
    }
}

/* Task idx of an imap has its result: its input (a source's copy) is no
 * longer needed, and an unordered consumer takes it next in line. */
static void imap_arrived(pool__job *j, size_t idx)
{
    if (j->imap.win) {
        free((void *)j->imap.win[idx % j->imap.window].data);
        j->imap.win[idx % j->imap.window].data = NULL;
    }
    if (j->imap.unordered)
        j->imap.ring[(j->imap.rhead + j->imap.rcount++) % j->imap.window] = idx;
}

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
        for (size_t k = 0; k < count && j->type != J_RANGE; k++) {
            pool__rslot *s = result_slot(j, idx + k);
            if (!s)
                break; /* out of memory: the job's status tells */
            pool__slot_release(s);
            s->status = code;
            s->ptr = e;
            if (e)
                e->refs++;
            if (j->type == J_IMAP)
                imap_arrived(j, idx + k);
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
        pool__rslot *s = result_slot(j, idx);
        if (j->type == J_IMAP)
            imap_arrived(j, idx);
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

void pool__fail_seg(mproc_pool *p, const pool__seg *s, int code,
                    const char *msg)
{
    pool__errrec *e = pool__errrec_new(code, 0, 0, s->start, "%s", msg);
    pool__deliver_fail(p, s->j, s->start, s->count, e, code, false);
}

/* ---- the channel -------------------------------------------------------- */

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

/* ---- the ring ----------------------------------------------------------- */

/* The in-flight segment of worker w that holds seq (the front one). */
static pool__seg *seg_for(pool__wslot *w, uint64_t seq)
{
    /* Results come in order, and a finished segment leaves the queue at
     * once: anything else is a stray entry, ignored. */
    if (w->q.n == 0)
        return NULL;
    pool__seg *sg = pool__dq_at(&w->q, 0);
    if (seq < sg->first_seq || seq >= sg->first_seq + pool__seg_nseq(sg))
        return NULL;
    return sg;
}

/* Task seq of w has its result: its segment leaves the queue when that
 * was its last one, and so do the messages it ends (timing the next). */
static void result_done(pool__wslot *w, uint64_t seq)
{
    pool__seg *sg = pool__dq_at(&w->q, 0);
    if (seq + 1 == sg->first_seq + pool__seg_nseq(sg))
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

/* The memfd of worker i's next out-of-line result, mapped (NULL when it
 * is missing or cannot be mapped). */
static pool__msgbuf *map_ool(mproc_pool *p, int i, size_t len)
{
    pool__wslot *w = &p->w[i];
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
    if (m == MAP_FAILED)
        return NULL;
    pool__msgbuf *ib = calloc(1, sizeof *ib);
    if (!ib) {
        munmap(m, len);
        return NULL;
    }
    ib->refs = 1;
    ib->mapped = true;
    ib->p = m;
    ib->len = len;
    return ib;
}

/* One result entry (data points into b, or is an out-of-line memfd).
 * Returns false for an entry no task of the worker can have written. */
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
        ib = map_ool(p, i, len);
        if (!ib) {
            status = status ? status : -ENOMEM;
            len = 0;
        }
        data = ib ? ib->p : NULL;
        off = 0;
    }
    pool__seg *sg = seg_for(w, e->seq);
    if (sg) {
        pool__job *j = sg->j;
        size_t idx;
        size_t cnt = pool__seg_task(sg, e->seq - sg->first_seq, &idx);
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
    return sg != NULL;
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
    if (j->type != J_MAP || j->cancelled || !j->slots)
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

/* Checks the chunk at off of b (len bytes after its entry header) and
 * counts its results: 0 when malformed. Sets the offsets of its table and
 * results in b. */
static size_t chunk_check(const pool__msgbuf *b, size_t off, size_t len,
                          bool open, uint32_t *tab, uint32_t *data)
{
    pool__chunkhdr ch;
    if (len < sizeof ch)
        return 0;
    memcpy(&ch, b->p + off + sizeof(pool__entry), sizeof ch);
    uint32_t count = atomic_load_explicit(&ch.count, memory_order_relaxed);
    size_t base = pool__chunk_base(ch.cap);
    if (count == 0 || count > ch.cap || ch.cap > POOL__CHUNK_CAP ||
        base - sizeof(pool__entry) > len)
        return 0;
    size_t room = len - (base - sizeof(pool__entry));
    const unsigned char *t = b->p + off + sizeof(pool__entry) + sizeof ch;
    uint32_t begin = 0, end = 0;
    for (uint32_t k = 0; k < count; k++) {
        memcpy(&end, t + 4 * (size_t)k, 4);
        if (end < begin || end > room)
            return 0;
        begin = (end + 7) & ~7u;
    }
    /* A committed chunk is exactly as long as its results. */
    if (!open && begin != room)
        return 0;
    *tab = (uint32_t)(off + sizeof(pool__entry) + sizeof ch);
    *data = (uint32_t)(off + base);
    return count;
}

/* Results of tasks seq to seq + count of worker i in a chunk of b. */
static bool deliver_chunk(mproc_pool *p, int i, pool__msgbuf *b, uint64_t seq,
                          size_t count, uint32_t tab, uint32_t data)
{
    pool__wslot *w = &p->w[i];
    pool__seg *sg = seg_for(w, seq);
    if (!sg || sg->j->type != J_MAP || seq != w->next_result ||
        seq + count > sg->first_seq + sg->count)
        return false;
    pool__job *j = sg->j;
    if (MPROC__GROW(j->map.chunks, j->map.capchunks, j->map.nchunks + 1) < 0) {
        /* Out of memory: they fail, as results that cannot be kept. */
        size_t idx = sg->start + (size_t)(seq - sg->first_seq);
        result_done(w, seq + count - 1);
        pool__errrec *e = pool__errrec_new(-ENOMEM, w->pid, 0, idx,
                                           "out of memory storing results");
        pool__deliver_fail(p, j, idx, count, e, -ENOMEM, true);
        return true;
    }
    j->map.chunks[j->map.nchunks++] =
        (pool__chunk){.start = sg->start + (size_t)(seq - sg->first_seq),
                      .count = count,
                      .b = b,
                      .tab = tab,
                      .data = data};
    b->refs++;
    result_done(w, seq + count - 1);
    j->inflight -= count;
    j->done += count;
    if (j->done == j->n)
        pool__broadcast(j->core);
    pool__mark_dirty(p, j);
    pool__check_finished(p, j);
    return true;
}

/* A committed chunk entry at pos of b. */
static bool take_chunk(mproc_pool *p, int i, pool__msgbuf *b, size_t pos,
                       const pool__entry *e)
{
    uint32_t tab, data;
    size_t count = chunk_check(b, pos, e->len, false, &tab, &data);
    return count > 0 && deliver_chunk(p, i, b, e->seq, count, tab, data);
}

void pool__take_open_chunk(mproc_pool *p, int i)
{
    pool__wslot *w = &p->w[i];
    if (w->remote || w->q.n == 0)
        return;
    const unsigned char *ring =
        (unsigned char *)p->board + p->ring_off + (size_t)i * POOL__RING;
    size_t off = (size_t)(w->rpos % POOL__RING);
    pool__entry e;
    if (POOL__RING - off < sizeof e + sizeof(pool__chunkhdr))
        return;
    memcpy(&e, ring + off, sizeof e);
    if (e.status != POOL__CHUNK || e.seq != w->next_result)
        return;
    /* Its results as a committed chunk would hold them: copied out
     * (the worker is dead, nothing moves any more), then checked. */
    size_t len = POOL__RING - off - sizeof e;
    pool__msgbuf *b = malloc(sizeof *b + sizeof e + len);
    if (!b)
        return;
    b->refs = 1;
    b->len = b->cap = sizeof e + len;
    b->core = NULL;
    b->mapped = false;
    b->p = (unsigned char *)(b + 1);
    memcpy(b->p, ring + off, sizeof e + len);
    uint32_t tab, data;
    size_t count = chunk_check(b, 0, len, true, &tab, &data);
    if (count > 0)
        deliver_chunk(p, i, b, e.seq, count, tab, data);
    pool__msgbuf_unref(b);
}

/* Delivers every entry of b from base on, the ring's bytes from rpos +
 * base on (rpos wraps: offsets in b and in the ring differ by it). Returns
 * false when one is malformed or belongs to no task of the worker. */
static bool take_all(mproc_pool *p, int i, pool__msgbuf *b, size_t base,
                     uint64_t rpos)
{
    size_t pos = base, total = b->len;
    bool ok = true;
    while (pos < total) {
        size_t off = (size_t)((rpos + pos) % POOL__RING);
        size_t left = POOL__RING - off;
        if (left < sizeof(pool__entry)) {
            pos += left;
            continue;
        }
        if (total - pos < sizeof(pool__entry))
            return false;
        pool__entry e;
        memcpy(&e, b->p + pos, sizeof e);
        if (e.status == POOL__WRAP) {
            pos += left;
            continue;
        }
        size_t body = e.len == POOL__OOL_LEN ? 8 : pool__pad8(e.len);
        if (body > total - pos - sizeof e)
            return false;
        if (e.status == POOL__CHUNK) {
            if (!take_chunk(p, i, b, pos, &e))
                ok = false;
            pos += sizeof e + body;
            continue;
        }
        if (e.status == 0 && e.len != POOL__OOL_LEN && e.len > 0) {
            size_t used = map_run(p, &p->w[i], b, pos, total, rpos);
            if (used) {
                pos += used;
                continue;
            }
        }
        if (!take_entry(p, i, &e, b, pos + sizeof e))
            ok = false;
        pos += sizeof e + body;
    }
    return ok;
}

/* A block with room for n more bytes to copy worker w's results into:
 * its current one, or one the core kept, or a new one (NULL: out of
 * memory). */
static pool__msgbuf *block_for(mproc_pool *p, pool__wslot *w, size_t n)
{
    pool__msgbuf *b = w->cur;
    if (b && b->cap - b->len >= n)
        return b;
    pool__core *c = p->core;
    if (n <= POOL__BLOCK && c->blocks) {
        b = c->blocks;
        c->blocks = b->next;
        c->nblocks--;
    } else {
        size_t cap = n > POOL__BLOCK ? n : POOL__BLOCK;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->mapped = false;
        b->p = (unsigned char *)(b + 1);
        b->core = c;
    }
    b->refs = 1; /* w's */
    b->len = 0;
    pool__msgbuf_unref(w->cur);
    w->cur = b;
    return b;
}

/* Copies worker i's ring bytes [rpos, wpos) to the end of its block (at
 * *base) and frees them for the worker at once (waking it when it waits
 * for room). NULL: out of memory, the bytes stay. */
static pool__msgbuf *copy_ring(mproc_pool *p, int i, uint64_t rpos,
                               uint64_t wpos, size_t *base)
{
    pool__wslot *w = &p->w[i];
    pool__slot *s = &p->board[i];
    size_t total = (size_t)(wpos - rpos);
    pool__msgbuf *b = block_for(p, w, total);
    if (!b)
        return NULL;
    *base = b->len;
    unsigned char *to = b->p + b->len;
    b->len += total;
    const unsigned char *ring =
        (unsigned char *)p->board + p->ring_off + (size_t)i * POOL__RING;
    size_t off0 = (size_t)(rpos % POOL__RING);
    size_t a = POOL__RING - off0 < total ? POOL__RING - off0 : total;
    memcpy(to, ring + off0, a);
    if (total > a)
        memcpy(to + a, ring, total - a);
    /* The copy is ours: free the ring for the worker at once. */
    w->rpos = wpos;
    atomic_store_explicit(&s->rpos, wpos, memory_order_release);
    if (atomic_load(&s->waiting)) {
        atomic_fetch_add(&s->space, 1);
        mproc__futex_wake((uint32_t *)&s->space, 1);
    }
    return b;
}

/* Kills a worker whose results cannot be trusted any more; its death
 * fails what it held and hands back what it never started. */
static void distrust(pool__wslot *w)
{
    w->killed = true;
    if (w->proc) /* a backend's slot: its ring is written by us */
        mproc_process_kill(w->proc);
}

/* Takes every committed result out of worker i's ring. */
static void consume(mproc_pool *p, int i)
{
    pool__wslot *w = &p->w[i];
    pool__slot *s = &p->board[i];
    uint64_t wpos = atomic_load_explicit(&s->wpos, memory_order_acquire);
    uint64_t rpos = w->rpos;
    /* Results come after the initializer, and so does READY. */
    if (!w->seen_ready &&
        (wpos != rpos || atomic_load(&s->state) == SLOT_READY)) {
        w->seen_ready = true;
        p->startup_deaths = 0;
    }
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
        if (!w->killed)
            distrust(w);
        return;
    }
    size_t base;
    pool__msgbuf *b = copy_ring(p, i, rpos, wpos, &base);
    if (!b)
        return; /* try again on the next wake-up */
    b->refs++;  /* a block may leave w while its results are read */
    bool ok = take_all(p, i, b, base, rpos - base);
    pool__msgbuf_unref(b);
    if (!ok && !w->killed) {
        /* Its results were overwritten (a task with a wild pointer): the
         * tasks they belonged to would wait forever. Kill it. */
        mproc_debug("pool: worker %d corrupted its results; killing it",
                    (int)w->pid);
        distrust(w);
    }
}

void pool__drain(mproc_pool *p, int i, int max)
{
    pool__wslot *w = &p->w[i];
    recv_msgs(p, i, max);
    if (!p->broken && (w->state == W_LIVE || w->state == W_EXITING))
        consume(p, i);
}
