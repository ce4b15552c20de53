/*
 * queue/overflow.c - the overflow of an unbounded queue: where messages go
 * when the ring has no room for them, so that a put never waits for
 * bytes. It is a stretch of the queue's own memfd after the ring, sparse:
 * a producer reserves pages ahead of what it writes, consumers punch them
 * out behind what they took, so memory grows while messages wait and goes
 * back as they are taken. Every process holding the queue holds the memfd,
 * so each reaches the overflow through windows of its own, and nothing
 * outlives the last handle: no name, no helper process. The runs, their
 * LINK and SEGEND frames and the committed words are described in
 * queue_impl.h.
 */
#include "queue/queue_impl.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PUNCH (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)

/*
 * The overflow is slower than the ring (its pages are allocated as it
 * grows and given back as it shrinks), so a producer that finds the ring
 * full waits a moment while consumers are at work: while one is inside a
 * get (holds clock), or chead or c_log moved within the time a consumer
 * needs to copy about what the producer waits to write (at 1 GB/s, and
 * never less than SPILL_IDLE_NS). It spins (as any waiter: about
 * 100 us), yields the CPU SPIN_YIELDS times (a consumer may be waiting
 * for it), then sleeps until a consumer commits. Once consumers are not
 * at work it yields SPIN_YIELDS times and spills. The waits of one put
 * last SPILL_MAX_NS in all at most, and never go past the caller's
 * deadline (so there is none with timeout 0).
 */
enum { SPILL_IDLE_NS = 3000, SPILL_MAX_NS = 20000000 };

/* The next Q_LOG_ALIGN boundary at or after overflow position pos. */
static uint64_t align_up(uint64_t pos)
{
    return (pos + Q_LOG_ALIGN - 1) & ~(Q_LOG_ALIGN - 1) & L_POS_MASK;
}

static uint64_t align_down(uint64_t pos)
{
    return pos & ~(Q_LOG_ALIGN - 1);
}

uint64_t queue__log_size_for(uint64_t off, uint64_t limit)
{
    if (limit <= off)
        return 0;
    uint64_t s = Q_LOG_MAX;
    while (s > limit - off)
        s >>= 1;
    return s >= Q_LOG_MIN ? s : 0;
}

/* ---- windows and pages --------------------------------------------------- */

void queue__log_unview(mproc_queue *q, int side)
{
    qview *v = &q->view[side];
    if (v->base)
        munmap(v->base, q->win);
    v->base = NULL;
}

/* Overflow position pos as a pointer in side's window (moved there if
 * need be), with in *k how many of the n bytes from it are contiguous
 * there. NULL when the window cannot be mapped (*err set). */
static unsigned char *log_at(mproc_queue *q, int side, uint64_t pos, size_t n,
                             size_t *k, int *err)
{
    qview *v = &q->view[side];
    uint64_t phys = pos & (q->log_size - 1);
    uint64_t idx = phys / q->win, off = phys % q->win;
    if (!v->base || v->idx != idx) {
        queue__log_unview(q, side);
        void *m = mmap(NULL, q->win, PROT_READ | PROT_WRITE, MAP_SHARED,
                       q->memfd, (off_t)(q->log_off + idx * q->win));
        if (m == MAP_FAILED) {
            *err = mproc__neg_errno();
            return NULL;
        }
        /* A core dump would read every page of it, and reading a hole of
         * shared memory allocates the page. */
        madvise(m, q->win, MADV_DONTDUMP);
        v->base = m;
        v->idx = idx;
    }
    *k = n < q->win - off ? n : (size_t)(q->win - off);
    return v->base + off;
}

/* Copies n bytes into the overflow at pos from src (a producer), or out
 * of it into dst (a consumer, src NULL). Returns 0 or -errno. */
static int log_copy(mproc_queue *q, uint64_t pos, void *dst, const void *src,
                    size_t n)
{
    for (size_t done = 0, k; done < n; done += k) {
        int err = -EIO;
        unsigned char *at =
            log_at(q, src ? SIDE_P : SIDE_C, pos + done, n - done, &k, &err);
        if (!at)
            return err;
        if (src)
            memcpy(at, (const unsigned char *)src + done, k);
        else
            memcpy((unsigned char *)dst + done, at, k);
    }
    return 0;
}

/* fallocate(mode) over the overflow's positions [from, from + n), which
 * may wrap around its end. Returns 0 or -errno. */
