/*
 * queue/queue.c - Queue, SimpleQueue and JoinableQueue, the API: create,
 * put, get, state, task_done/join, and sharing a queue with a child. The
 * shared layout and its protocol are described in queue_impl.h; the
 * machinery (waiting, locks, repair) is in ring.c.
 */
#include "queue/queue_impl.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Overflow bytes for a new queue with a ring of cap bytes: Q_LOG_MAX, or
 * what RLIMIT_FSIZE leaves room for (the memfd is sized once, here); 0
 * when not even Q_LOG_MIN fits. */
static uint64_t overflow_size(uint64_t cap)
{
    struct rlimit rl;
    uint64_t limit = UINT64_MAX;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        limit = (uint64_t)rl.rlim_cur;
    return queue__log_size_for(queue__log_off(cap), limit);
}

int mproc_queue_new_opts(mproc_queue **out, const mproc_queue_opts *opts)
{
    mproc_queue_opts o = {MPROC_QUEUE, 0, 0};
    if (opts)
        o = *opts;
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (o.type > MPROC_QUEUE_JOINABLE || o.maxsize > Q_MAX_MAXSIZE ||
        o.capacity > MPROC_QUEUE_MAX_CAPACITY)
        return -EINVAL;
    size_t cap = queue__pow2_at_least(
        o.capacity ? o.capacity : MPROC_QUEUE_DEFAULT_CAPACITY);
    /* Bounded by bytes only when asked for both bounds (or when
     * RLIMIT_FSIZE leaves no room for an overflow); else an overflow takes
     * what the ring cannot. */
    uint64_t logsz = o.maxsize && o.capacity ? 0 : overflow_size(cap);
    size_t size = logsz ? (size_t)(queue__log_off(cap) + logsz) : Q_HDR + cap;
    int rc;
    int memfd = mproc__memfd_new("mproc-queue", size, true);
    if (memfd < 0)
        return memfd;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) {
        rc = -errno;
        goto out_memfd;
    }
    /* Nobody may shrink the file under the others' mappings (SIGBUS). */
    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    qshm *h = mmap(NULL, Q_HDR, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (h == MAP_FAILED) {
        rc = -errno;
        goto out_efd;
    }
    h->version = Q_VERSION;
    h->type = (uint32_t)o.type;
    h->capacity = cap;
    h->maxsize = o.maxsize;
    h->chunk = cap / 4 - F_HDR;
    h->minchunk = cap / 16;
    h->log_size = logsz;
    atomic_store(&h->fd_clear, 1);
    rc = mproc__robust_init(&h->plock, false);
    if (!rc)
        rc = mproc__robust_init(&h->clock, false);
    if (!rc)
        atomic_store((_Atomic uint32_t *)&h->magic, Q_MAGIC);
    munmap(h, Q_HDR);
    if (rc)
        goto out_efd;
    rc = queue__map(memfd, efd, out);
    if (rc)
        goto out_efd;
    return 0;
out_efd:
    close(efd);
out_memfd:
    close(memfd);
    return rc;
}

int mproc_queue_new(mproc_queue **out, size_t maxsize)
{
    mproc_queue_opts o = {MPROC_QUEUE, maxsize, 0};
    return mproc_queue_new_opts(out, &o);
}

int mproc_queue_new_simple(mproc_queue **out)
{
    mproc_queue_opts o = {MPROC_QUEUE_SIMPLE, 0, 0};
    return mproc_queue_new_opts(out, &o);
}

int mproc_queue_new_joinable(mproc_queue **out, size_t maxsize)
{
    mproc_queue_opts o = {MPROC_QUEUE_JOINABLE, maxsize, 0};
    return mproc_queue_new_opts(out, &o);
}

void mproc_queue_free(mproc_queue *q)
{
    if (!q)
        return;
    queue__log_unview(q, SIDE_P);
    queue__log_unview(q, SIDE_C);
    munmap(q->h, q->map_len);
    mproc__close(q->memfd);
    mproc__close(q->efd);
    free(q);
}

