/*
 * queue/queue_impl.h - Queue, SimpleQueue and JoinableQueue: a multi-producer,
 * multi-consumer ring of bytes in a memfd shared by every process that
 * holds a handle, and behind it an overflow that lets an unbounded queue
 * hold more than the ring.
 *
 * Layout of the memfd: one page of header, then the ring (a power of two
 * of bytes), then (for a queue with an overflow) the overflow area, a
 * sparse stretch of log_size bytes whose pages exist only while messages
 * wait in them. A message is one or more frames; a frame is a 16-byte
 * header (payload length, flags, and the message's total length in a
 * first frame or the payload's offset in a later one) followed by the
 * payload, padded to 16 bytes. Frame headers never straddle the ring's end
 * (both are 16-aligned); a payload may, and is then copied in two parts.
 *
 * Producers take a process-shared robust mutex (plock) for a whole put;
 * consumers take another (clock) for a whole get, so one producer and one
 * consumer run in parallel and each message is copied once in and once
 * out. What other processes see is a single 64-bit committed word per
 * side, stored with one atomic store:
 *   ptail = tail position | OPEN | SPILL | messages put << 34
 *   chead = head position        | INLOG | first frames taken << 34
 * (positions modulo 2^34, counts modulo 2^30). A frame is written past
 * the committed tail and published by storing ptail, so a producer that
 * dies mid-copy leaves nothing visible; a consumer copies a frame out
 * before storing chead, so one that dies mid-copy leaves the frame to the
 * next consumer, which either takes the message (if its first frame was
 * not committed as taken) or skips the rest of it.
 *
 * Bounded by bytes (maxsize > 0 with an explicit capacity): a message
 * larger than a quarter of the ring is streamed: its frames are published
 * one by one while the producer holds plock, and OPEN says a message is
 * unfinished. A producer that times out midway clears OPEN (the message
 * is withdrawn); one that dies leaves plock owner-dead, and whoever takes
 * plock next (a producer, or a consumer waiting for the rest of the
 * message) clears OPEN. A consumer in the middle of a message discards it
 * when OPEN is clear and no frame follows, or when the next frame starts a
 * new message.
 *
 * Unbounded by bytes (every other queue; overflow.c): a message of up to
 * a quarter of the ring goes in the ring as one frame when it fits there
 * now (the ring always keeps 16 bytes free for a LINK), else in the
 * overflow; a larger one is streamed through the ring as above while a
 * consumer takes its pieces, and if consumers stop taking them its rest
 * goes to the overflow in one frame (the consumer that has its start
 * follows the LINK to it). A
 * producer that finds the ring full first waits a moment while consumers
 * visibly take messages (the overflow is slower: its pages come and go),
 * never long (see SPILL_IDLE_NS in overflow.c). The overflow is one FIFO
 * stream of whole-message frames at log positions (bytes, modulo 2^38;
 * the file offset is the position modulo log_size) that consumers follow
 * in runs: a LINK frame in the ring says "the next messages are in the
 * overflow from position X", and while the run is open the producers'
 * messages go on into it, published by one store of
 *   p_log = overflow tail / 16 | messages put << 34
 * (ptail's SPILL flag says the count is there). The run is closed by a
 * SEGEND frame (16 bytes, "the run ended at position E") that a producer
 * writes right after the LINK together with the next ring message, in one
 * store of ptail without SPILL; a consumer that empties an open run while
 * no producer holds plock closes it the same way (so that its memory goes
 * back at once). A consumer that reaches a LINK enters the run (stores
 * c_log = X | count, then chead with INLOG: the count is then in c_log),
 * takes its messages with one store of c_log each, and leaves it past the
 * SEGEND with one store of chead. FIFO order holds by construction: the
 * ring is read in order and the run sits where its LINK is. Memory: a
 * producer reserves the overflow's pages ahead of its writes (fallocate,
 * so that a shortage is an error, never a SIGBUS) and gives back what it
 * reserved past a run when the run closes; a consumer punches out (hole
 * punching) the pages of messages it took, behind it, and the rest of a
 * run when it leaves it. Runs start on a Q_LOG_ALIGN boundary so that the
 * end of one and the start of the next never share a page. Each handle
 * maps the overflow through two windows (one per side, used under that
 * side's lock), moved as needed and unmapped when the ring takes over.
 *
 * Waiting: the lock holder that needs data (or room) spins briefly, then
 * sleeps on a shared futex word with a bounded period (so a peer that died
 * between publishing and waking costs at most one period); the other side
 * wakes it only when it has announced itself, so the uncontended path makes
 * no system call. Processes waiting for the lock sleep in the robust mutex,
 * which the kernel hands on (owner-dead) when its holder dies, in bounded
 * steps too (see q_lock for the wake-up a dying waiter can swallow).
 *
 * Readiness fd: an eventfd, signalled only after someone asked for it;
 * see mproc_queue_fileno for the contract and note_empty for the protocol.
 *
 * Files: ring.c holds the machinery (waiting, ring copies, the readiness
 * fd, the side locks and their repair, mapping); overflow.c the overflow
 * (its windows, pages, runs, and the puts and gets that go through it);
 * queue.c the API (create, put, get, state, JoinableQueue, sharing).
 */