static int log_fallocate(mproc_queue *q, int mode, uint64_t from, uint64_t n)
{
    while (n) {
        uint64_t phys = from & (q->log_size - 1);
        uint64_t k = q->log_size - phys < n ? q->log_size - phys : n;
        int r;
        do
            r = fallocate(q->memfd, mode, (off_t)(q->log_off + phys), (off_t)k);
        while (r < 0 && errno == EINTR);
        if (r < 0 && !(errno == EOPNOTSUPP && mode != PUNCH))
            return mproc__neg_errno();
        from += k;
        n -= k;
    }
    return 0;
}

/*
 * Under plock: makes sure the pages of [at, end) exist before they are
 * written, so that a shortage of memory is -ENOSPC or -ENOMEM here rather
 * than a SIGBUS at the first touch. Reserves Q_LOG_RESV-aligned chunks,
 * and records them in p_resv first: a producer killed meanwhile leaves
 * nothing past p_resv, which the run's close gives back.
 */
static int log_reserve(mproc_queue *q, uint64_t at, uint64_t end)
{
    qshm *h = q->h;
    uint64_t r = atomic_load_explicit(&h->p_resv, memory_order_relaxed);
    if (lpos_diff(r, at) > q->log_size)
        r = at; /* behind: nothing ahead of `at` is known to be had */
    uint64_t short_by = lpos_diff(end, r);
    if (short_by == 0 || short_by > q->log_size)
        return 0; /* end is at or before r */
    uint64_t to = (end + Q_LOG_RESV - 1) & ~(Q_LOG_RESV - 1) & L_POS_MASK;
    atomic_store_explicit(&h->p_resv, to, memory_order_relaxed);
    int rc = log_fallocate(q, FALLOC_FL_KEEP_SIZE, r, lpos_diff(to, r));
    if (rc)
        atomic_store_explicit(&h->p_resv, r, memory_order_relaxed);
    return rc;
}

/* Under plock, a run closed at e: gives back the pages reserved past it
 * (the next run starts at align_up(e)), also those of a producer killed
 * while it reserved for a message it never published; never any that
 * could hold a message still waiting (before c_punched, a lap on). */
static void log_give_back(mproc_queue *q, uint64_t e)
{
    qshm *h = q->h;
    uint64_t from = align_up(e);
    uint64_t r = atomic_load_explicit(&h->p_resv, memory_order_relaxed);
    uint64_t lo = atomic_load(&h->c_punched);
    uint64_t n = lpos_diff(r, from), room = lpos_diff(lo + q->log_size, from);
    if (n > room)
        n = room;
    if (n && n <= q->log_size)
        log_fallocate(q, PUNCH, from, n);
    atomic_store_explicit(&h->p_resv, from, memory_order_relaxed);
}

/* Under clock: punches out the pages before `to` (a Q_LOG_ALIGN boundary
 * no message still waiting starts before) and moves c_punched there. */
static void log_punch_to(mproc_queue *q, uint64_t to)
{
    qshm *h = q->h;
    uint64_t from = atomic_load_explicit(&h->c_punched, memory_order_relaxed);
    uint64_t n = lpos_diff(to, from);
    if (n == 0)
        return;
    /* More than the overflow: the mark was scribbled over; only move it. */
    if (n <= q->log_size)
        log_fallocate(q, PUNCH, from, n);
    atomic_store(&h->c_punched, to);
}

/* ---- put ------------------------------------------------------------------
 */

/* Under plock: writes a frame of n bytes (flags, aux as in the ring) into
 * the overflow at `at` (past the committed tail), after checking that it
 * fits below what consumers punched out plus the overflow's size.
 * Publishing is the caller's. */
static int log_write(mproc_queue *q, uint64_t at, uint32_t flags, uint64_t aux,
                     const unsigned char *p, size_t n)
{
    uint64_t fsz = F_HDR + round16(n);
    uint64_t lo = atomic_load(&q->h->c_punched);
    uint64_t used = lpos_diff(at, lo);
    if (used > q->log_size || fsz > q->log_size - used)
        return -ENOSPC;
    int rc = log_reserve(q, at, at + fsz);
    if (rc)
        return rc;
    qframe f = {(uint32_t)n, F_MAGIC | flags, aux};
    rc = log_copy(q, at, NULL, &f, sizeof f);
    if (rc == 0 && n)
        rc = log_copy(q, at + F_HDR, NULL, p, n);
    return rc;
}