int mproc_queue_close(mproc_queue *q)
{
    if (!q)
        return -EINVAL;
    atomic_store(&q->closed, 1);
    return 0;
}

/* ---- put ---------------------------------------------------------------- */

/*
 * The start of every put and get: a closed handle, the deadline, and the
 * side's lock. Returns 0 with the lock held, or the call's error:
 * MPROC_ECLOSED, MPROC_EFULL / MPROC_EEMPTY (no lock in time), or the
 * lock's.
 */
static int side_enter(mproc_queue *q, int side, double timeout,
                      mproc__deadline *d)
{
    if (atomic_load_explicit(&q->closed, memory_order_relaxed))
        return MPROC_ECLOSED;
    *d = mproc__deadline_from(timeout);
    int rc = queue__lock(q, side, d);
    if (rc == -ETIMEDOUT)
        return side == SIDE_P ? MPROC_EFULL : MPROC_EEMPTY;
    return rc;
}

/*
 * Under plock: waits until `need` bytes are free (and, when first, the
 * count bound allows one more message). Returns 0 or -ETIMEDOUT.
 */
static int wait_room(mproc_queue *q, uint64_t tail, uint32_t cnt, uint64_t need,
                     bool first, const mproc__deadline *d)
{
    qshm *h = q->h;
    uint64_t maxsize = h->maxsize;
    int spins = mproc__deadline_expired(d) ? 0 : queue__spin_budget();
    int yields = spins ? SPIN_YIELDS : 0;
    for (int i = 0;; i++) {
        uint32_t seq = atomic_load(&h->space_seq);
        uint64_t hw = atomic_load_explicit(&h->chead, memory_order_acquire);
        atomic_store_explicit(&h->p_head_cache, w_pos(hw),
                              memory_order_relaxed);
        bool ok = q->cap - pos_diff(tail, w_pos(hw)) >= need;
        if (ok && first && maxsize)
            ok = ((cnt - queue__taken_count(h, hw)) & W_CNT_MASK) < maxsize;
        if (ok)
            return 0;
        if (spin_or_yield(i, spins, yields))
            continue;
        struct timespec ts;
        if (!queue__period_left(d, &ts))
            return -ETIMEDOUT;
        /* Announce, then look once more: a consumer committing after our
         * look sees the flag and wakes us (both sides are seq_cst). */
        atomic_store(&h->p_waiting, 1);
        hw = atomic_load(&h->chead);
        ok = q->cap - pos_diff(tail, w_pos(hw)) >= need;
        if (ok && first && maxsize)
            ok = ((cnt - queue__taken_count(h, hw)) & W_CNT_MASK) < maxsize;
        if (!ok)
            mproc__futex_wait((uint32_t *)&h->space_seq, seq, &ts);
        atomic_store(&h->p_waiting, 0);
    }
}

/* Under plock, the fast path's look: does the cached head show need bytes
 * free at tail and, when first, does the count bound allow one more? */
static inline bool room_cached(mproc_queue *q, uint64_t tail, uint32_t cnt,
                               uint64_t need, bool first)
{
    qshm *h = q->h;
    uint64_t head =
        atomic_load_explicit(&h->p_head_cache, memory_order_relaxed);
    bool ok = ring_free(q->cap, tail, head) >= need;
    if (ok && first && h->maxsize) {
        uint64_t hw = atomic_load_explicit(&h->chead, memory_order_acquire);
        ok = ((cnt - queue__taken_count(h, hw)) & W_CNT_MASK) < h->maxsize;
    }
    return ok;
}

/*
 * Under plock. A queue with an overflow (unbounded by bytes): the message
 * goes in the ring as one frame when the ring has room for it now
 * (keeping room for a LINK), else through queue__put_spill (an open run, a
 * ring out of room, a message too large for the ring). A queue bounded by
 * bytes waits for room, and streams a message larger than a quarter of
 * the ring in frames.
 */