#ifndef MPROC__QUEUE_IMPL_H
#define MPROC__QUEUE_IMPL_H

#include "core/core.h"

#include <limits.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define Q_MAGIC   0x5150524du /* "MRPQ" */
#define Q_VERSION 2u
#define Q_HDR     4096u

/* Committed words. */
#define W_POS_MASK    ((UINT64_C(1) << 34) - 1)
#define W_OPEN        UINT64_C(1) /* ptail: a streamed message is unfinished */
#define W_SPILL       UINT64_C(2) /* ptail: an overflow run is open */
#define W_INLOG       UINT64_C(2) /* chead: consumers are in an overflow run */
#define W_CNT_BITS    30
#define W_CNT_MASK    ((UINT32_C(1) << W_CNT_BITS) - 1)
#define Q_MAX_MAXSIZE ((size_t)1 << 26)

/* Frames. */
#define F_FIRST  1u
#define F_LAST   2u
#define F_LINK   4u /* ring: an overflow run starts at position aux */
#define F_SEGEND 8u /* ring, right after a LINK: that run ended at aux */
#define F_MAGIC  0xf7a50000u
#define F_HDR    16u

/* The overflow. Positions are bytes modulo 2^38, stored /16 in a 34-bit
 * field; it is at most 2^37 bytes, so a difference of positions is never
 * ambiguous. Runs start, and pages are given back, on Q_LOG_ALIGN
 * boundaries (a multiple of every page size in use); pages are reserved
 * Q_LOG_RESV at a time and punched out behind a consumer once
 * Q_LOG_PUNCH have been taken; each side maps Q_LOG_WINDOW at a time. */
#define L_POS_MASK   ((UINT64_C(1) << 38) - 1)
#define Q_LOG_MAX    (UINT64_C(1) << 37)
#define Q_LOG_MIN    (UINT64_C(1) << 16)
#define Q_LOG_ALIGN  (UINT64_C(1) << 16)
#define Q_LOG_RESV   (UINT64_C(1) << 20)
#define Q_LOG_PUNCH  (UINT64_C(1) << 20)
#define Q_LOG_WINDOW (UINT64_C(1) << 26)

/* Separation of words written by different sides: two cache lines, since
 * the adjacent-line prefetcher moves lines in pairs. */
#define Q_LINE 128

/* A sleeper re-checks at least this often (a waker may have died). */
#define Q_PERIOD_NS 200000000L

typedef struct qframe {
    uint32_t len;   /* payload bytes in this frame */
    uint32_t flags; /* F_MAGIC | F_FIRST | F_LAST */
    uint64_t aux;   /* first frame: total length; else: payload offset */
} qframe;

/* The padding is the point: words written by different sides live on
 * different lines. */