static uint64_t now_ns(void)
{
    struct timespec t = mproc__now();
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* A producer's short wait for consumers (see SPILL_IDLE_NS): one per put,
 * whatever the put waits for. */
typedef struct cwait {
    const mproc__deadline *d; /* the caller's */
    uint64_t idle, start, moved, head, log;
    int spins, yields; /* left of this wait's first phases */
} cwait;

/* Before a wait for about `wants` bytes of room. */
static void cwait_for(cwait *w, uint64_t wants)
{
    w->idle = wants > SPILL_IDLE_NS ? wants : SPILL_IDLE_NS;
    w->moved = 0;
    w->spins = queue__spin_budget();
    w->yields = SPIN_YIELDS;
}

/* One step of the wait: returns false when it is over (consumers are not
 * taking messages, or it lasted SPILL_MAX_NS, or the caller's deadline
 * passed). */
static bool cwait_step(mproc_queue *q, cwait *w)
{
    qshm *h = q->h;
    if (mproc__deadline_expired(w->d))
        return false;
    uint64_t t = now_ns();
    uint64_t hw = atomic_load(&h->chead), cl = atomic_load(&h->c_log);
    if (!w->moved || hw != w->head || cl != w->log) {
        if (!w->start)
            w->start = t;
        w->moved = t;
        w->head = hw;
        w->log = cl;
    }
    if (t - w->start > SPILL_MAX_NS)
        return false;
    bool active = t - w->moved < w->idle || mproc__robust_held(&h->clock);
    if (active && w->spins > 0) {
        w->spins--;
        spin_pause();
        return true;
    }
    if (w->yields > 0 || !active) {
        /* A consumer may be waiting for our CPU. */
        if (w->yields-- <= 0)
            return false;
        sched_yield();
        return true;
    }
    /* Consumers are at work: sleep until one commits (p_waiting 2: a
     * producer waiting for plock keeps waiting). */
    uint32_t seq = atomic_load(&h->space_seq);
    atomic_store(&h->p_waiting, 2);
    if (atomic_load(&h->chead) == hw && atomic_load(&h->c_log) == cl) {
        struct timespec ts = {0, 1000000};
        mproc__futex_wait((uint32_t *)&h->space_seq, seq, &ts);
    }
    atomic_store(&h->p_waiting, 0);
    return true;
}

/* Much of the overflow left for consumers to take before they reach the
 * ring again (or the head of a run that cannot be read)? */
static bool much_left(mproc_queue *q, uint64_t left, uint64_t fsz)
{
    return left > 4 * (fsz > q->cap ? fsz : q->cap);
}

/*
 * Ring mode: is there room for need bytes at tail now, or after a short
 * wait for consumers (cwait)? Not when consumers are in an overflow run
 * with much left of it (the ring frees up only at its end). Leaves the
 * head it saw in p_head_cache.
 */
static bool ring_room(mproc_queue *q, uint64_t tail, uint64_t need,
                      uint64_t wants, cwait *w)
{
    qshm *h = q->h;
    cwait_for(w, wants);
    for (;;) {
        uint64_t hw = atomic_load_explicit(&h->chead, memory_order_acquire);
        atomic_store_explicit(&h->p_head_cache, w_pos(hw),
                              memory_order_relaxed);
        if (ring_free(q->cap, tail, w_pos(hw)) >= need)
            return true;
        if (hw & W_INLOG) {
            /* The run is closed (this is ring mode): its end is in the
             * SEGEND after its LINK. */
            qframe f;
            queue__ring_read(q, w_pos(hw) + F_HDR, &f, sizeof f);
            uint64_t left = lpos_diff(f.aux, l_pos(atomic_load(&h->c_log)));
            if (f.flags != (F_MAGIC | F_SEGEND) || much_left(q, left, need))
                return false;
        }
        if (!cwait_step(q, w))
            return false;
    }
}

/*
 * Under plock, ring mode at tail (cnt messages put): opens a run with a
 * frame of n bytes (flags, aux as in the ring) and the LINK to it, and
 * publishes both with put, the count after it.
 */
static int log_open(mproc_queue *q, uint64_t tail, uint32_t put, uint32_t flags,
                    uint64_t aux, const unsigned char *p, size_t n)
{
    qshm *h = q->h;
    uint64_t x = align_up(l_pos(atomic_load(&h->p_log)));
    int rc = log_write(q, x, flags, aux, p, n);
    if (rc)
        return rc;
    queue__ring_frame(q, tail, F_LINK, x, NULL, 0);
    atomic_store(&h->p_log, l_make(x + F_HDR + round16(n), put));
    atomic_store_explicit(&h->ptail, w_make(tail + F_HDR, put, W_SPILL),
                          memory_order_release);
    return 0;
}

/*
 * Under plock, ring mode at tail: a message larger than a quarter of the
 * ring goes through it in frames (of up to a quarter of it) while a
 * consumer takes them, as in a queue bounded by bytes; if consumers stop
 * taking them, the rest goes to the overflow in one frame, behind a LINK
 * (the consumer that has the start follows it there).
 */
static int put_stream(mproc_queue *q, uint64_t tail, uint32_t cnt,
                      const unsigned char *p, size_t n, cwait *w)
{
    qshm *h = q->h;
    uint64_t chunk = q->cap / 4 - F_HDR, least = q->cap / 16;
    size_t off = 0;
    for (;;) {
        size_t want = n - off < chunk ? n - off : (size_t)chunk;
        uint64_t head =
            atomic_load_explicit(&h->p_head_cache, memory_order_relaxed);
        uint64_t room = ring_free(q->cap, tail, head);
        if (room < 2 * F_HDR + round16(want)) {
            uint64_t need = 2 * F_HDR + (want < least ? round16(want) : least);
            if (!ring_room(q, tail, need, chunk, w)) {
                if (off == 0)
                    return log_open(q, tail, cnt + 1, F_FIRST | F_LAST, n, p,
                                    n);
                int rc = log_open(q, tail, cnt, F_LAST, off, p + off, n - off);
                if (rc) {
                    /* No room in the overflow either: withdraw it. */
                    atomic_store(&h->ptail, w_make(tail, cnt, 0));
                    atomic_fetch_add(&h->data_seq, 1);
                    mproc__futex_wake((uint32_t *)&h->data_seq, INT_MAX);
                }
                return rc;
            }
            head = atomic_load_explicit(&h->p_head_cache, memory_order_relaxed);
            room = ring_free(q->cap, tail, head);
            uint64_t fit = (room - 2 * F_HDR) & ~UINT64_C(15);
            if (want > fit)
                want = (size_t)fit;
        }
        bool last = off + want == n;
        tail = queue__ring_frame(
            q, tail, (off ? 0 : F_FIRST) | (last ? F_LAST : 0),
            off ? (uint64_t)off : (uint64_t)n, p + off, want);
        if (off == 0)
            cnt++;
        if (last) {
            atomic_store_explicit(&h->ptail, w_make(tail, cnt, 0),
                                  memory_order_release);
            return 0;
        }
        atomic_store(&h->ptail, w_make(tail, cnt, W_OPEN));
        queue__wake_data(h);
        poll_notify(q);
        off += want;
    }
}

/*
 * Under plock, an open run whose LINK is just before tail: may it be
 * closed, the ring taking over? When consumers took all of it, or emptied
 * half the ring and the message fits there; and, when what is left of the
 * run and the ring before it is at most four rings (or four messages like
 * this one), after a short wait for consumers to take it (so that a
 * flowing queue goes back to the ring). Leaves the head it saw in
 * p_head_cache.
 */
static bool run_closes(mproc_queue *q, uint64_t tail, uint64_t lw, uint64_t fsz,
                       bool fits, cwait *w)
{
    qshm *h = q->h;
    uint64_t link = (tail - F_HDR) & W_POS_MASK;
    cwait_for(w, fsz);
    for (;;) {
        uint64_t hw = atomic_load_explicit(&h->chead, memory_order_acquire);
        atomic_store_explicit(&h->p_head_cache, w_pos(hw),
                              memory_order_relaxed);
        uint64_t room = ring_free(q->cap, tail, w_pos(hw));
        uint64_t from; /* where the consumers are in the run */
        if ((hw & W_INLOG) && w_pos(hw) == link) {
            from = l_pos(atomic_load(&h->c_log));
            if (from == l_pos(lw))
                return true; /* drained */
        } else {
            qframe f;
            queue__ring_read(q, link, &f, sizeof f);
            from = f.aux;
        }
        if (fits && room >= fsz + 2 * F_HDR && room >= q->cap / 2)
            return true;
        uint64_t left = lpos_diff(l_pos(lw), from) + (q->cap - room);
        if (much_left(q, left, fsz) || !cwait_step(q, w))
            return false;
    }
}

int queue__put_spill(mproc_queue *q, const unsigned char *p, size_t n,
                     const mproc__deadline *d)
{
    qshm *h = q->h;
    uint64_t w = atomic_load_explicit(&h->ptail, memory_order_relaxed);
    uint64_t lw = atomic_load_explicit(&h->p_log, memory_order_relaxed);
    uint64_t tail = w_pos(w);
    uint32_t cnt = w_cnt(w);
    uint64_t fsz = F_HDR + round16(n);
    bool fits = n <= q->ring_max;
    cwait cw = {d, 0, 0, 0, 0, 0, 0, 0}; /* one budget for the whole put */
    if (w & W_SPILL) {
        /* A run is open: the message goes on in it, unless consumers took
         * all of it or emptied half the ring, when the run is closed
         * (SEGEND right after its LINK, published with what comes next)
         * and the ring takes over. */
        cnt = w_cnt(lw);
        if (!run_closes(q, tail, lw, fsz, fits, &cw)) {
            uint64_t at = l_pos(lw);
            int rc = log_write(q, at, F_FIRST | F_LAST, n, p, n);
            if (rc)
                return rc;
            atomic_store_explicit(&h->p_log, l_make(at + fsz, cnt + 1),
                                  memory_order_release);
            return 0;
        }
        tail = queue__ring_frame(q, tail, F_SEGEND, l_pos(lw), NULL, 0);
        log_give_back(q, l_pos(lw));
    }
    queue__log_unview(q, SIDE_P);
    if (!fits)
        return put_stream(q, tail, cnt, p, n, &cw);
    if (ring_room(q, tail, fsz + F_HDR, fsz, &cw)) {
        tail = queue__ring_frame(q, tail, F_FIRST | F_LAST, n, p, n);
        atomic_store_explicit(&h->ptail, w_make(tail, cnt + 1, 0),
                              memory_order_release);
        return 0;
    }
    return log_open(q, tail, cnt + 1, F_FIRST | F_LAST, n, p, n);
}

/* ---- get ------------------------------------------------------------------
 */

/*
 * Under clock, consumers at the end (pos) of the open run whose LINK is at
 * ring position link: if no producer holds plock and none has written to
 * the run meanwhile, closes it as a producer would (SEGEND, ptail without
 * SPILL) and gives back its reserved pages. Returns true if it did.
 */
static bool close_drained(mproc_queue *q, uint64_t link, uint64_t pos)
{
    qshm *h = q->h;
    int rc = mproc__robust_trylock(&h->plock);
    if (rc == -EBUSY || queue__locked(q, SIDE_P, rc) != 0)
        return false;
    uint64_t tw = atomic_load(&h->ptail);
    uint64_t lw = atomic_load(&h->p_log);
    uint64_t after = (link + F_HDR) & W_POS_MASK;
    bool done =
        (tw & W_SPILL) && w_pos(tw) == after && l_pos(lw) == (pos & L_POS_MASK);
    if (done) {
        uint64_t t = queue__ring_frame(q, after, F_SEGEND, pos, NULL, 0);
        atomic_store(&h->ptail, w_make(t, w_cnt(lw), 0));
        log_give_back(q, pos);
        queue__log_unview(q, SIDE_P); /* plock held: this handle's too */
    }
    pthread_mutex_unlock(&h->plock);
    return done;
}

/* Under clock: the run at link ended at `end`, every message of it taken
 * (cnt in all): gives its pages back and moves past its LINK and SEGEND. */
static void leave_run(mproc_queue *q, uint64_t link, uint64_t end, uint32_t cnt)
{
    qshm *h = q->h;
    log_punch_to(q, align_up(end));
    atomic_store(&h->chead, w_make(link + 2 * F_HDR, cnt, 0));
    queue__log_unview(q, SIDE_C);
    queue__wake_room(h);
}

int queue__log_enter(mproc_queue *q, uint64_t head, uint32_t cnt, uint64_t at,
                     sink *s, qmsg *m, size_t *len, const mproc__deadline *d)
{
    qshm *h = q->h;
    if (!q->log_size || (at & (Q_LOG_ALIGN - 1)) || at > L_POS_MASK)
        return MPROC_EPROTO;
    /* c_log first: until chead says INLOG it is nobody's, and a consumer
     * that dies in between leaves the LINK to be entered again. */
    atomic_store(&h->c_log, l_make(at, cnt));
    atomic_store(&h->chead, w_make(head, cnt, W_INLOG));
    return queue__get_log(q, s, m, len, d);
}

/* Under clock: the end of the run the consumers are in (its published
 * tail while open, else its SEGEND's), or MPROC_EPROTO. */
static int run_end(mproc_queue *q, uint64_t link, uint64_t *end, bool *open,
                   uint64_t *seen)
{
    qshm *h = q->h;
    /* p_log before ptail: if the run is still open after, p_log was read
     * while it was open (a run never reopens), so it is this run's tail;
     * once closed, its end is in the SEGEND. */
    seen[1] = atomic_load_explicit(&h->p_log, memory_order_acquire);
    seen[0] = atomic_load_explicit(&h->ptail, memory_order_acquire);
    *open =
        (seen[0] & W_SPILL) && w_pos(seen[0]) == ((link + F_HDR) & W_POS_MASK);
    *end = l_pos(seen[1]);
    if (!*open) {
        qframe f;
        queue__ring_read(q, link + F_HDR, &f, sizeof f);
        if (f.flags != (F_MAGIC | F_SEGEND) || (f.aux & 15) ||
            f.aux > L_POS_MASK)
            return MPROC_EPROTO;
        *end = f.aux;
    }
    return 0;
}

int queue__get_log(mproc_queue *q, sink *s, qmsg *m, size_t *len,
                   const mproc__deadline *d)
{
    qshm *h = q->h;
    for (;;) {
        uint64_t w = atomic_load_explicit(&h->chead, memory_order_relaxed);
        if (!(w & W_INLOG)) {
            queue__log_unview(q, SIDE_C);
            return 1;
        }
        if (!q->log_size)
            return MPROC_EPROTO; /* no overflow to be in */
        uint64_t link = w_pos(w);
        uint64_t cw = atomic_load_explicit(&h->c_log, memory_order_relaxed);
        uint64_t pos = l_pos(cw);
        uint32_t cnt = w_cnt(cw);
        uint64_t end, seen[2];
        bool open;
        int rc = run_end(q, link, &end, &open, seen);
        if (rc)
            return rc;
        uint64_t avail = lpos_diff(end, pos);
        if (avail > q->log_size)
            return MPROC_EPROTO;
        if (avail == 0) {
            if (!open || close_drained(q, link, pos)) {
                if (m->have) {
                    /* Its end was to be in this run: it never came. */
                    m->have = false;
                    queue__count_withdrawn(h);
                }
                leave_run(q, link, pos, cnt);
                return 1;
            }
            rc = queue__wait_data(q, 0, seen, false, d);
            if (rc)
                return rc;
            continue;
        }
        qframe f = {0, 0, 0};
        rc = avail >= F_HDR ? log_copy(q, pos, &f, NULL, sizeof f)
                            : MPROC_EPROTO;
        if (rc)
            return rc;
        uint64_t fsz = F_HDR + round16(f.len);
        if ((f.flags & ~(F_FIRST | F_LAST)) != F_MAGIC || !(f.flags & F_LAST) ||
            fsz > avail)
            return MPROC_EPROTO;
        uint64_t next = (pos + fsz) & L_POS_MASK;
        uint64_t msglen = f.len;
        if (f.flags & F_FIRST) {
            /* A whole message. */
            if (f.aux != f.len)
                return MPROC_EPROTO;
            if (m->have) {
                m->have = false; /* one begun in the ring that never ended */
                queue__count_withdrawn(h);
            }
            rc = queue__sink_ready(s, f.len, &m->dst);
            if (rc == 0 && f.len)
                rc = log_copy(q, pos + F_HDR, m->dst, NULL, f.len);
            if (rc) {
                if (rc == MPROC_EBUFSIZE)
                    *len = f.len;
                return rc; /* the message stays first */
            }
            cnt++;
        } else if (m->have && f.aux == m->got && f.len == m->total - m->got) {
            /* The rest of the message whose start this get took from the
             * ring (already counted there). */
            rc = f.len ? log_copy(q, pos + F_HDR, m->dst + m->got, NULL, f.len)
                       : 0;
            if (rc)
                return rc;
            m->have = false;
            msglen = m->total;
        } else {
            /* The rest of a message whose start a consumer that died took:
             * skip it. */
            if (m->have) {
                m->have = false;
                queue__count_withdrawn(h);
            }
            atomic_store(&h->c_log, l_make(next, cnt));
            continue;
        }
        /* Taken: one store. Fenced and woken after the unlock, as a ring
         * get is. */
        atomic_store_explicit(&h->c_log, l_make(next, cnt),
                              memory_order_release);
        *len = (size_t)msglen;
        if (open && next == end && close_drained(q, link, next))
            leave_run(q, link, next, cnt);
        else if (lpos_diff(align_down(next),
                           atomic_load_explicit(&h->c_punched,
                                                memory_order_relaxed)) >=
                 Q_LOG_PUNCH)
            log_punch_to(q, align_down(next));
        return 0;
    }
}