static int put_locked(mproc_queue *q, const unsigned char *p, size_t n,
                      const mproc__deadline *d)
{
    qshm *h = q->h;
    uint64_t w = atomic_load_explicit(&h->ptail, memory_order_relaxed);
    uint64_t tail = w_pos(w);
    uint32_t cnt = w_cnt(w);
    if (q->log_size) {
        /* Fast path: the cached head shows room for the frame and a LINK. */
        if (__builtin_expect(
                !(w & W_SPILL) && n <= q->ring_max &&
                    room_cached(q, tail, cnt, 2 * F_HDR + round16(n), true),
                1)) {
            tail = queue__ring_frame(q, tail, F_FIRST | F_LAST, n, p, n);
            /* Fenced after the unlock (see mproc_queue_put). */
            atomic_store_explicit(&h->ptail, w_make(tail, cnt + 1, 0),
                                  memory_order_release);
            if (__builtin_expect(q->view[SIDE_P].base != NULL, 0))
                queue__log_unview(q, SIDE_P); /* a run it wrote is closed */
            return 0;
        }
        if (h->maxsize) {
            if (w & W_SPILL)
                cnt = w_cnt(atomic_load(&h->p_log));
            int rc = wait_room(q, tail, cnt, 0, true, d);
            if (rc)
                return rc;
        }
        return queue__put_spill(q, p, n, d);
    }
    uint64_t chunk = h->chunk, minchunk = h->minchunk;
    size_t off = 0;
    bool first = true;

    do {
        size_t want = n - off < chunk ? n - off : (size_t)chunk;
        size_t least = want < minchunk ? want : (size_t)minchunk;
        /* Fast path: the cached head shows room for the whole frame. */
        if (!room_cached(q, tail, cnt, F_HDR + round16(want), first)) {
            int rc = wait_room(q, tail, cnt, F_HDR + round16(least), first, d);
            if (rc) {
                if (!first) {
                    /* Withdraw the unfinished message. */
                    atomic_store(&h->ptail, w_make(tail, cnt, 0));
                    atomic_fetch_add(&h->data_seq, 1);
                    mproc__futex_wake((uint32_t *)&h->data_seq, INT_MAX);
                }
                return rc;
            }
            uint64_t head =
                atomic_load_explicit(&h->p_head_cache, memory_order_relaxed);
            uint64_t fit =
                (ring_free(q->cap, tail, head) - F_HDR) & ~UINT64_C(15);
            if (want > fit)
                want = (size_t)fit;
        }
        bool last = off + want == n;
        tail = queue__ring_frame(
            q, tail, (first ? F_FIRST : 0) | (last ? F_LAST : 0),
            first ? (uint64_t)n : (uint64_t)off, p + off, want);
        if (first)
            cnt = (cnt + 1) & W_CNT_MASK;
        /* Publish: one atomic store makes the frame visible. */
        if (last) {
            /* The last commit is fenced after the unlock (see
             * mproc_queue_put): one full barrier less per message. */
            atomic_store_explicit(&h->ptail, w_make(tail, cnt, 0),
                                  memory_order_release);
        } else {
            atomic_store(&h->ptail, w_make(tail, cnt, W_OPEN));
            queue__wake_data(h);
            poll_notify(q);
        }
        off += want;
        first = false;
    } while (off < n);
    return 0;
}

int mproc_queue_put(mproc_queue *q, const void *p, size_t n, double timeout)
{
    if (!q || (!p && n))
        return -EINVAL;
    if (n > MPROC_QUEUE_MAX_MESSAGE)
        return MPROC_ETOOBIG;
    mproc__deadline d;
    int rc = side_enter(q, SIDE_P, timeout, &d);
    if (rc)
        return rc;
    rc = put_locked(q, p, n, &d);
    queue__unlock(q, SIDE_P);
    if (rc == 0) {
        /* Orders the final ptail store before reading the consumers'
         * sleeping flag (the other half of the handshake is in
         * wait_data): either we see the flag or the sleeper sees ptail. */
        atomic_thread_fence(memory_order_seq_cst);
        queue__wake_data(q->h);
        poll_notify(q);
    }
    return rc == -ETIMEDOUT ? MPROC_EFULL : rc;
}