typedef struct qshm { // NOLINT(clang-analyzer-optin.performance.Padding)
    uint32_t magic, version, type, pad0;
    uint64_t capacity, maxsize, chunk, minchunk;
    uint64_t log_size; /* bytes of overflow (a power of two), 0: none */

    /* Producers: plock and their private words (under plock). */
    alignas(Q_LINE) pthread_mutex_t plock;
    _Atomic uint64_t p_head_cache; /* a chead seen lately */
    _Atomic uint64_t p_resv;       /* overflow pages reserved up to here */
    /* What consumers read: the committed tail, and the overflow's. */
    alignas(Q_LINE) _Atomic uint64_t ptail;
    _Atomic uint64_t p_log;
    /* Flags and futex words, each on lines of its own: a flag is read on
     * every commit by the other side and written only around sleeps. */
    /* plock holder sleeps: for room or the count (1), or a moment for
     * consumers to make room before it spills to the overflow (2). */
    alignas(Q_LINE) _Atomic uint32_t p_waiting;
    alignas(Q_LINE) _Atomic uint32_t space_seq;

    /* Consumers, likewise. */
    alignas(Q_LINE) pthread_mutex_t clock;
    _Atomic uint64_t c_tail_cache; /* a ptail position seen lately */
    /* Overflow pages before this position are punched out (or will never
     * be punched by a consumer again): producers stay below it + size. */
    _Atomic uint64_t c_punched;
    alignas(Q_LINE) _Atomic uint64_t chead;
    _Atomic uint64_t c_log;
    alignas(
        Q_LINE) _Atomic uint32_t c_waiting; /* clock holder sleeps for data */
    alignas(Q_LINE) _Atomic uint32_t data_seq;

    /* JoinableQueue: messages marked done (mod 2^30), and its waiters. */
    alignas(Q_LINE) _Atomic uint32_t done;
    _Atomic uint32_t join_waiters;

    /* Readiness fd. */
    alignas(Q_LINE) _Atomic uint32_t armed;
    _Atomic uint32_t fd_clear;
} qshm;

_Static_assert(sizeof(qshm) <= Q_HDR, "queue header exceeds a page");

/* A window on the overflow: Q_LOG_WINDOW bytes (or all of a smaller
 * overflow) mapped from window number idx; base NULL when none. */
typedef struct qview {
    unsigned char *base;
    uint64_t idx;
} qview;

struct mproc_queue {
    qshm *h;
    unsigned char *ring;
    size_t map_len;
    uint64_t cap, mask;
    int memfd, efd;
    _Atomic int closed;
    /* The overflow (log_size 0: none): its offset in the memfd, the
     * largest payload that goes in the ring as one frame, the window size,
     * and one window per side (used under that side's lock). */
    uint64_t log_size, log_off, ring_max, win;
    qview view[2];
};

/*
 * Before sleeping, a waiter spins (about 100 us of pause instructions),
 * then yields the CPU a few times (the other side may need it), then
 * sleeps on a futex. While spinning it looks at the shared word only every
 * SPIN_GAP pauses: looking less often lets the other side publish several
 * messages while that word stays in its cache, which matters more than
 * the latency of one look. No spinning on a single CPU. A producer also
 * prefetches the ring PREFETCH_AHEAD bytes ahead, for writing.
 */
enum {
    SPIN_PAUSES = 4000,
    SPIN_GAP = 32,
    SPIN_YIELDS = 4,
    PREFETCH_AHEAD = 256
};

/* ---- small helpers ----------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t w_pos(uint64_t w)
{
    return w & W_POS_MASK & ~UINT64_C(15);
}

static inline uint32_t w_cnt(uint64_t w)
{
    return (uint32_t)(w >> 34);
}

/* A committed word; flags are W_OPEN, W_SPILL or W_INLOG. */
static inline uint64_t w_make(uint64_t pos, uint32_t cnt, uint64_t flags)
{
    return (pos & W_POS_MASK) | ((uint64_t)(cnt & W_CNT_MASK) << 34) | flags;
}

