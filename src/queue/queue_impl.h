/*
 * queue/queue_impl.h - Queue, SimpleQueue and JoinableQueue: a multi-producer,
 * multi-consumer ring of bytes in a memfd shared by every process that
 * holds a handle.
 *
 * Layout of the memfd: one page of header, then the ring (a power of two
 * of bytes). A message is one or more frames; a frame is a 16-byte header
 * (payload length, flags, and the message's total length in a first
 * frame or the payload's offset in a later one) followed by the payload,
 * padded to 16 bytes. Frame headers never straddle the ring's end (both
 * are 16-aligned); a payload may, and is then copied in two parts.
 *
 * Producers take a process-shared robust mutex (plock) for a whole put;
 * consumers take another (clock) for a whole get, so one producer and one
 * consumer run in parallel and each message is copied once in and once
 * out. What other processes see is a single 64-bit committed word per
 * side, stored with one atomic store:
 *   ptail = tail position | OPEN | messages put << 34
 *   chead = head position        | first frames taken << 34
 * (positions modulo 2^34, counts modulo 2^30). A frame is written past
 * the committed tail and published by storing ptail, so a producer that
 * dies mid-copy leaves nothing visible; a consumer copies a frame out
 * before storing chead, so one that dies mid-copy leaves the frame to the
 * next consumer, which either takes the message (if its first frame was
 * not committed as taken) or skips the rest of it.
 *
 * A message larger than a quarter of the ring is streamed: its frames are
 * published one by one while the producer holds plock, and OPEN says a
 * message is unfinished. A producer that times out midway clears OPEN (the
 * message is withdrawn); one that dies leaves plock owner-dead, and whoever
 * takes plock next (a producer, or a consumer waiting for the rest of the
 * message) clears OPEN. A consumer in the middle of a message discards it
 * when OPEN is clear and no frame follows, or when the next frame starts a
 * new message.
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
 * fd, the side locks and their repair, mapping); queue.c the API (create,
 * put, get, state, JoinableQueue, sharing).
 */
#ifndef MPROC__QUEUE_IMPL_H
#define MPROC__QUEUE_IMPL_H

#include "core/core.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <string.h>

#define Q_MAGIC   0x5150524du /* "MRPQ" */
#define Q_VERSION 1u
#define Q_HDR     4096u

/* Committed words. */
#define W_POS_MASK    ((UINT64_C(1) << 34) - 1)
#define W_OPEN        UINT64_C(1)
#define W_CNT_BITS    30
#define W_CNT_MASK    ((UINT32_C(1) << W_CNT_BITS) - 1)
#define Q_MAX_MAXSIZE ((size_t)1 << 26)

/* Frames. */
#define F_FIRST 1u
#define F_LAST  2u
#define F_MAGIC 0xf7a50000u
#define F_HDR   16u

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

    /* Producers: plock and their private cache (under plock). */
    alignas(Q_LINE) pthread_mutex_t plock;
    _Atomic uint64_t p_head_cache; /* a chead seen lately */
    /* What consumers read: the committed tail. */
    alignas(Q_LINE) _Atomic uint64_t ptail;
    /* Flags and futex words, each on lines of its own: a flag is read on
     * every commit by the other side and written only around sleeps. */
    alignas(
        Q_LINE) _Atomic uint32_t p_waiting; /* plock holder sleeps for room */
    alignas(Q_LINE) _Atomic uint32_t space_seq;

    /* Consumers, likewise. */
    alignas(Q_LINE) pthread_mutex_t clock;
    _Atomic uint64_t c_tail_cache; /* a ptail position seen lately */
    alignas(Q_LINE) _Atomic uint64_t chead;
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

struct mproc_queue {
    qshm *h;
    unsigned char *ring;
    size_t map_len;
    uint64_t cap, mask;
    int memfd, efd;
    _Atomic int closed;
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

static inline uint64_t w_make(uint64_t pos, uint32_t cnt, bool open)
{
    return (pos & W_POS_MASK) | ((uint64_t)(cnt & W_CNT_MASK) << 34) |
           (open ? W_OPEN : 0);
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

/* ---- the machinery below put and get (ring.c) ---------------------------- */

enum { SIDE_P, SIDE_C };

/* Spins a waiter may make before it yields and sleeps (0 on one CPU). */
int queue__spin_budget(void);
/* Sleep period for one futex wait: the deadline's rest, capped at
 * Q_PERIOD_NS. Returns false when the deadline has passed. */
bool queue__period_left(const mproc__deadline *d, struct timespec *ts);
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

/* After a commit that made data visible (ptail stored seq_cst): signals
 * the readiness fd if a consumer asked for it. */
static inline void poll_notify(mproc_queue *q)
{
    qshm *h = q->h;
    if (atomic_load_explicit(&h->armed, memory_order_relaxed) &&
        atomic_load(&h->fd_clear) && atomic_exchange(&h->fd_clear, 0))
        queue__efd_signal(q);
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

#endif