int mproc_queue_put_nowait(mproc_queue *q, const void *p, size_t n)
{
    return mproc_queue_put(q, p, n, 0);
}

/* Between the messages of a batch, which is fenced and woken once at its
 * end: a sleeper seen now is woken now (a look without a barrier: one
 * that announced itself too late for it is woken at the end). */
static inline void batch_wake_data(mproc_queue *q)
{
    if (__builtin_expect(
            atomic_load_explicit(&q->h->c_waiting, memory_order_relaxed) ||
                atomic_load_explicit(&q->h->armed, memory_order_relaxed),
            0)) {
        queue__unlocked_fence();
        queue__wake_data(q->h);
        poll_notify(q);
    }
}

int mproc_queue_put_many(mproc_queue *q, const void *const *msgs,
                         const size_t *lens, size_t count, double timeout)
{
    if (!q || (count && (!msgs || !lens)) || count > INT_MAX)
        return -EINVAL;
    for (size_t i = 0; i < count; i++) {
        if (!msgs[i] && lens[i])
            return -EINVAL;
        if (lens[i] > MPROC_QUEUE_MAX_MESSAGE)
            return MPROC_ETOOBIG;
    }
    if (!count)
        return atomic_load(&q->closed) ? MPROC_ECLOSED : 0;
    mproc__deadline d;
    int rc = side_enter(q, SIDE_P, timeout, &d);
    if (rc)
        return rc;
    size_t i = 0;
    while ((rc = put_locked(q, msgs[i], lens[i], &d)) == 0 && ++i < count)
        batch_wake_data(q);
    queue__unlock(q, SIDE_P);
    if (i > 0) {
        queue__unlocked_fence();
        queue__wake_data(q->h);
        poll_notify(q);
        return (int)i;
    }
    return rc == -ETIMEDOUT ? MPROC_EFULL : rc;
}

/* ---- get ---------------------------------------------------------------- */

/*
 * Under clock: true when the message whose first frame is at pos can never
 * be completed (its producer withdrew it or died): a new message starts
 * before its last frame, or nothing follows and no message is open. Such a
 * message is skipped instead of failing a get with EBUFSIZE or ENOMEM. (A
 * stream whose rest went to the overflow is followed by the LINK to it.)
 */
static bool withdrawn(mproc_queue *q, uint64_t pos)
{
    qshm *h = q->h;
    uint64_t tw = atomic_load_explicit(&h->ptail, memory_order_acquire);
    uint64_t tail = w_pos(tw);
    qframe f;
    queue__ring_read(q, pos, &f, sizeof f);
    if (f.flags & F_LAST)
        return false;
    pos = (pos + F_HDR + round16(f.len)) & W_POS_MASK;
    while (pos != tail && pos_diff(tail, pos) <= q->cap) {
        queue__ring_read(q, pos, &f, sizeof f);
        if (f.flags & F_FIRST)
            return true;
        if (f.flags & (F_LAST | F_LINK))
            return false; /* a LINK here carries the rest: it is whole */
        pos = (pos + F_HDR + round16(f.len)) & W_POS_MASK;
    }
    return !(tw & W_OPEN);
}