/* The overflow's committed words (p_log, c_log): position and count. */
static inline uint64_t l_make(uint64_t lpos, uint32_t cnt)
{
    return ((lpos & L_POS_MASK) >> 4) | ((uint64_t)(cnt & W_CNT_MASK) << 34);
}

static inline uint64_t l_pos(uint64_t w)
{
    return (w & W_POS_MASK) << 4;
}

/* Bytes from overflow position a to b. */
static inline uint64_t lpos_diff(uint64_t b, uint64_t a)
{
    return (b - a) & L_POS_MASK;
}

/* Bytes from a to b (positions modulo 2^34). */
static inline uint64_t pos_diff(uint64_t b, uint64_t a)
{
    return (b - a) & W_POS_MASK;
}

static inline uint64_t round16(uint64_t n)
{
    return (n + 15) & ~UINT64_C(15);
}

static inline void spin_pause(void)
{
    for (int k = 0; k < SPIN_GAP; k++)
        cpu_relax();
}

/* The first phases of a wait, at look i: spins (the first `spins` looks),
 * then yields the CPU (the next `yields`: the other side may be waiting
 * for it). Returns false when both are over (time to sleep). */
static inline bool spin_or_yield(int i, int spins, int yields)
{
    if (i < spins)
        spin_pause();
    else if (i < spins + yields)
        sched_yield();
    else
        return false;
    return true;
}

/* Free bytes in a ring of cap bytes at tail for a head seen at some time
 * (0 when that head is too old to tell). */
static inline uint64_t ring_free(uint64_t cap, uint64_t tail, uint64_t head)
{
    uint64_t used = pos_diff(tail, head);
    return used <= cap ? cap - used : 0;
}

/* Messages put: ptail's count, or p_log's while an overflow run is open.
 * Messages taken: chead's, or c_log's while consumers are in a run. Read
 * the taken count first (it never passes the put count). */
static inline uint32_t queue__put_count(qshm *h)
{
    uint64_t w = atomic_load(&h->ptail);
    return w & W_SPILL ? w_cnt(atomic_load(&h->p_log)) : w_cnt(w);
}

static inline uint32_t queue__taken_count(qshm *h, uint64_t chead)
{
    return chead & W_INLOG ? w_cnt(atomic_load(&h->c_log)) : w_cnt(chead);
}

/* ---- the machinery below put and get (ring.c) ---------------------------- */

enum { SIDE_P, SIDE_C };

/* Spins a waiter may make before it yields and sleeps (0 on one CPU). */
int queue__spin_budget(void);
/* Sleep period for one futex wait: the deadline's rest, capped at
 * Q_PERIOD_NS. Returns false when the deadline has passed. */
bool queue__period_left(const mproc__deadline *d, struct timespec *ts);
/*
 * Under clock: waits until the committed tail passes `head` (log NULL), or,
 * in an overflow run, until ptail or p_log differ from log[0], log[1].
 * With mid_message the deadline is ignored (the producer is sending the
 * rest) and a withdrawn or orphaned message is reported as 1. Returns 0
 * (data), 1 (message withdrawn), -ETIMEDOUT.
 */
int queue__wait_data(mproc_queue *q, uint64_t head, const uint64_t *log,
                     bool mid_message, const mproc__deadline *d);
/* Sets the readiness eventfd. */
void queue__efd_signal(mproc_queue *q);
/* A consumer saw the queue empty: clears the readiness fd race-free. */
void queue__note_empty(mproc_queue *q);
/* queue__lock's way when the lock is not free at once: spin, then sleep in
 * the mutex in bounded steps. */
int queue__lock_slow(mproc_queue *q, int side, const mproc__deadline *d);
/* Finishes taking a side's lock: rc is mproc__robust_lock's result (1:
 * the holder died; what it left is repaired here). Returns 0 or rc. */
int queue__locked(mproc_queue *q, int side, int rc);
/* Ring capacity for a wish of n bytes: a power of two, at least the
 * minimum. */
size_t queue__pow2_at_least(size_t n);
/* Maps an initialized memfd and checks its header. Takes neither fd.
 * Returns 0, MPROC_EPROTO (not a queue of this version), -errno. */