static int get_locked(mproc_queue *q, sink *s, size_t *len,
                      const mproc__deadline *d)
{
    qshm *h = q->h;
    qmsg m = {false, 0, 0, NULL};
    uint64_t w = atomic_load_explicit(&h->chead, memory_order_relaxed);
    if (__builtin_expect((w & W_INLOG) || q->view[SIDE_C].base != NULL, 0)) {
        /* In an overflow run (or a window of one still mapped). */
        int rc = queue__get_log(q, s, &m, len, d);
        if (rc != 1)
            return rc;
        w = atomic_load_explicit(&h->chead, memory_order_relaxed);
    }
    uint64_t head = w_pos(w);
    uint32_t cnt = w_cnt(w);

    for (;;) {
        uint64_t tail =
            atomic_load_explicit(&h->c_tail_cache, memory_order_relaxed);
        if (pos_diff(tail, head) == 0 || pos_diff(tail, head) > q->cap) {
            int rc = queue__wait_data(q, head, NULL, m.have, d);
            if (rc < 0)
                return rc;
            if (rc == 1) {
                /* The rest of this message will never come. */
                m.have = false;
                queue__count_withdrawn(h);
                continue;
            }
            tail = atomic_load_explicit(&h->c_tail_cache, memory_order_relaxed);
        }
        uint64_t avail = pos_diff(tail, head);
        qframe f;
        queue__ring_read(q, head, &f, sizeof f);
        uint64_t fsz = F_HDR + round16(f.len);
        if ((f.flags & 0xffff0000u) != F_MAGIC || fsz > avail || f.len > q->cap)
            return MPROC_EPROTO;
        if (__builtin_expect(f.flags & (F_LINK | F_SEGEND), 0)) {
            /* The next messages (or the rest of m) are in the overflow. */
            if (f.flags != (F_MAGIC | F_LINK))
                return MPROC_EPROTO;
            int rc = queue__log_enter(q, head, cnt, f.aux, s, &m, len, d);
            if (rc != 1)
                return rc;
            w = atomic_load_explicit(&h->chead, memory_order_relaxed);
            head = w_pos(w);
            cnt = w_cnt(w);
            continue;
        }
        if (f.flags & F_FIRST) {
            if (m.have)
                queue__count_withdrawn(h); /* started again: the old one died */
            if (f.aux > MPROC_QUEUE_MAX_MESSAGE || f.len > f.aux ||
                ((f.flags & F_LAST) && f.len != f.aux))
                return MPROC_EPROTO;
            m.total = f.aux;
            m.have = false;
            int rc = queue__sink_ready(s, m.total, &m.dst);
            if (rc && !withdrawn(q, head)) {
                if (rc == MPROC_EBUFSIZE)
                    *len = (size_t)m.total;
                return rc;
            }
            cnt = (cnt + 1) & W_CNT_MASK;
            if (rc) {
                /* Withdrawn anyway: skip it rather than fail on it. */
                queue__count_withdrawn(h);
                goto commit;
            }
            queue__ring_read(q, head + F_HDR, m.dst, f.len);
            m.got = f.len;
            m.have = true;
        } else if (m.have && f.aux == m.got && f.len <= m.total - m.got) {
            queue__ring_read(q, head + F_HDR, m.dst + m.got, f.len);
            m.got += f.len;
        } else {
            /* A piece of a message whose start another consumer took
             * before it died, or of one that was withdrawn: skip. */
            if (m.have)
                queue__count_withdrawn(h);
            m.have = false;
        }
    commit:
        head = (head + fsz) & W_POS_MASK;
        if (m.have && (f.flags & F_LAST) && m.got == m.total) {
            /* Fenced and woken after the unlock, as in put. */
            atomic_store_explicit(&h->chead, w_make(head, cnt, 0),
                                  memory_order_release);
            *len = (size_t)m.total;
            return 0;
        }
        atomic_store(&h->chead, w_make(head, cnt, 0));
        queue__wake_room(h);
        if (m.have && (f.flags & F_LAST))
            return MPROC_EPROTO;
    }
}

static int q_get(mproc_queue *q, sink *s, size_t *len, double timeout)
{
    if (!q || !len)
        return -EINVAL;
    mproc__deadline d;
    int rc = side_enter(q, SIDE_C, timeout, &d);
    if (rc)
        return rc;
    rc = get_locked(q, s, len, &d);
    queue__unlock(q, SIDE_C);
    if (rc == 0) {
        queue__unlocked_fence();
        queue__wake_room(q->h);
    }
    if (rc == -ETIMEDOUT)
        rc = MPROC_EEMPTY;
    return rc;
}

int mproc_queue_get(mproc_queue *q, void *buf, size_t cap, size_t *len,
                    double timeout)
{
    if (!buf && cap)
        return -EINVAL;
    unsigned char dummy;
    sink s = {buf ? buf : &dummy, buf ? cap : 0, NULL};
    return q_get(q, &s, len, timeout);
}

int mproc_queue_get_nowait(mproc_queue *q, void *buf, size_t cap, size_t *len)
{
    return mproc_queue_get(q, buf, cap, len, 0);
}

int mproc_queue_get_many(mproc_queue *q, void *buf, size_t cap, size_t *lens,
                         size_t max, double timeout)
{
    if (!q || !lens || (!buf && cap) || max == 0 || max > INT_MAX)
        return -EINVAL;
    mproc__deadline d;
    int rc = side_enter(q, SIDE_C, timeout, &d);
    if (rc)
        return rc;
    unsigned char dummy = 0, *base = buf ? buf : &dummy;
    sink s = {base, buf ? cap : 0, NULL};
    rc = get_locked(q, &s, &lens[0], &d);
    size_t got = 0;
    if (rc == 0) {
        /* The rest: only what is there now, while it fits. */
        mproc__deadline now = mproc__deadline_from(0);
        size_t used = lens[0];
        for (got = 1; got < max; got++) {
            if (__builtin_expect(atomic_load_explicit(&q->h->p_waiting,
                                                      memory_order_relaxed),
                                 0)) {
                atomic_thread_fence(memory_order_seq_cst);
                queue__wake_room(q->h);
            }
            sink more = {base + used, s.cap - used, NULL};
            if (get_locked(q, &more, &lens[got], &now) != 0)
                break;
            used += lens[got];
        }
    }
    queue__unlock(q, SIDE_C);
    if (got > 0) {
        queue__unlocked_fence();
        queue__wake_room(q->h);
        return (int)got;
    }
    return rc == -ETIMEDOUT ? MPROC_EEMPTY : rc;
}

int mproc_queue_get_alloc(mproc_queue *q, void **out, size_t *len,
                          double timeout)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    sink s = {NULL, 0, NULL};
    int rc = q_get(q, &s, len, timeout);
    if (rc) {
        free(s.mem);
        return rc;
    }
    *out = s.mem;
    return 0;
}

/* ---- state -------------------------------------------------------------- */

long mproc_queue_qsize(const mproc_queue *q)
{
    if (!q)
        return -EINVAL;
    /* Taken first: a consumer counts a message only after the producer
     * did, so the difference never goes below zero. */
    uint32_t c = queue__taken_count(q->h, atomic_load(&q->h->chead));
    uint32_t p = queue__put_count(q->h);
    return (long)((p - c) & W_CNT_MASK);
}

int mproc_queue_empty(const mproc_queue *q)
{
    if (q && atomic_load_explicit(&q->closed, memory_order_relaxed))
        return MPROC_ECLOSED; /* Python: OSError, the handle is closed */
    return mproc_queue_qsize(q) == 0;
}

int mproc_queue_full(const mproc_queue *q)
{
    if (!q || !q->h->maxsize)
        return 0;
    return (uint64_t)mproc_queue_qsize(q) >= q->h->maxsize;
}

size_t mproc_queue_maxsize(const mproc_queue *q)
{
    return q ? (size_t)q->h->maxsize : 0;
}

size_t mproc_queue_capacity(const mproc_queue *q)
{
    return q ? (size_t)q->cap : 0;
}

mproc_queue_variant mproc_queue_type(const mproc_queue *q)
{
    return q ? (mproc_queue_variant)q->h->type : MPROC_QUEUE;
}