int queue__map(int memfd, int efd, mproc_queue **out);

/* ---- get, and the overflow (overflow.c) ---------------------------------- */

/* Where a get puts the message. */
typedef struct sink {
    unsigned char *buf; /* caller's buffer, or NULL to allocate */
    size_t cap;
    unsigned char *mem; /* allocated */
} sink;

/* A message a get is putting together from its frames. */
typedef struct qmsg {
    bool have; /* its first frame is taken, its last not yet */
    uint64_t total, got;
    unsigned char *dst;
} qmsg;

/* Makes room in the sink for a message of total bytes and sets *dst.
 * Returns 0, MPROC_EBUFSIZE or -ENOMEM. */
static inline int queue__sink_ready(sink *s, uint64_t total,
                                    unsigned char **dst)
{
    if (s->buf) {
        if (total > s->cap)
            return MPROC_EBUFSIZE;
        *dst = s->buf;
        return 0;
    }
    size_t need = total ? (size_t)total : 1;
    if (!s->mem || s->cap < need) {
        unsigned char *m = realloc(s->mem, need);
        if (!m)
            return -ENOMEM;
        s->mem = m;
        s->cap = need;
    }
    *dst = s->mem;
    return 0;
}

/* Overflow bytes for a queue whose memfd may reach limit bytes with the
 * overflow at offset off: a power of two, or 0 when not even Q_LOG_MIN
 * fits. */
uint64_t queue__log_size_for(uint64_t off, uint64_t limit);
/* The overflow's offset in the memfd, after a ring of cap bytes. */
static inline uint64_t queue__log_off(uint64_t cap)
{
    return (Q_HDR + cap + Q_LOG_ALIGN - 1) & ~(Q_LOG_ALIGN - 1);
}
/* Under plock, a queue with an overflow: the put that found no room in
 * the ring at once (or an open run, or a message too large for the ring).
 * Returns 0, -ETIMEDOUT (the count bound), -ENOSPC (the overflow is
 * full), -ENOMEM and other -errno (its pages could not be had). */
int queue__put_spill(mproc_queue *q, const unsigned char *p, size_t n,
                     const mproc__deadline *d);
/* Under clock, a consumer at a LINK at ring position head (cnt messages
 * taken): enters the run and goes on as queue__get_log. */
int queue__log_enter(mproc_queue *q, uint64_t head, uint32_t cnt, uint64_t at,
                     sink *s, qmsg *m, size_t *len, const mproc__deadline *d);
/* Under clock: takes the next message of the run the consumers are in,
 * or the rest of m (a message whose ring part m holds). Returns 0 (a
 * message), 1 (the run is over: go on in the ring; m is dropped if its
 * end was not in the run), or as a get. Without a run, only lets go of a
 * window this side still maps. */
int queue__get_log(mproc_queue *q, sink *s, qmsg *m, size_t *len,
                   const mproc__deadline *d);
/* Unmaps a side's window (the ring has taken over again). */
void queue__log_unview(mproc_queue *q, int side);

/* After a commit that made data visible (ptail stored seq_cst): signals
 * the readiness fd if a consumer asked for it. */
static inline void poll_notify(mproc_queue *q)
{
    qshm *h = q->h;
    if (atomic_load_explicit(&h->armed, memory_order_relaxed) &&
        atomic_load(&h->fd_clear) && atomic_exchange(&h->fd_clear, 0))
        queue__efd_signal(q);
}

/* After a commit by a consumer (chead or c_log stored seq_cst): wakes a
 * producer that sleeps for room or for the count. */
static inline void queue__wake_room(qshm *h)
{
    if (atomic_load(&h->p_waiting)) {
        atomic_fetch_add(&h->space_seq, 1);
        mproc__futex_wake((uint32_t *)&h->space_seq, INT_MAX);
    }
}

/* After a commit by a producer (ptail or p_log stored seq_cst). */
static inline void queue__wake_data(qshm *h)
{
    if (atomic_load(&h->c_waiting)) {
        atomic_fetch_add(&h->data_seq, 1);
        mproc__futex_wake((uint32_t *)&h->data_seq, INT_MAX);
    }
}

/* A JoinableQueue counts a withdrawn message (one whose end will never
 * come) as done. */
static inline void queue__count_withdrawn(qshm *h)
{
    if (h->type != MPROC_QUEUE_JOINABLE)
        return;
    atomic_fetch_add(&h->done, 1);
    /* done is kept modulo 2^30 by the readers' masks. */
    if (atomic_load(&h->join_waiters))
        mproc__futex_wake((uint32_t *)&h->done, INT_MAX);
}

/* Copies between the ring (at position pos) and flat memory (inline: a
 * 64-byte message is a handful of instructions). */
static inline void queue__ring_write(mproc_queue *q, uint64_t pos,
                                     const void *src, size_t n)
{
    size_t off = (size_t)(pos & q->mask);
    size_t first = q->cap - off;
    if (n <= first) {
        memcpy(q->ring + off, src, n);
    } else {
        memcpy(q->ring + off, src, first);
        memcpy(q->ring, (const unsigned char *)src + first, n - first);
    }
}

static inline void queue__ring_read(mproc_queue *q, uint64_t pos, void *dst,
                                    size_t n)
{
    size_t off = (size_t)(pos & q->mask);
    size_t first = q->cap - off;
    if (n <= first) {
        memcpy(dst, q->ring + off, n);
    } else {
        memcpy(dst, q->ring + off, first);
        memcpy((unsigned char *)dst + first, q->ring, n - first);
    }
}

/* Writes a frame (header, then n bytes of payload) at ring position tail
 * and returns the position after it; publishing it is the caller's. */
static inline uint64_t queue__ring_frame(mproc_queue *q, uint64_t tail,
                                         uint32_t flags, uint64_t aux,
                                         const void *p, size_t n)
{
    qframe f = {(uint32_t)n, F_MAGIC | flags, aux};
    /* Ask for the next lines now, so that the consumer's copies of them
     * are invalidated while we copy, not while the commit's barrier waits
     * for our stores. */
    __builtin_prefetch(q->ring + ((tail + PREFETCH_AHEAD) & q->mask), 1);
    __builtin_prefetch(q->ring + ((tail + PREFETCH_AHEAD + 64) & q->mask), 1);
    queue__ring_write(q, tail, &f, sizeof f);
    if (n)
        queue__ring_write(q, tail + F_HDR, p, n);
    return (tail + F_HDR + round16(n)) & W_POS_MASK;
}

/* Takes one side's lock by the deadline, repairing what a dead holder left.
 * Returns 0, -ETIMEDOUT, -ENOTRECOVERABLE or -errno. */
static inline int queue__lock(mproc_queue *q, int side,
                              const mproc__deadline *d)
{
    pthread_mutex_t *m = side == SIDE_P ? &q->h->plock : &q->h->clock;
    int rc = mproc__robust_trylock(m);
    if (__builtin_expect(rc == 0, 1))
        return 0;
    if (rc != -EBUSY)
        return queue__locked(q, side, rc);
    return queue__lock_slow(q, side, d);
}

static inline void queue__unlock(mproc_queue *q, int side)
{
    pthread_mutex_unlock(side == SIDE_P ? &q->h->plock : &q->h->clock);
}

/*
 * Right after queue__unlock: the full barrier that orders this side's
 * last commit (a release store) before its look at the other side's
 * sleeping flag (the other half of the handshake is in wait_data and
 * wait_room). Unlocking a robust mutex is an atomic exchange of its word
 * (the robust-futex ABI: the owner's TID is cleared and the waiters bit
 * read in one step, which the kernel relies on), and on x86 a locked
 * instruction drains the store buffer: it is a full barrier, and a second
 * one would cost as much again per message (~7 ns here). Elsewhere the
 * fence is made.
 */
static inline void queue__unlocked_fence(void)
{
#if defined(__x86_64__) || defined(__i386__)
    atomic_signal_fence(memory_order_seq_cst);
#else
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

#endif