int mproc_queue_fileno(mproc_queue *q)
{
    if (!q)
        return -EINVAL;
    if (atomic_load(&q->closed))
        return MPROC_ECLOSED;
    qshm *h = q->h;
    if (!atomic_load(&h->armed)) {
        atomic_store(&h->armed, 1);
        /* Producers that committed before seeing armed did not signal:
         * signal once for them (spurious readiness is allowed). */
        atomic_store(&h->fd_clear, 0);
        queue__efd_signal(q);
    }
    return q->efd;
}

/* ---- JoinableQueue ------------------------------------------------------ */

int mproc_queue_task_done(mproc_queue *q)
{
    if (!q)
        return -EINVAL;
    qshm *h = q->h;
    if (h->type != MPROC_QUEUE_JOINABLE)
        return MPROC_ETYPE;
    uint32_t dn = atomic_load(&h->done);
    for (;;) {
        uint32_t put = queue__put_count(h);
        if (((put - dn) & W_CNT_MASK) == 0)
            return MPROC_ETASKDONE;
        if (atomic_compare_exchange_weak(&h->done, &dn, dn + 1))
            break;
    }
    if (atomic_load(&h->join_waiters))
        mproc__futex_wake((uint32_t *)&h->done, INT_MAX);
    return 0;
}

int mproc_queue_join(mproc_queue *q, double timeout)
{
    if (!q)
        return -EINVAL;
    qshm *h = q->h;
    if (h->type != MPROC_QUEUE_JOINABLE)
        return MPROC_ETYPE;
    mproc__deadline d = mproc__deadline_from(timeout);
    for (;;) {
        uint32_t dn = atomic_load(&h->done);
        if (((queue__put_count(h) - dn) & W_CNT_MASK) == 0)
            return 0;
        struct timespec ts;
        if (!queue__period_left(&d, &ts))
            return -ETIMEDOUT;
        atomic_fetch_add(&h->join_waiters, 1);
        if (((queue__put_count(h) - dn) & W_CNT_MASK) != 0)
            mproc__futex_wait((uint32_t *)&h->done, dn, &ts);
        atomic_fetch_sub(&h->join_waiters, 1);
    }
}

/* ---- sharing ------------------------------------------------------------ */

static int queue_export(const void *obj, mproc_export *ex)
{
    const mproc_queue *q = obj;
    uint32_t tag[2] = {Q_MAGIC, Q_VERSION};
    int rc = mproc_export_fd(ex, q->memfd);
    if (!rc)
        rc = mproc_export_fd(ex, q->efd);
    if (!rc)
        rc = mproc_export_bytes(ex, tag, sizeof tag);
    return rc;
}

static int queue_import(mproc_import *im, void **out)
{
    int memfd = mproc_import_fd(im);
    if (memfd < 0)
        return memfd;
    int efd = mproc_import_fd(im);
    if (efd < 0) {
        close(memfd);
        return efd;
    }
    uint32_t tag[2];
    int rc = mproc_import_bytes(im, tag, sizeof tag);
    if (!rc && (tag[0] != Q_MAGIC || tag[1] != Q_VERSION))
        rc = MPROC_EPROTO;
    mproc_queue *q = NULL;
    if (!rc)
        rc = queue__map(memfd, efd, &q);
    if (rc) {
        close(memfd);
        close(efd);
        return rc;
    }
    *out = q;
    return 0;
}

static void queue_free_obj(void *obj)
{
    mproc_queue_free(obj);
}

const mproc_kind mproc_queue_kind = {"mproc.Queue", queue_export, queue_import,
                                     queue_free_obj};

int mproc_args_add_queue(mproc_args *a, mproc_queue *q)
{
    if (!q)
        return -EINVAL;
    return mproc_args_add_object(a, &mproc_queue_kind, q);
}

mproc_queue *mproc_args_queue(const mproc_args *a, size_t i)
{
    return mproc_args_object(a, i, &mproc_queue_kind);
}
